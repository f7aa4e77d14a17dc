"""Oracle inputs for the noise ceiling: the simulator's noise-free responses as trial blocks."""
from __future__ import annotations

import numpy as np

from ._bids import discover_runs, load_bold, read_confounds
from ._cache import block_start_index, preprocess_run
from ._simulate import load_ground_truth

__all__ = ["noise_free_trial_blocks"]


def noise_free_trial_blocks(cfg, tc, idx) -> np.ndarray:
    """Noise-free blocks of trials ``idx`` in the units of the real blocks.

    For each run, the noise-free BOLD (ground-truth regressors @ amplitudes) goes through the
    same cleaning as the data (confounds, drifts and mean regressed out) and is divided by
    the standard deviation of the *measured* cleaned run at each voxel — the value the
    z-scored data would have without noise. Blocks are cut and cropped as in the trial cache.

    Parameters
    ----------
    cfg : Config of a simulated dataset (ground truth under derivatives/simulation)
    tc : TrialCache
    idx : int array of trial rows
    Returns
    -------
    float32 array (len(idx), T, X, Y, Z)
    """
    idx = np.asarray(idx)
    out = np.zeros((len(idx),) + tc.block_shape, np.float32)
    T = tc.block_shape[0]
    crop = tuple(slice(a, b) for a, b in tc.meta["crop"])
    runs = {(r.subject, r.run): r for r in discover_runs(cfg.data_root, cfg.data)}
    t = tc.trials.iloc[idx]
    gts = {}
    for (sub, run), rows in t.groupby(["subject", "run"]):
        sub = str(sub)
        if sub not in gts:
            gts[sub] = load_ground_truth(cfg.data_root, sub)
        gt = gts[sub]
        rf = runs[(sub, int(run))]
        mask = gt["mask"].astype(bool)
        S = gt["regressors"][run - 1] @ gt["amplitudes"][run - 1]          # (n_vols, n_vox) %
        Y, _, _ = load_bold(rf.bold, mask)
        conf = read_confounds(rf.confounds, cfg.data.confounds if rf.confounds else (), Y.shape[0])
        resid = preprocess_run(Y, conf, rf.tr, cfg.data.high_pass, zscore=False)
        sd = resid.std(0)
        baseline = Y.mean(0)
        sig = preprocess_run((S * baseline / 100.0).astype(np.float32), conf, rf.tr,
                             cfg.data.high_pass, zscore=False)
        good = sd > 1e-6
        sig[:, good] /= sd[good]
        sig[:, ~good] = 0.0
        vol = np.zeros((len(sig),) + mask.shape, np.float32)
        vol[:, mask] = sig
        vol = vol[(slice(None),) + crop]
        first = block_start_index(rows["onset"].to_numpy(), cfg.data.lag_s, rf.tr)
        for row_idx, f in zip(rows.index, first):
            k = int(np.flatnonzero(idx == row_idx)[0])
            out[k] = vol[f:f + T]
    return out
