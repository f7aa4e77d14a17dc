"""Ridge baseline against sklearn (to 6 decimals) and brute-force cross-validation."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from llm4brain.models.ridge import RidgeCV, ridge_fit


@pytest.mark.parametrize("shape", [(40, 8), (20, 60)])        # primal and dual (voxels > trials)
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("solver", ["auto", "primal", "dual"])
def test_matches_sklearn_ridge(rng, shape, fit_intercept, solver):
    n, p = shape
    X = rng.normal(size=(n, p)) + 2.0
    Y = X[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(size=(n, 4)) + 5.0
    for alpha in (0.3, 10.0):
        coef, icpt = ridge_fit(X, Y, alpha, fit_intercept=fit_intercept, solver=solver)
        ref = Ridge(alpha=alpha, fit_intercept=fit_intercept, solver="cholesky").fit(X, Y)
        np.testing.assert_array_almost_equal(coef, ref.coef_, decimal=6)
        np.testing.assert_array_almost_equal(icpt, np.broadcast_to(ref.intercept_, (4,)), decimal=6)
        m = RidgeCV(alphas=(alpha,), fit_intercept=fit_intercept, solver=solver).fit(X, Y)
        np.testing.assert_array_almost_equal(m.predict(X[:5]), ref.predict(X[:5]), decimal=6)


def _brute_cv(X, Y, alphas, folds):
    out = np.zeros((len(alphas), Y.shape[1]))
    for a, alpha in enumerate(alphas):
        for te in folds:
            tr = np.setdiff1d(np.arange(len(X)), te)
            pred = Ridge(alpha=alpha).fit(X[tr], Y[tr]).predict(X[te])
            out[a] += ((pred - Y[te]) ** 2).sum(0) / len(X)
    return out


@pytest.mark.parametrize("p", [6, 30])
def test_efficient_loo_equals_brute_force(rng, p):
    X, Y = rng.normal(size=(15, p)), rng.normal(size=(15, 2))
    alphas = (0.1, 1.0, 100.0)
    m = RidgeCV(alphas=alphas, cv=0).fit(X, Y)
    ref = _brute_cv(X, Y, alphas, [np.array([i]) for i in range(15)])
    np.testing.assert_allclose(m.cv_errors_, ref, rtol=1e-8)


@pytest.mark.parametrize("p", [6, 30])
def test_kfold_equals_brute_force(rng, p):
    X, Y = rng.normal(size=(17, p)), rng.normal(size=(17, 3))
    alphas = (0.5, 5.0, 500.0)
    m = RidgeCV(alphas=alphas, cv=3).fit(X, Y)
    ref = _brute_cv(X, Y, alphas, np.array_split(np.arange(17), 3))
    np.testing.assert_allclose(m.cv_errors_, ref, rtol=1e-8)


@pytest.mark.parametrize("cv", [0, 5])
def test_chosen_alpha_beats_extremes_on_planted_problem(rng, cv):
    n, p, d = 120, 300, 5                                        # more voxels than trials
    W = rng.normal(size=(p, d)) * (rng.random(p) < 0.1)[:, None]
    X = rng.normal(size=(2 * n, p)).astype(np.float32)
    Y = X @ W + 3.0 * rng.normal(size=(2 * n, d))
    alphas = np.logspace(-4, 8, 13)
    m = RidgeCV(alphas=alphas, cv=cv).fit(X[:n], Y[:n])
    assert alphas[0] < m.alpha_ < alphas[-1]
    err = lambda a: np.mean((RidgeCV(alphas=(a,)).fit(X[:n], Y[:n]).predict(X[n:]) - Y[n:]) ** 2)
    chosen = np.mean((m.predict(X[n:]) - Y[n:]) ** 2)
    assert chosen < err(alphas[0]) and chosen < err(alphas[-1])
    # and it carries signal: better than predicting the training mean
    assert chosen < np.mean((Y[n:] - Y[:n].mean(0)) ** 2)


def test_alpha_per_target_and_1d(rng):
    X = rng.normal(size=(60, 10))
    Y = np.c_[X[:, 0] + 0.01 * rng.normal(size=60), rng.normal(size=60)]   # signal vs noise
    m = RidgeCV(alphas=np.logspace(-3, 6, 10), alpha_per_target=True).fit(X, Y)
    assert m.alpha_.shape == (2,) and m.alpha_[0] < m.alpha_[1]
    one = RidgeCV(alphas=(1.0,)).fit(X, Y[:, 0])
    assert one.predict(X).shape == (60,)


def test_bad_input_messages(rng):
    X = rng.normal(size=(10, 4))
    with pytest.raises(ValueError, match="NaN"):
        RidgeCV().fit(np.where(X > 1, np.nan, X), X[:, :2])
    with pytest.raises(ValueError, match="as many rows"):
        RidgeCV().fit(X, X[:5])
    with pytest.raises(ValueError, match="stage1.ridge_cv"):
        RidgeCV(cv=1)
    with pytest.raises(ValueError, match="4 features"):
        RidgeCV(alphas=(1.0,)).fit(X, X[:, :2]).predict(X[:, :3])
