"""The ridge decoder (voxels -> embedding, centred-cosine identification) and the ridge +
nearest-neighbour caption baseline, on the user's own arrays."""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..config import Stage1Config
from ..evaluation.baselines import nearest_training_answers
from ..evaluation.decoding import EvalSet
from ..evaluation.retrieval import permutation_test, retrieval_accuracy, similarity_matrix
from ..models.ridge import RidgeCV
from ..training.stage1 import selective_voxels
from ._checks import check_fitted, labels_1d, matrix, same_rows

__all__ = ["RidgeDecoder", "Identification", "NearestNeighbourText"]

_S1 = Stage1Config()


@dataclass(frozen=True)
class Identification:
    """Top-1 identification of each trial's own candidate.

    ranks : int array (n,)
        How many *other* candidates are at least as similar as the true one (0 = identified;
        ties count against the decoder, as :func:`llm4brain.evaluation.retrieval.retrieval_ranks`).
    best : int array (n,)
        Index of the most similar candidate of each trial (the first of ties).
    top1 : float
        Share of trials with rank 0.
    chance : float
        ``1 / n_candidates``.
    n_candidates : int
    """

    ranks: np.ndarray
    best: np.ndarray
    top1: float
    chance: float
    n_candidates: int


class RidgeDecoder:
    """Ridge regression from voxels to an embedding, scored by the centred cosine.

    The package's ridge baseline of Stage I (:func:`llm4brain.evaluation.stage1.evaluate_stage1`,
    method ``ridge``): :class:`llm4brain.models.ridge.RidgeCV` (closed form, alpha from
    ``alphas`` by efficient leave-one-out, ``cv=0``, or by ``cv`` contiguous folds), fitted on
    the training trials; identification compares predictions and candidate embeddings by the
    cosine after subtracting the **training** trials' mean embedding (``centre_``, stored at
    :meth:`fit`; nothing of the test data enters it).

    Parameters
    ----------
    alphas : sequence of float
        Ridge grid; default the package's ``stage1.ridge_alphas``.
    cv : int
        0 = efficient leave-one-out (default, ``stage1.ridge_cv``); k >= 2 = k contiguous folds.
    n_voxels : int, optional
        Keep only the ``n_voxels`` columns of X whose one-way ANOVA F of the class labels ``y``
        (given to :meth:`fit`) is largest (:func:`llm4brain.training.stage1.selective_voxels`,
        the selection of ``stage1.voxel_readout_voxels`` / ``stage1.input_voxels``). ``None``
        or 0, or at least the number of columns: every voxel (the pipeline's ridge baseline).

    Attributes (after fit)
    ----------------------
    ridge_ : RidgeCV;  alpha_ : chosen alpha;  centre_ : (d,) training embeddings' mean;
    voxels_ : kept column indices (None: all);  n_features_in_ : columns of X;
    n_outputs_ : d.

    >>> dec = RidgeDecoder().fit(X_train, Y_train)                # doctest: +SKIP
    >>> dec.identify(X_test, Y_test).top1                          # doctest: +SKIP
    """

    def __init__(self, alphas: Sequence[float] = _S1.ridge_alphas, cv: int = _S1.ridge_cv,
                 n_voxels: int | None = None):
        self.alphas, self.cv, self.n_voxels = alphas, cv, n_voxels

    # ------------------------------------------------------------------------------ fit
    def fit(self, X, Y, y=None) -> "RidgeDecoder":
        """Fit on training trials: voxels ``X`` (n, V), embeddings ``Y`` (n, d) and, for the
        voxel selection (``n_voxels``), class labels ``y`` (n,)."""
        name = type(self).__name__ + ".fit"
        X = matrix(X, "X", name, what="voxels")
        Y = matrix(Y, "Y", name, what="embedding dimensions")
        same_rows(name, ("X", X), ("Y", Y))
        if len(X) < 2:
            raise ValueError(f"{name}: X has {len(X)} training trial(s); the ridge needs at "
                             f"least 2")
        k = self.n_voxels
        if k is not None and (not np.isscalar(k) or int(k) != k or k < 0):
            raise ValueError(f"{name}: n_voxels must be None or an int >= 0, got {k!r}")
        sel = None
        if k and int(k) < X.shape[1]:
            if y is None:
                raise ValueError(f"{name}: n_voxels = {k} selects voxels by the ANOVA F of the "
                                 f"class labels: pass y (one class per training trial)")
            y = labels_1d(y, "y", name)
            same_rows(name, ("X", X), ("y", y))
            sel = selective_voxels(X, y, int(k), setting="n_voxels")
        elif y is not None and not k:
            raise ValueError(f"{name}: y (class labels) is only used to select voxels; set "
                             f"n_voxels, or leave y out")
        self.voxels_ = sel
        self.n_features_in_, self.n_outputs_ = X.shape[1], Y.shape[1]
        self.ridge_ = RidgeCV(alphas=self.alphas, cv=self.cv).fit(
            X if sel is None else X[:, sel], Y)
        self.alpha_ = self.ridge_.alpha_
        self.centre_ = Y.mean(0)
        return self

    # -------------------------------------------------------------------------- predict
    def _x(self, X, method: str) -> np.ndarray:
        check_fitted(self, "ridge_", method)
        X = matrix(X, "X", f"{type(self).__name__}.{method}", n_columns=self.n_features_in_,
                   what="voxels")
        return X if self.voxels_ is None else X[:, self.voxels_]

    def _candidates(self, candidates, method: str, name: str = "candidates") -> np.ndarray:
        return matrix(candidates, name, f"{type(self).__name__}.{method}",
                      n_columns=self.n_outputs_, what="embedding dimensions")

    def predict(self, X) -> np.ndarray:
        """Predicted embeddings (n, d) of voxel rows ``X`` (n, V)."""
        X = self._x(X, "predict")
        return np.atleast_2d(self.ridge_.predict(X))

    def similarity(self, X, candidates) -> np.ndarray:
        """Centred cosine (n, n_candidates) of the predictions of ``X`` with ``candidates``
        (n_candidates, d): both minus ``centre_`` (the training embeddings' mean)."""
        X = self._x(X, "similarity")
        P = np.atleast_2d(self.ridge_.predict(X))
        C = self._candidates(candidates, "similarity")
        return similarity_matrix(P - self.centre_, C - self.centre_, "cosine")

    # ------------------------------------------------------------------------- scoring
    def identify(self, X, candidates, true_index=None) -> Identification:
        """Top-1 identification of each trial's candidate among **all** ``candidates``.

        Parameters
        ----------
        X : array (n, V)
        candidates : array (n_candidates, d)
            Candidate embeddings; without ``true_index`` row ``i`` is trial ``i``'s own
            (``n_candidates == n``).
        true_index : int array (n,), optional
            Row of ``candidates`` that is trial ``i``'s own.
        """
        name = f"{type(self).__name__}.identify"
        S = self.similarity(X, candidates)
        n, m = S.shape
        if true_index is None:
            if m != n:
                raise ValueError(f"{name}: candidates has {m} rows for {n} trials of X; without "
                                 f"true_index row i must be trial i's own candidate (or pass "
                                 f"true_index)")
            true = np.arange(n)
        else:
            true = np.asarray(true_index)
            if true.shape != (n,) or not np.issubdtype(true.dtype, np.integer):
                raise ValueError(f"{name}: true_index must be {n} ints (one per trial of X), got "
                                 f"shape {true.shape}, dtype {true.dtype}")
            if n and (true.min() < 0 or true.max() >= m):
                raise ValueError(f"{name}: true_index must index the {m} rows of candidates")
        if m < 2:
            raise ValueError(f"{name}: candidates has {m} row(s); identification needs >= 2")
        own = S[np.arange(n), true]
        ranks = (S >= own[:, None]).sum(1) - 1           # the true candidate itself excluded
        return Identification(ranks=ranks, best=S.argmax(1), top1=float(np.mean(ranks == 0)),
                              chance=1.0 / m, n_candidates=m)

    def retrieval(self, X, Y, n_candidates: int = _S1.n_candidates, k=(1, 5), rng=0,
                  groups=None) -> dict:
        """The pipeline's scoring (:func:`llm4brain.evaluation.retrieval.retrieval_accuracy` on
        centred arrays): trial ``i``'s own embedding ``Y[i]`` against ``n_candidates - 1``
        distractors drawn among the other trials' (never one of the same ``groups``, e.g. the
        same clip). Returns its dict (``top1``, ``top5``, ``chance_top1``, ``ranks``, ...)."""
        P = self.predict(X)
        Y = self._candidates(Y, "retrieval", "Y")
        same_rows(f"{type(self).__name__}.retrieval", ("X", P), ("Y", Y))
        return retrieval_accuracy(P - self.centre_, Y - self.centre_, n_candidates, k=k,
                                  rng=rng, groups=groups)

    def score(self, X, Y, n_candidates: int | None = None, rng=0, groups=None) -> float:
        """Top-1 identification accuracy of the test trials' own embeddings ``Y`` (n, d)
        (chance ``1 / n_candidates``): among all ``n`` of them by default, else among
        ``n_candidates`` as :meth:`retrieval`. Its chance level beside it:
        :func:`llm4brain.decoders.shuffled` ``(decoder, X, Y)``."""
        n = len(np.asarray(Y))
        return float(self.retrieval(X, Y, n if n_candidates is None else n_candidates, k=1,
                                    rng=rng, groups=groups)["top1"])

    def permutation_p(self, X, Y, n_candidates: int = _S1.n_candidates,
                      n_permutations: int = _S1.n_permutations, rng=0, groups=None) -> float:
        """One-sided permutation p-value of the top-1 accuracy of :meth:`retrieval`
        (:func:`llm4brain.evaluation.retrieval.permutation_test`, trial <-> embedding pairing
        shuffled, the same distractors)."""
        P = self.predict(X)
        Y = self._candidates(Y, "permutation_p", "Y")
        same_rows(f"{type(self).__name__}.permutation_p", ("X", P), ("Y", Y))
        return float(permutation_test(P - self.centre_, Y - self.centre_, n_candidates, k=1,
                                      n_permutations=n_permutations, rng=rng,
                                      groups=groups)["p_value"])


