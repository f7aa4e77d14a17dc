"""What every number must be compared with: bootstrap intervals, chance levels, summary table.

Two chance levels are offered; they answer different questions.

**fMRI-shuffle chance** (:func:`chance_scores`, the one the tables report)
    Decode again with the fMRI of each trial replaced by that of another trial (a random
    derangement, within subject when ``groups`` is given), score against the *true* trial's
    Video2Text, repeat ``eval.n_shuffles`` times. It keeps everything the decoder does
    regardless of the brain (its answer style, its prior over frequent actions) and removes
    only the trial-specific information in the fMRI, so "above chance" means "the fMRI
    carries information the decoder uses". It costs one decoding pass per shuffle, so the
    caller decodes (or passes a cheap callable) and this module only scores.
**Re-pairing chance** (:func:`permutation_pairing_chance`)
    Keep the decoder's answers but pair each with the Video2Text of a random other trial.
    Free (no decoding), but it tests "do the answers match their own trial better than
    another trial's", which is also high for a decoder that outputs trial-specific nonsense
    that happens to share style; and its answer distribution is the real one, not the one
    under shuffled input. Usually close to, but not the same as, the shuffle chance.

Intervals: bootstrap over trials (percentile, ``eval.n_bootstrap`` resamples, stratified by
subject when the Total is a mean over subjects) for decoders; for chance levels, the
2.5-97.5 percentiles over the shuffles (the spread of the chance level itself).
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..atomic import write_csv, write_json
from .metrics import METRICS, TextScorer
from .scores import TOTALS, TextScores, _arrays, _total_arrays
from .stage2_results import CONDITION_ORDER
from .tables import subject_label

__all__ = [
    "Interval", "ChanceResult", "bootstrap_ci", "bootstrap_by_group", "derangements",
    "chance_scores",
    "permutation_pairing_chance", "summary_table", "CONDITIONS",
]

#: Default condition names of the summary table (labels of
#: :data:`llm4brain.evaluation.stage2_results.CONDITION_ORDER`), in column order.
CONDITIONS = {k: CONDITION_ORDER[k] for k in ("chance", "pairing_chance", "baseline", "model",
                                              "ceiling", "upper")}


@dataclass(frozen=True)
class Interval:
    """A point estimate and its ``1 - alpha`` percentile interval."""

    estimate: float
    low: float
    high: float
    alpha: float = 0.05
    n: int = 0

    def __str__(self) -> str:
        return f"{self.estimate:.2f} [{self.low:.2f}, {self.high:.2f}]"


def _nanstats(b: np.ndarray, q: tuple[float, float]):
    """Percentiles (axis 0) and std of bootstrap draws; all-NaN columns (BERTScore off) stay NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(b, q, axis=0)
        sd = np.nanstd(b, axis=0, ddof=1) if len(b) > 1 else np.full(np.shape(lo), np.nan)
        mean = np.nanmean(b, axis=0)
    return lo, hi, sd, mean


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _draw_indices(n: int, n_boot: int, rng: np.random.Generator,
                  strata: np.ndarray | None) -> np.ndarray:
    """(n_boot, n) resampled positions, within each stratum when given."""
    if strata is None:
        return rng.integers(0, n, size=(n_boot, n))
    out = np.empty((n_boot, n), dtype=int)
    pos = 0
    for u in pd.unique(strata):
        members = np.flatnonzero(strata == u)
        out[:, pos:pos + len(members)] = members[rng.integers(0, len(members),
                                                              size=(n_boot, len(members)))]
        pos += len(members)
    return out


