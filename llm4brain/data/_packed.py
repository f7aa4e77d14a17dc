"""The compact trial-cache format: mask voxels only, float16, one file per subject.

``data.cache_format: masked16`` stores every preprocessed volume as the values of the union
brain mask's voxels (``(n_volumes, n_mask_voxels)`` float16, ``volumes-sub-<label>.f16``) and no
separate blocks: a trial's block is volumes ``vol_index .. vol_index + T - 1`` of its run, the
same values the dense format copies into ``blocks.f32``. At HAD's 2 mm that is about 0.9 GB a
subject instead of 8.3 GB (float32 bounding box, blocks and volumes; bench/results/trial_cache_had.md).

:class:`PackedVolumes` and :class:`PackedBlocks` read it back as the dense float32 arrays the
rest of the package expects — ``(n, X, Y, Z)`` and ``(n, T, X, Y, Z)``, zeros outside the
mask — for ``shape``, ``dtype``, ``len``, ``[i]``, ``[rows]`` and ``[a:b]`` along the first axis;
slicing volumes stays lazy (a run's volumes are read when a window of them is).
"""
from __future__ import annotations

import numpy as np

__all__ = ["PackedVolumes", "PackedBlocks"]


def _rows_of(key, n: int) -> tuple[np.ndarray, bool]:
    """(row indices, whether the key was a single integer) of a first-axis key."""
    if isinstance(key, (int, np.integer)):
        k = int(key)
        if not -n <= k < n:
            raise IndexError(f"index {k} is out of bounds for axis 0 with size {n}")
        return np.array([k % n]), True
    if isinstance(key, slice):
        return np.arange(n)[key], False
    rows = np.asarray(key)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise IndexError(f"boolean index of shape {rows.shape} for axis 0 of size {n}")
        return np.flatnonzero(rows), False
    rows = rows.astype(np.int64).ravel()
    if len(rows) and (rows.min() < -n or rows.max() >= n):
        raise IndexError(f"index out of bounds for axis 0 with size {n}")
    return rows % n if len(rows) else rows, False


class PackedVolumes:
    """Dense ``(n_volumes, X, Y, Z)`` float32 view of mask-voxel volumes in one or more files.

    Parameters
    ----------
    parts : list of arrays (n_i, n_mask_voxels)
        The per-subject memory maps, in cache order.
    mask : bool array (X, Y, Z)
        Where the stored voxels go (C order, the order they were stored in).
    rows : int array, optional
        The global volume rows this view covers (default all).
    """

    def __init__(self, parts, mask: np.ndarray, rows: np.ndarray | None = None):
        self._parts = list(parts)
        self._mask = np.asarray(mask, bool)
        n_vox = int(self._mask.sum())
        for p in self._parts:
            if p.ndim != 2 or p.shape[1] != n_vox:
                raise ValueError(f"packed volumes of shape {p.shape} do not hold the mask's "
                                 f"{n_vox} voxels per volume: the cache is damaged; rebuild it")
        self._offsets = np.cumsum([0] + [len(p) for p in self._parts])
        self._rows = np.arange(self._offsets[-1]) if rows is None else np.asarray(rows, np.int64)
        self.dtype = np.dtype(np.float32)

    @property
    def shape(self) -> tuple:
        return (len(self._rows),) + self._mask.shape

    @property
    def ndim(self) -> int:
        return 1 + self._mask.ndim

    def __len__(self) -> int:
        return len(self._rows)

    def packed(self, rows) -> np.ndarray:
        """Stored values of the view's ``rows``: float32 (len(rows), n_mask_voxels)."""
        glob = self._rows[np.asarray(rows, np.int64)]
        out = np.empty((len(glob), self._parts[0].shape[1] if self._parts else 0), np.float32)
        part = np.searchsorted(self._offsets, glob, side="right") - 1
        for p in np.unique(part):
            sel = np.flatnonzero(part == p)
            local = glob[sel] - self._offsets[p]
            order = np.argsort(local, kind="stable")          # memmaps read fastest in order
            out[sel[order]] = self._parts[p][local[order]]
        return out

    def _dense(self, packed: np.ndarray) -> np.ndarray:
        out = np.zeros((len(packed),) + self._mask.shape, np.float32)
        out[:, self._mask] = packed
        return out

    def __getitem__(self, key):
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(first, slice) and not rest:
            return PackedVolumes(self._parts, self._mask, self._rows[first])   # lazy, like a memmap
        rows, single = _rows_of(first, len(self))
        out = self._dense(self.packed(rows))
        out = out[0] if single else out
        return out[(slice(None),) * (0 if single else 1) + tuple(rest)] if rest else out

    def __array__(self, dtype=None, copy=None):
        out = self._dense(self.packed(np.arange(len(self))))
        return out if dtype is None else out.astype(dtype)


class PackedBlocks:
    """Dense ``(n_trials, T, X, Y, Z)`` float32 trial blocks read from :class:`PackedVolumes`.

    Parameters
    ----------
    volumes : PackedVolumes
        Every volume of the cache.
    first : int array (n_trials,)
        Row of each trial's first volume (``trials.vol_index``).
    n_vols : int
        T, volumes per block.
    """

    def __init__(self, volumes: PackedVolumes, first, n_vols: int):
        self._vols = volumes
        self._first = np.asarray(first, np.int64)
        self._T = int(n_vols)
        if len(self._first) and (self._first.min() < 0 or
                                 self._first.max() + self._T > len(volumes)):
            raise ValueError("trial blocks reach outside the stored volumes: the cache is "
                             "damaged; rebuild it")
        self.dtype = np.dtype(np.float32)

    @property
    def shape(self) -> tuple:
        return (len(self._first), self._T) + self._vols.shape[1:]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self._first)

    def vectors(self, rows) -> np.ndarray:
        """Blocks of ``rows`` flattened to mask voxels: float32 (len(rows), T * n_mask_voxels)."""
        rows = np.asarray(rows, np.int64)
        idx = (self._first[rows][:, None] + np.arange(self._T)).ravel()
        n_vox = self._vols.packed(idx[:0]).shape[1]
        return self._vols.packed(idx).reshape(len(rows), self._T * n_vox)

    def __getitem__(self, key):
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        rows, single = _rows_of(first, len(self))
        packed = self.vectors(rows).reshape(len(rows) * self._T, int(self._vols._mask.sum()))
        out = self._vols._dense(packed).reshape((len(rows), self._T) + self._vols.shape[1:])
        out = out[0] if single else out
        return out[(slice(None),) * (0 if single else 1) + tuple(rest)] if rest else out

    def __array__(self, dtype=None, copy=None):
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)
