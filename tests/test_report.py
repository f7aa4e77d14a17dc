"""The evaluation report: saved Stage II TSVs -> cached scores -> Tables 1-2, summary, examples."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU

from llm4brain.config import load_config
from llm4brain.evaluation import metrics as metrics_mod
from llm4brain.evaluation.metrics import TextScorer
from llm4brain.evaluation.reading import reading_paragraph
from llm4brain.evaluation.report import build_report
from llm4brain.evaluation.report_writer import write_report
from llm4brain.evaluation.scoring import score_run
from llm4brain.evaluation.stage2_results import (CONDITION_ORDER, DECODE_COLUMNS,
                                                 load_stage2_results, read_decodes,
                                                 resolve_stage2_files, stage2_results_dir)

AGENTS = ["man", "woman", "dog", "bird", "child", "car"]
ACTIONS = ["running", "jumping", "waving", "swimming", "eating", "driving"]
COLOURS = ["red", "blue", "green", "yellow", "black", "white"]
SCENES = ["park", "kitchen", "forest", "street", "beach", "gym"]
SUBJECTS = ("05", "06")
LABELS = ["BERTScore", "SacreBLEU-1", "SacreBLEU-2", "ROUGE-L F", "ROUGE-L P", "ROUGE-L R",
          "SacreBLEU-4", "CIDEr-D"]


def _v2t(a, b, c, d):
    return f"In the video, a {c} {a} is {b} in the {d}."


def _fake_trials(rng, n_per_subject=8):
    rows = []
    for s in SUBJECTS:
        for i in range(n_per_subject):
            a, b, c, d = (int(rng.integers(6)) for _ in range(4))
            k = len(rows)
            rows.append(dict(subject=s, trial_index=100 + k, clip_id=f"c{k:03d}",
                             stim_file=f"{ACTIONS[b]}/v_{k:03d}.mp4",
                             instruction="What is the main thing happening in the video?",
                             video2text=_v2t(AGENTS[a], ACTIONS[b], COLOURS[c], SCENES[d]),
                             description=f"A {COLOURS[c]} {AGENTS[a]} is {ACTIONS[b]} in a "
                                         f"{SCENES[d]}.", parts=(a, b, c, d)))
    return pd.DataFrame(rows)


def _perturb(parts, n_changes, rng):
    p = list(parts)
    for j in rng.choice(4, size=n_changes, replace=False):
        p[j] = (p[j] + 1 + int(rng.integers(5))) % 6
    return _v2t(AGENTS[p[0]], ACTIONS[p[1]], COLOURS[p[2]], SCENES[p[3]])


def _write(df, path, answers):
    out = df[list(DECODE_COLUMNS[:5])].copy()
    out["fmri2text"], out["video2text"] = answers, df["video2text"].to_numpy()
    out.to_csv(path, sep="\t", index=False)
    return out


def make_fake_run(run_dir, rng, *, n_shuffles=3, invert=False, ceiling=True):
    """A run directory with Stage II TSVs; quality ceiling > DA > no DA > baseline > chance.

    ``invert=True`` writes chance-quality answers as the model and near-copies as the chance
    decodings (to check that the report does not reorder anything).
    """
    trials = _fake_trials(rng)
    d = stage2_results_dir(run_dir)
    d.mkdir(parents=True)
    n = len(trials)
    parts = trials["parts"].tolist()
    good = [_perturb(p, 1, rng) for p in parts]
    other = [trials["video2text"].iloc[(i + 1 + int(rng.integers(n - 1))) % n] for i in range(n)]
    _write(trials, d / "fmri2text_da.tsv", other if invert else good)
    _write(trials, d / "fmri2text_noda.tsv", [_perturb(p, 2, rng) for p in parts])
    _write(trials, d / "baseline_nn.tsv", [_perturb(p, 3, rng) for p in parts])
    if ceiling:
        _write(trials, d / "ceiling.tsv", trials["video2text"].tolist())
    for k in range(n_shuffles):
        ans = ([_perturb(p, 1, rng) for p in parts] if invert else
               [trials["video2text"].iloc[(i + 1 + int(rng.integers(n - 1))) % n]
                for i in range(n)])
        # shuffle the row order: the loader must align rows to the model's trial order
        _write(trials, d / f"chance_shuffle_{k}.tsv", ans).sample(frac=1, random_state=k) \
            .to_csv(d / f"chance_shuffle_{k}.tsv", sep="\t", index=False)
    cap = run_dir / "captions"
    cap.mkdir()
    trials[["clip_id", "stim_file", "subject", "instruction", "description"]].assign(
        answer=trials["video2text"]).to_csv(cap / "captions_abc.tsv", sep="\t", index=False)
    return trials


@pytest.fixture
def cfg(tmp_path):
    return load_config("smoke", overrides={"run": {"run_dir": str(tmp_path / "run"),
                                                   "figures_dir": str(tmp_path / "figs")}})


@pytest.fixture
def scorer(cfg):
    return TextScorer(cfg.eval, bertscore=False)  # BLEU/ROUGE only: fast


def _bleu1(cands, refs):
    return BLEU(max_ngram_order=1).corpus_score(list(cands), [list(refs)]).score


def _rouge_f(cands, refs):
    sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return 100 * np.mean([sc.score(r, c)["rougeL"].fmeasure for c, r in zip(cands, refs)])


def _total(df, fn):
    """Paper's Total: mean over subjects of a per-subject corpus/mean score."""
    return np.mean([fn(g["fmri2text"], g["video2text"]) for _, g in df.groupby("subject")])


