"""BIDS discovery and validated reading of HAD-layout datasets (raw or fMRIPrep derivatives).

One code path serves the real HAD (OpenNeuro ds004488) and the embedded simulation.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ._cifti import discover_cifti_runs, is_cifti, load_cifti

__all__ = ["RunFiles", "discover_runs", "read_events", "load_bold", "load_mask",
           "read_confounds", "DataError", "EVENT_COLUMNS", "load_stimuli", "read_stimuli_map",
           "check_same_tr", "grid_mismatch", "derivatives_dir", "repetition_time",
           "onset_offset_for", "read_invalid_videos", "resample_target", "work_dir",
           "HAD_LEAD_IN_S"]

EVENT_COLUMNS = ("onset", "duration", "trial_type", "response", "response_time", "stim_file")
_RUN_RE = re.compile(r"sub-(?P<sub>[^_/]+)(?:_ses-(?P<ses>[^_/]+))?_task-(?P<task>[^_/]+)"
                     r"(?:_acq-[^_/]+)?(?:_run-(?P<run>\d+))?")
# entities fMRIPrep adds to a raw file name (removed to find the raw run's sidecar)
_DERIV_ENTITIES = re.compile(r"_(?:space|res|den|desc|cohort|from|to|mode|hemi|label)-[^_]+")
_TR_TOL = 1e-3  # s: two runs whose TRs differ by more are on different time grids
HAD_LEAD_IN_S = 12.0   # HAD's official GLMs add begin_dur = 12 s to every events.tsv onset
_AUTO_TOL_S = 2.0      # onset_offset: auto: "about 0 s" / "about 12 s" means within this
# BOLD / mask files (links under data.work_dir) read through resampling onto a target grid:
# str(path) -> (target shape, target affine, description of the target)
_RESAMPLED: dict = {}
log = logging.getLogger("llm4brain.data")
_announced: set = set()


class DataError(ValueError):
    """Bad input data; the message names the file and the fix."""


def fresh_build_dir(path: Path) -> Path:
    """Remove ``path`` (an old cache) and return an empty ``<path>.tmp`` to build into; the
    caller renames it to ``path`` when the build is complete, so a crash never leaves a
    half-written cache under the final name."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _say(msg: str, warn: bool = False, once: str | None = None) -> None:
    """Report ``msg`` through logging (logger ``llm4brain.data``) when logging is configured
    to show it, else print it to stderr; ``once``: a key reported only once per process."""
    if once is not None:
        if once in _announced:
            return
        _announced.add(once)
    level = logging.WARNING if warn else logging.INFO
    if log.hasHandlers() and log.isEnabledFor(level):
        log.log(level, msg)
    else:
        print(("llm4brain: WARNING: " if warn else "llm4brain: ") + msg, file=sys.stderr,
              flush=True)


@dataclass(frozen=True)
class RunFiles:
    """The files of one functional run (``tr_source``: the sidecar JSON the TR came from, or
    ``"NIfTI header"``)."""

    subject: str
    session: str
    run: int
    bold: Path
    events: Path
    confounds: Path | None
    mask: Path | None
    tr: float
    tr_source: str = ""


def _entities(path: Path) -> dict:
    m = _RUN_RE.search(path.name)
    if not m:
        return {}
    d = m.groupdict()
    return dict(subject=d["sub"], session=d["ses"] or "", task=d["task"],
                run=int(d["run"]) if d["run"] else 1, run_label=d["run"] or "")


def _kv(name: str) -> dict:
    """``{"sub": "01", "run": 1, ...}`` of a BIDS file name (run as int)."""
    stem = name.split(".")[0]
    out = {}
    for part in stem.split("_"):
        if "-" in part:
            k, v = part.split("-", 1)
            out[k] = int(v) if k == "run" and v.isdigit() else v
    return out


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
        runs.append(RunFiles(sub, ses, run, b, ev, conf, mask, tr, tr_src))
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


def work_dir(root: str | Path, data_cfg) -> Path:
    """Folder of the files derived from the dataset (``data.work_dir``; default
    ``<root>/derivatives/llm4brain``; relative paths are taken from ``root``)."""
    d = os.path.expandvars(str(getattr(data_cfg, "work_dir", "") or ""))
    if not d:
        return Path(root) / "derivatives" / "llm4brain"
    p = Path(d)
    return p if p.is_absolute() else Path(root) / p


