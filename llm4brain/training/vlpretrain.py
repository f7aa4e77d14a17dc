"""Video-language pretraining of the video branch (Video-LLaMA's VL-branch pretraining).

Video-LLaMA trains its video Q-Former and projection with a video-to-text generation loss on
captioned video (WebVid-2M) while the vision encoder and the LLM stay frozen. The embedded
profile does the same on the simulator's *pretraining corpus*: captioned clips shown to no
subject (:func:`check_corpus_disjoint` guarantees it). Each sample is a clip, an instruction
drawn from ``captions.instructions`` and a target drawn from its description and paraphrases;
the loss is the caption cross-entropy of paper eq. (3) (:func:`caption_loss`).

Before it, an optional (off by default) *alignment* stage (``vlpretrain.align_steps``) plays
the role of BLIP-2's first, LLM-free Q-Former stage (image-text contrastive learning): the mean
video token of each clip is pulled towards the mean LLM input embedding of its caption with the
contrastive loss of paper eq. (1) (:func:`llm4brain.training.losses.clip_loss`). It needs no
LLM forward pass and makes the video tokens clip-specific from the start. On the default
profile it did not help: the caption loss after 60 caption steps was higher with 100
alignment steps first (3.14) than without (2.70).

GPU profiles skip the training and load a Video-LLaMA checkpoint from ``video.checkpoint``
(and BLIP-2's frame Q-Former from ``video.qformer_checkpoint``).

>>> res = pretrain_video_llm(cfg)             # doctest: +SKIP
>>> res.model, res.log                         # VideoLLM, DataFrame(step, loss, ce, lr, ...)
>>> vlm = load_video_llm(cfg)                  # later notebooks: the trained model
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ..config import identity, run_key
from ..data import load_stimuli
from ..models.frame_encoders import build_frame_feature_cache, frame_feature_dim
from ..models.llm import freeze, load_llm
from ..models.precision import resolve_bf16
from ..models.qformer import build_video_branch, load_branch_checkpoint
from ..models.video_llm import VideoLLM
from .loop import checkpoint_path, fit, load_checkpoint
from .losses import clip_loss

__all__ = ["VLPretrainResult", "pretrain_rows", "check_corpus_disjoint", "answer_choices",
           "make_vl_sampler", "vl_loss", "vl_loss_fn", "text_embeddings", "make_align_sampler",
           "align_loss_fn", "caption_vocabulary", "make_ground_sampler", "ground_loss_fn", "build_video_llm", "pretrain_video_llm",
           "load_video_llm", "video_llm_id", "video_features", 
           "RUN_PREFIX"]

RUN_PREFIX = "vlpretrain"


@dataclass
class VLPretrainResult:
    """What :func:`pretrain_video_llm` returns.

    model : VideoLLM (branch in eval mode); log : DataFrame of the loss curve (empty when a
    checkpoint was loaded instead); run_name : name of the training run; trained : False when a
    finished run or a Video-LLaMA checkpoint was loaded; features : the frame-feature cache.
    """

    model: torch.nn.Module
    log: pd.DataFrame
    run_name: str
    trained: bool
    features: object = None


# ----------------------------------------------------------------------------- corpus
def pretrain_rows(stim: pd.DataFrame) -> pd.DataFrame:
    """Rows of the pretraining corpus (``corpus == 'pretrain'``) that have a description."""
    if "corpus" not in stim.columns:
        raise ValueError("the stimulus table has no 'corpus' column; build it with "
                         "llm4brain.data.load_stimuli(cfg)")
    pre = stim[(stim["corpus"] == "pretrain") & (stim["description"].astype(str).str.len() > 0)]
    if pre.empty:
        raise ValueError("no captioned pretraining clips (corpus == 'pretrain'): simulate the "
                         "dataset first (notebook 00 / simulate_dataset(cfg), sim.n_pretrain_clips "
                         "> 0) or, on real data, set video.checkpoint to a Video-LLaMA checkpoint")
    return pre.reset_index(drop=True)


def _file_digest(path: str) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    return hashlib.sha1(p.read_bytes()).hexdigest()


def check_corpus_disjoint(stim: pd.DataFrame, *, content: bool = True) -> None:
    """Raise if any pretraining clip is also a stimulus clip of a subject.

    Compares clip ids, stimulus file names, resolved paths and (``content=True``) the bytes of
    the video files, so a copied or re-rendered identical clip is caught too.

    Raises
    ------
    ValueError
        Naming the shared clips (the pretraining corpus must hold clips shown to no subject).
    """
    sub = stim[stim["corpus"] == "subjects"]
    pre = stim[stim["corpus"] == "pretrain"]
    shared: set = set()
    for col in ("clip_id", "stim_file"):
        if col in stim.columns:
            shared |= set(sub[col].astype(str)) & set(pre[col].astype(str))
    if "path" in stim.columns:
        shared |= ({str(Path(p).resolve()) for p in sub["path"]}
                   & {str(Path(p).resolve()) for p in pre["path"]})
        if content and not shared:
            dig_sub = {_file_digest(p): p for p in sub["path"]}
            dig_sub.pop(None, None)
            for p in pre["path"]:
                d = _file_digest(p)
                if d is not None and d in dig_sub:
                    shared.add(f"{p} == {dig_sub[d]}")
    if shared:
        ex = sorted(shared)[:5]
        raise ValueError(f"{len(shared)} clip(s) of the pretraining corpus are also shown to "
                         f"subjects (e.g. {ex}); the video-LLM must be pretrained on clips no "
                         f"subject saw: regenerate the pretraining corpus (simulate_dataset)")


def answer_choices(rows: pd.DataFrame, use_paraphrases: bool = True) -> list[list[str]]:
    """Per clip, the target texts a sample may use: description (+ '|'-joined paraphrases)."""
    out = []
    for d, p in zip(rows["description"].astype(str),
                    rows.get("paraphrases", pd.Series([""] * len(rows))).astype(str)):
        texts = [d] + ([t for t in p.split("|") if t.strip()] if use_paraphrases else [])
        out.append(texts)
    return out


def make_vl_sampler(features: np.ndarray, targets: Sequence[Sequence[str]],
                    instructions: Sequence[str], batch_size: int) -> Callable:
    """``sample_batch(i, rng)`` for :func:`llm4brain.training.loop.fit`.

    Parameters
    ----------
    features : array of shape (n_clips, F, P, C)
        Frame features of the pretraining clips (float16 is fine).
    targets : list of n_clips lists of str
        Candidate answers per clip (:func:`answer_choices`).
    instructions : list of str
        One is drawn per sample.
    batch_size : int

    Returns
    -------
    callable ``(i, rng) -> {"features": float tensor (B, F, P, C), "instructions": [B str],
    "answers": [B str]}``
    """
    n = len(targets)
    if features.shape[0] != n:
        raise ValueError(f"{features.shape[0]} feature rows for {n} target lists")

    def sample_batch(i: int, rng: np.random.Generator) -> dict:
        idx = rng.choice(n, size=min(batch_size, n), replace=False)
        ins = [instructions[k] for k in rng.integers(len(instructions), size=len(idx))]
        ans = [targets[j][int(rng.integers(len(targets[j])))] for j in idx]
        order = np.argsort(idx)
        x = np.empty((len(idx),) + tuple(features.shape[1:]), dtype=np.float32)
        x[order] = features[idx[order]]
        return {"features": torch.from_numpy(x), "instructions": ins, "answers": ans}

    return sample_batch


def vl_loss(model, batch: dict, bf16: bool | str = False,
            token_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Caption cross-entropy (paper eq. 3) of a pretraining batch, optionally under bf16.

    ``bf16``: bool or ``"auto"`` (``vlpretrain.bf16``; decided once per process for the
    model's device by :func:`llm4brain.models.precision.resolve_bf16`).
    """
    dev = next(model.parameters()).device
    use = resolve_bf16(bf16, dev, name="vlpretrain.bf16")
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use):
        if token_weights is None:
            return model(batch["features"], batch["instructions"], batch["answers"])
        return model(batch["features"], batch["instructions"], batch["answers"],
                     token_weights=token_weights)