def bootstrap_ci(data, stat: Callable | None = None, *, n_boot: int = 1000, rng=None,
                 alpha: float = 0.05, strata: Sequence | None = None,
                 total: str = "pooled", group_col: str = "subject"):
    """Percentile bootstrap over trials.

    Parameters
    ----------
    data : array of shape (n_trials,), DataFrame of per-trial scores, or TextScores
        One value per trial, or the per-trial frame of :meth:`TextScorer.score`.
    stat : callable, optional
        For an array: ``stat(values) -> float`` (default ``np.mean``). For a frame:
        ``stat(frame_subset) -> dict or float``; default: the table aggregate of every metric
        (means; corpus BLEU from the summed n-gram statistics), fast.
    n_boot : int
        Number of resamples (``eval.n_bootstrap``).
    rng : Generator or int, optional
    alpha : float
        1 - coverage (``eval.ci_alpha``).
    strata : array of shape (n_trials,), optional
        Resample within each stratum (e.g. subject) so group sizes stay fixed.
    total : {"pooled", "mean_of_subjects"}
        For the default frame statistic: pooled over trials, or the mean of per-``group_col``
        aggregates (then resampling is stratified by ``group_col`` automatically).

    Returns
    -------
    Interval
        For an array or a scalar ``stat``.
    DataFrame
        For a frame with a dict-valued statistic: index = metric, columns ``estimate`` (the
        statistic of all trials), ``low``, ``high``, ``std`` (bootstrap standard error).
    """
    rng = _rng(rng)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha = {alpha}; must lie in (0, 1) (eval.ci_alpha)")
    if n_boot < 1:
        raise ValueError(f"n_boot = {n_boot}; must be >= 1 (eval.n_bootstrap)")
    if isinstance(data, TextScores):
        data = data.per_trial
    q = (100 * alpha / 2, 100 * (1 - alpha / 2))

    if isinstance(data, pd.DataFrame):
        n = len(data)
        if n == 0:
            raise ValueError("no trials to bootstrap")
        groups = data[group_col].to_numpy() if group_col in data.columns else None
        if total not in TOTALS:
            raise ValueError(f"total = {total!r}; use one of {TOTALS}")
        if strata is None and total == "mean_of_subjects":
            strata = groups
        strata = None if strata is None else np.asarray(strata)
        if strata is not None and len(strata) != n:
            raise ValueError(f"strata has {len(strata)} labels for {n} trials")
        draws = _draw_indices(n, n_boot, rng, strata)
        if stat is None:
            arr = _arrays(data)
            full = _total_arrays(arr, groups, total)
            boots = [_total_arrays(arr, groups, total, d) for d in draws]  # ~0.5 ms each
        else:
            full = stat(data)
            boots = [stat(data.iloc[d].reset_index(drop=True)) for d in draws]
        if not isinstance(full, Mapping):
            b = np.asarray(boots, dtype=float)
            return Interval(float(full), *map(float, np.nanpercentile(b, q)), alpha, n_boot)
        keys = [k for k in full if k != "n_trials"]
        b = pd.DataFrame(boots)[keys].to_numpy(dtype=float)
        lo, hi, sd, _ = _nanstats(b, q)
        return pd.DataFrame({"estimate": [float(full[k]) for k in keys], "low": lo, "high": hi,
                             "std": sd}, index=pd.Index(keys, name="metric"))

    values = np.asarray(data, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"bootstrap_ci needs a non-empty 1-D array of per-trial values, got "
                         f"shape {values.shape}; pass a per-trial frame for several metrics")
    strata = None if strata is None else np.asarray(strata)
    draws = _draw_indices(values.size, n_boot, rng, strata)
    if stat is None or stat is np.mean:
        full, b = float(values.mean()), values[draws].mean(axis=1)
    else:
        full, b = float(stat(values)), np.array([stat(values[d]) for d in draws], dtype=float)
    return Interval(full, *map(float, np.nanpercentile(b, q)), alpha, n_boot)


def bootstrap_by_group(scores: TextScores | pd.DataFrame, *, n_boot: int = 1000, rng=None,
                       alpha: float = 0.05, group_col: str = "subject",
                       total: str = "mean_of_subjects",
                       total_label: str = "Total") -> pd.DataFrame:
    """Bootstrap intervals of every metric per target subject and for the Total row.

    Returns
    -------
    DataFrame (tidy)
        Columns ``group`` (``sub-XX`` ..., ``Total``, as the rows of
        :func:`~llm4brain.evaluation.tables.subject_table`), ``metric``, ``estimate``,
        ``low``, ``high``, ``std``. ``plot_subject_bars(..., ci=this)`` picks its metric.
    """
    frame = scores.per_trial if isinstance(scores, TextScores) else scores
    if group_col not in frame.columns:
        raise KeyError(f"per-trial scores have no {group_col!r} column; score with meta=")
    rng = _rng(rng)
    parts = []
    groups = frame[group_col].astype(str)
    for g in sorted(pd.unique(groups)):
        sub = frame[groups.to_numpy() == g].reset_index(drop=True)
        parts.append(bootstrap_ci(sub, n_boot=n_boot, rng=rng, alpha=alpha, total="pooled",
                                  group_col=group_col).assign(group=subject_label(g)))
    parts.append(bootstrap_ci(frame, n_boot=n_boot, rng=rng, alpha=alpha, total=total,
                              group_col=group_col).assign(group=total_label))
    out = pd.concat(parts).reset_index()
    return out[["group", "metric", "estimate", "low", "high", "std"]]


