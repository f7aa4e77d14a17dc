"""llm4brain.decoders: the package's decoders on plain arrays (small synthetic data, no LLM)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from llm4brain.config import Stage1Config
from llm4brain.decoders import (ChanceLevel, NearestNeighbourText, NotFittedError, RidgeDecoder,
                                SemanticReadout, permutation_p, permutation_test, shuffled)
from llm4brain.evaluation.baselines import nearest_training_answers
from llm4brain.evaluation.decoding import EvalSet
from llm4brain.evaluation.retrieval import retrieval_accuracy
from llm4brain.evaluation.semantic import fit_label_readout
from llm4brain.models.ridge import RidgeCV
from llm4brain.training.stage1 import selective_voxels

N_TRAIN, N_TEST, V, D = 200, 50, 100, 8


def _planted(seed=0, noise=9.0, offset=3.0):
    """Embeddings with a large common component; voxels = embeddings @ W + noise."""
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((N_TRAIN + N_TEST, D)) + offset
    W = rng.standard_normal((D, V))
    X = (Y - offset) @ W + noise * rng.standard_normal((N_TRAIN + N_TEST, V))
    return X[:N_TRAIN], Y[:N_TRAIN], X[N_TRAIN:], Y[N_TRAIN:]


@pytest.fixture(scope="module")
def data():
    return _planted()


@pytest.fixture(scope="module")
def fitted(data):
    Xtr, Ytr, _, _ = data
    return RidgeDecoder().fit(Xtr, Ytr)


def _unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)


# ------------------------------------------------------------------------------ RidgeDecoder
def test_ridge_is_the_pipelines_ridge(data, fitted):
    Xtr, Ytr, Xte, _ = data
    ref = RidgeCV(alphas=Stage1Config().ridge_alphas, cv=Stage1Config().ridge_cv).fit(Xtr, Ytr)
    np.testing.assert_allclose(fitted.predict(Xte), ref.predict(Xte))
    assert fitted.alpha_ == ref.alpha_ and fitted.voxels_ is None


def test_identification_far_above_chance_and_its_shuffled_chance(data, fitted):
    _, _, Xte, Yte = data
    idn = fitted.identify(Xte, Yte)
    assert idn.n_candidates == N_TEST and idn.chance == pytest.approx(1 / N_TEST)
    assert idn.top1 > 0.25 > 10 * idn.chance
    assert idn.ranks.shape == (N_TEST,) and (idn.best[idn.ranks == 0]
                                            == np.flatnonzero(idn.ranks == 0)).all()
    ch = shuffled(fitted, Xte, Yte, n_shuffles=200, rng=1)
    assert isinstance(ch, ChanceLevel) and len(ch.null) == 200
    assert ch.observed == pytest.approx(idn.top1)           # score = identify among all n
    assert abs(ch.chance - 1 / N_TEST) < 0.01
    assert ch.p_value == pytest.approx(1 / 201) and ch.high < ch.observed
    ch10 = shuffled(fitted, Xte, Yte, n_shuffles=200, rng=1, n_candidates=10)
    assert abs(ch10.chance - 0.1) < 0.02 and ch10.observed > 0.5
    assert "chance" in str(ch10)


def test_a_strong_decoders_shuffled_chance_is_below_one_in_n():
    """Documented property: a deranged trial's prediction still matches its own embedding,
    which is one of the candidates, so the shuffled top-1 of a near-perfect decoder falls
    below 1 / N (the analytic chance, ``Identification.chance``)."""
    Xtr, Ytr, Xte, Yte = _planted(noise=3.0)
    dec = RidgeDecoder().fit(Xtr, Ytr)
    assert dec.identify(Xte, Yte).top1 > 0.9
    assert shuffled(dec, Xte, Yte, n_shuffles=50).chance < 0.5 / N_TEST


def test_identify_is_the_centred_cosine_on_the_training_mean(data, fitted):
    Xtr, Ytr, Xte, Yte = data
    np.testing.assert_allclose(fitted.centre_, Ytr.mean(0))
    P = RidgeCV(alphas=Stage1Config().ridge_alphas).fit(Xtr, Ytr).predict(Xte)
    S = _unit(P - Ytr.mean(0)) @ _unit(Yte - Ytr.mean(0)).T          # independent reference
    ranks = (S > np.diag(S)[:, None]).sum(1)
    np.testing.assert_array_equal(fitted.identify(Xte, Yte).ranks, ranks)
    np.testing.assert_allclose(fitted.similarity(Xte, Yte), S, atol=1e-10)
    # the raw cosine is worse here: the common component (offset 3) dominates it
    raw = _unit(P) @ _unit(Yte).T
    assert np.mean((raw > np.diag(raw)[:, None]).sum(1) == 0) < fitted.identify(Xte, Yte).top1


def test_test_data_never_moves_the_centre(data):
    Xtr, Ytr, Xte, Yte = data
    dec = RidgeDecoder().fit(Xtr, Ytr)
    centre = dec.centre_.copy()
    before = dec.identify(Xte, Yte).ranks
    dec.identify(Xte + 10.0, Yte + 7.0)                # shifted test inputs and embeddings
    dec.predict(Xte - 3.0)
    dec.score(Xte, Yte + 5.0)
    np.testing.assert_array_equal(dec.centre_, centre)
    np.testing.assert_array_equal(dec.identify(Xte, Yte).ranks, before)


def test_a_constant_added_to_every_embedding_changes_nothing(data, fitted):
    """Centred cosine: a constant added to all embeddings (training ones, so the centre, and
    the candidates) leaves every similarity as it was; only the centre moves with it."""
    Xtr, Ytr, Xte, Yte = data
    c = np.linspace(-5, 5, D)
    shifted = RidgeDecoder().fit(Xtr, Ytr + c)
    np.testing.assert_allclose(shifted.centre_, fitted.centre_ + c)
    np.testing.assert_allclose(shifted.similarity(Xte, Yte + c), fitted.similarity(Xte, Yte),
                               atol=1e-9)
    np.testing.assert_array_equal(shifted.identify(Xte, Yte + c).ranks,
                                  fitted.identify(Xte, Yte).ranks)


def test_retrieval_score_and_permutation_are_the_package_functions(data, fitted):
    _, Ytr, Xte, Yte = data
    mu = Ytr.mean(0)
    P = fitted.predict(Xte)
    got = fitted.retrieval(Xte, Yte, n_candidates=10, rng=3)
    ref = retrieval_accuracy(P - mu, Yte - mu, 10, k=(1, 5), rng=3)
    assert got["top1"] == ref["top1"] and got["top5"] == ref["top5"]
    assert fitted.score(Xte, Yte) == fitted.identify(Xte, Yte).top1
    p = fitted.permutation_p(Xte, Yte, n_candidates=10, n_permutations=50)
    assert p == permutation_test(P - mu, Yte - mu, 10, n_permutations=50, rng=0)["p_value"]
    assert p == permutation_p(P, Yte, 10, n_permutations=50, centre=fitted.centre_)
    assert p == pytest.approx(1 / 51)


def test_voxel_selection_by_class(data):
    Xtr, Ytr, Xte, Yte = data
    y = np.where(Ytr[:, 0] > np.median(Ytr[:, 0]), "a", "b")
    dec = RidgeDecoder(n_voxels=30).fit(Xtr, Ytr, y)
    np.testing.assert_array_equal(dec.voxels_, selective_voxels(Xtr, y, 30))
    np.testing.assert_allclose(dec.predict(Xte),
                               RidgeCV(alphas=dec.alphas).fit(Xtr[:, dec.voxels_], Ytr)
                               .predict(Xte[:, dec.voxels_]))
    assert dec.identify(Xte, Yte).top1 > 0.1
    assert RidgeDecoder(n_voxels=V).fit(Xtr, Ytr, y).voxels_ is None      # >= all: every voxel
    with pytest.raises(ValueError, match=r"pass y"):
        RidgeDecoder(n_voxels=30).fit(Xtr, Ytr)
    with pytest.raises(ValueError, match=r"y has 199"):
        RidgeDecoder(n_voxels=30).fit(Xtr, Ytr, y[:-1])
    with pytest.raises(ValueError, match=r"n_voxels"):
        RidgeDecoder().fit(Xtr, Ytr, y)
    with pytest.raises(ValueError, match=r"n_voxels"):
        RidgeDecoder(n_voxels=-1).fit(Xtr, Ytr)


def test_ridge_errors(data, fitted):
    Xtr, Ytr, Xte, Yte = data
    with pytest.raises(NotFittedError, match=r"RidgeDecoder.predict called before fit"):
        RidgeDecoder().predict(Xte)
    with pytest.raises(ValueError, match=r"before fit"):          # NotFittedError is one
        RidgeDecoder().identify(Xte, Yte)
    with pytest.raises(ValueError, match=r"X has 200 rows .* Y has 199"):
        RidgeDecoder().fit(Xtr, Ytr[:-1])
    with pytest.raises(ValueError, match=r"Y must be 2-D"):
        RidgeDecoder().fit(Xtr, Ytr[:, 0])
    with pytest.raises(ValueError, match=r"X has 99 voxels per row"):
        fitted.predict(Xte[:, :99])
    with pytest.raises(ValueError, match=r"X must be 2-D"):
        fitted.predict(Xte[0])
    with pytest.raises(ValueError, match=r"candidates has 7 embedding dimensions"):
        fitted.identify(Xte, Yte[:, :7])
    with pytest.raises(ValueError, match=r"candidates has 10 rows for 50 trials"):
        fitted.identify(Xte, Yte[:10])
    with pytest.raises(ValueError, match=r"true_index"):
        fitted.identify(Xte, Yte[:10], true_index=np.arange(50))
    with pytest.raises(ValueError, match=r"X contains NaN"):
        fitted.predict(np.where(np.eye(N_TEST, V) > 0, np.nan, Xte))
    idn = fitted.identify(Xte[:5], Yte, true_index=np.arange(5))     # among all 50 candidates
    assert idn.n_candidates == N_TEST


# ----------------------------------------------------------------------- NearestNeighbourText
def test_nearest_neighbour_text_matches_a_numpy_reference_and_the_package(data):
    Xtr, Ytr, Xte, _ = data
    captions = [f"caption {i}" for i in range(N_TRAIN)]
    nn = NearestNeighbourText().fit(Xtr, Ytr, captions)
    texts = nn.decode(Xte)
    assert len(texts) == N_TEST and set(texts) <= set(captions)
    # independent reference: the ridge's prediction, centred cosine to the training embeddings
    mu = Ytr.mean(0)
    P = RidgeCV(alphas=Stage1Config().ridge_alphas).fit(Xtr, Ytr).predict(Xte)
    ref = np.argmax(_unit(P - mu) @ _unit(Ytr - mu).T, axis=1)
    assert texts == [captions[i] for i in ref]
    np.testing.assert_array_equal(nn.nearest(Xte), ref)
    # the package function on hand-built inputs (as notebook 03's results feed nn_baseline)
    meta = pd.DataFrame(dict(split="train", subject="01",
                             stim_file=[f"clip{i:03d}.mp4" for i in range(N_TRAIN)]))
    caps = pd.DataFrame(dict(subject="01", stim_file=meta["stim_file"], instruction="describe",
                             answer=captions))
    ev = EvalSet(pd.DataFrame(dict(instruction=["describe"] * N_TEST)), torch.empty(0))
    assert texts == nearest_training_answers(P - mu, {"train_x": Ytr - mu}, meta, ev, caps, True)
    assert nn.score(Xte, [captions[i] for i in ref]) == 1.0


def test_nearest_neighbour_text_same_instruction(data):
    Xtr, Ytr, Xte, _ = data
    captions = [f"caption {i}" for i in range(N_TRAIN)]
    ins = np.where(np.arange(N_TRAIN) % 2, "brief", "detailed")
    nn = NearestNeighbourText().fit(Xtr, Ytr, captions, instructions=ins)
    asked = np.where(np.arange(N_TEST) % 3, "brief", "detailed")
    mu = nn.decoder_.centre_
    S = _unit(nn.decoder_.predict(Xte) - mu) @ _unit(Ytr - mu).T
    ref = [int(np.argmax(np.where(ins == a, S[i], -np.inf))) for i, a in enumerate(asked)]
    np.testing.assert_array_equal(nn.nearest(Xte, asked), ref)
    assert all(ins[i] == a for i, a in zip(nn.nearest(Xte, asked), asked))
    # an instruction no training trial was captioned under: every training trial competes
    np.testing.assert_array_equal(nn.nearest(Xte, ["other"] * N_TEST), S.argmax(1))
    free = NearestNeighbourText(same_instruction=False).fit(Xtr, Ytr, captions, ins)
    np.testing.assert_array_equal(free.nearest(Xte, asked), S.argmax(1))


def test_nearest_neighbour_text_settings_and_errors(data):
    Xtr, Ytr, Xte, _ = data
    captions = [f"c{i}" for i in range(N_TRAIN)]
    given = RidgeDecoder(alphas=(1e3,))
    nn = NearestNeighbourText(given).fit(Xtr, Ytr, captions)
    assert nn.decoder_.alpha_ == 1e3 and not hasattr(given, "ridge_")    # a copy was fitted
    with pytest.raises(NotFittedError, match=r"NearestNeighbourText.nearest called before fit"):
        NearestNeighbourText().decode(Xte)
    with pytest.raises(ValueError, match=r"captions has 199"):
        NearestNeighbourText().fit(Xtr, Ytr, captions[:-1])
    with pytest.raises(ValueError, match=r"instructions has 3"):
        NearestNeighbourText().fit(Xtr, Ytr, captions, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"instructions has 2"):
        nn.decode(Xte, ["a", "b"])
    with pytest.raises(ValueError, match=r"single string"):
        NearestNeighbourText().fit(Xtr, Ytr, "one caption")


# ---------------------------------------------------------------------------- SemanticReadout
def _classes(seed=0, n=240, n_classes=4, n_live=15):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    scene = rng.integers(0, 2, n)
    means = rng.standard_normal((n_classes, n_live)) * 1.5
    X = rng.standard_normal((n, V))
    X[:, :n_live] += means[y]
    X[:, n_live:n_live + 5] += 1.5 * scene[:, None]
    return (X, np.array([f"class{k}" for k in y]), np.array(["indoor", "outdoor"])[scene],
            np.repeat(["s1", "s2"], n // 2))


def test_semantic_readout_recovers_planted_classes():
    X, y, scene, _ = _classes()
    tr, te = slice(0, 180), slice(180, None)
    ro = SemanticReadout(n_voxels=20, C=0.1).fit(X[tr], {"class": y[tr], "scene": scene[tr]})
    pred = ro.predict(X[te])
    assert set(pred) == {"class", "scene"}
    assert np.mean(pred["class"] == y[te]) > 0.6           # chance 0.25
    assert ro.score(X[te], {"class": y[te], "scene": scene[te]}, "scene") > 0.75   # chance 0.5
    proba = ro.predict_proba(X[te])
    assert proba["class"].shape == (60, 4)
    np.testing.assert_allclose(proba["class"].sum(1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(ro.classes_["class"][proba["class"].argmax(1)], pred["class"])
    assert ro.n_voxels_ == {"class": 20, "scene": 20} and ro.loso_ == {"class": {}, "scene": {}}
    ch = shuffled(ro, X[te], y[te], n_shuffles=50)
    assert ch.observed == ro.score(X[te], y[te]) and abs(ch.chance - 0.25) < 0.1
    assert ch.p_value < 0.05
    # a single array is the class; PCA branch (n_voxels 0) fits too
    assert SemanticReadout(n_voxels=0, C=0.1, n_pca=20).fit(X[tr], y[tr]).score(X[te], y[te]) > 0.5


def test_semantic_readout_grid_is_the_packages_leave_one_group_out():
    X, y, _, groups = _classes(1)
    grid = dict(n_voxels=(10, 0), C=(1e-2, 1e-1))
    ro = SemanticReadout(**grid, n_pca=30).fit(X, {"class": y}, groups=groups)
    ref = fit_label_readout(X, y, groups, label="class", n_pca=30, cs=grid["C"],
                            n_voxels=grid["n_voxels"])
    assert ro.loso_["class"] == ref.loso and ro.C_["class"] == ref.C
    assert ro.n_voxels_["class"] == ref.n_voxels
    np.testing.assert_array_equal(ro.predict(X)["class"], ref.predict(X.astype(np.float32)))
    with pytest.raises(ValueError, match=r"needs groups"):
        SemanticReadout(**grid).fit(X, y)
    with pytest.raises(ValueError, match=r"groups has 3"):
        SemanticReadout(**grid).fit(X, y, groups=groups[:3])


def test_semantic_readout_errors():
    X, y, scene, _ = _classes()
    with pytest.raises(NotFittedError, match=r"SemanticReadout.predict called before fit"):
        SemanticReadout(n_voxels=10, C=0.1).predict(X)
    with pytest.raises(ValueError, match=r"labels\['class'\] has 239"):
        SemanticReadout(n_voxels=10, C=0.1).fit(X, {"class": y[:-1]})
    with pytest.raises(ValueError, match=r"holds one value"):
        SemanticReadout(n_voxels=10, C=0.1).fit(X, {"class": ["a"] * len(X)})
    with pytest.raises(ValueError, match=r"C must be > 0"):
        SemanticReadout(n_voxels=10, C=0.0).fit(X, y)
    ro = SemanticReadout(n_voxels=10, C=0.1).fit(X, y)
    with pytest.raises(ValueError, match=r"X has 99 voxels per row"):
        ro.predict(X[:, :99])
    with pytest.raises(ValueError, match=r"label 'scene' was not fitted"):
        ro.score(X, {"scene": scene}, "scene")


# -------------------------------------------------------------------------------- chance
def test_shuffled_takes_any_callable_and_checks_its_inputs():
    X = np.arange(20, dtype=float)[:, None]
    own = lambda Xs, t: float(np.mean(Xs[:, 0] == t))              # noqa: E731
    ch = shuffled(own, X, np.arange(20), n_shuffles=30, rng=0)
    assert ch.observed == 1.0 and (ch.null == 0).all()              # derangements: none kept
    groups = np.repeat([0, 1], 10)
    ch = shuffled(lambda Xs: float(np.mean((Xs[:, 0] < 10) == (groups == 0))), X,
                  n_shuffles=5, groups=groups)
    assert (ch.null == 1.0).all()                                   # shuffled within group
    with pytest.raises(ValueError, match=r"X must be 2-D"):
        shuffled(own, np.arange(20), np.arange(20))
    with pytest.raises(ValueError, match=r"n_shuffles"):
        shuffled(own, X, np.arange(20), n_shuffles=0)
    with pytest.raises(ValueError, match=r"score method or be callable"):
        shuffled(3, X)