# ---------------------------------------------------------------------------- files
def test_resolve_files(cfg, rng):
    make_fake_run(cfg.run_dir, rng, n_shuffles=12)
    f = resolve_stage2_files(cfg)
    assert f["model"].name == "fmri2text_da.tsv" and f["noda"].name == "fmri2text_noda.tsv"
    assert f["baseline"].name == "baseline_nn.tsv" and f["ceiling"].name == "ceiling.tsv"
    assert [p.name for p in f["chance"]][-3:] == ["chance_shuffle_9.tsv", "chance_shuffle_10.tsv",
                                                  "chance_shuffle_11.tsv"]  # numeric order
    assert resolve_stage2_files(cfg.run_dir)["model"] == f["model"]  # a run dir works too
    (f["model"]).unlink()
    with pytest.raises(FileNotFoundError, match="STAGE2_FILES"):
        resolve_stage2_files(cfg)


def test_manifest_is_authoritative(cfg, rng):
    make_fake_run(cfg.run_dir, rng)
    d = stage2_results_dir(cfg)
    (d / "fmri2text_da.tsv").rename(d / "fmri2text_mine.tsv")
    man = {"fmri2text": {"da": "fmri2text_mine.tsv", "noda": "fmri2text_noda.tsv"}, "main": "da",
           "chance": ["chance_shuffle_0.tsv", "chance_shuffle_2.tsv"],
           "baseline": "baseline_nn.tsv", "ceiling": None}
    (d / "manifest.json").write_text(json.dumps(man))
    f = resolve_stage2_files(cfg)
    assert f["model"].name == "fmri2text_mine.tsv" and f["ceiling"] is None
    assert [p.name for p in f["chance"]] == man["chance"]
    man["baseline"] = "gone.tsv"
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(FileNotFoundError, match="lists gone.tsv"):
        resolve_stage2_files(cfg)


def test_missing_results_dir(cfg):
    with pytest.raises(FileNotFoundError, match="notebook\\s+05"):
        resolve_stage2_files(cfg)


def test_read_tsv_errors(tmp_path):
    p = tmp_path / "x.tsv"
    pd.DataFrame({"subject": ["01"], "trial_index": [1], "fmri2text": ["a"]}).to_csv(
        p, sep="\t", index=False)
    with pytest.raises(ValueError, match=r"x\.tsv lacks columns .*video2text"):
        read_decodes(p)
    full = pd.DataFrame({c: ["01", "01"] for c in DECODE_COLUMNS}).assign(trial_index=[3, 3])
    full.to_csv(p, sep="\t", index=False)
    with pytest.raises(ValueError, match="listed twice"):
        read_decodes(p)
    full.assign(trial_index=[3, 4], fmri2text=["", "NA"]).to_csv(p, sep="\t", index=False)
    df = read_decodes(p)
    assert df["subject"].tolist() == ["01", "01"]  # leading zero kept
    assert df["fmri2text"].tolist() == ["", "NA"]  # empty answers stay text, not NaN


def test_chance_rows_aligned_and_checked(cfg, rng):
    trials = make_fake_run(cfg.run_dir, rng)
    res = load_stage2_results(cfg)
    assert len(res.chance) == 3
    for c in res.chance:  # files were written in shuffled row order
        assert c["trial_index"].tolist() == trials["trial_index"].tolist()
        assert c["video2text"].tolist() == trials["video2text"].tolist()
    assert res.descriptions is not None  # from the captions TSV (no dataset in this run dir)
    p = stage2_results_dir(cfg) / "chance_shuffle_1.tsv"
    pd.read_csv(p, sep="\t", dtype=str).iloc[1:].to_csv(p, sep="\t", index=False)
    with pytest.raises(ValueError, match=r"chance_shuffle_1\.tsv covers other trials"):
        load_stage2_results(cfg)


