"""NVL's dual-stream heads on the fMRI encoder's output: a high-level and a low-level stream.

NVL aligns its fMRI features with two visual embeddings at once: a high-level one (CLIP, by a
contrastive loss) and a low-level one (the latent of an image VAE, by regression). Here both
heads read the pooled Stage I fMRI embedding of a trial; the high-level head predicts the frame
encoder's late features of the trial's clip (averaged over frames and patches), the low-level
head the latent of the
embedded VAE (:class:`llm4brain.reconstruction.vae.FrameVAE`). Training: :mod:`llm4brain.reconstruction.train`.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["DualStreamHeads"]


class DualStreamHeads(nn.Module):
    """A shared trunk and two output heads, ``z (N, in_dim) -> (high (N, high_dim), low (N,
    low_dim))``.

    The trunk (LayerNorm, linear, GELU, dropout) is shared, so NVL's weighting of the two
    losses (``recon.high_weight``) decides what it keeps: with separate networks Adam would
    undo any constant weighting of each loss.

    Parameters
    ----------
    in_dim : int
        Size of the fMRI embedding (the pooled Stage I output).
    high_dim, low_dim : int
        Sizes of the high-level target (frame-encoder features) and of the VAE latent.
    hidden : int
        Width of the shared trunk.
    """

    def __init__(self, in_dim: int, high_dim: int, low_dim: int, hidden: int = 256):
        super().__init__()
        self.trunk = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(),
                                   nn.Dropout(0.1))
        self.high = nn.Linear(hidden, high_dim)
        self.low = nn.Linear(hidden, low_dim)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(z)
        return self.high(h), self.low(h)
