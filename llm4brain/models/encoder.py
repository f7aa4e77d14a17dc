"""SC-MBM fMRI encoder (ViT over brain tokens) and its masked-brain-modelling autoencoder.

Layout follows MinD-Vis' ``MAEforFMRI`` (Chen et al. 2023, the SC-MBM encoder of LLM4Brain
sec. 3.1) so that its checkpoints map onto ours (:mod:`llm4brain.models.checkpoints`):
pre-norm blocks ``norm1 -> attn -> + -> norm2 -> mlp -> +``, a final ``norm``, an MAE
decoder ``decoder_embed -> mask_token -> decoder_blocks -> decoder_norm -> decoder_pred``.
Differences, on purpose:

* attention has separate ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` Linear layers (their
  fused ``qkv`` is split on loading) so adaptors can target the *query* projection only
  (paper Fig. 2) and MLPs keep the names ``fc1``/``fc2``;
* the 1-D ``Conv1d`` patch embedding over a flat voxel vector is replaced by a 3-D tokenizer
  (:mod:`llm4brain.models.tokenizers`), and the 1-D positional embedding by a 3-D one over the
  tokenizer's grid (fixed sin-cos or learned), indexed by the kept tokens.

Shapes: blocks (B, T, X, Y, Z) -> tokens (B, N, D) -> encoder output (B, N [+1 cls], D).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .tokenizers import BrainTokenizer, build_tokenizer

__all__ = ["Attention", "Mlp", "Block", "FMRIEncoder", "MaskedBrainModel", "MAEOutput",
           "sincos_pos_embed_3d", "random_masking", "build_encoder", "build_mae"]


# ====================================================================== positional embedding
def sincos_pos_embed_3d(embed_dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Fixed 3-D sin-cos positional embedding (the 2-D MAE embedding, one third per axis).

    Parameters
    ----------
    embed_dim : int
        D. Each axis gets ``2 * (D // 6)`` channels; leftover channels are zero.
    positions : tensor (N, 3)
        Grid coordinates of the tokens.

    Returns
    -------
    tensor (N, D)
    """
    d_axis = 2 * (embed_dim // 6)
    out = torch.zeros(positions.shape[0], embed_dim, dtype=torch.float32)
    if d_axis == 0:
        return out
    half = d_axis // 2
    omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64) / half)
    for a in range(3):
        ang = positions[:, a].double()[:, None] * omega[None]
        out[:, a * d_axis:a * d_axis + half] = torch.sin(ang).float()
        out[:, a * d_axis + half:(a + 1) * d_axis] = torch.cos(ang).float()
    return out


# ====================================================================== transformer parts
class Attention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out projections.

    Parameters
    ----------
    dim : int
    num_heads : int
    qkv_bias : bool
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"encoder.embed_dim ({dim}) must be divisible by encoder.num_heads ({num_heads})")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.k_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.v_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        B, N, D = x.shape
        h = self.num_heads

        def split(t):
            return t.reshape(B, N, h, D // h).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)),
                                           split(self.v_proj(x)))
        return self.out_proj(y.transpose(1, 2).reshape(B, N, D))


