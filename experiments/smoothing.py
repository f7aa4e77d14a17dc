"""Does spatial smoothing of the trial blocks help a read-out transfer to a new subject?

The simulator gives each subject a 3 mm anatomical shift of its tuning fields and its own
share of the tuning (``sim.shift_mm``, ``sim`` docs), so voxel weights fitted on the training
subjects land a few millimetres off on a new one. Smoothing each trial's block (the mean of its
volumes) with an isotropic Gaussian inside the brain mask (normalised convolution, so the
mask's edge does not pull values to zero) trades spatial detail for that tolerance.

For each FWHM, the class (12 values) and scene (8) probes of :mod:`block_choice` (the 300
voxels with the largest F on the fitting subjects, standardised, logistic C 0.05) are fitted on
three training subjects and scored on the fourth, playing the target (sub-04, then sub-03); the
real targets sub-05/06 are not read. Needs the default run's trial cache (notebook 03:
``make reproduce``, or ``make nb NB=03``). Writes ``experiments/results/smoothing.csv``.

    python experiments/smoothing.py [fwhm_mm ...]
"""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter
from sklearn.feature_selection import f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from llm4brain.data import load_stimuli, load_trial_cache

from _common import RESULTS, require_run

SUBJECTS = ["01", "02", "03", "04"]
PSEUDO_TARGETS = ["04", "03"]
FWHM = [0.0, 4.0, 6.0, 8.0, 12.0]      # the widths of experiments/results/smoothing.csv


def smoothed_blocks(tc, fwhm_mm: float, voxel_mm: float) -> np.ndarray:
    """(n_trials, n_mask_voxels): each trial's block mean, smoothed inside the mask."""
    mask = np.asarray(tc.mask, bool)
    sigma = fwhm_mm / (2 * np.sqrt(2 * np.log(2))) / voxel_mm
    w = gaussian_filter(mask.astype(np.float32), sigma) if sigma > 0 else None
    out = np.empty((len(tc.trials), int(mask.sum())), np.float32)
    for i in range(len(tc.trials)):
        v = np.asarray(tc.blocks[i], np.float32).mean(0)
        if sigma > 0:
            v = gaussian_filter(np.where(mask, v, 0.0), sigma) / np.maximum(w, 1e-6)
        out[i] = v[mask]
    return out


def probe(B, y, train, test, k: int = 300, C: float = 0.05) -> float:
    F, _ = f_classif(B[train], y[train])
    sel = np.argsort(-np.nan_to_num(F))[:k]
    sc = StandardScaler().fit(B[train][:, sel])
    clf = LogisticRegression(C=C, max_iter=2000).fit(sc.transform(B[train][:, sel]), y[train])
    return float(clf.score(sc.transform(B[test][:, sel]), y[test]))


def main(fwhms):
    cfg = require_run("default", "03")
    tc = load_trial_cache(cfg)
    t = tc.trials
    voxel_mm = float(np.abs(np.asarray(tc.affine)[:3, :3]).max())
    sub = t["subject"].astype(str).to_numpy()
    scene = load_stimuli(cfg).drop_duplicates("stim_file").set_index("stim_file")["scene"]
    labels = {"class": t["class_id"].to_numpy(),
              "scene": scene.loc[t["stim_file"].astype(str)].astype(str).to_numpy()}
    rows = []
    for fwhm in fwhms:
        B = smoothed_blocks(tc, fwhm, voxel_mm)
        for pt in PSEUDO_TARGETS:
            train = np.isin(sub, [s for s in SUBJECTS if s != pt])
            test = sub == pt
            for lab, y in labels.items():
                rows.append(dict(fwhm_mm=fwhm, pseudo_target=pt, label=lab,
                                 top1=round(100 * probe(B, y, train, test), 2),
                                 chance=round(100 / len(np.unique(y[train])), 2),
                                 n_trials=int(test.sum()), voxel_mm=voxel_mm))
                print(rows[-1], flush=True)
    out = RESULTS / "smoothing.csv"
    pd.DataFrame(rows).to_csv(out, index=False)
    print(f"wrote {out}")


if __name__ == "__main__":
    main([float(a) for a in sys.argv[1:]] or FWHM)
