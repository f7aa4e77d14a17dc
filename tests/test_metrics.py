"""Metrics against direct calls of sacrebleu, rouge-score and bert-score."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU

from llm4brain.config import ConfigError, EvalConfig, load_config
from llm4brain.evaluation.metrics import METRICS, TextScorer, resolve_bertscore_model
from llm4brain.evaluation.scores import (BLEU_ORDERS, TextScores, aggregate_scores,
                                         bleu_from_stats, total_scores)

CANDS = [
    "In the video, a young man is playing squash in a gym.",
    "A woman is getting her hair cut by a hairdresser.",
    "The dog runs across the park",
    "Two people are dancing on a stage while others watch.",
    "someone cooking",
]
REFS = [
    "In the video, a young man is playing squash in a court. He is hitting the ball.",
    "We see a young woman getting her hair cut in a salon.",
    "A man rides a bicycle down the street",
    "Two dancers perform on a stage in front of an audience.",
    "A chef is cooking pasta in a kitchen.",
]


@pytest.fixture(scope="module")
def scorer():
    return TextScorer(EvalConfig(), device="cpu")


@pytest.fixture(scope="module")
def fast():
    return TextScorer(EvalConfig(), device="cpu", bertscore=False)


@pytest.fixture(scope="module")
def scores(scorer):
    return scorer.score(CANDS, REFS)


@pytest.mark.parametrize("n", BLEU_ORDERS)
def test_corpus_bleu_matches_sacrebleu(scores, n):
    ref = BLEU(max_ngram_order=n).corpus_score(CANDS, [REFS]).score
    assert scores.aggregate[f"sacrebleu{n}"] == pytest.approx(ref, abs=1e-9)


@pytest.mark.parametrize("n", BLEU_ORDERS)
def test_sentence_bleu_matches_sacrebleu(scores, n):
    bleu = BLEU(max_ngram_order=n, effective_order=True)
    ref = [bleu.sentence_score(c, [r]).score for c, r in zip(CANDS, REFS)]
    np.testing.assert_allclose(scores.per_trial[f"sacrebleu{n}"], ref, atol=1e-9)
    assert scores.aggregate[f"sacrebleu{n}_sentence_mean"] == pytest.approx(np.mean(ref))


def test_bleu_lowercase_and_tokenizer_settings(fast):
    sc = TextScorer(EvalConfig(bleu_lowercase=True, bleu_tokenize="intl"), bertscore=False)
    c, r = ["THE Dog runs."], ["the dog runs fast."]
    got = sc.score(c, r).aggregate["sacrebleu2"]
    want = BLEU(max_ngram_order=2, lowercase=True, tokenize="intl").corpus_score(c, [r]).score
    assert got == pytest.approx(want)
    assert fast.score(c, r).aggregate["sacrebleu2"] != pytest.approx(got)  # case matters


def test_bleu_from_stats_zero_matches():
    assert bleu_from_stats([0, 0], [5, 4], 5, 6, 2) == 0.0
    # perfect match: 100
    assert bleu_from_stats([4, 3], [4, 3], 4, 4, 2) == pytest.approx(100.0)


def test_rouge_matches_rouge_score(scores):
    rs = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    ref = [rs.score(r, c)["rougeL"] for c, r in zip(CANDS, REFS)]
    np.testing.assert_allclose(scores.per_trial["rougeL_f"], [100 * x.fmeasure for x in ref])
    np.testing.assert_allclose(scores.per_trial["rougeL_p"], [100 * x.precision for x in ref])
    np.testing.assert_allclose(scores.per_trial["rougeL_r"], [100 * x.recall for x in ref])
    assert scores.aggregate["rougeL_f"] == pytest.approx(100 * np.mean([x.fmeasure for x in ref]))


def test_rouge_stemmer_setting():
    c, r = ["the dogs were running"], ["the dog was running"]
    on = TextScorer(EvalConfig(rouge_stemmer=True), bertscore=False).score(c, r)
    off = TextScorer(EvalConfig(rouge_stemmer=False), bertscore=False).score(c, r)
    assert on.aggregate["rougeL_f"] > off.aggregate["rougeL_f"]


def test_bertscore_matches_bert_score(scores):
    import bert_score
    path = str(resolve_bertscore_model("minilm"))
    P, R, F = bert_score.score(CANDS, REFS, model_type=path, num_layers=6, device="cpu",
                               nthreads=0)
    np.testing.assert_allclose(scores.per_trial["bertscore"], 100 * F.numpy(), atol=1e-4)
    np.testing.assert_allclose(scores.per_trial["bertscore_p"], 100 * P.numpy(), atol=1e-4)
    np.testing.assert_allclose(scores.per_trial["bertscore_r"], 100 * R.numpy(), atol=1e-4)
    assert scores.aggregate["bertscore"] == pytest.approx(100 * F.mean().item(), abs=1e-4)


def test_bertscore_idf_matches_bert_score():
    import bert_score
    sc = TextScorer(EvalConfig(bertscore_idf=True), device="cpu")
    got = sc.bertscore(CANDS, REFS)
    path = str(resolve_bertscore_model("minilm"))
    P, R, F = bert_score.score(CANDS, REFS, model_type=path, num_layers=6, idf=True,
                               device="cpu", nthreads=0)
    np.testing.assert_allclose(got[:, 2], 100 * F.numpy(), atol=1e-4)
    assert sc.metadata["bertscore_idf"] is True


def test_identical_sentences_score_100(scorer):
    res = scorer.score(REFS, REFS)
    for m in ("sacrebleu1", "sacrebleu2", "rougeL_f", "rougeL_p", "rougeL_r"):
        assert res.aggregate[m] == pytest.approx(100.0)
        np.testing.assert_allclose(res.per_trial[m], 100.0)
    np.testing.assert_allclose(res.per_trial["bertscore"], 100.0, atol=1e-3)


def test_unrelated_scores_lower(scorer, scores):
    shuffled = scorer.score(CANDS, REFS[1:] + REFS[:1])
    for m in ("bertscore", "sacrebleu1", "rougeL_f"):
        assert shuffled.aggregate[m] < scores.aggregate[m]


def test_empty_candidate_scores_zero(scorer):
    res = scorer.score(["", "a man plays squash"], ["a woman cuts hair", "a man plays squash"])
    row = res.per_trial.iloc[0]
    for m in METRICS:
        assert row[m] == 0.0
    assert res.per_trial.iloc[1]["bertscore"] == pytest.approx(100.0, abs=1e-3)


def test_metadata_records_settings(scores):
    md = scores.metadata
    assert md["bertscore_model"] == "minilm" and md["bertscore_layers"] == 6
    assert md["bertscore_idf"] is False and md["bertscore_rescale_with_baseline"] is False
    assert "tok:13a" in md["bleu_signature"]["sacrebleu1"]
    assert "corpus" in md["bleu_table_level"] and "sentence" in md["bleu_per_trial_level"]
    assert md["rouge_stemmer"] is True


def test_score_many_equals_separate_calls(scorer):
    lists = [CANDS, CANDS[::-1], REFS]
    many = scorer.score_many(lists, REFS)
    for lst, res in zip(lists, many):
        one = scorer.score(lst, REFS)
        pd.testing.assert_frame_equal(res.per_trial, one.per_trial, atol=1e-4)
        assert res.aggregate == pytest.approx(one.aggregate, abs=1e-4)


def test_subset_and_groups_match_direct_scoring(fast):
    meta = pd.DataFrame({"subject": ["27", "27", "28", "28", "28"]})
    res = fast.score(CANDS, REFS, meta=meta)
    assert list(res.per_trial.columns[:3]) == ["subject", "candidate", "reference"]
    by = res.by_group("subject")
    direct = fast.score(CANDS[2:], REFS[2:])
    assert by.loc["28", "sacrebleu2"] == pytest.approx(direct.aggregate["sacrebleu2"])
    assert res.subset(np.arange(5) >= 2).aggregate["sacrebleu1"] == pytest.approx(
        direct.aggregate["sacrebleu1"])
    # Totals: pooled = all trials, mean_of_subjects = mean of the two groups
    assert total_scores(res.per_trial, "pooled")["sacrebleu1"] == pytest.approx(
        res.aggregate["sacrebleu1"])
    assert total_scores(res.per_trial, "mean_of_subjects")["rougeL_f"] == pytest.approx(
        by["rougeL_f"].mean())
    assert np.isnan(res.aggregate["bertscore"])


def test_save_load_round_trip(fast, tmp_path):
    meta = pd.DataFrame({"subject": ["01"] * 5})
    res = fast.score(CANDS[:-1] + [""], REFS, meta=meta)
    res.save(tmp_path, "model")
    back = TextScores.load(tmp_path, "model")
    assert back.per_trial["subject"].tolist() == ["01"] * 5
    assert back.per_trial["candidate"].iloc[-1] == ""
    assert back.aggregate["sacrebleu2"] == pytest.approx(res.aggregate["sacrebleu2"])
    assert aggregate_scores(back.per_trial)["rougeL_r"] == pytest.approx(res.aggregate["rougeL_r"])
    with pytest.raises(FileNotFoundError, match="TextScores.save"):
        TextScores.load(tmp_path, "nothing")


def test_bad_input_errors(fast):
    with pytest.raises(ValueError, match="2 candidates but 1 references"):
        fast.score(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="candidate 1 is NoneType"):
        fast.score(["a", None], ["a", "b"])
    with pytest.raises(TypeError, match="not one string"):
        fast.score("abc", "abc")
    with pytest.raises(ValueError, match="meta has 1 rows"):
        fast.score(["a", "b"], ["a", "b"], meta=pd.DataFrame({"subject": ["01"]}))
    with pytest.raises(KeyError, match="BLEU statistics"):
        aggregate_scores(pd.DataFrame({"bertscore": [1.0]}))


def test_missing_model_path_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="eval.bertscore_model.*roberta-large"):
        TextScorer(EvalConfig(bertscore_model=str(tmp_path / "roberta-large")))


def test_too_many_layers_is_clear():
    sc = TextScorer(EvalConfig(bertscore_layers=17), device="cpu")
    with pytest.raises(ValueError, match="bertscore_layers = 17.*only 6 layers"):
        sc.score(["a"], ["a"])


def test_eval_config_validation():
    with pytest.raises(ValueError, match="total_row"):
        EvalConfig(total_row="median")
    with pytest.raises(ConfigError, match="ci_alpha"):
        load_config("smoke", overrides={"eval": {"ci_alpha": 1.5}})
    cfg = load_config("smoke")
    assert cfg.eval.n_shuffles >= 2 and dataclasses.is_dataclass(cfg.eval)


def test_embedding_cache_gives_same_scores(scorer):
    sc = TextScorer(EvalConfig(), device="cpu")
    first = sc.bertscore(CANDS, REFS)
    assert set(REFS) <= set(sc._emb)
    again = sc.bertscore(REFS[::-1], CANDS)  # only cached sentences, new pairing
    fresh = TextScorer(EvalConfig(), device="cpu").bertscore(REFS[::-1], CANDS)
    np.testing.assert_allclose(again, fresh, atol=1e-4)
    np.testing.assert_allclose(first, scorer.bertscore(CANDS, REFS), atol=1e-4)


def _tiny_roberta(directory, model_max_length=None):
    """A 3-layer random RoBERTa with a character BPE vocabulary (stands in for roberta-large)."""
    from llm4brain.dryrun import write_tiny_roberta

    return write_tiny_roberta(directory, layers=3, hidden=32, heads=2,
                              model_max_length=model_max_length, max_positions=130)


def test_local_roberta_path_matches_bert_score(tmp_path):
    import bert_score
    d = _tiny_roberta(tmp_path / "roberta", model_max_length=128)
    c, r = ["a man plays squash", "the dog runs"], ["a man is playing squash", "a dog runs fast"]
    sc = TextScorer(EvalConfig(bertscore_model=str(d), bertscore_layers=2), device="cpu")
    got = sc.score(c, r)
    P, R, F = bert_score.score(c, r, model_type=str(d), num_layers=2, device="cpu", nthreads=0)
    np.testing.assert_allclose(got.per_trial["bertscore"], 100 * F.numpy(), atol=1e-4)
    assert got.metadata["bertscore_layers"] == 2
    assert got.metadata["bertscore_model_dir"] == str(d)
    # a tokenizer without model_max_length (bert-score itself overflows on it) still works
    d2 = _tiny_roberta(tmp_path / "roberta2")
    sc2 = TextScorer(EvalConfig(bertscore_model=str(d2), bertscore_layers=2), device="cpu")
    np.testing.assert_allclose(sc2.bertscore(c, r)[:, 2], 100 * F.numpy(), atol=1e-4)