def _writable(d: Path, what: str) -> Path:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {d} for {what} ({exc}): set data.work_dir to a writable "
                        f"folder (the dataset may be read-only)") from exc
    return d


def _find_file(setting: str, root: Path, key: str) -> Path:
    p = Path(os.path.expandvars(str(setting))).expanduser()
    cands = [p] if p.is_absolute() else [Path.cwd() / p, Path(root) / p]
    for c in cands:
        if c.is_file():
            return c
    raise DataError(f"{key}: file {setting!r} not found (looked at "
                    f"{', '.join(str(c) for c in cands)}); fix the path (relative paths are taken "
                    f"from the current directory, then data.root)")


_CLIP_COLUMNS = ("stim_file", "video", "video_name", "clip", "file", "name")


def read_invalid_videos(setting, root: str | Path = ".") -> list[str]:
    """Clip names of ``data.invalid_videos``: a list of names, or the path of a file. A
    ``.csv`` / ``.tsv`` file is a table with a header row and one of the columns
    ``stim_file``, ``video``, ``video_name``, ``clip``, ``file``, ``name`` (the first found);
    any other file has one name per line (blank lines and ``#`` comments skipped). Returns the
    names in order, without duplicates."""
    if not setting:
        return []
    if isinstance(setting, (list, tuple)):
        names = [str(x).strip() for x in setting]
    else:
        f = _find_file(setting, Path(root), "data.invalid_videos")
        if f.suffix.lower() in (".csv", ".tsv"):
            t = pd.read_csv(f, sep="," if f.suffix.lower() == ".csv" else "\t", dtype=str,
                            keep_default_na=False)
            col = next((c for c in _CLIP_COLUMNS if c in t.columns), None)
            if col is None:
                raise DataError(f"{f} (data.invalid_videos) has columns {list(t.columns)} but "
                                f"none of {list(_CLIP_COLUMNS)}: it must list clips (a table "
                                f"of counts per class cannot say which trials to drop). Add a "
                                f"column of clip names, or give a text file with one clip a "
                                f"line")
            names = [str(x).strip() for x in t[col]]
        else:
            names = [line.split("#", 1)[0].strip() for line in f.read_text().splitlines()]
    return list(dict.fromkeys(n for n in names if n))


def _clip_keys(stim_file: str) -> tuple[str, str, str]:
    p = Path(stim_file)
    return stim_file, p.name, p.stem


def _drop_invalid_videos(runs: list[RunFiles], root: Path, data_cfg) -> list[RunFiles]:
    """Runs whose events files list a clip of ``data.invalid_videos`` get a filtered copy of
    their events (under ``data.work_dir``); the count dropped is logged per subject and names
    matching no clip are warned about."""
    import hashlib

    names = read_invalid_videos(data_cfg.invalid_videos, root)
    bad = set(names)
    tag = hashlib.sha1("\n".join(sorted(bad)).encode()).hexdigest()[:10]
    dest_root = work_dir(root, data_cfg) / f"events-invalid-{tag}"
    lut = None
    if getattr(data_cfg, "stimuli_map", ""):
        m = read_stimuli_map(data_cfg.stimuli_map)
        lut = dict(zip(m["trial_type"], m["stim_file"]))
    matched, per_sub, out = set(), {}, []
    for rf in runs:
        lines = rf.events.read_text().splitlines(keepends=True)
        head = lines[0].rstrip("\r\n").split("\t") if lines else []
        col = "stim_file" if "stim_file" in head else "trial_type" if lut and \
            "trial_type" in head else None
        keep, dropped = lines[:1], 0
        for line in lines[1:]:
            f = line.rstrip("\r\n").split("\t")
            v = f[head.index(col)] if col and head.index(col) < len(f) else ""
            if col == "trial_type":
                v = lut.get(v.removesuffix(".0"), "")
            hit = [k for k in _clip_keys(v) if k in bad] if v else []
            if hit:
                matched.update(hit)
                dropped += 1
            else:
                keep.append(line)
        n, clips = per_sub.get(rf.subject, (0, 0))
        per_sub[rf.subject] = (n + dropped, clips)
        if not dropped:
            out.append(rf)
            continue
        try:
            rel = rf.events.relative_to(root)
        except ValueError:
            rel = Path(rf.events.name)
        dest = dest_root / rel
        text = "".join(keep)
        if not (dest.is_file() and dest.read_text() == text):
            _writable(dest.parent, "the events files without data.invalid_videos")
            dest.write_text(text)
        out.append(RunFiles(rf.subject, rf.session, rf.run, rf.bold, dest, rf.confounds,
                            rf.mask, rf.tr, rf.tr_source))
    src = (f"{len(names)} name(s)" if isinstance(data_cfg.invalid_videos, (list, tuple))
           else f"{len(names)} name(s) from {data_cfg.invalid_videos}")
    counts = ", ".join(f"sub-{s}: {n}" for s, (n, _) in per_sub.items())
    _say(f"data.invalid_videos ({src}): trials dropped per subject: {counts} "
         f"(filtered events files under {dest_root})", once=f"invalid:{tag}:{counts}")
    unknown = [n for n in names if n not in matched]
    if unknown:
        _say(f"data.invalid_videos: {len(unknown)} of {len(names)} name(s) match no clip in the "
             f"events files of {root}: {unknown[:10]}{' ...' if len(unknown) > 10 else ''}. "
             f"Names match a stim_file (Class/v_..._label_N.mp4), its file name or its file "
             f"name without extension: check the spelling", warn=True,
             once=f"invalid-unknown:{tag}:{root}")
    return out


