"""Plot helpers shared by every notebook.

Each function takes data (and an optional matplotlib ``ax``), draws, and returns the
``Figure``; none calls ``show``. :func:`save_figure` writes ``<figures_dir>/<name>.png``
(150 dpi) and ``.pdf``.

Statistical figures use seaborn (per-trial distributions, heat maps, embeddings by class, bars
with intervals over seeds); bars whose intervals come from our own bootstraps stay plain
matplotlib. One house style (:data:`HOUSE_STYLE`, seaborn's ``ticks`` theme with the
colour-blind palette) is what every ``plot_*`` function draws in (:func:`styled`), without
touching the caller's matplotlib settings; the notebooks call :func:`set_house_style` once,
so their own figures look the same.

>>> fig = plot_loss_curves(res.log)                     # doctest: +SKIP
>>> save_figure(fig, "03_stage1_losses", cfg)           # doctest: +SKIP
"""
from __future__ import annotations

from .evaluation.metrics import METRIC_LABELS
from .evaluation.metrics import METRIC_LABELS, metric_key
import functools
import os
from contextlib import contextmanager
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .evaluation.attributes import ATTRIBUTE_CONDITIONS
from .provenance import pdf_metadata, png_metadata, stamp

__all__ = [
    "HOUSE_STYLE", "set_house_style", "house_style", "styled", "save_figure", "plot_subject_bars", "plot_metric_distributions", "plot_loss_curves",
    "plot_similarity_matrix", "plot_embedding_2d", "pca_2d", "plot_attribute_bars",
    "plot_candidate_bars",
]

#: Columns of a training log that are not loss terms.
_NON_LOSS = {"step", "epoch", "lr", "time", "time_s", "elapsed", "elapsed_s", "wall_s",
             "seconds", "grad_norm"}


#: The figures' look: seaborn theme arguments (:func:`seaborn.set_theme`).
HOUSE_STYLE = dict(context="notebook", style="ticks", palette="colorblind", font_scale=0.9,
                   rc={"axes.spines.top": False, "axes.spines.right": False,
                       "legend.frameon": False, "savefig.dpi": 150, "figure.dpi": 100,
                       "axes.titleweight": "bold", "axes.titlesize": "medium"})


def set_house_style() -> None:
    """Apply :data:`HOUSE_STYLE` to matplotlib globally (the notebooks call it once, so their
    own figures look like the package's). Importing this module changes nothing."""
    sns.set_theme(**HOUSE_STYLE)


@contextmanager
def house_style():
    """:data:`HOUSE_STYLE` inside the ``with`` block only; the caller's rcParams come back."""
    import matplotlib as mpl
    with mpl.rc_context():
        sns.set_theme(**HOUSE_STYLE)
        yield


def styled(fn):
    """Draw ``fn``'s figure in :func:`house_style`, leaving the caller's matplotlib style."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with house_style():
            return fn(*args, **kwargs)
    return wrapper


def _figures_dir(cfg_or_dir) -> Path:
    if cfg_or_dir is None:
        raise ValueError("save_figure needs the config (cfg.figures_dir) or a directory")
    if hasattr(cfg_or_dir, "figures_dir"):
        return Path(cfg_or_dir.figures_dir)
    if isinstance(cfg_or_dir, (str, os.PathLike)):
        return Path(cfg_or_dir)
    raise TypeError(f"save_figure: expected a Config or a directory path, "
                    f"got {type(cfg_or_dir).__name__}")


def save_figure(fig: Figure, name: str, cfg_or_dir, *, formats: Sequence[str] = ("png", "pdf"),
                dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``<figures_dir>/<name>.<fmt>`` for each format (overwriting), with the
    git revision, profile and config hash inside (:mod:`llm4brain.provenance`; profile and
    hash only when given a config). Each file is written under a temporary name and moved
    into place, so a crash never leaves a truncated figure.

    Parameters
    ----------
    fig : matplotlib Figure
    name : str
        File stem, e.g. ``06_subject_bars`` (a trailing ``.png``/``.pdf`` is dropped; ``/``
        makes sub-folders).
    cfg_or_dir : Config or path
        A config (its ``figures_dir``) or the directory itself.
    formats : sequence of str
        Default png (``dpi``) and pdf (vector).

    Returns
    -------
    list of Path
        The files written, in ``formats`` order.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"save_figure expects a matplotlib Figure, got {type(fig).__name__}; "
                        f"plot functions return one")
    stem = str(name)
    for ext in (".png", ".pdf", ".svg"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    if not stem or stem.startswith("/") or ".." in Path(stem).parts:
        raise ValueError(f"figure name {name!r} must be a relative file stem like '06_bars'")
    out_dir = _figures_dir(cfg_or_dir)
    st = stamp(cfg_or_dir if hasattr(cfg_or_dir, "figures_dir") else None)
    meta = {"png": png_metadata(st), "pdf": pdf_metadata(st)}
    paths = []
    for fmt in formats:
        p = out_dir / f"{stem}.{fmt}"
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.part")
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=fmt, metadata=meta.get(fmt))
        os.replace(tmp, p)                   # never a half-written figure under the real name
        paths.append(p)
    return paths


@contextmanager
def _seeded(seed: int):
    """seaborn jitters with numpy's global generator: seed it for one plot, then restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _ax(ax, figsize=(6, 4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


