"""Training of the embedded image decoder (VAE) and of NVL's dual-stream heads.

The VAE learns on frames of the captioned **pretraining corpus** only (clips no subject saw):
:func:`vae_training_frames` takes them from notebook 01's frame cache by the stimulus table's
``corpus`` column and refuses any clip that is also a subject's stimulus
(:func:`llm4brain.training.vlpretrain.check_corpus_disjoint`).

The dual-stream heads (:class:`llm4brain.reconstruction.dual_stream.DualStreamHeads`) read the Stage I
fMRI embedding of a trial (the pooled output of the fMRI encoder + projection adaptor saved by
notebook 03) and are trained on the **training subjects' training trials** only:

.. math::
    L = w \\, L_{CLIP}(\\hat h, h) + (1 - w) \\, \\lVert \\hat l - l \\rVert_2^2

with ``h`` the frame encoder's late features of the trial's clip, averaged over its frames and
patches (notebook 03's frame-feature cache; the high-level
embedding; the contrastive loss of paper eq. 1 with ``recon.high_tau``), ``l`` the VAE latent
(mean) of the key frame (the low-level embedding) and ``w = recon.high_weight``.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..config import identity, run_key
from .dual_stream import DualStreamHeads
from .vae import FrameVAE, to_tensor_images, vae_loss
from ..training.loop import fit
from ..training.losses import clip_loss
from ..training.vlpretrain import check_corpus_disjoint

__all__ = ["vae_training_frames", "vae_run_name", "train_frame_vae", "heads_run_name",
           "dual_stream_loss", "train_dual_heads", "Standardizer"]

_VAE_PREFIX = "recon_vae"
_HEAD_PREFIX = "recon_heads"
_VAE_KEYS = ("image_size", "vae_latent", "vae_channels", "vae_kl_weight", "vae_steps",
             "vae_batch_size", "vae_lr")
_HEAD_KEYS = ("high_weight", "high_tau", "head_hidden", "head_steps", "head_batch_size",
              "head_lr", "head_weight_decay")


@contextlib.contextmanager
def _one_thread():
    """Train the small VAE and heads on one intra-op thread: on the 2-core test machine, with
    other processes running, one thread was 5-20x faster per step than two (0.06 vs 1.1 s for
    a VAE step), as the models are too small to gain from splitting each operation."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _loop_cfg(cfg):
    """``cfg.train`` with checkpoints at least 100 steps apart (the models train in seconds)."""
    return dataclasses.replace(cfg.train, checkpoint_every=max(100, cfg.train.checkpoint_every),
                               log_every=max(5, cfg.train.log_every))


def vae_training_frames(stim: pd.DataFrame, frame_cache) -> np.ndarray:
    """Every cached frame of every pretraining-corpus clip, uint8 (N, H, W, 3).

    Parameters
    ----------
    stim : DataFrame
        Stimulus table with ``stim_file`` and ``corpus`` (:func:`llm4brain.data.load_stimuli`).
    frame_cache : FrameCache
        Notebook 01's frame cache (subjects' and pretraining clips).

    Raises
    ------
    ValueError
        When the table has no pretraining clip with frames, or a pretraining clip is also a
        subject's stimulus (same id, file, path or bytes).
    """
    if "corpus" not in stim.columns:
        raise ValueError("the stimulus table has no 'corpus' column; load it with "
                         "llm4brain.data.load_stimuli(cfg)")
    check_corpus_disjoint(stim)
    subj = set(stim.loc[stim["corpus"] == "subjects", "stim_file"].astype(str))
    pre = [s for s in stim.loc[stim["corpus"] == "pretrain", "stim_file"].astype(str)
           if s not in subj]
    cached = set(frame_cache.index["stim_file"].astype(str))
    rows = [frame_cache.row(s) for s in pre if s in cached]
    if not rows:
        raise ValueError("no pretraining-corpus clip has frames in the frame cache: the VAE "
                         "learns only on clips no subject saw (sim.n_pretrain_clips > 0; run "
                         "notebook 01 to cache their frames)")
    fr = np.asarray(frame_cache.frames[np.sort(rows)])
    return fr.reshape((-1,) + fr.shape[2:])


def vae_run_name(cfg) -> str:
    """``recon_vae-<hash>`` of the VAE's settings, the corpus (sim) and the frames."""
    r = cfg.recon
    key = dict(vae={k: getattr(r, k) for k in _VAE_KEYS}, sim=identity(cfg, "sim"),
               data=dict(root=cfg.data.root, n_frames=cfg.data.n_frames,
                         frame_size=cfg.data.frame_size), seed=cfg.run.seed)
    return run_key(_VAE_PREFIX, key)


