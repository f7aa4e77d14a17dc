"""fMRI tokenizers: a trial block (B, T, X, Y, Z) -> tokens (B, N, D) with 3-D positions.

Three tokenizers share one interface (registry :data:`TOKENIZERS`, factory
:func:`build_tokenizer`):

``cnn3d``
    LLM4Brain's spatio-temporal convolutional tokenizer (paper sec. 3.1): the T volumes of a
    block are the input channels of a stack of strided ``Conv3d`` (+ norm + GELU), a final
    1x1x1 convolution maps to ``embed_dim``; each output cell is a *super-voxel* token covering
    ``S^3`` input voxels (``S = prod(strides)``). Activation memory is linear in the number of
    voxels (no attention over voxels). Tokens whose cell holds no brain voxel can be dropped.
``nvl``
    Neuro-Vision-to-Language preprocessing (Shen et al. 2024): trilinear resampling of every
    subject's volume to one common grid (``grid_mm``), cubic patches of ``patch_size^3`` grid
    voxels, removal of *inactive* patches (outside the brain or of low variance across the
    training subjects' trials, learned once by :meth:`NVLTokenizer.fit_active_patches` and
    saved in the state dict), linear patch embedding.
``patch1d``
    MinD-Vis's SC-MBM patch embedding: the block flattened to a vector, ``Conv1d`` with
    kernel = stride = 16; for CIFTI grayordinates and for loading MinD-Vis checkpoints whole.

Every tokenizer keeps a boolean buffer ``active`` over its full token grid
(``grid_shape``); ``token_index`` are the kept grid cells and ``positions`` their integer
grid coordinates (N, 3), used by the encoder for its positional embedding. ``patchify``
returns the masked-brain-modelling reconstruction target of each token: the input values of
its cell (cnn3d: ``T * S^3`` raw values, the input zero-padded at the far end to a multiple of
``S``; nvl: the ``T * patch_size^3`` resampled values).
"""
from __future__ import annotations

import logging
import math
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ._patch1d import Patch1DTokenizer
from ._tokenizer_base import BrainTokenizer, _as_mask, _as_shape

__all__ = ["BrainTokenizer", "CNN3DTokenizer", "NVLTokenizer", "Patch1DTokenizer", "TOKENIZERS",
           "build_tokenizer"]

log = logging.getLogger(__name__)


# ====================================================================== cnn3d
def _cubes(x: torch.Tensor, edge: int) -> torch.Tensor:
    """(B, C, gx*e, gy*e, gz*e) -> (B, gx*gy*gz, C*e^3): non-overlapping cubes, row-major."""
    B, C, X, Y, Z = x.shape
    gx, gy, gz = X // edge, Y // edge, Z // edge
    x = x.reshape(B, C, gx, edge, gy, edge, gz, edge)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(B, gx * gy * gz, C * edge ** 3)


