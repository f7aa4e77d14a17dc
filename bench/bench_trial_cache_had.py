"""Trial-cache cost at HAD's scale: disk per subject, peak memory, build time, parallel speed-up.

Writes two subjects in HAD's layout and size — 12 runs x 156 volumes at 2 mm on the MNI152
grid (nilearn's template and brain mask), int16 BOLD as fMRIPrep writes it, 60 trials a run,
TR 2 s — and builds the trial cache of each format in a fresh process (peak RSS from
``getrusage``, worker processes included). The cost depends on sizes, not on the values, so
the BOLD is noise plus a slow drift. The dense float32 format is not built at this scale (it
would write ~8 GB a subject here); its size is computed from the same mask and block counts.

    python bench/bench_trial_cache_had.py        # -> bench/results/trial_cache_had.md
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn.datasets import load_mni152_brain_mask

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "trial_cache_had.md"
N_RUNS, N_VOLS, TR, N_TRIALS, T = 12, 156, 2.0, 60, 3
SPACE = "MNI152NLin2009cAsym"


def _name(sub, run, suffix, **ent):
    extra = "".join(f"_{k}-{v}" for k, v in ent.items())
    return f"sub-{sub}_ses-action01_task-action_run-{run:02d}{extra}_{suffix}"


def write_dataset(root: Path, n_subjects: int) -> dict:
    mask_img = load_mni152_brain_mask(resolution=2)
    mask = np.asarray(mask_img.get_fdata()) > 0
    aff = mask_img.affine
    rng = np.random.default_rng(0)
    (root / "stimuli").mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "HAD-scale", "BIDSVersion": "1.8.0"}))
    (root / "task-action_bold.json").write_text(json.dumps({"RepetitionTime": TR, "TaskName": "action"}))
    drift = np.cos(np.linspace(0, np.pi, N_VOLS)).astype(np.float32)
    for s in range(1, n_subjects + 1):
        sub = f"{s:02d}"
        fdir = root / "derivatives" / "fmriprep" / f"sub-{sub}" / "ses-action01" / "func"
        rdir = root / f"sub-{sub}" / "ses-action01" / "func"
        fdir.mkdir(parents=True)
        rdir.mkdir(parents=True)
        for run in range(1, N_RUNS + 1):
            data = np.zeros(mask.shape + (N_VOLS,), np.int16)
            noise = rng.normal(0, 20, (int(mask.sum()), N_VOLS)).astype(np.float32)
            data[mask] = (1000 + noise + 30 * drift).astype(np.int16)
            img = nib.Nifti1Image(data, aff)
            img.header.set_zooms((2.0, 2.0, 2.0, TR))
            nib.save(img, fdir / _name(sub, run, "bold.nii", space=SPACE, desc="preproc"))
            nib.save(nib.Nifti1Image(mask.astype(np.uint8), aff),
                     fdir / _name(sub, run, "mask.nii.gz", space=SPACE, desc="brain"))
            pd.DataFrame(rng.normal(0, 0.01, (N_VOLS, 6)),
                         columns=["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]).to_csv(
                fdir / _name(sub, run, "timeseries.tsv", desc="confounds"), sep="\t", index=False)
            ev = pd.DataFrame(dict(onset=12.0 + 4.0 * np.arange(N_TRIALS), duration=2.0,
                                   trial_type=1 + np.arange(N_TRIALS) % 12,
                                   stim_file=[f"C{c}/v_C{c}_id_s{sub}r{run}t{j}.mp4"
                                              for j, c in enumerate(np.arange(N_TRIALS) % 12)]))
            ev.to_csv(rdir / _name(sub, run, "events.tsv"), sep="\t", index=False)
    return dict(grid=list(mask.shape), mask_voxels=int(mask.sum()))


BUILD = r"""
import json, resource, sys, time
from llm4brain.config import load_config
from llm4brain.data import build_trial_cache
root, run_dir, fmt, workers = sys.argv[1:5]
cfg = load_config("default", {"run": {"run_dir": run_dir},
                              "data": {"root": root, "cache_format": fmt, "onset_offset": 0.0,
                                       "cache_workers": int(workers)}})
t0 = time.time()
tc = build_trial_cache(cfg, progress=False, check_stimuli=False)
dt = time.time() - t0
size = sum(f.stat().st_size for f in tc.path.iterdir())
print(json.dumps(dict(seconds=dt, bytes=size, n_trials=tc.n_trials, n_volumes=len(tc.volumes),
                      block_shape=list(tc.block_shape), mask_voxels=int(tc.mask.sum()),
                      bbox_voxels=int(tc.mask.size),
                      rss_self_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      rss_children_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)))
"""


def build(root: Path, run_dir: Path, fmt: str, workers: int) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    r = subprocess.run([sys.executable, "-c", BUILD, str(root), str(run_dir), fmt, str(workers)],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="had_cache_"))
    try:
        t0 = time.time()
        info = write_dataset(work / "ds", 2)
        t_write = time.time() - t0
        one = build(work / "ds", work / "run1", "masked16", 1)
        two = build(work / "ds", work / "run2", "masked16", 2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per_sub = one["bytes"] / 2
    dense = (one["n_trials"] * T * one["bbox_voxels"] + one["n_volumes"] * one["bbox_voxels"]) * 4 / 2
    peak1 = max(one["rss_self_mb"], one["rss_children_mb"])
    peak2 = max(two["rss_self_mb"], two["rss_children_mb"])
    lines = [
        "# Trial cache at HAD's scale (`bench/bench_trial_cache_had.py`)",
        "",
        f"Two simulated subjects in HAD's layout: {N_RUNS} runs x {N_VOLS} volumes, 2 mm MNI152 grid "
        f"{info['grid']} ({info['mask_voxels']:,} brain voxels; bounding box {one['bbox_voxels']:,}), "
        f"{N_TRIALS} trials a run, blocks of {T} volumes; int16 NIfTI input ({t_write:.0f} s to write). "
        "Machine: 2 CPU cores (AMD EPYC), local disk.",
        "",
        "| format | per subject on disk | peak RSS (largest process) | build time, 2 subjects |",
        "|---|---:|---:|---:|",
        f"| `dense32` (computed, not built) | {dense / 1e9:.2f} GB | — | — |",
        f"| `masked16`, 1 worker | {per_sub / 1e9:.2f} GB | {peak1 / 1024:.2f} GB | {one['seconds']:.0f} s |",
        f"| `masked16`, 2 workers | {two['bytes'] / 2 / 1e9:.2f} GB | {peak2 / 1024:.2f} GB | {two['seconds']:.0f} s |",
        "",
        f"Targets: <= 1.5 GB a subject ({'met' if per_sub <= 1.5e9 else 'MISSED'}), peak RSS < 4 GB "
        f"({'met' if max(peak1, peak2) < 4096 else 'MISSED'}). Parallel speed-up with 2 workers on 2 cores: "
        f"{one['seconds'] / two['seconds']:.2f}x. Projected for HAD's 30 subjects: "
        f"{30 * per_sub / 1e9:.0f} GB (`masked16`) instead of {30 * dense / 1e9:.0f} GB (`dense32`); build "
        f"about {30 * one['seconds'] / 2 / 60:.0f} min with one worker here, divided by the number of "
        "cores up to one worker per subject (reading the NIfTI files is the cost).",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
