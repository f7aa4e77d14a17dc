"""Stage I candidates on the pseudo-target: identification of the trial's clip (top-1 of 20).

Run after ``make reproduce`` (it reads the default run's trial cache, video-LLM and frame
features; the real targets stay sealed: ``llm4brain.experiments.tune_stage1`` trains on the
pseudo-target splits from the sealed cache). A candidate whose MAE does not exist yet (another
tokenizer, more MAE steps) gets it pretrained first on the training subjects' volumes, as
notebook 02 does::

    .venv/bin/python experiments/stage1_candidates.py \
        '{"default": {}, "whole encoder trained": {"stage1.train_encoder": true}}' '[0]'

A fourth argument names the training subject that plays the target (default: the last
training subject, sub-04 on the default profile; its rows are named ``<name> [pt <subject>]``
when it is not the default). A third argument names another profile (its notebooks 00-02 run first, e.g.
``make runs/scale/notebooks/02_tokenizer_design.ipynb PROFILE=scale``); its video-LLM is
pretrained here when missing, as notebook 03 does.

Appends to ``experiments/results/stage1_candidates.csv`` (one row per candidate, seed, split,
method; another profile's candidates are named ``<profile>: <name>``) and prints the table.
Without arguments: ``'{"default": {}}' '[0]'`` (the profile as it is).
"""
import json
import sys
import time

import pandas as pd

from llm4brain.config import load_config
from llm4brain.data import iter_run_volumes
from llm4brain.experiments import experiment_inputs, tune_stage1
from llm4brain.training.mae import mae_run_name, pretrain_mae, volume_windows
from llm4brain.training.tuning import with_overrides
from llm4brain.training.vlpretrain import pretrain_video_llm

from _common import RESULTS, require_run

OUT = RESULTS / "stage1_candidates.csv"


def ensure_mae(c, tc, splits) -> float:
    """Pretrain the candidate's MAE when it is missing; seconds spent."""
    if not c.mae.pretrained:
        return 0.0
    t0 = time.time()
    windows = volume_windows(iter_run_volumes(c, splits.train_subjects, tc), tc.block_shape[0],
                             c.mae.block_stride, c.mae.max_blocks)
    res = pretrain_mae(c, windows, mask=tc.mask, affine=tc.affine, progress=False)
    print(f"MAE {mae_run_name(c)}: {'trained' if res.trained else 'reloaded'}", flush=True)
    return time.time() - t0


def main(candidates: dict, seeds: list, profile: str = "default",
         pseudo_target: str | None = None) -> None:
    require_run(profile, "02")     # its MAE and video-LLM are trained here when missing
    try:
        x = experiment_inputs(profile)
    except FileNotFoundError as e:       # notebook 03 has not run: pretrain the video-LLM here
        if "vlpretrain-" not in str(e):   # the checkpoint path names the video-LLM run
            raise
        c, t0 = load_config(profile), time.time()
        pretrain_video_llm(c, device=c.run.device, progress=False)
        print(f"video-LLM of profile {profile} pretrained: {time.time() - t0:.0f} s", flush=True)
        x = experiment_inputs(profile)
    cfg, tc, splits = x.cfg, x.tc, x.splits
    for name, over in candidates.items():
        for seed in seeds:
            t_mae = ensure_mae(with_overrides(cfg, over, seed), tc, splits)
            t0 = time.time()
            rows, _ = tune_stage1(cfg, tc, splits, {name: over}, seeds=[seed], vlm=x.vlm,
                                  features=x.features, progress=False,
                                  pseudo_target=pseudo_target)
            if profile != "default":
                rows = rows.assign(candidate=f"{profile}: {name}")
            if pseudo_target:
                rows = rows.assign(candidate=rows.candidate + f" [pt {pseudo_target}]")
            rows = rows.assign(overrides=json.dumps(over, sort_keys=True),
                               mae_s=round(t_mae), stage1_s=round(time.time() - t0))
            OUT.parent.mkdir(parents=True, exist_ok=True)
            rows.to_csv(OUT, mode="a", header=not OUT.is_file(), index=False)
            print(rows[["candidate", "seed", "split", "method", "top1", "p_value",
                        "n_trials", "stage1_s"]].to_string(index=False), flush=True)
    print(pd.read_csv(OUT).pivot_table(index="candidate", columns=["split", "method"],
                                       values="top1", aggfunc="mean").round(1).to_string())


if __name__ == "__main__":
    main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {"default": {}},
         json.loads(sys.argv[2]) if len(sys.argv) > 2 else [0],
         *(sys.argv[3:4] or ["default"]), *(a for a in sys.argv[4:5] if a))
