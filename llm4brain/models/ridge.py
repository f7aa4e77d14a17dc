"""Ridge regression with the regularisation chosen by CV: voxels -> video embedding (the
ridge baseline of the evaluation, and Stage I's voxel read-out).

Closed form through one decomposition per training set, shared by every alpha:

* ``primal`` (n_features <= n_samples): thin SVD ``Xc = U S V^T``,
  ``W(a) = V diag(s / (s^2 + a)) U^T Yc``;
* ``dual`` (n_features > n_samples, the fMRI case): eigendecomposition of the centred kernel
  ``Kc = Xc Xc^T = U diag(s^2) U^T``, ``W(a) = Xc^T U diag(1 / (s^2 + a)) U^T Yc``; the
  kernel is centred in place of the data, so X is never copied.

Alpha is chosen by efficient leave-one-out (``cv=0``; exact for ridge with an unpenalised
intercept: ``e_loo = e / (1 - h)``, ``h = 1/n + sum_k U_ik^2 s_k^2 / (s_k^2 + a)``) or by
k-fold cross-validation on contiguous folds (``cv=k``; trials of one run stay together),
shared by all targets or per target.

>>> model = RidgeCV(alphas=np.logspace(-1, 6, 8)).fit(X_train, Y_train)   # doctest: +SKIP
>>> Y_hat = model.predict(X_test); model.alpha_                          # doctest: +SKIP

Why not ``sklearn.linear_model.RidgeCV`` or himalaya: scikit-learn's efficient leave-one-out
(``cv=None``) is the same closed form, but with an integer ``cv`` it runs a grid search that
refits for every alpha, and an alpha per target is only available with ``cv=None``; here the
contiguous run folds (trials of one run never on both sides) share one decomposition per fold
across all alphas and targets, with alpha shared or per target either way. himalaya (the
Gallant lab's multi-target ridge) does this too, with GPU backends, but is one more dependency
for a CPU profile that needs none of its kernels. ``tests/test_ridge.py`` checks this class
against scikit-learn's ``Ridge`` (6 decimals) and against brute-force LOO and k-fold CV.
"""
from __future__ import annotations

import numpy as np

__all__ = ["RidgeCV", "ridge_fit"]


def _as_2d(Y: np.ndarray, name: str) -> tuple[np.ndarray, bool]:
    Y = np.asarray(Y)
    if Y.ndim == 1:
        return Y[:, None], True
    if Y.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D (n_samples, n_targets), got shape {Y.shape}")
    return Y, False


def _check_finite(a: np.ndarray, name: str) -> None:
    if not np.isfinite(a).all():
        raise ValueError(f"ridge: {name} contains NaN or inf; mask or impute those voxels/trials "
                         f"first")