def vl_loss_fn(bf16: bool | str = False, token_weights: torch.Tensor | None = None) -> Callable:
    """``loss_fn(model, batch) -> (loss, {"ce": float})`` for the training loop."""
    def loss_fn(model, batch):
        loss = vl_loss(model, batch, bf16, token_weights)
        return loss, {"ce": float(loss.detach())}
    return loss_fn


@torch.no_grad()
def text_embeddings(llm, targets: Sequence[Sequence[str]]) -> list[torch.Tensor]:
    """Mean LLM input embedding of every candidate text of every clip.

    Returns
    -------
    list of n_clips float tensors (n_choices, D) on the CPU
    """
    out = []
    for texts in targets:
        rows = []
        for t in texts:
            ids = torch.tensor(llm.tokenizer(t, add_special_tokens=False)["input_ids"] or [0])
            rows.append(llm.embed(ids).float().mean(0).cpu())
        out.append(torch.stack(rows))
    return out


def make_align_sampler(features: np.ndarray, text_emb: Sequence[torch.Tensor],
                       batch_size: int) -> Callable:
    """``sample_batch(i, rng)`` of the alignment stage: clips and one caption embedding each.

    Returns
    -------
    callable ``(i, rng) -> {"features": (B, F, P, C), "text": (B, D)}``
    """
    n = len(text_emb)

    def sample_batch(i: int, rng: np.random.Generator) -> dict:
        idx = np.sort(rng.choice(n, size=min(batch_size, n), replace=False))
        text = torch.stack([text_emb[j][int(rng.integers(len(text_emb[j])))] for j in idx])
        x = torch.from_numpy(np.asarray(features[idx], dtype=np.float32))
        return {"features": x, "text": text}

    return sample_batch


