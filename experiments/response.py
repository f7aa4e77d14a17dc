"""What a trial block holds (``data.response``), compared on a pseudo-target.

Run after notebook 04 of ``make reproduce`` (the default run's dataset, video-LLM, frame
features and surrogate captions; the real targets stay sealed)::

    LLM4BRAIN_HOME=<run home> .venv/bin/python experiments/response.py '["block", "beta"]' [subject]

For each ``data.response`` (its own trial cache, built here when missing), with one training
subject as the pseudo-target (default: the last; ``subject`` to choose another):

1. the voxels' own logistic read-outs of class, agent and scene
   (``semantic_readout.fit_logistic``: PCA 256, standardised; C by leave-one-subject-out
   over the training subjects, whose accuracy is shown too);
2. Stage I and Stage II trained as the profile has them (``tune_stage2``: DA on), fMRI2Text
   on the pseudo-target's scored trials beside its shuffled-fMRI decodes and the ridge + NN
   baseline; Stage I's identification with its ridge baseline (``tune_stage1``).

Appends to ``experiments/results/response.csv`` and prints the rows.
"""
import json
import sys
import time

import numpy as np
import pandas as pd
from llm4brain.captions import load_captions
from llm4brain.data import load_stimuli, load_trial_cache, voxel_features
from llm4brain.evaluation.attributes import truth_frame
from llm4brain.evaluation.metrics import TextScorer
from llm4brain.experiments import experiment_inputs, tune_stage1, tune_stage2
from llm4brain.training.guard import source_view, target_evaluation_view
from llm4brain.training.tuning import pseudo_target_splits, sealed_cache, with_overrides

from _common import RESULTS, require_run
from semantic_readout import fit_logistic

OUT = RESULTS / "response.csv"
def voxel_readouts(cfg, tc, splits, stim, subject):
    """Class / agent / scene from the voxels: (pseudo-target accuracy, LOSO accuracy, C)."""
    ps = pseudo_target_splits(tc.trials, splits, cfg, subject)
    sc = sealed_cache(tc, splits)
    sv, ev = source_view(sc, ps, "train"), target_evaluation_view(sc, ps)
    X = voxel_features(sv.blocks, len(sv), tc.mask)
    Xe = voxel_features(ev.blocks, len(ev), tc.mask)
    g = np.asarray(sv.subject).astype(str)
    t, te = truth_frame(stim, list(sv.stim_file)), truth_frame(stim, list(ev.stim_file))
    t["class"], te["class"] = np.asarray(sv.class_name), np.asarray(ev.class_name)
    out = {}
    for att in ("class", "agent", "scene"):
        clf, c, loso = fit_logistic(X, t[att].to_numpy(), g)
        acc = float((clf.predict(Xe) == te[att].to_numpy()).mean())
        out[att] = (100 * acc, 100 * loso[c], c)
    return ps.target_subjects[0], len(ev), out


def main(responses=("block", "beta"), subject=None, seed: int = 0, profile: str = "default"):
    require_run(profile, "04")
    x = experiment_inputs(profile)
    stim = load_stimuli(x.cfg)
    for resp in responses:
        t0 = time.time()
        cfg = with_overrides(x.cfg, {"data.response": resp}, seed)
        tc = load_trial_cache(cfg)
        captions = load_captions(cfg)
        pt, n, ro = voxel_readouts(cfg, tc, x.splits, stim, subject)
        rows = [dict(response=resp, pseudo_target=pt, seed=seed, part="voxel read-out",
                     condition=f"voxels -> {a} (C={c:g})", metric=a, value=round(v, 1),
                     loso_training_subjects=round(lv, 1), n_trials=n)
                for a, (v, lv, c) in ro.items()]
        s1, _ = tune_stage1(cfg, tc, x.splits, {resp: {}}, seeds=(seed,), pseudo_target=pt,
                            vlm=x.vlm, features=x.features, progress=False)
        rows += [dict(response=resp, pseudo_target=pt, seed=seed, part="Stage I",
                      condition=f"{r.method} ({r.split})", metric="top1 of 20",
                      value=round(r.top1, 1), p_value=r.p_value, n_trials=r.n_trials)
                 for r in s1.itertuples()]
        s2, _ = tune_stage2(cfg, tc, x.splits, captions, stim, {resp: {}}, seeds=[seed],
                            seed_key="run.seed", pseudo_target=pt, vlm=x.vlm,
                            features=x.features, scorer=TextScorer(cfg.eval), progress=False)
        rows += [dict(response=resp, pseudo_target=pt, seed=seed, part="Stage II",
                      condition=r.condition, metric=r.metric, value=round(r.value, 2))
                 for r in s2.itertuples()]
        t = pd.DataFrame(rows).assign(seconds=round(time.time() - t0))
        OUT.parent.mkdir(parents=True, exist_ok=True)
        t.to_csv(OUT, mode="a", header=not OUT.is_file(), index=False)
        with pd.option_context("display.width", 200, "display.max_rows", 200):
            print(t.drop(columns=["seed"]).to_string(index=False), flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    main(tuple(json.loads(a[0])) if a else ("block", "beta"), (a[1] or None) if len(a) > 1 else None)
