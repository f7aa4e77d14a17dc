"""CIDEr-D (pycocoevalcap) and BLEU-4 in the caption metrics."""
import math

import numpy as np
import pytest

from llm4brain.evaluation.cider import cider_d, coco_tokenize
from llm4brain.evaluation.metrics import METRICS, TextScorer
from llm4brain.evaluation.scores import aggregate_scores


def test_tokenize_lowercases_and_strips_punctuation():
    assert coco_tokenize("A man, on a RED bike!") == "a man on a red bike"
    assert coco_tokenize("  don't  stop_now. ") == "don t stop now"
    with pytest.raises(TypeError):
        coco_tokenize(None)


def test_cider_hand_computed():
    # N = 2 references -> ref_len = log 2; df(a) = 2 (idf 0), every other n-gram df = 1.
    # trial 1 identical: cosine 1 at n = 1, 2, nothing at n = 3, 4 -> 10 * 2/4 = 5 -> 500.
    # trial 2 "c" vs "a c": cosine 1 at n = 1, none at n = 2; pycocoevalcap's length is the
    # number of bigrams (0 vs 1): penalty exp(-1 / (2 * 6^2)) -> 10 * exp(-1/72) / 4 * 100.
    got = cider_d(["a b", "C."], ["a b", "a c"])
    assert got[0] == pytest.approx(500.0)
    assert got[1] == pytest.approx(250.0 * math.exp(-1 / 72))


def test_cider_identical_sets_and_corpus_mean():
    refs = ["a man rides a red bike down the hill", "two dogs run on the beach at dawn",
            "a woman plays the violin on a stage", "children kick a ball in the park"]
    same = cider_d(refs, refs)
    assert same == pytest.approx(np.full(4, 1000.0))  # cosine 1 at every order, x10, x100
    shifted = cider_d(refs[1:] + refs[:1], refs)
    assert (shifted < 200).all()
    from pycocoevalcap.cider.cider import Cider
    cands = ["a man rides a bike", "dogs on the beach", "a woman plays music", "kids in a park"]
    corpus, _ = Cider().compute_score({i: [r] for i, r in enumerate(refs)},
                                      {i: [c] for i, c in enumerate(cands)})
    assert cider_d(cands, refs).mean() == pytest.approx(100 * corpus)
    assert cider_d([""] * 4, refs) == pytest.approx(np.zeros(4))
    with pytest.raises(ValueError, match="one reference"):
        cider_d(["a"], ["a", "b"])


def test_scorer_has_bleu4_and_cider_with_chance_invariance():
    assert {"sacrebleu4", "cider"} <= set(METRICS)
    sc = TextScorer(bertscore=False)
    refs = ["a man rides a red bike down the hill", "two dogs run on the beach at dawn",
            "a woman plays the violin on a stage"]
    cands = ["a man rides a bike down a hill", "dogs run on a beach", "a man plays a violin"]
    res = sc.score(cands, refs)
    assert res.per_trial["cider"].to_numpy() == pytest.approx(cider_d(cands, refs))
    assert res.aggregate["cider"] == pytest.approx(cider_d(cands, refs).mean())
    import sacrebleu
    want = sacrebleu.corpus_bleu(cands, [refs], tokenize="13a").score
    assert res.aggregate["sacrebleu4"] == pytest.approx(want)
    # K shuffles scored in one call: each gets the idf it would have alone
    many = sc.score_many([cands, cands[::-1]], refs)
    assert many[0].aggregate["cider"] == pytest.approx(res.aggregate["cider"])
    assert many[1].aggregate["cider"] == pytest.approx(cider_d(cands[::-1], refs).mean())
    assert many[1].aggregate["cider"] < res.aggregate["cider"]
    assert aggregate_scores(res.per_trial, np.array([0, 0]))["cider"] == pytest.approx(
        res.per_trial["cider"].iloc[0])
