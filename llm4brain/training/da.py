"""DANCE's domain-adaptation loss (paper eqs. 4-5) on the Stage II model's head and bank.

>>> bank = MemoryBank(n=100, dim=16)            # one row per target adaptation trial
>>> head = CosineClassifier(16, n_classes=12)   # prototypes = the C video classes
>>> loss, terms = dance_loss(features, indices, bank, head, nc_temperature=0.05,
...                          rho=default_rho(12), margin=0.5)   # doctest: +SKIP
>>> bank.update(features, indices)              # after the optimiser step

The memory bank and the cosine classifier are :mod:`llm4brain.models.dance`.
"""
from __future__ import annotations

import torch

from ..models.dance import CosineClassifier, MemoryBank
from .losses import entropy_separation_loss, neighbourhood_clustering_loss

__all__ = ["dance_loss"]


def dance_loss(features: torch.Tensor, indices: torch.Tensor, bank: MemoryBank,
               classifier: CosineClassifier, *, nc_temperature: float, rho: float,
               margin: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Domain-adaptation loss ``L_DA = L_NC + L_ES`` (eqs. 4 and 5) on a target batch.

    Parameters
    ----------
    features : tensor of shape (B, D)
        Target-subject features (adaptation trials only).
    indices : int tensor of shape (B,)
        Their rows in ``bank``.
    bank, classifier
        See :class:`MemoryBank`, :class:`CosineClassifier`.
    nc_temperature, rho, margin : float
        Settings ``stage2.nc_temperature``, ``rho`` (:func:`~.losses.default_rho`),
        ``stage2.es_margin``.

    Returns
    -------
    loss : tensor of shape ()
    terms : dict ``{"nc": float, "es": float}``

    The bank is not updated here: call ``bank.update(features, indices)`` after the step.
    """
    nc = neighbourhood_clustering_loss(features, bank.bank, classifier.prototypes, indices,
                                       nc_temperature)
    es = entropy_separation_loss(classifier(features), rho, margin)
    return nc + es, {"nc": float(nc.detach()), "es": float(es.detach())}
