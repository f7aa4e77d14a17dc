"""Settings of the fMRI encoder stack: tokenizer, SC-MBM encoder, MAE pretraining, adaptors.

Defaults are the CPU ``default`` profile; ``configs/had.yaml`` holds the MinD-Vis sizes
(embed 1024, depth 24, 16 heads, decoder 512, mlp_ratio 1.0) for GPU boxes.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TokenizerConfig", "EncoderConfig", "AdaptorConfig", "MAEConfig"]


@dataclass(frozen=True)
class TokenizerConfig:
    """How a trial block (T, X, Y, Z) becomes a token sequence (registry ``TOKENIZERS``).

    kind : str
        ``cnn3d`` (LLM4Brain spatio-temporal 3D-CNN tokenizer), ``nvl`` (NVL resampling +
        cubic patches + active-patch selection) or ``patch1d`` (MinD-Vis's Conv1d patches of
        the flattened block; CIFTI grayordinates).
    embed_dim : int
        Width of the tokens the tokenizer emits (projected to ``encoder.embed_dim`` by a
        linear layer when the two differ).
    channels, kernel_size, strides : cnn3d
        One strided Conv3d (padding ``kernel_size // 2``) + norm + GELU per entry; the T
        volumes are the input channels. The token grid is ``ceil(shape / prod(strides))``.
    norm : str
        cnn3d normalisation after each conv: ``group`` (GroupNorm, up to 8 groups), ``batch``
        or ``none``.
    drop_outside_mask : bool
        cnn3d: keep only tokens whose cell (``prod(strides)``^3 input voxels) holds brain.
    grid_mm, patch_size : nvl
        Common grid spacing (mm) all subjects are trilinearly resampled to, and the edge of
        the cubic patches (in grid voxels).
    min_coverage : float
        nvl: a patch is *covered* when at least this share of its voxels is inside the
        (resampled) brain mask.
    active_quantile : float
        nvl: among covered patches, those whose variance across training trials is below
        this quantile are inactive (dropped for good once fitted).
    patch1d_size, in_chans : patch1d
        MinD-Vis's Conv1d patch embedding over the flattened block: kernel = stride =
        ``patch1d_size`` values (16 in MinD-Vis); input channels ``0`` (one per volume of the
        block) or ``1`` (the mean of the T volumes, MinD-Vis's single-frame input).
    """

    kind: str = "cnn3d"              # registry key: cnn3d | nvl | patch1d
    embed_dim: int = 128
    channels: tuple[int, ...] = (16, 32)
    kernel_size: int = 3
    strides: tuple[int, ...] = (2, 2)
    norm: str = "group"              # group | batch | none
    drop_outside_mask: bool = True
    # NVL
    grid_mm: float = 6.0
    patch_size: int = 4
    min_coverage: float = 0.1
    active_quantile: float = 0.1
    # patch1d
    patch1d_size: int = 16
    in_chans: int = 0


@dataclass(frozen=True)
class EncoderConfig:
    """SC-MBM ViT encoder and its light MAE decoder (MinD-Vis layout, pre-norm blocks).

    pos_embed : str
        ``sincos`` (fixed 3-D sin-cos of the token grid position) or ``learned``.
    use_cls_token : bool
        Prepend a class token (MinD-Vis has one; off by default: tokens are pooled later).
    checkpoint : str
        Local MinD-Vis / Mind-Video checkpoint whose transformer blocks are loaded
        (``""`` = none; see :func:`llm4brain.models.checkpoints.load_mindvis_checkpoint`).
    """

    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 1.0
    qkv_bias: bool = True
    pos_embed: str = "sincos"        # sincos | learned
    use_cls_token: bool = False
    decoder_embed_dim: int = 64
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    mask_ratio: float = 0.75
    checkpoint: str = ""             # local MinD-Vis / Mind-Video checkpoint; "" = none


@dataclass(frozen=True)
class AdaptorConfig:
    """Nonlinear low-rank adaptor (paper Fig. 2): dropout -> down (r) -> act -> up -> * alpha/r.

    target : str
        Which Linear layers get an adaptor: ``query_mlp`` (paper: query projection of
        self-attention + MLP), ``query``, ``mlp`` or ``qkv_mlp``.
    nonlinearity : str
        ``gelu``, ``relu``, ``silu``, ``tanh`` or ``identity`` (= plain LoRA, for ablations).
    """

    rank: int = 8
    alpha: float = 16.0
    nonlinearity: str = "gelu"
    dropout: float = 0.0
    target: str = "query_mlp"        # query_mlp | query | mlp | qkv_mlp


@dataclass(frozen=True)
class MAEConfig:
    """Masked brain modelling pretraining (SC-MBM) on all volumes of the training subjects.

    norm_target : bool
        Normalise each target patch to zero mean / unit variance (MAE ``norm_pix_loss``).
    block_stride : int
        Stride (in volumes) between consecutive T-volume windows cut from each run.
    max_blocks : int
        Cap on the number of windows kept (evenly spaced); 0 keeps all.
    pretrained : bool
        ``false`` (ablation "without MAE pretraining"): Stage I starts from the randomly
        initialised encoder (seed ``run.seed``) instead of this pretraining's checkpoint.
    """

    steps: int = 200
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    norm_target: bool = False
    block_stride: int = 1
    max_blocks: int = 0
    pretrained: bool = True
