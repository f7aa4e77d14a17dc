"""What only a simulated dataset has: its noise-free responses as trial blocks (the oracle input
of the noise ceiling) and the lag profile of the measured BOLD against the true amplitudes."""
from __future__ import annotations

import numpy as np

import pandas as pd

from ..data._bids import discover_runs, load_bold, read_confounds
from ..data._cache import block_start_index, preprocess_run
from ..data._runs import read_run_events, single_trial_betas, standardize_betas, trial_design
from ._anatomy import REGIONS, region_weights, voxel_coordinates
from ._simulate import load_ground_truth

__all__ = ["noise_free_trial_blocks", "lag_profile", "trial_t0", "block_times"]


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
        if cfg.data.response == "beta":
            resid[:, good] /= sd[good]
            resid[:, ~good] = 0.0
            ev = read_run_events(rf, len(Y), cfg.data)
            X = trial_design(ev["onset"], ev["duration"], len(Y), rf.tr, rf.t0_s)
            n = sig.shape[1]            # one fit: noise-free run | measured run
            B = single_trial_betas(np.hstack([sig, resid]), X, standardize=False)
            b_sig = standardize_betas(B[:, :n], sd=B[:, n:].std(0))
            maps = np.zeros((len(b_sig),) + mask.shape, np.float32)
            maps[:, mask] = b_sig
            maps = maps[(slice(None),) + crop]
            for row_idx, j in zip(rows.index, rows["trial"].to_numpy()):
                k = int(np.flatnonzero(idx == row_idx)[0])
                out[k] = maps[int(j)][None]
            continue
        vol = np.zeros((len(sig),) + mask.shape, np.float32)
        vol[:, mask] = sig
        vol = vol[(slice(None),) + crop]
        first = block_start_index(rows["onset"].to_numpy(), cfg.data.lag_s, rf.tr, rf.t0_s)
        for row_idx, f in zip(rows.index, first):
            k = int(np.flatnonzero(idx == row_idx)[0])
            out[k] = vol[f:f + T]
    return out


def trial_t0(tc, trials) -> np.ndarray:
    """Acquisition time of volume 0 of each trial's run (``meta['volume_t0']`` of the cache,
    written from the run's sidecars by :func:`llm4brain.data.volume_reference`)."""
    t0 = tc.meta.get("volume_t0")
    if t0 is None:
        raise ValueError(f"the trial cache {getattr(tc, 'path', '')} predates volume timing; "
                         f"rebuild it (build_trial_cache(cfg, rebuild=True))")
    return np.array([t0[f"{s}:{int(r)}"] for s, r in zip(trials["subject"], trials["run"])])


def lag_profile(cfg, tc, subject: str, lags_s=(0, 2, 4, 6, 8, 10, 12, 14), regions=None):
    """How well the measured BOLD at ``onset + lag`` follows each trial's true amplitude.

    For every lag and region: the Pearson correlation across the subject's trials between
    the cleaned BOLD of the first volume acquired at or after ``onset + lag`` (the trial
    cache's rule, :func:`llm4brain.data.block_start_index`, with the runs' volume times) and
    the simulator's noise-free trial amplitude, averaged over the region's voxels. ``time_s``
    is when that volume was acquired after the onset (median over trials): it peaks where the
    HRF peaks and shows which volumes ``data.lag_s`` and ``data.block_trs`` keep. Simulated
    data only.

    Returns
    -------
    DataFrame with columns lag_s, time_s, region, r.
    """
    regions = regions or REGIONS
    if tc.volumes is None:
        raise ValueError("lag_profile needs a trial cache built with keep_volumes=True")
    gt = load_ground_truth(cfg.data_root, subject)
    sel = np.flatnonzero((tc.trials["subject"].astype(str) == str(subject)).to_numpy())
    t = tc.trials.iloc[sel]
    amp = np.stack([gt["amplitudes"][r - 1, j] for r, j in zip(t["run"], t["trial"])])
    memb = region_weights(voxel_coordinates(tc.mask, tc.affine), regions)
    tr = float(tc.meta["tr"])
    onsets = t["onset"].to_numpy()
    t0 = trial_t0(tc, t)
    run_start = t["vol_index"].to_numpy() - block_start_index(onsets, cfg.data.lag_s, tr, t0)
    vt = tc.volume_table
    run_end = {}
    for (s, r), g in vt.reset_index().groupby(["subject", "run"]):
        run_end[(str(s), int(r))] = int(g["index"].max())
    ends = np.array([run_end[(str(s), int(r))] for s, r in zip(t["subject"], t["run"])])
    rows = []
    for lag in lags_s:
        rel = block_start_index(onsets, lag, tr, t0)
        idx = run_start + rel
        ok = idx <= ends
        when = float(np.median((t0 + rel * tr - onsets)[ok]))
        Y = np.asarray(tc.volumes[idx[ok]])[:, tc.mask]
        A = amp[ok]
        Yc, Ac = Y - Y.mean(0), A - A.mean(0)
        r = (Yc * Ac).sum(0) / (np.sqrt((Yc ** 2).sum(0) * (Ac ** 2).sum(0)) + 1e-12)
        for i, reg in enumerate(regions):
            v = memb[i] > 0.5
            if v.any():
                rows.append(dict(lag_s=lag, time_s=when, region=reg.name,
                                 r=float(np.nanmean(r[v]))))
    return pd.DataFrame(rows)


def block_times(cfg, tc) -> np.ndarray:
    """When the volumes of a trial block are acquired after the onset (s, median over the
    cache's trials): the block the trial cache cut, in the lag profile's time axis."""
    t = tc.trials
    t0 = trial_t0(tc, t)
    tr = float(tc.meta["tr"])
    first = block_start_index(t["onset"].to_numpy(), cfg.data.lag_s, tr, t0)
    start = float(np.median(t0 + first * tr - t["onset"].to_numpy()))
    return start + np.arange(cfg.data.block_trs) * tr
