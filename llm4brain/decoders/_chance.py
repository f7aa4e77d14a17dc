"""Chance levels of any decoder's score: test trials' rows shuffled (the package's derangements),
and the identification permutation test."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..config import Stage1Config
from ..evaluation.controls import derangements
from ..evaluation.retrieval import permutation_test

__all__ = ["ChanceLevel", "shuffled", "permutation_p"]

_S1 = Stage1Config()


@dataclass(frozen=True)
class ChanceLevel:
    """A score beside its shuffled-pairing chance level.

    observed : the score on the true pairing;  null : (n_shuffles,) scores with the test rows
    deranged. ``chance`` is the null's mean, ``low``/``high`` its 2.5 / 97.5 percentiles (the
    spread of the chance level, as :mod:`llm4brain.evaluation.controls` reports it) and
    ``p_value`` the one-sided ``(1 + #{null >= observed}) / (1 + n_shuffles)``.
    """

    observed: float
    null: np.ndarray

    @property
    def chance(self) -> float:
        return float(np.mean(self.null))

    @property
    def low(self) -> float:
        return float(np.percentile(self.null, 2.5))

    @property
    def high(self) -> float:
        return float(np.percentile(self.null, 97.5))

    @property
    def p_value(self) -> float:
        return (1 + int(np.sum(self.null >= self.observed))) / (1 + len(self.null))

    def __str__(self) -> str:
        return (f"{self.observed:.3f} (chance {self.chance:.3f} [{self.low:.3f}, "
                f"{self.high:.3f}], p = {self.p_value:.3g}, {len(self.null)} shuffles)")


def shuffled(decoder: object | Callable[..., float], X, *targets, n_shuffles: int = 100,
             rng=0, groups=None, **kwargs) -> ChanceLevel:
    """A fitted decoder's score on ``(X, *targets)`` and its chance level: the same score with
    the rows of ``X`` deranged across the test trials (no trial keeps its own; within
    ``groups``, e.g. subject, when given: :func:`llm4brain.evaluation.controls.derangements`,
    the shuffles of the package's fMRI-shuffle chance), the targets left in place.

    Parameters
    ----------
    decoder : fitted decoder with ``score(X, *targets, **kwargs) -> float``
        (:class:`RidgeDecoder`, :class:`NearestNeighbourText`, :class:`SemanticReadout`), or
        any callable with that signature.
    X : array (n, V)
        Test trials' voxels.
    targets : what ``score`` compares with, one entry per trial (embeddings, references,
        labels).
    n_shuffles, rng : number of derangements, seed.
    groups : (n,), optional
    kwargs : passed to ``score`` (e.g. ``n_candidates``).

    Identification among the test trials' own embeddings (:meth:`RidgeDecoder.score`): a
    deranged trial's prediction still matches its *own* trial's embedding, which is one of
    the candidates, so a decoder that identifies nearly every trial gets a shuffled chance
    below ``1 / N`` (as the null of :func:`llm4brain.evaluation.retrieval.permutation_test`);
    the analytic ``1 / N`` (``Identification.chance``) is then the reference level.
    """
    score = getattr(decoder, "score", decoder)
    if not callable(score):
        raise ValueError(f"shuffled: decoder must have a score method or be callable, got "
                         f"{type(decoder).__name__}")
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"shuffled: X must be 2-D (n_trials, n_voxels), got shape {X.shape}")
    if int(n_shuffles) < 1:
        raise ValueError(f"shuffled: n_shuffles must be >= 1, got {n_shuffles}")
    perms = derangements(len(X), int(n_shuffles), rng, groups)
    observed = float(score(X, *targets, **kwargs))
    null = np.array([float(score(X[p], *targets, **kwargs)) for p in perms])
    return ChanceLevel(observed, null)


def permutation_p(pred, candidates, n_candidates: int = _S1.n_candidates, k: int = 1,
                  n_permutations: int = _S1.n_permutations, rng=0, groups=None,
                  centre=None) -> float:
    """Permutation p-value of top-``k`` identification of ``candidates[i]`` from ``pred[i]``
    (:func:`llm4brain.evaluation.retrieval.permutation_test`: distractors drawn once, the
    pairing shuffled); with ``centre`` (e.g. ``RidgeDecoder.centre_``, a training mean) both
    sides are centred on it first, as the pipeline scores."""
    pred, candidates = np.asarray(pred, np.float64), np.asarray(candidates, np.float64)
    if centre is not None:
        centre = np.asarray(centre, np.float64)
        pred, candidates = pred - centre, candidates - centre
    return float(permutation_test(pred, candidates, n_candidates, k=k,
                                  n_permutations=n_permutations, rng=rng,
                                  groups=groups)["p_value"])
