"""Dynamic int8 quantisation of the frozen LLM for generation: time and answers against float32.

Inference-only speed-ups are worth having only where the answers stay the same. This script
generates the surrogate answers of the first 128 subject clips of a finished run twice, with
the float32 LLM and with ``torch.ao.quantization.quantize_dynamic`` (int8 weights of every
``nn.Linear``, activations quantised on the fly), greedy, same prompts, and counts identical
answers. Writes ``bench/results/int8_inference.{csv,md}``.

Usage: ``LLM4BRAIN_HOME=... .venv/bin/python bench/bench_int8.py [PROFILE]`` (default
``classroom``; needs its run through notebook 03, which trains the video-LLM).
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_times import machine_id  # noqa: E402

from llm4brain.config import load_config  # noqa: E402
from llm4brain.data import load_stimuli  # noqa: E402
from llm4brain.training.vlpretrain import load_video_llm, video_features  # noqa: E402

N = 128


def main(profile: str = "classroom") -> Path:
    cfg = load_config(profile)
    if not (cfg.run_dir / "notebooks" / "03_stage1_alignment.ipynb").is_file():
        print(f"bench_int8.py: needs the {profile} run through notebook 03 "
              f"({cfg.run_dir}/notebooks/03_stage1_alignment.ipynb is missing): run "
              f"'make nb NB=03 PROFILE={profile}' first")
        raise SystemExit(3)
    stim = load_stimuli(cfg)
    feats = video_features(cfg, stim, progress=False)
    vlm = load_video_llm(cfg)
    files = stim[stim.corpus == "subjects"].stim_file.tolist()[:N]
    ins = list(cfg.captions.instructions)
    instr = [ins[i % len(ins)] for i in range(len(files))]
    get = lambda rows: feats.get([files[i] for i in rows])  # noqa: E731
    rows = []
    with torch.no_grad():
        t = time.perf_counter()
        fp32 = vlm.generate(get, instr)
        rows.append(dict(weights="float32", seconds=time.perf_counter() - t))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vlm.llm.model = torch.ao.quantization.quantize_dynamic(
                vlm.llm.model, {torch.nn.Linear}, dtype=torch.qint8)
        t = time.perf_counter()
        int8 = vlm.generate(get, instr)
        rows.append(dict(weights="int8 dynamic", seconds=time.perf_counter() - t))
    same = sum(a == b for a, b in zip(fp32, int8))
    df = pd.DataFrame(rows).assign(answers=len(files), identical_to_float32=[len(files), same],
                                   machine=machine_id(), profile=profile)
    out = Path(__file__).parent / "results" / "int8_inference.csv"
    df.to_csv(out, index=False)
    speed = rows[0]["seconds"] / rows[1]["seconds"]
    lines = [f"# Dynamic int8 LLM for generation ({profile} run, {len(files)} greedy answers)", "",
             f"# machine: {machine_id()}", "", df.to_markdown(index=False, floatfmt=".1f"), "",
             f"int8 is {speed:.2f}x as fast and {same} of {len(files)} answers are identical "
             f"to float32's: {'kept' if same == len(files) else 'not used (the answers change)'}.",
             "", "| float32 | int8 |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in list(zip(fp32, int8))[:6]]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    main(*sys.argv[1:2])