# ---------------------------------------------------------------------------- report
def test_report_tables_summary_examples(cfg, rng, scorer):
    trials = make_fake_run(cfg.run_dir, rng)
    ev = score_run(cfg, scorer=scorer)
    rep = build_report(ev, cfg)
    paths = write_report(rep, cfg)

    # Tables 1-2: a row per target subject + Total, the paper's six columns
    for name in ("table1", "table2"):
        t = rep.tables[name]
        assert list(t.index) == ["sub-05", "sub-06", "Total"] and list(t.columns) == LABELS
    # numbers match direct library calls on the TSVs
    da = read_decodes(stage2_results_dir(cfg) / "fmri2text_da.tsv")
    sub05 = da[da.subject == "05"]
    assert rep.tables["table1"].loc["sub-05", "SacreBLEU-1"] == pytest.approx(
        _bleu1(sub05.fmri2text, sub05.video2text))
    assert rep.tables["table1"].loc["Total", "ROUGE-L F"] == pytest.approx(_total(da, _rouge_f))

    # summary: every condition, in order, intervals around estimates
    conds = list(pd.unique(rep.summary["condition"]))
    assert conds == [CONDITION_ORDER[k] for k in ("chance", "baseline", "model", "noda",
                                                  "ceiling", "upper")]
    assert list(rep.summary_wide.columns) == conds and list(rep.summary_wide.index) == LABELS
    fin = rep.summary.dropna(subset=["estimate"])
    assert (fin["low"] <= fin["estimate"] + 1e-9).all()
    assert (fin["estimate"] <= fin["high"] + 1e-9).all()
    s = rep.summary.set_index(["metric", "condition"])["estimate"]
    b1 = lambda c: s[("sacrebleu1", CONDITION_ORDER[c])]  # noqa: E731
    assert b1("model") == pytest.approx(_total(da, _bleu1))
    assert b1("chance") < b1("baseline") < b1("model") < b1("ceiling") == pytest.approx(100)
    # upper reference: Video2Text vs the true descriptions
    up = ev.upper.per_trial
    assert up["candidate"].tolist() == trials["video2text"].tolist()
    assert up["reference"].tolist() == trials["description"].tolist()
    # chance level: the mean over shuffles of each shuffle's Total
    ch = [read_decodes(p) for p in resolve_stage2_files(cfg)["chance"]]
    assert b1("chance") == pytest.approx(np.mean([_total(c, _bleu1) for c in ch]))
    assert rep.summary.loc[rep.summary.condition == CONDITION_ORDER["chance"], "interval"] \
        .iloc[0] == "over 3 shuffles"

    # examples: per subject, best ... worst, with question and both texts
    ex = rep.examples
    assert set(ex["subject"]) == set(SUBJECTS)
    assert ex.groupby("subject").size().tolist() == [cfg.eval.n_examples] * 2
    assert {"best", "worst"} <= set(ex["rank"])
    assert {"instruction", "reference", "candidate"} <= set(ex.columns)

    # files
    fig = cfg.figures_dir
    for stem in ("table1_smoke", "table2_smoke", "table1_smoke_ci"):
        for ext in ("csv", "md", "tex"):
            assert (fig / f"{stem}.{ext}").is_file()
    assert (fig / "summary_smoke.csv").is_file() and (fig / "summary_smoke.tex").is_file()
    assert (fig / "examples_smoke.md").read_text().count("**fMRI2Text:**") == len(ex)
    md = paths["summary_md"].read_text()
    assert paths["summary_md"] == fig / "summary.md"
    assert "| Metric |" in md and "noise ceiling" in md and "## Table 1:" in md
    assert "**above chance**" in md and "**Question:**" in md
    assert "BERTScore not computed" in md  # the scorer had BERTScore off: said, not hidden
    assert "\\begin{tabular}" in (fig / "table1_smoke.tex").read_text()


