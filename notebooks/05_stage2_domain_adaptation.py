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
# # 05 · Stage II: teaching a frozen LLM to read fMRI, with domain adaptation
#
# After Stage I (notebook 03) a trial's fMRI becomes `L` tokens that resemble the video
# tokens of the clip. Stage II puts them where the video tokens went in the video-LLM's
# prompt and trains **only the bridge** between them and the LLM (paper 3.2):
#
# * **frozen**: the LLM (SmolLM2-135M-Instruct here), the Q-Formers, the fMRI encoder with its
#   Stage I adaptors and projection;
# * **trained**: the bridge — a copy of the video branch's projection into the LLM's embedding
#   space (so Stage I's alignment carries over on step 0) plus a small nonlinear low-rank
#   adaptor — and, with domain adaptation, a classifier head;
# * **cross-entropy** (eq. 3): given the fMRI tokens and the trial's instruction, the LLM must
#   produce the *surrogate answer* — what the video-LLM answered about the clip (notebook 04);
#   only training subjects' trials;
# * **domain adaptation** (DANCE, eqs. 4–5) on **target subjects' unlabelled fMRI**
#   (adaptation runs only): a cosine classifier over the training subjects' video classes
#   (trained on their labels), a memory bank of target features, neighbourhood clustering
#   (each target feature should be confident about its neighbours among the bank and the class
#   prototypes) and entropy separation (push class entropies away from `ρ = ln(C)/2`);
# * **total** (eq. 6): `L = λ·CE + (1 − λ)·L_DA`.
#
# No target-subject video, caption, class label or evaluation trial is used in training: the
# only path to target data is `target_adaptation_view`, which hands out fMRI blocks and opaque
# indices and raises `LeakageError` for anything else. We train twice — with and without
# domain adaptation, same steps and seed — and decode every target **evaluation** trial
# (fMRI2Text) beside the video-LLM's answer for its clip (Video2Text).
#
# **Runs alone:** `make nb NB=05 [PROFILE=classroom]` runs it after what it needs, the trial
# cache (01), Stage I (03) and the surrogate captions (04). It trains Stage II with and
# without domain adaptation and decodes the target subjects.
# <!-- time -->**Time:** 12.3 min on `default` (2-core AMD EPYC, AVX2 only, 2026-12-07); 81 s on `classroom` (2-core AMD EPYC, AVX2 only, 2026-12-07) (`bench/results/notebook_times_*.md`).

# %% tags=["parameters"]
PROFILE = "default"

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from llm4brain.captions import load_captions
from llm4brain.config import load_config
from llm4brain.data import load_splits, load_trial_cache
from llm4brain.evaluation.controls import bootstrap_ci
from llm4brain.evaluation.decoding import build_eval_set
from llm4brain.evaluation.metrics import METRIC_LABELS
from llm4brain.evaluation.reading import da_reading
from llm4brain.evaluation.scoring import score_run
from llm4brain.evaluation.stage2_outputs import write_stage2_outputs
from llm4brain.evaluation.stage2_results import read_decodes, stage2_results_dir
from llm4brain.plotting import set_house_style, plot_embedding_2d, plot_loss_curves, save_figure
from llm4brain.training.guard import LeakageError
from llm4brain.training.stage1 import load_stage1
from llm4brain.training.stage2 import build_stage2_data, train_stage2
from llm4brain.training.vlpretrain import load_video_llm

cfg = load_config(PROFILE)
set_house_style()   # the package's figure style, for this notebook's own figures too
if cfg.run.num_threads:
    torch.set_num_threads(cfg.run.num_threads)
cfg.stage2

# %% [markdown]
# ## Inputs
# The trained video-LLM (its LLM and projection), the Stage I model and the surrogate captions
# of notebook 04. The fMRI tokens of every trial are computed once: everything before the
# bridge is frozen.

# %%
t0 = time.time()
tc = load_trial_cache(cfg)
splits = load_splits(cfg.run_dir / "splits.json")
vlm = load_video_llm(cfg)
stage1 = load_stage1(cfg, tc, vlm=vlm)
captions = load_captions(cfg)
data = build_stage2_data(cfg, stage1, tc, splits, captions)
timing = {"inputs_s": time.time() - t0}
print(f"source: {len(data.answers)} training trials, {data.n_classes} classes; target: "
      f"{data.target}; fMRI tokens {tuple(data.source_z.shape[1:])} -> LLM width "
      f"{vlm.llm.hidden_size}")
pd.DataFrame({"instruction": data.instructions[:3], "surrogate answer": data.answers[:3]})

# %% [markdown]
# The target side of the training data holds fMRI tokens and nothing else:

# %%
for field in ("labels", "captions", "clip_ids"):
    try:
        getattr(data.target, field)
    except LeakageError as err:
        print(f"data.target.{field}: LeakageError: {str(err)[:90]}...")

# %% [markdown]
# ## Training: with and without domain adaptation
# Both runs use the same steps, batches of training trials and seed; they differ only by the
# switch `stage2.domain_adaptation` (and their run names).

