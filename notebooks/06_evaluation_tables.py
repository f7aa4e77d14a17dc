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
# # 06 · Evaluation: the paper's Tables 1-2, with every number beside its controls
#
# The paper (section 4.2) scores **fMRI2Text** — what the LLM says when it is given a target
# subject's fMRI and a question — against **Video2Text** — what the video-LLM says about the
# clip for the same question — with BERTScore, SacreBLEU-1/2 and ROUGE-L F/P/R, per target
# subject and in total (its Tables 1 and 2). It reports BERTScore 53.27 % and SacreBLEU-1
# 33.91 % on HAD, but no chance level, no baseline and no interval, so those numbers cannot be
# judged on their own. This notebook reproduces the tables and sets each number beside:
#
# | control | question it answers |
# |---|---|
# | **chance** (fMRI shuffled across trials, then decoded, repeated) | does the fMRI carry trial-specific information the decoder uses? The same decoder, with its answer style and its prior over frequent actions, but another trial's brain. |
# | **baseline** (ridge to the video embedding, then the nearest training clip's answer) | does the LLM decoder beat a simple linear read-out plus retrieval? |
# | **LLM without brain tokens** (the same prompt, the placeholder left empty) | how much of the answer comes from the instruction and the LLM alone (Tang et al.'s null sequences)? |
# | **constant answer** (the most frequent training answer, for every trial) | what does a decoder score that ignores the brain and guesses the mode? |
# | **semantic read-out** (logistic read-outs of class and scene from the most selective voxels, trained on the training subjects; the training trials' mean video tokens of the decoded class and scene, through the video-LLM untouched), beside its own chance (the read-outs shuffled across trials) | what reaches the LLM when the brain's class and scene information is handed over directly, with no Stage I or Stage II training? |
# | **noise ceiling** (the semantic read-out, the package's best decoder, fitted and applied on the simulator's noise-free responses) | how far is it from what decoding could reach without measurement noise? (simulated data only) |
# | **Video2Text vs truth** (the video-LLM's answers against the clips' true descriptions) | how good is the target itself? The decoder is scored against Video2Text, never against the video. (simulated data only) |
#
# Intervals: bootstrap over trials (95 %) for every decoder, the 2.5-97.5 percentiles over
# shuffles for chance. The notebook reads only what notebook 05 saved
# (`<run_dir>/results/stage2/*.tsv`); scores are cached in `<run_dir>/eval/`, keyed by the texts
# and metric settings, so a re-run takes seconds and the BERTScore model is loaded at most once.
#
# **Runs alone:** `make nb NB=06 [PROFILE=classroom]` runs it after what it needs, the decodes
# of 05. It only scores and tabulates.
# <!-- time -->**Time:** 56 s on `default` (2-core AMD EPYC, AVX2 only, 2026-12-07); 36 s on `classroom` (2-core AMD EPYC, AVX2 only, 2026-12-07) (`bench/results/notebook_times_*.md`).

# %% tags=["parameters"]
PROFILE = "default"
REBUILD = False

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from llm4brain.config import load_config
from llm4brain.evaluation.attributes import attribute_wide
from llm4brain.evaluation.evaluate import evaluate_run
from llm4brain.evaluation.identification import identification_wide
from llm4brain.evaluation.metrics import METRIC_LABELS, METRICS
from llm4brain.evaluation.stage2_results import CONDITION_ORDER, load_stage2_results
from llm4brain.plotting import (set_house_style, plot_attribute_bars, plot_metric_distributions,
                                plot_subject_bars, save_figure)

cfg = load_config(PROFILE)
set_house_style()   # the package's figure style, for this notebook's own figures too
cfg.eval

# %% [markdown]
# ## What Stage II saved
# One TSV per decoder, one row per evaluation trial of a target subject (subject,
# trial_index, clip_id, stim_file, instruction, fmri2text, video2text). The true descriptions
# of the clips exist only on the simulated data.

# %%
results = load_stage2_results(cfg)
results.available()

