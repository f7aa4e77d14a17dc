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
# # 08 · Seeing what was seen: dual-stream alignment and key-frame reconstruction (NVL)
#
# NVL (Shen et al. 2024) aligns its fMRI features with two visual embeddings at once — a
# **high-level** one (CLIP image features, by a contrastive loss) and a **low-level** one (the
# latent of an image VAE, by regression) — and reconstructs the seen image from them. This
# notebook does the same on top of our Stage I fMRI encoder:
#
# * **embedded decoder**: a small convolutional VAE (`recon.image_size` px key frames,
#   latent `recon.vae_latent`) trained here on frames of the captioned **pretraining corpus**
#   (clips no subject saw; a guard refuses any subject clip);
# * **dual-stream heads** on the pooled Stage I embedding of a trial (notebook 03): the high
#   head is pulled to the frame encoder's late features of the trial's clip, averaged over
#   frames and patches (notebook 03's frame-feature cache; contrastive, eq. 1), the low head regressed to the VAE latent of the key frame; NVL's
#   weighting `L = w·CLIP + (1 − w)·MSE` with `w = recon.high_weight`. Trained on the
#   **training subjects' training trials** only;
# * the **reconstruction** of each target-subject evaluation trial is the VAE decode of the
#   latent the low head predicts from that trial's fMRI.
#
# Every number stands beside its **chance** (the same decoder fed the fMRI of other trials of
# the same subject, `recon.n_shuffles` shuffles) and, on simulated data, a **noise ceiling**
# (a ridge from the simulator's noise-free responses to the latent, decoded by the same VAE)
# and the **VAE round trip** (the decoder's own reconstruction of the seen frame: what a
# perfect latent prediction would give).
#
# **Runs alone:** `make nb NB=08 [PROFILE=classroom]` runs it after what it needs, the trial
# cache and splits (01) and the dataset's clips (00).
# <!-- time -->**Time:** 77 s on `default` (2-core AMD EPYC, AVX2 only, 2026-12-07); 27 s on `classroom` (2-core AMD EPYC, AVX2 only, 2026-12-07) (`bench/results/notebook_times_*.md`).

# %% tags=["parameters"]
PROFILE = "default"

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from llm4brain.config import load_config
from llm4brain.data import load_trial_cache
from llm4brain.reconstruction.metrics import RECON_NOTE
from llm4brain.evaluation.reading import recon_reading
from llm4brain.evaluation.tables import to_markdown, write_table
from llm4brain.reconstruction.run import reconstruct_run
from llm4brain.plotting import set_house_style, plot_loss_curves, save_figure
from llm4brain.reconstruction.plots import (grid_trials, plot_reconstruction_bars,
                                      plot_reconstruction_grid)

cfg = load_config(PROFILE)
set_house_style()   # the package's figure style, for this notebook's own figures too
if cfg.run.num_threads:
    torch.set_num_threads(cfg.run.num_threads)
cfg.recon

# %% [markdown]
# ## Training and reconstruction
# `reconstruct_run` reads notebook 01's frame cache and notebook 03's Stage I embeddings,
# trains (or reloads) the VAE and the heads, and decodes every evaluation trial of the target
# subjects under each condition. Results go to `runs/<profile>/results/recon`.

# %%
t0 = time.time()
tc = load_trial_cache(cfg)
res = reconstruct_run(cfg, tc)
print(f"reconstruction in {time.time() - t0:.0f} s: " +
      ", ".join(f"{k} {v:.0f} s" if isinstance(v, float) else f"{k} {v}"
                for k, v in res.timing.items()))
