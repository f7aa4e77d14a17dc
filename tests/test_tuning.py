"""Pseudo-target protocol: tuning code sees training subjects only (issue: honest tuning)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from llm4brain.data import Splits
from llm4brain.evaluation import stage1 as es1
from llm4brain.models import stage1 as ms1
from llm4brain.training import stage1 as s1
from llm4brain.training.guard import LeakageError, target_evaluation_view
from llm4brain.training.tuning import (SEALED_COLUMNS, default_pseudo_target, pseudo_run_name,
                                       pseudo_target_splits, sealed_cache)



def test_pseudo_target_splits_hold_no_real_target_row(tiny_world, tmp_path):
    w = tiny_world(tmp_path)
    tc, splits = w["tc"], w["splits"]
    ps = pseudo_target_splits(tc.trials, splits, w["cfg"])
    assert default_pseudo_target(splits) == "02"
    assert ps.train_subjects == ("01",) and ps.target_subjects == ("02",)
    sub = tc.trials["subject"].to_numpy()
    run = tc.trials["run"].to_numpy()
    every = np.concatenate([ps.train_idx, ps.val_idx, ps.adapt_idx, ps.eval_idx])
    assert not np.isin(sub[every], list(splits.target_subjects)).any()
    # the pseudo-target's first run adapts (unlabelled), its other run is scored
    assert set(sub[ps.adapt_idx]) == set(sub[ps.eval_idx]) == {"02"}
    assert set(run[ps.adapt_idx]) == {1} and set(run[ps.eval_idx]) == {2}
    assert np.array_equal(ps.train_idx, splits.train_idx[sub[splits.train_idx] == "01"])
    assert np.array_equal(ps.val_idx, splits.val_idx[sub[splits.val_idx] == "01"])
    assert pseudo_run_name("stage1-abc", ps) == "stage1-abc-pt02"


def test_pseudo_target_refuses_a_real_target_and_a_lone_training_subject(tiny_world, tmp_path):
    w = tiny_world(tmp_path)
    with pytest.raises(LeakageError, match="real target subject"):
        pseudo_target_splits(w["tc"].trials, w["splits"], w["cfg"], "03")
    with pytest.raises(ValueError, match="not a training subject"):
        pseudo_target_splits(w["tc"].trials, w["splits"], w["cfg"], "09")
    sp = w["splits"]
    one = Splits(("01",), sp.target_subjects, sp.train_idx[:6], sp.val_idx[:6], sp.adapt_idx,
                 sp.eval_idx)
    with pytest.raises(ValueError, match="at least 2 training subjects"):
        pseudo_target_splits(w["tc"].trials, one, w["cfg"])


def test_sealed_cache_refuses_every_read_of_target_blocks(tiny_world, tmp_path):
    w = tiny_world(tmp_path)
    tc, splits = w["tc"], w["splits"]
    sc = sealed_cache(tc, splits)
    tgt = np.flatnonzero(tc.trials["subject"].to_numpy() == "03")
    ok = np.flatnonzero(tc.trials["subject"].to_numpy() != "03")
    assert np.array_equal(sc.blocks[ok], tc.blocks[ok])          # training subjects: as before
    assert sc.blocks.shape == tc.blocks.shape and len(sc.blocks) == len(tc.blocks)
    for key in (tgt, tgt[:1], int(tgt[0]), slice(0, None), (tgt[0], 0)):
        with pytest.raises(LeakageError, match="real target subject"):
            sc.blocks[key]
    with pytest.raises(LeakageError, match="cannot be read whole"):
        np.asarray(sc.blocks)
    t = sc.trials
    rows = t["subject"].to_numpy() == "03"
    for col in SEALED_COLUMNS:
        if col in t:
            assert set(t.loc[rows, col].astype(str)) <= {"-1", "-1.0", ""}, col
    assert (t.loc[~rows, "stim_file"] == tc.trials.loc[~rows, "stim_file"]).all()


def test_stage1_tuning_run_never_touches_the_targets(tiny_world, tmp_path):
    """Train and score Stage I on the pseudo-target through the sealed cache: any read of a
    real target's block or label would raise; the scored trials are the pseudo-target's."""
    w = tiny_world(tmp_path)
    cfg, tc, splits = w["cfg"], w["tc"], w["splits"]
    ps = pseudo_target_splits(tc.trials, splits, cfg)
    sc = sealed_cache(tc, splits)
    parts = dict(mae=SimpleNamespace(encoder=w["encoder"]), vlm=SimpleNamespace(branch=w["branch"]))
    name = pseudo_run_name(s1.stage1_run_name(cfg), ps)
    res = s1.train_stage1(cfg, sc, ps, features=w["features"], progress=False, name=name,
                          **parts)
    assert res.run_name == name and (cfg.run_dir / "checkpoints" / name).is_dir()
    assert not (cfg.run_dir / "checkpoints" / s1.stage1_run_name(cfg)).exists()
    ev = es1.evaluate_stage1(cfg, res.model, sc, ps, res.video, save=False, progress=False)
    t = ev.retrieval
    assert set(t[t.split == "eval"]["subject"]) == {"all", "02"}
    assert set(ev.embeddings["eval"]["meta"]["subject"]) == {"02"}
    # scoring the real targets through the sealed cache is impossible
    view = target_evaluation_view(sc, splits)
    with pytest.raises(LeakageError, match="real target subject"):
        ms1.embed_fmri(res.model, view.blocks, len(view))


def test_stage2_tuning_over_seeds_reads_training_subjects_only(tiny_world, make_tiny_llm, tmp_path):
    """DA on/off over two seeds on the pseudo-target: the targets' blocks are sealed and their
    labels/captions poisoned; nothing of them may appear, every decode is the pseudo-target's."""
    import pandas as pd

    from llm4brain.evaluation.attributes import ATTRIBUTES
    from llm4brain.experiments import tune_stage2

    w = tiny_world(tmp_path)
    tc, splits, caps = w["tc"], w["splits"], w["captions"]
    tgt = tc.trials["subject"] == "03"
    tc.trials.loc[tgt, "class_name"] = "LEAKED_CLASS"
    caps.loc[caps["subject"] == "03", "answer"] = "LEAKED ANSWER"
    stim = pd.DataFrame({"stim_file": tc.trials["stim_file"],
                         **{a: ["x"] * len(tc.trials) for a in ATTRIBUTES}})
    stim["agent"] = ["ball" if i % 2 else "car" for i in range(len(stim))]
    llm = make_tiny_llm(list(caps["answer"]) + ["a ball", "a car"], hidden=32, layers=1,
                        heads=2)
    vlm = SimpleNamespace(branch=w["branch"], llm=llm)
    cands = {"DA on": {"stage2.domain_adaptation": True},
             "DA off": {"stage2.domain_adaptation": False}}
    table, decodes = tune_stage2(w["cfg"], tc, splits, caps, stim, cands, seeds=(0, 1),
                                 vlm=vlm, features=w["features"],
                                 mae=SimpleNamespace(encoder=w["encoder"]), zero_shot=True,
                                 progress=False)
    assert set(table["candidate"]) == {"DA on", "DA off", "(baseline)"}
    assert set(table["seed"]) == {0, 1}
    assert set(table["condition"]) == {"fMRI2Text", "shuffled fMRI", "ridge + NN", "zero-shot",
                                       "zero-shot, shuffled fMRI"}
    # zero-shot: once per Stage I (one Stage I serves both candidates and seeds here)
    zs = table[(table.condition == "zero-shot") & (table.metric == "agent")]
    assert len(zs) == 1 and list(zs["candidate"]) == ["DA on"]
    assert ("DA on (zero-shot)", 0) in decodes
    assert {"agent", "scene", "distinct"} <= set(table["metric"])
    got = table[table.metric == "agent"]["value"]
    assert ((got >= 0) & (got <= 100)).all()
    for (cand, seed), dec in decodes.items():
        assert set(dec["subject"]) == {"02"}
        assert np.array_equal(np.sort(dec["trial_index"]),
                              np.sort(pseudo_target_splits(tc.trials, splits, w["cfg"]).eval_idx))
        assert not dec.apply(lambda r: r.astype(str).str.contains("LEAKED")).any().any()
    ck = sorted(p.name for p in (w["cfg"].run_dir / "checkpoints").iterdir())
    assert ck and all(n.endswith("-pt02") for n in ck), ck
    assert sum(n.startswith("stage2-da-") for n in ck) == 2      # one per seed
    assert sum(n.startswith("stage1-") for n in ck) == 1         # one Stage I for all
