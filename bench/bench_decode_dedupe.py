"""Greedy decoding of repeated inputs once: time and answers against decoding every row.

Usage: ``.venv/bin/python bench/bench_decode_dedupe.py [PROFILE]`` after ``make reproduce``
(it reads the run's Stage I model, video-LLM, surrogate captions and semantic read-out).

The semantic read-out hands the LLM one prototype per decoded (class, scene) cell, so its 240
target trials hold far fewer distinct inputs; the no-brain control has one per instruction.
For both, in one process on the same machine, the bench decodes every row (the former way) and
each distinct input once (:func:`llm4brain.evaluation.decoding.decode`), and writes the times
and how many answers agree to ``bench/results/decode_dedupe.csv`` and ``.md``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
import torch

from llm4brain.captions import load_captions
from llm4brain.config import load_config
from llm4brain.data import load_splits, load_stimuli, load_trial_cache
from llm4brain.evaluation import decoding as dec
from llm4brain.evaluation.semantic import fit_semantic_readout, semantic_eval_tokens
from llm4brain.models.stage2 import build_stage2_model
from llm4brain.models.video_llm import splice_prefix
from llm4brain.training.stage1 import load_stage1
from llm4brain.training.vlpretrain import load_video_llm, video_features

OUT = Path(__file__).parent / "results"
#: Exit status when the run it reads is missing: make bench skips it (experiments/_common.py).
MISSING_RUN = 3


def every_row(model, z, ins) -> list[str]:
    """The former decoding: one generation per row."""
    return dec._generate(model, ins, lambda s, e: model.prompt_batch(z[s:e], ins[s:e])[0],
                         seed=0, progress=False, desc="")


def no_brain_every_row(model, ins) -> list[str]:
    def empty(s, e):
        return splice_prefix(model.llm, [model.prompt(i) for i in ins[s:e]],
                             torch.zeros(e - s, 0, model.llm.hidden_size),
                             placeholder=model.llm_cfg.placeholder)
    return dec._generate(model, ins, empty, seed=0, progress=False, desc="")


def main(profile: str = "default") -> pd.DataFrame:
    cfg = load_config(profile)
    done = cfg.run_dir / "notebooks" / "04_surrogate_captions.ipynb"
    if not done.is_file():
        on = "" if profile == "default" else f" PROFILE={profile}"
        print(f"bench_decode_dedupe.py: needs the {profile} run through notebook 04 ({done} is "
              f"missing): run `make reproduce{on}` first", file=sys.stderr)
        raise SystemExit(MISSING_RUN)
    if cfg.run.num_threads:
        torch.set_num_threads(cfg.run.num_threads)
    tc = load_trial_cache(cfg)
    splits = load_splits(cfg.run_dir / "splits.json")
    vlm = load_video_llm(cfg)
    stim = load_stimuli(cfg)
    features = video_features(cfg, stim)
    stage1 = load_stage1(cfg, tc, vlm=vlm)
    captions = load_captions(cfg)
    ev = dec.build_eval_set(cfg, stage1, tc, splits, captions)
    readout = fit_semantic_readout(cfg, tc, splits, vlm, features, stim, cache=True)
    model = build_stage2_model(cfg, vlm.branch.proj, vlm.llm, domain_adaptation=False)
    z, _ = semantic_eval_tokens(cfg, readout, tc, splits, ev)
    ins = ev.table["instruction"].tolist()
    rows = []
    for name, full, once in (
            ("semantic read-out", lambda: every_row(model, z, ins), lambda: dec.decode(model, z, ins)),
            ("no brain tokens", lambda: no_brain_every_row(model, ins),
             lambda: dec.no_brain_decodes(model, ev)["fmri2text"].tolist())):
        t0 = time.perf_counter()
        a = full()
        t1 = time.perf_counter()
        b = once()
        t2 = time.perf_counter()
        n_unique = (len(dec.unique_inputs(z, ins)[0]) if name == "semantic read-out"
                    else len(set(ins)))
        rows.append(dict(decoder=name, rows=len(a), distinct_inputs=n_unique,
                         every_row_s=round(t1 - t0, 1), once_s=round(t2 - t1, 1),
                         speedup=round((t1 - t0) / max(t2 - t1, 1e-9), 1),
                         same_answers=sum(x == y for x, y in zip(a, b))))
    df = pd.DataFrame(rows)
    OUT.mkdir(exist_ok=True)
    df.to_csv(OUT / "decode_dedupe.csv", index=False)
    (OUT / "decode_dedupe.md").write_text(
        f"# Greedy decoding of distinct inputs once (profile `{profile}`)\n\n"
        f"Written by `bench/bench_decode_dedupe.py`; both ways in one process, "
        f"{torch.get_num_threads()} thread(s).\n\n" + df.to_markdown(index=False) + "\n")
    print(df.to_string(index=False))
    return df


if __name__ == "__main__":
    main(*sys.argv[1:2])
