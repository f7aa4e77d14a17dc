"""BIDS discovery and validated reading of HAD-layout datasets (raw or fMRIPrep derivatives).

One code path serves the real HAD (OpenNeuro ds004488) and the embedded simulation.

Why not ``nilearn.interfaces.bids.get_bids_files`` or pybids: discovery here is a small part
of what these functions do, and both libraries stop where the work starts. A run must be
matched across three places (the raw ``sub-XX/ses-actionNN/func`` files, the fMRIPrep
derivatives with their ``space``/``res``/``desc`` entities or CIFTI, and the events with HAD's
lead-in offset), its TR and slice-timing reference read from the nearest sidecar by BIDS'
inheritance rule, its grid checked against the mask, and every failure reported with the file
and the fix (:class:`DataError`), including the listing of what *was* found. pybids would add an
index database and a dependency tree for the ~40 lines of globbing it could replace; nilearn's
helper returns paths by entity filter, which ``discover_runs`` does in one pass while it
validates.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ._base import _DERIV_ENTITIES, DataError, RunFiles, _entities, _kv, _say, fresh_build_dir
from ._cifti import discover_cifti_runs, is_cifti, load_cifti
from ._timing import volume_reference
from ._derived import (_RESAMPLED, _drop_invalid_videos, _ResampledImage, _resampled_runs,
                       read_invalid_videos, resample_target, work_dir)
from ._events import (EVENT_COLUMNS, HAD_LEAD_IN_S, onset_offset_for, read_events,
                      read_stimuli_map)

__all__ = ["RunFiles", "discover_runs", "read_events", "load_bold", "load_mask",
           "read_confounds", "DataError", "EVENT_COLUMNS", "load_stimuli", "read_stimuli_map",
           "check_same_tr", "grid_mismatch", "volume_reference", "derivatives_dir", "repetition_time",
           "onset_offset_for", "read_invalid_videos", "resample_target", "work_dir",
           "HAD_LEAD_IN_S"]

_TR_TOL = 1e-3  # s: two runs whose TRs differ by more are on different time grids


def _sidecar_candidates(bold: Path, root: Path) -> list[Path]:
    """Sidecar JSONs that may hold the RepetitionTime of ``bold``, most specific first.

    1. the JSON beside the BOLD (same name);
    2. the raw run's sidecar (the BOLD name without fMRIPrep's space/res/desc entities) in
       ``<root>/sub-XX/[ses-YY/]func/``, then, by the BIDS inheritance principle, every
       ``*_bold.json`` in that folder, ``ses-YY/``, ``sub-XX/`` and the root whose entities
       are a subset of the run's (e.g. ``sub-XX_task-<t>_bold.json``, ``task-<t>_bold.json``).
    """
    own = bold.with_name(bold.name.replace(".nii.gz", ".json").replace(".nii", ".json"))
    ent = _kv(bold.name)
    raw_name = _DERIV_ENTITIES.sub("", own.name)
    levels = [root]
    if "sub" in ent:
        levels.insert(0, root / f"sub-{ent['sub']}")
        if "ses" in ent:
            levels.insert(0, root / f"sub-{ent['sub']}" / f"ses-{ent['ses']}")
        levels.insert(0, levels[0] / "func")
    cands = [own, levels[0] / raw_name]
    for d in levels:
        if not d.is_dir():
            continue
        found = []
        for j in d.glob("*_bold.json"):
            kv = _kv(j.name)
            if kv and all(ent.get(k) == v for k, v in kv.items()):
                found.append((-len(kv), j.name, j))
        cands += [j for _, _, j in sorted(found)]
    seen, out = set(), []
    for c in cands:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def repetition_time(bold: str | Path, root: str | Path) -> tuple[float, str]:
    """RepetitionTime (s) of a BOLD run and where it came from.

    Order: (1) the sidecar JSON beside the BOLD; (2) the raw run's sidecar
    ``sub-XX/[ses-YY/]func/*_bold.json`` and the BIDS inheritance chain above it, up to
    ``task-<task>_bold.json`` at the root (fMRIPrep derivatives usually inherit from the raw
    run); (3) the NIfTI header (``pixdim[4]``, milliseconds converted), with a WARNING naming
    the file; (4) a DataError when the header has no usable TR (0, missing, or nibabel's
    unset default 1.0 with unknown units).

    Returns
    -------
    (tr, source) : float seconds and the JSON path or ``"NIfTI header"``.
    """
    bold, root = Path(bold), Path(root)
    for c in _sidecar_candidates(bold, root):
        if c.is_file():
            try:
                tr = json.loads(c.read_text()).get("RepetitionTime")
            except json.JSONDecodeError as exc:
                raise DataError(f"{c} is not valid JSON ({exc}); fix or delete it") from exc
            if tr:
                try:
                    tr = float(tr)
                except (TypeError, ValueError):
                    raise DataError(f"{c}: RepetitionTime {tr!r} is not a number (seconds); "
                                    f"fix the sidecar") from None
                if not 0 < tr <= 100:
                    raise DataError(f"{c}: RepetitionTime {tr} is not a plausible TR in "
                                    f"seconds; fix the sidecar (BIDS uses seconds)")
                return tr, str(c)
    import nibabel as nib
    try:
        hdr = nib.load(str(bold)).header
        zooms = hdr.get_zooms()
        units = hdr.get_xyzt_units()[1] if hasattr(hdr, "get_xyzt_units") else "unknown"
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot read NIfTI header of {bold}: {exc}. Re-download or re-create "
                        f"the file") from exc
    fix = (f"add \"RepetitionTime\" (seconds) to a sidecar JSON: the raw run's "
           f"{_sidecar_candidates(bold, root)[1]} or task-<task>_bold.json at the BIDS root "
           f"{root}")
    tr = float(zooms[3]) if len(zooms) >= 4 else 0.0
    tr = tr / 1000.0 if units == "msec" else tr / 1e6 if units == "usec" else tr
    if not np.isfinite(tr) or tr <= 0 or (units == "unknown" and tr == 1.0) or tr > 100:
        what = ("no time step" if len(zooms) < 4 or not tr > 0 else
                "pixdim[4] = 1.0 with unknown units (nibabel's unset default)"
                if tr == 1.0 else f"an implausible time step {tr} (units {units})")
        raise DataError(f"no RepetitionTime for {bold}: no sidecar JSON gives one and its NIfTI "
                        f"header has {what}. Fix: {fix}")
    _say(f"TR of {bold} taken from its NIfTI header ({tr:g} s, units {units}): no sidecar JSON "
         f"has RepetitionTime. If that is not the acquisition TR, {fix}", warn=True,
         once=f"tr:{bold}")
    return tr, "NIfTI header"


def _tr_of(bold: Path, root: Path) -> float:
    """RepetitionTime of ``bold`` (see :func:`repetition_time`)."""
    return repetition_time(bold, root)[0]


def check_same_tr(runs: list) -> None:
    """Raise DataError when the runs do not all share one TR (blocks are counted in volumes,
    so runs with different TRs would give blocks of different lengths in seconds)."""
    if not runs:
        return
    ref = runs[0]
    for r in runs[1:]:
        if abs(r.tr - ref.tr) > _TR_TOL:
            n = len({round(x.tr, 3) for x in runs})
            raise DataError(
                f"{r.bold} has TR {r.tr:g} s (from {r.tr_source or 'its sidecar'}) but "
                f"{ref.bold} has TR {ref.tr:g} s (from {ref.tr_source or 'its sidecar'}); "
                f"{n} different TRs in all. Trial blocks are counted in volumes, so one grid of "
                f"blocks cannot hold both. Fix: resample those runs in time to one TR "
                f"beforehand (interpolate every voxel's time course, then update "
                f"RepetitionTime in their sidecars), or process the subjects of each TR "
                f"separately (build_trial_cache(cfg, subjects=[...]), or a profile whose "
                f"data.root holds only those subjects, e.g. a folder of symlinks). "
                f"`llm4brain describe` lists the TR of every run")


def grid_mismatch(path: Path, shape, affine, ref_path: Path, ref_shape, ref_affine) -> str | None:
    """Message when ``path`` is not on the grid (shape, affine) of ``ref_path``, else None."""
    if tuple(shape[:3]) == tuple(ref_shape[:3]) and np.allclose(affine, ref_affine, atol=1e-3):
        return None
    what = (f"shape {tuple(shape[:3])} vs {tuple(ref_shape[:3])}"
            if tuple(shape[:3]) != tuple(ref_shape[:3]) else
            f"same shape {tuple(shape[:3])} but a different affine (voxel size / origin / "
            f"orientation: {np.round(np.asarray(affine)[:3], 2).tolist()} vs "
            f"{np.round(np.asarray(ref_affine)[:3], 2).tolist()})")
    return (f"{path} is on a different grid than {ref_path} ({what}): the trial cache needs "
            f"one voxel grid for every run and subject. Fix: resample every run (and its brain "
            f"mask, with interpolation='nearest') to one reference grid before running, e.g. "
            f"nilearn.image.resample_to_img(img, reference_img) then nib.save, or let the "
            f"loader do it: set data.resample_to to a reference NIfTI or to mni152_<mm> "
            f"(e.g. mni152_2), which aligns grids, not anatomy; or use derivatives in one "
            f"template space (data.source: fmriprep with data.space naming an MNI space your "
            f"fMRIPrep run wrote)")


def derivatives_dir(root: str | Path, data_cfg) -> Path:
    """The derivatives folder ``data.derivatives`` (relative to ``root`` unless absolute)."""
    d = os.path.expandvars(str(getattr(data_cfg, "derivatives", "derivatives/fmriprep")))
    p = Path(d)
    return p if p.is_absolute() else Path(root) / p


def _listing(d: Path, limit: int = 12) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in d.iterdir())
    except OSError:
        return "(unreadable)"
    if not names:
        return "(nothing)"
    return ", ".join(names[:limit]) + (f", ... ({len(names)} entries)" if len(names) > limit else "")


def discover_runs(root: str | Path, data_cfg, task: str = "action", *,
                  resample: bool = True) -> list[RunFiles]:
    """Find every functional run of a BIDS dataset.

    Parameters
    ----------
    root : path
        BIDS root (with ``sub-*`` folders and, for ``source='fmriprep'``, the derivatives
        folder ``data.derivatives``, default ``derivatives/fmriprep``).
    data_cfg : DataConfig
        ``source`` (``fmriprep`` | ``raw``), ``derivatives``, ``space`` and ``desc`` select
        the BOLD files; ``invalid_videos`` and ``resample_to`` change what is read (below).
    resample : bool
        With ``data.resample_to`` set, return runs whose BOLD and mask are read through
        resampling onto that grid (links under ``data.work_dir``); False: the files as they
        are (``describe`` and ``check-data`` report the original grids).

    Returns
    -------
    list of RunFiles sorted by subject, session and run number (``run-01`` and ``run-1``
    both accepted), each with its TR and where the TR came from (:func:`repetition_time`);
    runs listing a clip of ``data.invalid_videos`` point to a filtered copy of their events. Raises DataError when nothing is found, the derivatives folder
    is missing (listing what ``derivatives/`` holds) or a run lacks its events file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist: set data.root in the profile "
                        f"(for HAD: export HAD_ROOT=/path/to/ds004488), or run "
                        f"`llm4brain simulate` for the embedded dataset")
    if data_cfg.source == "ciftify":
        if getattr(data_cfg, "resample_to", ""):
            raise DataError("data.resample_to does not apply to data.source: ciftify "
                            "(grayordinates are one space for every subject): remove it")
        runs = discover_cifti_runs(root, data_cfg, task)
        return _drop_invalid_videos(runs, root, data_cfg) if getattr(
            data_cfg, "invalid_videos", ()) else runs
    if data_cfg.source == "fmriprep":
        base = derivatives_dir(root, data_cfg)
        setting = getattr(data_cfg, "derivatives", "derivatives/fmriprep")
        if not base.is_dir():
            top = root / "derivatives"
            where = (f"{top} holds: {_listing(top)}" if top.is_dir() else
                     f"{root} has no derivatives/ folder (it holds: {_listing(root)})")
            raise DataError(f"derivatives folder {base} (data.derivatives: {setting!r}) not "
                            f"found; {where}. Set data.derivatives to the folder that holds "
                            f"sub-*/.../func/*_desc-{data_cfg.desc}_bold.nii.gz (relative to "
                            f"data.root or absolute; nilearn's fake BIDS writes "
                            f"'derivatives'), or data.source: raw")
        pattern = f"sub-*/**/func/*task-{task}*space-{data_cfg.space}*desc-{data_cfg.desc}_bold.nii*"
    elif data_cfg.source == "raw":
        base = root
        pattern = f"sub-*/**/func/*task-{task}*_bold.nii*"
    else:
        raise DataError(f"data.source must be 'fmriprep', 'raw' or 'ciftify', got "
                        f"{data_cfg.source!r}")
    bolds = sorted(base.glob(pattern))
    if data_cfg.source == "raw":
        bolds = [b for b in bolds if "space-" not in b.name]
    if not bolds:
        seen = sorted({m for b in base.glob("sub-*/**/func/*_bold.nii*")
                       for m in re.findall(r"_((?:task|space|desc)-[^_]+)", b.name)})
        hint = f"; BOLD files there have {', '.join(seen[:12])}" if seen else ""
        raise DataError(f"no BOLD files matching {base}/{pattern}: check data.source, "
                        f"data.space ({data_cfg.space}) and data.desc ({data_cfg.desc}){hint}")
    runs = []
    for b in bolds:
        ent = _entities(b)
        if not ent:
            raise DataError(f"cannot parse BIDS entities of {b}")
        sub, ses, run = ent["subject"], ent["session"], ent["run"]
        stem, ev = events_file(root, sub, ses, ent["task"], ent["run_label"], run, b.name)
        conf = mask = None
        if data_cfg.source == "fmriprep":
            c = sorted(b.parent.glob(f"{stem}_*desc-confounds_timeseries.tsv")) or \
                sorted(b.parent.glob(f"{stem}_*desc-confounds_regressors.tsv"))
            conf = c[0] if c else None
            exact = b.with_name(b.name.replace(f"desc-{data_cfg.desc}_bold", "desc-brain_mask"))
            m = [exact] if exact.is_file() else \
                sorted(b.parent.glob(f"{stem}_*space-{data_cfg.space}*desc-brain_mask.nii*"))
            mask = m[0] if m else None
        tr, tr_src = repetition_time(b, root)
        t0, t0_src = volume_reference(b, root, tr)
        runs.append(RunFiles(sub, ses, run, b, ev, conf, mask, tr, tr_src, t0, t0_src))
    runs.sort(key=lambda r: (r.subject, r.session, r.run))
    for a, b in zip(runs, runs[1:]):
        if (a.subject, a.session, a.run) == (b.subject, b.session, b.run):
            raise DataError(f"{a.bold} and {b.bold} are both run {a.run} of sub-{a.subject}"
                            + (f" ses-{a.session}" if a.session else "")
                            + ": keep one of them (run-01 and run-1 name the same run)")
    if getattr(data_cfg, "invalid_videos", ()):
        runs = _drop_invalid_videos(runs, root, data_cfg)
    if resample and getattr(data_cfg, "resample_to", ""):
        runs = _resampled_runs(runs, root, data_cfg)
    return runs


def events_file(root: Path, sub: str, ses: str, task: str, run_label: str, run: int,
                bold_name: str) -> tuple[str, Path]:
    """(file stem of the run as its BOLD writes it, its events.tsv in the raw BIDS tree).

    ``run-01`` (BIDS) and ``run-1`` (ciftify) both name run 1: the events are looked up
    under both labels."""
    ses_part = f"_ses-{ses}" if ses else ""
    ses_dir = f"ses-{ses}" if ses else ""
    labels = list(dict.fromkeys(x for x in (run_label, f"{run:02d}", str(run)) if x))
    stems = [f"sub-{sub}{ses_part}_task-{task}_run-{lab}" for lab in labels]
    evs = [root / f"sub-{sub}" / ses_dir / "func" / f"{st}_events.tsv" for st in stems]
    ev = next((e for e in evs if e.is_file()), None)
    if ev is None:
        alt = [a for st in stems
               for a in sorted((root / f"sub-{sub}").glob(f"**/func/{st}_*events.tsv"))]
        if not alt:
            raise DataError(f"events file {evs[0]} missing for {bold_name}: every run needs its "
                            f"events.tsv in the raw BIDS tree (run-{run:02d} or run-{run})")
        ev = alt[0]
    return stems[0], ev


