"""Bootstrap intervals, chance levels and the summary table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llm4brain.config import EvalConfig
from llm4brain.evaluation.controls import (ChanceResult, Interval, bootstrap_by_group,
                                           bootstrap_ci, chance_scores, derangements,
                                           permutation_pairing_chance, summary_table)
from llm4brain.evaluation.metrics import METRICS, TextScorer
from llm4brain.evaluation.scores import aggregate_scores, total_scores
from llm4brain.evaluation.tables import subject_table

WORDS = "a man woman dog plays runs squash court hair cut salon park ball in the with".split()


def _sentences(rng, n, k=8):
    return [" ".join(rng.choice(WORDS, size=k)) for _ in range(n)]


@pytest.fixture(scope="module")
def fast():
    return TextScorer(EvalConfig(n_shuffles=4, n_permutations=5), bertscore=False)


@pytest.fixture
def data(rng, fast):
    refs = _sentences(rng, 12)
    # half of each answer copied from its reference: clearly above chance
    cands = [" ".join(r.split()[:4] + s.split()[:4]) for r, s in zip(refs, _sentences(rng, 12))]
    meta = pd.DataFrame({"subject": ["27"] * 6 + ["28"] * 6})
    return cands, refs, meta, fast.score(cands, refs, meta=meta)


def test_bootstrap_array_matches_normal_theory(rng):
    x = rng.normal(10.0, 2.0, size=400)
    ci = bootstrap_ci(x, n_boot=2000, rng=0)
    assert isinstance(ci, Interval) and ci.estimate == pytest.approx(x.mean())
    assert ci.low < ci.estimate < ci.high
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert (ci.high - ci.low) / 2 == pytest.approx(half, rel=0.15)
    again = bootstrap_ci(x, n_boot=2000, rng=0)
    assert (again.low, again.high) == (ci.low, ci.high)  # seeded
    med = bootstrap_ci(x, stat=np.median, n_boot=200, rng=1)
    assert med.estimate == pytest.approx(np.median(x))


def test_bootstrap_frame_default_stat(data):
    *_, res = data
    ci = bootstrap_ci(res, n_boot=300, rng=0)
    assert set(METRICS) - {"bertscore"} <= set(ci.index)
    for m in ("sacrebleu1", "sacrebleu2", "rougeL_f"):
        assert ci.loc[m, "estimate"] == pytest.approx(res.aggregate[m])
        assert ci.loc[m, "low"] <= ci.loc[m, "estimate"] <= ci.loc[m, "high"]
        assert ci.loc[m, "std"] > 0
    # mean-of-subjects Total: the estimate is the table's Total row
    cm = bootstrap_ci(res.per_trial, n_boot=100, rng=0, total="mean_of_subjects")
    table = subject_table(res)
    assert cm.loc["sacrebleu2", "estimate"] == pytest.approx(table.loc["Total", "SacreBLEU-2"])


def test_bootstrap_frame_custom_scalar_stat(data):
    *_, res = data
    ci = bootstrap_ci(res.per_trial, stat=lambda f: f["rougeL_f"].median(), n_boot=100, rng=0)
    assert isinstance(ci, Interval)
    assert ci.estimate == pytest.approx(res.per_trial["rougeL_f"].median())


def test_bootstrap_by_group(data):
    *_, res = data
    b = bootstrap_by_group(res, n_boot=100, rng=0)
    table = subject_table(res)
    assert list(pd.unique(b["group"])) == list(table.index)
    est = b[b.metric == "sacrebleu2"].set_index("group")["estimate"]
    np.testing.assert_allclose(est.reindex(table.index), table["SacreBLEU-2"])
    assert (b["low"].dropna() <= b["high"].dropna()).all()


def test_bootstrap_stratified_keeps_group_sizes(rng):
    x = np.r_[np.zeros(5), np.ones(15)]
    ci = bootstrap_ci(x, n_boot=200, rng=0, strata=(x > 0).astype(int))
    assert ci.low == ci.high == pytest.approx(0.75)  # group sizes fixed -> no variance


def test_bootstrap_errors():
    with pytest.raises(ValueError, match="1-D"):
        bootstrap_ci(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(np.zeros(3), alpha=1.0)


def test_derangements(rng):
    groups = np.array([0] * 5 + [1] * 4 + [2])
    p = derangements(10, 30, rng, groups)
    assert p.shape == (30, 10)
    for row in p:
        assert sorted(row) == list(range(10))
        assert np.all(groups[row] == groups)  # within group
        assert np.all(row[:9] != np.arange(9))  # no fixed points (the singleton keeps its own)
    with pytest.raises(ValueError, match="at least 2"):
        derangements(1, 3)


def test_chance_from_precomputed_lists(data, fast, rng):
    cands, refs, meta, res = data
    lists = [list(np.asarray(cands, dtype=object)[rng.permutation(12)]) for _ in range(4)]
    ch = chance_scores(lists, refs, fast, meta=meta)
    assert ch.kind == "fmri_shuffle" and len(ch.draws) == 4
    direct = [fast.score(lst, refs, meta=meta).per_trial for lst in lists]
    want = [total_scores(d, "mean_of_subjects")["sacrebleu1"] for d in direct]
    np.testing.assert_allclose(ch.draws["sacrebleu1"], want)
    s = ch.summary()
    assert s.loc["sacrebleu1", "estimate"] == pytest.approx(np.mean(want))
    assert s.loc["sacrebleu1", "low"] <= s.loc["sacrebleu1", "high"]
    g = ch.group_summary("rougeL_f")
    assert list(g.index) == ["27", "28", "Total"]
    assert g.loc["Total", "estimate"] == pytest.approx(s.loc["rougeL_f", "estimate"])
    by27 = [fast.score(lst[:6], refs[:6]).aggregate["rougeL_f"] for lst in lists]
    assert g.loc["27", "estimate"] == pytest.approx(np.mean(by27))
    # the real decoder beats the shuffled one on this constructed data
    assert res.aggregate["rougeL_f"] > s.loc["rougeL_f", "high"]
    with pytest.raises(ValueError, match="several"):
        chance_scores(lists[:1], refs, fast)


def test_chance_with_decode_callable(data, fast):
    cands, refs, meta, _ = data
    seen = []

    def decode(perm):  # a "decoder" that just returns the answer of the trial it is fed
        seen.append(perm.copy())
        return [cands[j] for j in perm]

    ch = chance_scores(decode, refs, fast, meta=meta, n_shuffles=3, rng=0)
    assert len(seen) == 3 and ch.perms.shape == (3, 12)
    for p in seen:  # within subject, never the true trial
        assert np.all(meta["subject"].to_numpy()[p] == meta["subject"].to_numpy())
        assert np.all(p != np.arange(12))
    want = aggregate_scores(fast.score([cands[j] for j in seen[1]], refs).per_trial)
    got = ch.draws.iloc[1]
    assert total_scores(fast.score([cands[j] for j in seen[1]], refs, meta=meta).per_trial,
                        "mean_of_subjects")["sacrebleu2"] == pytest.approx(got["sacrebleu2"])
    assert want["n_trials"] == 12


def test_pairing_chance(data, fast):
    cands, refs, meta, res = data
    ch = permutation_pairing_chance(cands, refs, fast, n=5, rng=0, meta=meta, total="pooled")
    assert ch.kind == "pairing_permutation" and ch.perms.shape == (5, 12)
    k = 2
    direct = fast.score(cands, [refs[j] for j in ch.perms[k]]).aggregate
    assert ch.draws.iloc[k]["sacrebleu1"] == pytest.approx(direct["sacrebleu1"])
    assert ch.summary().loc["rougeL_f", "estimate"] < res.aggregate["rougeL_f"]


def test_pairing_chance_with_bertscore_one_call():
    sc = TextScorer(EvalConfig(), device="cpu")
    cands = ["a man plays squash", "a woman cuts hair", "a dog runs in the park"]
    refs = ["a man is playing squash", "hair is cut in a salon", "the dog runs"]
    ch = permutation_pairing_chance(cands, refs, sc, n=3, rng=0)
    direct = sc.score(cands, [refs[j] for j in ch.perms[0]]).aggregate["bertscore"]
    assert ch.draws.iloc[0]["bertscore"] == pytest.approx(direct, abs=1e-4)
    assert ch.summary().loc["bertscore", "estimate"] < sc.score(cands, refs).aggregate["bertscore"]


def test_chance_save_load(data, fast, tmp_path):
    cands, refs, meta, _ = data
    ch = permutation_pairing_chance(cands, refs, fast, n=3, rng=0, meta=meta)
    ch.save(tmp_path, "pairing")
    back = ChanceResult.load(tmp_path, "pairing")
    pd.testing.assert_frame_equal(back.summary(), ch.summary())
    assert back.kind == "pairing_permutation"
    assert list(back.group_summary("sacrebleu1", total_label=None).index) == ["27", "28"]


def test_summary_table(data, fast, rng):
    cands, refs, meta, res = data
    ch = permutation_pairing_chance(cands, refs, fast, n=4, rng=0, meta=meta)
    upper = fast.score(refs, refs, meta=meta)
    tidy = summary_table(res, pairing_chance=ch, baseline=res.per_trial, ceiling=upper,
                         n_boot=50, rng=0, metrics=("sacrebleu1", "rougeL_f"))
    assert len(tidy) == 4 * 2
    assert list(pd.unique(tidy["condition"])) == ["chance (re-paired)", "baseline (ridge + NN)",
                                                  "llm4brain", "noise ceiling"]
    row = tidy[(tidy.condition == "llm4brain") & (tidy.metric == "sacrebleu1")].iloc[0]
    assert row["estimate"] == pytest.approx(res.aggregate["sacrebleu1"])
    assert row["interval"] == "bootstrap over trials" and row["n"] == 12
    crow = tidy[tidy.condition == "chance (re-paired)"].iloc[0]
    assert crow["interval"] == "over 4 re-pairings"
    assert (tidy["low"] <= tidy["estimate"] + 1e-9).all()
    with pytest.raises(ValueError, match="no results"):
        summary_table()
