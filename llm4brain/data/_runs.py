"""One run on its way into the trial cache: its mask, its cleaning (drift, confounds, z-score),
its trials (where each block starts) — shared by the dense and the compact cache formats."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._bids import (DataError, RunFiles, _load_nifti, _say, load_bold, load_mask, read_confounds,
                    read_events)

__all__ = ["cosine_drift", "preprocess_run", "block_start_index", "volume_times", "read_run_events",
           "intensity_mask", "trial_design", "timing_note", "single_trial_betas", "standardize_betas"]


_ONSET_TOL = 1e-6  # in TRs: an onset + lag within this of a volume time starts at that volume


def cosine_drift(n_vols: int, tr: float, high_pass: float) -> np.ndarray:
    """Cosine (DCT-II) drift regressors (n_vols, k) with periods longer than 1/high_pass."""
    if high_pass <= 0:
        return np.zeros((n_vols, 0))
    order = int(np.floor(2 * n_vols * tr * high_pass))
    t = (np.arange(n_vols) + 0.5) / n_vols
    return np.stack([np.cos(np.pi * k * t) for k in range(1, order + 1)], 1) if order else \
        np.zeros((n_vols, 0))


def preprocess_run(Y: np.ndarray, confounds: np.ndarray, tr: float, high_pass: float,
                   zscore: bool = True) -> np.ndarray:
    """Regress out intercept, cosine drifts and confounds, then z-score each voxel
    (``zscore=False``: return the residuals).

    Parameters
    ----------
    Y : (n_vols, n_vox) float32
    confounds : (n_vols, k)
    Returns
    -------
    (n_vols, n_vox) float32 z-scores (constant voxels -> 0).
    """
    n = Y.shape[0]
    X = np.column_stack([np.ones(n), cosine_drift(n, tr, high_pass), confounds]).astype(np.float64)
    X[:, 1:] -= X[:, 1:].mean(0)
    pinv = np.linalg.pinv(X).astype(np.float32)
    beta = pinv @ Y
    Y = Y - X.astype(np.float32) @ beta
    if not zscore:
        return Y
    sd = Y.std(0)
    good = sd > 1e-6 * max(float(np.abs(beta[0]).mean()), 1e-12)
    Y[:, good] /= sd[good]
    Y[:, ~good] = 0.0
    return Y


def volume_times(n_vols: int, tr: float, t0: float) -> np.ndarray:
    """Acquisition time (s from the start of the run) of each volume: ``t0 + i * tr``.

    ``t0`` comes from the run's sidecars (:func:`llm4brain.data.volume_reference`, on
    :class:`RunFiles` as ``t0_s``): the one rule behind trial blocks, GLM regressors, the
    oracle and the lag profile."""
    return float(t0) + np.arange(int(n_vols)) * float(tr)


def timing_note(runs) -> str:
    """One line saying which volume-timing rule the runs' sidecars gave (with counts)."""
    import re
    from collections import Counter
    def rule(r):       # the rule without the sidecar's name, so the runs group by rule
        s = re.sub(r"; [^;()]*\.json\)", ")", r.timing_source)
        return re.sub(r" \([^();]*\.json\)", "", s) or f"default ({r.t0_s:g} s)"

    c = Counter(rule(r) for r in runs)
    return "volume i at t0 + i * TR, t0 from: " + "; ".join(
        f"{rule} [{n} run(s)]" for rule, n in sorted(c.items()))


def trial_design(onsets, durations, n_vols: int, tr: float, t0: float) -> np.ndarray:
    """One regressor per trial (n_vols, n_trials): its boxcar convolved with nilearn's Glover
    HRF, sampled at each volume's acquisition time (:func:`volume_times`)."""
    from nilearn.glm.first_level import compute_regressor
    onsets = np.asarray(onsets, np.float64)
    durations = np.broadcast_to(np.asarray(durations, np.float64), onsets.shape)
    frame_times = volume_times(n_vols, tr, t0)
    X = np.zeros((int(n_vols), len(onsets)))
    for k, (on, du) in enumerate(zip(onsets, durations)):
        X[:, k] = compute_regressor(np.array([[on], [du], [1.0]]), "glover", frame_times)[0][:, 0]
    return X