def _load_nifti(path: Path, what: str):
    import nibabel as nib

    if not Path(path).is_file():
        raise DataError(f"{what} {path} not found")
    if is_cifti(path):
        try:
            return load_cifti(path)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{what} {path} is not a readable CIFTI-2 dense time series "
                            f"({type(exc).__name__}: {exc})") from exc
    try:
        img = nib.load(str(path))
        _ = img.header.get_data_shape()
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{what} {path} is not a readable NIfTI ({type(exc).__name__}: {exc}). "
                        f"Re-download or re-create it") from exc
    target = _RESAMPLED.get(str(path))
    if target is not None:
        shape, affine, _, interp = target
        return _ResampledImage(img, shape, affine, "nearest" if what == "brain mask" else interp,
                               Path(path))
    return img


def load_mask(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Brain mask (bool X, Y, Z) and its affine."""
    img = _load_nifti(Path(path), "brain mask")
    try:
        m = np.asarray(img.dataobj) > 0
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"brain mask {path} cannot be read ({exc}); re-create it") from exc
    if m.ndim == 4 and m.shape[3] == 1:
        m = m[..., 0]
    if m.ndim != 3:
        raise DataError(f"brain mask {path} must be 3-D, has shape {m.shape}")
    return m, img.affine


def load_bold(path: str | Path, mask: np.ndarray | None = None, affine: np.ndarray | None = None,
              *, required: np.ndarray | None = None, mask_source: str | None = None
              ) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Load a 4-D BOLD run as float32.

    Parameters
    ----------
    path : BOLD NIfTI
    mask, affine : optional
        Keep only the ``mask`` voxels (bool X, Y, Z); ``affine`` must match the file's.
    required : bool array, optional
        Over the kept voxels (``mask`` voxels, or all voxels): those that must be finite.
        Non-finite values elsewhere (background voxels) are set to 0. Default: all.
    mask_source : str, optional
        What the mask is (a file, or how it was computed), for the NaN error message.

    Returns
    -------
    data : (n_vols, n_vox) at the mask voxels when ``mask`` is given, else (X, Y, Z, n_vols)
    affine : (4, 4)
    shape : the 4-D shape
    Raises DataError on an unreadable file, a shape or affine mismatch with the mask, or
    non-finite values in required voxels.
    """
    path = Path(path)
    img = _load_nifti(path, "BOLD file")
    shape = img.shape
    if len(shape) != 4:
        raise DataError(f"BOLD file {path} must be 4-D (X, Y, Z, time), has shape {shape}")
    if mask is not None and tuple(shape[:3]) != tuple(mask.shape):
        raise DataError(f"BOLD file {path} has spatial shape {shape[:3]} but the brain mask "
                        f"({mask_source or 'given'}) has {mask.shape}: resample the mask onto "
                        f"the BOLD grid (nilearn.image.resample_to_img(mask_img, bold_img, "
                        f"interpolation='nearest')) or use the mask written with this BOLD")
    if affine is not None and not np.allclose(img.affine, affine, atol=1e-3):
        raise DataError(f"BOLD file {path} has an affine different from the brain mask's "
                        f"({mask_source or 'given'}): resample one onto the other "
                        f"(nilearn.image.resample_to_img) so both share one grid")
    try:
        # read the on-disk values (e.g. int16), keep the mask voxels, then scale: the full
        # float volume is never materialised (peak memory ~ the raw array + the masked part)
        proxy = img.dataobj
        raw = np.asarray(proxy.get_unscaled()) if hasattr(proxy, "get_unscaled") else np.asarray(proxy)
        slope = float(getattr(proxy, "slope", 1.0) or 1.0)
        inter = float(getattr(proxy, "inter", 0.0) or 0.0)
        if np.isnan(slope):
            slope, inter = 1.0, 0.0
        if mask is not None:
            raw = raw[mask]  # (n_vox, n_vols), a copy of the masked part only
        data = raw.astype(np.float32)
        del raw
        if slope != 1.0:
            data *= np.float32(slope)
        if inter != 0.0:
            data += np.float32(inter)
        if mask is not None:
            data = np.ascontiguousarray(data.T)  # (n_vols, n_vox)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"BOLD file {path} cannot be read ({type(exc).__name__}: {exc}); the "
                        f"file is truncated or corrupt: re-download or re-create it") from exc
    vox_axis = 0 if mask is not None else 3
    bad = ~np.isfinite(data).all(axis=vox_axis)          # per voxel
    if bad.any():
        need = bad if required is None else bad & np.asarray(required, bool).reshape(bad.shape)
        if need.any():
            n = int(need.sum())
            where = (f"inside the brain mask ({mask_source})" if mask_source else
                     "inside the mask" if mask is not None else "(no mask given)")
            raise DataError(
                f"BOLD file {path} has non-finite values in {n} voxel(s) {where} (NaN or "
                f"inf), e.g. voxel {tuple(int(i) for i in _first_bad(need, mask))}. Fix: replace them "
                f"in the file (d = img.get_fdata(); d[~np.isfinite(d)] = 0; "
                f"nib.save(nib.Nifti1Image(d, img.affine, img.header), path)), exclude those "
                f"voxels from the brain mask, or re-run preprocessing")
        if mask is not None:
            data[:, bad] = 0.0
        else:
            data[bad] = 0.0
    return data, img.affine, shape


