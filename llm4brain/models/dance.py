"""Stateful pieces of DANCE domain adaptation (paper eqs. 4-5): memory bank, cosine classifier.

They belong to the Stage II model (:class:`llm4brain.models.stage2.Stage2Model`); the loss
they enter is :func:`llm4brain.training.da.dance_loss`.

>>> bank = MemoryBank(n=100, dim=16)            # one row per target adaptation trial
>>> head = CosineClassifier(16, n_classes=12)   # prototypes = the C video classes
>>> loss, terms = dance_loss(features, indices, bank, head, nc_temperature=0.05,
...                          rho=default_rho(12), margin=0.5)   # doctest: +SKIP
>>> bank.update(features, indices)              # after the optimiser step

DANCE's hyper-parameters (Saito et al. 2020, reference code): temperature 0.05 for the
classifier and NC, memory momentum 0 (bank rows are replaced by the newest features),
``rho = ln(C) / 2``, margin 0.5, and ``eta = 0.05`` — a *loss weight* on NC and ES, the role
that ``1 - lambda`` plays in the paper's eq. 6.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


__all__ = ["MemoryBank", "CosineClassifier"]


class MemoryBank(nn.Module):
    """N x D bank of L2-normalised target features (a buffer: saved with the model).

    Parameters
    ----------
    n : int
        Number of target adaptation trials (rows; row ``i`` belongs to opaque index ``i`` of
        :class:`llm4brain.training.guard.TargetAdaptationView`).
    dim : int
        Feature dimension D.
    momentum : float in [0, 1)
        ``row <- normalise(momentum * row + (1 - momentum) * normalise(f))``; 0 (DANCE)
        replaces the row.
    seed : int
        Seed of the random (normalised Gaussian) initial rows; :meth:`fill` with real features
        before training is better.
    """

    def __init__(self, n: int, dim: int, momentum: float = 0.0, seed: int = 0):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"MemoryBank momentum (stage2.memory_momentum) must be in [0, 1), "
                             f"got {momentum}")
        g = torch.Generator().manual_seed(seed)
        self.momentum = float(momentum)
        self.register_buffer("bank", F.normalize(torch.randn(n, dim, generator=g), dim=1))

    def __len__(self) -> int:
        return self.bank.shape[0]

    @torch.no_grad()
    def fill(self, features: torch.Tensor, indices: torch.Tensor | None = None) -> None:
        """Overwrite rows ``indices`` (default: all rows, in order) with normalised features."""
        f = F.normalize(features.detach().float(), dim=1).to(self.bank)
        if indices is None:
            if f.shape != self.bank.shape:
                raise ValueError(f"MemoryBank.fill without indices needs {tuple(self.bank.shape)} "
                                 f"features, got {tuple(f.shape)}")
            self.bank.copy_(f)
        else:
            self.bank.index_copy_(0, torch.as_tensor(indices, device=f.device).long(), f)

    @torch.no_grad()
    def update(self, features: torch.Tensor, indices: torch.Tensor) -> None:
        """Momentum update of rows ``indices`` with the batch ``features`` (B, D)."""
        idx = torch.as_tensor(indices, device=self.bank.device).long().reshape(-1)
        f = F.normalize(features.detach().float(), dim=1).to(self.bank)
        new = self.momentum * self.bank[idx] + (1.0 - self.momentum) * f
        self.bank.index_copy_(0, idx, F.normalize(new, dim=1))


class CosineClassifier(nn.Module):
    """Bias-free linear classifier on L2-normalised inputs and weights, with a temperature.

    ``logits = normalise(x) @ normalise(W).T / temperature``; the normalised rows of ``W``
    are the class prototypes used by the NC loss (eq. 4).

    Parameters
    ----------
    dim : int
    n_classes : int
        C, the video classes of the TRAINING subjects.
    temperature : float
        0.05 in DANCE.
    """

    def __init__(self, dim: int, n_classes: int, temperature: float = 0.05):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"CosineClassifier temperature must be > 0, got {temperature}")
        self.weight = nn.Parameter(torch.randn(n_classes, dim) / dim ** 0.5)
        self.temperature = float(temperature)

    @property
    def prototypes(self) -> torch.Tensor:
        """Normalised class weights, shape (C, D)."""
        return F.normalize(self.weight, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (B, C) for features ``x`` of shape (B, D)."""
        x = F.normalize(x.to(self.weight.dtype), dim=1)
        return x @ self.prototypes.T / self.temperature