class NearestNeighbourText:
    """Ridge + nearest-neighbour caption baseline: a decoder that never generates.

    The package's Stage II baseline (:func:`llm4brain.evaluation.baselines.nn_baseline`): a
    :class:`RidgeDecoder` predicts each new trial's embedding; the decoded text is the caption
    of the **training** trial whose embedding is the most similar (cosine, both centred on the
    training embeddings' mean, as the Stage I results it reads are). With
    ``same_instruction`` and instructions given, only training trials captioned under the
    trial's instruction compete (all of them when none was). The choice itself is
    :func:`llm4brain.evaluation.baselines.nearest_training_answers`, called on these arrays.

    Parameters
    ----------
    decoder : RidgeDecoder, optional
        Its settings (a copy is fitted; the one given is not changed). Default
        ``RidgeDecoder()``, the pipeline's ridge.
    same_instruction : bool
    """

    def __init__(self, decoder: RidgeDecoder | None = None, *, same_instruction: bool = True):
        self.decoder, self.same_instruction = decoder, same_instruction

    def fit(self, X, Y, captions: Sequence[str], instructions: Sequence[str] | None = None,
            y=None) -> "NearestNeighbourText":
        """Fit on training trials: voxels ``X`` (n, V), embeddings ``Y`` (n, d), one caption
        each and optionally the instruction it answers; ``y`` for the decoder's voxel
        selection."""
        name = f"{type(self).__name__}.fit"
        if isinstance(captions, str):
            raise ValueError(f"{name}: captions must be one string per training trial, got a "
                             f"single string")
        captions = [str(c) for c in captions]
        ins = ([""] * len(captions) if instructions is None
               else [str(i) for i in instructions])
        dec = copy.deepcopy(self.decoder) if self.decoder is not None else RidgeDecoder()
        if not isinstance(dec, RidgeDecoder):
            raise ValueError(f"{name}: decoder must be a RidgeDecoder, got {type(dec).__name__}")
        Xa = matrix(X, "X", name, what="voxels")
        Ya = matrix(Y, "Y", name, what="embedding dimensions")
        same_rows(name, ("X", Xa), ("Y", Ya), ("captions", captions), ("instructions", ins))
        self.decoder_ = dec.fit(Xa, Ya, y)
        self.captions_, self.instructions_ = captions, ins
        self._train = Ya - self.decoder_.centre_               # centred, as train_x is
        n = len(captions)
        self._meta = pd.DataFrame(dict(split="train", subject="user",
                                       stim_file=[str(i) for i in range(n)]))
        # the answer of training trial i is its index: the package function then says which
        self._table = pd.DataFrame(dict(subject="user", stim_file=self._meta["stim_file"],
                                        instruction=ins, answer=self._meta["stim_file"]))
        return self

    def nearest(self, X, instructions: Sequence[str] | None = None) -> np.ndarray:
        """Index (into the training trials) of the nearest training trial of each row of X."""
        check_fitted(self, "decoder_", "nearest")
        P = self.decoder_.predict(X) - self.decoder_.centre_
        ins = [""] * len(P) if instructions is None else [str(i) for i in instructions]
        same_rows(f"{type(self).__name__}.nearest", ("X", P), ("instructions", ins))
        eval_set = EvalSet(pd.DataFrame(dict(instruction=ins)), torch.empty(0))
        out = nearest_training_answers(P, {"train_x": self._train}, self._meta, eval_set,
                                       self._table, self.same_instruction)
        return np.asarray([int(a) for a in out], dtype=np.int64)

    def decode(self, X, instructions: Sequence[str] | None = None) -> list[str]:
        """Decoded text of each row of ``X``: the nearest training trial's caption."""
        return [self.captions_[i] for i in self.nearest(X, instructions)]

    def score(self, X, references: Sequence[str],
              instructions: Sequence[str] | None = None) -> float:
        """Share of trials whose decoded text equals its reference (exact match; for text
        metrics use :class:`llm4brain.evaluation.TextScorer` on :meth:`decode`)."""
        texts = self.decode(X, instructions)
        refs = [str(r) for r in references]
        same_rows(f"{type(self).__name__}.score", ("X", texts), ("references", refs))
        return float(np.mean([t == r for t, r in zip(texts, refs)]))