def _metric_column(df: pd.DataFrame, metric: str) -> str:
    if metric in df.columns:
        return metric
    try:
        key = metric_key(metric)
    except KeyError:
        key = None
    for c in (key, METRIC_LABELS.get(key or "", None)):
        if c is not None and c in df.columns:
            return c
    raise KeyError(f"no column for metric {metric!r}; columns are {list(df.columns)}")


def _band(v):
    """(low, high) of a chance specification, or None."""
    if v is None:
        return None
    if hasattr(v, "low") and hasattr(v, "high"):
        return float(v.low), float(v.high)
    if isinstance(v, (tuple, list, np.ndarray)) and len(v) == 2:
        return float(v[0]), float(v[1])
    return None


@styled
def plot_subject_bars(df: pd.DataFrame, metric: str = "bertscore", *, chance=None, ceiling=None,
                      ci: pd.DataFrame | None = None, ax=None, title: str | None = None,
                      total_label: str = "Total") -> Figure:
    """Bars of one metric per target subject (and Total), with chance band and ceiling line.

    Parameters
    ----------
    df : DataFrame
        A table from :func:`llm4brain.evaluation.tables.subject_table` (index = subjects and
        ``Total``; columns = metrics as keys or labels).
    metric : str
        Metric key (``bertscore``) or label (``BERTScore``).
    chance : float, (low, high), Interval, or DataFrame, optional
        Chance level: a float draws a dashed line; a pair/Interval a shaded band over all
        bars; a frame indexed like ``df`` with ``low``/``high`` (and ``estimate``) columns
        (``ChanceResult.group_summary``) draws one band per bar.
    ceiling : float or Series/dict indexed like ``df``, optional
        Noise ceiling: one line across, or one short line per bar.
    ci : DataFrame, optional
        Error bars: indexed like ``df`` with ``low``/``high`` columns, or the tidy output of
        :func:`llm4brain.evaluation.controls.bootstrap_by_group` (its ``metric`` is picked).

    Returns
    -------
    Figure
    """
    fig, ax = _ax(ax)
    col = _metric_column(df, metric)
    values = df[col].astype(float)
    x = np.arange(len(values))
    labels = [str(i) for i in values.index]
    colors = ["0.45" if lab == total_label else "C0" for lab in labels]
    yerr = None
    if ci is not None:
        if "metric" in ci.columns:  # tidy frame of bootstrap_by_group
            keys = {k for k, v in METRIC_LABELS.items() if v == col} | {col}
            ci = ci[ci["metric"].isin(keys)].set_index("group")
        c = ci.reindex(values.index)
        yerr = np.vstack([values - c["low"].astype(float), c["high"].astype(float) - values])
        yerr = np.where(np.isfinite(yerr), np.clip(yerr, 0, None), 0)
    ax.bar(x, values.to_numpy(), color=colors, yerr=yerr, capsize=3 if yerr is not None else 0,
           label="llm4brain")
    # chance
    if isinstance(chance, pd.DataFrame):
        c = chance.copy()
        c.index = [str(i) if str(i).startswith("sub-") or str(i) == total_label else f"sub-{i}"
                   for i in c.index]
        for xi, lab in zip(x, labels):
            if lab in c.index:
                ax.fill_between([xi - 0.45, xi + 0.45], c.loc[lab, "low"], c.loc[lab, "high"],
                                color="C3", alpha=0.25, lw=0,
                                label="chance (95 %)" if xi == x[0] else None)
                if "estimate" in c.columns:
                    ax.hlines(c.loc[lab, "estimate"], xi - 0.45, xi + 0.45, colors="C3", lw=1)
    elif _band(chance) is not None:
        lo, hi = _band(chance)
        ax.axhspan(lo, hi, color="C3", alpha=0.2, lw=0, label="chance (95 %)")
        if hasattr(chance, "estimate"):
            ax.axhline(float(chance.estimate), color="C3", lw=1)
    elif chance is not None:
        ax.axhline(float(chance), color="C3", ls="--", lw=1, label="chance")
    # ceiling
    if isinstance(ceiling, (Mapping, pd.Series)):
        ceil = pd.Series(ceiling)
        ceil.index = [str(i) if str(i).startswith("sub-") or str(i) == total_label
                      else f"sub-{i}" for i in ceil.index]
        first = True
        for xi, lab in zip(x, labels):
            if lab in ceil.index:
                ax.hlines(float(ceil[lab]), xi - 0.45, xi + 0.45, colors="k", lw=2,
                          label="noise ceiling" if first else None)
                first = False
    elif ceiling is not None:
        ax.axhline(float(ceiling), color="k", lw=1.5, label="noise ceiling")
    ax.set_xticks(x, labels)
    ax.set_ylabel(f"{col} (x100)" if col == "CIDEr-D" else f"{col} (%)")
    ax.set_title(title or col)
    top = ax.get_ylim()[1]
    ax.set_ylim(0, top * 1.15)  # headroom for the legend
    ax.legend(loc="upper center", ncol=3, fontsize="small", frameon=False)
    return fig


