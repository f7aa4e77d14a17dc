"""Masked brain modelling (SC-MBM) pretraining of the fMRI encoder on all training volumes.

The loss is MAE's (He et al. 2022; MinD-Vis' ``forward_loss``): the mean squared error
between the decoder's prediction and the tokenizer's patch, averaged over the *masked* tokens
only. Voxels outside the brain mask (and padding) carry zero weight.

>>> runs = iter_run_volumes(cfg, splits.train_subjects, tc)                       # doctest: +SKIP
>>> res = pretrain_mae(cfg, runs, mask=tc.mask, affine=tc.affine)                 # doctest: +SKIP
>>> res.log.plot(x="step", y="loss")                                              # doctest: +SKIP
"""
from __future__ import annotations

from functools import partial
from typing import Iterable

import numpy as np
import torch

from ..config import identity, run_key
from ..models.encoder import build_mae
from .loop import checkpoint_path, fit, load_checkpoint

__all__ = ["neighbour_fill", "mae_baselines", "class_probe", "encoder_probes", "mae_loss", "mae_loss_fn", "VolumeWindows", "volume_windows", "pretrain_mae", "mae_run_name",
           "load_pretrained_mae", "mae_reconstruction", "mae_reading"]


def mae_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
             weight: torch.Tensor | None = None, norm_target: bool = False) -> torch.Tensor:
    r"""Masked-token reconstruction loss of SC-MBM / MAE.

    .. math::
        \ell_{bn} = \frac{\sum_p w_{np}(\hat y_{bnp} - y_{bnp})^2}{\sum_p w_{np}}, \qquad
        L = \frac{\sum_{b,n} m_{bn}\,\ell_{bn}}{\sum_{b,n} m_{bn}}

    Parameters
    ----------
    pred, target : tensor (B, N, P)
        Decoder prediction and tokenizer patch of every token.
    mask : tensor (B, N)
        1 for masked tokens (the only ones that count), 0 for visible tokens.
    weight : tensor (N, P) or (B, N, P), optional
        Per-value weights (1 inside the brain, 0 outside); tokens with zero total weight are
        ignored. ``None``: all ones.
    norm_target : bool
        Standardise each target patch (over its weighted values) first (MAE ``norm_pix_loss``).

    Returns
    -------
    scalar tensor
    """
    if pred.shape != target.shape or mask.shape != pred.shape[:2]:
        raise ValueError(f"mae_loss: pred {tuple(pred.shape)}, target {tuple(target.shape)} and mask "
                         f"{tuple(mask.shape)} must be (B, N, P), (B, N, P), (B, N)")
    w = torch.ones_like(target) if weight is None else weight.to(target.dtype).expand_as(target)
    wsum = w.sum(-1)                                                   # (B, N)
    if norm_target:
        mean = (w * target).sum(-1, keepdim=True) / wsum.clamp_min(1e-8)[..., None]
        var = (w * (target - mean) ** 2).sum(-1, keepdim=True) / wsum.clamp_min(1e-8)[..., None]
        target = (target - mean) / (var + 1e-6).sqrt()
    per_token = (w * (pred - target) ** 2).sum(-1) / wsum.clamp_min(1e-8)
    m = mask.to(pred.dtype) * (wsum > 0).to(pred.dtype)
    return (per_token * m).sum() / m.sum().clamp_min(1.0)


def mae_loss_fn(model, batch: torch.Tensor, *, norm_target: bool = False):
    """``loss_fn(model, batch)`` for :func:`llm4brain.training.loop.fit`.

    Returns
    -------
    loss : scalar tensor
        :func:`mae_loss` on masked tokens.
    terms : dict
        ``mse_visible``: the same loss on the visible tokens (a diagnostic, not trained). The
        loop logs ``loss`` itself.
    """
    out = model(batch)
    loss = mae_loss(out.pred, out.target, out.mask, out.weight, norm_target)
    with torch.no_grad():
        vis = mae_loss(out.pred, out.target, 1.0 - out.mask, out.weight, norm_target)
    return loss, {"mse_visible": float(vis)}