class Mlp(nn.Module):
    """``fc1 -> GELU -> fc2`` (hidden width ``int(dim * mlp_ratio)``)."""

    def __init__(self, dim: int, mlp_ratio: float = 1.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm ViT block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 1.0, qkv_bias: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _init_weights(module: nn.Module) -> None:
    """MAE initialisation: xavier-uniform Linear weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _pos_table(kind: str, dim: int, tokenizer: BrainTokenizer):
    if kind == "sincos":
        return sincos_pos_embed_3d(dim, tokenizer.grid_coords)[None], False
    if kind == "learned":
        return torch.randn(1, tokenizer.n_grid, dim) * 0.02, True
    raise ValueError(f"encoder.pos_embed = {kind!r} is not one of: sincos, learned")


# ====================================================================== encoder
class FMRIEncoder(nn.Module):
    """Tokenizer + SC-MBM ViT encoder.

    Parameters
    ----------
    tokenizer : BrainTokenizer
    embed_dim, depth, num_heads, mlp_ratio, qkv_bias, pos_embed, use_cls_token :
        see :class:`llm4brain.config.EncoderConfig`.

    Attributes
    ----------
    tokenizer, embed_proj (Linear when the tokenizer width differs, else Identity),
    pos_embed (1, n_grid, D) buffer (sincos) or parameter (learned), cls_token (optional),
    blocks, norm.
    """

    def __init__(self, tokenizer: BrainTokenizer, embed_dim: int = 128, depth: int = 4,
                 num_heads: int = 4, mlp_ratio: float = 1.0, qkv_bias: bool = True,
                 pos_embed: str = "sincos", use_cls_token: bool = False):
        super().__init__()
        self.tokenizer = tokenizer
        self.embed_dim = int(embed_dim)
        self.embed_proj = (nn.Linear(tokenizer.embed_dim, embed_dim)
                           if tokenizer.embed_dim != embed_dim else nn.Identity())
        table, learned = _pos_table(pos_embed, embed_dim, tokenizer)
        if learned:
            self.pos_embed = nn.Parameter(table)
        else:
            self.register_buffer("pos_embed", table, persistent=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if use_cls_token else None
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias)
                                     for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        _init_weights(self.blocks)
        _init_weights(self.norm)
        if isinstance(self.embed_proj, nn.Linear):
            _init_weights(self.embed_proj)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)

    @property
    def n_tokens(self) -> int:
        """Number of brain tokens N (without the cls token)."""
        return self.tokenizer.n_tokens

    def embed(self, blocks: torch.Tensor) -> torch.Tensor:
        """Tokens with positions (B, N, D) of blocks (B, T, X, Y, Z)."""
        x = self.embed_proj(self.tokenizer(blocks))
        return x + self.pos_embed[:, self.tokenizer.token_index].to(x.dtype)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Run (cls +) blocks + norm over embedded tokens (B, n, D) -> (B, n [+1], D)."""
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        """Encoder output (B, N [+1 cls first], D) of blocks (B, T, X, Y, Z)."""
        return self.forward_tokens(self.embed(blocks))


# ====================================================================== MAE
def random_masking(batch: int, n_tokens: int, mask_ratio: float, *, device=None,
                   generator: torch.Generator | None = None):
    """Per-sample random masking by sorting uniform noise (MAE, He et al. 2022).

    Parameters
    ----------
    batch, n_tokens : int
    mask_ratio : float in [0, 1)
        Share of tokens hidden from the encoder; ``max(1, int(N * (1 - ratio)))`` stay visible.
    generator : torch.Generator, optional

    Returns
    -------
    ids_keep : long (B, K)   visible token indices
    ids_restore : long (B, N)  inverse permutation
    mask : float (B, N)      1 = masked (to reconstruct), 0 = visible
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"encoder.mask_ratio must be in [0, 1), got {mask_ratio}")
    keep = max(1, int(n_tokens * (1.0 - mask_ratio)))
    noise = torch.rand(batch, n_tokens, generator=generator, device=device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(batch, n_tokens, device=device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_shuffle[:, :keep], ids_restore, mask


@dataclass
class MAEOutput:
    """Result of :meth:`MaskedBrainModel.forward`.

    pred : (B, N, P) decoder prediction of every token's patch
    target : (B, N, P) tokenizer patches (``tokenizer.patchify``)
    mask : (B, N) 1 = masked token, 0 = visible
    weight : (N, P) 1 inside the brain, 0 outside / padding
    latent : (B, K [+1], D) encoder output of the visible tokens
    """

    pred: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    weight: torch.Tensor
    latent: torch.Tensor


class MaskedBrainModel(nn.Module):
    """SC-MBM masked autoencoder: :class:`FMRIEncoder` + light transformer decoder.

    Parameters
    ----------
    encoder : FMRIEncoder
    decoder_embed_dim, decoder_depth, decoder_num_heads, mlp_ratio, mask_ratio :
        see :class:`llm4brain.config.EncoderConfig`.

    Notes
    -----
    The decoder reconstructs each token's patch as defined by ``encoder.tokenizer.patchify``
    (cnn3d: the ``T * S^3`` input values of its super-voxel cell; nvl: its resampled cubic
    patch); the loss (:func:`llm4brain.training.mae.mae_loss`) is taken on masked tokens only.
    """

    def __init__(self, encoder: FMRIEncoder, decoder_embed_dim: int = 64, decoder_depth: int = 2,
                 decoder_num_heads: int = 4, mlp_ratio: float = 1.0, mask_ratio: float = 0.75):
        super().__init__()
        self.encoder = encoder
        self.mask_ratio = float(mask_ratio)
        tok = encoder.tokenizer
        self.decoder_embed = nn.Linear(encoder.embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.register_buffer("decoder_pos_embed",
                             sincos_pos_embed_3d(decoder_embed_dim, tok.grid_coords)[None], persistent=False)
        self.decoder_blocks = nn.ModuleList([Block(decoder_embed_dim, decoder_num_heads, mlp_ratio)
                                             for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, tok.patch_dim)
        for m in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            _init_weights(m)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Latent of the visible tokens (B, K [+1], D) -> predictions (B, N, P)."""
        has_cls = self.encoder.cls_token is not None
        x = self.decoder_embed(latent)
        if has_cls:
            x = x[:, 1:]
        B, K, Dd = x.shape
        N = ids_restore.shape[1]
        x = torch.cat([x, self.mask_token.expand(B, N - K, Dd).to(x.dtype)], dim=1)
        x = torch.gather(x, 1, ids_restore[..., None].expand(B, N, Dd))
        x = x + self.decoder_pos_embed[:, self.encoder.tokenizer.token_index].to(x.dtype)
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))

    def forward(self, blocks: torch.Tensor, mask_ratio: float | None = None,
                generator: torch.Generator | None = None) -> MAEOutput:
        """Mask, encode the visible tokens, decode all tokens.

        Parameters
        ----------
        blocks : (B, T, X, Y, Z)
        mask_ratio : float, optional
            Defaults to ``encoder.mask_ratio`` of the config (0.75).
        generator : torch.Generator, optional
            For reproducible masks.
        """
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        tok = self.encoder.tokenizer
        B, N = blocks.shape[0], len(tok.token_index)
        ids_keep, ids_restore, mask = random_masking(B, N, ratio, device=blocks.device, generator=generator)
        # a tokenizer whose tokens see past their own cell hides the masked cells' voxels first
        x = self.encoder.embed(tok.hide_masked(blocks, mask) if hasattr(tok, "hide_masked") else blocks)
        D = x.shape[-1]
        visible = torch.gather(x, 1, ids_keep[..., None].expand(B, ids_keep.shape[1], D))
        latent = self.encoder.forward_tokens(visible)
        pred = self.forward_decoder(latent, ids_restore)
        with torch.no_grad():
            target = self.encoder.tokenizer.patchify(blocks)
        weight = self.encoder.tokenizer.patch_weights().to(pred.dtype)
        return MAEOutput(pred=pred, target=target, mask=mask, weight=weight, latent=latent)


