"""Choosing settings without the target subjects: the pseudo-target protocol.

Every choice a run makes (Stage I / Stage II / domain-adaptation settings, the number of
steps, whether DA stays on) is made on a **pseudo-target**: one *training* subject plays the
target (its first ``data.adapt_fraction`` of runs are its unlabelled adaptation trials, its
other runs are scored), the remaining training subjects train. The real target subjects take
no part at all: :func:`sealed_cache` hands tuning code a trial cache in which reading any of
their blocks raises :class:`~llm4brain.training.guard.LeakageError` and their labels, clips
and onsets are blanked. Their evaluation trials are used once, by the final run.

>>> ps = pseudo_target_splits(tc.trials, splits, cfg)            # doctest: +SKIP
>>> sc = sealed_cache(tc, splits)                                 # doctest: +SKIP
>>> res = train_stage1(cfg, sc, ps, name=pseudo_run_name(...))    # doctest: +SKIP

Checkpoints of tuning runs carry the pseudo-target in their name
(:func:`pseudo_run_name`), so they never mix with the final run's.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import Splits
from ..data._cache import TrialBlocks
from .guard import LeakageError, check_splits
from ..data._splits import _split_runs

__all__ = ["pseudo_target_splits", "sealed_cache", "SealedBlocks", "SealedCache",
           "pseudo_run_name", "default_pseudo_target", "SEALED_COLUMNS", "with_overrides"]

#: Trial-table columns blanked for the real target subjects in a :class:`SealedCache`.
SEALED_COLUMNS = ("class_id", "class_name", "stim_file", "clip_id", "onset", "trial", "run",
                  "vol_index")


def default_pseudo_target(splits: Splits) -> str:
    """The training subject that plays the target: the last one (``data.pseudo_target``
    empty)."""
    if len(splits.train_subjects) < 2:
        raise ValueError(f"the pseudo-target protocol needs at least 2 training subjects, got "
                         f"{list(splits.train_subjects)}; add subjects or leave tuning out")
    return str(splits.train_subjects[-1])


def pseudo_target_splits(trials: pd.DataFrame, splits: Splits, cfg, subject: str | None = None
                         ) -> Splits:
    """Splits in which training subject ``subject`` plays the target.

    Parameters
    ----------
    trials : the trial table (``TrialCache.trials``)
    splits : the run's real splits (:func:`llm4brain.data.make_splits`)
    cfg : Config (``data.adapt_fraction``, ``data.val_fraction``)
    subject : a training subject (default :func:`default_pseudo_target`)

    Returns
    -------
    Splits
        ``train_subjects``: the other training subjects (their train/val runs as before);
        ``target_subjects``: ``(subject,)``, its first ``data.adapt_fraction`` of runs as
        adaptation trials, the rest as evaluation trials. No row of a real target subject
        appears anywhere.
    """
    subject = default_pseudo_target(splits) if subject is None else str(subject)
    if subject in splits.target_subjects:
        raise LeakageError(f"pseudo-target {subject} is a real target subject; the pseudo-"
                           f"target must be one of the training subjects "
                           f"{list(splits.train_subjects)}")
    if subject not in splits.train_subjects:
        raise ValueError(f"pseudo-target {subject} is not a training subject "
                         f"(training subjects: {list(splits.train_subjects)})")
    train = tuple(s for s in splits.train_subjects if s != subject)
    sub = trials["subject"].astype(str).to_numpy()
    run = trials["run"].to_numpy()
    mine = np.flatnonzero(sub == subject)
    runs = np.unique(run[mine])
    if len(runs) < 2:
        raise ValueError(f"pseudo-target {subject} has one run: adaptation and evaluation "
                         f"trials need different runs")
    seen = _split_runs(runs, cfg.data.adapt_fraction, first=True)
    adapt = mine[np.isin(run[mine], seen)]
    evalr = mine[~np.isin(run[mine], seen)]
    keep = np.isin(sub, train)
    tr = np.asarray(splits.train_idx, int)
    va = np.asarray(splits.val_idx, int)
    ps = Splits(train, (subject,), np.sort(tr[keep[tr]]), np.sort(va[keep[va]]),
                np.sort(adapt), np.sort(evalr))
    check_splits(trials, ps)
    return ps


def pseudo_run_name(name: str, splits: Splits) -> str:
    """``<name>-pt<subject>``: the checkpoint name of a tuning run."""
    return f"{name}-pt{'+'.join(splits.target_subjects)}"


class SealedBlocks:
    """Row access to trial blocks that raises on the sealed rows (the real targets').

    Behaves like the ``(n, T, X, Y, Z)`` array for ``shape``, ``dtype``, ``len`` and
    ``[rows]`` / ``[i]`` / ``[a:b]`` indexing along the first axis.
    """

    def __init__(self, blocks, sealed_rows: np.ndarray):
        self._blocks = blocks
        self._sealed = np.zeros(len(blocks), bool)
        self._sealed[np.asarray(sealed_rows, int)] = True
        self.shape = tuple(blocks.shape)
        self.dtype = blocks.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        first = key[0] if isinstance(key, tuple) else key
        rows = np.arange(self.shape[0])[first]
        if np.any(self._sealed[np.atleast_1d(rows)]):
            raise LeakageError("tuning code asked for blocks of a real target subject; only "
                               "training subjects (one of them as pseudo-target) may be read "
                               "while choosing settings")
        return self._blocks[key]

    def __array__(self, dtype=None, copy=None):
        raise LeakageError("a sealed trial cache cannot be read whole (it holds the real "
                           "target subjects); index the rows you may read")


class SealedCache(TrialBlocks):
    """A :class:`~llm4brain.data.TrialCache` with the real target subjects sealed.

    ``blocks`` is a :class:`SealedBlocks`; ``trials`` is a copy whose :data:`SEALED_COLUMNS`
    are blanked (``-1`` / empty) on the target rows; ``volumes`` is ``None`` (MAE
    pretraining, which reads only training subjects' volumes, is not re-run by tuning).
    Everything else (``mask``, ``affine``, ``meta``, ``path``) is the cache's.
    """

    def __init__(self, tc, splits: Splits):
        sub = tc.trials["subject"].astype(str).to_numpy()
        sealed = np.flatnonzero(np.isin(sub, list(splits.target_subjects)))
        self.blocks = SealedBlocks(tc.blocks, sealed)
        t = tc.trials.copy()
        for col in SEALED_COLUMNS:
            if col not in t:
                continue
            if pd.api.types.is_numeric_dtype(t[col]):
                t[col] = t[col].astype(float if t[col].dtype.kind == "f" else np.int64)
                t.loc[t.index[sealed], col] = -1
            else:
                t[col] = t[col].astype(object)
                t.loc[t.index[sealed], col] = ""
        self.trials = t
        self.volumes = None
        self.volume_table = tc.volume_table[~tc.volume_table["subject"].astype(str).isin(
            list(splits.target_subjects))].reset_index(drop=True) \
            if getattr(tc, "volume_table", None) is not None else None
        self.mask = tc.mask
        self.affine = getattr(tc, "affine", None)
        self.path, self.meta = getattr(tc, "path", None), getattr(tc, "meta", {})
        self.sealed_subjects = tuple(splits.target_subjects)

    def __repr__(self) -> str:
        return (f"SealedCache({self.n_trials} trials; sealed target subjects "
                f"{list(self.sealed_subjects)})")


def sealed_cache(tc, splits: Splits) -> SealedCache:
    """The trial cache as tuning code may see it (:class:`SealedCache`)."""
    return SealedCache(tc, splits)


# ============================================================================ candidates
def with_overrides(cfg, overrides: dict | None = None, seed: int | None = None):
    """``cfg`` with dotted overrides (``{"stage1.projector": "spatial"}``) and a seed."""
    changes = {str(k).replace(".", "__"): v for k, v in (overrides or {}).items()}
    bad = [k for k in changes if "__" not in k]
    if bad:
        raise ValueError(f"tuning overrides must be 'section.key', got {bad}")
    for k in changes:
        sec, key = k.split("__", 1)
        if not hasattr(cfg, sec) or not hasattr(getattr(cfg, sec), key):
            raise ValueError(f"tuning override {k.replace('__', '.')!r} is not a setting")
    if seed is not None:
        changes["run__seed"] = int(seed)
    return cfg.replace(**changes) if changes else cfg
