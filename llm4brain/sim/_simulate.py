"""Simulator of a video-fMRI dataset in the exact layout of HAD (OpenNeuro ds004488).

The generative model, per subject *s*, voxel *v* (MNI coordinates ``c_v``) and clip *i*:

    c'_v      = c_v - shift_s                                     (anatomical shift, mm)
    A[i, v]   = gain_s * sum_r m_r(c'_v) * (drive_r + w_{r,s}(c'_v) . f_{g(r)}(i) / sqrt(d_g))
    w_{r,s}   = sqrt(shared) * W_r  +  sqrt(1 - shared) * W_{r,s}   (smooth random fields)
    BOLD_v(t) = baseline * (1 + [sum_i A[i, v] * (box_i * h_s)(t) + drift + motion + noise] / 100)

with ``m_r`` Gaussian region memberships (:mod:`._anatomy`), ``f_g(i)`` z-scored feature
groups of clip *i* computed from its rendered frames (low-level statistics, motion) or its
labels (agent, action, scene), ``h_s`` the canonical (Glover) HRF shifted by a subject-specific
peak delay, AR(1) spatially smooth noise, cosine drift and motion-like confounds (written to the
confounds TSV). Everything is deterministic from the seed.
"""
from __future__ import annotations

import os
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from ..data._runs import volume_times
from ..data._video_io import write_mp4_batch
from ._anatomy import REGIONS, SmoothField, load_brain_mask, region_weights, voxel_coordinates
from ._catalogue import CLASS_CATALOGUE, sample_clip_specs, stim_file_name
from ._features import clip_features
from ._render import render_clip
from ._text import describe_clip, description_lexicon

__all__ = ["simulate_dataset", "simulate_subject_bold", "canonical_hrf", "trial_regressors",
           "SIM_T0_FRACTION", "sim_slice_timing",
           "SESSION", "TASK", "bids_name", "subject_label", "FEATURE_GROUPS", "noise_free_bold",
           "load_ground_truth", "run_schedule"]

SESSION = "action01"
TASK = "action"
SPACE = "MNI152NLin2009cAsym"
FEATURE_GROUPS = ("lowlevel", "motion", "agent", "action", "scene")
_DT = 0.1  # s, fine time grid of the neural model


def subject_label(k: int) -> str:
    """Two-digit BIDS subject label of the k-th subject (0-based): '01', '02', ..."""
    return f"{k + 1:02d}"


def bids_name(sub: str, run: int, suffix: str, **entities) -> str:
    """HAD file name, e.g. ``sub-01_ses-action01_task-action_run-01_bold.nii.gz``."""
    ents = "".join(f"_{k}-{v}" for k, v in entities.items())
    return f"sub-{sub}_ses-{SESSION}_task-{TASK}_run-{run:02d}{ents}_{suffix}"


def canonical_hrf(tr: float, dt: float = _DT, peak_shift_s: float = 0.0,
                  length_s: float = 32.0) -> np.ndarray:
    """nilearn's Glover HRF sampled every ``dt`` s, delayed by ``peak_shift_s`` seconds.

    Returns
    -------
    h : array of shape (length_s / dt,), unit peak.
    """
    from nilearn.glm.first_level.hemodynamic_models import glover_hrf

    over = int(round(tr / dt))
    h = glover_hrf(tr, oversampling=over, time_length=length_s)
    t = np.arange(len(h)) * dt
    h = np.interp(t - peak_shift_s, t, h, left=0.0, right=0.0)
    return (h / h.max()).astype(np.float64)


