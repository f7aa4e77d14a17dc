"""float32 vs bfloat16 autocast on this CPU, and what ``*bf16: auto`` decides here.

Times, in one run and on the same thread count (default 1: the machine is shared, and the
ratio per core is what matters):

  (a) a 1024 x 1024 @ 1024 x 1024 matmul;
  (b) a 3x3 conv (64 -> 64 channels) of an (8, 64, 64, 64) tensor, contiguous and
      channels-last (the frame encoder's layout);
  (c) the EfficientNet-Lite0 frame encoder of the default profile on 16 uint8 frames of
      128 px (``video.image_size``);
  (d) the workload of :func:`llm4brain.models.precision.bf16_probe`, also as five probes in a
      row from the start of the process (cold, then warm: what an ``auto`` that asked the
      probe would have decided each time);

then the decision of ``resolve_bf16('auto', 'cpu')`` (float32 on every CPU) with its reason (the
``torch.backends.cpu.get_cpu_capability()`` string and the native-bfloat16 flags of
``torch.cpu.get_capabilities()`` and ``/proc/cpuinfo``). Each timing is the best of a few
repeats after a warm-up. Writes ``bench/results/precision.{csv,md}``.

    .venv/bin/python bench/bench_precision.py [--threads 1]     # about 1 minute here
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results"

from llm4brain.models import precision  # noqa: E402


@torch.no_grad()
def best_time(fn, bf16: bool, *, budget_s: float = 1.0, max_reps: int = 5) -> tuple[float, int]:
    """Best wall seconds of ``fn()`` under (or without) CPU bfloat16 autocast; one warm-up,
    then at least 2 repeats, more while under ``budget_s`` (at most ``max_reps``)."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        fn()
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < 2 or (len(times) < max_reps
                                 and time.perf_counter() - start < budget_s):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return min(times), len(times)


def workloads():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1024, 1024, generator=g)
    b = torch.randn(1024, 1024, generator=g)
    x = torch.randn(8, 64, 64, 64, generator=g)
    k = torch.randn(64, 64, 3, 3, generator=g)
    xcl = x.contiguous(memory_format=torch.channels_last)
    conv = torch.nn.functional.conv2d
    yield "matmul", "(1024, 1024) @ (1024, 1024)", lambda: a @ b
    yield "conv 3x3", "(8, 64, 64, 64), 64 -> 64 ch, contiguous", lambda: conv(x, k, padding=1)
    yield "conv 3x3", "(8, 64, 64, 64), 64 -> 64 ch, channels-last", \
        lambda: conv(xcl, k, padding=1)
    enc = _frame_encoder()
    if enc is not None:
        frames = torch.randint(0, 256, (16, enc.image_size, enc.image_size, 3),
                               generator=g, dtype=torch.uint8)
        # the encoder's forward applies autocast itself from its ``bf16`` flag
        yield "frame encoder", f"EfficientNet-Lite0, 16 frames x {enc.image_size} px", \
            (enc, lambda: enc(frames))
    yield "bf16_probe workload", "(128, 256) @ (256, 256) + 3x3 conv (2, 32, 32, 32) cl", \
        precision._workload()


def _frame_encoder():
    try:
        from llm4brain.config import load_config
        from llm4brain.models.frame_encoders import build_frame_encoder

        cfg = load_config("default").replace(video__encoder_bf16=False)
        return build_frame_encoder(cfg)
    except Exception as exc:  # noqa: BLE001 - optional row
        print(f"frame encoder skipped: {type(exc).__name__}: {exc}", flush=True)
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    cold_probes = [precision.bf16_probe() for _ in range(5)]     # before anything warms up
    rows = []
    for name, shape, fn in workloads():
        enc = None
        if isinstance(fn, tuple):
            enc, fn = fn
        res = {}
        for bf16 in (False, True):
            if enc is not None:
                enc.bf16 = bf16
            res[bf16] = best_time(fn, False if enc is not None else bf16)
        (t32, n32), (t16, n16) = res[False], res[True]
        rows.append(dict(workload=name, shape=shape, fp32_ms=t32 * 1e3, bf16_ms=t16 * 1e3,
                         bf16_slowdown=t16 / t32, speedup=t32 / t16, reps=f"{n32}/{n16}"))
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()},
              flush=True)
    df = pd.DataFrame(rows)

    precision.clear_bf16_cache()
    t = time.perf_counter()
    use, why = precision.bf16_decision("auto", "cpu", name="bf16")
    t_decide = time.perf_counter() - t
    t = time.perf_counter()
    probe = precision.bf16_probe()
    t_probe = time.perf_counter() - t
    caps = getattr(torch.cpu, "get_capabilities", lambda: {})()
    info = {
        "torch": torch.__version__,
        "cpu": caps.get("cpu_name") or platform.processor() or platform.machine(),
        "get_cpu_capability()": precision.cpu_capability(),
        "torch.cpu.get_capabilities() bf16 flags":
            ", ".join(f"{f}={caps.get(f)}" for f in ("avx512_bf16", "amx_bf16", "amx_tile",
                                                     "bf16", "sve_bf16") if f in caps) or "n/a",
        "/proc/cpuinfo bf16 flags": ", ".join(sorted(precision._proc_flags())) or "none",
        "native bfloat16": str(precision.cpu_has_native_bf16()),
        "resolve_bf16('auto', 'cpu')": f"{use} -> {'bfloat16' if use else 'float32'} ({why})",
        "decision time": f"{t_decide * 1e3:.1f} ms",
        "bf16_probe()": f"speedup {probe:.3f}x in {t_probe * 1e3:.0f} ms",
        "five probes from the start of the process (cold first)":
            ", ".join(f"{x:.2f}x" for x in cold_probes),
        "threads": str(args.threads),
        "load average at start": open("/proc/loadavg").read().split()[0]
        if os.path.exists("/proc/loadavg") else "n/a",
    }
    total = time.perf_counter() - t_start
    OUT.mkdir(parents=True, exist_ok=True)
    df.to_csv(OUT / "precision.csv", index=False)
    lines = ["# float32 vs bfloat16 autocast on this CPU", "",
             "Written by `bench/bench_precision.py` (best of the repeats after a warm-up; "
             f"{args.threads} thread(s); total run {total:.0f} s). `bf16 / fp32` > 1 means "
             "bfloat16 autocast is slower.", "",
             "| workload | shape | fp32 ms | bf16 ms | bf16 / fp32 | speedup fp32 / bf16 | "
             "repeats fp32/bf16 |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['shape']} | {r['fp32_ms']:.1f} | "
                     f"{r['bf16_ms']:.1f} | {r['bf16_slowdown']:.1f}x | {r['speedup']:.3f} | "
                     f"{r['reps']} |")
    lines += ["", "## What `auto` decides here", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    lines += ["", "`auto` (the default of `video.encoder_bf16`, `vlpretrain.bf16` and "
              "`stage2.bf16`) uses bfloat16 on CUDA when `torch.cuda.is_bf16_supported()` and "
              "never on a CPU, so that a CPU run's numbers do not depend on its bfloat16 "
              "support or on timing; `true` turns it on. Where the five probes straddle "
              f"{precision.BF16_MIN_SPEEDUP}x, a probe-based decision would differ between "
              "processes of this machine.",
              ""]
    (OUT / "precision.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
