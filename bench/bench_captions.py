"""Benchmark of the video-language branch on this CPU (issue 4).

Micro-benchmarks (synthetic inputs, the profile's sizes):
  * frame encoder throughput (frames/s) at ``video.image_size``, fp32 and bf16;
  * one pretraining step (Q-Formers + frozen SmolLM2 forward/backward), fp32 and bf16;
  * caption generation throughput (clips/s) at ``llm.batch_size`` / ``llm.max_new_tokens``
    (worst case: every answer runs to ``max_new_tokens``).
Pipeline (``--pipeline``): the work of notebook 04 on the profile's dataset (simulated first
if missing, not timed): frames + features of every clip, pretraining, captions of every
subject clip, agreement scores.

Every row records wall time and process CPU time (all threads): the machine is shared, and
CPU seconds are the contention-robust measure of the work. Results go to
``bench/results/captions.{csv,md}``.

    .venv/bin/python bench/bench_captions.py [--profile default] [--threads 2] [--pipeline]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llm4brain.config import load_config  # noqa: E402


class _Timer:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c


def _row(rows, stage, setting, t, n=None, unit="s"):
    """Append a row: ``n`` items per block gives a rate (items/s of wall), else seconds."""
    value = n / t.wall if n else t.wall
    rows.append(dict(stage=stage, setting=setting, value=value, unit=unit,
                     wall_s=t.wall, cpu_s=t.cpu))
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()},
          flush=True)


def micro(cfg, rows):
    from llm4brain.models.frame_encoders import EfficientNetLite0Encoder
    from llm4brain.models.llm import load_llm
    from llm4brain.training.vlpretrain import build_video_llm

    v, L = cfg.video, cfg.llm
    size = v.image_size or cfg.data.frame_size
    N = 64
    frames = torch.randint(0, 256, (N, cfg.data.frame_size, cfg.data.frame_size, 3),
                           dtype=torch.uint8)
    for bf16 in (False, True):
        enc = EfficientNetLite0Encoder(size, v.pixel_mean, v.pixel_std, bf16)
        enc(frames[:4])
        with _Timer() as t:
            out = enc(frames)
        _row(rows, "frame encoder", f"{cfg.data.frame_size}->{size} px, "
             f"{'bf16' if bf16 else 'fp32'}, {out.shape[1]} patches", t, N, "frames/s")
    with _Timer() as t:
        llm = load_llm(cfg, device="cpu")
    _row(rows, "LLM load", f"{cfg.llm.backend} (cached safetensors after the first run)", t)
    vlm = build_video_llm(cfg, llm, encoder_dim=out.shape[-1])
    B = cfg.vlpretrain.batch_size
    feats = torch.randn(B, v.n_frames, out.shape[1], out.shape[-1])
    ins = [cfg.captions.instructions[i % len(cfg.captions.instructions)] for i in range(B)]
    ans = ["A small green bird flies quickly to the right in a forest."] * B
    vlm.branch.train()
    for bf16 in (False, True):
        for rep in range(2):              # the first one warms up
            with _Timer() as t:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = vlm(feats, ins, ans)
                loss.backward()
        _row(rows, "pretraining step", f"batch {B}, {'bf16' if bf16 else 'fp32'}", t,
             unit="s/step")
    vlm.branch.eval()
    G = L.batch_size
    gfeats = torch.randn(G, v.n_frames, out.shape[1], out.shape[-1])
    gins = [cfg.captions.instructions[i % len(cfg.captions.instructions)] for i in range(G)]
    for rep in range(2):
        with _Timer() as t, torch.no_grad():
            b = vlm.build_prompt_embeds(gfeats, gins)
            llm.model.generate(inputs_embeds=b.inputs_embeds, attention_mask=b.attention_mask,
                               max_new_tokens=L.max_new_tokens, min_new_tokens=L.max_new_tokens,
                               do_sample=False, pad_token_id=llm.tokenizer.pad_token_id)
    _row(rows, "generation", f"batch {G}, {L.max_new_tokens} new tokens (worst case)", t, G,
         "clips/s")
    return llm


def pipeline(cfg, rows, llm=None):
    from llm4brain.captions import caption_agreement, generate_captions
    from llm4brain.data import load_stimuli
    from llm4brain.sim import simulate_dataset
    from llm4brain.training.vlpretrain import pretrain_video_llm, video_features

    if not (cfg.data_root / "dataset_description.json").is_file():
        simulate_dataset(cfg)
    total = []
    with _Timer() as t:
        stim = load_stimuli(cfg)
        feats = video_features(cfg, stim)
    _row(rows, "pipeline: frames + features", f"{len(stim)} clips x {cfg.video.n_frames} "
         f"frames (frame cache reused if notebook 01 built it)", t)
    total.append(t)
    with _Timer() as t:
        res = pretrain_video_llm(cfg, llm=llm, stim=stim, features=feats, overwrite=True)
    vp = cfg.vlpretrain
    _row(rows, "pipeline: pretraining", f"{vp.steps} steps x {vp.batch_size} (+ {vp.align_steps}"
         f" alignment steps)", t)
    total.append(t)
    with _Timer() as t:
        caps = generate_captions(cfg, vlm=res.model, features=feats, stim=stim, rebuild=True)
    _row(rows, "pipeline: captions", f"{len(caps)} subject clips", t)
    _row(rows, "pipeline: caption throughput", "", t, len(caps), "clips/s")
    total.append(t)
    with _Timer() as t:
        ag = caption_agreement(caps, cfg)
    _row(rows, "pipeline: agreement (BERTScore MiniLM, BLEU)", f"{2 * len(caps)} pairs", t)
    total.append(t)
    t = _Timer()
    t.wall, t.cpu = sum(x.wall for x in total), sum(x.cpu for x in total)
    _row(rows, "pipeline: total", "notebook 04's work", t)
    s = ag["summary"].set_index("condition")
    for cond in s.index:
        for m in ("bertscore", "sacrebleu1", "sacrebleu2", "rougeL_f"):
            rows.append(dict(stage=f"agreement: {cond}", setting=m, value=float(s.loc[cond, m]),
                             unit="%", wall_s=float("nan"), cpu_s=float("nan")))
    print(ag["summary"].to_string())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pipeline", action="store_true", help="also time notebook 04's work")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = load_config(a.profile)
    load0 = os.getloadavg()[0]
    rows: list[dict] = []
    llm = micro(cfg, rows)
    if a.pipeline:
        pipeline(cfg, rows, llm)
    df = pd.DataFrame(rows)
    df.insert(0, "profile", a.profile)
    df["threads"] = a.threads
    df["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    df["load_avg_start"], df["load_avg_end"] = load0, os.getloadavg()[0]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "captions.csv", index=False)
    md = ["# Video-language branch benchmark (issue 4)", "",
          f"Profile `{a.profile}`, {a.threads} torch threads, {os.cpu_count()} cores; 1-min load "
          f"average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (other jobs "
          f"share the CPU: CPU seconds are the robust measure of the work).", "",
          "| stage | setting | value | unit | wall s | CPU s |", "|---|---|---:|---|---:|---:|"]
    md += [f"| {r.stage} | {r.setting} | {r.value:.3g} | {r.unit} | {r.wall_s:.3g} | "
           f"{r.cpu_s:.3g} |" for r in df.itertuples()]
    (out / "captions.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
