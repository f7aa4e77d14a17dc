"""Adaptors between the fMRI encoder, the video-token space and the LLM (paper 3.2).

Two pieces, one per training stage:

**Stage I projection adaptor** (:data:`PROJECTORS`): the SC-MBM encoder emits one token per
super-voxel, ``(B, N, De)``; the video Q-Former emits ``L`` video tokens ``(B, L, H)``. The
projector turns the first into the second so that eq. 1 (CLIP) and eq. 1b (L2/L1) can compare
them token by token:

``query``
    ``L`` learned query tokens cross-attending to the (normalised, projected) encoder tokens,
    followed by an MLP, as one Q-Former layer does (:class:`QueryProjector`).
``mlp``
    Mean-pooled encoder tokens -> nonlinear low-rank MLP -> ``L x H`` (:class:`PooledMLPProjector`).
    Mean pooling over the super-voxel tokens averages away *where* in the brain a response
    is: on the default profile the pooled frozen encoder tokens decode the 12 classes at
    chance (9 %) where their concatenation keeps some of the voxels' 30 %.
``spatial``
    Each token squeezed to a few features, all tokens concatenated (their position is their
    brain location), then a nonlinear low-rank MLP -> ``L x H`` (:class:`SpatialMLPProjector`).

**Stage II bridge** (:class:`LLMBridge`): fMRI tokens in the video-token space ``(B, L, H)``
-> the LLM's input-embedding space ``(B, L, D)``. Its linear projection starts as a *copy* of
the video branch's projection (``VideoBranch.proj``), so an fMRI token that Stage I aligned
with a video token enters the LLM where that video token would; a nonlinear low-rank adaptor
(down, GELU, up = 0 at start; paper Fig. 2) lets Stage II reshape it.

>>> proj = build_projector(cfg, in_dim=128, out_dim=256, n_tokens=8)   # doctest: +SKIP
>>> z = proj(encoder(blocks))                          # (B, 8, 256)     # doctest: +SKIP
>>> bridge = LLMBridge.from_linear(video_branch.proj, rank=16)           # doctest: +SKIP
>>> prefix = bridge(z)                                  # (B, 8, 576)     # doctest: +SKIP
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from torch import nn

from .ridge import RidgeCV

__all__ = ["QueryProjector", "PooledMLPProjector", "SpatialMLPProjector", "ConceptProjector",
           "VoxelReadout", "PROJECTORS", "build_projector",
           "LLMBridge", "build_bridge"]


class _CrossBlock(nn.Module):
    """Pre-norm cross-attention of queries over memory tokens, then an MLP (both residual)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"projector width {dim} (video.qformer_hidden) must be divisible by "
                             f"stage1.projector_heads = {heads}")
        self.norm_q = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, q: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """q (B, L, H), memory (B, N, H) -> (B, L, H)."""
        h = self.norm_q(q)
        q = q + self.attn(h, memory, memory, need_weights=False)[0]
        return q + self.mlp(self.norm_mlp(q))