def resample_target(setting: str, root: str | Path = ".") -> tuple[tuple, np.ndarray, str]:
    """Grid of ``data.resample_to``: (shape, affine, description). ``mni152_<mm>``: nilearn's
    MNI152 template at that resolution (bundled, offline); else a reference NIfTI."""
    import nibabel as nib

    s = str(setting).strip()
    if s.lower().startswith("mni152_"):
        from nilearn.datasets import load_mni152_template

        mm = int(s.split("_", 1)[1])
        img = load_mni152_template(resolution=mm)
        what = f"nilearn's MNI152 template at {mm} mm"
    else:
        f = _find_file(s, Path(root), "data.resample_to")
        img = _load_nifti(f, "data.resample_to reference")
        what = str(f)
    shape = tuple(int(x) for x in img.shape[:3])
    vox = np.sqrt((np.asarray(img.affine)[:3, :3] ** 2).sum(0))
    return shape, np.asarray(img.affine, float), (
        f"{what} (shape {shape}, voxels {' x '.join(f'{v:g}' for v in vox)} mm)")


def _resampled_runs(runs: list[RunFiles], root: Path, data_cfg) -> list[RunFiles]:
    """Runs whose BOLD (and mask) are read through resampling onto ``data.resample_to``: each
    file gets a link under ``data.work_dir/resampled-<target>-<hash>/`` (so the trial cache's
    key changes with the target) registered in ``_RESAMPLED`` for :func:`_load_nifti`."""
    import hashlib

    shape, aff, what = resample_target(data_cfg.resample_to, root)
    h = hashlib.sha1(repr((shape, np.round(aff, 4).tolist())).encode()).hexdigest()[:8]
    label = re.sub(r"[^A-Za-z0-9]+", "-", Path(str(data_cfg.resample_to)).name.split(".")[0])
    base = work_dir(root, data_cfg) / f"resampled-{label}-{h}"

    def link(path: Path | None, interpolation: str) -> Path | None:
        if path is None:
            return None
        try:
            rel = path.relative_to(root)
        except ValueError:
            rel = Path(path.name)
        dst = base / rel
        target = path.resolve()
        if not (dst.is_symlink() and Path(os.readlink(dst)) == target):
            _writable(dst.parent, "the links to resampled runs (data.resample_to)")
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            os.symlink(target, dst)
        _RESAMPLED[str(dst)] = (shape, aff, what, interpolation)
        return dst

    out = [RunFiles(r.subject, r.session, r.run, link(r.bold, "continuous"), r.events,
                    r.confounds, link(r.mask, "nearest"), r.tr, r.tr_source) for r in runs]
    _say(f"data.resample_to: every BOLD run (continuous interpolation) and brain mask (nearest "
         f"neighbour) is resampled onto {what} before trial blocks are cut. This aligns voxel "
         f"grids, not anatomy: runs in each subject's own (T1w) space stay in different "
         f"anatomical spaces, so a voxel is not the same brain location across those subjects; "
         f"use MNI-space derivatives (data.space) for that", once=f"resample:{what}")
    return out


