"""``patch1d``: MinD-Vis's Conv1d patch embedding over the flattened block (CIFTI grayordinates,
MinD-Vis checkpoints loaded whole)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._tokenizer_base import BrainTokenizer, _as_mask, _as_shape

__all__ = ["Patch1DTokenizer"]


class Patch1DTokenizer(BrainTokenizer):
    """MinD-Vis's patch embedding: a flat vector of values -> ``Conv1d(kernel = stride = p)``.

    For inputs without a 3-D neighbourhood — CIFTI grayordinates (``data.source: ciftify``,
    blocks ``(T, n, 1, 1)``) — or to load a published SC-MBM checkpoint whole, its patch
    embedding included. The block's values are flattened (C order), zero-padded at the end to
    a multiple of ``p`` and cut into ``ceil(n / p)`` patches; token i covers values
    ``i*p .. i*p + p - 1`` and sits at grid position (i, 0, 0).

    Parameters
    ----------
    volume_shape : tuple (T, X, Y, Z)
    mask : bool array (X, Y, Z), optional
        Patches without a mask value are dropped (``drop_outside_mask``).
    embed_dim : int
    patch_size : int
        p (MinD-Vis: 16).
    in_chans : int
        ``0`` or T: the T volumes are the Conv1d's input channels; ``1``: their mean is the one
        channel (MinD-Vis's single-frame input; what its checkpoints expect).
    """

    kind = "patch1d"

    def __init__(self, volume_shape, mask=None, *, embed_dim: int = 128, patch_size: int = 16,
                 in_chans: int = 0, drop_outside_mask: bool = True):
        T, X, Y, Z = _as_shape(volume_shape)
        p = int(patch_size)
        if p < 1:
            raise ValueError(f"tokenizer.patch1d_size must be >= 1, got {patch_size}")
        if in_chans not in (0, 1, T):
            raise ValueError(f"tokenizer.in_chans must be 0 (= T = {T}), 1 (mean of the T "
                             f"volumes) or {T}, got {in_chans}")
        n = X * Y * Z
        super().__init__((T, X, Y, Z), embed_dim, (math.ceil(n / p), 1, 1))
        self.patch_size, self.n_values = p, n
        self.in_chans = T if in_chans in (0, T) else 1
        self.proj = nn.Conv1d(self.in_chans, embed_dim, kernel_size=p, stride=p)
        m = _as_mask(mask, (X, Y, Z))
        flat = (m if m is not None else torch.ones(X, Y, Z, dtype=torch.bool)).reshape(-1)
        self.register_buffer("brain_mask", flat, persistent=False)
        if m is not None and drop_outside_mask:
            cells = self._pad(flat[None, None].float())[0, 0].reshape(-1, p).amax(1) > 0
            if not bool(cells.any()):
                raise ValueError("the brain mask is empty: no token would be kept")
            self.active.copy_(cells)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, self.n_grid * self.patch_size - x.shape[-1]))

    def _flat(self, blocks: torch.Tensor) -> torch.Tensor:
        return self._pad(blocks.reshape(blocks.shape[0], self.volume_shape[0], -1))   # (B, T, L)

    @property
    def patch_dim(self) -> int:
        return self.volume_shape[0] * self.patch_size

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        """Tokens (B, N, D) of blocks (B, T, X, Y, Z)."""
        self.check_input(blocks)
        x = self._flat(blocks)
        if self.in_chans == 1 and x.shape[1] > 1:
            x = x.mean(1, keepdim=True)
        return self.proj(x).transpose(1, 2)[:, self.token_index]

    def patchify(self, blocks: torch.Tensor) -> torch.Tensor:
        """Reconstruction target (B, N, T * p): each token's p values of every volume."""
        self.check_input(blocks)
        x = self._flat(blocks)
        B, T, _ = x.shape
        x = x.reshape(B, T, self.n_grid, self.patch_size).permute(0, 2, 1, 3)
        return x.reshape(B, self.n_grid, T * self.patch_size)[:, self.token_index]

    def patch_weights(self) -> torch.Tensor:
        """Float (N, T * p): 1 for values inside the mask, 0 outside / padding."""
        m = self._pad(self.brain_mask[None, None].float())[0, 0].reshape(self.n_grid, 1, -1)
        return m.expand(-1, self.volume_shape[0], -1).reshape(self.n_grid, -1)[self.token_index]

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`patchify`: (B, N, P) -> blocks (B, T, X, Y, Z); dropped cells are 0."""
        B, T = patches.shape[0], self.volume_shape[0]
        full = patches.new_zeros(B, self.n_grid, self.patch_dim)
        full[:, self.token_index] = patches
        x = full.reshape(B, self.n_grid, T, self.patch_size).permute(0, 2, 1, 3).reshape(B, T, -1)
        return x[:, :, :self.n_values].reshape(B, *self.volume_shape)
