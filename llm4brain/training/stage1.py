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
``x`` (B, L, H) (the model: :mod:`llm4brain.models.stage1`). The loss is eq. 2,
``beta * CLIP(pool(z), pool(x)) + (1 - beta) * L2L1(z, x)``
(:func:`llm4brain.training.losses.stage1_loss`).

Evaluation (top-1 / top-5 identification beside a ridge baseline) is
:func:`llm4brain.evaluation.stage1.evaluate_stage1`.

>>> res = train_stage1(cfg, tc, splits, vlm=vlm, features=feats)     # doctest: +SKIP
>>> ev = evaluate_stage1(cfg, res.model, tc, splits, res.video)       # doctest: +SKIP
>>> ev.retrieval                                                       # doctest: +SKIP
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..config import identity, run_key
from ..data import voxel_features
from ..models.encoder import build_encoder
from ..models.llm import default_device
from ..models.stage1 import (Stage1Model, VideoInputs, build_stage1_model, embed_clips,
                             embed_fmri)
from .concepts import concept_values, fit_concepts
from .guard import SourceView, source_view
from .loop import checkpoint_path, fit, load_checkpoint, read_checkpoint
from .losses import clip_loss, l2l1_loss, pool_tokens, stage1_loss
from .mae import load_pretrained_mae
from .vlpretrain import load_video_llm, video_features, video_llm_id

__all__ = ["stage1_run_name", "make_stage1_sampler", "stage1_loss_fn", "Stage1Result",
           "train_stage1", "load_stage1", "fit_input_mask", "fit_voxel_readout",
           "selective_voxels"]


def stage1_run_name(cfg) -> str:
    """``stage1-<hash>`` of every setting that determines the trained Stage I model.

    Evaluation settings, the spatial projector's sizes with another projector and the
    ablation switches at their default stay out of it
    (:data:`llm4brain.config.NOT_IDENTITY`, :data:`llm4brain.config.IDENTITY_OFF_DEFAULT`).
    """
    key = dict(stage1=identity(cfg, "stage1"), tokenizer=identity(cfg, "tokenizer"),
               encoder=identity(cfg, "encoder"), adaptor=identity(cfg, "adaptor"),
               mae=identity(cfg, "mae"), video=video_llm_id(cfg), data=identity(cfg, "data"),
               sim=identity(cfg, "sim"), seed=cfg.run.seed, loop=identity(cfg, "train"))
    return run_key("stage1", key)