def align_loss_fn(tau: float = 0.07, bf16: bool | str = False) -> Callable:
    """``loss_fn`` of the alignment stage: contrastive loss (paper eq. 1 form, as BLIP-2's
    image-text contrastive stage) between the mean video token and the caption embedding.
    ``bf16`` as in :func:`vl_loss`."""
    def loss_fn(model, batch):
        dev = next(model.parameters()).device
        use = resolve_bf16(bf16, dev, name="vlpretrain.bf16")
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use):
            x = model.branch(batch["features"])          # (B, Nv, D)
        loss = clip_loss(x.float().mean(1), batch["text"].float(), tau)
        return loss, {"itc": float(loss.detach())}
    return loss_fn


def caption_vocabulary(tokenizer, texts: Sequence[str], max_df: float = 0.5
                       ) -> tuple[list[int], list[list[int]]]:
    """Content tokens of a captioned corpus: token ids in fewer than ``max_df`` of the texts.

    Tokens in most captions ("A", ".", "the") carry no grounding; what is left (nouns,
    colours, verbs, scenes) is the vocabulary of the word-grounding stage.

    Returns
    -------
    vocab : sorted list of token ids
    per_text : for each text, its content token ids (positions in ``vocab``)
    """
    ids = [sorted(set(tokenizer(t, add_special_tokens=False)["input_ids"])) for t in texts]
    df: dict[int, int] = {}
    for row in ids:
        for i in row:
            df[i] = df.get(i, 0) + 1
    vocab = sorted(i for i, c in df.items() if c < max_df * len(texts))
    pos = {i: k for k, i in enumerate(vocab)}
    return vocab, [[pos[i] for i in row if i in pos] for row in ids]


def make_ground_sampler(features: np.ndarray, bags: Sequence[Sequence[Sequence[int]]],
                        batch_size: int) -> Callable:
    """``sample_batch(i, rng)`` of the word-grounding stage: clips and one caption's bag of
    content tokens each, as a row-normalised multi-hot target.

    Parameters
    ----------
    features : array (n_clips, F, P, C)
    bags : for each clip, for each of its candidate captions, positions in the vocabulary
    """
    n = len(bags)
    V = 1 + max((max(b) for bs in bags for b in bs if b), default=0)

    def sample_batch(i: int, rng: np.random.Generator) -> dict:
        idx = np.sort(rng.choice(n, size=min(batch_size, n), replace=False))
        target = torch.zeros(len(idx), V)
        for r, j in enumerate(idx):
            bag = bags[j][int(rng.integers(len(bags[j])))]
            if bag:
                target[r, list(bag)] = 1.0 / len(bag)
        x = torch.from_numpy(np.asarray(features[idx], dtype=np.float32))
        return {"features": x, "target": target}

    return sample_batch


