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
# # 02 · Tokenizer design: super-voxels vs NVL patches, SC-MBM pretraining, adaptors
#
# A trial block is `T` whole-brain volumes — on real HAD data more than a million numbers.
# Self-attention over single voxels would need an `N x N` matrix per head and layer, so
# LLM4Brain (sec. 3.1) first compresses the block into a short sequence of **super-voxel
# tokens** with a strided 3D CNN, then runs the **SC-MBM** ViT encoder (MinD-Vis' masked brain
# modelling) over those tokens. NVL (Shen et al. 2024) proposes another front end: **resample**
# every subject to one grid, cut **cubic patches**, and drop the **inactive** ones. Both sit
# behind the same interface (`tokenizer.kind: cnn3d | nvl`), so this notebook builds both and
# compares them:
#
# 1. shapes through the pipeline and how many tokens each keeps;
# 2. the memory study: tokenizer + encoder vs voxel-level attention (from `bench/`);
# 3. masked-brain-modelling pretraining (MAE, 75 % of tokens hidden) on **all volumes** of the
#    training subjects, and what the decoder reconstructs;
# 4. the **nonlinear low-rank adaptors** (paper Fig. 2) that later stages train instead of the
#    frozen encoder and Q-Former, and their parameter counts.
#
# **Runs alone:** `make nb NB=02 [PROFILE=classroom]` runs it after what it needs, the trial
# cache and splits (01). It trains the two masked-brain-modelling encoders.
# <!-- time -->**Time:** 110 s on `default` (2-core AMD EPYC, AVX2 only, 2026-12-07); 29 s on `classroom` (2-core AMD EPYC, AVX2 only, 2026-12-07) (`bench/results/notebook_times_*.md`).

# %% tags=["parameters"]
PROFILE = "default"

# %%
import copy

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from llm4brain.config import load_config, repo_root
from llm4brain.data import iter_run_volumes, load_splits, load_trial_cache
from llm4brain.models.adaptors import adaptor_table, add_adaptors
from llm4brain.models.encoder import build_mae
from llm4brain.models.qformer import build_video_branch
from llm4brain.plotting import set_house_style, plot_loss_curves, save_figure
from llm4brain.training.mae import (mae_baselines, mae_reading, mae_reconstruction,
                                     pretrain_mae, volume_windows)

cfg = load_config(PROFILE)
set_house_style()   # the package's figure style, for this notebook's own figures too
cfg.tokenizer, cfg.encoder

# %% [markdown]
# ## Inputs (written by notebook 01)
# The trial cache holds z-scored blocks `(n_trials, T, X, Y, Z)` cropped to the brain's
# bounding box, the union brain mask and the grid's affine; `splits.json` says which subjects
# are training subjects. Only **training subjects** are used below (the NVL active-patch mask
# and MAE pretraining); target subjects stay unseen.

# %%
tc = load_trial_cache(cfg)
splits = load_splits(cfg.run_dir / "splits.json")
T, X, Y, Z = tc.block_shape
print(f"block (T, X, Y, Z) = {tc.block_shape}: {T * X * Y * Z:,} values, {int(tc.mask.sum()):,} brain voxels;"
      f" training subjects {splits.train_subjects}")

# %% [markdown]
# ## Two tokenizers behind one interface
# * **cnn3d** — the `T` volumes are the input channels of `len(tokenizer.strides)` strided
#   `Conv3d` + GroupNorm + GELU layers and a 1x1x1 projection; every output cell is a token
#   covering `S^3` voxels (`S = prod(strides)`); cells without brain are dropped.
# * **nvl** — trilinear resampling to a `tokenizer.grid_mm` grid, cubic patches of
#   `patch_size^3` grid voxels, a linear patch embedding. Patches with too little brain
#   (`min_coverage`) or the lowest variance across the training subjects' trials
#   (`active_quantile`) are **inactive**: the mask is learned once from training subjects,
#   stored in the model and never changes for new subjects.

# %%
cfgs = {kind: cfg.replace(tokenizer__kind=kind) for kind in ("cnn3d", "nvl")}
maes = {kind: build_mae(c, tc.block_shape, tc.mask, tc.affine) for kind, c in cfgs.items()}
train_idx = np.sort(splits.train_idx)
nvl_fit = maes["nvl"].encoder.tokenizer.fit_active_patches(
    tc.blocks[train_idx[i:i + 64]] for i in range(0, len(train_idx), 64))
print("NVL active patches:", nvl_fit)

