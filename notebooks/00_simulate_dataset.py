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
# # 00 · A simulated video-fMRI dataset in the layout of HAD
#
# **HAD** (*Human Action Dataset*, Zhou et al. 2023, OpenNeuro ds004488) recorded 30 people
# watching 21,600 short action clips (180 action classes) in a 3 T scanner. Each run shows
# 60 clips of 2 s, separated by 2 s gaps, with a few blank trials; one volume every
# TR = 2 s, 156 volumes a run, 12 runs a subject.
#
# The real data cannot be downloaded on a laptop without network, so this notebook *writes* a
# dataset with exactly HAD's files and design, from a generative model whose every parameter
# is known. Decoding it is hard for the same reasons real data is hard:
#
# * **low single-trial SNR** — thermal noise per volume about half the stimulus-evoked
#   signal's range, before drift, motion and overlapping responses;
# * **overlapping responses** — the haemodynamic response lasts ~20 s, trials start every 4 s;
# * **drift and motion** — slow signal drift and head-motion artefacts (written to the
#   confounds file, as fMRIPrep does);
# * **subjects differ** — a few mm of anatomical misalignment, a subject-specific share of
#   the tuning, different gains, noise levels and HRF peaks.
#
# Because the simulator also writes the *noise-free* responses, later notebooks can compute a
# **noise ceiling**: the best any decoder could do.
#
# **Runs alone:** `make nb NB=00 [PROFILE=classroom]` runs it after what it needs, nothing: it
# writes the simulated dataset the others read.
# <!-- time -->**Time:** 76 s on `default` (2-core AMD EPYC, AVX2 only, 2026-12-07); 21 s on `classroom` (2-core AMD EPYC, AVX2 only, 2026-12-07) (`bench/results/notebook_times_*.md`).

# %% tags=["parameters"]
PROFILE = "default"
OVERWRITE = False

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llm4brain.config import load_config, save_config
from llm4brain.data import describe_dataset, discover_runs, load_stimuli, read_events, read_frames
from llm4brain.plotting import set_house_style, save_figure
from llm4brain.plotting_data import (plot_brain_map, plot_clip_montage, plot_design, plot_hrfs)
from llm4brain.sim import (REGIONS, canonical_hrf, load_ground_truth, region_weights,
                           simulate_dataset, trial_regressors, voxel_coordinates)

cfg = load_config(PROFILE)
set_house_style()   # the package's figure style, for this notebook's own figures too
save_config(cfg)
print("run directory:", cfg.run_dir)
cfg.sim

# %% [markdown]
# ## Write the dataset
# `simulate_dataset` renders the clips, writes them as mp4, simulates every subject's BOLD and
# writes the BIDS tree. A finished dataset with the same settings is reused (pass
# `OVERWRITE = True` to rebuild it). The same is available on the command line:
# `llm4brain simulate --profile default`.
#
# On a real profile (`had`, `urgen`: `data.root` outside the run directory) nothing is
# written: the dataset is described as it is, and the cells that need the simulator's ground
# truth (regions, noise-free responses, subjects' HRFs) say so and draw what the data allows.

# %%
if cfg.simulated_data:
    root = simulate_dataset(cfg, overwrite=OVERWRITE)
else:   # a real dataset (had, urgen): nothing is written, only described
    root = cfg.data_root
    print(f"data.root = {root} is not the embedded dataset: it is read as it is, nothing simulated")
summary = describe_dataset(root, cfg.data)
print(json.dumps({k: v for k, v in summary.items() if k != "classes"}, indent=1))
# the simulator's ground truth (noise-free responses, regions, HRFs); real data has none
has_truth = (root / "derivatives" / "simulation" / "generator.json").is_file()
runs = discover_runs(root, cfg.data)

# %% [markdown]
# The files follow HAD's naming exactly:

# %%
for p in sorted(root.rglob(f"*sub-{runs[0].subject}*run-*{runs[0].run}_*"))[:8]:
    print(p.relative_to(root))

# %% [markdown]
# ## The stimuli
# Each class is an *agent* doing an *action*; colour, size, direction, speed and the background
# scene vary from clip to clip. Every clip has a description and paraphrases — on real HAD
# there is no text at all, which is why LLM4Brain asks a video-LLM for surrogate captions
# (notebook 04).

# %%
stim = load_stimuli(cfg)
subj = stim[stim.corpus == "subjects"]
examples = subj.groupby("class_name").head(1).head(8)
frames = [read_frames(p, 6, 96) for p in examples["path"]]
fig = plot_clip_montage(frames, [f"{c}: {d}" for c, d in zip(examples.class_name, examples.description)])
save_figure(fig, "00_stimuli_montage", cfg)
subj[["stim_file", "class_name", "description"]].head(6)

