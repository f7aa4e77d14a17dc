"""Settings of visual reconstruction (NVL's dual-stream alignment, notebook 08)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ReconConfig"]

_DECODERS = ("vae", "diffusion")


@dataclass(frozen=True)
class ReconConfig:
    """Embedded image decoder, dual-stream heads and the reconstruction metrics.

    decoder : str
        ``vae`` (the embedded autoencoder trained here on the pretraining corpus) or
        ``diffusion`` (a ``diffusers`` image-variation pipeline from ``diffusion_path``).
    image_size : int
        Side in pixels of the key frames the VAE encodes and decodes (the key frame is the
        middle frame of a clip's frame cache, resized with antialiasing).
    vae_latent : int
        Size of the VAE's latent vector (the low-level embedding).
    vae_channels : int
        Channels of the VAE's first convolution (doubled at each of its 3 downsamplings).
    vae_kl_weight : float
        Weight of the KL term of the VAE's loss (beta-VAE; pixels are in [0, 1], MSE summed).
    vae_steps, vae_batch_size, vae_lr : int, int, float
        VAE training (every frame of every pretraining clip is a sample).
    high_weight : float
        NVL's weighting of the two streams: ``L = high_weight * L_contrastive(high) +
        (1 - high_weight) * L_MSE(low)``.
    high_tau : float
        Temperature of the high-level stream's contrastive loss (both directions, eq. 1).
    head_hidden : int
        Width of the heads' shared trunk.
    head_steps, head_batch_size, head_lr, head_weight_decay : int, int, float, float
        Training of the heads on the training subjects' training trials.
    n_shuffles : int
        Shuffles of the fMRI across evaluation trials for the chance level.
    n_grid : int
        Evaluation trials per target subject shown in notebook 08's grid.
    diffusion_path : str
        Local folder of a ``diffusers`` image-variation pipeline (e.g. ``lambdalabs/
        sd-image-variations-diffusers`` or ``stabilityai/stable-diffusion-2-1-unclip``),
        GPU profiles; ``$VARS`` and ``~`` expanded.
    diffusion_steps : int
        Denoising steps of the diffusion decoder.
    diffusion_strength : float
        Weight of the fMRI-predicted image embedding against the decoder's prior (NVL's
        beta = 0.93 mixes the predicted embedding with noise).
    """

    decoder: str = "vae"
    image_size: int = 32
    vae_latent: int = 64
    vae_channels: int = 16
    vae_kl_weight: float = 0.5
    vae_steps: int = 500
    vae_batch_size: int = 64
    vae_lr: float = 2e-3
    high_weight: float = 0.5
    high_tau: float = 0.05
    head_hidden: int = 256
    head_steps: int = 400
    head_batch_size: int = 64
    head_lr: float = 1e-3
    head_weight_decay: float = 1e-2
    n_shuffles: int = 3
    n_grid: int = 4
    diffusion_path: str = ""
    diffusion_steps: int = 25
    diffusion_strength: float = 0.93

    def __post_init__(self):
        if self.decoder not in _DECODERS:
            raise ValueError(f"recon.decoder = {self.decoder!r}; use one of {_DECODERS}")
        if self.image_size < 16 or self.image_size % 8:
            raise ValueError(f"recon.image_size = {self.image_size}: use a multiple of 8, >= 16")
        if not 0.0 <= self.high_weight <= 1.0:
            raise ValueError(f"recon.high_weight = {self.high_weight} must lie in [0, 1]")
        if self.n_shuffles < 1:
            raise ValueError(f"recon.n_shuffles = {self.n_shuffles} must be >= 1")