def ground_loss_fn(vocab_embeddings: torch.Tensor, tau: float = 0.05) -> Callable:
    """``loss_fn`` of the word-grounding stage (LLM-free, as BLIP-2's first stage).

    Each video token is compared (cosine / ``tau``) with the LLM's input embedding of every
    content token of the corpus; a clip's score for a token is the log-sum-exp over its video
    tokens, and the loss is the cross-entropy of that distribution against the caption's bag
    of content tokens, plus a term keeping the video tokens' norm at the mean norm of the
    LLM's word embeddings. It makes each video token point at words the caption uses ("dog",
    "blue", "beach") without a single LLM forward pass, so the caption stage that follows
    starts from tokens the frozen LLM can already read.
    """
    E = vocab_embeddings.float()
    En = torch.nn.functional.normalize(E, dim=-1)
    e_norm = float(E.norm(dim=-1).mean())

    def loss_fn(model, batch):
        x = model.branch(batch["features"]).float()             # (B, Nv, D)
        logits = torch.nn.functional.normalize(x, dim=-1) @ En.to(x.device).T / tau
        logp = logits.logsumexp(1).log_softmax(-1)              # (B, V)
        bow = -(batch["target"].to(x.device) * logp).sum(-1).mean()
        norm = ((x.norm(dim=-1) / e_norm - 1.0) ** 2).mean()
        return bow + norm, {"bow": float(bow.detach()), "norm": float(norm.detach())}

    return loss_fn


# ----------------------------------------------------------------------------- model
def video_llm_id(cfg) -> str:
    """Short hash of every setting that determines the trained video-LLM."""
    data = dict(root=cfg.data.root, n_frames=cfg.data.n_frames, frame_size=cfg.data.frame_size)
    return run_key("", dict(video=identity(cfg, "video"), llm=identity(cfg, "llm"),
                            vl=identity(cfg, "vlpretrain"),
                            instructions=list(cfg.captions.instructions),
                            sim=identity(cfg, "sim"), data=data, seed=cfg.run.seed,
                            loop=identity(cfg, "train")))


def build_video_llm(cfg, llm=None, encoder_dim: int | None = None):
    """A :class:`VideoLLM` sized by ``cfg`` with the LLM loaded (frozen).

    The branch is randomly initialised, then ``video.qformer_checkpoint`` (BLIP-2 frame
    Q-Former) and ``video.checkpoint`` (Video-LLaMA VL branch) are loaded when set.
    """
    llm = llm if llm is not None else load_llm(cfg)
    dim = encoder_dim if encoder_dim is not None else frame_feature_dim(cfg)
    with torch.random.fork_rng():      # seeded init without touching the global RNG
        torch.manual_seed(cfg.run.seed)
        branch = build_video_branch(cfg, dim, llm.hidden_size).to(llm.device)
    if cfg.video.qformer_checkpoint:
        load_branch_checkpoint(branch, cfg.video.qformer_checkpoint, "video.qformer_checkpoint",
                               required=("frame_qformer.",))
    if cfg.video.checkpoint:
        load_branch_checkpoint(branch, cfg.video.checkpoint, "video.checkpoint",
                               required=("video_qformer.", "proj."))
    return VideoLLM(branch, llm, cfg.llm)


def video_features(cfg, stim: pd.DataFrame | None = None, progress: bool = True):
    """Frame-feature cache of every clip of the stimulus table (subjects + pretraining)."""
    stim = load_stimuli(cfg) if stim is None else stim
    return build_frame_feature_cache(cfg, stim, progress=progress)


