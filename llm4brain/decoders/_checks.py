"""Argument checks shared by the decoders: 2-D finite arrays, matching rows, fitted state."""
from __future__ import annotations

import numpy as np
from sklearn.exceptions import NotFittedError

__all__ = ["NotFittedError", "matrix", "same_rows", "check_fitted", "labels_1d"]


def matrix(a, name: str, owner: str, dtype=np.float64, n_columns: int | None = None,
           what: str = "columns") -> np.ndarray:
    """``a`` as a finite 2-D array (rows: trials); ValueError naming ``name`` otherwise."""
    if hasattr(a, "detach"):                       # a torch tensor
        a = a.detach().cpu().numpy()
    try:
        a = np.asarray(a, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{owner}: {name} must be a numeric array, got {type(a).__name__} "
                         f"({exc})") from None
    if a.ndim != 2:
        raise ValueError(f"{owner}: {name} must be 2-D (n_trials, n_{what}), got shape "
                         f"{a.shape} (average each trial's volumes into one row first, e.g. "
                         f"llm4brain.data.voxel_features)")
    if n_columns is not None and a.shape[1] != n_columns:
        raise ValueError(f"{owner}: {name} has {a.shape[1]} {what} per row, the decoder was "
                         f"fitted on {n_columns}")
    if not np.isfinite(a).all():
        raise ValueError(f"{owner}: {name} contains NaN or inf; mask or impute those "
                         f"voxels/trials first")
    return a


def same_rows(owner: str, first: tuple[str, object], *others: tuple[str, object]) -> None:
    """ValueError when the arrays do not all have as many rows as ``first``."""
    n = len(first[1])
    bad = [(name, len(v)) for name, v in others if len(v) != n]
    if bad:
        desc = ", ".join(f"{name} has {m}" for name, m in bad)
        raise ValueError(f"{owner}: {first[0]} has {n} rows (trials) but {desc}; give one "
                         f"entry per trial")


def labels_1d(y, name: str, owner: str) -> np.ndarray:
    """Labels as a 1-D array of str (one per trial)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{owner}: {name} must be 1-D (one label per trial), got shape {y.shape}")
    return y.astype(str)


def check_fitted(obj, attr: str, method: str) -> None:
    if not hasattr(obj, attr):
        raise NotFittedError(f"{type(obj).__name__}.{method} called before fit: call "
                             f"{type(obj).__name__}.fit(...) on the training trials first")
