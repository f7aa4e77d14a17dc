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
# # 07 · Talking to a recording: dialogue, question answering, concept maps
#
# NVL (Shen et al. 2024) sells interaction over captioning: a researcher asks a brain
# recording questions, turn after turn, and asks *where* in the brain a decoded concept comes
# from. NVL shows dialogues and heat maps without any check that they are right. On the
# simulated data we know the answers (every clip's agent, colour, motion, scene) and the
# anatomy (which region the simulator tuned to which feature group), so here each of the
# three features is set beside what it should be:
#
# 1. **a three-turn dialogue** about one target-subject trial (its fMRI tokens through the
#    Stage II bridge), beside the same dialogue with the clip's video tokens — what the
#    video-LLM itself says, the reference the fMRI decoder was trained to imitate;
# 2. **question answering from fMRI**, scored against the simulator's truth, beside chance
#    (1/k), shuffled fMRI and the video-grounded answers;
# 3. **concept maps**: which voxels drive a phrase of the decoded answer, scored with an
#    ROC-AUC against the regions the simulator tuned to that phrase's feature group.
#
# The notebook reads the models notebooks 02-05 trained and the answers notebook 05 decoded
# (`<run_dir>/results/stage2`). The one thing it trains is the **dialogue continuation** of
# Stage II (section 1b), on training subjects' clips and trials only; target subjects'
# evaluation trials are used only for the final numbers.
#
# **Runs alone:** `make nb NB=07 [PROFILE=classroom]` runs it after what it needs, Stage I
# (03), the captions (04) and Stage II (05).
# <!-- time -->**Time:** 5.9 min on `default` (2-core AMD EPYC, AVX2 only, 2026-12-07); 93 s on `classroom` (2-core AMD EPYC, AVX2 only, 2026-12-07) (`bench/results/notebook_times_*.md`).

# %% tags=["parameters"]
PROFILE = "default"
SUBJECT = ""                 # a target subject ("" = the first)
TRIAL = 0                    # its evaluation trial number (0-based)
DIALOGUE = ["What is the main thing happening in the video?",
            "Describe the video in detail.",
            "What might happen next, and why?"]
DIALOGUE_MAX_NEW_TOKENS = 24
QA_MAX_TRIALS = 24           # questions asked about the first N evaluation trials per subject
QA_MAX_NEW_TOKENS = 8
QA_SHUFFLES = 1
CONCEPT_MAX_TRIALS = 24      # concept maps from the first N evaluation trials per subject
CONCEPT_METHOD = "gradient_x_input"
N_PERM = 1000
# the small profiles ask about fewer trials, with shorter dialogue turns: smoke (tests, CI)
# shows the mechanics on 4 trials, classroom (a lesson) the findings on 12
SMALL_PROFILES = {"smoke": {"trials": 4, "new_tokens": 12},
                  "classroom": {"trials": 12, "new_tokens": 16}}

# %%
import time

import pandas as pd
from IPython.display import Markdown, display

from llm4brain.atomic import write_csv, write_text
from llm4brain.config import load_config
from llm4brain.dialogue import (concept_localisation, concept_markdown, concept_reading,
                                load_chat_models, plot_concept_auc, plot_concept_maps,
                                plot_qa_accuracy, qa_accuracy, qa_reading, write_concepts,
                                write_qa)
from llm4brain.evaluation.stage2_results import read_decodes, resolve_stage2_files
from llm4brain.plotting import set_house_style, save_figure

cfg = load_config(PROFILE)
set_house_style()   # the package's figure style, for this notebook's own figures too
t0 = time.time()
small = SMALL_PROFILES.get(cfg.profile, dict(trials=QA_MAX_TRIALS, new_tokens=DIALOGUE_MAX_NEW_TOKENS))
qa_trials = min(QA_MAX_TRIALS, small["trials"])
concept_trials = min(CONCEPT_MAX_TRIALS, small["trials"])
turn_tokens = min(DIALOGUE_MAX_NEW_TOKENS, small["new_tokens"])
models = load_chat_models(cfg)
subject = SUBJECT or models.subjects[0]
print(f"profile {cfg.profile}: target subjects {models.subjects}, "
      f"{len(models.trials)} evaluation trials; tokenizer {cfg.tokenizer.kind}; "
      f"Stage II {'with' if models.stage2.domain_adaptation else 'without'} domain adaptation")