x2 = torch.from_numpy(np.asarray(tc.blocks[train_idx[:2]]))
rows = []
with torch.no_grad():
    for kind, mae in maes.items():
        tok, enc = mae.encoder.tokenizer, mae.encoder
        tokens = tok(x2)
        out = enc(x2)
        rows.append(dict(tokenizer=kind, block=str(tuple(x2.shape)), token_grid=str(tok.grid_shape),
                         grid_cells=tok.n_grid, tokens=tok.n_tokens, tokens_shape=str(tuple(tokens.shape)),
                         encoder_out=str(tuple(out.shape)), values_per_token=tok.patch_dim,
                         compression=round(T * X * Y * Z / tok.n_tokens, 1),
                         tokenizer_params=sum(p.numel() for p in tok.parameters()),
                         encoder_params=sum(p.numel() for p in enc.parameters()) - sum(p.numel() for p in tok.parameters())))
shapes = pd.DataFrame(rows)
shapes.to_csv(cfg.figures_dir / "02_tokenizers.csv", index=False)
shapes

# %% [markdown]
# ### Which parts of the brain become tokens?
# Middle axial slice: the brain mask (grey) and the cells that are kept as tokens (colour).
# The cnn3d tokens live on the input grid; NVL's on its common resampled grid.

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
for ax, (kind, mae) in zip(axes, maes.items()):
    tok = mae.encoder.tokenizer
    kept = tok.unpatchify(torch.ones(1, tok.n_tokens, tok.patch_dim))[0, 0].numpy()
    brain = tc.mask if kind == "cnn3d" else tok.grid_mask.numpy()
    z = brain.shape[2] // 2
    ax.imshow(brain[:, :, z].T, origin="lower", cmap="Greys", vmin=0, vmax=2)
    ax.imshow(np.ma.masked_equal(kept[:, :, z].T, 0), origin="lower", cmap="viridis", alpha=0.45)
    ax.set_title(f"{kind}: {tok.n_tokens} of {tok.n_grid} cells are tokens")
    ax.set_axis_off()
save_figure(fig, "02_token_layout", cfg)

# %% [markdown]
# ## Memory: tokenizer + encoder vs voxel-level attention
# `make bench` runs `bench/bench_encoder_memory.py`: forward + backward of a batch of 8 blocks
# on one CPU thread, each size in a fresh process capped at 6 GB. The tokenizer's peak memory
# grows **linearly** with the block; voxel-level attention (one token per voxel, attention
# matrix written out as MinD-Vis' ViT does) grows **quadratically** and runs out of memory
# below 10,000 values — two orders of magnitude short of one real HAD block. Dashed lines are
# extrapolations (linear / quadratic fits), not measurements.

