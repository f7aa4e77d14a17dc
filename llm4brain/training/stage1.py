"""Stage I: cross-modal alignment of fMRI and video tokens (paper 3.2, eqs. 1, 1b, 2).

What is trained, what is frozen (paper Fig. 1):

=======================================  ===========================================
trained                                  frozen
=======================================  ===========================================
3D-CNN tokenizer (+ its width projection) SC-MBM encoder base weights (MAE, notebook 02)
adaptors in the encoder (query + MLP)    Q-Former base weights, query tokens
adaptors in the video Q-Former           frame encoder (features are cached)
projection adaptor (:mod:`..bridge`)     video branch's LLM projection (unused here)
=======================================  ===========================================

For every trial of a **training subject's training run**, the fMRI block goes through
tokenizer -> encoder -> projection adaptor to ``L`` tokens ``z`` (B, L, H); the clip the trial
showed goes through the frozen frame encoder and the (adapted) Q-Formers to ``L`` video tokens
``x`` (B, L, H). The loss is eq. 2, ``beta * CLIP(pool(z), pool(x)) + (1 - beta) * L2L1(z, x)``
(:func:`llm4brain.training.losses.stage1_loss`).

Evaluation (:func:`evaluate_stage1`): top-1 / top-5 identification of each trial's clip among
``N`` candidates (chance k/N, permutation p-value) on held-out runs of training subjects and
on the **evaluation** trials of target subjects (read through
:func:`llm4brain.training.guard.target_evaluation_view`: their clips are used for scoring
only), beside a ridge baseline (mask voxels averaged over the block's volumes -> pooled video
embedding, alpha by leave-one-out CV on training trials).

>>> res = train_stage1(cfg, tc, splits, vlm=vlm, features=feats)     # doctest: +SKIP
>>> ev = evaluate_stage1(cfg, res.model, tc, splits, res.video)       # doctest: +SKIP
>>> ev.retrieval                                                       # doctest: +SKIP
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .guard import SourceView, source_view, target_evaluation_view
from .losses import clip_loss, l2l1_loss, pool_tokens, stage1_loss

__all__ = ["Stage1Model", "VideoInputs", "build_stage1_model", "stage1_run_name",
           "make_stage1_sampler", "stage1_loss_fn", "Stage1Result", "train_stage1",
           "load_stage1", "embed_fmri", "embed_clips", "voxel_features", "Stage1Evaluation",
           "evaluate_stage1", "stage1_results_dir", "load_stage1_results", "trainable_names",
           "ENCODER_TRAINABLE"]

#: Encoder parameters trained besides the adaptors (name prefixes inside ``FMRIEncoder``).
ENCODER_TRAINABLE = ("tokenizer.", "embed_proj.")


# ============================================================================ model
class Stage1Model(nn.Module):
    """fMRI side (tokenizer + adapted SC-MBM encoder + projection) and video side (adapted
    Q-Formers) of Stage I.

    Parameters
    ----------
    encoder : FMRIEncoder
        With adaptors (:func:`llm4brain.models.adaptors.add_adaptors`).
    branch : VideoBranch
        The pretrained video branch, with adaptors in its video (and frame) Q-Former.
    projector : nn.Module
        ``(B, N, De) -> (B, L, H)`` (:func:`llm4brain.models.bridge.build_projector`).
    qformer_adaptors : {"video", "both", "none"}
        ``video``/``none``: the video input of :meth:`forward` is the frozen frame Q-Former's
        output (B, F, Nq, H); ``both``: frame features (B, F, P, C).

    Notes
    -----
    :meth:`train` keeps the frozen parts (encoder blocks, video branch) in eval mode, so
    their dropout never fires; only the tokenizer and the projector switch to train mode.
    """

    def __init__(self, encoder: nn.Module, branch: nn.Module, projector: nn.Module,
                 qformer_adaptors: str = "video"):
        super().__init__()
        if qformer_adaptors not in ("video", "both", "none"):
            raise ValueError(f"stage1.qformer_adaptors = {qformer_adaptors!r}: use video, both "
                             f"or none")
        self.encoder = encoder
        self.branch = branch
        self.projector = projector
        self.qformer_adaptors = qformer_adaptors

    @property
    def n_tokens(self) -> int:
        """L, the number of video (and fMRI) tokens."""
        return int(self.branch.num_tokens)

    @property
    def video_input(self) -> str:
        """``frame_tokens`` or ``features``: what :meth:`video_tokens` expects."""
        return "features" if self.qformer_adaptors == "both" else "frame_tokens"

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            self.encoder.eval()
            self.branch.eval()
            self.encoder.tokenizer.train()
        return self

    def fmri_tokens(self, blocks: torch.Tensor) -> torch.Tensor:
        """fMRI tokens z of blocks (B, T, X, Y, Z): shape (B, L, H)."""
        return self.projector(self.encoder(blocks))

    def video_tokens(self, video: torch.Tensor) -> torch.Tensor:
        """Video tokens x (B, L, H) from frame-Q-Former outputs (B, F, Nq, H) or, with
        ``qformer_adaptors='both'``, from frame features (B, F, P, C)."""
        if self.video_input == "features":
            video = self.branch.frame_tokens(video)
        return self.branch.video_qformer(video.float())

    def forward(self, blocks: torch.Tensor, video: torch.Tensor):
        """``(z, x)``, each (B, L, H)."""
        return self.fmri_tokens(blocks), self.video_tokens(video)


def _freeze(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def build_stage1_model(cfg, encoder: nn.Module, branch: nn.Module) -> Stage1Model:
    """Stage I model from a pretrained encoder and video branch (both deep-copied).

    Parameters
    ----------
    cfg : Config
        ``cfg.adaptor`` (rank, alpha, non-linearity, targets), ``cfg.stage1`` (projector,
        ``qformer_adaptors``), ``cfg.run.seed``.
    encoder : FMRIEncoder
        MAE-pretrained (``load_pretrained_mae(...).encoder``).
    branch : VideoBranch
        Pretrained (``load_video_llm(cfg).branch``).

    Returns
    -------
    Stage1Model
        Trainable: tokenizer (+ width projection), encoder adaptors, Q-Former adaptors,
        projector. Everything else has ``requires_grad=False``.
    """
    from ..models.adaptors import add_adaptors
    from ..models.bridge import build_projector

    enc = _freeze(copy.deepcopy(encoder))
    br = _freeze(copy.deepcopy(branch))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed + 7)
        if cfg.stage1.encoder_adaptors:
            add_adaptors(enc, cfg, trainable=ENCODER_TRAINABLE)
        where = cfg.stage1.qformer_adaptors
        if where == "video":
            add_adaptors(br.video_qformer, cfg)
        elif where == "both":
            add_adaptors(br, cfg)
    for name, p in enc.named_parameters():           # pos_embed / cls token stay frozen
        if name.startswith(ENCODER_TRAINABLE) or "lora_" in name:
            p.requires_grad_(True)
    hidden = int(br.proj.in_features)
    proj = build_projector(cfg, int(enc.embed_dim), hidden, int(br.num_tokens),
                           n_input_tokens=int(enc.n_tokens))
    return Stage1Model(enc, br, proj, cfg.stage1.qformer_adaptors)


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the parameters with ``requires_grad``."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


# ============================================================================ video inputs
class VideoInputs:
    """What the video side of Stage I reads per clip, addressed by ``stim_file``.

    With ``qformer_adaptors`` ``video``/``none`` the frozen frame Q-Former's outputs
    (F, Nq, H) of every needed clip are computed once and kept (float16); with ``both``
    frame features (F, P, C) are read from the frame-feature cache on demand.

    Parameters
    ----------
    model : Stage1Model
    features : FrameFeatureCache
        :func:`llm4brain.training.vlpretrain.video_features`.
    stim_files : sequence of str
        Clips that will be asked for (ignored with ``both``).
    batch_size : int
    progress : bool
    """

    def __init__(self, model: Stage1Model, features, stim_files: Sequence[str] = (),
                 batch_size: int = 64, progress: bool = False):
        self.features = features
        self.kind = model.video_input
        self._rows: dict[str, int] = {}
        self._store = None
        if self.kind == "frame_tokens":
            files = list(dict.fromkeys(str(s) for s in stim_files))
            self._rows = {s: i for i, s in enumerate(files)}
            out = []
            dev = next(model.branch.parameters()).device
            with torch.no_grad():
                for s in tqdm(range(0, len(files), batch_size), desc="frame Q-Former",
                              disable=not progress):
                    x = features.get(files[s:s + batch_size]).to(dev)
                    out.append(model.branch.frame_tokens(x).to(torch.float16).cpu())
            self._store = torch.cat(out) if out else None

    def __len__(self) -> int:
        return len(self._rows) if self.kind == "frame_tokens" else len(self.features.index)

    def get(self, stim_files: Sequence[str]) -> torch.Tensor:
        """float32 tensor (n, F, Nq, H) (frame tokens) or (n, F, P, C) (features)."""
        files = [str(s) for s in stim_files]
        if self.kind == "features":
            return self.features.get(files)
        try:
            idx = torch.as_tensor([self._rows[s] for s in files], dtype=torch.long)
        except KeyError as exc:
            raise KeyError(f"clip {exc.args[0]} was not prepared in VideoInputs; pass it in "
                           f"stim_files when building them") from None
        return self._store[idx].float()


# ============================================================================ training
def stage1_run_name(cfg) -> str:
    """``stage1-<hash>`` of every setting that determines the trained Stage I model."""
    from ..config import config_hash, to_dict
    from .vlpretrain import video_llm_id

    s1 = to_dict(cfg.stage1)
    for k in ("eval_batch_size", "n_candidates", "n_permutations", "ridge_alphas", "ridge_cv"):
        s1.pop(k, None)
    # settings that do not change this model stay out of the name (so adding one, at its
    # default, keeps existing runs): the spatial projector's sizes, the ablation switches on
    if s1.get("projector") != "spatial":
        s1.pop("projector_token_dim", None)
        s1.pop("projector_dropout", None)
    for k in ("align", "encoder_adaptors"):
        if s1.get(k, True):
            s1.pop(k, None)
    mae = to_dict(cfg.mae)
    if mae.get("pretrained", True):
        mae.pop("pretrained", None)
    key = dict(stage1=s1, tokenizer=to_dict(cfg.tokenizer), encoder=to_dict(cfg.encoder),
               adaptor=to_dict(cfg.adaptor), mae=mae, video=video_llm_id(cfg),
               data=to_dict(cfg.data), sim=to_dict(cfg.sim), seed=cfg.run.seed,
               loop=to_dict(cfg.train))
    return f"stage1-{config_hash(key)}"


def make_stage1_sampler(view: SourceView, video: VideoInputs, batch_size: int,
                        freeze_video_until: int = 0) -> Callable:
    """``sample_batch(i, rng)`` for the training loop: B trials showing B distinct clips.

    Parameters
    ----------
    view : SourceView
        Training subjects' training trials (:func:`llm4brain.training.guard.source_view`).
    video : VideoInputs
    batch_size : int
        B (capped by the number of distinct clips).
    freeze_video_until : int
        Micro-batches ``i < freeze_video_until`` carry ``freeze_video = True``: the loss then
        treats the video tokens as constants (warm-up of the fMRI side, see
        ``stage1.video_warmup``).

    Returns
    -------
    callable ``(i, rng) -> {"blocks": (B, T, X, Y, Z), "video": (B, F, ., .),
    "freeze_video": bool tensor ()}``
    """
    clips = np.asarray(view.stim_file).astype(str)
    n = len(view)
    if n < 2:
        raise ValueError(f"Stage I needs at least 2 training trials, got {n}")

    def sample_batch(i: int, rng: np.random.Generator) -> dict:
        perm = rng.permutation(n)
        _, first = np.unique(clips[perm], return_index=True)     # one trial per clip
        sel = np.sort(perm[np.sort(first)][:batch_size])
        return {"blocks": torch.from_numpy(view.blocks(sel)), "video": video.get(clips[sel]),
                "freeze_video": torch.tensor(i < freeze_video_until)}

    return sample_batch


def stage1_loss_fn(stage1_cfg) -> Callable:
    """``loss_fn(model, batch) -> (loss, {"clip", "l2l1"})`` of eq. 2 for the training loop.

    The value is :func:`~llm4brain.training.losses.stage1_loss` ``(z, x)``. With
    ``stage1.l2l1_detach_video`` (default) the L2/L1 term treats the video tokens as a fixed
    target (stop-gradient on ``x``): it moves the fMRI side only, while the CLIP term trains
    both sides. Without it, the video Q-Former's adaptors minimise L2/L1 by pulling every
    clip's tokens onto the (initially almost constant) fMRI tokens, and both sides collapse
    to one vector (measured on the default profile: CLIP stuck at exactly ``2 ln B``).

    Batches flagged ``freeze_video`` (the first ``stage1.video_warmup`` share of the steps)
    detach ``x`` in both terms: while the fMRI tokens carry no information yet, the CLIP
    term alone also favours collapsing the video tokens (uniform logits beat random ones), so
    the video adaptors start training once the fMRI side has found some signal.
    """
    s = stage1_cfg
    detach = bool(getattr(s, "l2l1_detach_video", True))

    def loss_fn(model, batch):
        z, x = model(batch["blocks"], batch["video"])
        if bool(batch.get("freeze_video", False)):
            x = x.detach()
        if not detach:
            total, terms = stage1_loss(z, x, beta=s.beta, alpha=s.alpha, tau=s.tau, pool=s.pool)
            return total, {"clip": terms["clip"], "l2l1": terms["l2l1"]}
        lc = clip_loss(pool_tokens(z, s.pool), pool_tokens(x, s.pool), s.tau)
        lr = l2l1_loss(z, x.detach(), s.alpha)
        total = s.beta * lc + (1.0 - s.beta) * lr
        return total, {"clip": float(lc.detach()), "l2l1": float(lr.detach())}

    return loss_fn


@dataclass
class Stage1Result:
    """What :func:`train_stage1` returns.

    model : Stage1Model (eval mode); log : loss log (step, loss, clip, l2l1, lr, ...);
    run_name : str; trained : False when a finished run was loaded; video : VideoInputs of
    the training, validation and target-evaluation clips.
    """

    model: Stage1Model
    log: pd.DataFrame
    run_name: str
    trained: bool
    video: VideoInputs | None = None


def _pretrained_parts(cfg, tc, vlm=None, mae=None):
    from .mae import load_pretrained_mae
    from .vlpretrain import load_video_llm

    if vlm is None:
        vlm = load_video_llm(cfg)
    if not cfg.mae.pretrained:       # ablation: the encoder as initialised, no SC-MBM
        from ..models.encoder import build_encoder

        return (build_encoder(cfg, tc.block_shape, tc.mask, getattr(tc, "affine", None),
                              seed=cfg.run.seed, load_checkpoint=False), vlm.branch)
    if mae is None:
        mae = load_pretrained_mae(cfg, tc.block_shape, tc.mask, tc.affine)
    return mae.encoder, vlm.branch


def _needed_clips(tc, splits) -> list[str]:
    rows = np.concatenate([splits.train_idx, splits.val_idx, splits.eval_idx]).astype(int)
    return tc.trials["stim_file"].astype(str).to_numpy()[np.sort(rows)].tolist()


def train_stage1(cfg, tc, splits, *, vlm=None, features=None, mae=None, overwrite: bool = False,
                 progress: bool = True, name: str | None = None) -> Stage1Result:
    """Train (or load) Stage I with the shared training loop.

    Parameters
    ----------
    cfg : Config
        ``cfg.stage1`` (steps, batch size, lr, beta, alpha, tau, pool, projector, ...),
        ``cfg.adaptor``, ``cfg.train``, ``cfg.run`` (seed, device).
    tc : TrialCache
    splits : Splits
        Only ``source_view(tc, splits, "train")`` is trained on.
    vlm : VideoLLM, optional
        Pretrained video-LLM (default :func:`llm4brain.training.vlpretrain.load_video_llm`).
    features : FrameFeatureCache, optional
        Default :func:`llm4brain.training.vlpretrain.video_features`.
    mae : MaskedBrainModel, optional
        Default :func:`llm4brain.training.mae.load_pretrained_mae`.
    overwrite : bool
        Retrain even when a finished run of these settings exists.
    name : str, optional
        Checkpoint name (default :func:`stage1_run_name`; tuning runs add their
        pseudo-target, :func:`llm4brain.training.tuning.pseudo_run_name`).

    Returns
    -------
    Stage1Result
    """
    from .loop import fit
    from .vlpretrain import video_features

    from ..models.llm import default_device

    encoder, branch = _pretrained_parts(cfg, tc, vlm, mae)
    model = build_stage1_model(cfg, encoder, branch).to(default_device(cfg))
    if features is None:
        features = video_features(cfg, progress=progress)
    video = VideoInputs(model, features, _needed_clips(tc, splits),
                        batch_size=cfg.stage1.eval_batch_size, progress=progress)
    view = source_view(tc, splits, "train")
    name = stage1_run_name(cfg) if name is None else name
    model.train()
    align = cfg.stage1.align     # off (ablation): one step at lr 0 saves the initial model
    res = fit(model, stage1_loss_fn(cfg.stage1),
              make_stage1_sampler(view, video, cfg.stage1.batch_size,
                                  int(round(cfg.stage1.video_warmup * cfg.stage1.steps))
                                  * cfg.train.grad_accum), run_dir=cfg.run_dir,
              name=name, steps=cfg.stage1.steps if align else 1,
              lr=cfg.stage1.lr if align else 0.0, loop_cfg=cfg.train,
              seed=cfg.run.seed, weight_decay=cfg.stage1.weight_decay, overwrite=overwrite,
              progress=progress, config=cfg, device=cfg.run.device)
    res.model.eval()
    return Stage1Result(res.model, res.log, name, res.trained, video)


def load_stage1(cfg, tc, *, vlm=None, mae=None) -> Stage1Model:
    """The trained Stage I model of ``cfg`` (eval mode).

    Raises
    ------
    FileNotFoundError
        When Stage I has not finished for these settings (run notebook 03).
    """
    from .loop import checkpoint_path, load_checkpoint

    path = checkpoint_path(cfg.run_dir, stage1_run_name(cfg))
    if not path.is_file():
        raise FileNotFoundError(f"no Stage I checkpoint for these settings at {path}: run "
                                f"notebook 03_stage1_alignment (train_stage1) first")
    from ..models.llm import default_device

    encoder, branch = _pretrained_parts(cfg, tc, vlm, mae)
    model = build_stage1_model(cfg, encoder, branch)
    info = load_checkpoint(model, path)
    if not info.get("finished"):
        raise FileNotFoundError(f"Stage I run at {path} is unfinished (step {info.get('step')});"
                                f" resume it with train_stage1(cfg, ...)")
    return model.to(default_device(cfg)).eval()


# ============================================================================ embeddings
@torch.no_grad()
def embed_fmri(model: Stage1Model, get_blocks: Callable[[np.ndarray], np.ndarray], n: int,
               batch_size: int = 64, progress: bool = False) -> torch.Tensor:
    """fMRI tokens of ``n`` trials: float32 tensor (n, L, H) on the CPU.

    Parameters
    ----------
    model : Stage1Model
    get_blocks : callable ``positions -> array (b, T, X, Y, Z)``
        E.g. ``view.blocks`` of a guard view.
    n : int
    """
    model.eval()
    dev = next(model.projector.parameters()).device
    out = []
    for s in tqdm(range(0, n, batch_size), desc="fMRI tokens", disable=not progress):
        b = torch.from_numpy(np.asarray(get_blocks(np.arange(s, min(n, s + batch_size))),
                                        dtype=np.float32))
        out.append(model.fmri_tokens(b.to(dev)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def embed_clips(model: Stage1Model, video: VideoInputs, stim_files: Sequence[str],
                batch_size: int = 64) -> torch.Tensor:
    """Video tokens (n, L, H) of clips (float32, CPU)."""
    model.eval()
    dev = next(model.projector.parameters()).device
    files = list(stim_files)
    out = [model.video_tokens(video.get(files[s:s + batch_size]).to(dev)).float().cpu()
           for s in range(0, len(files), batch_size)]
    return torch.cat(out) if out else torch.empty(0)


def voxel_features(get_blocks: Callable[[np.ndarray], np.ndarray], n: int, mask: np.ndarray,
                   how: str = "mean", batch_size: int = 64) -> np.ndarray:
    """Ridge inputs: brain-mask voxels of each block, averaged over its T volumes.

    Parameters
    ----------
    get_blocks : callable ``positions -> (b, T, X, Y, Z)``
    n : int
    mask : bool array (X, Y, Z)
    how : ``mean`` (average the T volumes: (n, V)) or ``flat`` (all volumes: (n, T * V))

    Returns
    -------
    float32 array
    """
    if how not in ("mean", "flat"):
        raise ValueError(f"voxel_features: how must be 'mean' or 'flat', got {how!r}")
    m = np.asarray(mask, bool)
    out = []
    for s in range(0, n, batch_size):
        b = np.asarray(get_blocks(np.arange(s, min(n, s + batch_size))), np.float32)[:, :, m]
        out.append(b.mean(1) if how == "mean" else b.reshape(len(b), -1))
    return np.concatenate(out) if out else np.zeros((0, int(m.sum())), np.float32)


# ============================================================================ evaluation
def stage1_results_dir(cfg) -> Path:
    """``<run_dir>/results/stage1``."""
    return Path(cfg.run_dir) / "results" / "stage1"


@dataclass
class Stage1Evaluation:
    """Retrieval of Stage I and of the ridge baseline.

    Attributes
    ----------
    retrieval : DataFrame
        One row per (split, subject or ``all``, method): top1, top5, chance_top1,
        chance_top5, p_value (top-1 permutation test), n_trials, n_candidates.
    embeddings : dict of split -> dict
        ``z`` (n, H) pooled fMRI embedding, ``x`` (n, H) pooled video embedding, ``ridge``
        (n, H) ridge prediction (val / eval), ``meta`` DataFrame (subject, class_id,
        class_name, stim_file, clip_id, row).
    ridge_alpha : float
        Alpha chosen by cross-validation.
    paths : dict of str -> Path
        Files written.
    """

    retrieval: pd.DataFrame
    embeddings: dict
    ridge_alpha: float
    paths: dict = field(default_factory=dict)


def _meta(view) -> pd.DataFrame:
    return pd.DataFrame(dict(subject=view.subject, class_id=view.class_id,
                             class_name=view.class_name, stim_file=view.stim_file,
                             clip_id=view.clip_id, row=view.rows))


def _retrieval_rows(split: str, method: str, pred: np.ndarray, cand: np.ndarray,
                    meta: pd.DataFrame, n_candidates: int, n_perm: int, seed: int) -> list[dict]:
    from ..evaluation.retrieval import permutation_test, retrieval_accuracy

    rows = []
    groups = [("all", np.arange(len(meta)))] + [
        (str(s), np.flatnonzero(meta["subject"].astype(str).to_numpy() == s))
        for s in sorted(meta["subject"].astype(str).unique())]
    for who, idx in groups:
        n_cand = min(n_candidates, len(np.unique(meta["stim_file"].to_numpy()[idx])))
        if n_cand < 2:
            continue
        ks = tuple(sorted({1, min(5, n_cand)}))
        clips = meta["stim_file"].to_numpy()[idx]
        acc = retrieval_accuracy(pred[idx], cand[idx], n_cand, k=ks, rng=seed, groups=clips)
        perm = permutation_test(pred[idx], cand[idx], n_cand, k=1, n_permutations=n_perm,
                                rng=seed, groups=clips)
        rows.append(dict(split=split, subject=who, method=method, top1=acc["top1"],
                         top5=acc.get("top5", acc[f"top{ks[-1]}"]),
                         chance_top1=acc["chance_top1"],
                         chance_top5=acc.get("chance_top5", acc[f"chance_top{ks[-1]}"]),
                         p_value=perm["p_value"], n_trials=len(idx), n_candidates=n_cand))
    return rows


def evaluate_stage1(cfg, model: Stage1Model, tc, splits, video: VideoInputs, *,
                    save: bool = True, progress: bool = True) -> Stage1Evaluation:
    """Retrieval of Stage I and of the ridge baseline; results written to ``results/stage1``.

    Splits scored: ``val`` (held-out runs of training subjects) and ``eval`` (target
    subjects' evaluation trials, :func:`~llm4brain.training.guard.target_evaluation_view`).
    Both methods are scored against the same candidates (pooled Stage I video embeddings)
    with the same distractors (seed ``cfg.run.seed``).

    Files: ``retrieval.csv``, ``summary.json`` (settings, ridge alpha, target numbers),
    ``embeddings.npz`` (per split: ``<split>_z``, ``<split>_x``, ``<split>_ridge``,
    ``<split>_rows``) and ``embeddings_meta.tsv``.
    """
    from ..config import save_config
    from ..evaluation.ridge import RidgeCV

    s = cfg.stage1
    views = {"train": source_view(tc, splits, "train"), "val": source_view(tc, splits, "val"),
             "eval": target_evaluation_view(tc, splits)}
    emb: dict[str, dict] = {}
    for split, view in views.items():
        z = embed_fmri(model, view.blocks, len(view), s.eval_batch_size, progress)
        x = embed_clips(model, video, view.stim_file, s.eval_batch_size)
        emb[split] = dict(z=pool_tokens(z, s.pool).numpy(), x=pool_tokens(x, s.pool).numpy(),
                          meta=_meta(view))
    # ridge baseline: voxels -> pooled video embedding, alpha by CV on training trials
    X = {k: voxel_features(v.blocks, len(v), tc.mask) for k, v in views.items()}
    ridge = RidgeCV(alphas=s.ridge_alphas, cv=s.ridge_cv).fit(X["train"], emb["train"]["x"])
    for split in ("val", "eval"):
        emb[split]["ridge"] = ridge.predict(X[split]).astype(np.float32)
    rows = []
    for split in ("val", "eval"):
        e = emb[split]
        for method, pred in (("stage1", e["z"]), ("ridge", e["ridge"])):
            rows += _retrieval_rows(split, method, pred, e["x"], e["meta"], s.n_candidates,
                                    s.n_permutations, cfg.run.seed)
    table = pd.DataFrame(rows)
    out = Stage1Evaluation(table, emb, float(np.atleast_1d(ridge.alpha_)[0]))
    if save:
        d = stage1_results_dir(cfg)
        d.mkdir(parents=True, exist_ok=True)
        table.to_csv(d / "retrieval.csv", index=False)
        arrays = {}
        for split, e in emb.items():
            for key in ("z", "x", "ridge"):
                if key in e:
                    arrays[f"{split}_{key}"] = e[key]
            arrays[f"{split}_rows"] = e["meta"]["row"].to_numpy()
        np.savez(d / "embeddings.npz", **arrays)
        pd.concat([e["meta"].assign(split=k) for k, e in emb.items()]).to_csv(
            d / "embeddings_meta.tsv", sep="\t", index=False)
        tgt = table[(table.split == "eval") & (table.subject == "all")].set_index("method")
        summary = dict(run_name=stage1_run_name(cfg), ridge_alpha=out.ridge_alpha,
                       n_candidates=s.n_candidates, n_permutations=s.n_permutations,
                       target=tgt[["top1", "top5", "chance_top1", "p_value", "n_trials"]]
                       .to_dict(orient="index"))
        (d / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
        save_config(cfg, d)
        out.paths = {k: d / f for k, f in (("retrieval", "retrieval.csv"),
                                           ("embeddings", "embeddings.npz"),
                                           ("meta", "embeddings_meta.tsv"),
                                           ("summary", "summary.json"))}
    return out


def load_stage1_results(cfg) -> tuple[dict, pd.DataFrame]:
    """``(arrays, meta)`` saved by :func:`evaluate_stage1` (``embeddings.npz`` and its TSV).

    Raises
    ------
    FileNotFoundError
        When notebook 03 has not written them for this profile.
    """
    d = stage1_results_dir(cfg)
    if not (d / "embeddings.npz").is_file():
        raise FileNotFoundError(f"no Stage I results in {d}: run notebook 03_stage1_alignment")
    with np.load(d / "embeddings.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = pd.read_csv(d / "embeddings_meta.tsv", sep="\t", dtype={"subject": str},
                       keep_default_na=False)
    return arrays, meta
