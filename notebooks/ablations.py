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
# # Ablations (paper Table 3; `make ablations`)
#
# Each row switches one part of LLM4Brain off **by a parameter value** (a dotted config key),
# never by a copied notebook; every row is trained on the training subjects and decoded on
# the target subjects' evaluation trials, for each training seed (`run.seed`: Stage I and
# Stage II; the MAE of notebook 02 and the video-LLM of notebook 04 are shared by every row):
#
# | row | setting |
# |---|---|
# | full | the profile as it is |
# | without Stage I alignment | `stage1.align: false` (MAE encoder + untrained projection) |
# | without MAE pretraining | `mae.pretrained: false` (Stage I from a random encoder) |
# | without adaptors | `stage1.encoder_adaptors: false`, `stage1.qformer_adaptors: none` |
# | NVL tokenizer | `tokenizer.kind: nvl` (its own MAE, notebook 02) |
# | without DA | `stage2.domain_adaptation: false` |
# | prompt without brain tokens | the full model's prompt with no fMRI tokens (notebook 05's `no_brain.tsv`) |
#
# Scores: BERTScore against Video2Text and the attribute scorer against the simulator's truth
# (agent, scene, all), each beside chance (the full model fed shuffled fMRI, notebook 05) and
# the noise ceiling (notebook 05). Mean ± sd over seeds. Runs already trained (e.g. the full
# model and DA off with seed 0, from notebook 05) are reloaded, not retrained.

# %% tags=["parameters"]
PROFILE = "default"
SEEDS = [0, 1, 2]
ROWS = {
    "full": {},
    "without Stage I alignment": {"stage1.align": False},
    "without MAE pretraining": {"mae.pretrained": False},
    "without adaptors": {"stage1.encoder_adaptors": False, "stage1.qformer_adaptors": "none"},
    "NVL tokenizer": {"tokenizer.kind": "nvl"},
    "without DA": {"stage2.domain_adaptation": False},
}

# %%
import json
import time

import numpy as np
import pandas as pd
import torch

from llm4brain.captions import load_captions
from llm4brain.config import load_config
from llm4brain.data import load_splits, load_stimuli, load_trial_cache
from llm4brain.evaluation.metrics import TextScorer
from llm4brain.evaluation.stage2_results import read_decodes, save_decodes, stage2_results_dir
from llm4brain.evaluation.tables import to_markdown
from llm4brain.experiments import run_ablations, score_decodes
from llm4brain.plotting import set_house_style, plot_candidate_bars, save_figure
from llm4brain.training.vlpretrain import load_video_llm, video_features

cfg = load_config(PROFILE)
set_house_style()   # the package's figure style, for this notebook's own figures too
if cfg.run.num_threads:
    torch.set_num_threads(cfg.run.num_threads)
t_start = time.time()
out_dir = cfg.run_dir / "ablations"
out_dir.mkdir(parents=True, exist_ok=True)
tc = load_trial_cache(cfg)
splits = load_splits(cfg.run_dir / "splits.json")
stim = load_stimuli(cfg)
captions = load_captions(cfg)
vlm = load_video_llm(cfg)
features = video_features(cfg, progress=False)
manifest = json.loads((stage2_results_dir(cfg) / "manifest.json").read_text())

# %% [markdown]
# ## Train and decode every row and seed
#
# Each decoding table goes to `runs/<profile>/ablations/<row>_seed<k>.tsv` as it finishes.

# %%
timing = {}
decodes = run_ablations(
    cfg, tc, splits, captions, ROWS, seeds=SEEDS, vlm=vlm, features=features,
    on_done=lambda row, seed, df, s, trained: (
        save_decodes(df, out_dir / f"{row.replace(' ', '_')}_seed{seed}.tsv"),
        timing.__setitem__(f"{row} / seed {seed}", round(s)),
        print(f"{row}, seed {seed}: {s:.0f} s ({'trained' if trained else 'reloaded'})")))

# %% [markdown]
# ## Table 3

# %%
d = stage2_results_dir(cfg)
controls = {"chance (shuffled fMRI)": [read_decodes(d / f) for f in manifest["chance"]],
            "prompt without brain tokens": [read_decodes(d / manifest["no_brain"])]}
if manifest.get("ceiling"):
    controls["noise ceiling"] = [read_decodes(d / manifest["ceiling"])]
scorer = TextScorer(cfg.eval)
rows = [dict(row=r, seed=s, **score_decodes(df, stim, scorer)) for (r, s), df in decodes.items()]
rows += [dict(row=name, seed=k, **score_decodes(df, stim, scorer))
         for name, dfs in controls.items() for k, df in enumerate(dfs)]
long = pd.DataFrame(rows)
long.to_csv(out_dir / "ablations_long.csv", index=False)
metrics = ["bertscore", "agent", "scene", "all", "distinct"]
agg = long.groupby("row", sort=False)[metrics].agg(["mean", "std"])
table = pd.DataFrame({m: [f"{agg.loc[r, (m, 'mean')]:.2f} ± {agg.loc[r, (m, 'std')]:.2f}"
                          if np.isfinite(agg.loc[r, (m, 'std')]) else
                          f"{agg.loc[r, (m, 'mean')]:.2f}" for r in agg.index]
                      for m in metrics}, index=agg.index)
table["seeds"] = long.groupby("row", sort=False)["seed"].nunique()
table.to_csv(cfg.figures_dir / f"ablations_{cfg.profile}.csv")
n_trials = len(next(iter(decodes.values())))
(cfg.figures_dir / f"ablations_{cfg.profile}.md").write_text(
    f"Ablations ({cfg.profile}; target subjects' evaluation trials, n = {n_trials}; mean ± sd "
    f"over seeds {SEEDS}; BERTScore vs Video2Text, attribute accuracy (%) vs the simulator's "
    f"truth; controls from notebook 05)\n\n" + to_markdown(table) + "\n")
table

# %%
kind = {"chance (shuffled fMRI)": "chance", "prompt without brain tokens": "chance",
        "noise ceiling": "ceiling"}
plot_t = long.melt(id_vars=["row", "seed"], value_vars=["bertscore", "agent", "scene"],
                   var_name="metric").assign(label=lambda t: t["row"],
                                             kind=lambda t: t["row"].map(kind).fillna("model"))
bs = plot_t[(plot_t.metric == "bertscore") & (plot_t.kind != "chance")]["value"]
fig = plot_candidate_bars(plot_t, ["bertscore", "agent", "scene"],
                          titles={"bertscore": "BERTScore vs Video2Text",
                                  "agent": "agent named (%)", "scene": "scene named (%)"},
                          xlims={"bertscore": (float(bs.min()) - 4, float(bs.max()) + 2)})
save_figure(fig, "ablations", cfg)

# %%
summary = dict(seeds=SEEDS, rows=list(ROWS), seconds=round(time.time() - t_start),
               per_run_seconds=timing)
(out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
print(f"make ablations: {summary['seconds']} s for {len(ROWS)} rows x {len(SEEDS)} seeds")
