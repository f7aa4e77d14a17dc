"""Per-trial text scores and their aggregates: corpus BLEU from sufficient statistics.

:class:`TextScores` holds the per-trial frame a :class:`~llm4brain.evaluation.metrics.TextScorer`
returns. Its aggregate over a set of trials (:func:`aggregate_scores`, used by every table) is
the mean over trials for BERTScore, ROUGE-L and CIDEr-D and the **corpus-level** BLEU of sacrebleu
(n-gram statistics summed over trials, then one BLEU), computed from the sacrebleu sufficient
statistics each row carries (``bleu_sys_len``, ``bleu_ref_len``, ``bleu_correct_k``,
``bleu_total_k``); :func:`total_scores` gives the Total row (mean of subjects or pooled).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_csv, write_json

__all__ = ["BLEU_ORDERS", "TOTALS", "TextScores", "aggregate_scores", "total_scores",
           "bleu_from_stats"]


#: BLEU orders reported (SacreBLEU-1 and SacreBLEU-2 as in the paper, BLEU-4 as in NVL and COCO).
BLEU_ORDERS = (1, 2, 4)


_MAXN = max(BLEU_ORDERS)


_STAT_COLS = (["bleu_sys_len", "bleu_ref_len"] + [f"bleu_correct_{k}" for k in range(1, _MAXN + 1)]
              + [f"bleu_total_{k}" for k in range(1, _MAXN + 1)])


_MEAN_METRICS = ("bertscore", "bertscore_p", "bertscore_r", "rougeL_f", "rougeL_p", "rougeL_r",
                 "cider")


def bleu_from_stats(correct: Sequence[int], total: Sequence[int], sys_len: int,
                    ref_len: int, order: int, *, effective_order: bool = False,
                    smooth_method: str = "exp") -> float:
    """BLEU-``order`` (percent) from sacrebleu's sufficient statistics.

    Parameters
    ----------
    correct, total : sequence of int of length >= order
        Matched and candidate n-gram counts for n = 1..order (summed over trials for a
        corpus score).
    sys_len, ref_len : int
        Candidate and reference lengths in tokens (summed over trials for a corpus score).
    order : int
        Maximum n-gram order (uniform weights 1/order).
    effective_order : bool
        True for sentence-level BLEU (sacrebleu's recommendation), False for corpus BLEU.
    """
    from sacrebleu.metrics import BLEU
    return float(BLEU.compute_bleu([int(c) for c in correct[:order]],
                                   [int(t) for t in total[:order]],
                                   int(sys_len), int(ref_len), smooth_method=smooth_method,
                                   effective_order=effective_order, max_ngram_order=order).score)


def _arrays(per_trial: pd.DataFrame) -> dict[str, np.ndarray]:
    missing = [c for c in _STAT_COLS if c not in per_trial.columns]
    if missing:
        raise KeyError(f"per-trial frame lacks BLEU statistics columns {missing}; it must come "
                       f"from TextScorer.score (or a CSV written by TextScores.save)")
    out = {c: per_trial[c].to_numpy(dtype=float) for c in _STAT_COLS}
    for m in _MEAN_METRICS + tuple(f"sacrebleu{n}" for n in BLEU_ORDERS):
        if m in per_trial.columns:
            out[m] = per_trial[m].to_numpy(dtype=float)
    return out


def _aggregate_arrays(arr: Mapping[str, np.ndarray], idx: np.ndarray | None = None) -> dict:
    def take(a):
        return a if idx is None else a[idx]
    n = len(take(arr["bleu_sys_len"]))
    out: dict = {}
    for m in _MEAN_METRICS:
        if m in arr:
            out[m] = float(np.mean(take(arr[m]))) if n else float("nan")
    sums = {c: int(round(take(arr[c]).sum())) for c in _STAT_COLS}
    for order in BLEU_ORDERS:
        out[f"sacrebleu{order}"] = bleu_from_stats(
            [sums[f"bleu_correct_{k}"] for k in range(1, order + 1)],
            [sums[f"bleu_total_{k}"] for k in range(1, order + 1)],
            sums["bleu_sys_len"], sums["bleu_ref_len"], order, effective_order=False)
        key = f"sacrebleu{order}"
        if key in arr:
            out[f"{key}_sentence_mean"] = float(np.mean(take(arr[key])))
    out["n_trials"] = int(n)
    return out


def aggregate_scores(per_trial: pd.DataFrame, idx: np.ndarray | None = None) -> dict:
    """Table value of every metric over a set of trials.

    Parameters
    ----------
    per_trial : DataFrame of shape (n_trials, ...)
        Output of :meth:`TextScorer.score` (``.per_trial``), possibly re-read from CSV.
    idx : int array, optional
        Positional indices of the trials to aggregate (repeats allowed: bootstrap).

    Returns
    -------
    dict
        ``bertscore`` (+ ``_p``, ``_r``), ``rougeL_f/p/r`` and ``cider`` (x100): means over
        trials; ``sacrebleu1``, ``sacrebleu2``, ``sacrebleu4``: corpus-level sacrebleu BLEU; ``sacrebleuN_sentence_mean``:
        mean of sentence-level BLEU (for reference only); ``n_trials``. All in percent.
    """
    return _aggregate_arrays(_arrays(per_trial), None if idx is None else np.asarray(idx))


#: How a "Total" over target subjects is formed (``eval.total_row``).
TOTALS = ("mean_of_subjects", "pooled")


def _total_arrays(arr: Mapping[str, np.ndarray], groups: np.ndarray | None, how: str,
                  idx: np.ndarray | None = None) -> dict:
    if how not in TOTALS:
        raise ValueError(f"total = {how!r}; use one of {TOTALS} (eval.total_row)")
    if how == "pooled" or groups is None:
        return _aggregate_arrays(arr, idx)
    idx = np.arange(len(groups)) if idx is None else np.asarray(idx)
    g = groups[idx]
    per = [_aggregate_arrays(arr, idx[g == u]) for u in pd.unique(g)]
    out = {k: float(np.mean([p[k] for p in per])) for k in per[0] if k != "n_trials"}
    out["n_trials"] = int(len(idx))
    return out


def total_scores(per_trial: pd.DataFrame, how: str = "mean_of_subjects", *,
                 group_col: str = "subject", idx: np.ndarray | None = None) -> dict:
    """The "Total" of a table: metrics over every target subject.

    Parameters
    ----------
    per_trial : DataFrame of shape (n_trials, ...)
        Per-trial scores with a ``group_col`` column.
    how : {"mean_of_subjects", "pooled"}
        ``mean_of_subjects``: mean of the per-subject aggregates (the paper's Total row:
        53.27 = mean of its four subject rows of Table 1). ``pooled``: every metric over all
        trials at once (corpus BLEU over all trials). Without ``group_col`` both are pooled.
    idx : int array, optional
        Positional trials to use (bootstrap draws).
    """
    groups = per_trial[group_col].to_numpy() if group_col in per_trial.columns else None
    return _total_arrays(_arrays(per_trial), groups, how, idx)


@dataclass
class TextScores:
    """Scores of one set of paired texts.

    Attributes
    ----------
    per_trial : DataFrame of shape (n_trials, ...)
        Optional trial metadata columns (``meta``), then ``candidate``, ``reference``, the
        metrics of :data:`METRICS` plus ``bertscore_p``/``bertscore_r`` (percent) and the
        BLEU sufficient statistics.
    aggregate : dict
        :func:`aggregate_scores` of all trials.
    metadata : dict
        Settings that produced the numbers (model, layer, idf, BLEU signature, ...).
    """

    per_trial: pd.DataFrame
    aggregate: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.aggregate:
            self.aggregate = aggregate_scores(self.per_trial)

    def subset(self, mask) -> "TextScores":
        """Scores of the trials selected by a boolean mask or positional indices."""
        mask = np.asarray(mask)
        sub = self.per_trial.iloc[np.flatnonzero(mask) if mask.dtype == bool else mask]
        return TextScores(sub.reset_index(drop=True), {}, dict(self.metadata))

    def by_group(self, column: str = "subject") -> pd.DataFrame:
        """One row of aggregates per value of ``column`` (e.g. per target subject)."""
        if column not in self.per_trial.columns:
            raise KeyError(f"per-trial scores have no column {column!r}; pass the trial table "
                           f"as meta= to TextScorer.score "
                           f"(columns: {list(self.per_trial.columns)})")
        arr = _arrays(self.per_trial)
        rows = {g: _aggregate_arrays(arr, np.flatnonzero(self.per_trial[column].to_numpy() == g))
                for g in pd.unique(self.per_trial[column])}
        out = pd.DataFrame.from_dict(rows, orient="index")
        out.index.name = column
        return out

    def save(self, directory: str | os.PathLike, name: str) -> dict[str, Path]:
        """Write ``<name>_per_trial.csv`` and ``<name>_scores.json`` (aggregate + metadata)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {"per_trial": directory / f"{name}_per_trial.csv",
                 "scores": directory / f"{name}_scores.json"}
        write_csv(self.per_trial, paths["per_trial"], index=False)
        write_json(paths["scores"], {"aggregate": self.aggregate, "metadata": self.metadata},
                   indent=2, default=str)
        return paths

    @classmethod
    def load(cls, directory: str | os.PathLike, name: str) -> "TextScores":
        """Read what :meth:`save` wrote (the aggregate is recomputed and checked)."""
        directory = Path(directory)
        csv, js = directory / f"{name}_per_trial.csv", directory / f"{name}_scores.json"
        for p in (csv, js):
            if not p.is_file():
                raise FileNotFoundError(f"{p} not found: run the evaluation step that writes "
                                        f"scores '{name}' first (TextScores.save)")
        per_trial = pd.read_csv(csv, dtype={"subject": str, "candidate": str, "reference": str})
        for col in ("candidate", "reference"):
            if col in per_trial.columns:
                per_trial[col] = per_trial[col].fillna("")
        meta = json.loads(js.read_text())
        return cls(per_trial, {}, meta.get("metadata", {}))


def _with_meta(df: pd.DataFrame, meta: pd.DataFrame | None) -> pd.DataFrame:
    if meta is None:
        return df
    meta = pd.DataFrame(meta).reset_index(drop=True)
    if len(meta) != len(df):
        raise ValueError(f"meta has {len(meta)} rows for {len(df)} trials; pass the trial table "
                         f"rows of exactly the scored trials, in order")
    clash = [c for c in meta.columns if c in df.columns]
    if clash:
        raise ValueError(f"meta columns {clash} clash with score columns; rename them")
    return pd.concat([meta, df], axis=1)
