"""Files the loader derives from a dataset under ``data.work_dir``: events without the trials
of ``data.invalid_videos``, and runs read through resampling onto ``data.resample_to``."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ._base import DataError, RunFiles, _say
from ._events import read_stimuli_map

__all__ = ["work_dir", "read_invalid_videos", "resample_target"]


# BOLD / mask files (links under data.work_dir) read through resampling onto a target grid:
# str(path) -> (target shape, target affine, description of the target)
_RESAMPLED: dict = {}


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
                            rf.mask, rf.tr, rf.tr_source, rf.t0, rf.timing_source))
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
        try:
            img = nib.load(str(f))
            _ = img.shape
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"data.resample_to reference {f} is not a readable NIfTI "
                            f"({type(exc).__name__}: {exc})") from exc
        what = str(f)
    shape = tuple(int(x) for x in img.shape[:3])
    vox = np.sqrt((np.asarray(img.affine)[:3, :3] ** 2).sum(0))
    return shape, np.asarray(img.affine, float), (
        f"{what} (shape {shape}, voxels {' x '.join(f'{v:g}' for v in vox)} mm)")


def _resampled_runs(runs: list[RunFiles], root: Path, data_cfg) -> list[RunFiles]:
    """Runs whose BOLD (and mask) are read through resampling onto ``data.resample_to``: each
    file gets a link under ``data.work_dir/resampled-<target>-<hash>/`` (so the trial cache's
    key changes with the target) registered in ``_RESAMPLED`` for :func:`_load_nifti`."""

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
                    r.confounds, link(r.mask, "nearest"), r.tr, r.tr_source, r.t0, r.timing_source) for r in runs]
    _say(f"data.resample_to: every BOLD run (continuous interpolation) and brain mask (nearest "
         f"neighbour) is resampled onto {what} before trial blocks are cut. This aligns voxel "
         f"grids, not anatomy: runs in each subject's own (T1w) space stay in different "
         f"anatomical spaces, so a voxel is not the same brain location across those subjects; "
         f"use MNI-space derivatives (data.space) for that", once=f"resample:{what}")
    return out


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