# %% [markdown]
# ## Scoring (cached)
# One `TextScorer` scores everything: BERTScore F1 (model `eval.bertscore_model`, layer
# `eval.bertscore_layers`, no baseline rescaling), **corpus-level** SacreBLEU-1 and -2 over the
# trials of each row (tokeniser `eval.bleu_tokenize`), ROUGE-L F/P/R with the Porter stemmer.
# `status` says which results came from the cache.
#
# `evaluate_run` does all of this notebook's work in one call: it scores every saved answer
# (cached), reads the texts back onto the clips' true attributes, runs the N-way
# identification, builds Tables 1-2, the summary and its reading, and writes them to the
# profile's `figures_dir`. The cells below show its parts.

# %%
report = evaluate_run(cfg, rebuild=REBUILD)
ev, paths = report.scores, report.metadata["paths"]
pd.Series(ev.status, name="status").to_frame()

# %% [markdown]
# ## Does the text name what was shown? Attribute accuracy (simulated data)
# BERTScore cannot tell "right agent, wrong scene" from fluent noise. On simulated data the
# truth of every clip is known, so each text — Video2Text, fMRI2Text, every control — is read
# back onto the clip's agent, action, colour, size, direction, speed and scene with the
# simulator's lexicon (`llm4brain.evaluation.attributes`; synonyms such as "automobile",
# "puppy", "woods", "from right to left" included) and scored against the truth. Each fMRI
# condition carries a one-sided sign-flip p-value against the decodes of shuffled fMRI
# (per-trial correctness minus the mean correctness of the shuffles), and every accuracy a
# 95 % bootstrap interval over trials. "Pairing chance" is what the same texts score when
# paired with random clips of the same set: a decoder that always names the most frequent
# agent sits there, however fluent it is.

# %%
attributes = report.attributes
if attributes is not None:
    fig, axes = plt.subplots(2, 1, figsize=(12, 8))
    plot_attribute_bars(attributes["truth"], ax=axes[0],
                        title="Against the truth (black ticks: each condition's pairing chance)")
    plot_attribute_bars(attributes["video2text"], ax=axes[1],
                        title="fMRI conditions against the attributes Video2Text names")
    fig.tight_layout()
    save_figure(fig, "06_attribute_accuracy", cfg)
    display(attribute_wide(attributes["truth"]))
else:
    print("no true attributes (real data): attribute accuracy is a simulated-data check")

# %% [markdown]
# ## N-way caption identification
# Mind Captioning's test: is a decoded text closer to its own trial's Video2Text than to the
# Video2Text of N - 1 other trials drawn at random? Chance is 1/N whatever the similarity
# (BERTScore F1, or the number of attributes two texts name alike), and a decoder that gives
# every trial the same fluent sentence — the constant answer, the LLM without brain tokens —
# sits exactly at chance, however high its BERTScore.

# %%
identification_wide(report.identification)

# %%
print("written to", cfg.figures_dir)
sorted(p.name for p in paths.values())

# %% [markdown]
# ## Table 1 — llm4brain (with domain adaptation), per target subject
# Percent, fMRI2Text against Video2Text. "Total" is `eval.total_row`: by default the mean of
# the subject rows, as in the paper. With 95 % bootstrap intervals below it.

# %%
report.tables["table1"]

# %%
pd.read_csv(paths["table1_ci.csv"], index_col=0)

# %% [markdown]
# ## Table 2 — ablation: the same model trained without domain adaptation

# %%
report.tables.get("table2", "no model without DA was saved by notebook 05")

# %% [markdown]
# ## The summary table: each metric beside chance, baseline and ceiling
# Read along a row: llm4brain means something only where it lies above the chance column; the
# baseline column says what a linear read-out achieves; the ceiling column is what the same
# read-out achieves on noise-free responses; the last column is how well the targets
# (Video2Text) match what was actually shown.

# %%
report.summary_wide

# %%
display(Markdown(report.reading))