def _uncubes(p: torch.Tensor, C: int, edge: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of :func:`_cubes`: (B, n_grid, C*e^3) -> (B, C, gx*e, gy*e, gz*e)."""
    B = p.shape[0]
    gx, gy, gz = grid
    x = p.reshape(B, gx, gy, gz, C, edge, edge, edge).permute(0, 4, 1, 5, 2, 6, 3, 7)
    return x.reshape(B, C, gx * edge, gy * edge, gz * edge)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        groups = math.gcd(channels, 8)
        return nn.GroupNorm(groups, channels)
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"tokenizer.norm = {kind!r} is not one of: group, batch, none")


class CNN3DTokenizer(BrainTokenizer):
    """Spatio-temporal 3D-CNN tokenizer (LLM4Brain sec. 3.1).

    Parameters
    ----------
    volume_shape : tuple (T, X, Y, Z)
    mask : bool array (X, Y, Z), optional
        Brain mask; with ``drop_outside_mask`` only cells that contain brain are tokens.
    embed_dim : int
    channels, strides : sequence of int
        One ``Conv3d(k, stride=s, padding=k // 2)`` + norm + GELU per entry.
    kernel_size : int
        Odd kernel size (so the token grid is exactly ``ceil(shape / prod(strides))``).
    norm : {'group', 'batch', 'none'}
    drop_outside_mask : bool
    affine : (4, 4) array, optional
        Affine of the input grid (for :meth:`token_centers_mm`).

    Notes
    -----
    Memory of forward + backward is O(B * T * X * Y * Z * channels[0] / strides[0]^3): linear in
    the number of voxels, in contrast to voxel-level self-attention (quadratic).
    """

    kind = "cnn3d"

    def __init__(self, volume_shape, mask=None, *, embed_dim: int = 128,
                 channels=(16, 32), strides=(2, 2), kernel_size: int = 3, norm: str = "group",
                 drop_outside_mask: bool = True, affine=None):
        T, X, Y, Z = _as_shape(volume_shape)
        channels, strides = tuple(int(c) for c in channels), tuple(int(s) for s in strides)
        if len(channels) == 0 or len(channels) != len(strides):
            raise ValueError(f"tokenizer.channels {channels} and tokenizer.strides {strides} must be "
                             f"non-empty and of the same length (one stride per conv layer)")
        if kernel_size % 2 != 1:
            raise ValueError(f"tokenizer.kernel_size must be odd (got {kernel_size}) so that the token "
                             f"grid is ceil(shape / prod(strides))")
        S = int(np.prod(strides))
        super().__init__((T, X, Y, Z), embed_dim, tuple(math.ceil(n / S) for n in (X, Y, Z)))
        self.stride = S
        layers: list[nn.Module] = []
        c_in = T
        for c, s in zip(channels, strides):
            layers += [nn.Conv3d(c_in, c, kernel_size, stride=s, padding=kernel_size // 2),
                       _norm(norm, c), nn.GELU()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv3d(c_in, embed_dim, kernel_size=1)
        m = _as_mask(mask, (X, Y, Z))
        self.register_buffer("brain_mask", m if m is not None else torch.ones(X, Y, Z, dtype=torch.bool),
                             persistent=False)
        self.register_buffer("affine", torch.as_tensor(np.eye(4) if affine is None else np.asarray(affine),
                                                       dtype=torch.float64), persistent=False)
        if m is not None and drop_outside_mask:
            cells = _cubes(self._pad(m[None, None].float()), S)[0].amax(dim=1) > 0
            if not bool(cells.any()):
                raise ValueError("the brain mask is empty: no token would be kept")
            self.active.copy_(cells)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        S = self.stride
        pads = []
        for n in reversed(x.shape[2:]):
            pads += [0, (-n) % S]
        return F.pad(x, pads)

    @property
    def patch_dim(self) -> int:
        return self.volume_shape[0] * self.stride ** 3

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        """Tokens (B, N, D) of blocks (B, T, X, Y, Z)."""
        self.check_input(blocks)
        x = self.proj(self.convs(blocks))                        # (B, D, gx, gy, gz)
        x = x.flatten(2).transpose(1, 2)                         # (B, n_grid, D)
        return x[:, self.token_index]

    def patchify(self, blocks: torch.Tensor) -> torch.Tensor:
        """Reconstruction target (B, N, T * S^3): the input values of each token's cell."""
        self.check_input(blocks)
        return _cubes(self._pad(blocks), self.stride)[:, self.token_index]

    def patch_weights(self) -> torch.Tensor:
        """Float (N, T * S^3): 1 for values inside the brain mask, 0 outside / padding."""
        m = self.brain_mask[None, None].float().expand(1, self.volume_shape[0], *self.volume_shape[1:])
        return _cubes(self._pad(m), self.stride)[0, self.token_index]

    def hide_masked(self, blocks: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Blocks with the voxels of masked tokens' cells set to 0 (``mask`` (B, N), 1 = hidden).

        The convolutions' receptive fields reach past a cell (kernel 3, stride 2, twice: 3
        voxels into the neighbouring cell on each axis), so a visible token computed from the
        full block would carry part of its masked neighbours' values into the encoder. Masked
        brain modelling hides them from the input first (as ConvMAE/SparK do for CNNs)."""
        m = self.unpatchify(mask[..., None].to(blocks.dtype).expand(-1, -1, self.patch_dim))
        return blocks * (1.0 - m)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`patchify`: (B, N, P) -> blocks (B, T, X, Y, Z); dropped cells are 0."""
        B = patches.shape[0]
        full = patches.new_zeros(B, self.n_grid, self.patch_dim)
        full[:, self.token_index] = patches
        x = _uncubes(full, self.volume_shape[0], self.stride, self.grid_shape)
        X, Y, Z = self.volume_shape[1:]
        return x[:, :, :X, :Y, :Z]

    def token_centers_mm(self) -> torch.Tensor:
        """(N, 3) world coordinates (mm, through ``affine``) of each token's cell centre."""
        c = self.positions.double() * self.stride + (self.stride - 1) / 2.0
        return c @ self.affine[:3, :3].T + self.affine[:3, 3]


# ====================================================================== nvl
class NVLTokenizer(BrainTokenizer):
    """NVL preprocessing: trilinear resampling to one grid, cubic patches, active patches.

    Parameters
    ----------
    volume_shape : tuple (T, X, Y, Z)
        Block shape on the *source* grid.
    mask : bool array (X, Y, Z), optional
        Brain mask on the source grid (patch coverage).
    affine : (4, 4) array, optional
        Source voxel -> world (mm) affine. ``None``: voxels of ``grid_mm`` (no rescaling).
    embed_dim, grid_mm, patch_size, min_coverage, active_quantile : see
        :class:`llm4brain.config.TokenizerConfig`.

    Notes
    -----
    The common grid is axis-aligned, spaced ``grid_mm``, spans the source field of view and is
    padded to a multiple of ``patch_size``. Before :meth:`fit_active_patches` the covered
    patches are active; after it the set is frozen (buffers ``active`` and ``fitted`` in the
    state dict) and a new subject, even one on another source grid
    (:meth:`set_source_grid`), gets exactly the same tokens.
    """

    kind = "nvl"

    def __init__(self, volume_shape, mask=None, affine=None, *, embed_dim: int = 128,
                 grid_mm: float = 6.0, patch_size: int = 4, min_coverage: float = 0.1,
                 active_quantile: float = 0.1):
        T, X, Y, Z = _as_shape(volume_shape)
        if grid_mm <= 0 or patch_size < 1:
            raise ValueError(f"tokenizer.grid_mm ({grid_mm}) must be > 0 and tokenizer.patch_size "
                             f"({patch_size}) >= 1")
        if not 0.0 <= active_quantile < 1.0:
            raise ValueError(f"tokenizer.active_quantile must be in [0, 1), got {active_quantile}")
        src_aff = np.diag([grid_mm, grid_mm, grid_mm, 1.0]) if affine is None else np.asarray(affine, float)
        if src_aff.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {src_aff.shape}")
        # common grid: axis-aligned bounding box of the source voxel centres
        corners = np.array([[i, j, k, 1.0] for i in (0, X - 1) for j in (0, Y - 1) for k in (0, Z - 1)])
        world = corners @ src_aff.T
        lo, hi = world[:, :3].min(0), world[:, :3].max(0)
        n_vox = np.floor((hi - lo) / grid_mm + 1e-6).astype(int) + 1
        grid = tuple(int(math.ceil(n / patch_size)) for n in n_vox)
        super().__init__((T, X, Y, Z), embed_dim, grid)
        self.patch_size = int(patch_size)
        self.grid_mm = float(grid_mm)
        self.min_coverage = float(min_coverage)
        self.active_quantile = float(active_quantile)
        tgt = np.diag([grid_mm, grid_mm, grid_mm, 1.0])
        tgt[:3, 3] = lo
        self.register_buffer("target_affine", torch.as_tensor(tgt, dtype=torch.float64))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("coverage", torch.zeros(self.n_grid))
        self.register_buffer("variance", torch.zeros(self.n_grid))
        self.proj = nn.Linear(self.patch_dim, embed_dim)
        self.set_source_grid(src_aff, (X, Y, Z), mask)

    # ------------------------------------------------------------------ grids
    @property
    def target_shape(self) -> tuple[int, int, int]:
        """Voxel shape of the common grid (a multiple of ``patch_size``)."""
        return tuple(g * self.patch_size for g in self.grid_shape)

    @property
    def patch_dim(self) -> int:
        return self.volume_shape[0] * self.patch_size ** 3

    def set_source_grid(self, affine, spatial_shape, mask=None) -> None:
        """Resample from another source grid (e.g. a new subject) onto the same common grid.

        Parameters
        ----------
        affine : (4, 4) array
            Source voxel -> world affine.
        spatial_shape : tuple (X, Y, Z)
            Source volume shape; blocks must then be (B, T, X, Y, Z).
        mask : bool array (X, Y, Z), optional
            Source brain mask. Before fitting it defines the covered (active) patches; after
            fitting the active set does not change.
        """
        affine = np.asarray(affine, float)
        spatial_shape = tuple(int(s) for s in spatial_shape)
        m = _as_mask(mask, spatial_shape)
        self.volume_shape = (self.volume_shape[0],) + spatial_shape
        gx, gy, gz = self.target_shape
        ijk = np.stack(np.meshgrid(np.arange(gx), np.arange(gy), np.arange(gz), indexing="ij"), -1)
        tgt = self.target_affine.cpu().numpy()
        world = ijk.reshape(-1, 3) @ tgt[:3, :3].T + tgt[:3, 3]
        src = (np.c_[world, np.ones(len(world))] @ np.linalg.inv(affine).T)[:, :3]
        denom = np.maximum(np.array(spatial_shape) - 1, 1)
        norm = 2.0 * src / denom - 1.0                          # align_corners=True convention
        # grid_sample's last axis is (W, H, D) = (z, y, x) for an input (N, C, X, Y, Z)
        dev = self.target_affine.device
        g = torch.as_tensor(norm[:, ::-1].copy(), dtype=torch.float32, device=dev).reshape(1, gx, gy, gz, 3)
        self.register_buffer("sample_grid", g, persistent=False)
        self.register_buffer("source_affine", torch.as_tensor(affine, device=dev), persistent=False)
        if m is None:
            m = torch.ones(spatial_shape, dtype=torch.bool)
        rm = self.resample(m[None, None].float().to(dev))[0, 0]        # (gx, gy, gz) in [0, 1]
        self.register_buffer("grid_mask", (rm > 0.5), persistent=False)
        cov = _cubes(rm[None, None], self.patch_size)[0].mean(1)
        if not bool(self.fitted):
            self.coverage.copy_(cov)
            covered = cov >= self.min_coverage
            if not bool(covered.any()):
                raise ValueError(f"no patch reaches tokenizer.min_coverage = {self.min_coverage} of brain; "
                                 f"lower it or check the mask / affine")
            self.active.copy_(covered)

    def resample(self, volumes: torch.Tensor) -> torch.Tensor:
        """Trilinear resampling (B, C, X, Y, Z) on the source grid -> (B, C, *target_shape)."""
        grid = self.sample_grid.to(volumes.device, volumes.dtype).expand(volumes.shape[0], *self.sample_grid.shape[1:])
        return F.grid_sample(volumes, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    # ------------------------------------------------------------------ active patches
    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    @torch.no_grad()
    def fit_active_patches(self, blocks, batch_size: int = 64, refit: bool = False,
                           progress: bool = True) -> dict:
        """Learn the active patches from the TRAINING subjects' blocks and freeze them.

        A patch is active when its brain coverage is at least ``min_coverage`` and the mean
        (over its voxels and volumes) of the variance across trials is not below the
        ``active_quantile`` quantile of that statistic over covered patches.

        Parameters
        ----------
        blocks : array or tensor (n_trials, T, X, Y, Z), or iterable of such chunks
            Training subjects' blocks on the source grid (a memmap is read in chunks).
        batch_size : int
            Trials resampled at once.
        refit : bool
            Allow fitting again (the active set is otherwise fixed after the first fit).

        Returns
        -------
        dict with n_grid, n_covered, n_active.
        """
        if self.is_fitted and not refit:
            raise RuntimeError("the NVL active-patch mask is already fitted and stays fixed for new "
                               "subjects; pass refit=True to learn it again from training subjects")
        n, s1, s2 = 0, None, None
        chunks: Iterable = ((blocks[i:i + batch_size] for i in range(0, len(blocks), batch_size))
                            if hasattr(blocks, "shape") else blocks)
        for chunk in tqdm(chunks, desc="NVL active patches", disable=not progress, leave=False):
            x = torch.as_tensor(np.asarray(chunk), dtype=torch.float32, device=self.target_affine.device)
            self.check_input(x)
            p = _cubes(self.resample(x), self.patch_size).double()       # (b, n_grid, P)
            s1 = p.sum(0) if s1 is None else s1 + p.sum(0)
            s2 = (p * p).sum(0) if s2 is None else s2 + (p * p).sum(0)
            n += x.shape[0]
        if n < 2:
            raise ValueError(f"fit_active_patches needs at least 2 training trials, got {n}")
        var = (s2 / n - (s1 / n) ** 2).clamp_min(0).mean(1).float()       # (n_grid,)
        covered = self.coverage >= self.min_coverage
        thr = torch.quantile(var[covered], self.active_quantile) if self.active_quantile > 0 else -1.0
        active = covered & (var >= thr)
        self.variance.copy_(var)
        self.active.copy_(active)
        self.fitted.fill_(True)
        out = dict(n_grid=self.n_grid, n_covered=int(covered.sum()), n_active=int(active.sum()))
        log.info("NVL active patches: %s", out)
        return out

    # ------------------------------------------------------------------ tokens
    def patchify(self, blocks: torch.Tensor) -> torch.Tensor:
        """Resampled patches (B, N, T * patch_size^3) of the active patches."""
        self.check_input(blocks)
        return _cubes(self.resample(blocks), self.patch_size)[:, self.token_index]

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        """Tokens (B, N, D): linear embedding of the active resampled patches."""
        return self.proj(self.patchify(blocks))

    def patch_weights(self) -> torch.Tensor:
        """Float (N, P): 1 where the resampled brain mask is > 0.5."""
        m = self.grid_mask[None, None].float().expand(1, self.volume_shape[0], *self.target_shape)
        return _cubes(m, self.patch_size)[0, self.token_index]

    def grid_patchify(self, grid: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`unpatchify`: (B, T, *common grid) -> active patches (B, N, P)."""
        return _cubes(grid, self.patch_size)[:, self.token_index]

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, N, P) -> (B, T, *target_shape) on the common grid; inactive patches are 0."""
        full = patches.new_zeros(patches.shape[0], self.n_grid, self.patch_dim)
        full[:, self.token_index] = patches
        return _uncubes(full, self.volume_shape[0], self.patch_size, self.grid_shape)

    def token_centers_mm(self) -> torch.Tensor:
        """(N, 3) world coordinates (mm) of each active patch centre."""
        c = self.positions.double() * self.patch_size + (self.patch_size - 1) / 2.0
        return c @ self.target_affine[:3, :3].T + self.target_affine[:3, 3]


# ====================================================================== registry
def _build_cnn3d(tcfg, volume_shape, mask, affine) -> BrainTokenizer:
    return CNN3DTokenizer(volume_shape, mask, embed_dim=tcfg.embed_dim, channels=tcfg.channels,
                          strides=tcfg.strides, kernel_size=tcfg.kernel_size, norm=tcfg.norm,
                          drop_outside_mask=tcfg.drop_outside_mask, affine=affine)


def _build_nvl(tcfg, volume_shape, mask, affine) -> BrainTokenizer:
    return NVLTokenizer(volume_shape, mask, affine, embed_dim=tcfg.embed_dim, grid_mm=tcfg.grid_mm,
                        patch_size=tcfg.patch_size, min_coverage=tcfg.min_coverage,
                        active_quantile=tcfg.active_quantile)


def _build_patch1d(tcfg, volume_shape, mask, affine) -> BrainTokenizer:
    return Patch1DTokenizer(volume_shape, mask, embed_dim=tcfg.embed_dim,
                            patch_size=tcfg.patch1d_size, in_chans=tcfg.in_chans,
                            drop_outside_mask=tcfg.drop_outside_mask)


#: name -> builder ``f(tokenizer_cfg, volume_shape, mask, affine) -> BrainTokenizer``
TOKENIZERS: dict[str, Callable[..., BrainTokenizer]] = {"cnn3d": _build_cnn3d, "nvl": _build_nvl,
                                                        "patch1d": _build_patch1d}


def build_tokenizer(cfg, volume_shape, mask=None, affine=None) -> BrainTokenizer:
    """Build the tokenizer named by ``cfg.tokenizer.kind``.

    Parameters
    ----------
    cfg : Config or TokenizerConfig
    volume_shape : tuple (T, X, Y, Z)
        ``TrialCache.block_shape``.
    mask : bool array (X, Y, Z), optional
        ``TrialCache.mask``.
    affine : (4, 4) array, optional
        ``TrialCache.affine`` (needed by ``nvl`` to resample to ``grid_mm``).

    Returns
    -------
    BrainTokenizer
    """
    tcfg = getattr(cfg, "tokenizer", cfg)
    if tcfg.kind not in TOKENIZERS:
        raise ValueError(f"tokenizer.kind = {tcfg.kind!r} is unknown; choose one of "
                         f"{', '.join(sorted(TOKENIZERS))} in the profile YAML")
    return TOKENIZERS[tcfg.kind](tcfg, volume_shape, mask, affine)
