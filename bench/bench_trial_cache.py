"""Benchmark: build the trial cache of one HAD-scale subject vs reading its NIfTIs with nibabel.

HAD scale: 12 runs x 156 volumes at 2 mm MNI (99 x 117 x 95 voxels). The dataset is simulated
once into bench/results/hadscale (reused afterwards). Each measurement runs in a fresh
subprocess; peak RSS is that process's ru_maxrss. Targets (issue 2): peak RSS < 4 GB, time
within 2x of nibabel alone. Writes bench/results/trial_cache.{csv,md}.

Usage: .venv/bin/python bench/bench_trial_cache.py [--runs 12]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results"
DS = OUT / "hadscale"


def overrides(n_runs: int) -> dict:
    return {"run": {"run_dir": str(DS / "run")},
            "data": {"root": str(DS / "dataset")},
            "sim": {"n_subjects": 2, "n_target_subjects": 1, "n_classes": 12, "n_runs": n_runs,
                    "clips_per_run": 60, "blanks_per_run": 12, "tail_s": 24.0,
                    "resolution_mm": 2.0, "frame_size": 32, "fps": 4,
                    "n_pretrain_clips": 12, "write_raw": False}}


CHILD_NIBABEL = """
import sys, time, json, resource, numpy as np, nibabel as nib
from llm4brain.config import load_config
from llm4brain.data import discover_runs
cfg = load_config("default", json.loads(sys.argv[1]))
runs = [r for r in discover_runs(cfg.data_root, cfg.data) if r.subject == "01"]
t = time.perf_counter(); tot = 0.0
for r in runs:
    d = nib.load(str(r.bold)).get_fdata(dtype=np.float32); tot += float(d[50, 50, 50, 0]); del d
print(json.dumps(dict(seconds=time.perf_counter() - t,
                      peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""

CHILD_CACHE = """
import sys, time, json, resource
from llm4brain.config import load_config
from llm4brain.data import build_trial_cache
cfg = load_config("default", json.loads(sys.argv[1]))
t = time.perf_counter()
tc = build_trial_cache(cfg, subjects=["01"], rebuild=True, progress=False, check_stimuli=True,
                       keep_volumes=json.loads(sys.argv[2]))
print(json.dumps(dict(seconds=time.perf_counter() - t, shape=list(tc.blocks.shape),
                      peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""


def child(code: str, *args) -> dict:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=12)
    args = ap.parse_args()
    ov = overrides(args.runs)
    from llm4brain.config import load_config
    from llm4brain.sim import simulate_dataset

    cfg = load_config("default", ov)
    t = time.perf_counter()
    simulate_dataset(cfg, progress=True)
    sim_s = time.perf_counter() - t
    j = json.dumps(ov)
    rows = []
    nb = child(CHILD_NIBABEL, j)
    rows.append(dict(step="nibabel get_fdata of the 12 runs (reference)", **nb))
    for keep in (False, True):
        c = child(CHILD_CACHE, j, json.dumps(keep))
        rows.append(dict(step=f"build_trial_cache (keep_volumes={keep})",
                         **{k: v for k, v in c.items() if k != "shape"}))
        shape = c["shape"]
    for r in rows:
        r["time_ratio_vs_nibabel"] = round(r["seconds"] / nb["seconds"], 2)
        r["seconds"] = round(r["seconds"], 1)
        r["peak_rss_mb"] = round(r["peak_rss_mb"])
    import pandas as pd

    df = pd.DataFrame(rows)
    OUT.mkdir(exist_ok=True)
    df.to_csv(OUT / "trial_cache.csv", index=False)
    md = (f"# Trial cache of one HAD-scale subject ({args.runs} runs x 156 volumes, 2 mm MNI, "
          f"blocks {shape})\n\n(simulating the dataset took {sim_s:.0f} s, not included)\n\n"
          + df.to_markdown(index=False) + "\n\nTargets: peak RSS < 4096 MB; time ratio <= 2.\n")
    (OUT / "trial_cache.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