# %%
runs = {}
for name, da in (("da", True), ("noda", False)):
    t0 = time.time()
    runs[name] = train_stage2(cfg, data, vlm.llm, vlm.branch.proj, domain_adaptation=da)
    timing[f"train_{name}_s"] = time.time() - t0
    timing[f"train_{name}_trained_here"] = bool(runs[name].trained)
    print(f"{runs[name].run_name}: {'trained' if runs[name].trained else 'reloaded'} in "
          f"{timing[f'train_{name}_s']:.0f} s")

# %%
if len(runs["da"].log) and len(runs["noda"].log):
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for name, label in (("da", "with DA"), ("noda", "without DA")):
        log = runs[name].log
        axes[0].plot(log["step"], log["ce"], label=label)
    axes[0].set(title="caption cross-entropy (eq. 3)", xlabel="step", ylabel="loss")
    axes[0].legend(frameon=False, fontsize="small")
    plot_loss_curves(runs["da"].log, ax=axes[1], terms=["nc", "es"], title="DA terms (eqs. 4-5)")
    plot_loss_curves(runs["da"].log, ax=axes[2], terms=["cls", "loss"],
                     title="source classifier CE and total (eq. 6)")
    fig.tight_layout()
    save_figure(fig, "05_stage2_losses", cfg)
else:
    print("a training log is missing (checkpoint copied in?): no loss curves")

# %% [markdown]
# ### What domain adaptation does to the features
# Pooled bridge outputs (the DA feature space), first two principal components: training
# subjects' trials coloured by class; the target subjects' **evaluation** trials (never seen in
# training) coloured by class too — their labels are used here only to draw. With DA the
# target features should fall into the classes' clusters rather than into a subject-specific
# cloud.

# %%
ev = build_eval_set(cfg, stage1, tc, splits, captions)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
for ax, name, title in ((axes[0], "noda", "without DA"), (axes[1], "da", "with DA")):
    m = runs[name].model
    src = m.target_embeddings(data.source_z).numpy()
    tgt = m.target_embeddings(ev.z).numpy()
    labels = np.r_[np.array(data.class_names)[data.source_labels], ev.table["class_name"]]
    pts = np.r_[src, tgt]
    plot_embedding_2d(pts, labels, ax=ax, s=6, title=f"bridge features, {title}")
    P = pts - pts.mean(0)
    U, S, _ = np.linalg.svd(P, full_matrices=False)
    xy = (U[:, :2] * S[:2])[len(src):]
    ax.scatter(xy[:, 0], xy[:, 1], s=14, facecolors="none", edgecolors="k", lw=0.4,
               label="target (ringed)")
    if ax is axes[0]:
        ax.get_legend().remove()
    else:
        ax.legend(fontsize="xx-small", frameon=False, ncol=2)
fig.tight_layout()
save_figure(fig, "05_da_features", cfg)

# %% [markdown]
# ## fMRI2Text on the target subjects' evaluation trials
# Every evaluation trial is decoded (greedy, `llm.max_new_tokens` tokens) with its own
# instruction, by both models. Alongside, the controls notebook 06 scores:
#
# * **chance**: the same decoder with the fMRI tokens shuffled across the evaluation trials of
#   each subject (`min(eval.n_shuffles, stage2.max_shuffles)` repeats — 3 on the CPU profile
#   to fit the time budget);
# * **baseline**: ridge regression from voxels to the pooled video embedding (notebook 03),
#   then the surrogate answer of the nearest *training* clip captioned under the same
#   instruction — a decoder that never generates;
# * **noise ceiling** (simulated data only): the best decoder the package has, the semantic
#   read-out below, fitted and applied on the simulator's *noise-free* responses (training
#   subjects' training trials -> the target trials; `semantic_ceiling_decodes`): what decoding
#   reaches with no measurement noise left, the subjects' own tuning and anatomy still
#   between them. (With `eval.semantic_readout` off, the ridge + nearest-neighbour decoder on
#   the same responses. The trained network fed noise-free blocks is no ceiling: they are
#   ~15x smaller than the noisy blocks it learned from.)
# * **semantic read-out** (`eval.semantic_readout`): logistic read-outs of the class and the
#   scene from the most label-selective voxels (training subjects only; the number of voxels
#   and C by leave-one-subject-out), then the mean
#   video tokens of the training trials of the decoded class plus those of the decoded scene,
#   through the video-LLM's own projection into the frozen LLM — no Stage I or Stage II
#   training; its chance decodes shuffle the read-outs across trials.
#
# All are written to `results/stage2/` as TSVs with the columns subject, trial_index,
# clip_id, stim_file, instruction, fmri2text, video2text.

# %%
t0 = time.time()
manifest = write_stage2_outputs(cfg, {name: r.model for name, r in runs.items()}, ev, captions,
                                tc=tc, train_subjects=splits.train_subjects, splits=splits,
                                vlm=vlm)
timing["decode_s"] = time.time() - t0
print(f"decoded in {timing['decode_s']:.0f} s;", {k: manifest[k] for k in
                                                    ("fmri2text", "chance", "baseline", "ceiling",
                                                     "no_brain", "constant", "semantic")
                                                    if k in manifest})

