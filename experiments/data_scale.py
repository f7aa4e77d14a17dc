"""How the fMRI side's linear read-outs scale with the number of runs a subject (issue: data scale).

For each ``sim.n_runs`` the default profile's simulator writes a dataset (same seed, same noise
and reliabilities), the trial cache is built, and a voxel read-out is scored on the
**pseudo-target** (the last training subject; its later runs scored, the other training
subjects' training runs fitted; the real targets are never read): 12-class logistic regression
on the mask voxels of each trial block (mean of its volumes), standardised, C chosen by 3-fold
CV on the fitting trials.

::

    .venv/bin/python experiments/data_scale.py '[4, 8]'     # LLM4BRAIN_HOME decides where

It needs no run: it simulates its own datasets (``runs/default`` for the default's 4 runs,
``runs/default_runs<N>`` for the others). Without an argument: ``[4, 8, 12]``.

Writes ``experiments/results/data_scale.csv`` (appends) and prints it.
"""
import json
import sys
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from llm4brain.config import load_config
from llm4brain.data import build_trial_cache, make_splits
from llm4brain.evaluation.stage1 import voxel_features
from llm4brain.sim import simulate_dataset
from llm4brain.training.tuning import pseudo_target_splits, with_overrides

from _common import RESULTS

OUT = RESULTS / "data_scale.csv"


def block_means(tc, idx) -> np.ndarray:
    """Mask voxels of each trial block, averaged over its volumes (the ridge baseline's
    inputs, :func:`llm4brain.evaluation.stage1.voxel_features`): (n, n_voxels)."""
    idx = np.asarray(idx)
    return voxel_features(lambda pos: np.asarray(tc.blocks[idx[pos]]), len(idx), tc.mask)


def score(cfg) -> dict:
    t0 = time.time()
    simulate_dataset(cfg, progress=False)
    t_sim = time.time() - t0
    tc = build_trial_cache(cfg, progress=False)
    splits = make_splits(tc.trials, cfg, save=False)
    ps = pseudo_target_splits(tc.trials, splits, cfg)
    fit_idx, test_idx = np.asarray(ps.train_idx), np.asarray(ps.eval_idx)
    y = tc.trials["class_id"].to_numpy()
    clf = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=[1e-3, 1e-2, 1e-1], cv=3,
                                                               max_iter=2000))
    clf.fit(block_means(tc, fit_idx), y[fit_idx])
    acc = float((clf.predict(block_means(tc, test_idx)) == y[test_idx]).mean())
    return dict(n_runs=cfg.sim.n_runs, clips_per_subject=cfg.sim.n_runs * cfg.sim.clips_per_run,
                fit_trials=len(fit_idx), scored_trials=len(test_idx),
                pseudo_target=ps.target_subjects[0], logistic_acc=100 * acc,
                chance=100 / cfg.sim.n_classes, noise_sd=cfg.sim.noise_sd,
                simulate_s=round(t_sim), total_s=round(time.time() - t0))


def main(n_runs: list, profile: str = "default") -> None:
    base = load_config(profile)
    for n in n_runs:
        over = {"sim.n_runs": int(n)}
        if int(n) != base.sim.n_runs:
            over["run.run_dir"] = f"runs/{profile}_runs{int(n)}"
        row = score(with_overrides(base, over))
        OUT.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([row]).to_csv(OUT, mode="a", header=not OUT.is_file(), index=False)
        print(json.dumps(row), flush=True)
    print(pd.read_csv(OUT).to_string(index=False))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else [4, 8, 12])
