"""Figures of the data notebooks (00, 01): clips, design, HRFs, brain maps, reliability.

Every function takes data and an optional ``ax`` / ``fig``, returns the figure and never
calls ``show``; save with :func:`llm4brain.plotting.save_figure`.
"""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np

from .plotting import styled

__all__ = ["plot_clip_montage", "plot_design", "plot_hrfs", "plot_brain_map", "to_nifti",
           "plot_reliability", "plot_lag_profile"]


@styled
def plot_clip_montage(frames, titles, n_show: int = 4, width: float = 1.6):
    """A row per clip: ``n_show`` frames (uint8 (T, H, W, 3) each) and the clip's description."""
    n = len(frames)
    fig, axes = plt.subplots(n, n_show + 1, figsize=(width * (n_show + 2.5), width * n),
                             gridspec_kw=dict(width_ratios=[1] * n_show + [2.5]), squeeze=False)
    for r, (fr, title) in enumerate(zip(frames, titles)):
        idx = np.linspace(0, len(fr) - 1, n_show).round().astype(int)
        for c, i in enumerate(idx):
            axes[r, c].imshow(fr[i])
            axes[r, c].set_axis_off()
        axes[r, -1].set_axis_off()
        axes[r, -1].text(0, 0.5, "\n".join(textwrap.wrap(title, 40)), va="center", fontsize=8)
    fig.tight_layout()
    return fig


@styled
def plot_design(onsets, X, tr: float, labels=None, ax=None, max_trials: int = 20):
    """Stimulus boxcars and HRF-convolved regressors of the first ``max_trials`` trials."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(10, 3))
    t = np.arange(X.shape[0]) * tr
    k = min(max_trials, X.shape[1])
    cmap = plt.get_cmap("tab20")
    for j in range(k):
        ax.plot(t, X[:, j], color=cmap(j % 20), lw=1)
        ax.axvspan(onsets[j], onsets[j] + 2.0, color=cmap(j % 20), alpha=0.25, lw=0)
    ax.plot(t, X[:, :k].sum(1), color="k", lw=1.5, label="sum: overlapping responses")
    ax.set_xlim(0, onsets[k - 1] + 20)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("regressor")
    ax.set_title("HAD design: 2 s clips every 4 s (shaded), HRF-convolved trial regressors")
    ax.legend(loc="upper right", fontsize=8)
    return fig


@styled
def plot_hrfs(hrfs: dict, dt: float, ax=None):
    """One curve per subject: ``hrfs`` maps a label to an HRF sampled every ``dt`` s."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5, 3))
    for lab, h in hrfs.items():
        ax.plot(np.arange(len(h)) * dt, h, label=lab)
    ax.set_xlabel("time after onset (s)")
    ax.set_ylabel("HRF (unit peak)")
    ax.set_xlim(0, 30)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("canonical (Glover) HRF with subject peak shifts")
    return fig


def to_nifti(values: np.ndarray, mask: np.ndarray, affine: np.ndarray):
    """A Nifti1Image with ``values`` (n_mask_voxels,) at the True voxels of ``mask``."""
    import nibabel as nib

    vol = np.zeros(mask.shape, np.float32)
    vol[mask] = values
    return nib.Nifti1Image(vol, affine)


@styled
def plot_brain_map(values, mask, affine, title: str = "", threshold=None, cmap="cold_hot",
                   display_mode: str = "ortho", cut_coords=None, vmax=None, fig=None):
    """``values`` at the mask voxels drawn on the MNI152 template with nilearn."""
    from nilearn import plotting

    img = to_nifti(np.asarray(values, np.float32), mask, affine)
    fig = fig or plt.figure(figsize=(9, 3))
    plotting.plot_stat_map(img, title=title, threshold=threshold, cmap=cmap, figure=fig,
                           display_mode=display_mode, cut_coords=cut_coords, vmax=vmax,
                           draw_cross=False)
    return fig


@styled
def plot_reliability(r_single, regions: dict | None = None, ax=None):
    """Histogram of single-trial reliability over voxels, optionally split by region masks."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5, 3))
    bins = np.linspace(-0.1, max(0.4, float(np.nanmax(r_single))), 40)
    ax.hist(r_single, bins=bins, color="0.7", label="all brain voxels", density=True)
    for name, sel in (regions or {}).items():
        if sel.any():
            ax.hist(r_single[sel], bins=bins, histtype="step", lw=1.5, density=True, label=name)
    ax.set_xlabel("single-trial reliability (Spearman-Brown from split halves)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    return fig


@styled
def plot_lag_profile(df, block_times_s, tr: float, ax=None):
    """Correlation with the true trial amplitude vs the time after onset at which each volume
    was acquired (``df.time_s``), one line per region; the volumes of a trial block
    (``block_times_s``, :func:`llm4brain.sim.block_times`) are shaded."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3.2))
    for name, g in df.groupby("region", sort=False):
        ax.plot(g["time_s"], g["r"], marker="o", label=name)
    bt = np.asarray(block_times_s, float)
    ax.axvspan(bt[0] - 0.25 * tr, bt[-1] + 0.25 * tr, color="0.85", zorder=0,
               label=f"block: {len(bt)} volumes at +{', +'.join(f'{x:g}' for x in bt)} s")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("time after clip onset (s)")
    ax.set_ylabel("r(BOLD, true amplitude)")
    ax.set_title("single-trial response vs lag (simulated ground truth)")
    ax.legend(fontsize=7, ncol=2)
    return fig
