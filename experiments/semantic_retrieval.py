"""Semantic retrieval on a pseudo-target: clip identification in the read-outs' class/scene space.

Run after notebook 04 of ``make reproduce`` (the default run's trial cache, video-LLM, frame
features; the real targets stay sealed)::

    LLM4BRAIN_HOME=<run home> .venv/bin/python experiments/semantic_retrieval.py [subject]

One training subject plays the target (default: the last one; its runs 3-4 are scored), the
other training subjects train. Rows of :func:`llm4brain.evaluation.stage1.evaluate_stage1`
with ``semantic=fit_semantic_retrieval(...)`` beside a Stage I without training steps (the
ridge read-out, ``stage1.align: false``: its ``stage1`` rows are that read-out) and the ridge
baseline, same distractors; ``p_vs_ridge`` is the paired McNemar test. Appends to
``experiments/results/semantic_retrieval.csv`` and prints the rows.
"""
import sys
import time

import pandas as pd

from llm4brain.data import load_stimuli
from llm4brain.evaluation.semantic import fit_semantic_retrieval
from llm4brain.evaluation.stage1 import evaluate_stage1
from llm4brain.experiments import experiment_inputs, tune_stage1
from llm4brain.training.tuning import pseudo_target_splits, sealed_cache, with_overrides

from _common import RESULTS, require_run
from zero_shot import READOUT

OUT = RESULTS / "semantic_retrieval.csv"


def main(subject=None, profile: str = "default") -> None:
    require_run(profile, "04")
    x = experiment_inputs(profile)
    stim = load_stimuli(x.cfg)
    cfg = with_overrides(x.cfg, READOUT, 0)
    ps = pseudo_target_splits(x.tc.trials, x.splits, cfg, subject)
    pt = ps.target_subjects[0]
    sc = sealed_cache(x.tc, x.splits)
    t0 = time.time()
    _, models = tune_stage1(cfg, x.tc, x.splits, {"readout": {}}, seeds=(0,), pseudo_target=pt,
                            vlm=x.vlm, features=x.features, progress=False)
    res, _ = models[("readout", 0)]
    sr = fit_semantic_retrieval(cfg, sc, ps, x.vlm, x.features, stim)
    print("read-outs:", sr.readout.info, flush=True)
    print("video probes:", {k: dict(C=p.C, loso=round(p.loso[(0, p.C)], 3))
                            for k, p in sr.probes.items()}, flush=True)
    ev = evaluate_stage1(cfg, res.model, sc, ps, res.video, save=False, progress=False,
                         semantic=sr)
    t = ev.retrieval[ev.retrieval.subject == "all"].assign(pseudo_target=pt,
                                                          seconds=round(time.time() - t0))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    t.to_csv(OUT, mode="a", header=not OUT.is_file(), index=False)
    with pd.option_context("display.width", 200):
        print(t.drop(columns=["seconds"]).round(4).to_string(index=False))


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0] if a and a[0] not in ("", "null") else None)