def derangements(n_trials: int, n_draws: int, rng=None,
                 groups: Sequence | None = None) -> np.ndarray:
    """Random permutations without fixed points (trial i never keeps its own index).

    Parameters
    ----------
    n_trials, n_draws : int
    rng : Generator or int, optional
    groups : array of shape (n_trials,), optional
        Permute only within each group (e.g. within subject: the shuffled fMRI of a trial
        comes from the same subject). A group of one trial keeps its own index.

    Returns
    -------
    ndarray of int, shape (n_draws, n_trials)
        ``perm[k, i]`` = the trial whose fMRI (or reference) trial ``i`` gets in draw ``k``.
    """
    rng = _rng(rng)
    if n_trials < 2:
        raise ValueError(f"need at least 2 trials to shuffle, got {n_trials}")
    groups = np.zeros(n_trials, dtype=int) if groups is None else np.asarray(groups)
    if len(groups) != n_trials:
        raise ValueError(f"groups has {len(groups)} labels for {n_trials} trials")
    out = np.tile(np.arange(n_trials), (n_draws, 1))
    for u in pd.unique(groups):
        members = np.flatnonzero(groups == u)
        m = len(members)
        if m < 2:
            continue
        for k in range(n_draws):
            while True:  # rejection sampling: P(derangement) ~ 1/e
                p = rng.permutation(m)
                if not np.any(p == np.arange(m)):
                    break
            out[k, members] = members[p]
    return out


@dataclass
class ChanceResult:
    """Metric distributions under a chance procedure.

    Attributes
    ----------
    draws : DataFrame of shape (n_draws, n_metrics + 1)
        Table aggregate (Total) of each draw; column ``draw``.
    by_group : DataFrame or None
        Long frame (draw, group, metrics...) of per-subject aggregates.
    kind : str
        ``fmri_shuffle`` or ``pairing_permutation``.
    perms : ndarray of shape (n_draws, n_trials) or None
        The permutations used (when drawn here).
    """

    draws: pd.DataFrame
    by_group: pd.DataFrame | None = None
    kind: str = "fmri_shuffle"
    alpha: float = 0.05
    perms: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Index = metric; columns ``estimate`` (mean over draws), ``low``, ``high``, ``std``."""
        return _summarise(self.draws.drop(columns=["draw"], errors="ignore"), self.alpha)

    def group_summary(self, metric: str, *, total_label: str | None = "Total") -> pd.DataFrame:
        """Chance of one metric per group (subject), for per-subject chance bands.

        Returns
        -------
        DataFrame
            Index = group values (and ``total_label`` from :meth:`summary` unless None);
            columns ``estimate`` (mean over draws), ``low``, ``high``.
        """
        if self.by_group is None:
            raise ValueError("no per-group chance: pass meta with a subject column")
        q = (self.alpha / 2, 1 - self.alpha / 2)
        g = self.by_group.groupby("group", sort=True)[metric]
        out = pd.DataFrame({"estimate": g.mean(), "low": g.quantile(q[0]),
                            "high": g.quantile(q[1])})
        out.index = out.index.astype(str)
        if total_label is not None:
            out.loc[total_label] = self.summary().loc[metric, ["estimate", "low", "high"]]
        return out

    def save(self, directory: str | os.PathLike, name: str) -> dict[str, Path]:
        """Write ``<name>_draws.csv`` (+ ``_by_group.csv``) and ``<name>_chance.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {"draws": directory / f"{name}_draws.csv",
                 "meta": directory / f"{name}_chance.json"}
        write_csv(self.draws, paths["draws"], index=False)
        if self.by_group is not None:
            paths["by_group"] = directory / f"{name}_by_group.csv"
            write_csv(self.by_group, paths["by_group"], index=False)
        write_json(paths["meta"], {"kind": self.kind, "alpha": self.alpha,
                                     "metadata": self.metadata}, indent=2, default=str)
        return paths

    @classmethod
    def load(cls, directory: str | os.PathLike, name: str) -> "ChanceResult":
        directory = Path(directory)
        draws, meta = directory / f"{name}_draws.csv", directory / f"{name}_chance.json"
        for p in (draws, meta):
            if not p.is_file():
                raise FileNotFoundError(f"{p} not found: compute the chance level '{name}' "
                                        f"first (ChanceResult.save)")
        bg = directory / f"{name}_by_group.csv"
        m = json.loads(meta.read_text())
        return cls(pd.read_csv(draws),
                   pd.read_csv(bg, dtype={"group": str}) if bg.is_file() else None,
                   m["kind"], m["alpha"], None, m.get("metadata", {}))


