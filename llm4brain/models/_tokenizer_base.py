"""The interface every fMRI tokenizer implements (:class:`BrainTokenizer`) and its checks."""
from __future__ import annotations

import abc

import numpy as np
import torch
import torch.nn as nn

__all__ = ["BrainTokenizer"]


def _as_shape(volume_shape) -> tuple[int, int, int, int]:
    shape = tuple(int(s) for s in volume_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"volume_shape must be (T, X, Y, Z) with positive sizes, got {volume_shape}; "
                         f"pass TrialCache.block_shape")
    return shape  # type: ignore[return-value]


def _as_mask(mask, spatial: tuple[int, int, int]) -> torch.Tensor | None:
    if mask is None:
        return None
    m = torch.as_tensor(np.asarray(mask)).bool()
    if tuple(m.shape) != tuple(spatial):
        raise ValueError(f"brain mask shape {tuple(m.shape)} does not match the volume grid {spatial}; "
                         f"pass the TrialCache.mask of the same cache as the blocks")
    return m


class BrainTokenizer(nn.Module, metaclass=abc.ABCMeta):
    """Base class: blocks (B, T, X, Y, Z) -> tokens (B, N, D).

    Parameters
    ----------
    volume_shape : tuple (T, X, Y, Z)
        Shape of one block (``TrialCache.block_shape``).
    embed_dim : int
        Token width D.
    grid_shape : tuple (gx, gy, gz)
        Shape of the full token grid (before dropping inactive cells).
    """

    kind: str = ""

    def __init__(self, volume_shape, embed_dim: int, grid_shape: tuple[int, int, int]):
        super().__init__()
        self.volume_shape = _as_shape(volume_shape)
        self.embed_dim = int(embed_dim)
        self.grid_shape = tuple(int(g) for g in grid_shape)
        self.register_buffer("active", torch.ones(self.n_grid, dtype=torch.bool))
        coords = torch.stack(torch.meshgrid(*[torch.arange(g) for g in self.grid_shape],
                                            indexing="ij"), -1).reshape(-1, 3)
        self.register_buffer("grid_coords", coords.float(), persistent=False)

    # ------------------------------------------------------------------ token bookkeeping
    @property
    def n_grid(self) -> int:
        """Number of cells of the full token grid."""
        return int(np.prod(self.grid_shape))

    @property
    def token_index(self) -> torch.Tensor:
        """Long (N,): grid cells (row-major over ``grid_shape``) that are kept as tokens."""
        return torch.nonzero(self.active, as_tuple=False).squeeze(1)

    @property
    def n_tokens(self) -> int:
        """Number of tokens N per block."""
        return int(self.active.sum())

    @property
    def positions(self) -> torch.Tensor:
        """Float (N, 3): integer grid coordinates (i, j, k) of every token."""
        return self.grid_coords[self.token_index]

    @property
    @abc.abstractmethod
    def patch_dim(self) -> int:
        """Length P of the reconstruction target of one token (see :meth:`patchify`)."""

    def check_input(self, blocks: torch.Tensor) -> None:
        """Raise a clear error unless ``blocks`` is float (B, T, X, Y, Z) of this tokenizer."""
        if not torch.is_tensor(blocks):
            raise TypeError(f"blocks must be a torch.Tensor (B, T, X, Y, Z), got {type(blocks).__name__}; "
                            f"use torch.from_numpy(np.asarray(tc.blocks[idx]))")
        if blocks.ndim != 5 or tuple(blocks.shape[1:]) != self.volume_shape:
            raise ValueError(f"{self.kind} tokenizer expects blocks of shape (B, {', '.join(map(str, self.volume_shape))}), "
                             f"got {tuple(blocks.shape)}; rebuild the tokenizer with the block shape of "
                             f"this trial cache (TrialCache.block_shape)")
        if not blocks.is_floating_point():
            raise TypeError(f"blocks must be floating point, got {blocks.dtype}")

    @abc.abstractmethod
    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        """(B, T, X, Y, Z) blocks -> (B, N, D) tokens."""

    @abc.abstractmethod
    def patchify(self, blocks: torch.Tensor) -> torch.Tensor:
        """(B, T, X, Y, Z) blocks -> (B, N, P) reconstruction targets."""

    @abc.abstractmethod
    def patch_weights(self) -> torch.Tensor:
        """(N, P) weight of each target value (0 outside the brain mask)."""

    @abc.abstractmethod
    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, N, P) -> (B, T, X, Y, Z), the inverse of :meth:`patchify`."""

    def extra_repr(self) -> str:
        return (f"volume_shape={self.volume_shape}, grid_shape={self.grid_shape}, "
                f"n_tokens={self.n_tokens}, embed_dim={self.embed_dim}")
