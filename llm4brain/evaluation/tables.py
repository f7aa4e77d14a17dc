"""The paper's Tables 1-2 (a row per target subject + Total), the summary table, examples.

Tables are plain DataFrames (numbers in percent) written to CSV (the data, full precision),
Markdown and LaTeX (``booktabs``, 2 decimals, the paper's two-level header). They are
regenerated from saved scores, so writers overwrite existing files.

>>> t = subject_table(scores)                      # doctest: +SKIP
>>> write_table(t, cfg.figures_dir, "table1_had")  # doctest: +SKIP
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_csv, write_text
from .metrics import METRIC_LABELS, METRICS, metric_key
from .scores import TextScores, _arrays, _total_arrays

__all__ = [
    "subject_label", "subject_table", "to_markdown", "to_latex", "write_table", "read_table",
    "format_summary", "write_summary_table", "select_examples", "examples_markdown",
    "write_examples",
]

# (group, sub-column) of the paper's two-level header
_HEADER = {
    "BERTScore": ("BERTScore (%)", ""), "SacreBLEU-1": ("SacreBLEU (%)", "1"),
    "SacreBLEU-2": ("SacreBLEU (%)", "2"), "ROUGE-L F": ("ROUGE-L (%)", "F"),
    "ROUGE-L P": ("ROUGE-L (%)", "P"), "ROUGE-L R": ("ROUGE-L (%)", "R"),
    "SacreBLEU-4": ("BLEU-4 (%)", ""), "CIDEr-D": ("CIDEr-D (x100)", ""),
}


def subject_label(subject) -> str:
    """``'27'`` -> ``'sub-27'`` (labels already starting with ``sub-`` are kept)."""
    s = str(subject)
    return s if s.startswith("sub-") or s == "Total" else f"sub-{s}"


def _frame(scores) -> pd.DataFrame:
    if isinstance(scores, TextScores):
        return scores.per_trial
    if isinstance(scores, pd.DataFrame):
        return scores
    raise TypeError(f"expected TextScores or a per-trial DataFrame, got {type(scores).__name__}")


def subject_table(scores: TextScores | pd.DataFrame, *, group_col: str = "subject",
                  total: str = "mean_of_subjects", metrics: Sequence[str] = METRICS,
                  total_label: str = "Total") -> pd.DataFrame:
    """Tables 1 and 2 of the paper: one row per target subject and a Total row.

    Parameters
    ----------
    scores : TextScores or DataFrame of per-trial scores
        Must have a ``group_col`` column (pass ``meta=trials[["subject"]]`` when scoring).
    group_col : str
        Column naming the target subject of each trial.
    total : {"mean_of_subjects", "pooled"}
        How the Total row is formed (``eval.total_row``): the mean of the subject rows (the
        paper's convention) or all trials pooled (corpus BLEU over every trial).
    metrics : sequence of str
        Metric keys, in column order (default: the paper's six).

    Returns
    -------
    DataFrame of shape (n_subjects + 1, len(metrics))
        Index ``Subject`` (``sub-XX`` ..., ``Total``), columns the metric labels, percent.
    """
    df = _frame(scores)
    if group_col not in df.columns:
        raise KeyError(f"per-trial scores have no {group_col!r} column: score with "
                       f"TextScorer.score(..., meta=trials[['{group_col}']]) "
                       f"(columns present: {list(df.columns)[:8]}...)")
    arr = _arrays(df)
    groups = df[group_col].astype(str).to_numpy()
    keys = [metric_key(m) for m in metrics]
    rows = {}
    for g in sorted(pd.unique(groups)):
        agg = _total_arrays(arr, None, "pooled", np.flatnonzero(groups == g))
        rows[subject_label(g)] = [agg[k] for k in keys]
    agg = _total_arrays(arr, groups, total)
    rows[total_label] = [agg[k] for k in keys]
    out = pd.DataFrame.from_dict(rows, orient="index", columns=[METRIC_LABELS[k] for k in keys])
    out.index.name = "Subject"
    return out


# ---------------------------------------------------------------------------- formatting
def _fmt(v, decimals: int) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "--"
    if isinstance(v, (int, np.integer)):
        return str(v)
    return f"{float(v):.{decimals}f}"


def to_markdown(df: pd.DataFrame, decimals: int = 2) -> str:
    """A GitHub pipe table (index as the first column, numbers right-aligned)."""
    def cell(x):
        return str(x).replace("|", "\\|").replace("\n", " ")
    head = [df.index.name or ""] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cell(h) for h in head) + " |",
             "|:---|" + "|".join("---:" for _ in df.columns) + "|"]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([cell(idx)] + [cell(_fmt(v, decimals)) for v in row])
                     + " |")
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def _tex(s) -> str:
    return re.sub(r"[\\&%$#_{}~^]", lambda m: _LATEX_SPECIAL[m.group()], str(s))


def to_latex(df: pd.DataFrame, decimals: int = 2, *, caption: str | None = None,
             label: str | None = None, total_label: str = "Total") -> str:
    """A ``booktabs`` LaTeX table (needs ``\\usepackage{booktabs}``).

    When every column is one of the paper's metrics, the header has the paper's two levels
    (BERTScore | SacreBLEU 1 2 | ROUGE-L F P R); a ``Total`` row is set off by a rule.
    """
    cols = [str(c) for c in df.columns]
    n = len(cols)
    out = [r"\begin{table}[t]", r"\centering"]
    if caption:
        out.append(r"\caption{" + _tex(caption) + "}")
    if label:
        out.append(r"\label{" + label + "}")
    out += [r"\begin{tabular}{l" + "r" * n + "}", r"\toprule"]
    if all(c in _HEADER for c in cols):
        top, rules, j = [_tex(df.index.name or "")], [], 0
        while j < n:
            grp = _HEADER[cols[j]][0]
            k = j
            while k + 1 < n and _HEADER[cols[k + 1]][0] == grp and _HEADER[cols[k + 1]][1]:
                k += 1
            width = k - j + 1
            if width == 1 and not _HEADER[cols[j]][1]:
                top.append(_tex(grp))
            else:
                top.append(r"\multicolumn{%d}{c}{%s}" % (width, _tex(grp)))
                rules.append(r"\cmidrule(lr){%d-%d}" % (j + 2, k + 2))
            j = k + 1
        out.append(" & ".join(top) + r" \\")
        if rules:
            out.append(" ".join(rules))
        out.append(" & ".join([""] + [_tex(_HEADER[c][1]) for c in cols]) + r" \\")
    else:
        out.append(" & ".join([_tex(df.index.name or "")] + [_tex(c) for c in cols]) + r" \\")
    out.append(r"\midrule")
    for idx, row in df.iterrows():
        if str(idx) == total_label:
            out.append(r"\midrule")
        out.append(" & ".join([_tex(idx)] + [_tex(_fmt(v, decimals)) for v in row]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def write_table(df: pd.DataFrame, out_dir: str | os.PathLike, name: str, *,
                caption: str | None = None, decimals: int = 2,
                formats: Sequence[str] = ("csv", "md", "tex")) -> dict[str, Path]:
    """Write ``<out_dir>/<name>.csv`` (full precision), ``.md`` and ``.tex`` (rounded).

    Existing files are overwritten (tables are regenerated from saved scores).

    Returns
    -------
    dict
        Format -> path written.
    """
    bad = set(formats) - {"csv", "md", "tex"}
    if bad:
        raise ValueError(f"unknown table formats {sorted(bad)}; use csv, md, tex")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    if "csv" in formats:
        paths["csv"] = out_dir / f"{name}.csv"
        write_csv(df, paths["csv"], index=True)
    if "md" in formats:
        paths["md"] = out_dir / f"{name}.md"
        text = (f"**{caption}**\n\n" if caption else "") + to_markdown(df, decimals)
        write_text(paths["md"], text)
    if "tex" in formats:
        paths["tex"] = out_dir / f"{name}.tex"
        write_text(paths["tex"], to_latex(df, decimals, caption=caption,
                                         label=f"tab:{re.sub(r'[^A-Za-z0-9]+', '-', name)}"))
    return paths


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table CSV written by :func:`write_table` (first column = index)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: write it with write_table first")
    return pd.read_csv(path, index_col=0, dtype={0: str})


# ---------------------------------------------------------------------------- summary
def format_summary(tidy: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """Wide display form of :func:`~llm4brain.evaluation.controls.summary_table`.

    Returns
    -------
    DataFrame of str
        Index = metric label, columns = conditions (in the order given), cells
        ``"53.27 [51.02, 55.40]"``.
    """
    need = {"metric", "condition", "estimate", "low", "high"}
    if not need <= set(tidy.columns):
        raise KeyError(f"summary frame needs columns {sorted(need)}, got {list(tidy.columns)}")
    t = tidy.copy()
    t["cell"] = [f"{e:.{decimals}f} [{lo:.{decimals}f}, {hi:.{decimals}f}]"
                 for e, lo, hi in zip(t["estimate"], t["low"], t["high"])]
    conds = list(pd.unique(t["condition"]))
    mets = list(pd.unique(t["metric"]))
    wide = t.pivot(index="metric", columns="condition", values="cell").reindex(index=mets,
                                                                              columns=conds)
    wide.index = [METRIC_LABELS.get(m, m) for m in wide.index]
    wide.index.name = "Metric"
    wide.columns.name = None
    return wide.fillna("--")


def write_summary_table(tidy: pd.DataFrame, out_dir: str | os.PathLike, name: str = "summary",
                        *, caption: str | None = None, decimals: int = 2) -> dict[str, Path]:
    """Write the summary: ``<name>.csv`` (tidy numbers) and ``.md``/``.tex`` (wide strings)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / f"{name}.csv"}
    write_csv(tidy, paths["csv"], index=False)
    wide = format_summary(tidy, decimals)
    note = ("Values in percent (CIDEr-D x100); brackets: 95 % interval (bootstrap over trials for decoders, "
            "spread over shuffles for chance levels).")
    paths.update(write_table(wide, out_dir, name, caption=caption or note, decimals=decimals,
                             formats=("md", "tex")))
    return paths


# ---------------------------------------------------------------------------- examples
def select_examples(scores: TextScores | pd.DataFrame, n_per_group: int = 4, *,
                    metric: str = "bertscore", group_col: str = "subject") -> pd.DataFrame:
    """Qualitative examples per target subject, from best to worst (failures included).

    Parameters
    ----------
    scores : TextScores or per-trial frame (with ``candidate`` and ``reference`` columns)
    n_per_group : int
        Examples per subject, evenly spaced in rank: 1 -> median, 2 -> best and worst,
        4 -> best, two middle ones, worst.
    metric : str
        Ranking metric.

    Returns
    -------
    DataFrame
        ``group_col``, ``rank`` (``best``/``median``/``worst``/``rank k of n``), ``metric``
        value, ``reference`` (Video2Text), ``candidate`` (fMRI2Text) and the other metadata.
    """
    df = _frame(scores)
    key = metric_key(metric)
    for c in ("candidate", "reference", key):
        if c not in df.columns:
            raise KeyError(f"per-trial scores lack column {c!r}")
    groups = df[group_col] if group_col in df.columns else pd.Series(["all"] * len(df))
    rows = []
    for g in sorted(pd.unique(groups.astype(str))):
        sub = df[groups.astype(str).to_numpy() == g].sort_values(key, ascending=False,
                                                                 kind="stable")
        m = len(sub)
        k = min(n_per_group, m)
        pos = [m // 2] if k == 1 else sorted(set(np.linspace(0, m - 1, k).round().astype(int)))
        for p in pos:
            r = sub.iloc[p].to_dict()
            rank = ("best" if p == 0 else "worst" if p == m - 1 else
                    "median" if p == m // 2 else f"rank {p + 1} of {m}")
            rows.append({group_col: g, "rank": rank, key: r[key], "reference": r["reference"],
                         "candidate": r["candidate"],
                         **{c: v for c, v in r.items()
                            if c not in (group_col, key, "reference", "candidate")
                            and not str(c).startswith("bleu_")}})
    return pd.DataFrame(rows)


def examples_markdown(examples: pd.DataFrame, *, metric: str = "bertscore",
                      group_col: str = "subject",
                      extra_cols: Sequence[str] = ("class_name",)) -> str:
    """The paper's example layout: Video2Text above fMRI2Text, per subject."""
    key = metric_key(metric)
    lines = []
    for g, sub in examples.groupby(group_col, sort=True):
        lines.append(f"### {subject_label(g)}\n")
        for _, r in sub.iterrows():
            tag = ", ".join(f"{c} {r[c]}" for c in extra_cols if c in r and pd.notna(r[c]))
            head = f"*{r['rank']}*, {METRIC_LABELS.get(key, key)} {r[key]:.2f}"
            lines.append(f"- {head}" + (f" ({tag})" if tag else ""))
            lines.append(f"  - **Video2Text:** {r['reference']}")
            lines.append(f"  - **fMRI2Text:** {r['candidate']}")
        lines.append("")
    return "\n".join(lines)


def write_examples(examples: pd.DataFrame, out_dir: str | os.PathLike, name: str = "examples",
                   **kwargs) -> dict[str, Path]:
    """Write ``<name>.csv`` and ``<name>.md`` (see :func:`examples_markdown`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / f"{name}.csv", "md": out_dir / f"{name}.md"}
    write_csv(examples, paths["csv"], index=False)
    write_text(paths["md"], examples_markdown(examples, **kwargs))
    return paths