def pretrain_video_llm(cfg, *, llm=None, stim: pd.DataFrame | None = None, features=None,
                       overwrite: bool = False, progress: bool = True,
                       device: str | None = None) -> VLPretrainResult:
    """Pretrain (or load) the video branch; LLM and frame encoder frozen.

    Parameters
    ----------
    cfg : Config
        ``cfg.vlpretrain`` (steps, batch size, lr, bf16), ``cfg.video``, ``cfg.llm``,
        ``cfg.captions.instructions``, ``cfg.train`` (loop settings).
    llm : LLMBackend, optional
        Reuse a loaded LLM.
    stim : DataFrame, optional
        Stimulus table (default :func:`llm4brain.data.load_stimuli`).
    features : FrameFeatureCache, optional
        Default :func:`video_features` of ``stim``.
    overwrite : bool
        Retrain even if a finished run exists.
    device : str, optional
        Passed to the training loop (``cpu`` forces the CPU).

    Returns
    -------
    VLPretrainResult
        The run ``vlpretrain-<video_llm_id>`` logs to ``<run_dir>/logs`` and checkpoints to
        ``<run_dir>/checkpoints``; a finished run is loaded, not retrained.
    """
    name = f"{RUN_PREFIX}-{video_llm_id(cfg)}"
    if cfg.video.checkpoint:
        vlm = build_video_llm(cfg, llm)
        vlm.branch.eval()
        return VLPretrainResult(vlm, pd.DataFrame(), name, False, features)
    if stim is None:
        stim = load_stimuli(cfg)
    check_corpus_disjoint(stim)
    pre = pretrain_rows(stim)
    features = features if features is not None else video_features(cfg, stim, progress)
    feats = np.asarray(features.features[np.sort(features.rows(pre["stim_file"]))])
    pre = pre.iloc[np.argsort(features.rows(pre["stim_file"]))].reset_index(drop=True)
    vlm = build_video_llm(cfg, llm, encoder_dim=int(feats.shape[-1]))
    if not cfg.vlpretrain.train_frame_qformer:
        freeze(vlm.branch.frame_qformer)
        freeze(vlm.branch.ln_vision)
    vlm.branch.train()
    vp = cfg.vlpretrain
    targets = answer_choices(pre, vp.use_paraphrases)
    common = dict(run_dir=cfg.run_dir, loop_cfg=cfg.train, seed=cfg.run.seed,
                  weight_decay=vp.weight_decay, overwrite=overwrite, progress=progress,
                  config=cfg, device=device)
    logs = []
    if vp.align_steps > 0:
        sampler = make_align_sampler(feats, text_embeddings(vlm.llm, targets),
                                     vp.align_batch_size)
        res = fit(vlm, align_loss_fn(vp.align_tau, vp.bf16), sampler, name=f"{name}-align",
                  steps=vp.align_steps, lr=vp.align_lr, **common)
        vlm = res.model
        logs.append(res.log.assign(stage="align"))
    if vp.ground_steps > 0 or vp.content_weight != 1.0:
        flat = [t for ts in targets for t in ts]
        vocab, bag_flat = caption_vocabulary(vlm.llm.tokenizer, flat, vp.ground_max_df)
    if vp.ground_steps > 0:
        bags, k = [], 0
        for ts in targets:
            bags.append(bag_flat[k:k + len(ts)])
            k += len(ts)
        with torch.no_grad():
            emb = vlm.llm.embed(torch.tensor(vocab, device=vlm.llm.device)).float().cpu()
        res = fit(vlm, ground_loss_fn(emb, vp.ground_tau),
                  make_ground_sampler(feats, bags, vp.ground_batch_size), name=f"{name}-ground",
                  steps=vp.ground_steps, lr=vp.ground_lr, **common)
        vlm = res.model
        logs.append(res.log.assign(stage="ground"))
    weights = None
    if vp.content_weight != 1.0:
        weights = torch.ones(vlm.llm.model.get_output_embeddings().weight.shape[0])
        weights[torch.tensor(vocab, dtype=torch.long)] = float(vp.content_weight)
    sampler = make_vl_sampler(feats, targets, list(cfg.captions.instructions), vp.batch_size)
    res = fit(vlm, vl_loss_fn(vp.bf16, weights), sampler, name=name, steps=vp.steps, lr=vp.lr,
              **common)
    logs.append(res.log.assign(stage="caption"))
    model = res.model
    model.branch.eval()
    log = pd.concat([g for g in logs if len(g)], ignore_index=True) if any(len(g) for g in logs) \
        else pd.DataFrame()
    return VLPretrainResult(model, log, name, res.trained, features)


def load_video_llm(cfg, llm=None):
    """The pretrained video-LLM of this profile (branch in eval mode).

    Raises
    ------
    FileNotFoundError
        When the pretraining run of these settings has not finished (run notebook 04 or
        :func:`pretrain_video_llm`), naming the expected checkpoint.
    """
    vlm = build_video_llm(cfg, llm)
    if not cfg.video.checkpoint:
        path = checkpoint_path(cfg.run_dir, f"{RUN_PREFIX}-{video_llm_id(cfg)}")
        if not path.is_file():
            raise FileNotFoundError(f"no pretrained video-LLM for these settings at {path}: run "
                                    f"notebook 04 (pretrain_video_llm(cfg)) first, or set "
                                    f"video.checkpoint to a Video-LLaMA checkpoint")
        info = load_checkpoint(vlm, path)
        if not info.get("finished"):
            raise FileNotFoundError(f"the pretraining run at {path} is unfinished (step "
                                    f"{info.get('step')}); resume it with pretrain_video_llm(cfg)")
    vlm.branch.eval()
    return vlm