def _summarise(draws: pd.DataFrame, alpha: float) -> pd.DataFrame:
    q = (100 * alpha / 2, 100 * (1 - alpha / 2))
    cols = [c for c in draws.columns if c != "n_trials"]
    b = draws[cols].to_numpy(dtype=float)
    lo, hi, sd, mean = _nanstats(b, q)
    return pd.DataFrame({"estimate": mean, "low": lo, "high": hi, "std": sd},
                        index=pd.Index(cols, name="metric"))


def _chance_from_scores(scores: list[TextScores], kind: str, alpha: float, total: str,
                        group_col: str, perms, metadata) -> ChanceResult:
    rows, grows = [], []
    for k, s in enumerate(scores):
        arr = _arrays(s.per_trial)
        groups = s.per_trial[group_col].to_numpy() if group_col in s.per_trial.columns else None
        rows.append({"draw": k, **_total_arrays(arr, groups, total)})
        if groups is not None:
            for g in pd.unique(groups):
                grows.append({"draw": k, "group": g,
                              **_total_arrays(arr, None, "pooled", np.flatnonzero(groups == g))})
    return ChanceResult(pd.DataFrame(rows), pd.DataFrame(grows) if grows else None, kind, alpha,
                        perms, metadata)


def chance_scores(shuffled: Sequence[Sequence[str]] | Callable[[np.ndarray], Sequence[str]],
                  refs: Sequence[str], scorer: TextScorer, *, meta: pd.DataFrame | None = None,
                  n_shuffles: int | None = None, rng=None, groups: Sequence | None = None,
                  alpha: float | None = None, total: str | None = None,
                  group_col: str = "subject") -> ChanceResult:
    """Chance level: metrics of decoding with fMRI shuffled across trials, repeated.

    Parameters
    ----------
    shuffled : list of K lists of str, or callable
        Either the decoder's answers already obtained under K shuffles (list k holds one
        answer per trial, in trial order, decoded from another trial's fMRI), or a function
        ``decode_fn(perm) -> list of str`` that decodes trial ``i`` from the fMRI of trial
        ``perm[i]``; it is called with ``n_shuffles`` derangements drawn here.
    refs : list of str of length n_trials
        Video2Text of the true trials.
    scorer : TextScorer
    meta : DataFrame, optional
        Trial table (a ``subject`` column gives per-subject chance bands).
    n_shuffles : int, optional
        Draws for a callable (default ``scorer.cfg.n_shuffles``).
    rng : Generator or int, optional
    groups : array of shape (n_trials,), optional
        Shuffle within group (default: ``meta[group_col]`` when present).
    alpha, total : optional
        Interval level and Total convention (defaults from ``scorer.cfg``).

    Returns
    -------
    ChanceResult
        ``.summary()``: mean and ``1 - alpha`` interval of each metric over the shuffles.
    """
    alpha = scorer.cfg.ci_alpha if alpha is None else alpha
    total = scorer.cfg.total_row if total is None else total
    perms = None
    if callable(shuffled):
        n_shuffles = scorer.cfg.n_shuffles if n_shuffles is None else n_shuffles
        if groups is None and meta is not None and group_col in meta.columns:
            groups = meta[group_col].to_numpy()
        perms = derangements(len(refs), n_shuffles, rng, groups)
        cand_lists = [list(shuffled(p)) for p in tqdm(perms, desc="decode shuffled fMRI")]
    else:
        cand_lists = [list(c) for c in shuffled]
    if len(cand_lists) < 2:
        raise ValueError(f"{len(cand_lists)} shuffled decoding(s): a chance interval needs "
                         f"several (eval.n_shuffles >= 2)")
    scores = scorer.score_many(cand_lists, refs, meta=meta)
    return _chance_from_scores(scores, "fmri_shuffle", alpha, total, group_col, perms,
                               {"n_draws": len(cand_lists), "total": total, **scorer.metadata})


def permutation_pairing_chance(cands: Sequence[str], refs: Sequence[str], scorer: TextScorer,
                               *, n: int | None = None, rng=None,
                               meta: pd.DataFrame | None = None, groups: Sequence | None = None,
                               alpha: float | None = None, total: str | None = None,
                               group_col: str = "subject") -> ChanceResult:
    """Cheap chance proxy: each answer scored against the reference of a random other trial.

    Parameters
    ----------
    cands, refs : list of str of length n_trials
        fMRI2Text and Video2Text, paired by trial.
    scorer : TextScorer
    n : int, optional
        Number of re-pairings (default ``scorer.cfg.n_permutations``).
    rng : Generator or int, optional
    meta : DataFrame, optional
        Trial table of the candidates' trials (``subject`` gives per-subject chance).
    groups : array, optional
        Re-pair within group only (default: ``meta[group_col]`` when present).

    Returns
    -------
    ChanceResult
        ``kind = "pairing_permutation"``; ``perms[k, i]`` = reference trial of answer ``i``.
    """
    cands, refs = list(cands), list(refs)
    if len(cands) != len(refs):
        raise ValueError(f"{len(cands)} candidates but {len(refs)} references")
    n = scorer.cfg.n_permutations if n is None else n
    alpha = scorer.cfg.ci_alpha if alpha is None else alpha
    total = scorer.cfg.total_row if total is None else total
    if groups is None and meta is not None and group_col in meta.columns:
        groups = meta[group_col].to_numpy()
    perms = derangements(len(refs), n, rng, groups)
    ref_arr = np.asarray(refs, dtype=object)
    scores = scorer.score_many([cands] * n, refs, meta=meta,
                               ref_lists=[list(ref_arr[p]) for p in perms])
    return _chance_from_scores(scores, "pairing_permutation", alpha, total, group_col, perms,
                               {"n_draws": n, "total": total, **scorer.metadata})


