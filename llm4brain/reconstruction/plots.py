"""Figures of visual reconstruction (notebook 08): the image grid and the metric bars.

Each function takes data (and an optional ``ax``), draws and returns the ``Figure``; save
with :func:`llm4brain.plotting.save_figure` (provenance stamped).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .metrics import RECON_LABELS, RECON_METRICS
from ..plotting import styled

__all__ = ["grid_trials", "plot_reconstruction_grid", "plot_reconstruction_bars"]


def grid_trials(meta: pd.DataFrame, n_per_subject: int, seed: int = 0) -> np.ndarray:
    """Positions of ``n_per_subject`` evaluation trials per target subject, drawn at random
    (seeded), not picked by their scores."""
    rng = np.random.default_rng((seed, 88))
    out = []
    for s in pd.unique(meta["subject"].astype(str)):
        idx = np.flatnonzero(meta["subject"].astype(str).to_numpy() == s)
        out += sorted(rng.choice(idx, min(n_per_subject, len(idx)), replace=False).tolist())
    return np.asarray(out, int)


@styled
def plot_reconstruction_grid(images: Mapping[str, np.ndarray], rows: Sequence[int],
                             labels: Sequence[str] | None = None, *,
                             columns: Sequence[str] | None = None) -> Figure:
    """One row per trial, one column per condition (``seen`` first).

    Parameters
    ----------
    images : dict condition -> uint8 (n_trials, S, S, 3)
    rows : positions of the trials to show
    labels : one label per shown trial (e.g. ``sub-05 · clip``), optional
    columns : conditions in column order (default: the dict's order)
    """
    cols = list(columns or images)
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(1.6 * len(cols), 1.6 * len(rows)),
                             squeeze=False)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            ax.imshow(images[c][r], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
            if i == 0:
                ax.set_title(c, fontsize="small")
            if j == 0 and labels is not None:
                ax.set_ylabel(labels[i], fontsize="x-small", rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig


@styled
def plot_reconstruction_bars(table: pd.DataFrame, conditions: Sequence[str],
                             metrics: Sequence[str] = RECON_METRICS) -> Figure:
    """Bars of every metric per subject and Total, one bar per condition (chance grey)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 3.2))
    axes = np.atleast_1d(axes)
    x = np.arange(len(table.index))
    w = 0.8 / max(1, len(conditions))
    for ax, m in zip(axes, metrics):
        for k, c in enumerate(conditions):
            col = f"{RECON_LABELS[m]} | {c}"
            if col in table.columns:
                ax.bar(x + (k - (len(conditions) - 1) / 2) * w, table[col].to_numpy(float), w,
                       label=c, color="0.6" if c == "chance" else None)
        if m.startswith("id_"):
            ax.axhline(50, color="0.3", ls="--", lw=0.8)
        ax.set_xticks(x, table.index, rotation=30)
        ax.set_title(RECON_LABELS[m])
    axes[0].legend(fontsize="x-small")
    fig.tight_layout()
    return fig
