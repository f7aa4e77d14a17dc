"""Image metrics of reconstructed key frames, as NVL's (and MindEye's) reconstruction table.

Low level
    ``pixcorr``: Pearson correlation of the flattened RGB pixels of a reconstruction and its
    seen frame; ``ssim``: structural similarity (scikit-image, grayscale, Gaussian window
    sigma = 1.5, as MindEye computes it).
Feature level
    ``id_early``, ``id_late``: two-way identification with the package's offline frame encoder
    (EfficientNet-Lite0 on the embedded profile), its *early* feature map (the output of block
    2, 24 channels at 1/4 resolution) and its *late* one (the final 1280-channel map). NVL uses
    AlexNet(2)/(5), Inception, CLIP, EfficientNet-B and SwAV; none of them installs offline
    here (torchvision, timm and open-clip are excluded), so the frame encoder stands in.

Two-way identification (MindEye's convention): for reconstruction ``i``, the share of other
trials ``j`` whose seen frame's features correlate less with the reconstruction's features
than trial ``i``'s own seen frame does (ties count half), averaged over ``i``; chance 50 %.
Candidates ``j`` are trials of the same target subject. Every value is in percent except
PixCorr and SSIM (in [-1, 1], as NVL reports them).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

__all__ = ["RECON_METRICS", "RECON_LABELS", "RECON_NOTE", "as_unit_images", "pixcorr",
           "ssim", "two_way_identification", "frame_encoder_levels", "score_reconstructions",
           "reconstruction_table"]

RECON_METRICS = ("pixcorr", "ssim", "id_early", "id_late")
RECON_LABELS = {"pixcorr": "PixCorr", "ssim": "SSIM", "id_early": "Early id (%)",
                "id_late": "Late id (%)"}

#: Notes for the table (what stands in for NVL's feature metrics, and why).
RECON_NOTE = ("PixCorr: Pearson r of RGB pixels; SSIM: scikit-image, grayscale, Gaussian window "
              "(sigma 1.5); Early/Late id: two-way identification (%, chance 50) among the "
              "trials of the same subject with the frame encoder's early (block 2) and late "
              "(final map) features. NVL's AlexNet(2/5), Inception, CLIP, EfficientNet-B and "
              "SwAV metrics are not computed: those networks do not install offline here "
              "(no torchvision/timm/open-clip); the package's own frame encoder stands in.")


def as_unit_images(x) -> np.ndarray:
    """Images (N, H, W, 3) as float64 in [0, 1] (uint8 is divided by 255).

    Raises
    ------
    ValueError
        Naming the shape when it is not (N, H, W, 3), or when float values leave [0, 1].
    """
    a = np.asarray(x)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    a = a.astype(np.float64)
    if not np.isfinite(a).all() or a.min() < -1e-6 or a.max() > 1 + 1e-6:
        raise ValueError("float images must be finite and in [0, 1] (pass uint8 for 0-255)")
    return a.clip(0.0, 1.0)


def _pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p, t = as_unit_images(pred), as_unit_images(true)
    if p.shape != t.shape:
        raise ValueError(f"reconstructions {p.shape} and seen frames {t.shape} differ in shape: "
                         f"resize both to recon.image_size")
    return p, t


def pixcorr(pred, true) -> np.ndarray:
    """Per-image Pearson correlation of flattened pixels, shape (N,). Constant image -> 0."""
    p, t = _pair(pred, true)
    p = p.reshape(len(p), -1)
    t = t.reshape(len(t), -1)
    p = p - p.mean(1, keepdims=True)
    t = t - t.mean(1, keepdims=True)
    den = np.sqrt((p ** 2).sum(1) * (t ** 2).sum(1))
    return np.where(den > 0, (p * t).sum(1) / np.where(den > 0, den, 1.0), 0.0)


def ssim(pred, true) -> np.ndarray:
    """Per-image SSIM of the grayscale images (scikit-image), shape (N,).

    Gaussian weights (sigma 1.5), population covariance, data range 1 (MindEye's settings);
    images must be at least 11 pixels a side (the Gaussian window).
    """
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    p, t = _pair(pred, true)
    if min(p.shape[1:3]) < 11:
        raise ValueError(f"SSIM needs images of at least 11 x 11 pixels, got {p.shape[1:3]}: "
                         f"raise recon.image_size")
    return np.array([structural_similarity(rgb2gray(a), rgb2gray(b), gaussian_weights=True,
                                           sigma=1.5, use_sample_covariance=False,
                                           data_range=1.0) for a, b in zip(p, t)])


def two_way_identification(pred_feats, true_feats, groups: Sequence | None = None) -> np.ndarray:
    """Per-trial two-way identification (percent), shape (N,).

    Parameters
    ----------
    pred_feats, true_feats : arrays of shape (N, D)
        Features of the reconstructions and of the seen frames, row ``i`` = trial ``i``.
    groups : sequence of length N, optional
        Only trials of the same group compete (e.g. the target subject); default: all.

    Returns
    -------
    ndarray
        For trial ``i``: percent of the other trials ``j`` (same group) with
        ``r(pred_i, true_j) < r(pred_i, true_i)`` (ties half). NaN for a trial alone in its group.
    """
    P = np.asarray(pred_feats, dtype=np.float64).reshape(len(pred_feats), -1)
    T = np.asarray(true_feats, dtype=np.float64).reshape(len(true_feats), -1)
    if P.shape != T.shape:
        raise ValueError(f"features of reconstructions {P.shape} and seen frames {T.shape} differ")

    def z(a):
        a = a - a.mean(1, keepdims=True)
        n = np.linalg.norm(a, axis=1, keepdims=True)
        return a / np.where(n > 0, n, 1.0)

    R = z(P) @ z(T).T                                   # R[i, j] = r(pred_i, true_j)
    g = np.zeros(len(P)) if groups is None else np.asarray(groups)
    out = np.full(len(P), np.nan)
    for i in range(len(P)):
        others = np.flatnonzero((g == g[i]) & (np.arange(len(P)) != i))
        if len(others):
            own = R[i, i]
            out[i] = 100.0 * (np.mean(R[i, others] < own) + 0.5 * np.mean(R[i, others] == own))
    return out


@torch.no_grad()
def frame_encoder_levels(encoder, images, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Early and late features of the frame encoder for images (N, H, W, 3).

    ``late`` is the encoder's output (its final patch tokens, flattened); ``early`` is the
    output of an early layer, read with a forward hook: block 2 of EfficientNet-Lite0, the
    first quarter of the layers of a BLIP-2 vision tower.

    Returns
    -------
    dict
        ``early``: (N, D_early), ``late``: (N, D_late), float32.
    """
    net = encoder.net
    if hasattr(net, "_blocks"):
        layer = net._blocks[2]
    elif hasattr(net, "encoder") and hasattr(net.encoder, "layers"):
        layer = net.encoder.layers[max(0, len(net.encoder.layers) // 4 - 1)]
    else:
        raise TypeError(f"frame_encoder_levels: no known early layer in {type(net).__name__}; "
                        f"add it here")
    got: list = []
    hook = layer.register_forward_hook(
        lambda m, i, o: got.append((o[0] if isinstance(o, tuple) else o).float().cpu()))
    u8 = (as_unit_images(images) * 255).round().astype(np.uint8)
    early, late = [], []
    try:
        for b in range(0, len(u8), batch_size):
            got.clear()
            out = encoder(torch.from_numpy(u8[b:b + batch_size]))
            late.append(out.flatten(1).cpu().numpy())
            early.append(got[0].flatten(1).numpy())
    finally:
        hook.remove()
    return {"early": np.concatenate(early).astype(np.float32),
            "late": np.concatenate(late).astype(np.float32)}


def score_reconstructions(pred, true, feats_pred: Mapping, feats_true: Mapping,
                          meta: pd.DataFrame) -> pd.DataFrame:
    """Per-trial reconstruction metrics, with ``meta`` (must hold ``subject``) in front.

    Parameters
    ----------
    pred, true : images (N, H, W, 3), reconstructions and seen key frames
    feats_pred, feats_true : dicts with ``early`` and ``late`` features (N, D),
        from :func:`frame_encoder_levels`
    meta : DataFrame of N rows with a ``subject`` column
    """
    meta = pd.DataFrame(meta).reset_index(drop=True)
    if "subject" not in meta.columns or len(meta) != len(np.asarray(pred)):
        raise ValueError(f"meta must have one row per reconstruction ({len(np.asarray(pred))}) "
                         f"and a 'subject' column")
    g = meta["subject"].astype(str).to_numpy()
    out = meta.copy()
    out["pixcorr"] = pixcorr(pred, true)
    out["ssim"] = ssim(pred, true)
    for lev in ("early", "late"):
        out[f"id_{lev}"] = two_way_identification(feats_pred[lev], feats_true[lev], g)
    return out


def reconstruction_table(conditions: Mapping[str, pd.DataFrame],
                         metrics: Sequence[str] = RECON_METRICS) -> pd.DataFrame:
    """NVL's table: a row per target subject and Total (mean of subjects), every metric beside
    each condition (e.g. ``fMRI``, ``chance``, ``ceiling``).

    Parameters
    ----------
    conditions : dict name -> per-trial frame of :func:`score_reconstructions`
        A frame may hold a ``draw`` column (shuffles): its rows are averaged per draw first.

    Returns
    -------
    DataFrame
        Index ``Subject``; columns ``<metric label> | <condition>``.
    """
    cols = {}
    for cond, df in conditions.items():
        if df is None:
            continue
        df = df.assign(subject=df["subject"].astype(str))
        keys = ["subject"] + (["draw"] if "draw" in df.columns else [])
        per = df.groupby(keys)[list(metrics)].mean()
        if "draw" in df.columns:
            per = per.groupby(level="subject").mean()
        per.index = [f"sub-{s}" if not str(s).startswith("sub-") else str(s) for s in per.index]
        per.loc["Total"] = per.mean()
        for m in metrics:
            cols[f"{RECON_LABELS[m]} | {cond}"] = per[m]
    out = pd.DataFrame(cols)
    out.index.name = "Subject"
    order = [f"{RECON_LABELS[m]} | {c}" for m in metrics for c in conditions
             if f"{RECON_LABELS[m]} | {c}" in out.columns]
    return out[order]
