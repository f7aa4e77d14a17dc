"""The embedded image decoder: a small convolutional VAE of key frames (NVL's low-level stream).

NVL aligns one stream of its fMRI features with the latent of Stable Diffusion's VAE. No such
VAE installs offline, so the embedded profile trains its own, small one on frames of the
captioned pretraining corpus (clips shown to no subject; :mod:`llm4brain.reconstruction.train`).
Images are (N, 3, S, S) floats in [0, 1]; the latent is a vector of ``recon.vae_latent``.

Encoder: 3 stride-2 convolutions (``c``, ``2c``, ``4c`` channels, SiLU) -> linear -> mean and
log-variance. Decoder: linear -> 3 transposed convolutions -> sigmoid. Loss (a beta-VAE):
squared error summed over pixels + ``kl_weight`` x KL(q(z|x) || N(0, I)), per image.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FrameVAE", "vae_loss", "to_tensor_images", "to_uint8_images", "key_frames"]


class FrameVAE(nn.Module):
    """Convolutional VAE of S x S RGB images.

    Parameters
    ----------
    image_size : int
        S, a multiple of 8.
    latent : int
        Size of the latent vector.
    channels : int
        Channels of the first convolution (then 2x, 4x).
    """

    def __init__(self, image_size: int = 32, latent: int = 64, channels: int = 32):
        super().__init__()
        if image_size % 8:
            raise ValueError(f"FrameVAE: image_size {image_size} must be a multiple of 8 "
                             f"(recon.image_size)")
        c, s = int(channels), image_size // 8
        self.image_size, self.latent, self._s, self._c = int(image_size), int(latent), s, c
        self.enc = nn.Sequential(
            nn.Conv2d(3, c, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(2 * c, 4 * c, 4, 2, 1), nn.SiLU(), nn.Flatten())
        self.to_stats = nn.Linear(4 * c * s * s, 2 * latent)
        self.from_z = nn.Linear(latent, 4 * c * s * s)
        self.dec = nn.Sequential(
            nn.SiLU(), nn.ConvTranspose2d(4 * c, 2 * c, 4, 2, 1),
            nn.SiLU(), nn.ConvTranspose2d(2 * c, c, 4, 2, 1),
            nn.SiLU(), nn.ConvTranspose2d(c, 3, 4, 2, 1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, 3, S, S) in [0, 1] -> mean and log-variance of the latent, (N, latent)."""
        if x.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(f"FrameVAE expects (N, 3, {self.image_size}, {self.image_size}) "
                             f"images, got {tuple(x.shape)}")
        mu, logvar = self.to_stats(self.enc(x * 2 - 1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (N, latent) -> images (N, 3, S, S) in [0, 1]."""
        h = self.from_z(z).view(len(z), 4 * self._c, self._s, self._s)
        return torch.sigmoid(self.dec(h))

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decode(z), mu, logvar


def vae_loss(model: FrameVAE, x: torch.Tensor, kl_weight: float = 0.5):
    """Per-image beta-VAE loss: summed squared error + ``kl_weight`` x KL, averaged over images.

    Returns
    -------
    (loss, terms)
        ``terms``: ``rec`` (summed squared error per image), ``kl`` (nats per image).
    """
    rec, mu, logvar = model(x)
    r = F.mse_loss(rec, x, reduction="none").flatten(1).sum(1).mean()
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
    return r + kl_weight * kl, {"rec": r.item(), "kl": kl.item()}


def to_tensor_images(frames, size: int) -> torch.Tensor:
    """uint8 frames (N, H, W, 3) -> float (N, 3, size, size) in [0, 1] (antialiased resize)."""
    a = np.asarray(frames)
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, H, W, 3), got {a.dtype} {a.shape}")
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)
    return x.clamp_(0.0, 1.0)


def to_uint8_images(x: torch.Tensor) -> np.ndarray:
    """Float images (N, 3, S, S) in [0, 1] -> uint8 (N, S, S, 3)."""
    return (x.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round() \
        .astype(np.uint8)


def key_frames(frames: np.ndarray) -> np.ndarray:
    """The key frame of each clip, the middle one of its cached frames: (N, F, H, W, 3) ->
    (N, H, W, 3)."""
    frames = np.asarray(frames)
    if frames.ndim != 5:
        raise ValueError(f"expected frames of shape (N, F, H, W, 3), got {frames.shape}")
    return frames[:, frames.shape[1] // 2]
