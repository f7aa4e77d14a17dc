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
# # 03 · Stage I: aligning fMRI with video (CLIP + weighted L2/L1)
#
# The LLM can only read what looks like the video tokens it was taught on. Stage I therefore
# teaches the fMRI side to produce, for each trial, the **same `L` tokens the video Q-Former
# produces for the clip the subject was watching** (paper 3.2):
#
# * fMRI side: trial block `(T, X, Y, Z)` → 3D-CNN tokenizer → SC-MBM encoder (pretrained by
#   masked brain modelling in notebook 02, **frozen**, with small trainable adaptors) →
#   projection adaptor → `z`, shape `(L, H)`. The adaptor is `stage1.projector`. On the
#   simulated profiles it is `concept`, a semantic bottleneck: heads over the training clips'
#   class and scene read the brain tokens and the 300 most selective voxels, and their
#   posteriors weight *prototype* video tokens (the mean tokens of the training clips of each
#   class and scene), so `z` stays on the video tokens' manifold. The other adaptors are
#   `spatial` (brain tokens concatenated → low-rank MLP → `L` tokens; the had profile's),
#   `mlp` (mean-pooled brain tokens → MLP) and `query` (`L` learned queries cross-attending to
#   the brain tokens); `docs/stage1.md` compares them on a pseudo-target;
# * video side: clip frames → frozen EfficientNet → frozen frame Q-Former → video Q-Former
#   (**frozen**, with trainable adaptors, as the paper attaches them to the *video* Q-Former)
#   → `x`, shape `(L, H)`.
#
# The loss is eq. 2, `L = β·CLIP + (1 − β)·L2L1`:
#
# * **CLIP** (eq. 1): cosine similarities between the batch's pooled `z` and `x`, temperature
#   τ = 0.05; each trial must pick its own clip among the batch and each clip its own trial;
# * **L2/L1** (eq. 1b): `(1 − α)·‖z − x‖² + α·‖z − x‖₁`, token by token — so that the fMRI
#   tokens can later stand in for video tokens inside the LLM's prompt (notebook 05).
#
# Only **training subjects' training runs** are used. We then ask: given a trial's fMRI, can
# we pick the clip it showed among `N` candidates? — on held-out runs of the training subjects
# and, more importantly, on **target subjects** never seen in training (their evaluation
# trials; their clips are used only to score). A ridge regression from voxels to the video
# embedding is the baseline every deep model must beat.
#
# **Runs alone:** `make nb NB=03 [PROFILE=classroom]` runs it after what it needs, the trial
# cache and splits (01) and the pretrained encoder (02). It trains the video-LLM (reused by
# 04) and Stage I.
# <!-- time -->**Time:** 14.3 min on `default` (2-core AMD EPYC, AVX2 only, 2026-12-07); 2.0 min on `classroom` (2-core AMD EPYC, AVX2 only, 2026-12-07) (`bench/results/notebook_times_*.md`).

# %% tags=["parameters"]
PROFILE = "default"

# %%
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from llm4brain.config import load_config
from llm4brain.data import load_splits, load_stimuli, load_trial_cache
from llm4brain.evaluation.retrieval import similarity_matrix
from llm4brain.evaluation.semantic import fit_semantic_retrieval
from llm4brain.evaluation.stage1 import evaluate_stage1, stage1_reading, stage1_results_dir
from llm4brain.models.adaptors import adaptor_table
from llm4brain.plotting import (set_house_style, plot_embedding_2d, plot_loss_curves, plot_similarity_matrix,
                                save_figure)
from llm4brain.training.mae import load_pretrained_mae
from llm4brain.training.stage1 import train_stage1
from llm4brain.training.vlpretrain import pretrain_video_llm, video_features

cfg = load_config(PROFILE)
set_house_style()   # the package's figure style, for this notebook's own figures too
if cfg.run.num_threads:
    torch.set_num_threads(cfg.run.num_threads)
cfg.stage1

# %% [markdown]
# ## Inputs
# * the trial cache and the subject-wise splits (notebook 01);
# * the MAE-pretrained SC-MBM encoder (notebook 02);
# * the **video branch** of the video-LLM (frame Q-Former + video Q-Former + projection). It is
#   pretrained on the simulator's captioned *pretraining corpus* (clips no subject saw).
#   Notebook 04 uses the same model to write the surrogate captions; the training loop caches
#   finished runs, so whichever notebook runs first trains it and the other reloads it.

# %%
t0 = time.time()
tc = load_trial_cache(cfg)
splits = load_splits(cfg.run_dir / "splits.json")
mae = load_pretrained_mae(cfg, tc.block_shape, tc.mask, tc.affine)
stim = load_stimuli(cfg)
features = video_features(cfg, stim)
vl = pretrain_video_llm(cfg, stim=stim, features=features, device=cfg.run.device)
timing = {"inputs_and_video_llm_s": time.time() - t0, "video_llm_trained_here": bool(vl.trained)}
print(f"blocks {tc.block_shape}; training subjects {splits.train_subjects}, target subjects "
      f"{splits.target_subjects}; video-LLM {'trained now' if vl.trained else 'reloaded'} "
      f"({timing['inputs_and_video_llm_s']:.0f} s)")