# %% [markdown]
# ## The design: why single trials overlap
# Clips last 2 s and start every 4 s; the HRF peaks 5-6 s after onset and lasts ~20 s, so the
# responses of 4-5 consecutive trials add up in every volume.

# %%
ev = read_events(runs[0].events)
n_vols = summary["volume_shape"][3]
tr, clip_s = runs[0].tr, float(ev.duration.median())
X = trial_regressors(ev.onset.to_numpy(), clip_s, n_vols, tr, canonical_hrf(tr))
gen = json.loads((root / "derivatives/simulation/generator.json").read_text()) if has_truth else None
hrfs = ({f"sub-{s}": canonical_hrf(tr, peak_shift_s=p["hrf_shift_s"]) for s, p in gen["subjects"].items()}
        if has_truth else {"canonical": canonical_hrf(tr)})
fig, axes = plt.subplots(1, 2, figsize=(14, 3), gridspec_kw=dict(width_ratios=[2.5, 1]))
plot_design(ev.onset.to_numpy(), X, tr, ax=axes[0])
plot_hrfs(hrfs, 0.1, ax=axes[1])
fig.tight_layout()
save_figure(fig, "00_design_hrf", cfg)
ev.head()

# %% [markdown]
# ## Functional anatomy
# Regions sit at literature MNI coordinates on nilearn's real MNI152 brain mask. Early visual
# cortex (EVC) is tuned to low-level statistics computed from the frames, MT+ to motion, LOC to
# the agent, EBA/pSTS to the action and PPA to the scene; M1, A1 and dlPFC do not respond.

# %%
if has_truth:
    gt = load_ground_truth(root, "01")
    mask, affine = gt["mask"].astype(bool), gt["affine"]
    coords = voxel_coordinates(mask, affine) - np.asarray(gen["subjects"]["01"]["shift_mm"])
    memb = region_weights(coords)
    label = np.where(memb.max(0) > 0.3, memb.argmax(0) + 1, 0).astype(float)
    fig = plot_brain_map(label, mask, affine, title="regions of sub-01 (1=EVC ... 8=dlPFC)",
                         cmap="tab10", threshold=0.5, cut_coords=(40, -70, 0))
    save_figure(fig, "00_regions", cfg)
else:
    print("real data: no simulated regions; the table lists where the simulator puts them")
pd.DataFrame([dict(region=r.name, centre_mni=r.centre, tuned_to=r.group or "-", drive=r.drive,
                   reference=r.reference) for r in REGIONS])

# %% [markdown]
# ## One trial's noise-free response on the brain, and the signal-to-noise ratio
# The ground truth holds each trial's noise-free amplitude at every voxel (percent signal
# change). The SNR we chose: a fully tuned voxel's trial amplitude has an sd of about
# `sim.signal_scale` = 1 % across clips, the thermal noise an sd of `sim.noise_sd` = 0.5 % per
# volume (AR(1) 0.4, 8 mm FWHM smooth), plus drift and motion. Notebook 01 measures the
# resulting single-trial reliability. (With `sim.noise_sd: 1.4` even a ridge regression on the
# voxels decodes the 12 classes at chance: measured 9.6 % vs 8.3 %; at 0.5, 35-38 %, and
# 78-88 % on the noise-free responses.)

# %%
if has_truth:
    amp = gt["amplitudes"][0]  # (clips, voxels) of run 1
    fig = plot_brain_map(amp[0], mask, affine, title=f"noise-free amplitude, trial 1 ({ev.stim_file[0].split('/')[0]})",
                         threshold=0.1, cut_coords=(40, -70, 0))
    save_figure(fig, "00_trial_response", cfg)
    resp = memb.max(0) > 0.3
    sig_sd = amp.std(0)
    snr = pd.DataFrame([dict(subject=s, gain=p["gain"], noise_sd_pct=p["noise_sd"],
                             hrf_peak_shift_s=p["hrf_shift_s"], shift_mm=p["shift_mm"])
                        for s, p in gen["subjects"].items()])
    print(f"sub-01: across-trial sd of the noise-free amplitude in responsive voxels "
          f"{sig_sd[resp].mean():.2f} % vs noise sd {gen['subjects']['01']['noise_sd']:.2f} % per volume")
else:
    snr = "real data: no noise-free responses (notebook 01 measures split-half reliability)"
snr

# %%
from IPython.display import Markdown, display

from llm4brain.evaluation.reading import simulation_reading

if has_truth:
    display(Markdown(simulation_reading(snr, float(sig_sd[resp].mean()), n_runs=cfg.sim.n_runs,
                                        clips_per_run=cfg.sim.clips_per_run,
                                        n_targets=cfg.sim.n_target_subjects)))
else:
    print("real data: no simulator, no conclusion on its noise (notebook 01 measures the data)")