class VolumeWindows:
    """Lazy stack of windows of T consecutive volumes: behaves like (n_blocks, T, X, Y, Z).

    Nothing is copied until indexed (runs may be memory maps), so overlapping windows of a
    whole dataset cost no memory.

    Parameters
    ----------
    runs : list of arrays (n_volumes, X, Y, Z)
    starts : int array (n_blocks, 2)
        (run index, first volume) of every window.
    n_vols : int
        T.
    """

    def __init__(self, runs: list, starts: np.ndarray, n_vols: int):
        self.runs, self.starts, self.n_vols = runs, np.asarray(starts, int).reshape(-1, 2), int(n_vols)

    @property
    def shape(self) -> tuple:
        return (len(self.starts), self.n_vols) + tuple(self.runs[0].shape[1:])

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            r, s = self.starts[idx]
            return np.asarray(self.runs[r][s:s + self.n_vols], dtype=np.float32)
        sel = self.starts[idx]
        return np.stack([np.asarray(self.runs[r][s:s + self.n_vols], dtype=np.float32) for r, s in sel]) \
            if len(sel) else np.zeros((0,) + self.shape[1:], np.float32)

    def __array__(self, dtype=None, copy=None):
        return self[np.arange(len(self))].astype(dtype or np.float32)


def volume_windows(runs: Iterable, n_vols: int, stride: int = 1, max_blocks: int = 0) -> VolumeWindows:
    """Cut every run into windows of ``n_vols`` consecutive volumes (MAE training blocks).

    Parameters
    ----------
    runs : iterable
        Arrays (n_volumes, X, Y, Z) (memory maps stay unread), or ``(subject, run, volumes)``
        tuples as yielded by :func:`llm4brain.data.iter_run_volumes`.
    n_vols : int
        T, the block length of the trial cache (``data.block_trs``).
    stride : int
        Volumes between the starts of consecutive windows (``mae.block_stride``).
    max_blocks : int
        Keep at most this many windows, evenly spaced (``mae.max_blocks``; 0 = all).

    Returns
    -------
    VolumeWindows
        Lazy, shape (n_blocks, T, X, Y, Z), float32 when indexed.
    """
    if n_vols < 1 or stride < 1:
        raise ValueError(f"volume_windows: n_vols ({n_vols}) and stride ({stride}) must be >= 1")
    arrays, starts, shape = [], [], None
    for item in runs:
        vols = item[-1] if isinstance(item, tuple) else item
        if not hasattr(vols, "ndim"):
            vols = np.asarray(vols, dtype=np.float32)
        if vols.ndim != 4:
            raise ValueError(f"volume_windows: each run must be (n_volumes, X, Y, Z), got {vols.shape}")
        if shape is not None and tuple(vols.shape[1:]) != shape:
            raise ValueError(f"volume_windows: runs on different grids {shape} vs {tuple(vols.shape[1:])}; "
                             f"use volumes from one trial cache")
        shape = tuple(vols.shape[1:])
        arrays.append(vols)
        starts += [(len(arrays) - 1, s) for s in range(0, vols.shape[0] - n_vols + 1, stride)]
    if not starts:
        raise ValueError(f"volume_windows: no run has {n_vols} volumes")
    starts = np.asarray(starts, int)
    if max_blocks and len(starts) > max_blocks:
        starts = starts[np.linspace(0, len(starts) - 1, max_blocks).round().astype(int)]
    return VolumeWindows(arrays, starts, n_vols)


def mae_run_name(cfg) -> str:
    """Name of the MAE pretraining run of this config: ``mae_<tokenizer.kind>-<hash>``.

    The hash (:func:`llm4brain.config.config_hash`) covers every setting that determines the
    pretrained weights: ``cfg.mae``, ``cfg.encoder`` (``mask_ratio``, sizes, initial
    checkpoint), ``cfg.tokenizer``, ``cfg.data`` and ``cfg.sim`` (which volumes are seen),
    ``cfg.run.seed`` and the loop settings ``cfg.train``. Changing any of them starts a new run
    instead of silently loading a stale checkpoint.
    """
    key = dict(mae=identity(cfg, "mae", drop=("pretrained",)),    # Stage I's switch
               encoder=identity(cfg, "encoder"), tokenizer=identity(cfg, "tokenizer"),
               # it reads the volumes, never the trial blocks: data.response is not its setting
               data=identity(cfg, "data", drop=("response",)), sim=identity(cfg, "sim"),
               seed=cfg.run.seed,
               loop=identity(cfg, "train"))
    return run_key(f"mae_{cfg.tokenizer.kind}", key)