def test_ordering_reported_as_given(cfg, rng, scorer):
    """A model worse than its chance level stays worse in every output."""
    make_fake_run(cfg.run_dir, rng, invert=True)
    rep = build_report(score_run(cfg, scorer=scorer), cfg)
    s = rep.summary.set_index(["metric", "condition"])
    mod, ch = s.loc[("sacrebleu1", CONDITION_ORDER["model"])], \
        s.loc[("sacrebleu1", CONDITION_ORDER["chance"])]
    assert mod["estimate"] < ch["estimate"]
    da = read_decodes(stage2_results_dir(cfg) / "fmri2text_da.tsv")
    assert mod["estimate"] == pytest.approx(_total(da, _bleu1))
    assert "**below chance**" in rep.reading
    assert "above chance" not in rep.reading


def test_reading_paragraph_wording():
    rows = [("sacrebleu1", "chance", 20, 18, 22), ("sacrebleu1", "model", 30, 27, 33),
            ("sacrebleu1", "baseline", 29, 26, 32), ("sacrebleu1", "ceiling", 40, 38, 42)]
    tidy = pd.DataFrame([dict(metric=m, condition=CONDITION_ORDER[c], estimate=e, low=lo,
                              high=hi) for m, c, e, lo, hi in rows])
    text = reading_paragraph(tidy, profile="x", metrics=("sacrebleu1",))
    assert "**above chance**" in text
    assert "not distinguishable from it" in text  # baseline intervals overlap
    assert "covers 50 % of the distance from chance to the ceiling" in text
    tidy.loc[tidy.condition == CONDITION_ORDER["ceiling"], ["estimate", "low", "high"]] = 15
    text = reading_paragraph(tidy, metrics=("sacrebleu1",))
    assert "not above chance" in text and "scores above its ceiling" in text


def test_missing_optional_conditions(cfg, rng, scorer):
    """Real data: no ceiling and no descriptions; the report omits those columns."""
    make_fake_run(cfg.run_dir, rng, ceiling=False)
    (stage2_results_dir(cfg) / "fmri2text_noda.tsv").unlink()
    res = load_stage2_results(cfg, descriptions=None)
    rep = build_report(score_run(cfg, scorer=scorer, results=res), cfg)
    conds = set(rep.summary["condition"])
    assert conds == {CONDITION_ORDER[k] for k in ("chance", "baseline", "model")}
    assert rep.ceiling_table is None and list(rep.tables) == ["table1"]
    assert "noise ceiling" not in rep.reading and "without domain adaptation" not in rep.reading
    paths = write_report(rep, cfg)
    assert "table2.csv" not in paths and not (cfg.figures_dir / "table2_smoke.csv").exists()
    assert "## Table 2" not in paths["summary_md"].read_text()


# ---------------------------------------------------------------------------- cache
def test_scores_cache_reused_and_rebuilt(cfg, rng, scorer, monkeypatch):
    make_fake_run(cfg.run_dir, rng)
    ev1 = score_run(cfg, scorer=scorer)
    assert set(ev1.status.values()) == {"scored"}
    assert (cfg.run_dir / "eval" / "model_per_trial.csv").is_file()
    assert (cfg.run_dir / "eval" / "chance_draws.csv").is_file()

    calls = []
    orig = TextScorer.score_pairs

    def spy(self, *a, **k):
        calls.append(1)
        return orig(self, *a, **k)

    monkeypatch.setattr(TextScorer, "score_pairs", spy)
    ev2 = score_run(cfg, scorer=scorer)  # nothing changed: everything from the cache
    assert not calls and set(ev2.status.values()) == {"cached"}
    pd.testing.assert_frame_equal(ev2.chance.draws, ev1.chance.draws, check_dtype=False)
    assert ev2.model.aggregate["sacrebleu1"] == pytest.approx(ev1.model.aggregate["sacrebleu1"])

    # one changed answer in the baseline TSV: only the baseline is re-scored
    p = stage2_results_dir(cfg) / "baseline_nn.tsv"
    df = pd.read_csv(p, sep="\t", dtype=str)
    df.loc[0, "fmri2text"] = df.loc[0, "video2text"]
    df.to_csv(p, sep="\t", index=False)
    ev3 = score_run(cfg, scorer=scorer)
    assert ev3.status["baseline"] == "scored"
    assert {k for k, v in ev3.status.items() if v == "scored"} == {"baseline"}
    assert ev3.baseline.per_trial.loc[0, "sacrebleu1"] == pytest.approx(100)

    # a changed metric setting re-scores everything
    sc2 = TextScorer(cfg.eval.__class__(**{**cfg.eval.__dict__, "bleu_lowercase": True}),
                     bertscore=False)
    ev4 = score_run(cfg, scorer=sc2)
    assert set(ev4.status.values()) == {"scored"}
    # rebuild=True forces scoring
    assert set(score_run(cfg, scorer=sc2, rebuild=True).status.values()) == {"scored"}