def train_frame_vae(cfg, frames: np.ndarray, *, progress: bool = True,
                    overwrite: bool = False) -> tuple[FrameVAE, pd.DataFrame, bool]:
    """Train (or reload) the VAE on ``frames`` (uint8 (N, H, W, 3), from
    :func:`vae_training_frames`).

    Returns
    -------
    (vae in eval mode, loss log, trained_here)
    """
    r = cfg.recon
    x = to_tensor_images(frames, r.image_size)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.run.seed)
        vae = FrameVAE(r.image_size, r.vae_latent, r.vae_channels)
    bs = min(r.vae_batch_size, len(x))

    def sample(i, rng):
        return x[torch.from_numpy(rng.choice(len(x), bs, replace=False))]

    def loss_fn(model, batch):
        return vae_loss(model, batch, r.vae_kl_weight)

    vae.train()
    with _one_thread():
        res = fit(vae, loss_fn, sample, run_dir=cfg.run_dir, name=vae_run_name(cfg),
                  steps=r.vae_steps, lr=r.vae_lr, loop_cfg=_loop_cfg(cfg), seed=cfg.run.seed,
                  overwrite=overwrite, progress=progress, config=cfg, device="cpu")
    res.model.eval()
    return res.model, res.log, res.trained


class Standardizer:
    """Column-wise z-scoring with the mean and sd of the rows it was fitted on."""

    def __init__(self, X: np.ndarray):
        X = np.asarray(X, dtype=np.float64)
        self.mean, self.sd = X.mean(0), X.std(0)
        self.sd[self.sd < 1e-8] = 1.0

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, dtype=np.float64) - self.mean) / self.sd).astype(np.float32)

    def inverse(self, Z: np.ndarray) -> np.ndarray:
        """Back to the original units: ``Z * sd + mean`` (float32)."""
        return (np.asarray(Z, dtype=np.float64) * self.sd + self.mean).astype(np.float32)


def heads_run_name(cfg, stage1_name: str) -> str:
    """``recon_heads-<hash>`` of the heads' settings, the Stage I run and the VAE."""
    r = cfg.recon
    key = dict(heads={k: getattr(r, k) for k in _HEAD_KEYS}, stage1=stage1_name,
               vae=vae_run_name(cfg), video=identity(cfg, "video"), seed=cfg.run.seed)
    if r.decoder != "vae":       # high-level targets from the unCLIP pipeline's image encoder
        key["high"] = dict(decoder=r.decoder, path=r.diffusion_path)
    return run_key(_HEAD_PREFIX, key)


def dual_stream_loss(high_pred: torch.Tensor, high: torch.Tensor, low_pred: torch.Tensor,
                     low: torch.Tensor, high_weight: float, tau: float):
    """NVL's two-stream loss: ``w * CLIP(high) + (1 - w) * MSE(low)`` (see module docstring).

    Returns
    -------
    (loss, terms) with ``terms`` = ``clip``, ``mse`` (floats).
    """
    c = clip_loss(high_pred, high, tau) if high_weight > 0 else high_pred.sum() * 0
    m = F.mse_loss(low_pred, low)
    return high_weight * c + (1 - high_weight) * m, {"clip": c.item(), "mse": m.item()}


def _loss_fn(r) -> Callable:
    def loss_fn(model, batch):
        hp, lp = model(batch["z"])
        return dual_stream_loss(hp, batch["high"], lp, batch["low"], r.high_weight, r.high_tau)
    return loss_fn


def train_dual_heads(cfg, z: np.ndarray, high: np.ndarray, low: np.ndarray,
                     clips: np.ndarray, *, name: str, progress: bool = True,
                     overwrite: bool = False) -> tuple[DualStreamHeads, pd.DataFrame, bool]:
    """Train (or reload) the two heads on training trials.

    Parameters
    ----------
    z : (N, D) standardised Stage I embeddings of the training subjects' training trials
    high : (N, Dh) standardised high-level targets; low : (N, Dl) standardised VAE latents
    clips : (N,) clip of each trial (a batch holds distinct clips: no false negatives)
    name : run name (:func:`heads_run_name`)
    """
    r = cfg.recon
    Z, H, L = (torch.as_tensor(np.asarray(a, np.float32)) for a in (z, high, low))
    clips = np.asarray(clips).astype(str)
    if not (len(Z) == len(H) == len(L) == len(clips)) or len(Z) < 2:
        raise ValueError(f"train_dual_heads: {len(Z)} embeddings, {len(H)} high, {len(L)} low "
                         f"targets, {len(clips)} clips; need the same number, at least 2")
    with torch.random.fork_rng():
        torch.manual_seed(cfg.run.seed)
        heads = DualStreamHeads(Z.shape[1], H.shape[1], L.shape[1], r.head_hidden)

    def sample(i, rng):
        perm = rng.permutation(len(Z))
        _, first = np.unique(clips[perm], return_index=True)
        sel = torch.from_numpy(np.sort(perm[np.sort(first)][:r.head_batch_size]))
        return {"z": Z[sel], "high": H[sel], "low": L[sel]}

    heads.train()
    with _one_thread():
        res = fit(heads, _loss_fn(r), sample, run_dir=cfg.run_dir, name=name,
                  steps=r.head_steps, lr=r.head_lr, loop_cfg=_loop_cfg(cfg), seed=cfg.run.seed,
                  weight_decay=r.head_weight_decay, overwrite=overwrite, progress=progress,
                  config=cfg, device="cpu")
    res.model.eval()
    return res.model, res.log, res.trained