class _Decomposition:
    """Ridge on training rows ``tr`` of X, for every alpha at once."""

    def __init__(self, X, K, tr, Y, fit_intercept: bool, solver: str):
        self.solver, self.tr = solver, tr
        Ytr = np.asarray(Y[tr], dtype=np.float64)
        self._Ytr = Ytr
        self.ym = Ytr.mean(0) if fit_intercept else np.zeros(Ytr.shape[1])
        Yc = Ytr - self.ym
        if solver == "primal":
            Xtr = np.asarray(X[tr], dtype=np.float64)
            self.xm = Xtr.mean(0) if fit_intercept else np.zeros(Xtr.shape[1])
            U, s, Vt = np.linalg.svd(Xtr - self.xm, full_matrices=False)
            self.V, self.s2 = Vt.T, s ** 2
            self.g_num = s                        # W(a) = V diag(s / (s2 + a)) U^T Yc
        else:
            Ktr = K[np.ix_(tr, tr)]
            if fit_intercept:
                self.krow = Ktr.mean(0)           # m . x_j for training rows j
                self.kmean = Ktr.mean()
                Ktr = Ktr - self.krow[None, :] - self.krow[:, None] + self.kmean
            w, U = np.linalg.eigh((Ktr + Ktr.T) / 2)
            self.s2 = np.clip(w, 0.0, None)
            self.g_num = np.ones_like(self.s2)    # W(a) = Xc^T U diag(1 / (s2 + a)) U^T Yc
        self.U, self.UtY = U, U.T @ Yc
        self.fit_intercept = fit_intercept

    def _g(self, alphas: np.ndarray) -> np.ndarray:
        """(n_alphas, r) spectral factors."""
        return self.g_num[None, :] / (self.s2[None, :] + alphas[:, None])

    def test_projection(self, X, K, te) -> np.ndarray:
        """``T`` with ``pred(a) = T diag(g(a)) U^T Yc + ym`` for rows ``te``."""
        if self.solver == "primal":
            return (np.asarray(X[te], dtype=np.float64) - self.xm) @ self.V
        Kte = K[np.ix_(te, self.tr)]
        if self.fit_intercept:
            Kte = Kte - Kte.mean(1, keepdims=True) - self.krow[None, :] + self.kmean
        return Kte @ self.U

    def test_errors(self, T: np.ndarray, Yte: np.ndarray, alphas: np.ndarray) -> np.ndarray:
        """Summed squared errors (n_alphas, n_targets) of held-out rows (projection ``T``)."""
        out = np.empty((len(alphas), Yte.shape[1]))
        for a, g in enumerate(self._g(alphas)):     # one alpha at a time: memory (n, d)
            pred = T @ (g[:, None] * self.UtY) + self.ym
            out[a] = ((pred - Yte) ** 2).sum(0)
        return out

    def loo_errors(self, alphas: np.ndarray) -> np.ndarray:
        """Leave-one-out mean squared errors (n_alphas, n_targets)."""
        U2 = self.U ** 2
        out = np.empty((len(alphas), self.UtY.shape[1]))
        for a, alpha in enumerate(alphas):
            shrink = self.s2 / (self.s2 + alpha)                               # (r,)
            h = U2 @ shrink + (1.0 / len(self.tr) if self.fit_intercept else 0.0)
            resid = self._Ytr - (self.U @ (shrink[:, None] * self.UtY) + self.ym)
            denom = (1.0 - h)[:, None]
            with np.errstate(divide="ignore", invalid="ignore"):
                loo = np.where(np.abs(denom) < 1e-12, np.inf, resid / denom)
            out[a] = np.mean(loo ** 2, axis=0)
        return out

    def coef(self, X, alphas_per_target: np.ndarray) -> np.ndarray:
        """Primal weights (n_features, n_targets), one alpha per target."""
        scaled = self.UtY * (self.g_num[:, None] / (self.s2[:, None] + alphas_per_target[None, :]))
        if self.solver == "primal":
            return self.V @ scaled
        A = self.U @ scaled                                                    # (n, d) duals
        Xtr = X if len(self.tr) == len(X) else X[self.tr]
        W = np.asarray(Xtr.T @ A.astype(Xtr.dtype), dtype=np.float64)
        if self.fit_intercept:
            xm = np.asarray(Xtr.mean(0), dtype=np.float64)
            W -= xm[:, None] * A.sum(0)[None, :]
        return W


def _kernel(X: np.ndarray) -> np.ndarray:
    return np.asarray(X @ X.T, dtype=np.float64)


def _solver(X, n: int, solver: str) -> str:
    if solver not in ("auto", "primal", "dual"):
        raise ValueError(f"ridge solver must be auto, primal or dual, got '{solver}'")
    if solver == "auto":
        return "dual" if X.shape[1] > n else "primal"
    return solver