# %% [markdown]
# ## 1 · A three-turn dialogue, from the fMRI and from the video
#
# The trial's tokens are spliced into the first user turn (`<video>\n<question>`, the prompt
# Stage II was trained on); later turns are text. Answers are greedy and the LLM's key/value
# cache is kept across turns, so each question feeds only the tokens the cache lacks
# (`n_fed`). The same three questions are then asked with the clip's video tokens. The
# questions follow NVL's three task types: a brief caption, a detailed description, a
# question that needs reasoning beyond what is shown. Stage II was trained on one-turn
# answers only, so here turns two and three show how the frozen LLM carries the conversation
# on; section 1b trains the bridge on multi-turn dialogues and asks again.

# %%
row = models.trial(subject, TRIAL)
convs = {kind: models.conversation(subject, TRIAL, video=(kind == "video"),
                                   max_new_tokens=turn_tokens)
         for kind in ("fMRI", "video")}
for conv in convs.values():
    conv.chat(DIALOGUE)
dialogue = pd.DataFrame({"question": DIALOGUE,
                         "fMRI tokens": [t.answer for t in convs["fMRI"].turns],
                         "video tokens": [t.answer for t in convs["video"].turns],
                         "n_fed (fMRI)": [t.n_fed for t in convs["fMRI"].turns]})
print(f"sub-{row['subject']}, evaluation trial {TRIAL}: clip {row['clip_id']} "
      f"(class {row['class_name']})")
with pd.option_context("display.max_colwidth", 200):
    display(dialogue)

# %% [markdown]
# ## 1b · Dialogue training data: NVL's three tasks as multi-turn surrogate dialogues
#
# Stage II learned one answer to one instruction per trial. NVL also trains on detailed
# descriptions, complex reasoning and multi-round dialogue. The video-LLM provides these the
# way it provided Stage II's captions: for training subjects' clips it answers one
# instruction of each task (`dialogue.brief`, `dialogue.detailed`, `dialogue.reasoning`, in
# `dialogue.turns` order) from the clip's video tokens, each answer kept in the history of the
# next turn. Every turn of every training trial's dialogue is then a Stage II example (fMRI
# tokens in the first user turn, the history, the surrogate answer as target), and the trained
# bridge goes on learning on them for `dialogue.steps` steps with Stage II's own loss (DANCE
# included when the run has it). Target subjects' clips are refused by the generator
# (`LeakageError`). The same three questions about the target trial are then asked again,
# with the dialogue-tuned bridge.

# %%
import dataclasses

from llm4brain.captions import load_captions
from llm4brain.data import load_splits, load_trial_cache
from llm4brain.dialogue.data import dialogue_clips, generate_dialogues, train_dialogue_stage2
from llm4brain.training.stage2 import build_stage2_data

if cfg.dialogue.steps > 0:
    tc = load_trial_cache(cfg)
    splits = load_splits(cfg.run_dir / "splits.json")
    clips = dialogue_clips(cfg, tc, splits)
    dialogues = generate_dialogues(cfg, clips, splits, vlm=models.vlm, features=models.features())
    s2data = build_stage2_data(cfg, models.stage1, tc, splits, load_captions(cfg))
    n_ex = int(s2data.source_meta["stim_file"].isin(clips).sum()) * len(cfg.dialogue.turns)
    print(f"{len(clips)} training clips x {len(cfg.dialogue.turns)} turns "
          f"({', '.join(cfg.dialogue.turns)}) = {len(dialogues)} surrogate answers; "
          f"{n_ex} Stage II examples from the training trials of those clips")
    with pd.option_context("display.max_colwidth", 160):
        display(dialogues[dialogues["stim_file"] == clips[0]][["task", "instruction", "answer"]])
    dlg = train_dialogue_stage2(cfg, s2data, dialogues, models.stage2, models.llm,
                                models.vlm.branch.proj)
    tuned = dataclasses.replace(models, stage2=dlg.model)
    conv = tuned.conversation(subject, TRIAL, max_new_tokens=turn_tokens)
    conv.chat(DIALOGUE)
    dialogue["fMRI tokens, dialogue-tuned"] = [t.answer for t in conv.turns]
    write_csv(dialogue, cfg.figures_dir / "07_dialogue.csv", index=False)
    with pd.option_context("display.max_colwidth", 200):
        display(dialogue[["question", "fMRI tokens", "fMRI tokens, dialogue-tuned",
                          "video tokens"]])