# %% [markdown]
# ## Per-subject bars with the chance band and the noise ceiling
# Bars: llm4brain (with DA) per target subject and Total, with 95 % bootstrap error bars.
# Red band: chance for that subject (range over shuffles; line = mean). Black line: the noise
# ceiling of that subject.

# %%
fig, axes = plt.subplots(3, 3, figsize=(14, 11))
for ax in axes.ravel()[len(METRICS):]:
    ax.set_visible(False)
for ax, m in zip(axes.ravel(), METRICS):
    plot_subject_bars(report.tables["table1"], m, ax=ax, ci=report.table_ci["table1"],
                      chance=ev.chance.group_summary(m) if ev.chance is not None else None,
                      ceiling=(report.ceiling_table[METRIC_LABELS[m]]
                               if report.ceiling_table is not None else None))
fig.suptitle(f"llm4brain per target subject ({cfg.profile})")
fig.tight_layout()
save_figure(fig, "06_subject_bars", cfg)

# %% [markdown]
# ## Per-trial distributions
# Each point is one trial (for chance: one trial under one shuffle). The table value of
# SacreBLEU is a corpus score, so it is not the mean of these sentence-level points.

# %%
conditions = {"chance": ev.chance_trials, "baseline": ev.baseline, "llm4brain": ev.model,
              "no DA": ev.noda, "ceiling": ev.ceiling, "V2T vs truth": ev.upper}
conditions = {k: v for k, v in conditions.items() if v is not None}
fig, axes = plt.subplots(3, 3, figsize=(15, 11))
for ax in axes.ravel()[len(METRICS):]:
    ax.set_visible(False)
for ax, m in zip(axes.ravel(), METRICS):
    plot_metric_distributions(conditions, m, ax=ax)
    ax.tick_params(axis="x", labelrotation=30)
fig.tight_layout()
save_figure(fig, "06_metric_distributions", cfg)

# %% [markdown]
# ## All conditions at a glance
# Estimate and 95 % interval of every condition, per metric (the summary table as a figure).

# %%
fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3.6), sharey=True)
for j, (ax, m) in enumerate(zip(axes, METRICS)):
    t = report.summary[report.summary["metric"] == m].reset_index(drop=True)
    y = np.arange(len(t))[::-1]
    err = np.vstack([t["estimate"] - t["low"], t["high"] - t["estimate"]]).clip(0)
    ax.errorbar(t["estimate"], y, xerr=np.nan_to_num(err), fmt="o", color="k", capsize=3)
    mod = t[t["condition"] == CONDITION_ORDER["model"]]
    ax.scatter(mod["estimate"], y[mod.index], color="C0", zorder=3, s=40)
    if j == 0:
        ax.set_yticks(y, t["condition"])
    ax.set_title(METRIC_LABELS[m])
    ax.set_xlabel("x100" if m == "cider" else "%")
    ax.grid(axis="x", alpha=0.3)
fig.tight_layout()
save_figure(fig, "06_summary_intervals", cfg)

# %% [markdown]
# ## Domain adaptation: with vs without, per subject

# %%
if "table2" in report.tables:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, lab in zip(axes, ["BERTScore", "SacreBLEU-1"]):
        pd.concat({"with DA": report.tables["table1"][lab],
                   "without DA": report.tables["table2"][lab]}, axis=1).plot.bar(ax=ax, rot=0)
        ax.set_ylabel(f"{lab} (%)")
        ax.set_title(lab)
    fig.tight_layout()
    save_figure(fig, "06_da_ablation", cfg)

# %% [markdown]
# ## Examples, as in the paper: Video2Text above fMRI2Text
# For each target subject, trials from best to worst by BERTScore — failures included, so the
# table is not read from hand-picked successes.

# %%
display(Markdown(paths["examples.md"].read_text()))

# %% [markdown]
# `figures/summary.md` (here: the profile's `figures_dir`) holds the summary table, Tables
# 1-2, the paragraph above, the metric settings and these examples; the tables are also in
# CSV (full precision), Markdown and LaTeX (`booktabs`).
