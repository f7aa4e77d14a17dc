"""Domain adaptation on vs off on the pseudo-target, over Stage II seeds.

A training subject plays the target (the last one, sub-04 on the default profile: its first
runs are DA's unlabelled adaptation trials, its other runs are scored; the real targets stay
sealed: ``llm4brain.experiments.tune_stage2``). One Stage I (the profile's, trained on the
other training subjects) serves every Stage II; for each seed, Stage II is trained with and
without DA and decodes the scored trials. Scores: agent / scene named right against the
simulator's truth, BERTScore against Video2Text, distinct answers; per seed the paired
difference DA on - off, and over the trials a one-sided sign-flip test of the agent accuracy
averaged over the seeds. Needs the profile's run through notebook 04 (``make reproduce``).

    .venv/bin/python experiments/da_seeds_pseudo_target.py ['[0, 1, 2]']

Writes ``experiments/results/da_seeds_pseudo_target.csv`` (one row per condition, seed,
metric) and prints the summary.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd

from llm4brain.captions import load_captions
from llm4brain.data import load_stimuli
from llm4brain.evaluation.attributes import (AttributeParser, attribute_correct, sign_flip_pvalue,
                                             truth_frame)
from llm4brain.evaluation.metrics import TextScorer
from llm4brain.experiments import experiment_inputs, tune_stage2

from _common import RESULTS, require_run

OUT = RESULTS / "da_seeds_pseudo_target.csv"
CANDIDATES = {"DA on": {"stage2.domain_adaptation": True},
              "DA off": {"stage2.domain_adaptation": False}}


def agent_hits(dec: pd.DataFrame, stim: pd.DataFrame) -> pd.Series:
    """1.0 / 0.0 per trial (indexed by trial): does the answer name the clip's true agent?"""
    dec = dec.sort_values("trial_index")
    ok = attribute_correct(AttributeParser().frame(dec["fmri2text"].astype(str).tolist()),
                           truth_frame(stim, dec["stim_file"].tolist()))
    return pd.Series(ok["agent"].to_numpy(float), index=dec["trial_index"].to_numpy())


def main(seeds, profile: str = "default") -> None:
    require_run(profile, "04")
    x = experiment_inputs(profile)
    captions, stim = load_captions(x.cfg), load_stimuli(x.cfg)
    t0 = time.time()
    rows, tables = tune_stage2(x.cfg, x.tc, x.splits, captions, stim, CANDIDATES, seeds=seeds,
                               vlm=x.vlm, features=x.features, scorer=TextScorer(x.cfg.eval),
                               progress=False)
    rows = rows.assign(seconds=round(time.time() - t0))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(OUT, index=False)
    keep = ["agent", "scene", "bertscore", "distinct"]
    r = rows[rows.metric.isin(keep)]
    print(r.pivot_table(index=["candidate", "condition"], columns="metric", values="value",
                        aggfunc=["mean", "std"]).round(2).to_string())
    fm = r[r.condition == "fMRI2Text"].pivot_table(index=["seed", "metric"], columns="candidate",
                                                   values="value")
    d = (fm["DA on"] - fm["DA off"]).unstack("metric")
    print("DA on - DA off per seed:\n" + d.round(2).to_string())
    on = np.mean([agent_hits(tables[("DA on", s)], stim) for s in seeds], 0)
    off = np.mean([agent_hits(tables[("DA off", s)], stim) for s in seeds], 0)
    print(f"agent, mean over seeds: DA on {100 * on.mean():.1f} %, off {100 * off.mean():.1f} %; "
          f"one-sided sign-flip p (on > off) = {sign_flip_pvalue(on - off, 10000, 0):.3g}, "
          f"(off > on) = {sign_flip_pvalue(off - on, 10000, 0):.3g}")
    print(f"wrote {OUT} ({round(time.time() - t0)} s)")


if __name__ == "__main__":
    main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else [0, 1, 2], *sys.argv[2:3])