def pretrain_mae(cfg, data, *, model=None, mask=None, affine=None, run_dir=None, name: str | None = None,
                 steps: int | None = None, overwrite: bool = False, progress: bool = True):
    """Masked-brain-modelling pretraining of the SC-MBM encoder with the shared ``fit`` loop.

    Parameters
    ----------
    cfg : Config
        ``cfg.mae`` (steps, batch_size, lr, weight_decay, norm_target, block_stride,
        max_blocks), ``cfg.encoder``, ``cfg.tokenizer``, ``cfg.train``, ``cfg.run.seed``.
    data : array (n_blocks, T, X, Y, Z) or iterable of runs
        Training subjects' blocks, or runs of volumes (``iter_run_volumes(cfg,
        splits.train_subjects)``) cut into windows of ``cfg.data.block_trs`` volumes.
    model : MaskedBrainModel, optional
        Default :func:`llm4brain.models.encoder.build_mae` on the block shape.
    mask, affine : optional
        ``TrialCache.mask`` / ``TrialCache.affine`` (used when building the model).
    run_dir : path, optional
        Default ``cfg.run_dir``.
    name : str, optional
        Run name inside ``run_dir`` (checkpoints and the loss log); default
        :func:`mae_run_name` (``mae_cnn3d-<hash>`` / ``mae_nvl-<hash>``).
    steps : int, optional
        Default ``cfg.mae.steps``.

    Returns
    -------
    FitResult
        ``res.model`` is the trained :class:`MaskedBrainModel` (``res.model.encoder`` the
        encoder); ``res.log`` has columns step, loss, mse_visible.

    Notes
    -----
    An NVL tokenizer that is not fitted yet learns its active patches from ``data`` (the
    training subjects) first; the mask is then frozen and saved with the model.
    """
    if not hasattr(data, "shape"):
        data = volume_windows(data, cfg.data.block_trs, cfg.mae.block_stride, cfg.mae.max_blocks)
    if len(data.shape) != 5:
        raise ValueError(f"pretrain_mae: data must be blocks (n, T, X, Y, Z), got shape {data.shape}")
    if model is None:
        model = build_mae(cfg, tuple(data.shape[1:]), mask, affine)
    tok = model.encoder.tokenizer
    n, bs = int(data.shape[0]), int(cfg.mae.batch_size)

    def sample_batch(step, rng):
        idx = np.sort(rng.choice(n, size=bs, replace=n < bs))
        return torch.from_numpy(np.ascontiguousarray(data[idx], dtype=np.float32))

    if hasattr(tok, "fit_active_patches") and not tok.is_fitted:
        tok.fit_active_patches(data, progress=progress)

    model.train()
    return fit(model, partial(mae_loss_fn, norm_target=cfg.mae.norm_target), sample_batch,
               run_dir=run_dir if run_dir is not None else cfg.run_dir, name=name or mae_run_name(cfg),
               steps=int(steps if steps is not None else cfg.mae.steps), lr=cfg.mae.lr,
               loop_cfg=cfg.train, seed=cfg.run.seed, weight_decay=cfg.mae.weight_decay,
               overwrite=overwrite, progress=progress, config=cfg)


def load_pretrained_mae(cfg, block_shape, mask=None, affine=None, *, run_dir=None, name: str | None = None):
    """Rebuild the SC-MBM autoencoder of ``cfg`` and load its finished MAE pretraining run.

    Parameters
    ----------
    cfg : Config
    block_shape : tuple (T, X, Y, Z)
        ``TrialCache.block_shape``; ``mask`` / ``affine``: ``TrialCache.mask`` / ``.affine``.
    run_dir : path, optional
        Default ``cfg.run_dir``.
    name : str, optional
        Default :func:`mae_run_name`.

    Returns
    -------
    MaskedBrainModel
        In eval mode; ``.encoder`` is the pretrained :class:`FMRIEncoder` (with an NVL
        tokenizer's active-patch mask restored from the checkpoint).

    Raises
    ------
    FileNotFoundError
        No such run: run notebook 02 (or :func:`pretrain_mae`) first.
    """
    path = checkpoint_path(run_dir if run_dir is not None else cfg.run_dir, name or mae_run_name(cfg))
    if not path.is_file():
        raise FileNotFoundError(f"no MAE pretraining checkpoint {path}: run notebook 02_tokenizer_design "
                                f"(pretrain_mae) for this profile first")
    model = build_mae(cfg, tuple(block_shape), mask, affine, load_checkpoint=False)
    load_checkpoint(model, path)
    return model.eval()