def make_stage1_sampler(view: SourceView, video: VideoInputs, batch_size: int,
                        freeze_video_until: int = 0,
                        concepts: dict[str, np.ndarray] | None = None) -> Callable:
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
    concepts : dict concept -> int array (n,), optional
        The trials' concept values (:func:`concept_values`), batched as ``"concepts"``.

    Returns
    -------
    callable ``(i, rng) -> {"blocks": (B, T, X, Y, Z), "video": (B, F, ., .),
    "freeze_video": bool tensor (), "labels": (B,)[, "concepts": {concept: (B,)}]}``
    """
    clips = np.asarray(view.stim_file).astype(str)
    labels = np.asarray(view.class_id).astype(np.int64)
    n = len(view)
    if n < 2:
        raise ValueError(f"Stage I needs at least 2 training trials, got {n}")

    def sample_batch(i: int, rng: np.random.Generator) -> dict:
        perm = rng.permutation(n)
        _, first = np.unique(clips[perm], return_index=True)     # one trial per clip
        sel = np.sort(perm[np.sort(first)][:batch_size])
        out = {"blocks": torch.from_numpy(view.blocks(sel)), "video": video.get(clips[sel]),
               "freeze_video": torch.tensor(i < freeze_video_until),
               "labels": torch.from_numpy(labels[sel])}
        if concepts:
            out["concepts"] = {c: torch.from_numpy(np.asarray(v, np.int64)[sel])
                               for c, v in concepts.items()}
        return out

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

    With the ``concept`` projector and ``stage1.concept_ce > 0``, the heads' mean
    cross-entropy over the concepts (batch ``"concepts"``) is added with that weight
    (term ``"concept_ce"``).
    """
    s = stage1_cfg
    detach = bool(getattr(s, "l2l1_detach_video", True))
    soft_tau = float(getattr(s, "soft_tau", 0.0))
    center = bool(getattr(s, "center", False))
    lw = float(getattr(s, "class_targets", 0.0))

    ce_w = float(getattr(s, "concept_ce", 0.0))

    def loss_fn(model, batch):
        ce = None
        if getattr(model, "concepts", False):
            logits = model.concept_logits(batch["blocks"])
            z, x = model.projector.mix(logits), model.video_tokens(batch["video"])
            if ce_w > 0:
                if "concepts" not in batch:
                    raise ValueError("stage1.concept_ce > 0 needs the trials' concept values in "
                                     "the batch (make_stage1_sampler(..., concepts=...))")
                ce = torch.stack([torch.nn.functional.cross_entropy(logits[c].float(), v)
                                  for c, v in batch["concepts"].items()]).mean()
        else:
            z, x = model(batch["blocks"], batch["video"])
        if bool(batch.get("freeze_video", False)):
            x = x.detach()
        if not detach:
            total, terms = stage1_loss(z, x, beta=s.beta, alpha=s.alpha, tau=s.tau, pool=s.pool,
                                       soft_tau=soft_tau, center=center,
                                       labels=batch.get("labels"), label_weight=lw)
            terms = {"clip": terms["clip"], "l2l1": terms["l2l1"]}
        else:
            lc = clip_loss(pool_tokens(z, s.pool), pool_tokens(x, s.pool), s.tau, soft_tau,
                           center, batch.get("labels"), lw)
            lr = l2l1_loss(z, x.detach(), s.alpha)
            total = s.beta * lc + (1.0 - s.beta) * lr
            terms = {"clip": float(lc.detach()), "l2l1": float(lr.detach())}
        if ce is not None:
            total = total + ce_w * ce
            terms["concept_ce"] = float(ce.detach())
        return total, terms

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
    if vlm is None:
        vlm = load_video_llm(cfg)
    if not cfg.mae.pretrained:       # ablation: the encoder as initialised, no SC-MBM
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
    encoder, branch = _pretrained_parts(cfg, tc, vlm, mae)
    view = source_view(tc, splits, "train")
    values, sizes = None, None
    if cfg.stage1.projector == "concept":
        values, names = concept_values(cfg, view)
        sizes = {c: len(v) for c, v in names.items()}
    model = build_stage1_model(cfg, encoder, branch, mask=tc.mask,
                               concept_sizes=sizes).to(default_device(cfg))
    if features is None:
        features = video_features(cfg, progress=progress)
    video = VideoInputs(model, features, _needed_clips(tc, splits),
                        batch_size=cfg.stage1.eval_batch_size, progress=progress)
    name = stage1_run_name(cfg) if name is None else name
    if values is not None:            # the same: a checkpoint replaces what is set here
        fit_concepts(cfg, model, view, video, tc.mask, values)
    if model.readout is not None:     # a resumed or finished run's checkpoint replaces it
        fit_voxel_readout(cfg, model, view, video, tc.mask)
    if model.input_mask is not None:  # the same: the checkpoint holds the mask it trained with
        fit_input_mask(cfg, model, view, tc.mask, video)
    model.train()
    align = cfg.stage1.align     # off (ablation): one step at lr 0 saves the initial model
    stopper = (EarlyStopping(model, tc, splits, video, cfg.stage1)
               if align and cfg.stage1.early_stopping_every else None)
    res = fit(model, stage1_loss_fn(cfg.stage1),
              make_stage1_sampler(view, video, cfg.stage1.batch_size,
                                  int(round(cfg.stage1.video_warmup * cfg.stage1.steps))
                                  * cfg.train.grad_accum, values), run_dir=cfg.run_dir,
              name=name, steps=cfg.stage1.steps if align else 1,
              lr=cfg.stage1.lr if align else 0.0, loop_cfg=cfg.train,
              seed=cfg.run.seed, weight_decay=cfg.stage1.weight_decay, overwrite=overwrite,
              progress=progress, config=cfg, device=cfg.run.device,
              on_step_end=stopper)
    if stopper is not None and res.trained:
        stopper.finish(res.model, checkpoint_path(cfg.run_dir, name),
                       Path(cfg.run_dir) / "logs" / f"{name}.early_stopping.csv")
    res.model.eval()
    return Stage1Result(res.model, res.log, name, res.trained, video)


def pairwise_identification(z: np.ndarray, x: np.ndarray) -> float:
    """Share of (trial, other clip) pairs in which the trial's own clip is the more similar
    (centred cosine; rows of ``z`` and ``x`` already centred): 0.5 is chance. Less noisy than
    top-1 among 20 on a few hundred trials, so it chooses the early-stopping step."""
    zn = z / np.linalg.norm(z, axis=1, keepdims=True).clip(1e-12)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    S = zn @ xn.T
    own = np.diag(S)[:, None]
    n = len(S)
    return float((S < own).sum() / (n * (n - 1))) if n > 1 else float("nan")


