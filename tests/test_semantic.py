"""The semantic read-out decoder (llm4brain.evaluation.semantic): its logistic read-outs, the
prototype-token arithmetic, the decodes and chance decodes Stage II's outputs write, how the
results are read and scored, and that nothing of the target subjects but their voxels enters."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from llm4brain.config import ConfigError, load_config
from llm4brain.evaluation import decoding as dec2
from llm4brain.evaluation import stage2_outputs as out2
from llm4brain.evaluation import stage2_results as res2
from llm4brain.evaluation.attributes import ATTRIBUTE_CONDITIONS, stage2_attribute_tables
from llm4brain.evaluation.stage1 import evaluate_stage1
from llm4brain.evaluation.semantic import (SemanticReadout, cross_fitted_predictions,
                                           fit_label_readout, fit_semantic_readout,
                                           fit_semantic_retrieval, semantic_decodes,
                                           semantic_stage2_data)
from llm4brain.evaluation.stage1 import paired_top1_test
from llm4brain.models.stage2 import build_stage2_model
from llm4brain.training import stage2 as s2


# ----------------------------------------------------------------------------- read-outs
def _separable(rng, n_per=30, groups=3, classes=3, d=40, shift=2.0):
    y = np.tile(np.repeat(np.arange(classes), n_per // classes), groups).astype(str)
    g = np.repeat([f"s{k}" for k in range(groups)], n_per)
    centres = rng.standard_normal((classes, d)) * shift
    X = centres[y.astype(int)] + rng.standard_normal((len(y), d))
    return X, y, g


def test_label_readout_reads_separable_classes_and_picks_c_by_loso():
    rng = np.random.default_rng(0)
    X, y, g = _separable(rng)
    r = fit_label_readout(X, y, g, n_pca=10, cs=(1e-4, 1e-1))
    assert set(r.loso) == {(0, 1e-4), (0, 1e-1)} and (0, r.C) == max(r.loso, key=r.loso.get)
    assert r.n_voxels == 0 and r.loso[(0, r.C)] > 0.9
    Xt, yt, _ = _separable(np.random.default_rng(0), n_per=9, groups=1)   # same centres
    assert (r.predict(Xt) == yt).mean() > 0.9
    assert list(r.classes) == ["0", "1", "2"]


def test_label_readout_caps_pca_at_the_features():
    rng = np.random.default_rng(2)
    X, y, g = _separable(rng, d=5)                # 90 trials, 5 features, 256 components asked
    r = fit_label_readout(X, y, g)
    assert r.model.named_steps["pca"].n_components == 5 and r.loso[(0, r.C)] > 0.8


def test_label_readout_on_noise_is_near_chance():
    rng = np.random.default_rng(1)
    X, y, g = _separable(rng, shift=0.0)
    r = fit_label_readout(X, y, g, n_pca=10, n_voxels=(5, 0))
    assert max(r.loso.values()) < 0.6             # 3 classes: chance 1/3


def test_label_readout_keeps_the_selective_voxels_when_most_are_noise():
    rng = np.random.default_rng(3)
    X, y, g = _separable(rng, n_per=60, d=4, shift=1.0)
    X = np.hstack([X, rng.standard_normal((len(X), 400)) * 1.5])   # 4 signal + 400 noise columns
    r = fit_label_readout(X, y, g, n_pca=100, cs=(1e-2, 1.0), n_voxels=(4, 0))
    assert r.n_voxels == 4                        # chosen by leave-one-subject-out
    assert r.loso[(4, r.C)] > max(r.loso[(0, c)] for c in (1e-2, 1.0)) + 0.1
    kept = np.flatnonzero(r.model.named_steps["selectkbest"].get_support())
    assert len(set(kept) & {0, 1, 2, 3}) >= 3     # the refit on all rows keeps the signal columns
    with pytest.raises(ValueError, match="semantic_voxels"):
        fit_label_readout(X, y, g, n_voxels=(-1,))


@pytest.mark.parametrize("groups, labels, match", [
    (["a"] * 6, list("abcabc"), "at least two training subjects"),
    (list("aaabbb"), ["x"] * 6, "nothing to read out"),
    (list("aaab"), list("abcabc"), "6 rows of voxels, 6 labels, 4 groups"),
])
def test_label_readout_errors(groups, labels, match):
    with pytest.raises(ValueError, match=match):
        fit_label_readout(np.zeros((6, 3)), labels, groups, label="class")


def test_cross_fitted_predictions_come_from_the_other_subjects():
    rng = np.random.default_rng(4)
    X, y, g = _separable(rng, n_per=30, groups=3, d=20, shift=0.6)
    r = fit_label_readout(X, y, g, n_pca=10, cs=(1e-2, 1.0), n_voxels=(5, 0))
    sr = SemanticReadout({"class": r}, {}, torch.zeros(1))
    got = cross_fitted_predictions(sr, X, g, {"class": y})["class"]
    for s in np.unique(g):            # reference: the same (k, C) fitted without subject s
        ref = fit_label_readout(X[g != s], y[g != s], g[g != s], n_pca=10, cs=(r.C,),
                                n_voxels=(r.n_voxels,))
        assert list(got[g == s]) == list(ref.predict(X[g == s]))
    # on labels that carry nothing the in-sample read-out is confident, the cross-fitted one
    # is at chance (what an unseen subject gets)
    Xn = rng.standard_normal((90, 60))
    r = fit_label_readout(Xn, y, g, n_pca=50, cs=(10.0,))
    sr = SemanticReadout({"class": r}, {}, torch.zeros(1))
    assert (sr.predict(Xn)["class"] == y).mean() > 0.9
    assert (cross_fitted_predictions(sr, Xn, g, {"class": y})["class"] == y).mean() < 0.6
    with pytest.raises(ValueError, match="at least two subjects"):
        cross_fitted_predictions(sr, Xn, ["a"] * 90, {"class": y})
    with pytest.raises(ValueError, match=r"no values given for label\(s\) \['class'\]"):
        cross_fitted_predictions(sr, Xn, g, {"scene": y})


def test_prototype_tokens_add_class_and_scene_means_minus_the_grand_mean():
    g = torch.full((2, 3), 1.0)
    proto = {"class": {"a": torch.full((2, 3), 4.0), "b": torch.full((2, 3), 6.0)},
             "scene": {"x": torch.full((2, 3), 2.0), "y": torch.zeros(2, 3)}}
    r = SemanticReadout({"class": None, "scene": None}, proto, g)
    z = r.tokens({"class": ["a", "b", "a"], "scene": ["x", "x", "y"]})
    assert z.shape == (3, 2, 3)
    assert torch.equal(z[:, 0, 0], torch.tensor([4 + 2 - 1, 6 + 2 - 1, 4 + 0 - 1.0]))
    only_class = SemanticReadout({"class": None}, {"class": proto["class"]}, g)
    assert torch.equal(only_class.tokens({"class": ["b"]})[0], proto["class"]["b"])


def test_config_checks_the_labels_and_the_grid():
    assert load_config("default").eval.semantic_labels == ("class", "scene")
    assert load_config("had").eval.semantic_labels == ("class",)
    with pytest.raises(ConfigError, match="must start with 'class'"):
        load_config("smoke", overrides={"eval": {"semantic_labels": ["scene", "class"]}})
    with pytest.raises(ConfigError, match="repeats a label"):
        load_config("smoke", overrides={"eval": {"semantic_labels": ["class", "class"]}})
    with pytest.raises(ConfigError, match="semantic_cs"):
        load_config("smoke", overrides={"eval": {"semantic_cs": [0.0, 1.0]}})
    with pytest.raises(ConfigError, match="semantic_voxels"):
        load_config("smoke", overrides={"eval": {"semantic_voxels": [-5]}})


# ----------------------------------------------------------------------------- on a tiny world
@pytest.fixture(scope="module")
def world(fit_tiny_stage1, tiny_world, make_tiny_llm, tmp_path_factory):
    w = tiny_world(tmp_path_factory.mktemp("sem"), eval={"semantic_labels": ["class"]})
    tgt = w["tc"].trials["subject"] == "03"                       # what must never be read
    w["tc"].trials.loc[tgt, "class_name"] = "LEAKED_CLASS"
    w["captions"].loc[w["captions"]["subject"] == "03", "answer"] = "LEAKED ANSWER"
    model, video, _ = fit_tiny_stage1(w)
    evaluate_stage1(w["cfg"], model, w["tc"], w["splits"], video, progress=False)   # baseline
    texts = list(w["captions"]["answer"]) + ["The video shows a ball"]
    w.update(stage1=model, video=video, llm=make_tiny_llm(texts, hidden=32, layers=1, heads=2))
    w["vlm"] = SimpleNamespace(branch=w["branch"], llm=w["llm"])
    return w


def test_readout_fits_on_training_subjects_only(world):
    w = world
    r = fit_semantic_readout(w["cfg"], w["tc"], w["splits"], w["vlm"], w["features"])
    assert list(r.readouts) == ["class"]
    assert set(r.prototypes["class"]) == {"class0", "class1", "class2"}     # no LEAKED_CLASS
    tr = w["tc"].trials.iloc[w["splits"].train_idx]
    with torch.no_grad():
        Y = w["branch"].video_hidden(w["features"].get(list(tr["stim_file"]))).float()
    for c in ("class0", "class2"):                    # the mean of that class's training trials
        want = Y[torch.as_tensor((tr["class_name"] == c).to_numpy().copy())].mean(0)
        assert torch.allclose(r.prototypes["class"][c], want, atol=1e-6)
    assert torch.allclose(r.grand, Y.mean(0), atol=1e-6)
    assert set(r.info["class"]) == {"C", "n_voxels", "loso_accuracy", "n_values"}


def test_scene_label_needs_a_scene_column(world):
    w = world
    cfg = w["cfg"].replace(eval__semantic_labels=("class", "scene"))
    stim = pd.DataFrame(dict(stim_file=w["tc"].trials["stim_file"]))
    with pytest.raises(ValueError, match=r"no 'scene' column.*eval.semantic_labels to \[class\]"):
        fit_semantic_readout(cfg, w["tc"], w["splits"], w["vlm"], w["features"], stim)
    stim["scene"] = np.where(np.arange(len(stim)) % 2, "beach", "park")
    r = fit_semantic_readout(cfg, w["tc"], w["splits"], w["vlm"], w["features"], stim)
    assert set(r.prototypes["scene"]) == {"beach", "park"}


def test_decodes_and_chance_decodes(world):
    w = world
    cfg = w["cfg"]
    r = fit_semantic_readout(cfg, w["tc"], w["splits"], w["vlm"], w["features"])
    ev = dec2.build_eval_set(cfg, w["stage1"], w["tc"], w["splits"], w["captions"])
    model = build_stage2_model(cfg, w["branch"].proj, w["llm"], domain_adaptation=False)
    out, shuffled, decoded = semantic_decodes(cfg, r, model, w["tc"], w["splits"], ev, 2)
    assert list(out["trial_index"]) == list(ev.table["trial_index"]) and len(shuffled) == 2
    assert set(decoded["class"]) <= {"class0", "class1", "class2"}
    # the decode of a trial is the LLM given that trial's prototype tokens
    direct = dec2.decode_eval_set(model, ev, z=r.tokens(decoded), seed=0)
    assert direct["fmri2text"].tolist() == out["fmri2text"].tolist()
    # a shuffle hands each trial another trial's read-out (derangement within subject)
    perm = dec2.derangements(len(ev), 1, np.random.default_rng((0, 1)),
                             groups=ev.table["subject"].to_numpy())[0]
    z1 = r.tokens({"class": decoded["class"][perm]})
    again = dec2.decode_eval_set(model, ev, z=z1, seed=0)
    assert again["fmri2text"].tolist() == shuffled[1]["fmri2text"].tolist()
    bad = dec2.EvalSet(ev.table.iloc[::-1].reset_index(drop=True), ev.z)
    with pytest.raises(ValueError, match="not the target evaluation view"):
        semantic_decodes(cfg, r, model, w["tc"], w["splits"], bad, 1)


def test_stage2_outputs_write_read_and_score_the_semantic_rows(world):
    w = world
    cfg = w["cfg"]
    data = s2.build_stage2_data(cfg, w["stage1"], w["tc"], w["splits"], w["captions"])
    m = s2.train_stage2(cfg, data, w["llm"], w["branch"].proj, domain_adaptation=True,
                        progress=False).model
    ev = dec2.build_eval_set(cfg, w["stage1"], w["tc"], w["splits"], w["captions"])
    man = out2.write_stage2_outputs(cfg, {"da": m}, ev, w["captions"], tc=w["tc"],
                                    splits=w["splits"], vlm=w["vlm"], features=w["features"],
                                    progress=False)
    assert man["semantic"] == "semantic.tsv"
    assert man["semantic_chance"] == [f"semantic_shuffle_{k}.tsv"
                                      for k in range(dec2.n_chance_decodes(cfg))]
    assert man["semantic_readout"]["class"]["n_values"] == 3
    r = res2.load_stage2_results(cfg, descriptions=None)
    assert r.semantic is not None and len(r.semantic_chance) == len(man["semantic_chance"])
    assert (r.semantic["video2text"] == "LEAKED ANSWER").all()      # references: scoring only
    avail = r.available().set_index("condition")
    assert avail.loc[res2.CONDITION_ORDER["semantic"], "n_trials"] == len(ev)
    assert avail.loc[res2.CONDITION_ORDER["semantic_chance"], "n_trials"] == len(ev)
    # the attribute table scores it against its own shuffles
    stim = pd.DataFrame(dict(stim_file=w["tc"].trials["stim_file"], agent="ball", action="rolls",
                             colour="red", size="small", direction="left", speed="slowly",
                             scene="park"))
    t = stage2_attribute_tables(r, stim, n_boot=20, n_perm=20)["truth"]
    assert ATTRIBUTE_CONDITIONS["semantic"] in set(t["condition"])
    assert ATTRIBUTE_CONDITIONS["semantic_chance"] in set(t["condition"])
    # scored: its own row and its own chance (the mean over its shuffles), beside the others
    from sacrebleu.metrics import BLEU

    from llm4brain.evaluation.metrics import TextScorer
    from llm4brain.evaluation.report import build_report
    from llm4brain.evaluation.scoring import score_run

    def bleu1(df):
        return BLEU(max_ngram_order=1).corpus_score(list(df["fmri2text"]),
                                                    [list(df["video2text"])]).score

    ev_scores = score_run(cfg, scorer=TextScorer(cfg.eval, bertscore=False))
    assert ev_scores.semantic is not None and ev_scores.semantic_chance is not None
    summ = build_report(ev_scores, cfg).summary.set_index(["metric", "condition"])
    got = summ.loc[("sacrebleu1", res2.CONDITION_ORDER["semantic"]), "estimate"]
    assert got == pytest.approx(bleu1(r.semantic))                  # one target subject
    got = summ.loc[("sacrebleu1", res2.CONDITION_ORDER["semantic_chance"]), "estimate"]
    assert got == pytest.approx(np.mean([bleu1(c) for c in r.semantic_chance]))
    # switched off: no files, a note, and an earlier run's files removed
    off = cfg.replace(eval__semantic_readout=False)
    man = out2.write_stage2_outputs(off, {"da": m}, ev, w["captions"], tc=w["tc"],
                                    splits=w["splits"], vlm=w["vlm"], progress=False)
    d = res2.stage2_results_dir(cfg)
    assert "semantic" not in man and man["semantic_note"] == "eval.semantic_readout is false"
    assert not (d / "semantic.tsv").exists() and not list(d.glob("semantic_shuffle_*"))
    r = res2.load_stage2_results(cfg, descriptions=None)
    assert r.semantic is None and r.semantic_chance == []
    man = out2.write_stage2_outputs(cfg, {"da": m}, ev, w["captions"], tc=w["tc"], progress=False)
    assert man["semantic_note"] == "no semantic read-out: splits, vlm not given"


def test_stage2_on_semantic_tokens_reads_training_subjects_and_adaptation_fmri_only(world):
    w = world
    cfg = w["cfg"]
    r = fit_semantic_readout(cfg, w["tc"], w["splits"], w["vlm"], w["features"])
    data = semantic_stage2_data(cfg, r, w["tc"], w["splits"], w["captions"])
    n_tr = len(w["splits"].train_idx)
    assert data.source_z.shape == (n_tr, *r.grand.shape)
    assert len(data.target) == len(w["splits"].adapt_idx)
    assert not any("LEAKED" in a for a in data.answers) and "LEAKED_CLASS" not in data.class_names
    # every source token is the prototype of a cross-fitted class: one of the class means
    protos = torch.stack(list(r.prototypes["class"].values()))
    d = (data.source_z[:, None] - protos[None]).flatten(2).abs().amax(-1)     # (n, classes)
    assert bool((d.min(1).values < 1e-5).all())
    insample = semantic_stage2_data(cfg, r, w["tc"], w["splits"], w["captions"],
                                    cross_fit=False)
    tr = w["tc"].trials.iloc[w["splits"].train_idx]
    X = w["tc"].blocks[w["splits"].train_idx].mean(1)[:, w["tc"].mask]
    assert torch.equal(insample.source_z, r.tokens(r.predict(X)))
    assert list(insample.answers) == list(data.answers) and len(tr) == n_tr
    # true labels: each training trial's tokens are its own class's prototype
    clean = semantic_stage2_data(cfg, r, w["tc"], w["splits"], w["captions"], true_labels=True)
    want = r.tokens({"class": tr["class_name"].astype(str).to_numpy()})
    assert torch.equal(clean.source_z, want) and list(clean.answers) == list(data.answers)
    assert torch.equal(clean.target.z, data.target.z)
    m = s2.train_stage2(cfg.replace(stage2__steps=2), data, w["llm"], w["branch"].proj,
                        domain_adaptation=True, progress=False, name="semantic-test")
    assert m.trained and {"ce", "da"} <= set(m.log.columns)


def test_paired_top1_test_is_an_exact_one_sided_mcnemar():
    a = np.array([1, 1, 1, 1, 1, 0, 1, 0], bool)
    b = np.array([0, 0, 0, 0, 1, 0, 1, 1], bool)       # 4 trials only A gets, 1 only B
    assert paired_top1_test(a, b) == pytest.approx((5 + 1) / 32)     # P(X >= 4 | 5, 1/2)
    assert paired_top1_test(b, a) == pytest.approx(31 / 32)
    assert paired_top1_test(a, a) == 1.0
    with pytest.raises(ValueError, match="trials"):
        paired_top1_test(a, b[:3])


def test_semantic_retrieval_scores_clips_by_the_readouts_posteriors(world):
    w = world
    cfg = w["cfg"]
    sr = fit_semantic_retrieval(cfg, w["tc"], w["splits"], w["vlm"], w["features"])
    assert set(sr.probes) == {"class"}
    assert list(sr.probes["class"].classes) == list(sr.readout.readouts["class"].classes)
    clips = list(w["tc"].trials.iloc[w["splits"].eval_idx]["stim_file"])
    P = sr.clips(clips)
    assert P.shape == (len(clips), 3) and np.allclose(P.sum(1), 1.0, atol=1e-5)
    X = w["tc"].blocks[w["splits"].eval_idx].mean(1)[:, w["tc"].mask]
    F = sr.fmri(X)
    ref = np.log(sr.readout.readouts["class"].model.predict_proba(X))
    assert np.allclose(F, ref, atol=1e-5)
    ev = evaluate_stage1(cfg, w["stage1"], w["tc"], w["splits"], w["video"], save=False,
                         progress=False, semantic=sr)
    t = ev.retrieval
    assert {"stage1", "ridge", "semantic"} == set(t["method"])
    assert t.loc[t.method == "ridge", "p_vs_ridge"].isna().all()
    assert t.loc[t.method != "ridge", "p_vs_ridge"].between(0, 1).all()
    assert np.allclose(ev.embeddings["eval"]["semantic_fmri"], F, atol=1e-5)
    # the semantic rows are the dot-product retrieval of those embeddings
    from llm4brain.evaluation.retrieval import retrieval_accuracy
    row = t[(t.split == "eval") & (t.subject == "all") & (t.method == "semantic")].iloc[0]
    meta = ev.embeddings["eval"]["meta"]
    acc = retrieval_accuracy(F, P, int(row.n_candidates), k=(1,), rng=cfg.run.seed,
                             groups=meta["stim_file"].to_numpy(), metric="dot")
    assert row.top1 == pytest.approx(acc["top1"])


def test_fitted_readout_is_cached_by_settings_and_trials(world, monkeypatch):
    from llm4brain.evaluation import semantic as sem
    w = world
    cfg = w["cfg"]
    tc = SimpleNamespace(**{k: getattr(w["tc"], k) for k in ("blocks", "trials", "mask")},
                         meta={"key": "abc123"})
    path = sem.semantic_readout_path(cfg, tc, w["splits"])
    assert path.parent == cfg.run_dir / "cache" and path.name.startswith("semantic-")
    path.unlink(missing_ok=True)
    first = fit_semantic_readout(cfg, tc, w["splits"], w["vlm"], w["features"], cache=True)
    assert path.is_file()
    monkeypatch.setattr(sem, "fit_label_readout", lambda *a, **k: 1 / 0)   # no refit allowed
    again = fit_semantic_readout(cfg, tc, w["splits"], w["vlm"], w["features"], cache=True)
    assert again.info == first.info and torch.equal(again.grand, first.grand)
    X = w["tc"].blocks[w["splits"].eval_idx].mean(1)[:, w["tc"].mask]
    assert list(again.predict(X)["class"]) == list(first.predict(X)["class"])
    # other settings or other training rows: another file; no key: no cache
    other = cfg.replace(eval__semantic_cs=(0.5,))
    assert sem.semantic_readout_path(other, tc, w["splits"]) != path
    fewer = SimpleNamespace(train_idx=w["splits"].train_idx[:-1])
    assert sem.semantic_readout_path(cfg, tc, fewer) != path
    assert sem.semantic_readout_path(cfg, w["tc"], w["splits"]) is None or \
        "key" in (getattr(w["tc"], "meta", None) or {})
    path.unlink()


def test_noise_ceiling_is_the_semantic_readout_on_noise_free_responses(world, monkeypatch):
    """With noise-free blocks that code the class (as the simulator's truth does), the ceiling's
    read-out is refitted on the training trials' noise-free responses, decodes every target
    trial's true class, and its text is the LLM given that class's prototype tokens."""
    import llm4brain.sim as sim_mod
    from llm4brain.evaluation.semantic import noise_free_readout, semantic_ceiling_decodes
    from llm4brain.models.stage2 import build_stage2_model

    w = world
    cfg, tc = w["cfg"], w["tc"]
    true_cls = {i: str(f).split("/")[0] for i, f in enumerate(tc.trials["stim_file"])}
    names = sorted(set(true_cls.values()))
    codes = {c: np.random.default_rng(k).normal(size=tuple(tc.block_shape)) for k, c in enumerate(names)}
    calls = []

    def oracle(cfg_, tc_, idx):
        calls.append(np.asarray(idx).copy())
        return np.stack([codes[true_cls[int(i)]] for i in idx]).astype(np.float32)

    monkeypatch.setattr(sim_mod, "noise_free_trial_blocks", oracle)
    r = fit_semantic_readout(cfg, tc, w["splits"], w["vlm"], w["features"])
    nf = noise_free_readout(cfg, r, tc, w["splits"])
    assert list(calls[0]) == list(w["splits"].train_idx)       # fitted on training trials only
    assert nf.prototypes is r.prototypes and nf.info["class"]["loso_accuracy"] == 1.0
    model = build_stage2_model(cfg, w["vlm"].branch.proj, w["vlm"].llm, domain_adaptation=False)
    ev = dec2.build_eval_set(cfg, w["stage1"], tc, w["splits"], w["captions"])
    out, info = semantic_ceiling_decodes(cfg, r, model, tc, w["splits"], ev)
    rows = ev.table["trial_index"].astype(int).to_numpy()
    assert list(calls[-1]) == list(rows)
    want = dec2.decode_eval_set(model, ev, z=r.tokens({"class": np.array([true_cls[i] for i in rows])}),
                                seed=0)
    assert out["fmri2text"].tolist() == want["fmri2text"].tolist()
    assert list(out["trial_index"]) == list(rows) and set(info) == {"class"}
    bad = dec2.EvalSet(ev.table.iloc[::-1].reset_index(drop=True), ev.z)
    with pytest.raises(ValueError, match="not the target evaluation view"):
        semantic_ceiling_decodes(cfg, r, model, tc, w["splits"], bad)