def _values(obj, metric: str) -> np.ndarray:
    if hasattr(obj, "draws") and isinstance(getattr(obj, "draws"), pd.DataFrame):
        obj = obj.draws  # ChanceResult: one value per shuffle
    if hasattr(obj, "per_trial"):
        obj = obj.per_trial  # TextScores
    if isinstance(obj, pd.DataFrame):
        return obj[_metric_column(obj, metric)].to_numpy(dtype=float)
    return np.asarray(obj, dtype=float).ravel()


@styled
def plot_metric_distributions(data: Mapping[str, object], metric: str = "bertscore", *,
                              ax=None, chance=None, points: bool = True, seed: int = 12345,
                              title: str | None = None) -> Figure:
    """Per-trial distributions of one metric, one box per condition.

    Parameters
    ----------
    data : mapping name -> per-trial frame, TextScores, ChanceResult or 1-D array
        E.g. ``{"chance": chance_res, "baseline": base, "llm4brain": scores}``.
    metric : str
        Metric key or label.
    chance : float or (low, high), optional
        Drawn as a line or a band behind the boxes.
    points : bool
        Overlay the individual values (jittered).

    Returns
    -------
    Figure
    """
    if not data:
        raise ValueError("plot_metric_distributions needs at least one condition")
    fig, ax = _ax(ax)
    names = list(data)
    long = pd.concat([pd.DataFrame({"condition": k, "value": _values(data[k], metric)})
                      for k in names], ignore_index=True)
    if _band(chance) is not None:
        ax.axhspan(*_band(chance), color="C3", alpha=0.15, lw=0, label="chance (95 %)")
    elif chance is not None:
        ax.axhline(float(chance), color="C3", ls="--", lw=1, label="chance")
    sns.boxplot(data=long, x="condition", y="value", order=names, ax=ax, width=0.5,
                showfliers=not points, fill=False, color="0.25", linewidth=1)
    if points:
        with _seeded(seed):
            sns.stripplot(data=long, x="condition", y="value", order=names, hue="condition",
                          hue_order=names, ax=ax, size=2.5, alpha=0.45, jitter=0.15,
                          legend=False)
    try:
        label = METRIC_LABELS[metric_key(metric)]
    except KeyError:
        label = str(metric)
    ax.set_xlabel("")
    ax.set_ylabel(f"{label} (x100)" if label == "CIDEr-D" else f"{label} (%)")
    ax.set_title(title or f"{label} per trial")
    if chance is not None:
        ax.legend(loc="best", fontsize="small", frameon=False)
    return fig