# %%
bench_csv = repo_root() / "bench" / "results" / "encoder_memory.csv"
if bench_csv.is_file():
    bench = pd.read_csv(bench_csv)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "peak_mb", "peak memory (MB)"), (axes[1], "cpu_s", "forward+backward CPU time (s)")):
        for approach, color in (("tokenizer", "C0"), ("voxel_attention", "C3")):
            d = bench[bench.approach == approach]
            meas = d[d.status == "measured"]
            ext = d[d.status.str.startswith("extrapolated")]
            ax.plot(meas["values"], meas[key], "o-", color=color, label=f"{approach} (measured)")
            if len(ext):
                ax.plot(np.r_[meas["values"].iloc[-1:], ext["values"]], np.r_[meas[key].iloc[-1:], ext[key]],
                        "--", color=color, alpha=0.6, label=f"{approach} (extrapolated)")
        ax.axvline(T * X * Y * Z, color="grey", lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", xlabel="block size (voxels x T)", ylabel=label)
    axes[0].axhline(16 * 1024, color="k", lw=0.8, ls=":")
    axes[0].legend(fontsize=7)
    fig.suptitle("grey line: this profile's block; dotted black: 16 GB")
    save_figure(fig, "02_memory_study", cfg)
    print((repo_root() / "bench" / "results" / "encoder_memory.md").read_text().split("\n\n")[-1])
else:
    print(f"{bench_csv} is missing: run `make bench` to measure the memory study")

# %% [markdown]
# ## Masked brain modelling (SC-MBM) on all volumes of the training subjects
# Every run of every training subject is cut into overlapping windows of `T` volumes (not only
# the trial blocks: rest and blank periods teach the encoder the brain's spatial statistics
# too). 75 % of the tokens are hidden from the encoder; a light decoder reconstructs each hidden
# token's input values (cnn3d: the `T x S^3` voxels of its cell; nvl: its resampled patch) and
# the loss is the mean squared error on hidden tokens only. `mse_visible` (same error on the
# visible tokens) is logged as a diagnostic, it is not trained.

# %%
windows = volume_windows(iter_run_volumes(cfg, splits.train_subjects, tc), T, cfg.mae.block_stride,
                         cfg.mae.max_blocks)
print(f"{len(windows):,} training windows of shape {windows.shape[1:]}")
results = {kind: pretrain_mae(cfgs[kind], windows, model=maes[kind]) for kind in maes}

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
for ax, (kind, res) in zip(axes, results.items()):
    plot_loss_curves(res.log, ax=ax, terms=["loss", "mse_visible"], title=f"MAE pretraining, {kind}")
save_figure(fig, "02_mae_loss", cfg)

# %% [markdown]
# ### Does the pretrained encoder beat a trivial prediction?
# On held-out **validation runs** of the training subjects: masked-token MSE of the
# reconstruction beside two predictions that need no learning: 0 for every hidden value (the
# mean of z-scored data) and each hidden patch filled from its visible neighbours (a Gaussian
# normalised convolution, its width and scale fitted on these very values). A hidden token can
# only be predicted from what it shares with the visible ones: smooth signal and spatially
# correlated noise nearby, and the stimulus response that all responsive voxels share; thermal
# noise is unpredictable. A pretraining that learned something beats both baselines.

# %%
val = torch.from_numpy(np.asarray(tc.blocks[np.sort(splits.val_idx)[:128]]))
rows = []
for kind, res in results.items():
    b = mae_baselines(res.model, val, seed=cfg.run.seed)
    rows.append(dict(tokenizer=kind, val_masked_mse=b["model"], predict_zero_mse=b["predict_zero"],
                     neighbour_fill_mse=b["neighbour_fill"], steps=int(res.step)))
mae_table = pd.DataFrame(rows)
mae_table.to_csv(cfg.figures_dir / "02_mae_validation.csv", index=False)
display(mae_table)
display(Markdown(mae_reading(mae_table)))

# %% [markdown]
# ### Masked and reconstructed brain
# One validation block, first volume, middle axial slice: the input, what the encoder saw
# (hidden tokens blanked) and the reconstruction (visible tokens copied, hidden ones predicted).

# %%
fig, axes = plt.subplots(2, 3, figsize=(9, 6))
for row, (kind, res) in zip(axes, results.items()):
    r = mae_reconstruction(res.model, val[:1], generator=torch.Generator().manual_seed(cfg.run.seed))
    z = r["original"].shape[-1] // 2
    lim = float(r["original"][0, 0].abs().max())
    for ax, key in zip(row, ("original", "masked", "reconstruction")):
        ax.imshow(r[key][0, 0, :, :, z].T.numpy(), origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"{kind}: {key}", fontsize=9)
        ax.set_axis_off()
save_figure(fig, "02_mae_reconstruction", cfg)

# %% [markdown]
# ## Nonlinear low-rank adaptors (paper Fig. 2)
# Later stages freeze the pretrained encoder and the Q-Formers and train only small adaptors:
# `x -> dropout -> down (d -> r) -> GELU -> up (r -> d, initialised at 0) -> * alpha / r`,
# added to the frozen layer's output, in the **query projection** of self-attention and in
# both **MLP** layers of every block. They are inserted through `peft` (a custom LoRA layer
# type) so saving, loading and counting work like any peft adaptor. Because the
# up-projection starts at zero the adapted model computes exactly what the frozen one does.

# %%
adapted = {}
for kind, res in results.items():
    enc = copy.deepcopy(res.model.encoder).eval()
    with torch.no_grad():
        before = enc(val[:2])
        add_adaptors(enc, cfg)
        same = torch.equal(enc(val[:2]), before)
    print(f"{kind}: output unchanged after inserting zero-initialised adaptors: {same}")
    adapted[f"fMRI encoder ({kind})"] = enc
# Q-Formers of the video branch (frame Q-Former + video Q-Former); their adaptor count does not
# depend on the frame-encoder width (1280, EfficientNet-Lite0) or the LLM width (576, SmolLM2)
adapted["video branch Q-Formers"] = add_adaptors(build_video_branch(cfg, encoder_dim=1280, llm_dim=576), cfg)
params = adaptor_table(adapted)
params.to_csv(cfg.figures_dir / "02_adaptor_params.csv", index=False)
params

# %% [markdown]
# ## Summary
# * Both tokenizers turn a block into a few hundred tokens (table `02_tokenizers.csv`); NVL's
#   token set is fixed after fitting on training subjects, so a new subject gets the same
#   tokens.
# * The 3D-CNN tokenizer keeps memory linear in the block size; voxel-level attention does not
#   fit a real block in 16 GB (`bench/results/encoder_memory.md`).
# * The MAE checkpoints `checkpoints/mae_cnn3d-<hash>` and `checkpoints/mae_nvl-<hash>` in the
#   run directory hold the pretrained encoders (`mae_run_name(cfg)`; the hash covers the MAE,
#   encoder, tokenizer, data and simulation settings, the seed and the loop settings, so changing
#   any of them trains a new run); `llm4brain.training.mae.load_pretrained_mae(cfg, ...)` rebuilds
#   the one named by `tokenizer.kind` for Stage I (notebook 03).
# * Adaptors add a few percent of trainable parameters (table `02_adaptor_params.csv`).
