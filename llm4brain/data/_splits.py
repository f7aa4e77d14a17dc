"""Subject-wise splits: training subjects vs target (validation) subjects.

Training subjects: runs ``1..n-1`` train, the last run validates (``data.val_fraction`` of
runs, at least one). Target subjects: the first ``data.adapt_fraction`` of runs may be seen,
unlabelled, by domain adaptation; the remaining runs are evaluation trials, never seen in any
form during training. Splitting by run avoids leakage through the HRF overlap of neighbouring
trials (4 s apart).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_json

__all__ = ["Splits", "make_splits", "load_splits"]


@dataclass(frozen=True)
class Splits:
    """Index arrays into the trial table.

    train_idx : training subjects, training runs
    val_idx : training subjects, held-out runs
    adapt_idx : target subjects, adaptation runs (unlabelled fMRI only)
    eval_idx : target subjects, evaluation runs (never used in training)
    """

    train_subjects: tuple[str, ...]
    target_subjects: tuple[str, ...]
    train_idx: np.ndarray = field(repr=False)
    val_idx: np.ndarray = field(repr=False)
    adapt_idx: np.ndarray = field(repr=False)
    eval_idx: np.ndarray = field(repr=False)

    def to_json(self) -> dict:
        return dict(train_subjects=list(self.train_subjects),
                    target_subjects=list(self.target_subjects),
                    **{k: getattr(self, k).tolist() for k in
                       ("train_idx", "val_idx", "adapt_idx", "eval_idx")})

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([dict(split=k, n_trials=len(getattr(self, k))) for k in
                             ("train_idx", "val_idx", "adapt_idx", "eval_idx")])


def _split_runs(runs: np.ndarray, frac: float, first: bool) -> np.ndarray:
    n = len(runs)
    k = int(np.clip(round(frac * n), 1, max(n - 1, 1)))
    return runs[:k] if first else runs[n - k:]


def make_splits(trials: pd.DataFrame, cfg, save: bool = True) -> Splits:
    """Split trials by subject (train vs target) and, within subjects, by run.

    Parameters
    ----------
    trials : DataFrame with columns subject and run (``TrialCache.trials``).
    cfg : Config; ``data.target_subjects`` (empty = the last ``sim.n_target_subjects``
        subjects), ``data.adapt_fraction``, ``data.val_fraction``.
    save : write ``splits.json`` to the run directory.
    """
    subjects = sorted(trials["subject"].astype(str).unique())
    target = [str(s) for s in cfg.data.target_subjects] or subjects[-cfg.sim.n_target_subjects:]
    unknown = [s for s in target if s not in subjects]
    if unknown:
        raise ValueError(f"data.target_subjects {unknown} are not in the dataset "
                         f"(subjects: {subjects})")
    train = [s for s in subjects if s not in target]
    if not train:
        raise ValueError("data.target_subjects leaves no training subject")
    sub = trials["subject"].astype(str).to_numpy()
    run = trials["run"].to_numpy()
    idx = {k: [] for k in ("train", "val", "adapt", "eval")}
    for s in subjects:
        runs = np.unique(run[sub == s])
        if s in target:
            if len(runs) < 2:
                raise ValueError(f"target subject {s} has one run: adaptation and evaluation "
                                 f"trials need different runs")
            seen = _split_runs(runs, cfg.data.adapt_fraction, first=True)
            for r in runs:
                key = "adapt" if r in seen else "eval"
                idx[key].append(np.flatnonzero((sub == s) & (run == r)))
        else:
            held = _split_runs(runs, cfg.data.val_fraction, first=False) if len(runs) > 1 else []
            for r in runs:
                key = "val" if r in held else "train"
                idx[key].append(np.flatnonzero((sub == s) & (run == r)))
    arr = {k: (np.sort(np.concatenate(v)) if v else np.zeros(0, int)) for k, v in idx.items()}
    sp = Splits(tuple(train), tuple(target), arr["train"], arr["val"], arr["adapt"], arr["eval"])
    if save:
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(cfg.run_dir / "splits.json", sp.to_json())
    return sp


def load_splits(path: str | Path) -> Splits:
    """Read ``splits.json`` written by :func:`make_splits`."""
    d = json.loads(Path(path).read_text())
    return Splits(tuple(d["train_subjects"]), tuple(d["target_subjects"]),
                  *(np.asarray(d[k], int) for k in ("train_idx", "val_idx", "adapt_idx", "eval_idx")))