@styled
def plot_loss_curves(log_df: pd.DataFrame, *, ax=None, terms: Sequence[str] | None = None,
                     x: str = "step", logy: bool = False, smooth: int | None = None,
                     title: str | None = None) -> Figure:
    """One line per loss term against the step.

    Parameters
    ----------
    log_df : DataFrame
        A training log (``FitResult.log``): column ``x`` plus one column per loss term.
    terms : sequence of str, optional
        Columns to draw (default: every numeric column except ``x``, lr, time ...).
    logy : bool
        Logarithmic y axis (terms <= 0 are then hidden by matplotlib).
    smooth : int, optional
        Rolling-mean window (in log rows) drawn over the raw curve.

    Returns
    -------
    Figure
    """
    if x not in log_df.columns:
        raise KeyError(f"training log has no {x!r} column (columns: {list(log_df.columns)})")
    if terms is None:
        terms = [c for c in log_df.columns if c != x and c not in _NON_LOSS
                 and pd.api.types.is_numeric_dtype(log_df[c])]
    missing = [t for t in terms if t not in log_df.columns]
    if missing:
        raise KeyError(f"loss terms {missing} not in the log (columns: {list(log_df.columns)})")
    fig, ax = _ax(ax)
    for i, t in enumerate(terms):
        y = log_df[t].astype(float)
        if smooth and smooth > 1:
            ax.plot(log_df[x], y, color=f"C{i}", alpha=0.25, lw=0.8)
            ax.plot(log_df[x], y.rolling(smooth, min_periods=1).mean(), color=f"C{i}", label=t)
        else:
            ax.plot(log_df[x], y, color=f"C{i}", label=t)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("loss")
    ax.set_title(title or "training losses")
    if terms:
        ax.legend(loc="best", fontsize="small", frameon=False)
    return fig


@styled
def plot_similarity_matrix(S, *, ax=None, labels: Sequence[str] | None = None,
                           title: str | None = None, cmap: str = "viridis",
                           vmin: float | None = None, vmax: float | None = None,
                           colorbar: bool = True, xlabel: str = "video",
                           ylabel: str = "fMRI") -> Figure:
    """Heat map of a similarity matrix (e.g. fMRI x video cosine similarities).

    Parameters
    ----------
    S : array of shape (n_rows, n_cols)
    labels : sequence of str, optional
        Tick labels (used for both axes when square; only when <= 40 of them).

    Returns
    -------
    Figure
    """
    S = np.asarray(S, dtype=float)
    if S.ndim != 2:
        raise ValueError(f"similarity matrix must be 2-D, got shape {S.shape}")
    fig, ax = _ax(ax, figsize=(5, 4.5))
    ticks = labels is not None and len(labels) <= 40
    sns.heatmap(S, ax=ax, cmap=cmap, vmin=vmin, vmax=vmax, cbar=colorbar, square=False,
                xticklabels=list(labels) if ticks and len(labels) == S.shape[1] else False,
                yticklabels=list(labels) if ticks and len(labels) == S.shape[0] else False,
                cbar_kws={"fraction": 0.046, "pad": 0.04})
    ax.tick_params(labelsize="x-small")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or "similarity")
    return fig


def pca_2d(points) -> np.ndarray:
    """First two principal-component scores of ``points`` (n, d) -> (n, 2) (SVD, centred)."""
    X = np.asarray(points, dtype=float)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"points must be (n_points >= 2, n_dims), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("points contain NaN or inf")
    X = X - X.mean(axis=0)
    if X.shape[1] == 1:
        return np.hstack([X, np.zeros_like(X)])
    U, s, _ = np.linalg.svd(X, full_matrices=False)
    return U[:, :2] * s[:2]


@styled
def plot_embedding_2d(points, labels, *, ax=None, names: Mapping | Sequence | None = None,
                      title: str | None = None, s: float = 12) -> Figure:
    """Scatter of embeddings projected on their first two principal components, by class.

    Parameters
    ----------
    points : array of shape (n_points, n_dims)
        Embeddings (2-D input is only centred).
    labels : array of shape (n_points,)
        Class of each point (one colour and legend entry per class; legend up to 20).
    names : mapping or sequence, optional
        Display name per label value (e.g. class names by class id).

    Returns
    -------
    Figure
    """
    P = pca_2d(points)
    labels = np.asarray(labels)
    if len(labels) != len(P):
        raise ValueError(f"{len(labels)} labels for {len(P)} points")
    fig, ax = _ax(ax, figsize=(5, 4.5))
    classes = list(pd.unique(labels))
    shown = [str(names[c] if names is not None else c) for c in classes]
    by = dict(zip(classes, shown))
    palette = sns.color_palette("tab20" if len(classes) > 10 else "colorblind", len(classes))
    sns.scatterplot(x=P[:, 0], y=P[:, 1], hue=[by[c] for c in labels], hue_order=shown,
                    palette=palette, s=s, alpha=0.8, linewidth=0, ax=ax,
                    legend=len(classes) <= 20)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or "embeddings (PCA)")
    if len(classes) <= 20:
        ax.legend(loc="best", fontsize="x-small", frameon=False, markerscale=1.5)
    return fig


