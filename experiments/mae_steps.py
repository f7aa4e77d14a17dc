"""Does SC-MBM pretraining learn with more steps? Masked MSE on validation runs over training.

One cnn3d MAE of the default profile (masked cells hidden from the tokenizer) is trained on the
windows of the training subjects' *training* runs only (their validation runs stay unseen), with
AdamW (lr 1e-3, wd 0.05, betas 0.9/0.95, 100 warm-up steps, cosine to ``steps``, gradient
clipping 1), batch 32. At a few steps on the way, :func:`llm4brain.training.mae.mae_baselines`
scores it on the validation runs' first 128 blocks beside predicting zero and the neighbour fill
(fitted on those very blocks); at the end, :func:`encoder_probes` reads the 12 classes from the
voxels, the tokenizer's tokens and the encoder's tokens (train trials -> validation trials).

    .venv/bin/python experiments/mae_steps.py 3000

Needs ``make nb NB=02`` (the default run's trial cache and splits). Writes
``experiments/results/mae_steps.csv`` (one row per evaluated step, the probes in the last one).
"""
import math
import sys
import time

import numpy as np
import pandas as pd
import torch

from llm4brain.data import iter_run_volumes, load_splits, load_trial_cache
from llm4brain.models.encoder import build_mae
from llm4brain.training.mae import encoder_probes, mae_baselines, mae_loss_fn, volume_windows

from _common import RESULTS, require_run

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
lr = 1e-3
cfg = require_run("default", "02", script="mae_steps.py")
tc, splits = load_trial_cache(cfg), load_splits(cfg.run_dir / "splits.json")
vt = tc.trials
val_runs = set(map(tuple, vt.iloc[splits.val_idx][["subject", "run"]].drop_duplicates().to_numpy()))
runs = [(s, r, v) for s, r, v in iter_run_volumes(cfg, splits.train_subjects, tc) if (s, r) not in val_runs]
W = volume_windows(runs, cfg.data.block_trs)
print(f"{len(W)} training windows; {len(val_runs)} validation runs held out", flush=True)
model = build_mae(cfg, tc.block_shape, tc.mask, tc.affine)
val = torch.from_numpy(np.asarray(tc.blocks[np.sort(splits.val_idx)[:128]]))
opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05, betas=(0.9, 0.95))
rng = np.random.default_rng(cfg.run.seed)
torch.manual_seed(cfg.run.seed)
rows, t0 = [], time.time()
evals = sorted({200, 500, 1000, 2000, steps} & set(range(1, steps + 1)))
for step in range(1, steps + 1):
    f = min(1.0, step / 100) * 0.5 * (1 + math.cos(math.pi * step / steps))
    for g in opt.param_groups:
        g["lr"] = lr * f
    model.train()
    loss, _ = mae_loss_fn(model, torch.from_numpy(W[np.sort(rng.choice(len(W), 32, replace=False))]))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if step in evals:
        r = mae_baselines(model, val, seed=cfg.run.seed)
        r.update(step=step, train_loss=float(loss.detach()), seconds=round(time.time() - t0, 1))
        print(r, flush=True)
        rows.append(r)
tr, te = np.sort(splits.train_idx), np.sort(splits.val_idx)
y = vt["class_id"].to_numpy()
probes = encoder_probes(model.encoder, tc.blocks[tr], y[tr], tc.blocks[te], y[te], tc.mask)
print("12-class probes (chance 8.3 %):", probes)
rows[-1].update({f"probe_{k}": v for k, v in probes.items()})
pd.DataFrame(rows).to_csv(RESULTS / "mae_steps.csv", index=False)
