# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: llm4brain (.venv)
#     language: python
#     name: llm4brain
# ---

# %% [markdown]
# # 01 · Loading HAD-layout data: trial blocks, frames, splits
#
# The loaders read a BIDS dataset in HAD's layout — the real ds004488 on a GPU box or the
# simulated one from notebook 00 — through one code path:
#
# 1. **discover** the runs (fMRIPrep MNI-space derivatives by default; `data.source: raw` reads
#    `sub-XX/ses-action01/func/` instead);
# 2. **clean** each run: regress out the motion confounds, cosine drifts (128 s high-pass) and
#    the mean; z-score each voxel;
# 3. **cut** a spatio-temporal block per trial: `data.block_trs` volumes starting `data.lag_s`
#    after the clip's onset (the HRF delay), cropped to the brain's bounding box — this is what
#    the 3D-CNN tokenizer of notebook 02 reads;
# 4. **cache** the blocks as a memory map keyed by every setting that made them;
# 5. **decode frames** of every clip with decord;
# 6. **split by subject**: training subjects vs target subjects, whose videos and labels are
#    never used in training.
#
# **Runs alone:** `make nb NB=01 [PROFILE=classroom]` runs it after what it needs, the dataset
# (00). It writes the trial cache, the frame cache and the subject splits.
# <!-- time -->**Time:** 24 s on `default` (2-core AMD EPYC, AVX2 only, 2026-12-07); 16 s on `classroom` (2-core AMD EPYC, AVX2 only, 2026-12-07) (`bench/results/notebook_times_*.md`).

# %% tags=["parameters"]
PROFILE = "default"

# %%

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llm4brain.config import load_config
from llm4brain.data import (build_frame_cache, build_trial_cache, directory_size_mb, load_stimuli,
                            make_splits, split_half_reliability)
from llm4brain.plotting import set_house_style, save_figure
from llm4brain.plotting_data import (plot_brain_map, plot_clip_montage, plot_lag_profile,
                                     plot_reliability)
from llm4brain.sim import REGIONS, block_times, lag_profile, region_weights, voxel_coordinates

cfg = load_config(PROFILE)
set_house_style()   # the package's figure style, for this notebook's own figures too
cfg.data

# %% [markdown]
# ## Trial blocks

# %%
tc = build_trial_cache(cfg)
print("blocks:", tc.blocks.shape, tc.blocks.dtype, "| voxels in the brain mask:", int(tc.mask.sum()))
tc.trials.head()

# %% [markdown]
# ## Does a clip evoke a response where it should, and when?
# On simulated data we know each trial's noise-free amplitude at every voxel. Correlating it,
# across trials, with the cleaned BOLD measured at each lag after the onset shows where the
# information is: in the visual regions (not in M1, A1, dlPFC) and 2-6 s after onset, where the
# HRF peaks — the volumes a trial block keeps (`data.lag_s`, `data.block_trs`, shaded).

# %%
sub0 = tc.trials.subject.iloc[0]
coords = voxel_coordinates(tc.mask, tc.affine)
memb = region_weights(coords)
if (cfg.data_root / "derivatives/simulation").is_dir():
    lags = lag_profile(cfg, tc, sub0)
    fig = plot_lag_profile(lags, block_times(cfg, tc), tc.meta["tr"])
    save_figure(fig, "01_lag_profile", cfg)
    display(lags.pivot(index="time_s", columns="region", values="r").round(3))

# %% [markdown]
# ## Single-trial reliability
# Trials of odd and even runs are averaged per class; the correlation of the two class
# profiles at a voxel is the split-half reliability of a mean of *m* trials, and the
# Spearman-Brown formula turns it into the reliability of a **single trial**. Real event-related
# fMRI gives single-trial reliabilities of roughly 0.05-0.3 in responsive visual voxels and ~0
# elsewhere (e.g. the NSD's ncsnr of 0.2-0.6 ⇒ single-trial r = ncsnr²/(1 + ncsnr²) ≈ 0.04-0.26).

# %%
rel = split_half_reliability(tc, sub0)
regions = {r.name: memb[i] > 0.5 for i, r in enumerate(REGIONS)}
fig = plot_reliability(rel["r_single"], regions)
save_figure(fig, "01_reliability_hist", cfg)
fig2 = plot_brain_map(rel["r_single"], tc.mask, tc.affine, threshold=0.02, cut_coords=(40, -70, 0),
                      title=f"single-trial reliability (Spearman-Brown), sub-{sub0}")
save_figure(fig2, "01_reliability_map", cfg)
rel_table = pd.DataFrame([dict(region=k, voxels=int(v.sum()),
                               median_single_trial_r=float(np.median(rel["r_single"][v])),
                               p90_single_trial_r=float(np.percentile(rel["r_single"][v], 90)))
                          for k, v in regions.items() if v.any()])
rel_table.to_csv(cfg.figures_dir / "01_reliability.csv", index=False)
rel_table

# %% [markdown]
# ## Frames
# `data.n_frames` frames sampled uniformly from each clip with decord, resized to
# `data.frame_size` pixels, cached as a uint8 memory map for the video branch (notebook 04).

# %%
stim = load_stimuli(cfg)
fc = build_frame_cache(cfg, stim)
ex = stim.groupby("class_name").head(1).head(4)
fig = plot_clip_montage([fc.frames[fc.row(s)] for s in ex.stim_file], list(ex.description),
                        n_show=min(4, cfg.data.n_frames))
save_figure(fig, "01_frames", cfg)

# %% [markdown]
# ## Splits by subject
# Target subjects are split by run into an *adaptation* part (unlabelled fMRI that domain
# adaptation may see) and an *evaluation* part (never seen in training; every target number
# reported later comes from it). Training subjects keep their last run for validation.

# %%
splits = make_splits(tc.trials, cfg)
print("train subjects:", splits.train_subjects, "| target subjects:", splits.target_subjects)
splits.summary()

# %% [markdown]
# ## What was cached

# %%
cached = pd.DataFrame([
    dict(item="trial blocks", shape=str(tc.blocks.shape), dtype="float32",
         MB=round(directory_size_mb(tc.path), 1), path=str(tc.path.relative_to(cfg.run_dir)),
         build_s=tc.meta.get("build_seconds")),
    dict(item="frames", shape=str(fc.frames.shape), dtype="uint8", MB=round(directory_size_mb(fc.path), 1),
         path=str(fc.path.relative_to(cfg.run_dir)), build_s=None),
    dict(item="splits", shape=str({k: len(getattr(splits, k)) for k in
                                   ("train_idx", "val_idx", "adapt_idx", "eval_idx")}),
         dtype="int", MB=0.0, path="splits.json", build_s=None),
])
cached.to_csv(cfg.figures_dir / "01_cache_table.csv", index=False)
cached

# %%
from IPython.display import Markdown, display

from llm4brain.evaluation.reading import loading_reading

display(Markdown(loading_reading(
    rel_table, untuned=[r.name for r in REGIONS if r.group is None],
    lags=lags if (cfg.data_root / "derivatives/simulation").is_dir() else None,
    block_s=block_times(cfg, tc),
    splits={k.removesuffix("_idx"): len(getattr(splits, k))
            for k in ("train_idx", "val_idx", "adapt_idx", "eval_idx")})))