def read_stimuli_map(path: str | Path) -> pd.DataFrame:
    """Read an Urgen-style stimulus mapping TSV: columns ``trial_type``, ``stim_file`` and
    optionally ``class_name`` (one row per video; ``trial_type`` as in the events files)."""
    import os

    path = Path(os.path.expandvars(str(path)))
    if not path.is_file():
        raise DataError(f"stimulus mapping file {path} (data.stimuli_map) not found: write a TSV "
                        f"with columns trial_type, stim_file[, class_name] (README, 'Urgen')")
    m = pd.read_csv(path, sep="\t", dtype={"trial_type": str, "stim_file": str})
    missing = [c for c in ("trial_type", "stim_file") if c not in m.columns]
    if missing:
        raise DataError(f"{path} (data.stimuli_map) lacks column(s) {missing}; it needs "
                        f"trial_type, stim_file[, class_name]")
    if m["trial_type"].duplicated().any():
        dup = m.loc[m["trial_type"].duplicated(), "trial_type"].iloc[0]
        raise DataError(f"{path} (data.stimuli_map) maps trial_type {dup!r} twice")
    return m


def onset_offset_for(setting, first_onset: float | None, path: str | Path) -> tuple[float, str]:
    """Seconds to add to the onsets of one events file, and why.

    ``setting`` is ``data.onset_offset``: a number is returned as given; ``"auto"`` applies
    HAD's rule to the file's first onset: within 2 s of 0 -> +12 s (the onsets count from the
    end of HAD's 12 s lead-in, which its official GLMs add as ``begin_dur``); within 2 s of
    12 s -> +0 (the lead-in is already counted). Any other first onset raises DataError.
    """
    if setting != "auto":
        return float(setting), "data.onset_offset"
    if first_onset is None:
        return 0.0, "auto: no events"
    f = float(first_onset)
    if abs(f) <= _AUTO_TOL_S:
        return HAD_LEAD_IN_S, f"auto: first onset {f:.1f} s is about 0 s"
    if abs(f - HAD_LEAD_IN_S) <= _AUTO_TOL_S:
        return 0.0, f"auto: first onset {f:.1f} s is about {HAD_LEAD_IN_S:g} s"
    raise DataError(f"{path}: first onset {f:.1f} s is neither about 0 s nor about "
                    f"{HAD_LEAD_IN_S:g} s, so data.onset_offset: auto cannot tell whether the "
                    f"onsets include HAD's {HAD_LEAD_IN_S:g} s lead-in. Set data.onset_offset to "
                    f"the number of seconds to add to every onset (e.g. 0.0 or 12.0)")