@torch.no_grad()
def mae_reconstruction(model, blocks: torch.Tensor, mask_ratio: float | None = None,
                       generator: torch.Generator | None = None) -> dict:
    """Original, masked input and reconstruction as volumes (for figures).

    Parameters
    ----------
    model : MaskedBrainModel
    blocks : tensor (B, T, X, Y, Z)

    Returns
    -------
    dict of tensors (B, T, ...) on the tokenizer's grid (cnn3d: the input grid; nvl: the
    common resampled grid): ``original``, ``masked`` (hidden tokens zeroed), ``reconstruction``
    (visible tokens copied, masked tokens predicted), plus ``mask`` (B, N) and ``loss``.
    """
    was = model.training
    model.eval()
    out = model(blocks, mask_ratio=mask_ratio, generator=generator)
    model.train(was)
    tok = model.encoder.tokenizer
    m = out.mask[..., None]
    w = out.weight[None]
    return dict(original=tok.unpatchify(out.target * w),
                masked=tok.unpatchify(out.target * w * (1 - m)),
                reconstruction=tok.unpatchify((out.target * (1 - m) + out.pred * m) * w),
                mask=out.mask, loss=float(mae_loss(out.pred, out.target, out.mask, out.weight)))


def neighbour_fill(tokenizer, target: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                   sigma_vox: float = 1.0) -> torch.Tensor:
    """Fill every masked patch from its visible neighbours (normalised convolution).

    The baseline a masked-brain model must beat besides predicting zero: the visible brain
    values, smoothed with a Gaussian of ``sigma_vox`` voxels on the tokenizer's grid, divided
    by the smoothed visibility (``sum_j g_ij v_j y_j / sum_j g_ij v_j``), each volume of the
    block on its own. It predicts what spatially smooth signal and noise let neighbours
    tell; voxels no visible voxel reaches get 0.

    Parameters
    ----------
    tokenizer : the model's tokenizer (``patchify`` / ``unpatchify``)
    target, mask, weight : :class:`MAEOutput` fields (B, N, P), (B, N), (N, P)

    Returns
    -------
    tensor (B, N, P): the prediction in patch space (compare with :func:`mae_loss`).
    """
    from scipy.ndimage import gaussian_filter

    w = weight.to(target.dtype).expand_as(target)
    vis = w * (1.0 - mask.to(target.dtype))[..., None]
    y = tokenizer.unpatchify(target * vis).double().numpy()
    v = tokenizer.unpatchify(vis).double().numpy()
    sig = (0, 0) + (float(sigma_vox),) * (y.ndim - 2)
    num, den = gaussian_filter(y, sig, mode="constant"), gaussian_filter(v, sig, mode="constant")
    fill = torch.from_numpy(np.where(den > 1e-6, num / np.maximum(den, 1e-12), 0.0)
                            .astype(np.float32))
    # back to patches from the grid unpatchify gives (NVL: its common resampled grid)
    return (tokenizer.grid_patchify(fill) if hasattr(tokenizer, "grid_patchify")
            else tokenizer.patchify(fill))


@torch.no_grad()
def mae_baselines(model, blocks: torch.Tensor, *, seed: int = 0,
                  sigmas=(0.5, 1.0, 2.0)) -> dict:
    """Masked MSE of a pretrained model on ``blocks`` beside what needs no learning.

    One mask draw (``seed``) scores: ``model`` (the decoder's prediction), ``predict_zero``
    (the mean of z-scored data) and ``neighbour_fill`` (:func:`neighbour_fill` scaled by the
    least-squares factor ``neighbour_scale`` on these very values, the best of ``sigmas``,
    ``neighbour_sigma``): a baseline tuned on the data it is scored on, so a pretraining that
    beats it has learned more than the local smoothness of the data.
    """
    was = model.training
    model.eval()
    out = model(blocks, generator=torch.Generator().manual_seed(int(seed)))
    model.train(was)
    tok = model.encoder.tokenizer
    res = dict(model=float(mae_loss(out.pred, out.target, out.mask, out.weight)),
               predict_zero=float(mae_loss(torch.zeros_like(out.pred), out.target, out.mask,
                                           out.weight)))
    m = (out.mask[..., None] * out.weight.expand_as(out.target)).to(out.target.dtype)
    fills = {}
    for sg in sigmas:
        f = neighbour_fill(tok, out.target, out.mask, out.weight, sg)
        beta = float((f * out.target * m).sum() / (f * f * m).sum().clamp_min(1e-12))
        fills[sg] = (float(mae_loss(beta * f, out.target, out.mask, out.weight)), beta)
    best = min(fills, key=lambda k: fills[k][0])
    res.update(neighbour_fill=fills[best][0], neighbour_sigma=float(best),
               neighbour_scale=fills[best][1])
    return res


