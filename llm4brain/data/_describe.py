"""Dataset summaries and reliability maps."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._bids import (DataError, check_same_tr, derivatives_dir, discover_runs, grid_mismatch,
                    read_events)
from ._cache import read_run_events
from ..config import DataConfig

__all__ = ["describe_dataset", "split_half_reliability", "trial_responses", "directory_size_mb"]


def _subjects_str(subs) -> str:
    subs = sorted(set(subs))
    return ", ".join(subs[:8]) + (f", ... ({len(subs)} subjects)" if len(subs) > 8 else "")


def describe_dataset(root: str | Path, data_cfg=None) -> dict:
    """Summary and validation of a HAD-layout dataset.

    Reads headers and TSVs only (no voxel data). Reports subjects, runs and trials per
    subject, every distinct TR and voxel grid (with run counts and subjects), classes and
    clips, and runs the loader's checks, listing every problem found instead of stopping at
    the first: runs with different TRs, TRs taken from the NIfTI header (no sidecar),
    runs on different grids, brain masks not on their BOLD's grid, events or trial blocks
    past the end of a run, missing stim files. NaN voxels are only found when the trial
    cache reads the data.

    Parameters
    ----------
    root : path
        BIDS root.
    data_cfg : DataConfig, optional
        A profile's ``data`` section (source, derivatives, space, desc, onset_offset,
        block_trs, lag_s, stimuli_map). Default: ``DataConfig()``, with ``source: fmriprep``
        when ``derivatives/fmriprep`` exists, else ``raw``.

    Returns
    -------
    dict (JSON-serialisable). ``tr`` is the TR when all runs share one, else None; ``trs``
    and ``grids`` list every distinct value; ``problems`` lists the problems (empty: the
    trial cache will accept the dataset, NaNs aside). With ``data.resample_to`` set, ``grids``
    are the grids on disk and runs on different grids are not a problem (they are resampled
    onto that target when read).
    """
    import nibabel as nib

    root = Path(root)
    if data_cfg is None:
        d = DataConfig()
        src = "fmriprep" if derivatives_dir(root, d).is_dir() else "raw"
        data_cfg = DataConfig(source=src)
    runs = discover_runs(root, data_cfg, resample=False)
    subjects = sorted({r.subject for r in runs})
    problems: list[str] = []
    try:
        check_same_tr(runs)
    except DataError as exc:
        problems.append(str(exc))
    header_tr = [r for r in runs if r.tr_source == "NIfTI header"]
    if header_tr:
        problems.append(f"{len(header_tr)} run(s) take their TR from the NIfTI header (no "
                        f"sidecar JSON with RepetitionTime): "
                        + ", ".join(str(r.bold) for r in header_tr[:5])
                        + (", ..." if len(header_tr) > 5 else "")
                        + ". Check the TR and add RepetitionTime to the raw runs' sidecars "
                        f"or task-<task>_bold.json at {root}")
    trials, classes, clips = {}, set(), set()
    tr_groups, grid_groups = {}, {}
    ref = None
    missing_stim = []
    stim_root = root / "stimuli"
    for r in runs:
        img = nib.load(str(r.bold))
        shape = tuple(int(x) for x in img.shape)
        g = tr_groups.setdefault(round(r.tr, 6), dict(runs=0, subjects=set(), sources=set()))
        g["runs"] += 1
        g["subjects"].add(r.subject)
        g["sources"].add(Path(r.tr_source).name if r.tr_source != "NIfTI header" else r.tr_source)
        zooms = [round(float(z), 4) for z in img.header.get_zooms()[:3]]
        gkey = (shape[:3], tuple(np.round(img.affine, 3).ravel()))
        gg = grid_groups.setdefault(gkey, dict(shape=list(shape[:3]), voxel_size_mm=zooms, runs=0,
                                               subjects=set(), n_vols=set(), first=r.bold,
                                               affine=img.affine))
        gg["runs"] += 1
        gg["subjects"].add(r.subject)
        gg["n_vols"].add(shape[3] if len(shape) == 4 else 0)
        if len(shape) != 4:
            problems.append(f"BOLD file {r.bold} must be 4-D (X, Y, Z, time), has shape {shape}")
            continue
        if ref is None:
            ref = (r.bold, shape, img.affine)
        if r.mask is not None:
            try:
                mimg = nib.load(str(r.mask))
                if tuple(mimg.shape[:3]) != shape[:3] or \
                        not np.allclose(mimg.affine, img.affine, atol=1e-3):
                    problems.append(f"brain mask {r.mask} (shape {tuple(mimg.shape)}) is not on "
                                    f"the grid of BOLD {r.bold} {shape[:3]}: resample the mask "
                                    f"onto the BOLD (nilearn.image.resample_to_img(mask_img, "
                                    f"bold_img, interpolation='nearest'))")
            except Exception as exc:  # noqa: BLE001
                problems.append(f"brain mask {r.mask} is not a readable NIfTI "
                                f"({type(exc).__name__}); re-create it")
        try:
            ev = read_run_events(r, shape[3], data_cfg)
        except DataError as exc:
            problems.append(str(exc))
            try:       # the events without the checks against the run (to count them)
                ev = read_events(r.events, data_cfg.onset_offset,
                                 stimuli_map=data_cfg.stimuli_map or None)
            except DataError:
                continue
        trials[r.subject] = trials.get(r.subject, 0) + len(ev)
        if "class_name" in ev.columns:
            classes |= {str(c) for c in ev["class_name"]}
        else:
            classes |= {Path(s).parent.name or str(t) for s, t in zip(ev["stim_file"], ev["trial_type"])}
        clips |= set(ev["stim_file"])
    if stim_root.is_dir():
        missing_stim = sorted(c for c in clips if not (stim_root / c).is_file())
        if missing_stim:
            problems.append(f"{len(missing_stim)} of {len(clips)} stim file(s) named in the events "
                            f"are not under {stim_root}, e.g. {missing_stim[:3]}: put the clips "
                            f"there or fix the stim_file column")
    else:
        problems.append(f"no stimuli/ folder under {root}: the clips named in the events files "
                        f"must be under {stim_root}")
    grids = list(grid_groups.values())
    resample_to = getattr(data_cfg, "resample_to", "") or None
    for gg in grids[1:] if resample_to is None else []:     # resample_to: one grid when read
        msg = grid_mismatch(gg["first"], gg["shape"], gg["affine"], ref[0], ref[1], ref[2])
        if msg:
            problems.append(f"{gg['runs']} run(s) of sub-{_subjects_str(gg['subjects'])}: " + msg)
    img = nib.load(str(runs[0].bold))
    trs = [dict(tr=float(k), n_runs=v["runs"], subjects=sorted(v["subjects"]),
                sources=sorted(v["sources"])) for k, v in sorted(tr_groups.items())]
    return dict(
        root=str(root), source=data_cfg.source,
        derivatives=str(derivatives_dir(root, data_cfg)) if data_cfg.source == "fmriprep" else None,
        space=data_cfg.space if data_cfg.source == "fmriprep" else "native/raw",
        subjects=subjects,
        runs_per_subject={s: sum(r.subject == s for r in runs) for s in subjects},
        trials_per_subject=trials, tr=trs[0]["tr"] if len(trs) == 1 else None, trs=trs,
        volume_shape=list(map(int, img.shape)),
        voxel_size_mm=[float(z) for z in img.header.get_zooms()[:3]],
        grids=[dict(shape=g["shape"], voxel_size_mm=g["voxel_size_mm"], n_runs=g["runs"],
                    n_vols=sorted(g["n_vols"]), subjects=sorted(g["subjects"])) for g in grids],
        n_classes=len(classes), classes=sorted(classes), n_clips=len(clips),
        n_missing_stim_files=len(missing_stim), resample_to=resample_to,
        onset_offset=data_cfg.onset_offset,
        problems=problems)


def trial_responses(tc, idx=None) -> np.ndarray:
    """Mean over the block's volumes at the mask voxels: (n_trials, n_mask_voxels)."""
    idx = np.arange(tc.n_trials) if idx is None else np.asarray(idx)
    b = np.asarray(tc.blocks[idx])
    return b.mean(1)[:, tc.mask]