splits.summary()

# %% [markdown]
# ## Training
# Each step draws `stage1.batch_size` training trials that showed **distinct clips** (the
# other clips of the batch are the CLIP loss's negatives). The table counts what is trained:
# the tokenizer, the adaptors (a few percent of the encoder and the video Q-Former) and the
# projection adaptor; everything else stays frozen.

# %%
t0 = time.time()
res = train_stage1(cfg, tc, splits, vlm=vl.model, features=features, mae=mae)
timing["stage1_train_s"] = time.time() - t0
timing["stage1_trained_here"] = bool(res.trained)
model = res.model
params = adaptor_table({"fMRI encoder (+ tokenizer)": model.encoder,
                        "video Q-Former": model.branch.video_qformer,
                        "projection adaptor": model.projector})
print(f"run {res.run_name}: {'trained' if res.trained else 'reloaded'} in "
      f"{timing['stage1_train_s']:.0f} s")
params

# %% [markdown]
# ### Loss curves
# Both terms of eq. 2 on the training batches. The CLIP term starts near `2·ln(B)` (chance:
# each of B trials equally similar to every clip, both directions summed); the L2/L1 term
# measures how far the fMRI tokens are from the video tokens.

# %%
if len(res.log):
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    plot_loss_curves(res.log, ax=axes[0], terms=["loss"], title="total (eq. 2)")
    plot_loss_curves(res.log, ax=axes[1], terms=["clip"], title="CLIP (eq. 1)")
    axes[1].axhline(2 * np.log(cfg.stage1.batch_size), color="grey", ls="--", lw=0.8,
                    label="chance 2 ln B")
    axes[1].legend(fontsize="small", frameon=False)
    plot_loss_curves(res.log, ax=axes[2], terms=["l2l1"], title="weighted L2/L1 (eq. 1b)")
    fig.tight_layout()
    save_figure(fig, "03_stage1_losses", cfg)
else:
    print(f"no training log at {cfg.run_dir / 'logs'} for {res.run_name} (checkpoint copied in?)")

# %% [markdown]
# ## Retrieval: which clip did the subject watch?
# For each trial the pooled fMRI embedding is compared (cosine) with the pooled video
# embeddings of `N` candidate clips: the true one and `N − 1` clips of other trials. Top-1 is
# correct when the true clip is the most similar (chance `1/N`), top-5 when it is among the
# 5 most similar (chance `5/N`). The p-value comes from re-pairing trials and clips at random
# (`stage1.n_permutations` times). The **ridge baseline** predicts the same pooled video
# embedding from the brain-mask voxels (averaged over the block's volumes) with the
# regularisation chosen by leave-one-out cross-validation on the training trials; it is
# scored against the same candidates with the same distractors.
#
# The **semantic retrieval** (`eval.semantic_readout`; not the paper's Stage I) scores the
# same candidates in a space built from what the voxels encode: a trial's fMRI becomes the
# log-posteriors of the voxels' class and scene read-outs (logistic on the most selective
# voxels, fitted on the training subjects, as the semantic read-out decoder of notebook 05),
# a clip the posteriors of logistic probes of the same labels on its pooled video tokens;
# the score is their dot product. `p_vs_ridge` is a one-sided exact McNemar test on the same
# trials and distractors: does the method identify more of them than the ridge?

# %%
t0 = time.time()
semantic = None
if cfg.eval.semantic_readout:
    semantic = fit_semantic_retrieval(cfg, tc, splits, vl.model, features, stim, cache=True)
    print("semantic read-outs (leave-one-subject-out on the training subjects):",
          semantic.readout.info)
ev = evaluate_stage1(cfg, model, tc, splits, res.video, semantic=semantic)
timing["stage1_eval_s"] = time.time() - t0
print(f"ridge alpha (LOO-CV): {ev.ridge_alpha:g}; evaluation {timing['stage1_eval_s']:.0f} s")
ev.retrieval.round(3)

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, split, title in ((axes[0], "val", "training subjects, held-out runs"),
                         (axes[1], "eval", "target subjects, evaluation trials")):
    t = ev.retrieval[ev.retrieval.split == split]
    methods = [m for m in ("stage1", "ridge", "semantic", "ceiling") if m in set(t["method"])]
    piv = t.pivot(index="subject", columns="method", values="top1")[methods]
    pval = t.pivot(index="subject", columns="method", values="p_value")["stage1"]
    piv.index = [f"sub-{s}" if s != "all" else "all" for s in piv.index]
    piv.plot.bar(ax=ax, rot=0, color=["C0", "C7", "C2", "C3"][:len(methods)])
    ax.axhline(t["chance_top1"].iloc[0], color="k", ls="--", lw=1, label="chance 1/N")
    for i, p in enumerate(pval.to_numpy()):
        if p < 0.01:
            ax.text(i - 0.12, piv["stage1"].iloc[i] + 0.01, "*", ha="center")
    ax.set(title=title, ylabel=f"top-1 among N = {int(t['n_candidates'].iloc[0])}", xlabel="")
    ax.get_legend().remove()