@styled
def plot_attribute_bars(tidy: pd.DataFrame, *, conditions: Sequence[str] | None = None,
                        attributes: Sequence[str] | None = None, chance: str = "pairing_chance",
                        colours: Mapping[str, str] | None = None, ax=None,
                        title: str | None = None) -> Figure:
    """Grouped bars of attribute accuracy (percent) per attribute and condition, with 95 %
    bootstrap error bars and each condition's chance marked.

    Parameters
    ----------
    tidy : DataFrame
        Rows of :func:`llm4brain.evaluation.attributes.attribute_summary` (``condition,
        attribute, accuracy, ci_low, ci_high, pairing_chance, shuffle_chance``).
    conditions, attributes : optional subsets, in the order to draw.
    chance : column drawn as a black tick on each bar (``pairing_chance``: what random
        pairing of the same texts and clips gives; ``shuffle_chance``: the mean of the
        shuffled-fMRI decodes).
    colours : mapping condition -> matplotlib colour, optional
        Default: the Stage II conditions keep one colour each in every panel
        (:data:`llm4brain.evaluation.attributes.ATTRIBUTE_CONDITIONS` order), others follow.
    """
    fig, ax = _ax(ax, figsize=(13, 4))
    conditions = list(conditions or dict.fromkeys(tidy["condition"]))
    attributes = list(attributes or dict.fromkeys(tidy["attribute"]))
    t = tidy.set_index(["condition", "attribute"])
    known = list(ATTRIBUTE_CONDITIONS.values())
    extra = [c for c in conditions if c not in known]
    colours = dict(colours or {})
    for c in conditions:
        colours.setdefault(c, f"C{(known + extra).index(c) % 10}")
    w = 0.8 / max(len(conditions), 1)
    x = np.arange(len(attributes))
    for j, cond in enumerate(conditions):
        rows = t.loc[cond].reindex(attributes)
        xs = x - 0.4 + w * (j + 0.5)
        err = np.vstack([rows["accuracy"] - rows["ci_low"], rows["ci_high"] - rows["accuracy"]])
        ax.bar(xs, rows["accuracy"], w, yerr=np.nan_to_num(err).clip(0), capsize=2,
               label=cond, color=colours[cond], alpha=0.85)
        if chance in rows and rows[chance].notna().any():
            ax.hlines(rows[chance], xs - w / 2, xs + w / 2, colors="k", lw=1.6,
                      label="chance" if j == 0 else None)
    ax.set_xticks(x, attributes)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if title:
        ax.set_title(title)
    return fig


@styled
def plot_candidate_bars(table: pd.DataFrame, metrics: Sequence[str], *,
                        titles: Mapping[str, str] | None = None,
                        xlims: Mapping[str, tuple] | None = None) -> Figure:
    """Mean ± sd over seeds of each condition, one panel per metric (tuning / ablations).

    ``table`` has ``label`` (the bar), ``kind`` (``model``, ``chance`` or ``baseline``: the
    colour), ``metric`` and ``value`` columns, one row per seed; bars keep the order of first
    appearance.
    """
    colours = {"model": "tab:blue", "chance": "tab:grey", "baseline": "tab:orange",
               "ceiling": "tab:green"}
    titles, xlims = dict(titles or {}), dict(xlims or {})
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 0.35 *
                             table["label"].nunique() + 1.4), squeeze=False)
    order = list(dict.fromkeys(table["label"]))
    kinds = table.drop_duplicates("label").set_index("label")["kind"]
    palette = {k: colours.get(kinds[k], "tab:blue") for k in order}
    for ax, m in zip(axes[0], metrics):
        rows = table[table["metric"] == m].astype({"value": float})
        mean = rows.groupby("label")["value"].mean().reindex(order)
        sns.barplot(data=rows, y="label", x="value", order=order, hue="label", hue_order=order,
                    palette=palette, saturation=1, errorbar="sd", capsize=0.25, err_kws={"linewidth": 1},
                    legend=False, ax=ax, orient="h")
        if rows.groupby("label").size().max() > 1:       # each seed as a dot
            with _seeded(0):
                sns.stripplot(data=rows, y="label", x="value", order=order, color="0.15",
                              size=3, jitter=0.12, ax=ax, orient="h")
        ax.set_yticks(np.arange(len(order)), order if ax is axes[0][0] else [],
                      fontsize="small")
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.set_title(titles.get(m, m), fontsize="medium")
        if m in xlims:
            ax.set_xlim(*xlims[m])
            left = ax.get_xlim()[0]
            for i, v in enumerate(mean):      # bars that end left of the axis: say their value
                if np.isfinite(v) and v < left:
                    ax.text(left, i, f" {v:.1f} (off axis)", va="center", fontsize="x-small")
    fig.tight_layout()
    return fig