def split_half_reliability(tc, subject: str) -> dict:
    """Split-half reliability of class-mean responses, per voxel, and its single-trial value.

    Trials of odd and even runs are averaged per class; the per-voxel Pearson correlation of
    the two class profiles is the split-half reliability r_h of a mean of m trials
    (m = trials per class per half). The Spearman-Brown formula gives the reliability of a
    single trial: r_1 = r_h / (m - (m - 1) r_h).

    Returns
    -------
    dict: ``r_half`` (n_mask_voxels,), ``r_single`` (n_mask_voxels,), ``m`` trials per class
    per half.
    """
    t = tc.trials
    sel = np.flatnonzero((t["subject"].astype(str) == str(subject)).to_numpy())
    if not len(sel):
        raise ValueError(f"subject {subject} not in the trial cache")
    R = trial_responses(tc, sel)
    runs = t["run"].to_numpy()[sel]
    cls = t["class_id"].to_numpy()[sel]
    odd = runs % 2 == 1
    C = np.unique(cls)
    a = np.stack([R[odd & (cls == c)].mean(0) for c in C])
    b = np.stack([R[~odd & (cls == c)].mean(0) for c in C])
    a = (a - a.mean(0)) / (a.std(0) + 1e-9)
    b = (b - b.mean(0)) / (b.std(0) + 1e-9)
    r = (a * b).mean(0)
    m = float(np.mean([min((odd & (cls == c)).sum(), (~odd & (cls == c)).sum()) for c in C]))
    r1 = r / (m - (m - 1) * np.clip(r, -0.99, 0.999))
    return dict(r_half=r, r_single=r1, m=m)


def directory_size_mb(path: str | Path) -> float:
    """Total size in MiB of the files under ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2 ** 20