else:
    print("dialogue.steps is 0: no dialogue continuation on this profile")

# %% [markdown]
# ## 2 · Question answering from fMRI, scored against the truth
#
# Six questions whose answers the simulator knows (agent kind, colour, size, direction,
# speed, scene), each a one-turn dialogue per trial; an answer counts when it names exactly
# the right option (the simulator's lexicon maps words onto options; an answer naming none
# or several is `none`). Beside each accuracy: **chance** 1/k, the **shuffled-fMRI** level
# (the same decoder given another trial's fMRI of the same subject: what it says whatever
# the brain did) and the **video-grounded** answers (the ceiling the decoder imitates). The
# first `QA_MAX_TRIALS` evaluation trials of each subject are asked, with one shuffle and
# short answers, to keep the notebook within the CPU budget of `make reproduce`; on a GPU
# profile raise them (`papermill -p QA_MAX_TRIALS 1000 -p QA_SHUFFLES 5`). The small profiles
# ask about fewer trials (`SMALL_PROFILES`): smoke's numbers show the mechanics, not decoding;
# classroom's 12 trials give wide intervals.

# %%
qa = qa_accuracy(models, n_shuffles=QA_SHUFFLES, max_new_tokens=QA_MAX_NEW_TOKENS,
                 max_trials=qa_trials, progress=True)
write_qa(qa, cfg)
qa_cols = ["question", "k", "n", "fmri", "fmri_ci_low", "fmri_ci_high", "video", "semantic", "chance",
           "shuffled_mean", "shuffled_low", "shuffled_high", "fmri_none", "video_none"]
write_csv(qa.table, cfg.figures_dir / "07_qa_table.csv", index=False)
display(qa.table[qa_cols].round(1))
display(Markdown(qa_reading(qa.table)))

# %%
fig = plot_qa_accuracy(qa.table, title=f"question answering from fMRI ({cfg.profile}, "
                       f"{qa.settings['n_trials']} target trials)")
save_figure(fig, "07_qa_accuracy", cfg)

# %% [markdown]
# Read an fMRI bar against the grey band, not only against the dashed chance tick: a decoder
# that always says "a person" scores well above 1/3 on *agent* when a third of the clips show
# people and another option is rare, and the shuffled-fMRI band shows exactly that prior.
# Only a bar above the band says the answer depends on the trial's brain activity.

# %% [markdown]
# ## 3 · Concept maps: which voxels drive a decoded phrase?
#
# For every evaluation trial (the first `CONCEPT_MAX_TRIALS` per subject), the decoded
# answer notebook 05 wrote is searched for phrases of five types — the **agent** noun, the
# **action** verb, **motion** words (direction, speed), the **scene** and the **colour** —
# and the log-probability of each phrase's tokens, given the trial's bridged fMRI tokens,
# the prompt and the answer before it (teacher forcing), is attributed to the input voxels
# through the tokenizer, the SC-MBM encoder, the Stage I projection, the Stage II bridge and
# the frozen LLM, by **gradient x input** summed over the block's volumes (why this and not
# integrated gradients: `llm4brain/dialogue/attribution.py`; in short, one backward pass per
# trial, and the 3D-CNN tokenizer's GroupNorm makes the model blind to the block's overall
# scale, so integrated gradients from an all-zero block measure an artefact). A phrase
# type's map is the mean |attribution| over the trials whose answer has it.
#
# **Scoring**: for each phrase type and each of the simulator's eight regions, the ROC-AUC of
# that map for the region's voxels (membership >= 0.5, at the subject's own anatomical
# shift) against all other brain voxels, averaged over target subjects; chance is 0.5. Two
# one-sided permutation p-values: `p_perm` shuffles voxel labels (optimistic: neighbouring
# voxels are not independent) and `p_spatial` moves the region to random places of the grid
# (same shape and smoothness: the one to read). The region expected for each phrase type is
# the one tuned to its feature group: agent → LOC, action → EBA/pSTS, motion → MT+, scene →
# PPA, colour → EVC (low-level statistics); M1, A1 and dlPFC respond to nothing.