@pytest.mark.slow
def test_bertscore_cached_without_loading_the_model(cfg, rng, monkeypatch):
    """With MiniLM: BERTScore is in the tables; a cached re-run never loads the model."""
    make_fake_run(cfg.run_dir, rng, n_shuffles=2)
    ev = score_run(cfg, scorer=TextScorer(cfg.eval))
    assert np.isfinite(ev.model.per_trial["bertscore"]).all()

    def boom(*a, **k):
        raise AssertionError("BERTScore model loaded although every score was cached")

    monkeypatch.setattr(metrics_mod, "_load_bert", boom)
    ev2 = score_run(cfg, scorer=TextScorer(cfg.eval))
    assert set(ev2.status.values()) == {"cached"}
    rep = build_report(ev2, cfg)
    assert np.isfinite(rep.tables["table1"]["BERTScore"]).all()


def test_summary_gains_stage1_identification_when_given(cfg, rng, scorer):
    from llm4brain.evaluation.report_writer import retrieval_wide
    make_fake_run(cfg.run_dir, rng)
    rep = build_report(score_run(cfg, scorer=scorer), cfg)
    assert "Clip identification from fMRI" not in (write_report(rep, cfg)["summary_md"]
                                                   .read_text())
    rows = []
    for split in ("val", "eval"):
        for method, top1, pr in (("stage1", 0.05, 0.9), ("ridge", 0.083, np.nan),
                                 ("semantic", 0.2875, 1.2e-8)):
            for who in ("all", "05"):
                rows.append(dict(split=split, subject=who, method=method, top1=top1,
                                 top5=0.3, chance_top1=0.05, chance_top5=0.25, p_value=0.001,
                                 n_trials=240 if who == "all" else 120, n_candidates=20,
                                 p_vs_ridge=pr))
    rep.retrieval = pd.DataFrame(rows)
    wide = retrieval_wide(rep.retrieval)
    assert len(wide) == 6                                   # 2 splits x 3 methods, "all" only
    sem = wide.loc["semantic retrieval (voxel class/scene read-outs)"]
    assert list(sem["top-1"]) == ["28.7", "28.7"] and list(sem["p vs ridge (paired)"]) == ["1.2e-08"] * 2
    assert list(wide.loc["ridge baseline", "p vs ridge (paired)"]) == ["", ""]
    assert set(wide["trials"]) == {"training subjects, held-out runs (240)",
                                   "target subjects, evaluation trials (240)"}
    md = write_report(rep, cfg)["summary_md"].read_text()
    assert "## Clip identification from fMRI (Stage I, notebook 03)" in md
    assert "| semantic retrieval (voxel class/scene read-outs) | target subjects" in md
    assert md.index("Clip identification") < md.index("## Metric settings")


def test_evaluate_run_is_the_notebook_chain_in_one_call(cfg, rng, scorer):
    from llm4brain.evaluation.evaluate import evaluate_run

    make_fake_run(cfg.run_dir, rng)
    by_hand = build_report(score_run(cfg, scorer=scorer), cfg)
    stim = pd.DataFrame({"stim_file": ["x.mp4"]})               # real data: no true attributes
    rep = evaluate_run(cfg, scorer=scorer, stim=stim)
    pd.testing.assert_frame_equal(rep.summary, by_hand.summary)
    pd.testing.assert_frame_equal(rep.tables["table1"], by_hand.tables["table1"])
    assert rep.reading == by_hand.reading and rep.attributes is None and rep.retrieval is None
    assert len(rep.scores.model.per_trial) == len(read_decodes(stage2_results_dir(cfg) / "fmri2text_da.tsv"))
    assert isinstance(rep.identification, pd.DataFrame) and len(rep.identification) > 0
    assert rep.metadata["paths"]["summary_md"].is_file()
    # Stage I's table is attached when notebook 03 wrote it
    s1 = Path(cfg.run_dir) / "results" / "stage1"
    s1.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"split": ["eval"], "subject": ["05"], "method": ["stage1"], "top1": [0.3]}).to_csv(
        s1 / "retrieval.csv", index=False)
    again = evaluate_run(cfg, scorer=scorer, stim=stim, write=False)
    assert again.retrieval["subject"].tolist() == ["05"] and "paths" not in again.metadata