# one legend under both panels: inside them it covers the ceiling bars
fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=5, fontsize="small",
           frameon=False)
fig.suptitle("clip identification from fMRI (* Stage I p < 0.01, permutation test)")
fig.tight_layout(rect=(0, 0.07, 1, 1))
save_figure(fig, "03_retrieval", cfg)

# %% [markdown]
# ### Trial × clip similarity
# Rows: the evaluation trials of the first target subject (sorted by class); columns: the
# clips they showed, in the same order. A bright diagonal means each trial is most similar
# to its own clip; bright class blocks mean the fMRI embedding knows the *class* of the clip
# even when it cannot tell two clips of a class apart.

# %%
e = ev.embeddings["eval"]
meta = e["meta"].reset_index(drop=True)
first = meta[meta.subject == meta.subject.iloc[0]].sort_values(["class_name", "stim_file"])
sel = first.index.to_numpy()[:60]
S = similarity_matrix(e["z"][sel], e["x"][sel])
fig = plot_similarity_matrix(S, title=f"sub-{meta.subject.iloc[0]}: fMRI (rows) x video "
                                      f"(columns), centred cosine", cmap="magma")
ax = fig.axes[0]
bounds = np.flatnonzero(np.r_[True, first.class_name.to_numpy()[1:len(sel)]
                              != first.class_name.to_numpy()[:len(sel) - 1]])
for b in bounds[1:]:                       # heat-map cells span [i, i + 1]: edges at integers
    ax.axhline(b, color="w", lw=0.4)
    ax.axvline(b, color="w", lw=0.4)
save_figure(fig, "03_similarity_matrix", cfg)

# %% [markdown]
# ### Embeddings, coloured by class
# First two principal components of the pooled embeddings of the target subjects' evaluation
# trials: fMRI (Stage I) beside video. The video embedding separates classes by construction;
# how much of that structure the fMRI embedding recovers for a subject it was never trained
# on is what Stage II builds on.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
plot_embedding_2d(e["z"], meta["class_name"], ax=axes[0], title="fMRI embedding (target subjects)")
plot_embedding_2d(e["x"], meta["class_name"], ax=axes[1], title="video embedding (same trials)")
for ax in axes[1:]:
    ax.get_legend().remove()
fig.tight_layout()
save_figure(fig, "03_embeddings_pca", cfg)

# %% [markdown]
# ## Summary
# The numbers below (also in `results/stage1/summary.json`) are the target-subject results:
# top-1 accuracy of Stage I and of the ridge baseline among `N` candidates, with chance `1/N`
# and the permutation p-value, and — with `eval.semantic_readout` — the semantic retrieval's,
# with the paired test of each against the ridge (`p_vs_ridge_*`). Notebook 06 copies the
# table into `summary.md`.

# %%
tgt = ev.retrieval[(ev.retrieval.split == "eval") & (ev.retrieval.subject == "all")].set_index("method")
summary = {
    "target_top1_stage1": float(tgt.loc["stage1", "top1"]),
    "target_top1_ridge": float(tgt.loc["ridge", "top1"]),
    "target_top5_stage1": float(tgt.loc["stage1", "top5"]),
    "target_top5_ridge": float(tgt.loc["ridge", "top5"]),
    "chance_top1": float(tgt.loc["stage1", "chance_top1"]),
    "p_value_stage1": float(tgt.loc["stage1", "p_value"]),
    "p_value_ridge": float(tgt.loc["ridge", "p_value"]),
    "n_trials": int(tgt.loc["stage1", "n_trials"]),
    "above_chance_p01": bool(tgt.loc["stage1", "p_value"] < 0.01),
    "beats_ridge": bool(tgt.loc["stage1", "top1"] > tgt.loc["ridge", "top1"]),
    "p_vs_ridge_stage1": float(tgt.loc["stage1", "p_vs_ridge"]),
    **({"target_top1_semantic": float(tgt.loc["semantic", "top1"]),
        "target_top5_semantic": float(tgt.loc["semantic", "top5"]),
        "p_value_semantic": float(tgt.loc["semantic", "p_value"]),
        "p_vs_ridge_semantic": float(tgt.loc["semantic", "p_vs_ridge"])}
       if "semantic" in tgt.index else {}),
    **{k: (round(v, 1) if isinstance(v, float) else v) for k, v in timing.items()},
}
(stage1_results_dir(cfg) / "notebook_summary.json").write_text(json.dumps(summary, indent=1))
pd.Series(summary)

# %%
display(Markdown(stage1_reading(summary)))
