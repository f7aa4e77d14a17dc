"""Stage II candidates on the pseudo-target: does fMRI2Text name what was shown?

Run after notebook 04 of ``make reproduce`` (it reads the default run's trial cache, video-LLM,
frame features and surrogate captions; the real targets stay sealed:
``llm4brain.experiments.tune_stage2`` trains and decodes on the pseudo-target splits of the
sealed cache). Each candidate is a set of dotted overrides (Stage I and Stage II settings
together: its Stage I is trained first, once per training seed)::

    .venv/bin/python experiments/stage2_candidates.py \
        '{"default": {}, "soft CLIP": {"stage1.soft_tau": 0.02}}' '[0]'

Scores per candidate and seed: attribute accuracy against the simulator's truth (agent,
action, scene), the same decoder fed shuffled fMRI (one derangement), distinct answers,
BERTScore against Video2Text, the ridge + NN baseline of the candidate's Stage I, and its
zero-shot decode (the Stage I tokens through the video-LLM's own projection, no Stage II
training, with its shuffled fMRI): Stage II has to beat it.
Appends to ``experiments/results/stage2_candidates.csv`` and prints the table. Without
arguments: ``'{"default": {}}' '[0]'`` (the profile as it is).
"""
import json
import sys
import time

import pandas as pd

from llm4brain.captions import load_captions
from llm4brain.data import load_stimuli
from llm4brain.evaluation.metrics import TextScorer
from llm4brain.experiments import experiment_inputs, tune_stage2

from _common import RESULTS, require_run

OUT = RESULTS / "stage2_candidates.csv"


def main(candidates: dict, seeds: list, profile: str = "default") -> None:
    require_run(profile, "04")
    x = experiment_inputs(profile)
    captions, stim = load_captions(x.cfg), load_stimuli(x.cfg)
    scorer = TextScorer(x.cfg.eval)
    for name, over in candidates.items():
        t0 = time.time()
        rows, _ = tune_stage2(x.cfg, x.tc, x.splits, captions, stim, {name: over},
                              seeds=seeds, seed_key="run.seed", vlm=x.vlm,
                              features=x.features, scorer=scorer, zero_shot=True,
                              progress=False)
        rows = rows.assign(overrides=json.dumps(over, sort_keys=True),
                           seconds=round(time.time() - t0))
        OUT.parent.mkdir(parents=True, exist_ok=True)
        rows.to_csv(OUT, mode="a", header=not OUT.is_file(), index=False)
        print(rows.pivot_table(index=["candidate", "condition"], columns="metric",
                               values="value", aggfunc="mean").round(1).to_string(), flush=True)
    t = pd.read_csv(OUT)
    print(t.pivot_table(index=["candidate", "condition"], columns="metric", values="value",
                        aggfunc="mean").round(1).to_string())


if __name__ == "__main__":
    main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {"default": {}},
         json.loads(sys.argv[2]) if len(sys.argv) > 2 else [0])