# ====================================================================== builders
def _seed_of(cfg, seed):
    if seed is not None:
        return int(seed)
    run = getattr(cfg, "run", None)
    return int(getattr(run, "seed", 0))


def _resolve_checkpoint(path: str) -> Path:
    p = Path(os.path.expandvars(os.path.expanduser(path)))
    if "$" in str(p):
        raise FileNotFoundError(f"encoder.checkpoint = {path!r}: an environment variable in it is not "
                                f"set (e.g. LLM4BRAIN_MODELS); see docs/gpu.md")
    if not p.exists():
        raise FileNotFoundError(f"SC-MBM checkpoint {p} (config key encoder.checkpoint) does not exist; "
                                f"download the MinD-Vis / Mind-Video encoder weights as docs/gpu.md "
                                f"('GPU box') explains, or set encoder.checkpoint: \"\"")
    return p


def build_encoder(cfg, volume_shape, mask=None, affine=None, *, tokenizer: BrainTokenizer | None = None,
                  seed: int | None = None, load_checkpoint: bool = True) -> FMRIEncoder:
    """Tokenizer + SC-MBM encoder from the config, deterministically initialised.

    Parameters
    ----------
    cfg : Config
        Uses ``cfg.tokenizer``, ``cfg.encoder`` and ``cfg.run.seed``.
    volume_shape : tuple (T, X, Y, Z)
    mask : bool array (X, Y, Z), optional
    affine : (4, 4) array, optional
    tokenizer : BrainTokenizer, optional
        Reuse an existing tokenizer instead of building one.
    seed : int, optional
        Overrides ``cfg.run.seed``; the global RNG state is left untouched.
    load_checkpoint : bool
        Load ``cfg.encoder.checkpoint`` when it is set.
    """
    e = cfg.encoder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed_of(cfg, seed))
        tok = tokenizer if tokenizer is not None else build_tokenizer(cfg, volume_shape, mask, affine)
        enc = FMRIEncoder(tok, e.embed_dim, e.depth, e.num_heads, e.mlp_ratio, e.qkv_bias,
                          e.pos_embed, e.use_cls_token)
    if load_checkpoint and e.checkpoint:
        from .checkpoints import load_mindvis_checkpoint
        load_mindvis_checkpoint(enc, _resolve_checkpoint(e.checkpoint))
    return enc


def build_mae(cfg, volume_shape, mask=None, affine=None, *, encoder: FMRIEncoder | None = None,
              seed: int | None = None, load_checkpoint: bool = True) -> MaskedBrainModel:
    """SC-MBM masked autoencoder (encoder + decoder) from the config.

    See :func:`build_encoder` for the parameters. A checkpoint in ``encoder.checkpoint`` also
    fills the decoder blocks when it holds MinD-Vis' MAE decoder.
    """
    e = cfg.encoder
    s = _seed_of(cfg, seed)
    enc = encoder if encoder is not None else build_encoder(cfg, volume_shape, mask, affine, seed=s,
                                                            load_checkpoint=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s + 1)
        mae = MaskedBrainModel(enc, e.decoder_embed_dim, e.decoder_depth, e.decoder_num_heads,
                               e.mlp_ratio, e.mask_ratio)
    if load_checkpoint and e.checkpoint and encoder is None:
        from .checkpoints import load_mindvis_checkpoint
        load_mindvis_checkpoint(mae, _resolve_checkpoint(e.checkpoint))
    return mae