class EarlyStopping:
    """``stage1.early_stopping_every``: every that many steps, score the model on the
    training subjects' **validation runs** (:func:`pairwise_identification`, centred on the
    means of up to 256 training trials) and keep the trainable weights of the best step;
    :meth:`finish` puts them back into the model and into the finished checkpoint, and
    writes the curve. Target subjects take no part. (A run resumed after an interruption
    starts the comparison afresh.)"""

    def __init__(self, model: Stage1Model, tc, splits, video: VideoInputs, stage1_cfg):
        self.every, self.s, self.video = int(stage1_cfg.early_stopping_every), stage1_cfg, video
        self.val = source_view(tc, splits, "val")
        if len(self.val) < 2:
            raise ValueError("stage1.early_stopping_every needs validation runs of the training "
                             "subjects (data.val_fraction > 0); set it to 0")
        tr = source_view(tc, splits, "train")
        pick = np.linspace(0, len(tr) - 1, min(256, len(tr))).round().astype(int)
        self.train_blocks = lambda idx: tr.blocks(pick[np.asarray(idx)])
        self.n_train, self.train_clips = len(pick), list(np.asarray(tr.stim_file)[pick])
        self.rows, self.best, self.best_score = [], None, -np.inf

    @torch.no_grad()
    def score(self, model) -> float:
        was = model.training
        model.eval()
        s = self.s
        ztr = pool_tokens(embed_fmri(model, self.train_blocks, self.n_train, s.eval_batch_size,
                                     False), s.pool).numpy()
        xtr = pool_tokens(embed_clips(model, self.video, self.train_clips, s.eval_batch_size),
                          s.pool).numpy()
        z = pool_tokens(embed_fmri(model, self.val.blocks, len(self.val), s.eval_batch_size,
                                   False), s.pool).numpy()
        x = pool_tokens(embed_clips(model, self.video, list(self.val.stim_file),
                                    s.eval_batch_size), s.pool).numpy()
        model.train(was)
        return pairwise_identification(z - ztr.mean(0), x - xtr.mean(0))

    def __call__(self, model, step: int) -> None:
        if step % self.every:
            return
        sc = self.score(model)
        self.rows.append(dict(step=step, val_pairwise=sc))
        if sc > self.best_score:
            self.best_score = sc
            self.best = (step, {k: v.detach().clone() for k, v in model.state_dict().items()})

    def finish(self, model, ckpt: Path, curve: Path) -> int:
        """Restore the best step's weights (model and checkpoint); returns that step."""
        from ..atomic import write_csv
        curve.parent.mkdir(parents=True, exist_ok=True)
        write_csv(pd.DataFrame(self.rows), curve, index=False)
        if self.best is None:
            return -1
        step, state = self.best
        model.load_state_dict(state)
        st = torch.load(ckpt, map_location="cpu", weights_only=False)
        st["model"] = {k: state[k].cpu().clone() for k in st["model"]}
        st["best_step"] = step
        tmp = ckpt.with_name(ckpt.name + ".tmp")
        torch.save(st, tmp)
        os.replace(tmp, ckpt)
        return step


def fit_voxel_readout(cfg, model: Stage1Model, view: SourceView, video: VideoInputs,
                      mask) -> dict:
    """Closed-form start of ``stage1.voxel_readout``: ridge from the training trials' voxels
    (averaged over the block's volumes) to their clips' video tokens before Stage I, rank
    ``stage1.voxel_readout_rank``, on the ``stage1.voxel_readout_voxels`` most class-selective
    voxels (0: all); returns ``{"alpha", "rank", "kept_variance", "n_voxels"}``."""
    s = cfg.stage1
    X = voxel_features(view.blocks, len(view), mask, batch_size=s.eval_batch_size)
    Y = embed_clips(model, video, list(view.stim_file), s.eval_batch_size).numpy()
    sel = None
    if 0 < s.voxel_readout_voxels < X.shape[1]:
        sel = (encoding_voxels(X, Y, s.voxel_readout_voxels) if s.select_by == "video" else
               selective_voxels(X, np.asarray(view.class_name).astype(str),
                                s.voxel_readout_voxels))
    return model.readout.fit_ridge(X, Y, s.ridge_alphas, s.ridge_cv, voxels=sel)


