"""The semantic read-out's logistic decoders (class, scene, ...) on the user's own arrays."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..config import EvalConfig
from ..evaluation.semantic import LabelReadout, fit_label_readout
from ._checks import check_fitted, labels_1d, matrix, same_rows

__all__ = ["SemanticReadout"]

_E = EvalConfig()


def _grid(v, name: str, owner: str, kind) -> tuple:
    vals = tuple(np.atleast_1d(np.asarray(v)).tolist())
    if not vals:
        raise ValueError(f"{owner}: {name} is empty")
    try:
        return tuple(kind(x) for x in vals)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be numbers, got {v!r}") from None


class SemanticReadout:
    """Labels (class, and e.g. scene) read from the most label-selective voxels.

    Mirrors the read-outs of the package's semantic read-out decoder
    (:func:`llm4brain.evaluation.semantic.fit_semantic_readout`), fitted with the same code:
    per label, ``StandardScaler -> SelectKBest(f_classif, k=n_voxels) -> StandardScaler ->
    LogisticRegression(C, max_iter=2000)`` (lbfgs, L2); ``n_voxels = 0`` (or at least the number
    of voxels) keeps every voxel and reduces them by PCA to ``n_pca`` components instead.
    With grids of ``n_voxels`` / ``C`` and ``groups`` (the subject of each training row), the
    pair is chosen per label by leave-one-group-out accuracy and refitted on all rows
    (:func:`llm4brain.evaluation.semantic.fit_label_readout`); with one value of each and no
    groups, that pipeline is fitted directly (:meth:`LabelReadout.refit`).

    Not :class:`llm4brain.evaluation.semantic.SemanticReadout` (what the pipeline's
    ``fit_semantic_readout`` returns: these read-outs plus video-token prototypes for the LLM).

    Parameters
    ----------
    n_voxels : int or sequence of int
        Default the package's grid ``eval.semantic_voxels`` (100, 300, 1000, 0).
    C : float or sequence of float
        Inverse regularisation; default ``eval.semantic_cs``.
    n_pca : int
        PCA components when ``n_voxels = 0`` (``eval.semantic_pca``).

    Attributes (after fit)
    ----------------------
    readouts_ : label -> :class:`~llm4brain.evaluation.semantic.LabelReadout`;
    classes_, C_, n_voxels_ : per label; loso_ : per label, leave-one-group-out accuracy of
    every ``(n_voxels, C)`` (empty without groups).

    >>> ro = SemanticReadout(n_voxels=300, C=0.01).fit(X, {"class": y})   # doctest: +SKIP
    >>> ro.predict(X_test)["class"]                                       # doctest: +SKIP
    """

    def __init__(self, n_voxels: int | Sequence[int] = _E.semantic_voxels,
                 C: float | Sequence[float] = _E.semantic_cs, n_pca: int = _E.semantic_pca):
        self.n_voxels, self.C, self.n_pca = n_voxels, C, n_pca

    def fit(self, X, labels: Mapping[str, Sequence] | Sequence, groups: Sequence | None = None
            ) -> "SemanticReadout":
        """Fit on training rows ``X`` (n, V) and ``labels``: label name -> (n,) values (a
        single array is ``{"class": y}``); ``groups`` (n,) to choose ``n_voxels`` and ``C``
        from grids by leave-one-group-out."""
        name = f"{type(self).__name__}.fit"
        X = matrix(X, "X", name, dtype=np.float32, what="voxels")
        if not isinstance(labels, Mapping):
            labels = {"class": labels}
        if not labels:
            raise ValueError(f"{name}: labels is empty; give e.g. {{'class': y}}")
        ys = {str(lab): labels_1d(v, f"labels[{lab!r}]", name) for lab, v in labels.items()}
        same_rows(name, ("X", X), *((f"labels[{lab!r}]", y) for lab, y in ys.items()))
        nv = _grid(self.n_voxels, "n_voxels", name, int)
        cs = _grid(self.C, "C", name, float)
        if min(nv) < 0:
            raise ValueError(f"{name}: n_voxels must be >= 0 (0: every voxel, with PCA), got "
                             f"{list(nv)}")
        if min(cs) <= 0:
            raise ValueError(f"{name}: C must be > 0, got {list(cs)}")
        if groups is not None:
            groups = labels_1d(groups, "groups", name)
            same_rows(name, ("X", X), ("groups", groups))
        elif len(nv) > 1 or len(cs) > 1:
            raise ValueError(f"{name}: n_voxels = {list(nv)} and C = {list(cs)} are grids; "
                             f"choosing from them needs groups (the subject of each row, at "
                             f"least two), as the package's leave-one-subject-out does; or "
                             f"give a single n_voxels and C")
        readouts = {}
        for lab, y in ys.items():
            if groups is not None:
                r = fit_label_readout(X, y, groups, label=lab, n_pca=int(self.n_pca), cs=cs,
                                      n_voxels=nv)
            else:
                if len(np.unique(y)) < 2:
                    raise ValueError(f"{name}: labels[{lab!r}] holds one value ({y[0]!r}); "
                                     f"nothing to read out")
                r = LabelReadout(lab, None, np.array([]), cs[0], {}, nv[0], int(self.n_pca))
                model = r.refit(X, y)
                r = LabelReadout(lab, model, np.asarray(model.classes_), cs[0], {}, nv[0],
                                 int(self.n_pca))
            readouts[lab] = r
        self.readouts_ = readouts
        self.n_features_in_ = X.shape[1]
        self.classes_ = {lab: r.classes for lab, r in readouts.items()}
        self.C_ = {lab: r.C for lab, r in readouts.items()}
        self.n_voxels_ = {lab: r.n_voxels for lab, r in readouts.items()}
        self.loso_ = {lab: dict(r.loso) for lab, r in readouts.items()}
        return self

    def _x(self, X, method: str) -> np.ndarray:
        check_fitted(self, "readouts_", method)
        return matrix(X, "X", f"{type(self).__name__}.{method}", dtype=np.float32,
                      n_columns=self.n_features_in_, what="voxels")

    def predict(self, X) -> dict[str, np.ndarray]:
        """Most probable value of every label for voxel rows ``X`` (n, V)."""
        X = self._x(X, "predict")
        return {lab: r.predict(X) for lab, r in self.readouts_.items()}

    def predict_proba(self, X) -> dict[str, np.ndarray]:
        """Per label, the posterior (n, n_values), columns in ``classes_[label]`` order."""
        X = self._x(X, "predict_proba")
        return {lab: r.model.predict_proba(X) for lab, r in self.readouts_.items()}

    def score(self, X, labels: Mapping[str, Sequence] | Sequence, label: str | None = None
              ) -> float:
        """Accuracy of one label (default the first fitted; a single array is that label's
        values)."""
        name = f"{type(self).__name__}.score"
        check_fitted(self, "readouts_", "score")
        lab = label if label is not None else next(iter(self.readouts_))
        if lab not in self.readouts_:
            raise ValueError(f"{name}: label {lab!r} was not fitted; fitted: "
                             f"{list(self.readouts_)}")
        if isinstance(labels, Mapping) and lab not in labels:
            raise ValueError(f"{name}: labels has no {lab!r} values; it has {list(labels)}")
        y = labels[lab] if isinstance(labels, Mapping) else labels
        y = labels_1d(y, f"labels[{lab!r}]", name)
        X = self._x(X, "score")
        same_rows(name, ("X", X), (f"labels[{lab!r}]", y))
        return float(np.mean(self.readouts_[lab].predict(X) == y))