class QueryProjector(nn.Module):
    """L learned queries cross-attending to fMRI encoder tokens (Stage I projection adaptor).

    Parameters
    ----------
    in_dim : int
        Width De of the encoder tokens.
    out_dim : int
        Width H of the video tokens (Q-Former hidden size).
    n_tokens : int
        L, the number of video tokens (``video.num_video_query_tokens``).
    layers, heads : int
        Cross-attention blocks and heads.

    Shapes: ``(B, N, De) -> (B, L, H)``.
    """

    def __init__(self, in_dim: int, out_dim: int, n_tokens: int, layers: int = 1,
                 heads: int = 4):
        super().__init__()
        self.n_tokens, self.out_dim = int(n_tokens), int(out_dim)
        self.in_norm = nn.LayerNorm(in_dim)
        self.in_proj = nn.Linear(in_dim, out_dim)
        self.queries = nn.Parameter(torch.randn(1, n_tokens, out_dim) * 0.02)
        self.blocks = nn.ModuleList([_CrossBlock(out_dim, heads) for _ in range(layers)])
        self.out_norm = nn.LayerNorm(out_dim)
        self.out = nn.Linear(out_dim, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """fMRI encoder tokens (B, N, De) -> L tokens (B, L, H)."""
        if tokens.ndim != 3:
            raise ValueError(f"QueryProjector expects encoder tokens (B, N, D), got "
                             f"{tuple(tokens.shape)}")
        mem = self.in_proj(self.in_norm(tokens))
        q = self.queries.expand(tokens.shape[0], -1, -1).to(mem.dtype)
        for blk in self.blocks:
            q = blk(q, mem)
        return self.out(self.out_norm(q))


class PooledMLPProjector(nn.Module):
    """Mean-pooled encoder tokens -> nonlinear low-rank MLP -> L tokens (Stage I projection).

    ``(B, N, De) -> mean -> LayerNorm -> Linear(De, r) -> GELU -> Linear(r, L * H) -> (B, L, H)``.
    """

    def __init__(self, in_dim: int, out_dim: int, n_tokens: int, rank: int = 64):
        super().__init__()
        self.n_tokens, self.out_dim = int(n_tokens), int(out_dim)
        self.norm = nn.LayerNorm(in_dim)
        self.down = nn.Linear(in_dim, rank)
        self.act = nn.GELU()
        self.up = nn.Linear(rank, n_tokens * out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """fMRI encoder tokens (B, N, De) -> L tokens (B, L, H)."""
        if tokens.ndim != 3:
            raise ValueError(f"PooledMLPProjector expects encoder tokens (B, N, D), got "
                             f"{tuple(tokens.shape)}")
        h = self.up(self.act(self.down(self.norm(tokens.mean(1)))))
        return h.reshape(tokens.shape[0], self.n_tokens, self.out_dim)


class SpatialMLPProjector(nn.Module):
    """Token-wise squeeze, concatenation over tokens, nonlinear low-rank MLP (Stage I projection).

    ``(B, N, De) -> LayerNorm -> Linear(De, d) per token -> flatten (B, N * d) -> Dropout ->
    Linear(N * d, r) -> GELU -> Linear(r, L * H) -> (B, L, H)``. Unlike
    :class:`PooledMLPProjector` it keeps which super-voxel carried a response (the linear map
    over the concatenation is a spatial read-out, as a voxel-wise ridge is); the number of
    tokens N is fixed when it is built (the encoder's, for the trial cache's grid).

    Parameters
    ----------
    in_dim, out_dim, n_tokens : De, H, L
    n_input_tokens : N
    token_dim : d (``stage1.projector_token_dim``)
    rank : r (``stage1.projector_rank``)
    dropout : on the concatenation (``stage1.projector_dropout``)
    """

    def __init__(self, in_dim: int, out_dim: int, n_tokens: int, n_input_tokens: int,
                 token_dim: int = 8, rank: int = 64, dropout: float = 0.0):
        super().__init__()
        self.n_tokens, self.out_dim = int(n_tokens), int(out_dim)
        self.n_input_tokens = int(n_input_tokens)
        self.norm = nn.LayerNorm(in_dim)
        self.squeeze = nn.Linear(in_dim, token_dim)
        self.drop = nn.Dropout(dropout)
        self.down = nn.Linear(self.n_input_tokens * token_dim, rank)
        self.act = nn.GELU()
        self.up = nn.Linear(rank, n_tokens * out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """fMRI encoder tokens (B, N, De) -> L tokens (B, L, H)."""
        if tokens.ndim != 3 or tokens.shape[1] != self.n_input_tokens:
            raise ValueError(f"SpatialMLPProjector was built for {self.n_input_tokens} encoder "
                             f"tokens, got {tuple(tokens.shape)}; build it for this trial "
                             f"cache's grid (build_stage1_model)")
        h = self.drop(self.squeeze(self.norm(tokens)).flatten(1))
        h = self.up(self.act(self.down(h)))
        return h.reshape(tokens.shape[0], self.n_tokens, self.out_dim)


class ConceptProjector(nn.Module):
    """fMRI -> posteriors over concept values -> a mixture of prototype video tokens
    (``stage1.projector: concept``; a Stage I projection adaptor with a semantic bottleneck).

    For every concept (``stage1.concepts``: the class, and on the simulated data the scene) a
    linear head gives logits over its values from the encoder's tokens (squeezed and
    concatenated as :class:`SpatialMLPProjector` does, so a head knows where a response is)
    plus, with ``n_voxels > 0``, a linear read-out of the block's selected voxels (the signal
    that the tokenizer loses); the softmax of each head weights that concept's **prototype
    tokens** (L x H per value), and the fMRI tokens are::

        z = G + sum_c sum_v p_c(v | fMRI) (P_c,v - G)

    with ``G`` the mean video tokens of the training trials and ``P_c,v`` those of the training
    trials whose clip has value ``v`` of concept ``c`` (:meth:`set_prototypes`; the deltas
    train with Stage I, ``G`` stays fixed). The tokens are thereby kept on the video tokens'
    own manifold: in the video-embedding space a clip's class x scene cell tells it from
    others far more than its class alone (docs/stage1.md), and a decoder that gets the cell
    right picks its own clip among 20 in most trials. The heads train by the CLIP and L2/L1
    terms of eq. 2 through the mixture, and by a cross-entropy on the training trials' concept
    values (``stage1.concept_ce``).

    Shapes: ``forward(tokens (B, N, De), blocks (B, T, X, Y, Z) or None) -> (B, L, H)``.

    Parameters
    ----------
    in_dim, out_dim, n_tokens : De, H, L
    n_input_tokens : N
    sizes : dict concept -> number of values
    token_dim : d (``stage1.projector_token_dim``)
    dropout : on the concatenated tokens and on the voxels (``stage1.projector_dropout``)
    n_voxels : V, voxels read directly (``stage1.concept_voxels``; 0: the encoder's tokens only)
    sharpen : the mixture weights are ``softmax(sharpen * logits)`` (``stage1.concept_sharpen``;
        1: the heads' posteriors; the cross-entropy always reads the logits as they are)
    """

    reads_voxels = True

    def __init__(self, in_dim: int, out_dim: int, n_tokens: int, n_input_tokens: int,
                 sizes: dict, token_dim: int = 8, dropout: float = 0.0, n_voxels: int = 0,
                 sharpen: float = 1.0):
        super().__init__()
        if not sharpen > 0:
            raise ValueError(f"ConceptProjector: sharpen must be > 0, got {sharpen} "
                             f"(stage1.concept_sharpen)")
        self.sharpen = float(sharpen)
        if not sizes or min(int(v) for v in sizes.values()) < 2:
            raise ValueError(f"ConceptProjector needs concepts with at least 2 values each, got "
                             f"{dict(sizes)} (stage1.concepts)")
        self.n_tokens, self.out_dim = int(n_tokens), int(out_dim)
        self.n_input_tokens = int(n_input_tokens)
        self.sizes = {str(k): int(v) for k, v in sizes.items()}
        k = sum(self.sizes.values())
        self.norm = nn.LayerNorm(in_dim)
        self.squeeze = nn.Linear(in_dim, token_dim)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.n_input_tokens * token_dim, k)
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("concept_sizes", torch.as_tensor(list(self.sizes.values())))
        self.n_voxels = int(n_voxels)
        self.voxel_head = None
        if self.n_voxels:
            self.voxel_head = nn.Linear(self.n_voxels, k, bias=False)
            nn.init.normal_(self.voxel_head.weight, std=1e-3)
            # flat indices (into X * Y * Z) of the voxels read, their training mean and sd
            self.register_buffer("voxel_index", torch.zeros(self.n_voxels, dtype=torch.long))
            self.register_buffer("voxel_mean", torch.zeros(self.n_voxels))
            self.register_buffer("voxel_scale", torch.ones(self.n_voxels))
        self.deltas = nn.Parameter(torch.zeros(k, n_tokens * out_dim))
        self.register_buffer("grand", torch.zeros(n_tokens * out_dim))

    @torch.no_grad()
    def set_prototypes(self, tokens: torch.Tensor, values: dict) -> None:
        """Prototypes from training trials' video tokens (n, L, H) and their concept values
        (``concept -> int array (n,)`` in ``0 .. sizes[concept] - 1``)."""
        t = torch.as_tensor(tokens, dtype=torch.float32).reshape(len(tokens), -1)
        if t.shape[1] != self.deltas.shape[1]:
            raise ValueError(f"set_prototypes: tokens (n, {self.n_tokens}, {self.out_dim}) "
                             f"expected, got {tuple(tokens.shape)}")
        g = t.mean(0)
        self.grand.copy_(g)
        row = 0
        for c, size in self.sizes.items():
            v = torch.as_tensor(np.asarray(values[c]), dtype=torch.long)
            for j in range(size):
                sel = v == j
                self.deltas[row + j] = (t[sel].mean(0) - g) if bool(sel.any()) else 0.0
            row += size

    @torch.no_grad()
    def set_voxels(self, flat_index: np.ndarray, X: np.ndarray) -> None:
        """The voxels the heads read: flat indices into the volume (V,) and their block means
        on the training trials (n, V), which standardise them (mean and sd)."""
        idx = np.asarray(flat_index, np.int64)
        X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        if self.voxel_head is None or idx.shape != (self.n_voxels,) or X.shape[1] != self.n_voxels:
            raise ValueError(f"set_voxels: {self.n_voxels} voxels expected (stage1.concept_voxels)"
                             f", got {idx.shape[0]} indices and X {tuple(X.shape)}")
        self.voxel_index.copy_(torch.from_numpy(idx))
        self.voxel_mean.copy_(X.mean(0))
        self.voxel_scale.copy_(X.std(0).clamp_min(1e-6))

    def voxels(self, blocks: torch.Tensor) -> torch.Tensor:
        """Blocks (B, T, X, Y, Z) -> the read voxels' block means (B, V)."""
        return blocks.float().mean(1).flatten(1)[:, self.voxel_index]

    def logits(self, tokens: torch.Tensor, blocks: torch.Tensor | None = None
               ) -> dict[str, torch.Tensor]:
        """Per concept, logits (B, values), from the encoder's tokens (B, N, De) and, with
        voxels read directly, the blocks (B, T, X, Y, Z)."""
        if tokens.ndim != 3 or tokens.shape[1] != self.n_input_tokens:
            raise ValueError(f"ConceptProjector was built for {self.n_input_tokens} encoder "
                             f"tokens, got {tuple(tokens.shape)}; build it for this trial "
                             f"cache's grid (build_stage1_model)")
        h = self.head(self.drop(self.squeeze(self.norm(tokens)).flatten(1)))
        if self.voxel_head is not None:
            if blocks is None or blocks.ndim != 5:
                raise ValueError(f"ConceptProjector reads {self.n_voxels} voxels of the blocks "
                                 f"(B, T, X, Y, Z) directly; got "
                                 f"{None if blocks is None else tuple(blocks.shape)}")
            v = (self.voxels(blocks) - self.voxel_mean) / self.voxel_scale
            h = h + self.voxel_head(self.drop(v))
        return dict(zip(self.sizes, h.split(list(self.sizes.values()), dim=1)))

    def mix(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tokens (B, L, H) from per-concept logits."""
        p = torch.cat([torch.softmax(self.sharpen * logits[c], dim=1) for c in self.sizes],
                      dim=1)
        out = self.grand + p @ self.deltas
        return out.reshape(len(p), self.n_tokens, self.out_dim)

    def forward(self, tokens: torch.Tensor, blocks: torch.Tensor | None = None) -> torch.Tensor:
        """fMRI encoder tokens (B, N, De) [+ blocks (B, T, X, Y, Z)] -> L tokens (B, L, H)."""
        return self.mix(self.logits(tokens, blocks))


class VoxelReadout(nn.Module):
    """Reduced-rank linear read-out of the brain-mask voxels to L tokens (``stage1.voxel_readout``).

    ``(B, T, X, Y, Z) -> mean over T -> mask voxels (B, V) -> Linear(V, r) -> Linear(r, L * H)
    -> (B, L, H)``, added to the projector's tokens. :meth:`fit_ridge` sets it in closed
    form: ridge regression (:class:`llm4brain.models.ridge.RidgeCV`, the ridge baseline's
    solver) of the training trials' video tokens on their voxels, kept to the top r
    directions of its predictions (an SVD of the fitted values). The voxel signal
    then reaches the fMRI tokens without passing the tokenizer, which keeps about half of it
    on the default profile (docs/results.md).

    Parameters
    ----------
    mask : bool array (X, Y, Z)
        The trial cache's brain mask.
    n_tokens, out_dim : L, H
    rank : r (``stage1.voxel_readout_rank``)
    """

    def __init__(self, mask, n_tokens: int, out_dim: int, rank: int = 128):
        super().__init__()
        m = torch.as_tensor(np.asarray(mask, dtype=bool))
        self.n_tokens, self.out_dim, self.rank = int(n_tokens), int(out_dim), int(rank)
        self.register_buffer("voxel_index", torch.nonzero(m.flatten()).flatten())
        # 1 for the voxels the read-out reads (all, unless fit_ridge is given a selection)
        self.register_buffer("keep", torch.ones(int(m.sum())))
        self.mask_shape = tuple(m.shape)
        self.down = nn.Linear(int(m.sum()), self.rank, bias=False)
        self.up = nn.Linear(self.rank, self.n_tokens * self.out_dim)
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def voxels(self, blocks: torch.Tensor) -> torch.Tensor:
        """Blocks (B, T, X, Y, Z) -> brain-mask voxels averaged over T (B, V)."""
        if blocks.ndim != 5 or tuple(blocks.shape[2:]) != self.mask_shape:
            raise ValueError(f"VoxelReadout was built for blocks (B, T, {self.mask_shape}), got "
                             f"{tuple(blocks.shape)}: build it with this trial cache's mask")
        return blocks.float().mean(1).flatten(1)[:, self.voxel_index]

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        h = self.up(self.down(self.voxels(blocks) * self.keep))
        return h.reshape(blocks.shape[0], self.n_tokens, self.out_dim)

    @torch.no_grad()
    def fit_ridge(self, X: np.ndarray, Y: np.ndarray, alphas, cv: int = 0,
                  voxels: np.ndarray | None = None) -> dict:
        """Closed-form initialisation from voxels ``X`` (n, V) and video tokens ``Y`` (n, L, H).

        ``voxels`` (indices into the V columns): read only these; the others get zero weight
        and a zero in :attr:`keep`, so they stay out also when the read-out trains.

        Returns ``{"alpha", "rank", "kept_variance", "n_voxels"}`` (the share of the
        full-rank ridge predictions' variance on ``X`` that rank r keeps).
        """
        Y2 = np.asarray(Y, np.float64).reshape(len(Y), -1)
        if Y2.shape[1] != self.n_tokens * self.out_dim or X.shape[1] != self.down.in_features:
            raise ValueError(f"fit_ridge: X (n, {self.down.in_features}) and Y (n, "
                             f"{self.n_tokens}, {self.out_dim}) expected, got {X.shape} and "
                             f"{np.shape(Y)}")
        sel = np.arange(X.shape[1]) if voxels is None else np.unique(np.asarray(voxels, int))
        if not len(sel) or sel[0] < 0 or sel[-1] >= X.shape[1]:
            raise ValueError(f"fit_ridge: voxels must index the {X.shape[1]} columns of X")
        X = np.asarray(X, np.float64)[:, sel]
        ridge = RidgeCV(alphas=alphas, cv=cv).fit(X, Y2)
        W = np.asarray(ridge.coef_, np.float64).T                  # (V_sel, L*H)
        S, Vt = np.linalg.svd((X - X.mean(0)) @ W, full_matrices=False)[1:]
        r = min(self.rank, len(S))
        P = Vt[:r].T                                               # (L*H, r)
        kept = float((S[:r] ** 2).sum() / max((S ** 2).sum(), 1e-30))
        # W ~ (W P) P^T: the predictions projected on their top-r directions
        self.down.weight.zero_()
        self.up.weight.zero_()
        idx = torch.as_tensor(sel)
        self.down.weight[:r, idx] = torch.as_tensor((W @ P).T, dtype=self.down.weight.dtype)
        self.up.weight[:, :r] = torch.as_tensor(P, dtype=self.up.weight.dtype)
        bias = Y2.mean(0) - X.mean(0) @ (W @ P) @ P.T   # ridge's intercept for the truncated map
        self.up.bias.copy_(torch.as_tensor(bias, dtype=self.up.bias.dtype))
        self.keep.zero_()
        self.keep[idx] = 1.0
        return dict(alpha=float(np.atleast_1d(ridge.alpha_)[0]), rank=r, kept_variance=kept,
                    n_voxels=len(sel))


def _query(cfg, in_dim, out_dim, n_tokens):
    s = cfg.stage1
    return QueryProjector(in_dim, out_dim, n_tokens, s.projector_layers, s.projector_heads)


def _mlp(cfg, in_dim, out_dim, n_tokens):
    return PooledMLPProjector(in_dim, out_dim, n_tokens, cfg.stage1.projector_rank)


def _spatial(cfg, in_dim, out_dim, n_tokens, n_input_tokens=None):
    if not n_input_tokens:
        raise ValueError("stage1.projector = 'spatial' needs the number of encoder tokens "
                         "(build_projector(..., n_input_tokens=encoder.num_patches))")
    s = cfg.stage1
    return SpatialMLPProjector(in_dim, out_dim, n_tokens, n_input_tokens, s.projector_token_dim,
                               s.projector_rank, s.projector_dropout)


def _concept(cfg, in_dim, out_dim, n_tokens, n_input_tokens=None, sizes=None):
    if not n_input_tokens or not sizes:
        raise ValueError("stage1.projector = 'concept' needs the number of encoder tokens and "
                         "the concepts' sizes (build_stage1_model passes them)")
    s = cfg.stage1
    return ConceptProjector(in_dim, out_dim, n_tokens, n_input_tokens, sizes,
                            s.projector_token_dim, s.projector_dropout, s.concept_voxels,
                            s.concept_sharpen)


#: ``stage1.projector`` -> builder ``(cfg, in_dim, out_dim, n_tokens[, n_input_tokens])``
PROJECTORS: dict[str, Callable[..., nn.Module]] = {"query": _query, "mlp": _mlp,
                                                   "spatial": _spatial, "concept": _concept}


def build_projector(cfg, in_dim: int, out_dim: int, n_tokens: int,
                    seed: int | None = None, n_input_tokens: int | None = None,
                    sizes: dict | None = None) -> nn.Module:
    """The Stage I projection adaptor named by ``cfg.stage1.projector`` (seeded init).

    Parameters
    ----------
    cfg : Config
    in_dim : int
        fMRI encoder width (``encoder.embed_dim``).
    out_dim : int
        Video-token width (``video.qformer_hidden``).
    n_tokens : int
        Video tokens L (``video.num_video_query_tokens``).
    seed : int, optional
        Default ``cfg.run.seed``; the global RNG is left untouched.
    n_input_tokens : int, optional
        N, the encoder's token count (required by ``spatial`` and ``concept``).
    sizes : dict, optional
        ``concept``: number of values of every concept (``stage1.concepts``).
    """
    name = cfg.stage1.projector
    if name not in PROJECTORS:
        raise KeyError(f"stage1.projector = {name!r} is unknown; choose one of "
                       f"{sorted(PROJECTORS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.run.seed if seed is None else seed) + 11)
        if name == "spatial":
            return PROJECTORS[name](cfg, in_dim, out_dim, n_tokens, n_input_tokens)
        if name == "concept":
            return PROJECTORS[name](cfg, in_dim, out_dim, n_tokens, n_input_tokens, sizes)
        return PROJECTORS[name](cfg, in_dim, out_dim, n_tokens)


class LLMBridge(nn.Module):
    """Stage II adaptor: fMRI tokens (video-token space) -> LLM input embeddings.

    ``bridge(z) = proj(z + (alpha / r) * up(GELU(down(z))))`` with ``up`` zero-initialised,
    so at step 0 the bridge is ``proj`` (a copy of the video branch's projection when built
    by :meth:`from_linear`).

    Parameters
    ----------
    in_dim : int
        H (video-token width).
    out_dim : int
        D (LLM embedding width).
    rank : int
        Rank r of the nonlinear adaptor (0: no adaptor, the bridge is linear).
    alpha : float
        Scaling numerator (``alpha / r``).

    Shapes: ``(B, L, H) -> (B, L, D)``; :meth:`features` pools to ``(B, D)`` for the
    domain-adaptation head.
    """

    def __init__(self, in_dim: int, out_dim: int, rank: int = 16, alpha: float | None = None):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)
        self.rank = int(rank)
        if self.rank > 0:
            self.down = nn.Linear(in_dim, self.rank)
            self.act = nn.GELU()
            self.up = nn.Linear(self.rank, in_dim)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)
            self.scaling = float(alpha if alpha is not None else 2 * self.rank) / self.rank
        else:
            self.down = self.act = self.up = None
            self.scaling = 0.0

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int = 16, alpha: float | None = None,
                    seed: int = 0) -> "LLMBridge":
        """A bridge whose projection copies ``linear`` (e.g. ``VideoBranch.proj``)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"LLMBridge.from_linear expects an nn.Linear, got "
                            f"{type(linear).__name__}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 23)
            bridge = cls(linear.in_features, linear.out_features, rank, alpha)
        with torch.no_grad():
            bridge.proj.weight.copy_(linear.weight.detach())
            if linear.bias is not None:
                bridge.proj.bias.copy_(linear.bias.detach())
            else:
                bridge.proj.bias.zero_()
        return bridge.to(linear.weight.device)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """fMRI tokens (B, L, H) -> LLM embeddings (B, L, D)."""
        if self.up is not None:
            z = z + self.scaling * self.up(self.act(self.down(z)))
        return self.proj(z)

    @staticmethod
    def features(embeddings: torch.Tensor) -> torch.Tensor:
        """Pooled bridge output (B, L, D) -> (B, D): the feature of the DA head (eqs. 4-5)."""
        return embeddings.mean(1)


def build_bridge(cfg, video_proj: nn.Linear) -> LLMBridge:
    """The Stage II bridge of ``cfg`` (``stage2.bridge_rank``), initialised from ``video_proj``."""
    return LLMBridge.from_linear(copy.deepcopy(video_proj), rank=cfg.stage2.bridge_rank,
                                 seed=cfg.run.seed)