def class_probe(F_train: np.ndarray, y_train, F_test: np.ndarray, y_test, *,
                n_components: int = 100, C: float = 0.05) -> float:
    """Top-1 of a linear class probe: PCA to ``n_components`` (fitted on the training rows),
    multinomial logistic regression (L2, ``C``); accuracy on the test rows. (No per-feature
    standardisation before the PCA: it would lift pure-noise features to the variance of
    the few that carry the classes.)"""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    F_train, F_test = np.asarray(F_train, np.float64), np.asarray(F_test, np.float64)
    k = int(min(n_components, F_train.shape[1], len(F_train) - 1))
    clf = make_pipeline(PCA(k, random_state=0), StandardScaler(),
                        LogisticRegression(C=C, max_iter=3000))
    clf.fit(F_train, np.asarray(y_train))
    return float((clf.predict(F_test) == np.asarray(y_test)).mean())


@torch.no_grad()
def encoder_probes(encoder, blocks_train, y_train, blocks_test, y_test, mask, *,
                   batch_size: int = 64, **probe_kw) -> dict:
    """How much class signal each stage of the encoder keeps: :func:`class_probe` top-1 on
    the brain-mask voxels (block mean), the tokenizer's tokens and the encoder's output
    tokens (flattened), fitted on ``blocks_train`` and scored on ``blocks_test``
    (arrays or callables ``index -> (b, T, X, Y, Z)`` with their lengths)."""
    encoder = encoder.eval()
    m = torch.as_tensor(np.asarray(mask, bool))

    def feats(blocks):
        out = {"voxels": [], "tokenizer": [], "encoder": []}
        for i in range(0, len(blocks), batch_size):
            b = torch.from_numpy(np.asarray(blocks[i:i + batch_size], np.float32))
            out["voxels"].append(b.mean(1)[:, m].numpy())
            out["tokenizer"].append(encoder.tokenizer(b).flatten(1).numpy())
            out["encoder"].append(encoder(b).flatten(1).numpy())
        return {k: np.concatenate(v) for k, v in out.items()}

    a, b = feats(blocks_train), feats(blocks_test)
    return {k: class_probe(a[k], y_train, b[k], y_test, **probe_kw) for k in a}


def mae_reading(table, margin: float = 0.002) -> str:
    """Notebook 02's conclusion on the pretraining, in words, from its validation table.

    ``table``: rows with ``tokenizer``, ``val_masked_mse``, ``predict_zero_mse``,
    ``neighbour_fill_mse`` and ``steps`` (``figures/02_mae_validation.csv``). A pretraining
    *learned* when its masked MSE is below predicting zero by more than ``margin``; it learned
    more than local smoothness when it is also below the neighbour fill.
    """
    import pandas as pd

    t = pd.DataFrame(table)
    need = {"tokenizer", "val_masked_mse", "predict_zero_mse", "neighbour_fill_mse", "steps"}
    if need - set(t.columns):
        raise KeyError(f"mae_reading: the table lacks {sorted(need - set(t.columns))} "
                       f"(notebook 02's 02_mae_validation.csv)")
    parts = []
    for r in t.itertuples():
        m, z, f = float(r.val_masked_mse), float(r.predict_zero_mse), float(r.neighbour_fill_mse)
        if m < f - margin:
            verdict = "below both baselines: it learned more than the local smoothness of the data"
        elif m < z - margin:
            verdict = "below predicting zero but not below the neighbour fill: it learned no more " \
                      "than what neighbouring voxels tell"
        else:
            verdict = "not below predicting zero: it learned nothing a hidden token could be " \
                      "predicted from"
        parts.append(f"{r.tokenizer} after {int(r.steps)} steps: masked MSE {m:.4f} against "
                     f"{z:.4f} for predicting zero and {f:.4f} for the neighbour fill, {verdict}.")
    return ("**Conclusion (validation runs of the training subjects).** " + " ".join(parts)
            + " Stage I (notebook 03) freezes this encoder; where it learned nothing, what "
              "Stage I decodes comes from the voxels its projector reads directly.")
