"""Stage II (paper eqs. 3-6): leakage guard on the data path, DA switch, decoding outputs.

Tiny world of ``llm4brain.testing.make_tiny_world`` plus a tiny random Llama (``make_tiny_llm``): no SmolLM2.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from llm4brain.evaluation import baselines as bl2
from llm4brain.evaluation import decoding as dec2
from llm4brain.evaluation import stage1 as es1
from llm4brain.evaluation import stage2_outputs as out2
from llm4brain.evaluation import stage2_results as res2
from llm4brain.models import stage1 as ms1
from llm4brain.models import stage2 as ms2
from llm4brain.models.bridge import LLMBridge
from llm4brain.training import stage2 as s2
from llm4brain.training.guard import LeakageError, target_adaptation_view



def _poison_targets(w):
    """Give the target subject labels, clips and captions that must never reach training."""
    trials = w["tc"].trials
    tgt = trials["subject"] == "03"
    trials.loc[tgt, "class_name"] = "LEAKED_CLASS"
    trials.loc[tgt, "class_id"] = 99
    caps = w["captions"]
    caps.loc[caps["subject"] == "03", "answer"] = "LEAKED ANSWER"
    caps.loc[caps["subject"] == "03", "instruction"] = "LEAKED INSTRUCTION"
    return w


@pytest.fixture(scope="module")
def world(fit_tiny_stage1, tiny_world, make_tiny_llm, tmp_path_factory):
    """A trained tiny Stage I model and its Stage I results (shared by the tests)."""
    w = _poison_targets(tiny_world(tmp_path_factory.mktemp("s2")))
    model, video, _ = fit_tiny_stage1(w)
    es1.evaluate_stage1(w["cfg"], model, w["tc"], w["splits"], video, progress=False)
    texts = list(w["captions"]["answer"]) + ["The video shows a ball"]
    w.update(stage1=model, video=video, llm=make_tiny_llm(texts, hidden=32, layers=1, heads=2))
    return w


def test_stage2_data_never_holds_target_labels_captions_or_eval_trials(world):
    w = world
    data = s2.build_stage2_data(w["cfg"], w["stage1"], w["tc"], w["splits"], w["captions"])
    # source side: training subjects' training trials only, with their own captions
    assert set(data.source_meta["subject"]) == {"01", "02"}
    assert np.array_equal(np.sort(data.source_meta["row"]), np.sort(w["splits"].train_idx))
    assert not any("LEAKED" in t for t in data.answers + data.instructions + data.class_names)
    assert data.n_classes == 3 and data.source_labels.max() < 3
    # target side: adaptation fMRI only, in opaque order; nothing else can be read
    tc, sp = w["tc"], w["splits"]
    assert len(data.target) == len(sp.adapt_idx)
    emb = lambda rows: ms1.embed_fmri(w["stage1"], lambda p: tc.blocks[rows[p]], len(rows))  # noqa
    adapt, evals = emb(sp.adapt_idx), emb(sp.eval_idx)
    for z in data.target.z:
        assert any(torch.allclose(z, a, atol=1e-5) for a in adapt)
        assert not any(torch.allclose(z, e, atol=1e-5) for e in evals)
    for field in ("labels", "class_id", "captions", "clip_ids", "stim_files", "videos",
                  "eval_idx", "trials", "runs", "onsets"):
        with pytest.raises(LeakageError):
            getattr(data.target, field)
    with pytest.raises(AttributeError):
        data.target.z = None
    with pytest.raises(LeakageError, match="TargetAdaptationView"):
        s2.target_features(w["stage1"], tc)            # a cache is not a guard view
    # a batch carries only the target tokens and their opaque indices
    batch = s2.make_stage2_sampler(data, 2, 3, True)(0, np.random.default_rng(0))
    assert set(batch) == {"z", "labels", "instructions", "answers", "tz", "tidx"}
    assert batch["tidx"].max() < len(sp.adapt_idx)


def test_target_features_only_through_the_view(world):
    view = target_adaptation_view(world["tc"], world["splits"], seed=3)
    feats = s2.target_features(world["stage1"], view)
    assert feats.z.shape[0] == len(view) and set(feats.subjects) == {"03"}
    assert "unlabelled" in repr(feats)


def test_da_switch_removes_da_terms(world, tmp_path):
    w = world
    data = s2.build_stage2_data(w["cfg"], w["stage1"], w["tc"], w["splits"], w["captions"])
    proj = w["branch"].proj
    off = ms2.build_stage2_model(w["cfg"], proj, w["llm"], domain_adaptation=False)
    assert off.classifier is None and off.bank is None
    assert not any(n.startswith(("classifier", "bank")) for n in off.state_dict())
    b_off = s2.make_stage2_sampler(data, 2, 3, False)(0, np.random.default_rng(0))
    assert "tz" not in b_off and "tidx" not in b_off
    loss, terms = s2.stage2_loss_fn(off, b_off)
    assert set(terms) == {"ce"} and torch.isclose(loss, torch.tensor(terms["ce"]))
    on = ms2.build_stage2_model(w["cfg"], proj, w["llm"], n_classes=data.n_classes,
                                n_target=len(data.target), domain_adaptation=True)
    b_on = s2.make_stage2_sampler(data, 2, 3, True)(0, np.random.default_rng(0))
    loss_on, t_on = s2.stage2_loss_fn(on, b_on)
    assert set(t_on) == {"ce", "cls", "nc", "es", "da"}
    lam = w["cfg"].stage2.lam
    assert loss_on.item() == pytest.approx(lam * t_on["ce"] + (1 - lam) * t_on["da"], rel=1e-5)
    # the bridge starts as the video branch's projection (Stage I alignment carries over)
    z = torch.randn(2, 4, proj.in_features)
    assert torch.allclose(on.bridge(z), proj(z), atol=1e-6)
    # run names differ only by the switch
    assert s2.stage2_run_name(w["cfg"], True).replace("-da-", "-") == \
        s2.stage2_run_name(w["cfg"], False).replace("-noda-", "-")


def test_two_step_stage2_writes_decodes_of_eval_trials_only(world):
    w = world
    cfg = w["cfg"]
    data = s2.build_stage2_data(cfg, w["stage1"], w["tc"], w["splits"], w["captions"])
    res = {da: s2.train_stage2(cfg, data, w["llm"], w["branch"].proj, domain_adaptation=da,
                               progress=False) for da in (True, False)}
    assert {"ce", "cls", "nc", "es", "da"} <= set(res[True].log.columns)
    assert not ({"cls", "nc", "es", "da"} & set(res[False].log.columns))
    assert res[True].run_name != res[False].run_name
    assert len(res[True].log) == len(res[False].log) == cfg.stage2.steps
    ev = dec2.build_eval_set(cfg, w["stage1"], w["tc"], w["splits"], w["captions"])
    man = out2.write_stage2_outputs(cfg, {"da": res[True].model, "noda": res[False].model}, ev,
                                  w["captions"], tc=w["tc"],
                                  train_subjects=w["splits"].train_subjects, progress=False)
    d = res2.stage2_results_dir(cfg)
    files = list(man["fmri2text"].values()) + man["chance"] + [man["baseline"],
                                                               man["no_brain"], man["constant"]]
    assert len(man["chance"]) == dec2.n_chance_decodes(cfg) == 2     # eval.n_shuffles capped
    assert man["ceiling"] is None and "ground truth" in man["ceiling_note"]
    for f in files:
        df = res2.read_decodes(d / f)
        assert list(df.columns) == list(res2.DECODE_COLUMNS), f
        assert sorted(df["trial_index"]) == sorted(w["splits"].eval_idx.tolist()), f
        assert set(df["subject"]) == {"03"}
    da = res2.read_decodes(d / "fmri2text_da.tsv")
    assert (da["video2text"] == "LEAKED ANSWER").all()          # references: scoring only
    # the baseline returns training clips' surrogate answers
    base = res2.read_decodes(d / "baseline_nn.tsv")
    train_answers = set(w["captions"].loc[w["captions"]["subject"] != "03", "answer"])
    assert set(base["fmri2text"]) <= train_answers
    # the constant control gives the most frequent training answer to every trial
    const = res2.read_decodes(d / "constant.tsv")
    tr = w["captions"].loc[w["captions"]["subject"].isin(w["splits"].train_subjects), "answer"]
    assert const["fmri2text"].nunique() == 1
    assert tr.value_counts()[const["fmri2text"].iloc[0]] == tr.value_counts().max()
    # the no-brain control ignores the fMRI: one answer per instruction
    nob = res2.read_decodes(d / "no_brain.tsv")
    assert (nob.groupby("instruction")["fmri2text"].nunique() == 1).all()
    # the report reads both controls as conditions of their own
    from llm4brain.evaluation.stage2_results import load_stage2_results
    r = load_stage2_results(cfg, descriptions=None)
    assert r.no_brain is not None and r.constant is not None
    assert r.available().set_index("condition").loc["LLM without brain tokens", "n_trials"] == len(ev)
    # a finished run is reloaded, not retrained
    again = s2.train_stage2(cfg, data, w["llm"], w["branch"].proj, domain_adaptation=True,
                            progress=False)
    assert not again.trained
    for k, v in res[True].model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k


def test_stage2_seeds_reproduce(world, tmp_path):
    w = world
    outs = []
    for sub in ("a", "b"):
        cfg = w["cfg"].replace(run__run_dir=str(tmp_path / sub))
        data = s2.build_stage2_data(cfg, w["stage1"], w["tc"], w["splits"], w["captions"])
        outs.append(s2.train_stage2(cfg, data, w["llm"], w["branch"].proj,
                                    domain_adaptation=True, progress=False).model)
    a, b = (m.state_dict() for m in outs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_chance_shuffles_permute_within_subject(world):
    w = world
    ev = dec2.build_eval_set(w["cfg"], w["stage1"], w["tc"], w["splits"], w["captions"])
    model = ms2.build_stage2_model(w["cfg"], w["branch"].proj, w["llm"], domain_adaptation=False)
    seen = []
    orig = dec2.decode_eval_set

    def spy(m, e, *, z=None, **kw):
        seen.append(z)
        return orig(m, e, z=z, **kw)

    dec2.decode_eval_set = spy
    try:
        out = dec2.chance_decodes(model, ev, 2, seed=0)
    finally:
        dec2.decode_eval_set = orig
    assert len(out) == 2 and all(len(o) == len(ev) for o in out)
    for z in seen:     # same rows, another order
        assert sorted(map(lambda t: t.numpy().tobytes(), z)) == \
            sorted(map(lambda t: t.numpy().tobytes(), ev.z))
        assert not torch.equal(z, ev.z)
        # a derangement within subject: no trial keeps its own fMRI (all tokens are distinct)
        assert not any(torch.equal(z[i], ev.z[i]) for i in range(len(ev)))


def test_bridge_from_linear_and_rank_zero():
    lin = torch.nn.Linear(6, 4)
    br = LLMBridge.from_linear(lin, rank=0)
    x = torch.randn(2, 3, 6)
    assert torch.allclose(br(x), lin(x)) and br.up is None
    assert br.features(br(x)).shape == (2, 4)
    with pytest.raises(TypeError):
        LLMBridge.from_linear(torch.nn.Conv1d(2, 2, 1))


def test_ceiling_is_ridge_nn_on_noise_free_responses(world, monkeypatch):
    """With noise-free blocks that code the class (as the simulator's ground truth does), the
    oracle retrieves training answers of the trial's class; evaluation trials only, no leak."""
    import llm4brain.sim as sim_mod

    w = world
    tc = w["tc"]
    ev = dec2.build_eval_set(w["cfg"], w["stage1"], tc, w["splits"], w["captions"])
    n_cls = int(tc.trials["class_id"].max()) + 1
    codes = np.random.default_rng(0).normal(size=(n_cls,) + tuple(tc.block_shape))
    true_cls = {}     # class of every row from the source of truth, not the poisoned table
    for i, f in enumerate(tc.trials["stim_file"]):
        true_cls[i] = int(str(f).split("/")[0].removeprefix("class"))

    def oracle(cfg, tc_, idx):
        return np.stack([codes[true_cls[int(i)]] for i in idx]).astype(np.float32)

    real = es1.load_stage1_results

    def class_coded_results(cfg):       # video embeddings that carry the class, as real ones do
        arrays, meta = real(cfg)
        arrays = dict(arrays)
        emb = np.random.default_rng(1).normal(size=(n_cls, arrays["train_x"].shape[1]))
        rows = np.asarray(arrays["train_rows"], int)
        arrays["train_x"] = (emb[[true_cls[int(r)] for r in rows]]
                             + 0.1 * np.random.default_rng(2).normal(size=(len(rows), emb.shape[1])))
        return arrays, meta

    monkeypatch.setattr(sim_mod, "noise_free_trial_blocks", oracle)
    monkeypatch.setattr(bl2, "load_stage1_results", class_coded_results)
    monkeypatch.setattr(bl2, "has_ground_truth", lambda cfg: True)
    out = bl2.ceiling_decodes(w["cfg"], tc, ev, w["captions"], same_instruction=False)
    assert list(out.columns)[:len(res2.DECODE_COLUMNS)] == list(res2.DECODE_COLUMNS)
    assert sorted(out["trial_index"]) == sorted(w["splits"].eval_idx.tolist())
    assert not any("LEAKED" in t for t in out["fmri2text"])
    want = [f"a class{true_cls[int(r)]} moves" for r in out["trial_index"]]
    hit = np.mean([a == b for a, b in zip(out["fmri2text"], want)])
    assert hit >= 0.8, hit
    # real data: no ceiling
    monkeypatch.setattr(bl2, "has_ground_truth", lambda cfg: False)
    assert bl2.ceiling_decodes(w["cfg"], tc, ev, w["captions"]) is None


def test_greedy_decoding_generates_each_distinct_input_once(world, monkeypatch):
    """Rows that repeat (tokens and instruction) are generated once and get that answer; the
    answers equal decoding every row on its own (batch size 1, no sharing)."""
    w = world
    cfg = w["cfg"]
    data = s2.build_stage2_data(cfg, w["stage1"], w["tc"], w["splits"], w["captions"])
    model = s2.train_stage2(cfg, data, w["llm"], w["branch"].proj, domain_adaptation=False,
                            progress=False).model
    ev = dec2.build_eval_set(cfg, w["stage1"], w["tc"], w["splits"], w["captions"])
    rows = [0, 1, 0, 2, 1, 0]
    z = ev.z[rows]
    ins = [ev.table["instruction"].iloc[r] for r in rows]
    first, inverse = dec2.unique_inputs(z, ins)
    assert first == [0, 1, 3] and inverse == [0, 1, 0, 2, 1, 0]
    assert dec2.unique_inputs(z, ins[:2] + ["another instruction"] + ins[3:])[0] == [0, 1, 2, 3]
    calls = []
    real = dec2._generate
    monkeypatch.setattr(dec2, "_generate", lambda m, i, *a, **k: calls.append(len(i)) or real(m, i, *a, **k))
    shared = dec2.decode(model, z, ins)
    assert calls == [3]                                   # three distinct inputs, one pass
    alone = [dec2.decode(model, z[i:i + 1], ins[i:i + 1], batch_size=1)[0] for i in range(len(rows))]
    assert shared == alone
    nob = dec2.no_brain_decodes(model, ev)
    assert calls[-1] == ev.table["instruction"].nunique()
    assert (nob.groupby("instruction")["fmri2text"].nunique() == 1).all()
