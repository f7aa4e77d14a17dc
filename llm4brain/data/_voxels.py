"""Brain-mask voxels of trial blocks: the input of the ridge baseline and of Stage I's
voxel read-out."""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["voxel_features"]


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