# %% [markdown]
# ## Domain adaptation on vs off
# BERTScore (F1, MiniLM, no rescaling), SacreBLEU-1 and ROUGE-L F of fMRI2Text against
# Video2Text, per target subject, for both models and the controls. The paired difference
# (DA on − off, per trial) carries a bootstrap 95 % interval.

# %%
t0 = time.time()
d = stage2_results_dir(cfg)
scored = score_run(cfg)        # cached under runs/<profile>/eval: notebook 06 reuses these scores
timing["score_s"] = time.time() - t0
metrics = ["bertscore", "sacrebleu1", "rougeL_f"]
named = {"DA on": scored.model, "DA off": scored.noda, "ridge + NN baseline": scored.baseline,
         "semantic read-out": scored.semantic, "noise ceiling": scored.ceiling}
scores = {k: v for k, v in named.items() if v is not None}
rows = []
for cond, sc in scores.items():
    by = sc.by_group("subject")
    for subj in by.index:
        rows.append(dict(condition=cond, subject=f"sub-{subj}", **{m: by.loc[subj, m] for m in metrics}))
    rows.append(dict(condition=cond, subject="all", **{m: sc.aggregate[m] for m in metrics}))
if scored.chance is not None:   # None with fewer than 2 shuffles (scored.status says why)
    per_subject = scored.chance.by_group.groupby("group")[metrics].mean()  # mean over the shuffles
    rows += [dict(condition="chance (mean)", subject=f"sub-{g}", **per_subject.loc[g].to_dict())
             for g in per_subject.index]
    rows.append(dict(condition="chance (mean)", subject="all",
                     **scored.chance.draws[metrics].mean().to_dict()))
else:
    print("chance:", scored.status.get("chance"))
table = pd.DataFrame(rows)
tables = {k: read_decodes(d / manifest["fmri2text"][r]) for k, r in (("DA on", "da"), ("DA off", "noda"))}
table.to_csv(d / "scores_summary.csv", index=False)
table.to_csv(cfg.figures_dir / "05_da_ablation.csv", index=False)
table.pivot(index="condition", columns="subject", values="bertscore").round(2)

# %%
diff = (scores["DA on"].per_trial["bertscore"] - scores["DA off"].per_trial["bertscore"]).to_numpy()
ci = bootstrap_ci(diff, n_boot=cfg.eval.n_bootstrap, rng=cfg.run.seed, alpha=cfg.eval.ci_alpha)
print(f"BERTScore, DA on - DA off (paired, per trial): {ci}  (n = {len(diff)} trials)")
fig, ax = plt.subplots(figsize=(8, 3.8))
piv = table.pivot(index="subject", columns="condition", values="bertscore")
colors = {"DA on": "C0", "DA off": "C1", "ridge + NN baseline": "C7", "semantic read-out": "C4",
          "noise ceiling": "C2"}
order = [c for c in colors if c in piv]
piv[order].plot.bar(ax=ax, rot=0, color=[colors[c] for c in order])
for i, subj in enumerate(piv.index if "chance (mean)" in piv else []):
    ax.hlines(piv.loc[subj, "chance (mean)"], i - 0.4, i + 0.4, color="k", ls="--", lw=1,
              label="chance (shuffled fMRI)" if i == 0 else None)
lo = np.nanmin(piv.to_numpy()) - 5
ax.set(ylim=(max(0, lo), None), ylabel=METRIC_LABELS["bertscore"] + " (%)", xlabel="",
       title=f"target subjects: DA on - off = {ci}")
ax.legend(fontsize="x-small", frameon=False, ncol=3)
fig.tight_layout()
save_figure(fig, "05_da_ablation", cfg)

# %% [markdown]
# ## Examples: fMRI2Text beside Video2Text
# A few evaluation trials of each target subject (the true class shown for reference only).

# %%
ex = tables["DA on"][["subject", "instruction", "video2text"]].copy()
ex["class"] = ev.table["class_name"].to_numpy()
ex["fMRI2Text (DA on)"] = tables["DA on"]["fmri2text"]
ex["fMRI2Text (DA off)"] = tables["DA off"]["fmri2text"]
ex["BERTScore (DA on)"] = scores["DA on"].per_trial["bertscore"].round(1)
examples = ex.groupby("subject", group_keys=False).head(cfg.eval.n_examples)
examples.to_csv(cfg.figures_dir / "05_examples.csv", index=False)
pd.set_option("display.max_colwidth", 80)
examples

# %% [markdown]
# ## Summary

# %%
all_rows = table[table.subject == "all"].set_index("condition")
summary = {f"bertscore_{k.replace(' ', '_').replace('+', '').replace('(', '').replace(')', '')}":
           round(float(v), 2) for k, v in all_rows["bertscore"].items()}
summary.update(da_minus_noda=str(ci), da_beats_noda=bool(ci.estimate > 0),
               n_eval_trials=len(ev), n_shuffles=manifest["n_shuffles"],
               **{k: (round(v, 1) if isinstance(v, float) else v) for k, v in timing.items()})
pd.Series(summary).to_json(d / "notebook_summary.json", indent=1)
display(pd.Series(summary))
display(Markdown(da_reading(table, ci)))