def summary_table(model: TextScores | pd.DataFrame | None = None, *,
                  chance: ChanceResult | None = None,
                  pairing_chance: ChanceResult | None = None,
                  baseline: TextScores | pd.DataFrame | None = None,
                  ceiling: TextScores | pd.DataFrame | None = None,
                  upper: TextScores | pd.DataFrame | None = None,
                  extra: Mapping[str, TextScores | pd.DataFrame | ChanceResult] | None = None,
                  names: Mapping[str, str] | None = None, metrics: Sequence[str] = METRICS,
                  n_boot: int = 1000, rng=None, alpha: float = 0.05,
                  total: str = "mean_of_subjects", group_col: str = "subject") -> pd.DataFrame:
    """The single summary table: each metric beside chance, baseline and ceiling.

    Parameters
    ----------
    model : TextScores or per-trial frame
        llm4brain's fMRI2Text scored against Video2Text.
    chance : ChanceResult
        fMRI-shuffle chance (:func:`chance_scores`).
    pairing_chance : ChanceResult
        Re-pairing chance (:func:`permutation_pairing_chance`).
    baseline : TextScores or frame
        Ridge to video embedding + nearest-neighbour retrieval of a training clip's answer.
    ceiling : TextScores or frame
        Noise ceiling: the package's best text decoder on the simulator's noise-free responses
        (the semantic read-out; ridge + nearest neighbour when it is off).
    upper : TextScores or frame
        Video2Text scored against the true clip descriptions (simulated data only).
    extra : mapping name -> scores, optional
        More columns (appended after the standard ones).
    names : mapping, optional
        Override the column names of :data:`CONDITIONS`.
    metrics : sequence of str
        Metric keys, in row order.
    n_boot, rng, alpha, total, group_col
        Bootstrap settings (see :func:`bootstrap_ci`); ``total`` must match the tables'
        Total row (``eval.total_row``; default the paper's mean over subjects, which is
        pooled when the frames have no ``group_col``). Chance results keep the Total
        convention they were computed with.

    Returns
    -------
    DataFrame (tidy)
        Columns ``metric``, ``condition``, ``estimate``, ``low``, ``high``, ``interval``
        (``bootstrap over trials`` or ``over N shuffles``), ``n``. Use
        :func:`llm4brain.evaluation.tables.format_summary` for the wide display table.
    """
    rng = _rng(rng)
    labels = {**CONDITIONS, **(names or {})}
    items = [(labels["chance"], chance), (labels["pairing_chance"], pairing_chance),
             (labels["baseline"], baseline), (labels["model"], model),
             (labels["ceiling"], ceiling), (labels["upper"], upper)]
    items += list((extra or {}).items())
    rows = []
    for cond, obj in items:
        if obj is None:
            continue
        if isinstance(obj, ChanceResult):
            s = obj.summary()
            unit = "shuffles" if obj.kind == "fmri_shuffle" else "re-pairings"
            how, n = f"over {len(obj.draws)} {unit}", len(obj.draws)
        else:
            frame = obj.per_trial if isinstance(obj, TextScores) else obj
            s = bootstrap_ci(frame, n_boot=n_boot, rng=rng, alpha=alpha, total=total,
                             group_col=group_col)
            how, n = "bootstrap over trials", len(frame)
        for m in metrics:
            if m not in s.index:
                raise KeyError(f"metric {m!r} missing from condition {cond!r}")
            r = s.loc[m]
            rows.append({"metric": m, "condition": cond, "estimate": float(r["estimate"]),
                         "low": float(r["low"]), "high": float(r["high"]), "interval": how,
                         "n": n})
    if not rows:
        raise ValueError("summary_table got no results: pass model= and/or the controls")
    return pd.DataFrame(rows)