def read_events(path: str | Path, onset_offset: float | str = 0.0, n_vols: int | None = None,
                tr: float | None = None, stimuli_map: str | Path | None = None) -> pd.DataFrame:
    """Read a HAD events.tsv and validate it.

    Parameters
    ----------
    path : path of ``*_events.tsv`` with columns onset, duration, trial_type, response,
        response_time, stim_file (HAD's columns). Other columns (e.g. HeuDiConv's leftover
        ``TODO`` column) are ignored and left out of the result.
    onset_offset : float or "auto"
        Seconds added to every onset, or ``"auto"`` to decide from the run's first onset
        (:func:`onset_offset_for`, logged once per run). See data.onset_offset.
    n_vols, tr : optional
        When given, events past the end of the run raise DataError.
    stimuli_map : path, optional
        Urgen-style mapping TSV (``data.stimuli_map``) filling ``stim_file`` (and
        ``class_name``) from ``trial_type`` for events files that lack them.

    Returns
    -------
    DataFrame of the stimulus events; ``.attrs["onset_offset"]`` is the offset applied and
    ``.attrs["onset_offset_rule"]`` why. The class is ``trial_type`` (HAD: 1-180); a
    trial_type shown with clips of two stimulus folders (or one folder with two trial_types)
    raises DataError.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"events file {path} not found")
    ev = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False,
                     dtype={"stim_file": str, "response": str, "response_time": str})
    extra = [c for c in ev.columns if c not in EVENT_COLUMNS and c != "class_name"]
    if extra:
        _say(f"{path.name}: column(s) {extra} ignored (the loader reads "
             f"{', '.join(EVENT_COLUMNS)})", once=f"extra-columns:{tuple(extra)}")
        ev = ev.drop(columns=extra)
    if stimuli_map:
        m = read_stimuli_map(stimuli_map)
        if "trial_type" not in ev.columns:
            raise DataError(f"{path} lacks column trial_type needed by data.stimuli_map")
        key = ev["trial_type"].astype(str).str.replace(r"\.0$", "", regex=True)
        lut = dict(zip(m["trial_type"], m["stim_file"]))
        unknown = sorted(set(key) - set(lut))
        if unknown:
            raise DataError(f"{path}: trial_type(s) {unknown[:5]} are not in data.stimuli_map "
                            f"({stimuli_map}); add them to the mapping")
        ev["stim_file"] = key.map(lut)
        if "class_name" in m.columns:
            ev["class_name"] = key.map(dict(zip(m["trial_type"], m["class_name"])))
    missing = [c for c in ("onset", "duration", "trial_type", "stim_file") if c not in ev.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}; HAD's events.tsv has "
                        f"{', '.join(EVENT_COLUMNS)} (for datasets without stim_file, e.g. Urgen, "
                        f"set data.stimuli_map)")
    ev["onset"] = pd.to_numeric(ev["onset"], errors="coerce")
    ev["duration"] = pd.to_numeric(ev["duration"], errors="coerce")
    bad = ev["onset"].isna() | ev["duration"].isna()
    if bad.any():
        raise DataError(f"{path}: non-numeric onset/duration in row(s) "
                        f"{list(np.flatnonzero(bad.to_numpy()) + 2)[:5]} (1-based, header = 1)")
    first = float(ev["onset"].min()) if len(ev) else None
    offset, rule = onset_offset_for(onset_offset, first, path)
    if onset_offset == "auto" and first is not None:
        _say(f"run {path.name}: first onset {first:.1f} s -> offset +{offset:g} s "
             f"(data.onset_offset: auto; HAD's lead-in is {HAD_LEAD_IN_S:g} s)",
             once=f"offset:{path}:{first}")
    ev["onset"] = ev["onset"] + offset
    ev = ev[ev["stim_file"].notna() & (ev["stim_file"].astype(str).str.len() > 0)]
    ev = ev.reset_index(drop=True)
    if "class_name" not in ev.columns and len(ev):
        folder = [Path(sf).parent.name for sf in ev["stim_file"]]
        pairs = pd.DataFrame(dict(tt=ev["trial_type"].astype(str), folder=folder))
        pairs = pairs[pairs["folder"] != ""].drop_duplicates()
        for col, other in (("tt", "folder"), ("folder", "tt")):
            dup = pairs[pairs[col].duplicated(keep=False)]
            if len(dup):
                v = dup[col].iloc[0]
                others = sorted(dup.loc[dup[col] == v, other])
                what = (f"trial_type {v} is shown with clips of folders {others}" if col == "tt"
                        else f"clips of folder {v} have trial_types {others}")
                raise DataError(f"{path}: {what}; the class is trial_type and the stimulus "
                                f"folder its name, so each must match one of the other. Fix the "
                                f"trial_type or stim_file column")
    if n_vols is not None and tr is not None:
        end = n_vols * tr
        late = ev["onset"] + ev["duration"] > end + 1e-6
        if late.any():
            r = int(np.flatnonzero(late.to_numpy())[0])
            raise DataError(f"{path}: event at onset {ev['onset'][r]:.1f} s ends past the end of "
                            f"the run ({n_vols} volumes x TR {tr} s = {end:.0f} s). Check "
                            f"data.onset_offset ({onset_offset}; applied +{offset:g} s) and that "
                            f"the events file belongs to this run")
    ev.attrs["onset_offset"] = offset
    ev.attrs["onset_offset_rule"] = rule
    return ev


class _ResampledImage:
    """A NIfTI read through resampling onto another grid (``data.resample_to``): ``shape``,
    ``affine`` and ``header`` are the target's at once; ``dataobj`` resamples on access."""

    def __init__(self, img, shape, affine, interpolation: str, path: Path):
        self._img, self._interp, self._path = img, interpolation, path
        self.affine = np.asarray(affine, float)
        self.shape = tuple(shape) + tuple(img.shape[3:])
        self.header = img.header.copy()
        self.header.set_data_shape(self.shape)
        vox = np.sqrt((self.affine[:3, :3] ** 2).sum(0))
        self.header.set_zooms(tuple(vox) + tuple(img.header.get_zooms()[3:len(self.shape)]))

    @property
    def dataobj(self) -> np.ndarray:
        from nilearn.image import resample_img

        out = resample_img(self._img, target_affine=self.affine, target_shape=self.shape[:3],
                           interpolation=self._interp, force_resample=True, copy_header=True)
        d = np.asarray(out.dataobj)
        return d if self._interp == "nearest" else d.astype(np.float32, copy=False)


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