def run_schedule(sim, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """Trial order of one run: HAD's design of 2 s clips, 2 s gaps, with blank trials.

    Returns
    -------
    onsets : array (clips_per_run,) onsets in seconds of the clip trials
    slots : array (clips_per_run,) slot index of each clip among all trials
    n_vols : int, number of volumes of the run
    """
    n_slots = sim.clips_per_run + sim.blanks_per_run
    is_blank = np.zeros(n_slots, bool)
    # blanks never first, spread randomly
    blank_pos = rng.choice(np.arange(1, n_slots), size=sim.blanks_per_run, replace=False)
    is_blank[blank_pos] = True
    slots = np.flatnonzero(~is_blank)
    soa = sim.clip_duration + sim.gap
    onsets = sim.lead_in_s + slots * soa
    total = sim.lead_in_s + n_slots * soa + sim.tail_s
    n_vols = int(np.ceil(total / sim.tr))
    return onsets.astype(float), slots, n_vols


SIM_T0_FRACTION = 0.5   # every simulated volume is sampled at the middle of its TR


def sim_slice_timing(tr: float, n_slices: int) -> list[float]:
    """Evenly spaced ascending slice times whose mean is ``SIM_T0_FRACTION * tr`` (for the raw
    runs' sidecar): ``(k + 0.5) * tr / n_slices``."""
    return [round((k + 0.5) * tr / n_slices, 6) for k in range(int(n_slices))]


def trial_regressors(onsets: np.ndarray, duration: float, n_vols: int, tr: float,
                     hrf: np.ndarray, dt: float = _DT) -> np.ndarray:
    """Design matrix (n_vols, n_trials): each trial's boxcar convolved with ``hrf``, at TRs.

    Sampled at each volume's acquisition time ``SIM_T0_FRACTION * tr + i * tr``: the middle of
    the volume, as slice-timing corrected data with reference 0.5 (fMRIPrep's default). The
    simulator writes that assumption into its sidecars (``SliceTimingCorrected``,
    ``StartTime`` beside the derivatives; an evenly spaced ``SliceTiming`` with that mean for
    the raw runs), so the loader reads it back with :func:`llm4brain.data.volume_reference`.
    """
    n_fine = int(np.ceil(n_vols * tr / dt)) + len(hrf)
    t_vol = volume_times(n_vols, tr, SIM_T0_FRACTION * tr)
    idx = np.clip(np.round(t_vol / dt).astype(int), 0, n_fine - 1)
    X = np.zeros((n_vols, len(onsets)))
    box_len = int(round(duration / dt))
    for k, on in enumerate(onsets):
        s = np.zeros(n_fine)
        i0 = int(round(on / dt))
        s[i0:i0 + box_len] = 1.0
        X[:, k] = np.convolve(s, hrf)[:n_fine][idx] * dt / duration
    return X


def _smooth_noise_volumes(shape, mask_idx, n, sigma_vox, ar1, rng, chunk=32):
    """AR(1), spatially smooth Gaussian noise of unit sd at the mask voxels: (n, n_vox) float32."""
    out = np.empty((n, len(mask_idx[0])), np.float32)
    # normaliser of the smoothed field's sd (interior voxels)
    probe = gaussian_filter(rng.standard_normal(shape), sigma_vox, mode="wrap")
    norm = 1.0 / max(probe.std(), 1e-6)
    prev = None
    c = np.sqrt(1 - ar1 ** 2)
    for t in range(n):
        e = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox, mode="wrap")
        e = e[mask_idx] * norm
        prev = e if prev is None else ar1 * prev + c * e
        out[t] = prev
    return out


def _motion(n_vols: int, rng: np.random.Generator) -> np.ndarray:
    """Six motion parameters (n_vols, 6): slow random walk + rare jerks (mm / rad)."""
    steps = rng.normal(0, 0.02, size=(n_vols, 6))
    jerks = (rng.random((n_vols, 1)) < 0.02) * rng.normal(0, 0.2, size=(n_vols, 6))
    m = np.cumsum(steps + jerks, axis=0)
    m -= m.mean(0)
    m[:, 3:] *= np.pi / 180.0 * 5  # rotations in radians, ~0.1 deg scale
    return m


def _features_matrix(feats: list[dict]) -> dict[str, np.ndarray]:
    """Stack and z-score each feature group across clips."""
    out = {}
    for g in FEATURE_GROUPS:
        F = np.stack([np.asarray(f[g], float).ravel() for f in feats])
        sd = F.std(0)
        sd[sd < 1e-9] = 1.0
        out[g] = (F - F.mean(0)) / sd
    return out


