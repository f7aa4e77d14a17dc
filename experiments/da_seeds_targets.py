"""DA on vs off on the target subjects over Stage II seeds 0-2 (Stage I of notebook 03); run after make reproduce:
LLM4BRAIN_HOME=. .venv/bin/python experiments/da_seeds_targets.py  (writes runs/default/da_seeds/; results copied to experiments/results/da_seeds_targets.csv)"""
import json, sys, time
import numpy as np, pandas as pd, torch
from llm4brain.captions import load_captions
from llm4brain.config import load_config
from llm4brain.data import load_splits, load_stimuli, load_trial_cache
from llm4brain.evaluation.attributes import sign_flip_pvalue
from llm4brain.evaluation.metrics import TextScorer
from llm4brain.experiments import run_ablations, score_decodes
from llm4brain.evaluation.stage2_results import read_decodes, save_decodes, stage2_results_dir
from llm4brain.training.vlpretrain import load_video_llm, video_features

from _common import require_run
require_run("default", "05")
torch.set_num_threads(2)
cfg = load_config("default")
tc = load_trial_cache(cfg); splits = load_splits(cfg.run_dir / "splits.json")
stim = load_stimuli(cfg); captions = load_captions(cfg)
vlm = load_video_llm(cfg); features = video_features(cfg, progress=False)
rows = {}
for k in (0, 1, 2):   # seed 0 = run.seed: notebook 05's two runs, reloaded
    sd = {"stage2.seed": k} if k else {}
    rows[f"DA on|{k}"] = dict(sd)
    rows[f"DA off|{k}"] = {**sd, "stage2.domain_adaptation": False}
out = cfg.run_dir / "da_seeds"; out.mkdir(exist_ok=True)
t0 = time.time()
dec = run_ablations(cfg, tc, splits, captions, rows, seeds=(0,), vlm=vlm, features=features,
                    on_done=lambda r, s, df, sec, tr: (save_decodes(df, out / f"{r.replace(' ', '_').replace('|', '_s')}.tsv"), print(r, round(sec), tr, flush=True)))
scorer = TextScorer(cfg.eval)
recs = []
for (r, _), df in dec.items():
    cond, k = r.split("|")
    recs.append(dict(condition=cond, seed=int(k), **score_decodes(df, stim, scorer)))
man = json.loads((stage2_results_dir(cfg) / "manifest.json").read_text())
for i, f in enumerate(man["chance"]):
    recs.append(dict(condition="chance (shuffled fMRI, DA on seed 0)", seed=i, **score_decodes(read_decodes(stage2_results_dir(cfg) / f), stim, scorer)))
t = pd.DataFrame(recs); t.to_csv(out / "da_seeds.csv", index=False)
print(t.groupby("condition")[["agent", "scene", "bertscore", "distinct"]].agg(["mean", "std"]).round(2).to_string())
on = t[t.condition == "DA on"].set_index("seed"); off = t[t.condition == "DA off"].set_index("seed")
for m in ("agent", "scene", "bertscore", "distinct"):
    d = (on[m] - off[m]).to_numpy()
    print(m, "diff", d.round(2), "mean", round(d.mean(), 2), "sd", round(d.std(ddof=1), 2), "p", sign_flip_pvalue(d, 2000, 0))
print("seconds", round(time.time() - t0))
