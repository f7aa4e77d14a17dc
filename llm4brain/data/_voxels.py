"""Brain-mask voxels of trial blocks (the input of the ridge baseline and of Stage I's voxel
read-outs) and the labels of the clips the trials showed."""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["voxel_features", "clip_labels"]


def clip_labels(label: str, view, stim, setting: str) -> np.ndarray:
    """The value of ``label`` for every trial of ``view`` (str array (n,)): ``class`` from the
    trials, any other label from the stimulus table's column of that name (``stim``,
    :func:`llm4brain.data.load_stimuli`; the simulated data has ``scene``). ``setting`` names
    the key that asked for it in the errors."""
    if label == "class":
        return np.asarray(view.class_name).astype(str)
    if stim is None or label not in stim.columns:
        raise ValueError(f"{setting} names {label!r}, but the stimulus table has no {label!r} "
                         f"column (the simulated data has 'scene'; real data has only 'class'): "
                         f"set {setting} to [class]")
    col = stim.drop_duplicates("stim_file").set_index("stim_file")[label]
    files = np.asarray(view.stim_file).astype(str)
    unknown = sorted(set(files) - set(col.index.astype(str)))
    if unknown:
        raise ValueError(f"{len(unknown)} training clip(s) are not in the stimulus table, e.g. "
                         f"{unknown[:3]}")
    return col.reindex(files).astype(str).to_numpy()


def voxel_features(get_blocks: Callable[[np.ndarray], np.ndarray], n: int, mask: np.ndarray,
                   how: str = "mean", batch_size: int = 64) -> np.ndarray:
    """Ridge inputs: brain-mask voxels of each block, averaged over its T volumes.

    Parameters
    ----------
    get_blocks : callable ``positions -> (b, T, X, Y, Z)``
    n : int
    mask : bool array (X, Y, Z)
    how : ``mean`` (average the T volumes: (n, V)) or ``flat`` (all volumes: (n, T * V))

    Returns
    -------
    float32 array
    """
    if how not in ("mean", "flat"):
        raise ValueError(f"voxel_features: how must be 'mean' or 'flat', got {how!r}")
    m = np.asarray(mask, bool)
    out = []
    for s in range(0, n, batch_size):
        b = np.asarray(get_blocks(np.arange(s, min(n, s + batch_size))), np.float32)[:, :, m]
        out.append(b.mean(1) if how == "mean" else b.reshape(len(b), -1))
    return np.concatenate(out) if out else np.zeros((0, int(m.sum())), np.float32)
