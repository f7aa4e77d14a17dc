"""Stage I of a finished run over training seeds: identification on the target subjects and
the training subjects' held-out runs, beside the centred ridge and the ceiling.

Run after ``make reproduce`` (it reads the run's trial cache, MAE and video-LLM, which stay
those of ``run.seed``; only Stage I is retrained per seed, as Table 3's seeds are)::

    .venv/bin/python experiments/stage1_seeds.py '[0, 1, 2]' [profile] [--overwrite]

Writes ``experiments/results/stage1_seeds.csv`` (one row per seed, split, method) and prints mean,
sd and the paired test against the ridge per seed. An existing CSV is a finished result: the
script stops before training unless ``--overwrite`` is given (or move the file aside, e.g. to
``stage1_seeds_<machine>_<revision>.csv``, as the earlier runs' files are).
"""
from __future__ import annotations

import json
import sys
import time

import pandas as pd

from llm4brain.data import load_splits, load_trial_cache
from llm4brain.evaluation.stage1 import evaluate_stage1
from llm4brain.training.mae import load_pretrained_mae
from llm4brain.training.stage1 import train_stage1
from llm4brain.training.vlpretrain import load_video_llm, video_features

from _common import RESULTS, require_run

OUT = RESULTS / "stage1_seeds.csv"


def main(seeds, profile: str = "default", overwrite: bool = False) -> None:
    if OUT.exists() and not overwrite:
        raise SystemExit(f"{OUT} exists (a finished result): move it aside or pass --overwrite")
    base = require_run(profile, "03")
    tc = load_trial_cache(base)
    splits = load_splits(base.run_dir / "splits.json")
    vlm = load_video_llm(base)
    features = video_features(base, progress=False)
    mae = load_pretrained_mae(base, tc.block_shape, tc.mask, tc.affine)
    rows = []
    for seed in seeds:
        cfg = base.replace(run__seed=int(seed))
        t0 = time.time()
        res = train_stage1(cfg, tc, splits, vlm=vlm, features=features, mae=mae, progress=False)
        ev = evaluate_stage1(cfg, res.model, tc, splits, res.video, save=False, progress=False)
        t = ev.retrieval[ev.retrieval["subject"] == "all"].assign(
            seed=int(seed), stage1_s=round(time.time() - t0), run_name=res.run_name)
        rows.append(t)
        print(t[["seed", "split", "method", "top1", "top1_uncentred", "p_value", "p_vs_ridge",
                 "n_trials"]].to_string(index=False), flush=True)
    df = pd.concat(rows, ignore_index=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(OUT, index=False)
    summ = (100 * df.groupby(["split", "method"])["top1"].agg(["mean", "std", "count"])).round(1)
    summ["count"] = summ["count"] / 100
    print(summ.to_string())
    print(f"wrote {OUT}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--overwrite"]
    main(json.loads(args[0]) if args else [0, 1, 2], *args[1:2], overwrite="--overwrite" in sys.argv)