def _first_bad(bad: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """(i, j, k) of the first flagged voxel (``bad`` over mask voxels or the full grid)."""
    if mask is None:
        return np.argwhere(bad)[0]
    return np.argwhere(mask)[int(np.flatnonzero(bad)[0])]


def read_confounds(path: Path | None, columns, n_vols: int) -> np.ndarray:
    """Confound columns (n_vols, k) from an fMRIPrep confounds TSV (NaNs in the first row -> 0)."""
    if path is None or not columns:
        return np.zeros((n_vols, 0), np.float32)
    df = pd.read_csv(path, sep="\t", na_values=["n/a"])
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path} lacks confound column(s) {missing}; set data.confounds to "
                        f"columns it has (e.g. {list(df.columns[:6])})")
    if len(df) != n_vols:
        raise DataError(f"{path} has {len(df)} rows but its BOLD run has {n_vols} volumes")
    return df[list(columns)].fillna(0.0).to_numpy(np.float32)


def load_stimuli(cfg) -> pd.DataFrame:
    """Stimulus table: stim_file, clip_id, class_name, description, paraphrases, corpus.

    Reads ``<root>/stimuli/descriptions.tsv`` (simulated data) and the pretraining corpus
    ``<root>/../pretrain_corpus/descriptions.tsv`` when present. For real HAD (no text) the
    table is built from the events files with empty descriptions and a ``duration`` column
    (the longest events duration of the clip, checked by :func:`build_frame_cache`).
    """
    root = cfg.data_root
    tables = []
    p = root / "stimuli" / "descriptions.tsv"
    if p.is_file():
        tables.append(pd.read_csv(p, sep="\t", keep_default_na=False))
    else:
        rows = []
        for rf in discover_runs(root, cfg.data):
            ev = read_events(rf.events, stimuli_map=cfg.data.stimuli_map or None)
            for sf, dur in zip(ev["stim_file"], ev["duration"]):
                rows.append(dict(stim_file=sf, clip_id=Path(sf).stem,
                                 class_name=Path(sf).parent.name, description="",
                                 paraphrases="", corpus="subjects", duration=float(dur)))
        t = pd.DataFrame(rows)
        # the longest events duration of each clip: build_frame_cache checks the clip lasts it
        t["duration"] = t.groupby("stim_file")["duration"].transform("max")
        tables.append(t.drop_duplicates("stim_file"))
    pc = root.parent / "pretrain_corpus" / "descriptions.tsv"
    if pc.is_file():
        t = pd.read_csv(pc, sep="\t", keep_default_na=False)
        t["corpus"] = "pretrain"
        tables.append(t)
    out = pd.concat(tables, ignore_index=True)
    out["path"] = [str((root / "stimuli" / s) if c == "subjects"
                       else (root.parent / "pretrain_corpus" / "stimuli" / s))
                   for s, c in zip(out["stim_file"], out["corpus"])]
    return out