def fit_input_mask(cfg, model: Stage1Model, view: SourceView, mask,
                   video: VideoInputs | None = None) -> np.ndarray:
    """``stage1.input_voxels``: set ``model.input_mask`` to the ``k`` brain-mask voxels whose
    one-way ANOVA F of the training trials' class is largest (block means over the volumes,
    :func:`selective_voxels`); returns the selected voxels as a bool array (X, Y, Z).

    Only the training subjects' training trials (``view``) choose them; the mask then applies
    unchanged to every trial the model reads, held-out runs and target subjects included."""
    k = int(cfg.stage1.input_voxels)
    m = np.asarray(mask, bool)
    if model.input_mask is None or not k:
        raise ValueError("fit_input_mask: the model has no input mask (stage1.input_voxels is 0)")
    if k > int(m.sum()):
        raise ValueError(f"stage1.input_voxels = {k} is more than the {int(m.sum())} voxels of the "
                         f"brain mask: use at most that (0 reads every voxel)")
    X = voxel_features(view.blocks, len(view), m, batch_size=cfg.stage1.eval_batch_size)
    if cfg.stage1.select_by == "video":
        if video is None:
            raise ValueError("stage1.select_by: video needs the clips' video inputs "
                             "(fit_input_mask(..., video=...))")
        Y = embed_clips(model, video, list(view.stim_file), cfg.stage1.eval_batch_size).numpy()
        sel = encoding_voxels(X, Y, k, setting="stage1.input_voxels")
    else:
        sel = selective_voxels(X, np.asarray(view.class_name).astype(str), k,
                               "stage1.input_voxels")
    keep = np.zeros(m.size, bool)
    keep[np.flatnonzero(m.ravel())[sel]] = True
    keep = keep.reshape(m.shape)
    with torch.no_grad():
        model.input_mask.copy_(torch.from_numpy(keep.astype(np.float32)))
    return keep


def selective_voxels(X: np.ndarray, labels, k: int,
                     setting: str = "stage1.voxel_readout_voxels") -> np.ndarray:
    """Indices of the ``k`` columns of ``X`` whose one-way ANOVA F of ``labels`` is largest
    (``setting``: ``stage1.voxel_readout_voxels`` or ``stage1.input_voxels``), in column
    order; constant columns rank last."""
    from sklearn.feature_selection import f_classif
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError(f"{setting}: the training trials hold one class; the voxel selection "
                         f"needs two or more (set the key to 0)")
    with np.errstate(divide="ignore", invalid="ignore"):
        F = np.nan_to_num(f_classif(np.asarray(X, np.float64), labels)[0], nan=-1.0)
    return np.sort(np.argsort(-F, kind="stable")[:int(k)])


def encoding_voxels(X: np.ndarray, Y: np.ndarray, k: int, n_components: int = 20,
                    setting: str = "stage1.voxel_readout_voxels") -> np.ndarray:
    """Indices of the ``k`` columns of ``X`` (voxels, n trials) best explained by the trials'
    video embeddings ``Y`` (n, ...): adjusted R^2 of each voxel's least-squares fit on the
    first ``n_components`` principal components of ``Y`` (an encoding model), in column order.
    Needs no labels, so it serves datasets whose clips carry only a class (HAD) as well."""
    X = np.asarray(X, np.float64)
    Y = np.asarray(Y, np.float64).reshape(len(Y), -1)
    n = len(X)
    q = int(min(n_components, n - 2, Y.shape[1]))
    if q < 1 or k < 1:
        raise ValueError(f"{setting}: the voxel selection by video needs >= 3 training trials "
                         f"and k >= 1 (got {n} trials, k = {k})")
    Yc = Y - Y.mean(0)
    U = np.linalg.svd(Yc, full_matrices=False)[0][:, :q]          # orthonormal PC scores
    Xc = X - X.mean(0)
    ss = (Xc ** 2).sum(0)
    fit = ((U.T @ Xc) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss > 0, fit / ss, -np.inf)
    r2a = 1 - (1 - r2) * (n - 1) / max(n - q - 1, 1)
    return np.sort(np.argsort(-r2a, kind="stable")[:int(k)])


def load_stage1(cfg, tc, *, vlm=None, mae=None) -> Stage1Model:
    """The trained Stage I model of ``cfg`` (eval mode).

    Raises
    ------
    FileNotFoundError
        When Stage I has not finished for these settings (run notebook 03).
    """
    path = checkpoint_path(cfg.run_dir, stage1_run_name(cfg))
    if not path.is_file():
        raise FileNotFoundError(f"no Stage I checkpoint for these settings at {path}: run "
                                f"notebook 03_stage1_alignment (train_stage1) first")
    encoder, branch = _pretrained_parts(cfg, tc, vlm, mae)
    state = read_checkpoint(path)
    sizes = None
    if cfg.stage1.projector == "concept":      # the heads' sizes are saved with the weights
        sizes = dict(zip(cfg.stage1.concepts,
                         (int(v) for v in state["model"]["projector.concept_sizes"].tolist())))
    model = build_stage1_model(cfg, encoder, branch, mask=tc.mask, concept_sizes=sizes)
    info = load_checkpoint(model, path, state=state)
    if not info.get("finished"):
        raise FileNotFoundError(f"Stage I run at {path} is unfinished (step {info.get('step')});"
                                f" resume it with train_stage1(cfg, ...)")
    return model.to(default_device(cfg)).eval()
