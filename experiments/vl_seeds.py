"""How much the video-LLM's answers move with its training seed (default recipe, this CPU).

Run in a default run directory built by ``make reproduce`` (its frame features and trial
cache)::

    LLM4BRAIN_HOME=<run home> .venv/bin/python experiments/vl_seeds.py [seeds]   # e.g. 0,1,2

For each seed, :func:`llm4brain.training.vlpretrain.pretrain_video_llm` with ``run.seed`` set
(seed 0 is the run's own video-LLM, loaded; the others are trained and saved beside it under
their own names), then greedy answers for every 4th clip of the subjects' stimulus table
(360 clips of the default profile; instruction ``k mod 3`` of ``captions.instructions``), read
back with :class:`llm4brain.evaluation.attributes.AttributeParser` and scored against the
clips' true attributes. Nothing here touches fMRI. Appends to ``experiments/results/vl_seeds.csv``
and prints the rows with their mean and sd over seeds.
"""
import sys
import time

import numpy as np
import pandas as pd

from llm4brain.data import load_stimuli
from llm4brain.evaluation.attributes import (AttributeParser, attribute_accuracy, distinct_share,
                                             truth_frame)
from llm4brain.training.vlpretrain import pretrain_video_llm, video_features

from _common import RESULTS, require_run

OUT = RESULTS / "vl_seeds.csv"


def main(seeds=(0, 1, 2), profile: str = "default") -> None:
    cfg0 = require_run(profile, "03")
    stim = load_stimuli(cfg0)
    feats = video_features(cfg0, stim, progress=False)
    files = sorted(stim.loc[stim["corpus"] == "subjects", "stim_file"].astype(str))[::4]
    ins = list(cfg0.captions.instructions)
    prompts = [ins[k % len(ins)] for k in range(len(files))]
    truth = truth_frame(stim, files)
    parser = AttributeParser()
    rows = []
    for seed in seeds:
        cfg = cfg0.replace(run__seed=int(seed))
        t0 = time.time()
        vl = pretrain_video_llm(cfg, stim=stim, features=feats, progress=False)
        train_s = time.time() - t0
        texts = vl.model.generate(feats.get(files), prompts, progress=False)
        acc = attribute_accuracy(parser.frame(texts), truth)
        rows.append(dict(seed=int(seed), trained_here=bool(vl.trained), train_s=round(train_s),
                         n_clips=len(files), distinct=round(100 * distinct_share(texts), 1),
                         **{a: round(100 * float(acc[a]), 1) for a in
                            ("agent", "action", "colour", "size", "direction", "speed", "scene",
                             "agent+action")}))
        print(rows[-1], flush=True)
    t = pd.DataFrame(rows).assign(date=time.strftime("%Y-%m-%d"))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    t.to_csv(OUT, mode="a", header=not OUT.is_file(), index=False)
    num = t.drop(columns=["date", "trained_here"])
    print(num.to_string(index=False))
    print("mean", num.mean().round(1).to_dict())
    print("sd", num.std().round(1).to_dict())


if __name__ == "__main__":
    main(tuple(int(s) for s in sys.argv[1].split(",")) if len(sys.argv) > 1 else (0, 1, 2))