def single_trial_betas(Y: np.ndarray, X: np.ndarray, standardize: bool = True) -> np.ndarray:
    """Least-squares-all single-trial response maps of one run (``data.response: beta``).

    Every trial of the run gets its own regressor (:func:`trial_design`) and all are fitted at
    once with an intercept (Mumford et al. 2012's LSA): each trial's beta is its response with
    the overlapping responses of its neighbours (4 s apart in HAD) removed, where a block of
    volumes after the onset mixes them.

    Parameters
    ----------
    Y : (n_vols, n_vox) the cleaned run (:func:`preprocess_run`)
    X : (n_vols, n_trials) the trial regressors
    standardize : z-score each voxel across the run's trials (constant voxels -> 0), so the
        maps share the scale of z-scored volumes

    Returns
    -------
    float32 (n_trials, n_vox)
    """
    X = np.column_stack([np.asarray(X, np.float64), np.ones(len(X))])
    if len(X) != len(Y):
        raise ValueError(f"single_trial_betas: {len(X)} design rows for {len(Y)} volumes")
    if X.shape[1] > len(X):
        raise ValueError(f"single_trial_betas: {X.shape[1] - 1} trials need more than "
                         f"{len(X)} volumes in the run; use data.response: block")
    B = np.linalg.lstsq(X, np.asarray(Y, np.float64), rcond=None)[0][:-1]
    return (standardize_betas(B) if standardize else B).astype(np.float32)


def standardize_betas(B: np.ndarray, sd: np.ndarray | None = None) -> np.ndarray:
    """Each voxel's betas minus their mean over the run's trials, divided by ``sd`` (default:
    their own standard deviation; the noise ceiling passes the measured betas'); voxels with
    ``sd`` 0 -> 0."""
    B = np.asarray(B, np.float64) - np.mean(B, 0)
    sd = B.std(0) if sd is None else np.asarray(sd, np.float64)
    good = sd > 1e-8
    B[:, good] /= sd[good]
    B[:, ~good] = 0.0
    return B


def block_start_index(onsets, lag_s: float, tr: float, t0: float) -> np.ndarray:
    """Index of the first volume acquired at or after ``onset + lag_s`` of each onset.

    ``ceil((onset + lag_s - t0) / tr - 1e-6)``: volume ``i`` is acquired at ``t0 + i * tr``
    seconds (:func:`volume_times`; ``t0`` from the run's slice-timing reference,
    :func:`llm4brain.data.volume_reference`), and a time within 1e-6 TR of a volume (float
    rounding of e.g. 0.1 + 0.2) counts as that volume. The one rule used wherever a block
    onset is computed (trial cache, oracle blocks, lag profiles).

    Parameters
    ----------
    onsets : float array (seconds, after ``data.onset_offset``)
    lag_s : float (``data.lag_s``)
    tr : float (seconds)
    t0 : float or float array like ``onsets`` (seconds): acquisition time of volume 0

    Returns
    -------
    int64 array of volume indices.
    """
    x = (np.asarray(onsets, dtype=np.float64) + float(lag_s)
         - np.asarray(t0, dtype=np.float64)) / float(tr)
    return np.maximum(np.ceil(x - _ONSET_TOL), 0).astype(np.int64)


def read_run_events(rf: RunFiles, n_vols: int, data_cfg) -> pd.DataFrame:
    """Events of a run, checked against the run: events past its end and trial blocks
    (``data.block_trs`` volumes from :func:`block_start_index`) past its end raise DataError."""
    ev = read_events(rf.events, data_cfg.onset_offset, n_vols, rf.tr,
                     stimuli_map=data_cfg.stimuli_map or None)
    last = block_start_index(ev["onset"], data_cfg.lag_s, rf.tr, rf.t0_s) + data_cfg.block_trs
    if (last > n_vols).any():
        r = int(np.flatnonzero(last > n_vols)[0])
        raise DataError(f"{rf.events}: the block of the trial at onset {ev['onset'][r]:.1f} s "
                        f"(lag {data_cfg.lag_s} s, {data_cfg.block_trs} volumes of TR {rf.tr:g} s, "
                        f"volume 0 at {rf.t0_s:g} s: {rf.timing_source or 'default'}) "
                        f"runs past the end of the run ({n_vols} volumes). Lower data.block_trs or "
                        f"data.lag_s, or check data.onset_offset")
    return ev


