"""Tokenizer candidates on the pseudo-target: Stage I identification and Stage II decoding.

Run after ``make reproduce`` (it reads the default run's trial cache, MAEs, video-LLM and
captions); the real targets stay sealed (``llm4brain.experiments`` uses the pseudo-target
splits and the sealed cache)::

    .venv/bin/python experiments/tokenizer_pseudo_target.py \
        '{"cnn3d (default)": {}, "nvl": {"tokenizer.kind": "nvl"}}' '[0]'

Writes ``experiments/results/tokenizer_pseudo_target/stage{1,2}.csv``; without arguments,
these two candidates and seed 0.
"""
import json
import sys
import time

import pandas as pd

from llm4brain.captions import load_captions
from llm4brain.data import load_stimuli
from llm4brain.evaluation.metrics import TextScorer
from llm4brain.experiments import experiment_inputs, tune_stage1, tune_stage2

from _common import RESULTS, require_run

OUT = RESULTS / "tokenizer_pseudo_target"
#: The candidates without arguments (those of the committed results).
CANDIDATES = {"cnn3d (default)": {}, "nvl": {"tokenizer.kind": "nvl"}}


def main(candidates: dict, seeds: list, profile: str = "default") -> None:
    require_run(profile, "04")
    x = experiment_inputs(profile)
    cfg, tc, splits, vlm, features = x.cfg, x.tc, x.splits, x.vlm, x.features
    t0 = time.time()
    s2, _ = tune_stage2(cfg, tc, splits, load_captions(cfg), load_stimuli(cfg), candidates,
                        seeds=seeds, seed_key="run.seed", vlm=vlm, features=features,
                        scorer=TextScorer(cfg.eval), progress=False)
    # the Stage I models exist now (tune_stage2 trained them): this loads and scores them
    s1 = pd.concat([tune_stage1(cfg, tc, splits, {k: v}, seeds=seeds, vlm=vlm,
                                features=features, progress=False)[0]
                    for k, v in candidates.items()])
    OUT.mkdir(parents=True, exist_ok=True)
    s1.to_csv(OUT / "stage1.csv", index=False)
    s2.to_csv(OUT / "stage2.csv", index=False)
    print(s1.to_string())
    print(s2.pivot_table(index=["candidate", "condition"], columns="metric", values="value",
                         aggfunc="mean").round(2).to_string())
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else CANDIDATES,
         json.loads(sys.argv[2]) if len(sys.argv) > 2 else [0])