# %%
files = resolve_stage2_files(cfg)
decodes = read_decodes(files["model"] if models.stage2.domain_adaptation else files["noda"])
concepts = concept_localisation(models, decodes, method=CONCEPT_METHOD,
                                max_trials=concept_trials, n_perm=N_PERM, progress=True)
write_concepts(concepts, cfg)
write_csv(concepts.table, cfg.figures_dir / "07_concept_table.csv", index=False)
n_with = {k: concepts.attributions.n_trials(k) for k in concepts.attributions.phrase_types}
print(f"{len(concepts.attributions.trials)} trials; trials whose decoded answer has each "
      f"phrase type: {n_with}")
expected = concepts.table[concepts.table["expected"]]
display(expected[["phrase", "region", "n_trials", "auc", "chance", "p_perm", "p_spatial"]]
        .round(3))

# %%
fig = plot_concept_auc(concepts.table)
save_figure(fig, "07_concept_auc", cfg)

# %%
fig = plot_concept_maps(concepts, title=f"mean |gradient x input| of decoded phrases "
                        f"({cfg.profile}, {cfg.tokenizer.kind} tokenizer), top 10 % of voxels; "
                        f"cyan: the expected region")
save_figure(fig, "07_concept_maps", cfg)

# %%
md = (f"### Concept localisation ({cfg.profile} profile, {cfg.tokenizer.kind} tokenizer, "
      f"{CONCEPT_METHOD}, {N_PERM} permutations; each phrase type's expected region)\n\n"
      + concept_markdown(concepts.table, expected_only=True))
write_text(cfg.figures_dir / "07_concept_table.md", md + "\n")
display(Markdown(md))
display(Markdown(concept_reading(concepts.table)))
print(f"notebook 07 took {time.time() - t0:.0f} s")

# %% [markdown]
# ## What the maps can and cannot mean
#
# * **A map explains the decoder, not the brain.** It says which input voxels, nudged, would
#   change the LLM's belief in the phrase it produced. If the decoder ignores the brain, the
#   map is still drawn — from whatever the network happens to be sensitive to — and will
#   look like a brain map. That is why each map is scored against regions we know; on real
#   data there is no such check, and NVL's heat maps have none.
# * **Check the AUC against its null, not against zero.** An AUC near 0.5 with a large
#   `p_spatial` is the honest outcome of a weak decoder: the map does not single out the
#   region. A high AUC for the *wrong* region (say the scene phrase peaking in EVC) means the
#   decoder reads the phrase off correlated low-level statistics, which the simulator's
#   scenes do carry (snow is bright, night is dark) — a real effect of the model, not of
#   "scene areas". The non-responsive regions (M1, A1, dlPFC) are the negative controls: an
#   AUC far from 0.5 there points at a bias of the attribution (for instance toward the
#   grid's edges or toward large signal), not at a concept.
# * **Gradient x input is local.** It is the first-order effect of each voxel alone; voxels
#   that matter only together, or only far from the recorded signal, can be missed. With the
#   NVL tokenizer integrated gradients are well defined and can be used for a check
#   (`CONCEPT_METHOD = "integrated_gradients"`), at several times the cost.
# * **Few trials, one phrase each.** A type's map averages only the trials whose decoded
#   answer names it (the counts are in the table); a decoder that always says "a person"
#   gives an agent map from every trial but a colour map from almost none.
# * **Resolution.** The tokenizer's patches (or strided convolutions) and the bridge mix
#   neighbouring voxels, and the regions lie close together in occipito-temporal cortex
#   (EVC, MT+, LOC and EBA overlap at the simulated resolution): a map can be right at the
#   scale of a lobe and still not separate neighbouring regions.