def intensity_mask(bold: str | Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Brain mask of one raw run from its mean volume (for data without mask files).

    A voxel is kept when all its values are finite and its mean exceeds 20 % of the 98th
    percentile of the positive means. Non-finite voxels (NaN in the background) are excluded,
    not an error.

    Returns
    -------
    mask : bool (X, Y, Z); affine : (4, 4); n_nonfinite : voxels excluded for NaN/inf values
    """
    img = _load_nifti(Path(bold), "BOLD file")
    if len(img.shape) != 4:
        raise DataError(f"BOLD file {bold} must be 4-D (X, Y, Z, time), has shape {img.shape}")
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
        if getattr(img, "is_cifti", False):        # grayordinates: every one is brain
            finite = np.isfinite(data).all(-1)
            return finite, img.affine, int((~finite).sum())
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"BOLD file {bold} cannot be read ({type(exc).__name__}: {exc}); the "
                        f"file is truncated or corrupt: re-download or re-create it") from exc
    bad = ~np.isfinite(data)
    finite = ~bad.any(-1)
    if bad.any():
        data[bad] = 0.0
    del bad
    mean = data.mean(-1)
    del data
    pos = mean[finite & (mean > 0)]
    thr = 0.2 * np.percentile(pos, 98) if pos.size else np.inf
    return (mean > thr) & finite, img.affine, int((~finite).sum())


def _subject_mask(sub: str, sub_runs: list[RunFiles], ref_shape, ref_aff):
    """Intersection of the brain masks of all runs of a subject, a note saying how it was
    made, and a short description of the mask (for error messages).

    Intersection, not union: a voxel outside the brain (or with signal dropout / NaNs) in one
    run would give that run's trials z-scored noise at that voxel, and the subject's trials
    would not share one set of voxels."""
    per_run, kinds, nonfinite = [], set(), 0
    for rf in sub_runs:
        if rf.mask is not None:
            m, maff = load_mask(rf.mask)
            if m.shape != tuple(ref_shape) or not np.allclose(maff, ref_aff, atol=1e-3):
                raise DataError(f"brain mask {rf.mask} has shape {m.shape} / an affine that does "
                                f"not match BOLD {rf.bold} {tuple(ref_shape)}: resample the mask "
                                f"onto the BOLD grid (nilearn.image.resample_to_img(mask_img, "
                                f"bold_img, interpolation='nearest')) or use the mask written "
                                f"with this BOLD run")
            kinds.add("mask files")
        else:
            m, _, nf = intensity_mask(rf.bold)
            nonfinite += nf
            kinds.add("intensity masks")
        per_run.append(m)
    mask = np.logical_and.reduce(per_run)
    sizes = [int(m.sum()) for m in per_run]
    how = (" and ".join(sorted(kinds)) if len(kinds) > 1 else kinds.pop())
    src = (f"sub-{sub}: intersection of the {how} of its {len(sub_runs)} run(s)"
           + (" (raw data: no desc-brain_mask files; intensity > 20 % of the 98th percentile)"
              if "intensity masks" in how else f" ({sub_runs[0].mask.name}, ...)"))
    note = (f"{src}: {int(mask.sum())} voxels (per run: {', '.join(map(str, sizes))})"
            + (f"; {nonfinite} run-voxel(s) with NaN/inf values excluded" if nonfinite else ""))
    if not mask.any():
        raise DataError(f"{note}: the brain mask is empty. Check the BOLD files of sub-{sub} "
                        f"(all zero? wrong scaling?) or provide brain masks (data.source: fmriprep)")
    if mask.sum() < 0.9 * min(sizes):
        _say(note + " — the runs' masks differ by more than 10 %: check for runs with a "
             "different field of view or signal dropout", warn=True)
    else:
        _say(note)
    return mask, note, src


def _class_of(ev: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    if "class_name" in ev.columns:
        names = [str(c) for c in ev["class_name"]]
    else:
        names = [Path(s).parent.name or str(t) for s, t in zip(ev["stim_file"], ev["trial_type"])]
    tt = pd.to_numeric(ev["trial_type"], errors="coerce")
    return tt.to_numpy(), names


def _clean_run(rf: RunFiles, union, sub_mask, mask_source: str, data_cfg, ref_aff) -> np.ndarray:
    """One run's preprocessed BOLD on the union mask: float32 (n_vols, n_union_voxels), zeros
    on voxels outside the subject's own mask (NaNs there included)."""
    src = mask_source + (f"; this run's mask file: {rf.mask}" if rf.mask else "")
    Y, _, _ = load_bold(rf.bold, union, ref_aff, required=sub_mask[union], mask_source=src)
    conf = read_confounds(rf.confounds, data_cfg.confounds if rf.confounds else (), Y.shape[0])
    Y = preprocess_run(Y, conf, rf.tr, data_cfg.high_pass)
    Y[:, ~sub_mask[union]] = 0.0
    return Y


def _trial_rows(rf: RunFiles, ev: pd.DataFrame, data_cfg, vol_offset: int | None) -> list[dict]:
    tt, names = _class_of(ev)
    first = block_start_index(ev["onset"].to_numpy(), data_cfg.lag_s, rf.tr, rf.t0_s)
    return [dict(subject=rf.subject, run=rf.run, trial=j, onset=float(ev["onset"][j]),
                 trial_type=tt[j], class_name=names[j], stim_file=ev["stim_file"][j],
                 clip_id=Path(ev["stim_file"][j]).name.split(".")[0],
                 vol_index=(vol_offset + first[j]) if vol_offset is not None else -1,
                 _first=int(first[j]))
            for j in range(len(ev))]
