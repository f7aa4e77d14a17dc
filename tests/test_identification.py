"""N-way caption identification and the all-pairs BERTScore matrix."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llm4brain.config import load_config
from llm4brain.evaluation.attributes import AttributeParser
from llm4brain.evaluation.identification import attribute_similarity, nway_identification
from llm4brain.evaluation.metrics import TextScorer


def test_perfect_constant_and_random_decoders():
    n = 60
    perfect = np.eye(n)
    assert nway_identification(perfect, 10, n_draws=20)["accuracy"] == 100
    constant = np.ones((n, n))           # the same text for every trial: all tied
    res = nway_identification(constant, 10, n_draws=20)
    assert res["accuracy"] == pytest.approx(10.0) and res["chance"] == 10.0
    rng = np.random.default_rng(0)
    rand = nway_identification(rng.normal(size=(n, n)), 5, n_draws=200, rng=1)
    assert abs(rand["accuracy"] - 20.0) < 5
    assert rand["ci_low"] <= rand["accuracy"] <= rand["ci_high"]
    # brute-force check of one trial's score against an exact count
    sim = rng.normal(size=(8, 8))
    own = sim[0, 0]
    exact = np.mean([own > max(sim[0, j], sim[0, k]) for j in range(1, 8) for k in range(1, 8) if j < k])
    est = nway_identification(sim, 3, n_draws=4000, rng=2)["per_trial"][0]
    assert est == pytest.approx(exact, abs=0.03)


def test_errors():
    with pytest.raises(ValueError, match="square"):
        nway_identification(np.zeros((3, 4)), 2)
    with pytest.raises(ValueError, match="n_way"):
        nway_identification(np.zeros((3, 3)), 5)


def test_attribute_similarity_counts_shared_attributes():
    p = AttributeParser()
    a = p.frame(["A red dog runs quickly to the left on a sunny beach.", "Something."])
    b = p.frame(["A red dog runs quickly to the left on a sunny beach.",
                 "A blue car drives slowly to the right in the snow."])
    sim = attribute_similarity(a, b)
    assert sim[0, 0] == 7                  # every attribute (size unsaid = medium in both)
    assert sim[0, 1] == 1                  # only the (unsaid) size
    assert sim[1, 0] == 1 and sim[1, 1] == 1


def test_bertscore_matrix_matches_pairwise_bertscore():
    scorer = TextScorer(load_config("smoke").eval)
    cands = ["A red dog runs to the left.", "A blue car drives slowly in the snow.", "",
             "A person waves hello at night."]
    refs = ["A red dog runs quickly to the left on a beach.", "A car drives in the snow.",
            "A bird flies.", "Someone waves."]
    M = scorer.bertscore_matrix(cands, refs)
    assert M.shape == (4, 4)
    pair = scorer.bertscore(cands, refs)[:, 2]
    np.testing.assert_allclose(np.diag(M), pair, atol=1e-3)
    # off-diagonal against the library too
    np.testing.assert_allclose(M[0, 1], scorer.bertscore([cands[0]], [refs[1]])[0, 2], atol=1e-3)
    assert (M[2] == 0).all()               # an empty text scores 0