def simulate_subject_bold(sim, mask: np.ndarray, affine: np.ndarray, feats: dict[str, np.ndarray],
                          clip_rows: np.ndarray, params: dict, rng: np.random.Generator,
                          shared_fields: dict, progress: bool = False):
    """Generate every run of one subject.

    Parameters
    ----------
    sim : SimConfig
    mask : bool array (X, Y, Z)
    feats : dict group -> array (n_all_clips, d_g) of z-scored features
    clip_rows : int array (n_runs, clips_per_run), rows of ``feats`` shown in each run
    params : subject parameters (shift_mm, gain, noise_sd, hrf_shift_s)
    shared_fields : dict region name -> SmoothField shared by subjects

    Yields
    ------
    dict with run (1-based), bold (X, Y, Z, n_vols) float32, onsets, confounds DataFrame,
    amplitudes (clips_per_run, n_vox) noise-free trial amplitudes, regressors (n_vols, n).
    """
    mask_idx = np.nonzero(mask)
    coords = voxel_coordinates(mask, affine) - np.asarray(params["shift_mm"])
    memb = region_weights(coords)
    own_fields = {r.name: SmoothField(feats[r.group].shape[1], 10.0, rng)
                  for r in REGIONS if r.group is not None}
    # tuning weights per responsive region: (n_vox, d_g)
    tuning = {}
    for r in REGIONS:
        if r.group is None:
            continue
        w = (np.sqrt(sim.shared_tuning) * shared_fields[r.name](coords)
             + np.sqrt(1 - sim.shared_tuning) * own_fields[r.name](coords))
        tuning[r.name] = w.astype(np.float32)
    hrf = canonical_hrf(sim.tr, peak_shift_s=params["hrf_shift_s"])
    sigma_vox = sim.noise_fwhm_mm / 2.3548 / float(abs(affine[0, 0]))
    n_vox = len(mask_idx[0])
    xyz = (coords - coords.mean(0)) / (coords.std(0) + 1e-9)
    motion_patterns = np.stack([xyz[:, 0], xyz[:, 1], xyz[:, 2],
                                xyz[:, 1] * xyz[:, 2], xyz[:, 0] * xyz[:, 2], xyz[:, 0] * xyz[:, 1]])
    runs = range(clip_rows.shape[0])
    for run in (tqdm(runs, desc="runs", leave=False) if progress else runs):
        onsets, _, n_vols = run_schedule(sim, rng)
        rows = clip_rows[run]
        A = np.zeros((len(rows), n_vox), np.float32)
        for ri, r in enumerate(REGIONS):
            if r.group is None:
                continue
            f = feats[r.group][rows]                             # (n, d)
            resp = r.drive + f @ tuning[r.name].T / np.sqrt(f.shape[1])  # (n, n_vox)
            A += memb[ri][None, :] * resp
        A *= params["gain"] * sim.signal_scale
        X = trial_regressors(onsets, sim.clip_duration, n_vols, sim.tr, hrf)
        signal = X @ A                                            # (n_vols, n_vox)
        noise = _smooth_noise_volumes(mask.shape, mask_idx, n_vols, sigma_vox, sim.ar1, rng)
        noise *= params["noise_sd"] * sim.signal_scale
        t = np.arange(n_vols) * sim.tr
        drift = np.zeros((n_vols, n_vox), np.float32)
        for k in (1, 2, 3):
            drift += np.cos(np.pi * k * t / t[-1])[:, None] * rng.normal(0, sim.drift_sd / np.sqrt(3), n_vox)[None]
        mot = _motion(n_vols, rng)
        motion_effect = (mot / (mot.std(0) + 1e-9)) @ motion_patterns * sim.motion_sd
        pct = signal + noise + drift + motion_effect
        data = np.zeros(mask.shape + (n_vols,), np.float32)
        data[mask_idx] = (sim.baseline * (1.0 + pct / 100.0)).T
        gs = data[mask_idx].mean(0)
        conf = pd.DataFrame(mot, columns=["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"])
        d = np.abs(np.diff(mot, axis=0, prepend=mot[:1]))
        conf["framewise_displacement"] = d[:, :3].sum(1) + 50.0 * d[:, 3:].sum(1)
        conf["global_signal"] = gs
        yield dict(run=run + 1, bold=data, onsets=onsets, confounds=conf, amplitudes=A,
                   regressors=X.astype(np.float32), n_vols=n_vols)


def _save_nifti(data: np.ndarray, affine: np.ndarray, path: Path, tr: float | None = None,
                dtype=np.int16):
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.set_data_dtype(dtype)
    if tr is not None:
        zooms = tuple(float(abs(z)) for z in np.diag(affine)[:3]) + (float(tr),)
        img.header.set_zooms(zooms)
        img.header.set_xyzt_units("mm", "sec")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


