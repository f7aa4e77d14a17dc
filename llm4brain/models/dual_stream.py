"""NVL's dual-stream heads on the fMRI encoder's output: a high-level and a low-level stream.

NVL aligns its fMRI features with two visual embeddings at once: a high-level one (CLIP, by a
contrastive loss) and a low-level one (the latent of an image VAE, by regression). Here both
heads read the pooled Stage I fMRI embedding of a trial; the high-level head predicts the frame
encoder's pooled late features of the trial's key frame, the low-level head the latent of the
embedded VAE (:class:`llm4brain.models.vae.FrameVAE`). Training: :mod:`llm4brain.training.recon`.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["DualStreamHeads"]


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, hidden), nn.GELU(),
                         nn.Dropout(0.1), nn.Linear(hidden, d_out))


class DualStreamHeads(nn.Module):
    """Two MLP heads, ``z (N, in_dim) -> (high (N, high_dim), low (N, low_dim))``.

    Parameters
    ----------
    in_dim : int
        Size of the fMRI embedding (the pooled Stage I output).
    high_dim, low_dim : int
        Sizes of the high-level target (frame-encoder features) and of the VAE latent.
    hidden : int
        Hidden width of each head.
    """

    def __init__(self, in_dim: int, high_dim: int, low_dim: int, hidden: int = 256):
        super().__init__()
        self.high = _mlp(in_dim, hidden, high_dim)
        self.low = _mlp(in_dim, hidden, low_dim)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.high(z), self.low(z)
