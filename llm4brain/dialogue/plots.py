"""Figure of the question-answering table (house style of :mod:`llm4brain.plotting`)."""
from __future__ import annotations

from ..sim import REGIONS
from .attribution import PHRASE_GROUP
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..plotting import styled

__all__ = ["plot_qa_accuracy", "plot_concept_maps", "plot_concept_auc"]


@styled
def plot_qa_accuracy(table: pd.DataFrame, *, ax=None, title: str | None = None) -> Figure:
    """Bars of fMRI- and video-grounded accuracy per question, with chance and shuffled fMRI.

    Parameters
    ----------
    table : DataFrame
        :func:`llm4brain.dialogue.qa_table` (columns ``question, fmri, fmri_ci_low,
        fmri_ci_high, video, chance, shuffled_mean, shuffled_low, shuffled_high, n``).
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    Figure : fMRI bars with their bootstrap 95 % interval, the semantic read-out's bars (when
    the table has them), video bars (the reference), the
    shuffled-fMRI accuracy as a grey band (interval over shuffles) with its mean, and
    chance (1/k) as a dashed black tick on each question.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(table) + 2), 3.8))
    fig = ax.figure
    pal = sns.color_palette()
    x = np.arange(len(table))
    others = [(c, lab, col) for c, lab, col in
              (("semantic", "semantic read-out", pal[1]), ("video", "video-grounded", pal[2]))
              if c in table and table[c].notna().any()]
    w = 0.76 / (1 + len(others))
    off = (np.arange(1 + len(others)) - len(others) / 2) * w
    f = table["fmri"].to_numpy(float)
    err = np.vstack([f - table["fmri_ci_low"].to_numpy(float),
                     table["fmri_ci_high"].to_numpy(float) - f])
    ax.bar(x + off[0], f, w, yerr=np.nan_to_num(err).clip(0), capsize=2, color=pal[0],
           label="fMRI-grounded (Stage I + II)")
    for j, (c, lab, col) in enumerate(others, start=1):
        ax.bar(x + off[j], table[c].to_numpy(float), w, color=col, label=lab)
    for i, r in enumerate(table.itertuples()):
        if np.isfinite(r.shuffled_mean):
            ax.fill_between([i - 0.45, i + 0.45], r.shuffled_low, r.shuffled_high,
                            color="0.6", alpha=0.35, lw=0,
                            label="shuffled fMRI (interval)" if i == 0 else None)
            ax.hlines(r.shuffled_mean, i - 0.45, i + 0.45, color="0.35", lw=1.6, zorder=3,
                      label="shuffled fMRI (mean)" if i == 0 else None)
        ax.hlines(r.chance, i - 0.45, i + 0.45, color="k", ls="--", lw=1, zorder=4,
                  label="chance 1/k" if i == 0 else None)
    ax.set_xticks(x, [f"{q}\n(k={k}, n={n})" for q, k, n in
                      zip(table["question"], table["k"], table["n"])])
    ax.set(ylim=(0, 100), ylabel="answers right (%)")
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


@styled
def plot_concept_maps(result, *, kinds=None, cut_coords=(-12, -2, 8), threshold_pct: float = 90.0,
                      title: str | None = None) -> Figure:
    """Concept maps on nilearn's MNI152 template, one row per phrase type.

    Each row is the mean |attribution| of a phrase type over the target trials whose decoded
    answer has it (:meth:`llm4brain.dialogue.concepts.ConceptResult.volume`), shown above its
    ``threshold_pct`` percentile, with the contour of the region the simulator tuned to that
    phrase's feature group and the row's AUC beside chance in the label.

    Parameters
    ----------
    result : ConceptResult
    kinds : phrase types to draw (default those with trials)
    cut_coords : axial slices (MNI z, mm)
    threshold_pct : percentile of the map's in-brain values below which it is transparent
    title : str, optional
    """
    import matplotlib.pyplot as plt
    from nilearn import plotting
    from nilearn.datasets import load_mni152_template


    a = result.attributions
    kinds = [k for k in (kinds or a.phrase_types) if a.n_trials(k)]
    bg = load_mni152_template(resolution=2)
    fig, axes = plt.subplots(max(len(kinds), 1), 1, figsize=(7.5, 1.9 * max(len(kinds), 1)),
                             squeeze=False)
    if not kinds:
        axes[0, 0].text(0.5, 0.5, "no decoded answer names any phrase type", ha="center")
        axes[0, 0].set_axis_off()
        return fig
    t = result.table
    for ax, k in zip(axes[:, 0], kinds):
        img = result.volume(k)
        vals = a.mean_abs(k)
        thr = float(np.nanpercentile(vals, threshold_pct)) if np.isfinite(vals).any() else 0
        region = next((r.name for r in REGIONS if r.group == PHRASE_GROUP.get(k)), None)
        row = t[(t.phrase == k) & (t.region == region)] if region else t.iloc[:0]
        auc = (f"AUC {row['auc'].iloc[0]:.2f} (chance 0.50, p_spatial "
               f"{row['p_spatial'].iloc[0]:.2f})" if len(row) else "")
        disp = plotting.plot_stat_map(img, bg_img=bg, display_mode="z", cut_coords=cut_coords,
                                      threshold=thr, cmap="hot", axes=ax, colorbar=False,
                                      annotate=False, draw_cross=False, black_bg=False)
        if region:
            reg = result.region_volume(region)
            if float(np.asarray(reg.dataobj).max()) > 0.5:
                disp.add_contours(reg, levels=[0.5], colors="c", linewidths=1.0)
        ax.set_title(f"{k} (n={a.n_trials(k)}): {region or '-'} contour; {auc}",
                     fontsize="x-small", loc="left")
    if title:
        fig.suptitle(title, fontsize="small")
    return fig


@styled
def plot_concept_auc(table: pd.DataFrame, *, ax=None, title: str | None = None) -> Figure:
    """Heat map of the concept table: AUC per phrase type (rows) and region (columns).

    Cells hold the AUC (chance 0.5; diverging colours around it) with a star where the
    spatial permutation p < 0.05; the region the simulator tuned to each phrase's feature
    group is outlined.

    Parameters
    ----------
    table : DataFrame, :func:`llm4brain.dialogue.concept_table`
    ax : matplotlib Axes, optional
    title : str, optional
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    phrases = list(dict.fromkeys(table["phrase"]))
    regions = list(dict.fromkeys(table["region"]))
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.0 * len(regions) + 2.2, 0.55 * len(phrases) + 1.6))
    fig = ax.figure
    t = table.set_index(["phrase", "region"])
    A = np.array([[t.loc[(p, r), "auc"] for r in regions] for p in phrases], float)
    im = ax.imshow(A, cmap="RdBu_r", vmin=0.0, vmax=1.0, aspect="auto")
    for i, p in enumerate(phrases):
        for j, r in enumerate(regions):
            row = t.loc[(p, r)]
            if np.isfinite(A[i, j]):
                star = "*" if row["p_spatial"] < 0.05 else ""
                ax.text(j, i, f"{A[i, j]:.2f}{star}", ha="center", va="center",
                        fontsize="x-small")
            if bool(row["expected"]):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2, ec="k"))
    ax.set_xticks(range(len(regions)), [f"{r}\n({t.loc[(phrases[0], r), 'region_group']})"
                                        for r in regions], fontsize="x-small")
    n = {p: int(t.loc[(p, regions[0]), "n_trials"]) for p in phrases}
    ax.set_yticks(range(len(phrases)), [f"{p} (n={n[p]})" for p in phrases], fontsize="small")
    fig.colorbar(im, ax=ax, label="ROC-AUC of |attribution| (chance 0.5)", shrink=0.8)
    ax.set_title(title or "concept maps vs the simulator's regions (box: expected region; "
                 "* spatial p < 0.05)", fontsize="x-small")
    fig.tight_layout()
    return fig