def _render_chunk(args):
    """Render, write (one ffmpeg process per chunk) and measure clips (in a worker process)."""

    specs, frame_size, n_frames, fps, out_root, classes = args
    clips = [render_clip(sp, frame_size, n_frames) for sp in specs]
    rels = [stim_file_name(sp) for sp in specs]
    write_mp4_batch(clips, [out_root / r for r in rels], fps)
    return [(r, clip_features(fr, sp, classes)) for r, fr, sp in zip(rels, clips, specs)]


def _render_all(specs, sim, out_root: Path, corpus: str, rng, classes, progress=True,
                workers: int | None = None, chunk: int = 32):
    """Render, write and describe clips in parallel; returns (rows for the TSV, features).

    Frames depend only on each spec's seed, so the result does not depend on ``workers``;
    descriptions draw from ``rng`` sequentially in the parent, in spec order.
    """
    from concurrent.futures import ProcessPoolExecutor


    n_frames = int(round(sim.clip_duration * sim.fps))
    jobs = [(specs[i:i + chunk], sim.frame_size, n_frames, sim.fps, out_root, classes)
            for i in range(0, len(specs), chunk)]
    workers = workers or min(os.cpu_count() or 1, 4)
    bar = dict(desc=f"render {corpus} clips ({chunk}/step)", total=len(jobs), disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(min(workers, len(jobs))) as ex:
            results = list(tqdm(ex.map(_render_chunk, jobs), **bar))
    else:
        results = [_render_chunk(j) for j in tqdm(jobs, **bar)]
    results = [r for chunk_result in results for r in chunk_result]
    rows, feats = [], []
    for spec, (rel, f) in zip(specs, results):
        desc, paras = describe_clip(spec, rng)
        feats.append(f)
        rows.append(dict(stim_file=rel, clip_id=spec.clip_id, class_name=spec.class_name,
                         agent=spec.agent, action=spec.action, colour=spec.colour, size=spec.size,
                         direction=spec.direction, speed=spec.speed, scene=spec.scene,
                         description=desc, paraphrases="|".join(paras), corpus=corpus))
    return rows, feats


def simulate_dataset(cfg, out_dir: str | Path | None = None, *, seed: int | None = None,
                     overwrite: bool = False, progress: bool = True) -> Path:
    """Write a simulated dataset in HAD's BIDS layout (and the video-LM pretraining corpus).

    Parameters
    ----------
    cfg : Config
        Uses ``cfg.sim`` (design, SNR, subjects) and ``cfg.data.space``.
    out_dir : path, optional
        BIDS root (default ``cfg.data_root``). The captioned pretraining corpus (clips shown to
        no subject) goes to ``<out_dir>/../pretrain_corpus``.
    seed : int, optional
        Default ``cfg.run.seed``.
    overwrite : bool
        A finished dataset (``dataset_description.json`` present) is kept unless True.

    Returns
    -------
    Path of the BIDS root.
    """

    sim = cfg.sim
    seed = cfg.run.seed if seed is None else seed
    root = Path(out_dir) if out_dir is not None else cfg.data_root
    corpus_root = root.parent / "pretrain_corpus"
    done = root / "dataset_description.json"
    if done.exists() and not overwrite:
        meta = json.loads(done.read_text())
        if meta.get("GeneratedBy", [{}])[0].get("Seed") == seed and \
                meta.get("GeneratedBy", [{}])[0].get("SimConfig") == asdict(sim):
            return root
        raise FileExistsError(f"{root} already holds a dataset made with other settings; pass "
                              f"overwrite=True (CLI: --overwrite) or choose another --out")
    if overwrite:
        for p in (root, corpus_root):
            if p.exists():
                shutil.rmtree(p)
    if sim.n_classes > len(CLASS_CATALOGUE):
        raise ValueError(f"sim.n_classes={sim.n_classes} exceeds the {len(CLASS_CATALOGUE)} "
                         f"classes of the stimulus catalogue; lower it")
    n_trials = sim.n_runs * sim.clips_per_run
    if n_trials % sim.n_classes:
        raise ValueError(f"sim.n_runs * sim.clips_per_run = {n_trials} trials a subject must be a "
                         f"multiple of sim.n_classes = {sim.n_classes} (balanced classes)")
    if not 0 < sim.n_target_subjects < sim.n_subjects:
        raise ValueError("sim.n_target_subjects must be >= 1 and < sim.n_subjects")
    rng = np.random.default_rng(seed)
    classes = CLASS_CATALOGUE[:sim.n_classes]
    class_index = {c.name: k for k, c in enumerate(classes)}
    subjects = [subject_label(k) for k in range(sim.n_subjects)]

    # ---- stimuli: unique clips per subject (as in HAD), and a separate pretraining corpus
    specs = {s: sample_clip_specs(classes, n_trials // sim.n_classes, rng, id_prefix=f"s{s}")
             for s in subjects}
    all_specs = [sp for s in subjects for sp in specs[s]]
    rows, feat_list = _render_all(all_specs, sim, root / "stimuli", "subjects", rng, classes, progress)
    n_pre = max(sim.n_pretrain_clips // sim.n_classes, 1)
    pre_specs = sample_clip_specs(classes, n_pre, rng, id_prefix="pt")
    pre_rows, _ = _render_all(pre_specs, sim, corpus_root / "stimuli", "pretrain", rng, classes, progress)
    stim = pd.DataFrame(rows)
    stim.to_csv(root / "stimuli" / "descriptions.tsv", sep="\t", index=False)
    pd.DataFrame(pre_rows).to_csv(corpus_root / "descriptions.tsv", sep="\t", index=False)
    (root / "stimuli" / "lexicon.json").write_text(json.dumps(description_lexicon(), indent=1))
    feats = _features_matrix(feat_list)

    # ---- anatomy
    mask_img = load_brain_mask(sim.resolution_mm)
    mask = np.asarray(mask_img.dataobj) > 0
    affine = mask_img.affine
    shared_fields = {r.name: SmoothField(feats[r.group].shape[1], 10.0, rng)
                     for r in REGIONS if r.group is not None}

    # ---- top-level BIDS files
    root.mkdir(parents=True, exist_ok=True)
    gen = dict(Name="llm4brain.simulate", Version="0.1.0", Seed=seed, SimConfig=asdict(sim))
    (root / "participants.tsv").write_text(
        "participant_id\trole\n" + "".join(
            f"sub-{s}\t{'target' if k >= sim.n_subjects - sim.n_target_subjects else 'train'}\n"
            for k, s in enumerate(subjects)))
    (root / "task-action_bold.json").write_text(json.dumps(
        {"TaskName": TASK, "RepetitionTime": sim.tr,
         "SliceTiming": sim_slice_timing(sim.tr, mask.shape[2])}, indent=2))
    fp = root / "derivatives" / "fmriprep"
    fp.mkdir(parents=True, exist_ok=True)
    (fp / "dataset_description.json").write_text(json.dumps(
        {"Name": "fMRIPrep-like derivatives (simulated)", "BIDSVersion": "1.8.0",
         "DatasetType": "derivative", "GeneratedBy": [{"Name": "llm4brain.simulate"}]}, indent=2))
    gt_dir = root / "derivatives" / "simulation"
    gt_dir.mkdir(parents=True, exist_ok=True)

    # ---- per subject BOLD
    row_of = {r["clip_id"]: i for i, r in enumerate(rows)}
    subj_params = {}
    for k, s in enumerate(tqdm(subjects, desc="simulate subjects", disable=not progress)):
        p = dict(shift_mm=rng.normal(0, sim.shift_mm, 3).round(2).tolist(),
                 gain=float(np.exp(rng.normal(0, sim.gain_sd))),
                 noise_sd=float(sim.noise_sd * np.exp(rng.normal(0, sim.noise_sd_jitter))),
                 hrf_shift_s=float(rng.normal(0, sim.hrf_peak_sd)))
        subj_params[s] = p
        order = [row_of[sp.clip_id] for sp in specs[s]]
        clip_rows = np.asarray(order).reshape(sim.n_runs, sim.clips_per_run)
        func_raw = root / f"sub-{s}" / f"ses-{SESSION}" / "func"
        func_fp = fp / f"sub-{s}" / f"ses-{SESSION}" / "func"
        gt = dict(amplitudes=[], regressors=[], onsets=[], stim_files=[])
        for out in simulate_subject_bold(sim, mask, affine, feats, clip_rows, p, rng, shared_fields):
            run = out["run"]
            ev = pd.DataFrame(dict(
                onset=out["onsets"], duration=sim.clip_duration,
                trial_type=[class_index[rows[i]["class_name"]] + 1 for i in clip_rows[run - 1]],
                response=rng.choice(["n/a", "1", "2"], size=sim.clips_per_run, p=[0.2, 0.4, 0.4]),
                response_time="n/a",
                stim_file=[rows[i]["stim_file"] for i in clip_rows[run - 1]]))
            ev["response_time"] = [f"{x:.3f}" if r != "n/a" else "n/a" for x, r in
                                   zip(rng.uniform(0.4, 1.6, len(ev)), ev["response"])]
            func_raw.mkdir(parents=True, exist_ok=True)
            ev.to_csv(func_raw / bids_name(s, run, "events.tsv"), sep="\t", index=False,
                      float_format="%.1f")
            if sim.write_raw:
                _save_nifti(out["bold"], affine, func_raw / bids_name(s, run, "bold.nii.gz"), sim.tr)
            _save_nifti(out["bold"], affine, func_fp / bids_name(
                s, run, "bold.nii.gz", space=SPACE, desc="preproc"), sim.tr)
            (func_fp / bids_name(s, run, "bold.json", space=SPACE, desc="preproc")).write_text(
                json.dumps({"RepetitionTime": sim.tr, "SliceTimingCorrected": True,
                            "StartTime": SIM_T0_FRACTION * sim.tr}, indent=2))
            _save_nifti(mask.astype(np.uint8), affine, func_fp / bids_name(
                s, run, "mask.nii.gz", space=SPACE, desc="brain"), dtype=np.uint8)
            out["confounds"].to_csv(func_fp / bids_name(s, run, "timeseries.tsv", desc="confounds"),
                                    sep="\t", index=False, float_format="%.6f")
            gt["amplitudes"].append(out["amplitudes"])
            gt["regressors"].append(out["regressors"])
            gt["onsets"].append(out["onsets"])
            gt["stim_files"].append([rows[i]["stim_file"] for i in clip_rows[run - 1]])
        np.savez_compressed(
            gt_dir / f"sub-{s}_groundtruth.npz",
            amplitudes=np.stack(gt["amplitudes"]),          # (n_runs, n_clips, n_vox) % signal
            regressors=np.stack(gt["regressors"]),          # (n_runs, n_vols, n_clips)
            onsets=np.stack(gt["onsets"]), stim_files=np.array(gt["stim_files"]),
            mask=mask, affine=affine)
    np.savez_compressed(gt_dir / "clip_features.npz", clip_id=stim["clip_id"].to_numpy(),
                        **{g: feats[g] for g in FEATURE_GROUPS})
    (gt_dir / "generator.json").write_text(json.dumps(dict(
        seed=seed, sim=asdict(sim), subjects=subj_params,
        regions=[asdict(r) for r in REGIONS], feature_groups=list(FEATURE_GROUPS),
        units="amplitudes in percent signal change; BOLD = baseline * (1 + pct / 100)"), indent=2))
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "llm4brain simulated HAD-layout dataset", "BIDSVersion": "1.8.0",
         "DatasetType": "raw", "GeneratedBy": [gen]}, indent=2))
    return root


def load_ground_truth(root: str | Path, subject: str) -> dict:
    """The simulator's ground truth of one subject (amplitudes, regressors, onsets, mask).

    ``amplitudes`` (n_runs, n_clips, n_vox) are noise-free trial response amplitudes at the
    mask voxels; ``regressors`` (n_runs, n_vols, n_clips) the HRF-convolved trial regressors.
    """
    path = Path(root) / "derivatives" / "simulation" / f"sub-{subject}_groundtruth.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: ground truth exists only for simulated "
                                f"datasets (llm4brain simulate)")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def noise_free_bold(root: str | Path, subject: str, run: int) -> np.ndarray:
    """Noise-free BOLD of one run (n_vols, n_vox) in percent signal change at the mask voxels."""
    gt = load_ground_truth(root, subject)
    return gt["regressors"][run - 1] @ gt["amplitudes"][run - 1]