print(f"{len(res.meta)} evaluation trials of target subjects "
      f"{sorted(res.meta['subject'].astype(str).unique())}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
if len(res.logs["vae"]):
    plot_loss_curves(res.logs["vae"], ax=axes[0], terms=["rec", "kl"], title="VAE (pretraining corpus)")
if len(res.logs["heads"]):
    plot_loss_curves(res.logs["heads"], ax=axes[1], terms=["clip", "mse"],
                     title="dual-stream heads (training subjects)")
fig.tight_layout()
save_figure(fig, "08_recon_losses", cfg)

# %% [markdown]
# ## Seen key frame, reconstruction, controls
# Trials drawn at random (seeded) among each target subject's evaluation trials — not chosen
# by how well they look. Columns: the seen key frame (at `recon.image_size` px), the
# reconstruction from that trial's fMRI, the same decoder fed another trial's fMRI (chance),
# a ridge from the measured voxels to the latent (baseline without the deep encoder), the
# noise ceiling and the VAE round trip.

# %%
rows = grid_trials(res.meta, cfg.recon.n_grid, cfg.run.seed)
labels = [f"sub-{s}" for s in res.meta["subject"].astype(str).to_numpy()[rows]]
cols = [c for c in ("seen", "fMRI", "chance", "fMRI, VAE stream", "ridge baseline", "ceiling",
                   "VAE round trip") if c in res.images]
fig = plot_reconstruction_grid(res.images, rows, labels, columns=cols)
save_figure(fig, "08_reconstruction_grid", cfg)

# %% [markdown]
# ## NVL's reconstruction table, with chance and ceiling
# One row per target subject and the Total (mean of subjects). PixCorr and SSIM are in
# [−1, 1]; identification in percent (chance 50 %).

# %%
paths = write_table(res.table, cfg.figures_dir, f"recon_{cfg.profile}",
                    caption=f"Key-frame reconstruction from fMRI (profile {cfg.profile}). "
                            + RECON_NOTE, decimals=3)
display(Markdown(to_markdown(res.table, 3)))
print(res.notes)

# %%
fig = plot_reconstruction_bars(res.table, [c for c in ("fMRI", "chance", "fMRI, VAE stream",
                                                        "ridge baseline", "ceiling",
                                                        "VAE round trip")
                                            if f"PixCorr | {c}" in res.table.columns])
save_figure(fig, "08_reconstruction_metrics", cfg)

# %% [markdown]
# ### The high-level stream on its own
# Two-way identification of the high head's prediction against the frame encoder's late
# features of the seen clips, averaged over frames and patches (same subject's trials compete;
# chance 50 %).

# %%
write_table(res.high_id, cfg.figures_dir, f"recon_high_level_{cfg.profile}",
            caption="Two-way identification (%) of the high-level head's prediction")
display(Markdown(to_markdown(res.high_id, 1)))
total = res.table.loc["Total"]
print(f"Total PixCorr: fMRI {total['PixCorr | fMRI']:.3f} vs chance "
      f"{total['PixCorr | chance']:.3f}; late id {total['Late id (%) | fMRI']:.1f} % vs "
      f"chance {total['Late id (%) | chance']:.1f} %")
print(f"fMRI above chance on every metric of the Total row: "
      f"{bool(np.all([total[f'{m} | fMRI'] > total[f'{m} | chance'] for m in ('PixCorr', 'SSIM', 'Early id (%)', 'Late id (%)')]))}")
display(Markdown(recon_reading(res.table)))

# %% [markdown]
# ## What the embedded decoder can and cannot show
# * **Can**: whether the fMRI carries the *layout and colour* of what was on screen — where
#   the agent was, its colour, the scene's brightness — beyond what any trial's fMRI gives
#   (the chance column) and how far that is from what noise-free responses would allow (the
#   ceiling). The simulated clips are procedural scenes, so this is the part of a key frame
#   a 32-pixel latent can hold.
# * **Cannot**: photographic detail or anything the VAE itself loses — compare with the
#   round-trip column, the upper bound of this decoder whatever the brain says. It has no
#   image prior beyond the small pretraining corpus, so a reconstruction drifts towards the
#   corpus's average frame as the prediction gets uncertain: blur means "unsure", not
#   "blurry stimulus".
# * **Pixel metrics alone mislead**: a decoder that returns the corpus's average frame for every
#   trial (the ridge does when its cross-validation picks the largest alpha) scores a fair
#   PixCorr and SSIM while identifying nothing (50 %); read them beside identification and
#   chance.
# * **Not NVL's numbers**: NVL decodes with an UnCLIP diffusion model and scores with AlexNet,
#   Inception, CLIP, EfficientNet-B and SwAV; none installs offline, so the frame encoder's
#   early and late features stand in and the numbers are not comparable with NVL's table. On a
#   GPU profile, `recon.decoder: diffusion` with `recon.diffusion_path` runs this same notebook
#   with a `diffusers` Stable unCLIP pipeline (`llm4brain.reconstruction.diffusion`): the high head
#   learns the pipeline's own image embeddings, the fMRI and chance images are generated from
#   them (NVL's beta, `recon.diffusion_strength`), and the VAE decode of the low head is shown
#   beside as `fMRI, VAE stream`.