def ridge_fit(X: np.ndarray, Y: np.ndarray, alpha: float, fit_intercept: bool = True,
              solver: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ridge for one alpha.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    Y : array of shape (n_samples, n_targets) or (n_samples,)
    alpha : float > 0 (or >= 0 in primal form with full column rank)

    Returns
    -------
    coef : array of shape (n_targets, n_features) (sklearn's layout)
    intercept : array of shape (n_targets,)
    """
    m = RidgeCV(alphas=(alpha,), fit_intercept=fit_intercept, solver=solver).fit(X, Y)
    return m.coef_, m.intercept_


class RidgeCV:
    """Multi-output ridge regression with alpha selected by cross-validation.

    Parameters
    ----------
    alphas : sequence of float
        Regularisation grid (setting ``stage1.ridge_alphas``).
    cv : int
        0 = efficient leave-one-out; k >= 2 = k-fold on contiguous folds (``stage1.ridge_cv``).
    fit_intercept : bool
    alpha_per_target : bool
        Choose an alpha for each output dimension instead of one for all.
    solver : {"auto", "primal", "dual"}

    Attributes
    ----------
    alpha_ : float, or array (n_targets,) with ``alpha_per_target``
    cv_errors_ : array (n_alphas, n_targets) of cross-validated mean squared errors
    coef_ : array (n_targets, n_features)
    intercept_ : array (n_targets,)
    """

    def __init__(self, alphas=(0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6), cv: int = 0,
                 fit_intercept: bool = True, alpha_per_target: bool = False,
                 solver: str = "auto"):
        self.alphas = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
        if self.alphas.ndim != 1 or (self.alphas < 0).any() or not len(self.alphas):
            raise ValueError(f"ridge alphas (stage1.ridge_alphas) must be non-negative numbers, "
                             f"got {alphas}")
        if cv == 1 or cv < 0:
            raise ValueError(f"ridge cv (stage1.ridge_cv) must be 0 (leave-one-out) or >= 2, "
                             f"got {cv}")
        self.cv, self.fit_intercept = int(cv), fit_intercept
        self.alpha_per_target, self.solver = alpha_per_target, solver

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "RidgeCV":
        """Fit on X (n_samples, n_features) and Y (n_samples, n_targets)."""
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        Y, self._squeeze = _as_2d(Y, "Y")
        if X.ndim != 2 or len(X) != len(Y):
            raise ValueError(f"ridge: X must be (n_samples, n_features) with as many rows as Y; "
                             f"got X {X.shape}, Y {Y.shape} (flatten voxels per trial first)")
        _check_finite(X, "X")
        _check_finite(Y, "Y")
        n = len(X)
        solver = _solver(X, n, self.solver)
        K = _kernel(X) if solver == "dual" else None
        full = np.arange(n)
        dec = None
        if len(self.alphas) == 1:
            errors = np.zeros((1, Y.shape[1]))
        elif self.cv == 0:
            dec = _Decomposition(X, K, full, Y, self.fit_intercept, solver)
            errors = dec.loo_errors(self.alphas)
        else:
            if self.cv > n:
                raise ValueError(f"ridge cv={self.cv} folds for only {n} samples")
            errors = np.zeros((len(self.alphas), Y.shape[1]))
            for te in np.array_split(full, self.cv):
                tr = np.setdiff1d(full, te)
                dec = _Decomposition(X, K, tr, Y, self.fit_intercept, solver)
                T = dec.test_projection(X, K, te)
                errors += dec.test_errors(T, np.asarray(Y[te], np.float64), self.alphas) / n
        self.cv_errors_ = errors
        if self.alpha_per_target:
            self.alpha_ = self.alphas[np.argmin(errors, axis=0)]
            alphas_t = self.alpha_
        else:
            self.alpha_ = float(self.alphas[np.argmin(errors.mean(1))])
            alphas_t = np.full(Y.shape[1], self.alpha_)
        if dec is None or self.cv:
            dec = _Decomposition(X, K, full, Y, self.fit_intercept, solver)
        W = dec.coef(X, alphas_t)
        self.coef_ = W.T
        self.intercept_ = (dec.ym - np.asarray(X.mean(0), np.float64) @ W if self.fit_intercept
                           else np.zeros(Y.shape[1]))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions of shape (n_samples, n_targets) (or (n_samples,) for a 1-D fit)."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("RidgeCV.predict called before fit")
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.coef_.shape[1]:
            raise ValueError(f"ridge: X must have {self.coef_.shape[1]} features, got shape "
                             f"{X.shape}")
        P = np.asarray(X @ self.coef_.T.astype(X.dtype), dtype=np.float64) + self.intercept_
        return P[:, 0] if self._squeeze else P
