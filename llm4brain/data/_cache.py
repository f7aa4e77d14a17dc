"""Per-trial spatio-temporal fMRI blocks, cached as memory maps keyed by their settings.

For each run: load the BOLD (fMRIPrep MNI space or raw), regress out confounds, cosine drifts
and the mean, z-score every voxel, keep the voxels of the brain mask, crop to the bounding box
of the union of the subjects' masks. A trial's block is the T volumes starting at the first
volume at or after ``onset + lag`` (``data.block_trs``, ``data.lag_s``; :func:`block_start_index`),
or with ``data.response: beta`` its least-squares-all single-trial response map
(:func:`~llm4brain.data._runs.single_trial_betas`) in each of the T volumes.
All runs must share one TR (blocks are counted in volumes). A subject's brain mask is the
intersection of the masks of all its runs (fMRIPrep ``desc-brain_mask`` files, or for raw
data an intensity mask computed from each run).
"""
from __future__ import annotations

from ..config import config_hash
import contextlib
import errno
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ._bids import (DataError, RunFiles, _load_nifti, _say, check_same_tr, discover_runs,
                    fresh_build_dir, grid_mismatch)
from ._packed import PackedBlocks, PackedVolumes
from ._runs import (_clean_run, _subject_mask, _trial_rows, block_start_index, cosine_drift,
                    intensity_mask, preprocess_run, read_run_events, single_trial_betas,
                    timing_note, trial_design, volume_times)

__all__ = ["TrialCache", "build_trial_cache", "cache_workers", "load_trial_cache", "iter_run_volumes",
           "preprocess_run", "cosine_drift", "cache_key", "block_start_index", "volume_times", "read_run_events",
           "intensity_mask"]

# 3: blocks start at ceil((onset + lag) / TR) (was floor), masks intersect all runs
_CACHE_VERSION = 3
#: data.cache_format values (see :mod:`llm4brain.data._packed` for masked16).
CACHE_FORMATS = ("dense32", "masked16")
_KEY_FIELDS = ("source", "space", "desc", "onset_offset", "block_trs", "lag_s", "confounds",
               "high_pass", "stimuli_map")


class TrialBlocks:
    """What every trial cache answers from its ``blocks`` (n_trials, T, X, Y, Z)."""

    @property
    def block_shape(self) -> tuple:
        return tuple(self.blocks.shape[1:])

    @property
    def n_trials(self) -> int:
        return int(self.blocks.shape[0])


@dataclass
class TrialCache(TrialBlocks):
    """Memory-mapped trial blocks and their metadata.

    Attributes
    ----------
    blocks : memmap float32 (n_trials, T, X, Y, Z), or PackedBlocks (``masked16``: read as such)
        z-scored BOLD of each trial, cropped to the union brain mask's bounding box.
    trials : DataFrame
        subject, run, trial (index within run), onset, class_id (0-based), class_name,
        stim_file, clip_id, vol_index (row of the first volume in ``volumes``).
    volumes : memmap float32 (n_volumes, X, Y, Z) or None
        every preprocessed volume (for masked brain modelling on all volumes).
    volume_table : DataFrame (subject, run, volume)
    mask : bool (X, Y, Z) union brain mask on the cropped grid
    affine : (4, 4) affine of the cropped grid
    path : cache directory
    meta : settings and sources that made the cache
    """

    blocks: np.ndarray
    trials: pd.DataFrame
    volumes: np.ndarray | None
    volume_table: pd.DataFrame
    mask: np.ndarray
    affine: np.ndarray
    path: Path
    meta: dict

    def trial_vectors(self, idx=None) -> np.ndarray:
        """Blocks flattened to mask voxels: (n, T * n_mask_voxels) float32."""
        idx = np.arange(self.n_trials) if idx is None else np.asarray(idx)
        if isinstance(self.blocks, PackedBlocks):              # stored as mask voxels already
            return self.blocks.vectors(idx)
        b = np.asarray(self.blocks[np.sort(idx)] if len(idx) else self.blocks[:0])
        out = b[:, :, self.mask].reshape(len(idx), -1)
        order = np.argsort(np.argsort(idx))
        return out[order]


def cache_key(cfg, runs: list[RunFiles]) -> str:
    d = {k: getattr(cfg.data, k) for k in _KEY_FIELDS}
    if cfg.data.cache_format != "dense32":          # (dense32 caches keep their old keys)
        d["cache_format"] = cfg.data.cache_format
    if cfg.data.response != "block":                # (block caches keep their old keys)
        d["response"] = cfg.data.response
    d["root"] = str(cfg.data_root)
    d["version"] = _CACHE_VERSION
    d["trs"] = sorted({round(float(r.tr), 6) for r in runs})   # a TR from a new sidecar rebuilds
    d["volume_t0"] = sorted({round(r.t0_s, 6) for r in runs})  # so does a new slice timing
    d["files"] = [(str(r.bold), os.path.getsize(r.bold), int(os.path.getmtime(r.bold)),
                   str(r.events), int(os.path.getmtime(r.events))) for r in runs]
    return config_hash(d)


def _open(path: Path, meta: dict) -> TrialCache:
    shp = tuple(meta["block_shape"])
    n = meta["n_trials"]
    trials = pd.read_csv(path / "trials.tsv", sep="\t", dtype={"subject": str},
                         keep_default_na=False)
    vt = pd.read_csv(path / "volumes.tsv", sep="\t", dtype={"subject": str})
    mask = np.load(path / "mask.npy")
    if meta.get("format", "dense32") == "masked16":
        n_vox = int(mask.sum())
        parts = [np.memmap(path / p["file"], dtype=np.float16, mode="r",
                           shape=(p["n_volumes"], n_vox)) for p in meta["parts"]]
        vols = PackedVolumes(parts, mask)
        blocks = PackedBlocks(vols, trials["vol_index"].to_numpy(), shp[0])
    else:
        blocks = np.memmap(path / "blocks.f32", dtype=np.float32, mode="r", shape=(n,) + shp)
        vols = None
        if meta.get("n_volumes"):
            vols = np.memmap(path / "volumes.f32", dtype=np.float32, mode="r",
                             shape=(meta["n_volumes"],) + shp[1:])
    return TrialCache(blocks, trials, vols, vt, mask, np.load(path / "affine.npy"), path, meta)


def load_trial_cache(cfg) -> TrialCache:
    """Open the trial cache of ``cfg`` (building it first when missing or stale)."""
    return build_trial_cache(cfg, progress=False)


def build_trial_cache(cfg, subjects=None, *, keep_volumes: bool = True, rebuild: bool = False,
                      progress: bool = True, check_stimuli: bool = True) -> TrialCache:
    """Build (or reuse) the memory-mapped trial cache of a dataset.

    Parameters
    ----------
    cfg : Config
        ``cfg.data`` settings; ``cfg.data_root`` the BIDS root; the cache goes to
        ``cfg.run_dir/cache/trials-<key>`` where ``<key>`` hashes the settings and the source
        files (size, mtime), so a changed setting or file builds a new cache.
    subjects : list of str, optional
        Restrict to these subject labels.
    keep_volumes : bool
        Also store every preprocessed volume (used by masked brain modelling).
    rebuild : bool
        Rebuild even when a complete cache exists.
    """
    t0 = time.time()
    if cfg.data.cache_format not in CACHE_FORMATS:
        raise DataError(f"data.cache_format = {cfg.data.cache_format!r} is not one of "
                        f"{', '.join(CACHE_FORMATS)} (set it in the profile)")
    if cfg.data.cache_workers < 0:
        raise DataError(f"data.cache_workers must be >= 0 (0: one per CPU core), got "
                        f"{cfg.data.cache_workers}")
    runs = discover_runs(cfg.data_root, cfg.data)
    if subjects is not None:
        subjects = [str(s) for s in subjects]
        runs = [r for r in runs if r.subject in subjects]
        if not runs:
            raise DataError(f"none of subjects {subjects} found under {cfg.data_root}")
    check_same_tr(runs)
    key = cache_key(cfg, runs) + ("-v" if keep_volumes else "")
    path = cfg.run_dir / "cache" / f"trials-{key}"
    if (path / "meta.json").is_file() and not rebuild:
        return _open(path, json.loads((path / "meta.json").read_text()))
    _say(f"trial blocks: {cfg.data.block_trs} volume(s) from the first acquired at or after "
         f"onset + {cfg.data.lag_s:g} s; {timing_note(runs)}")
    tmp = fresh_build_dir(path)
    try:
        return _build_into(tmp, path, cfg, runs, key, keep_volumes, progress, check_stimuli, t0)
    except BaseException as exc:
        written = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()) if tmp.exists() else 0
        shutil.rmtree(tmp, ignore_errors=True)   # a half-written cache is never kept
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
            raise OSError(errno.ENOSPC, f"no space left on the device while writing the trial "
                          f"cache {path} ({written / 1e9:.2f} GB written, {free / 1e9:.2f} GB "
                          f"free now). The partial cache was deleted; free space there or move "
                          f"the run directory (LLM4BRAIN_HOME, or run.dir in the profile) to a "
                          f"larger disk, then run again") from exc
        raise


def _build_into(tmp: Path, path: Path, cfg, runs, key: str, keep_volumes: bool, progress: bool,
                check_stimuli: bool, t0: float) -> TrialCache:
    """Pass 1 (grids, masks, events) and pass 2 (read, clean, cut) of
    :func:`build_trial_cache`, written into ``tmp`` and renamed to ``path`` when complete."""
    # ---- pass 1: grids, masks, events (headers and TSVs; raw data without masks: all runs)
    ref_aff, ref_shape = None, None
    events, n_vols_of = {}, {}
    stim_root = cfg.data_root / "stimuli"
    for rf in runs:
        img = _load_nifti(rf.bold, "BOLD file")
        shape = img.shape
        if len(shape) != 4:
            raise DataError(f"BOLD file {rf.bold} must be 4-D (X, Y, Z, time), has shape {shape}")
        if ref_shape is None:
            ref_shape, ref_aff = shape[:3], img.affine
        else:
            msg = grid_mismatch(rf.bold, shape, img.affine, runs[0].bold, ref_shape, ref_aff)
            if msg:
                raise DataError(msg)
        n_vols_of[rf] = shape[3]
        ev = read_run_events(rf, shape[3], cfg.data)
        if check_stimuli:
            for i, sf in enumerate(ev["stim_file"]):
                if not (stim_root / sf).is_file():
                    raise DataError(f"{rf.events} row {i + 2}: stim file {stim_root / sf} not found. "
                                    f"Put the clips under <root>/stimuli/ or fix the stim_file "
                                    f"column")
        events[rf] = ev
    masks, mask_notes, mask_src = {}, {}, {}
    for sub in dict.fromkeys(r.subject for r in runs):
        masks[sub], mask_notes[sub], mask_src[sub] = _subject_mask(
            sub, [r for r in runs if r.subject == sub], ref_shape, ref_aff)
    union = np.zeros(ref_shape, bool)
    for m in masks.values():
        union |= m
    if not union.any():
        raise DataError("the brain masks are empty")
    nz = np.argwhere(union)
    lo, hi = nz.min(0), nz.max(0) + 1
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    cmask = union[crop]
    caff = ref_aff.copy()
    caff[:3, 3] = ref_aff[:3, :3] @ lo + ref_aff[:3, 3]
    T = cfg.data.block_trs
    bshape = (T,) + cmask.shape
    n_trials = sum(len(e) for e in events.values())
    n_vols_total = sum(n_vols_of.values()) if keep_volumes else 0
    # ---- pass 2: read, clean, cut
    if cfg.data.cache_format == "masked16":
        rows, vrows, parts = _pack_subjects(cfg, runs, events, union, masks, mask_src, ref_aff,
                                            tmp, progress)
        n_vols_total = sum(p["n_volumes"] for p in parts)
    else:
        rows, vrows = _dense_pass(cfg, runs, events, union, masks, mask_src, ref_aff, cmask,
                                  tmp, keep_volumes, progress)
        parts = []
    trials = pd.DataFrame(rows).drop(columns="_first")
    # class ids: HAD's trial_type is the class number (1..C); otherwise factorise names
    if trials["trial_type"].notna().all() and (trials["trial_type"] % 1 == 0).all():
        codes = trials.groupby("class_name")["trial_type"].first().sort_values()
        id_of = {n: i for i, n in enumerate(codes.index)}
    else:
        id_of = {n: i for i, n in enumerate(sorted(trials["class_name"].unique()))}
    trials.insert(4, "class_id", trials["class_name"].map(id_of).astype(int))
    trials.to_csv(tmp / "trials.tsv", sep="\t", index=False)
    pd.DataFrame(vrows, columns=["subject", "run", "volume"]).to_csv(
        tmp / "volumes.tsv", sep="\t", index=False)
    np.save(tmp / "mask.npy", cmask)
    np.save(tmp / "affine.npy", caff)
    meta = dict(version=_CACHE_VERSION, key=key, n_trials=n_trials, n_volumes=n_vols_total,
                format=cfg.data.cache_format, parts=parts,
                block_shape=list(bshape), crop=[[int(a), int(b)] for a, b in zip(lo, hi)],
                full_shape=list(map(int, ref_shape)), data=asdict(cfg.data),
                root=str(cfg.data_root), subjects=sorted(masks), n_runs=len(runs),
                n_mask_voxels=int(cmask.sum()), tr=float(runs[0].tr),
                tr_sources=sorted({r.tr_source for r in runs}),
                volume_t0={f"{r.subject}:{r.run}": r.t0_s for r in runs},
                timing_sources=sorted({r.timing_source or "default" for r in runs}),
                subject_mask_voxels={s: int(m.sum()) for s, m in masks.items()},
                mask_notes=mask_notes, build_seconds=round(time.time() - t0, 2),
                classes=[n for n, _ in sorted(id_of.items(), key=lambda x: x[1])])
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    tmp.rename(path)
    return _open(path, meta)


def _dense_pass(cfg, runs, events, union, masks, mask_src, ref_aff, cmask, tmp: Path,
                keep_volumes: bool, progress: bool):
    """The dense float32 format: ``blocks.f32`` (and ``volumes.f32``) on the bounding box."""
    T = cfg.data.block_trs
    # sequential writes (not a writable memmap): dirty pages of a mapping count as resident
    # memory, plain writes go through the page cache
    rows, vrows, v = [], [], 0
    with open(tmp / "blocks.f32", "wb") as bfile, \
            (open(tmp / "volumes.f32", "wb") if keep_volumes else contextlib.nullcontext()) as vfile:
        it = tqdm(runs, desc="trial cache", disable=not progress)
        for rf in it:
            it.set_postfix_str(f"sub-{rf.subject} run-{rf.run}")
            Y = _clean_run(rf, union, masks[rf.subject], mask_src[rf.subject], cfg.data, ref_aff)
            ev = events[rf]
            maps = None
            if cfg.data.response == "beta":        # each trial's beta map on the cropped grid
                maps = np.zeros((len(ev),) + cmask.shape, np.float32)
                maps[:, cmask] = single_trial_betas(
                    Y, trial_design(ev["onset"], ev["duration"], len(Y), rf.tr, rf.t0_s))
            vol = np.zeros((Y.shape[0],) + cmask.shape, np.float32)
            vol[:, cmask] = Y
            del Y
            if keep_volumes:
                vfile.write(vol.tobytes())
                vrows += [dict(subject=rf.subject, run=rf.run, volume=i) for i in range(len(vol))]
            run_rows = _trial_rows(rf, ev, cfg.data, v if keep_volumes else None)
            for j, r in enumerate(run_rows):             # (a map in each of the T volumes)
                block = (vol[r["_first"]:r["_first"] + T] if maps is None
                         else np.broadcast_to(maps[j], (T,) + cmask.shape))
                bfile.write(np.ascontiguousarray(block).tobytes())
            rows += run_rows
            v += len(vol)
    return rows, vrows


def _pack_subject(sub: str, sub_runs: list, events: dict, union, sub_mask, mask_source: str,
                  data_cfg, ref_aff, out_file: str):
    """Worker: every run of one subject as float16 mask voxels into ``out_file``; returns the
    subject's trial rows (``vol_index`` counted from its first volume), volume rows and count."""
    rows, vrows, v = [], [], 0
    with open(out_file, "wb") as f:
        for rf in sub_runs:
            Y = _clean_run(rf, union, sub_mask, mask_source, data_cfg, ref_aff)
            f.write(Y.astype(np.float16).tobytes())
            vrows += [dict(subject=rf.subject, run=rf.run, volume=i) for i in range(len(Y))]
            rows += _trial_rows(rf, events[rf], data_cfg, v)
            v += len(Y)
    return rows, vrows, v


def cache_workers(setting: int, n_subjects: int) -> int:
    """Worker processes for building ``n_subjects`` (``data.cache_workers``; 0: one per CPU
    core, at most one per subject)."""
    n = setting if setting > 0 else (os.cpu_count() or 1)
    return max(1, min(n, n_subjects))


def _pack_subjects(cfg, runs, events, union, masks, mask_src, ref_aff, tmp: Path, progress: bool):
    """The masked16 format: one ``volumes-sub-<label>.f16`` per subject, built in parallel."""
    subs = list(dict.fromkeys(r.subject for r in runs))
    jobs = {s: (s, [r for r in runs if r.subject == s], {r: events[r] for r in runs
                                                         if r.subject == s},
                union, masks[s], mask_src[s], cfg.data, ref_aff,
                str(tmp / f"volumes-sub-{s}.f16")) for s in subs}
    n_workers = cache_workers(cfg.data.cache_workers, len(subs))
    _say(f"trial cache: {len(subs)} subject(s) as float16 mask voxels with {n_workers} worker "
         f"process(es)")
    done = {}
    if n_workers == 1:
        for s in tqdm(subs, desc="trial cache", disable=not progress):
            done[s] = _pack_subject(*jobs[s])
    else:
        # fork: the workers only read NIfTI files with numpy/nibabel, and unlike spawn it
        # works from scripts without a ``__main__`` guard and from notebooks alike
        ctx = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(n_workers, mp_context=ctx) as ex:
            futs = {ex.submit(_pack_subject, *jobs[s]): s for s in subs}
            for fut in tqdm(as_completed(futs), total=len(futs), desc="trial cache (subjects)",
                            disable=not progress):
                done[futs[fut]] = fut.result()
    rows, vrows, parts, offset = [], [], [], 0
    for s in subs:                                    # cache order: subjects as discovered
        r_rows, r_vrows, n = done[s]
        for r in r_rows:
            r["vol_index"] += offset
        rows += r_rows
        vrows += r_vrows
        parts.append(dict(file=f"volumes-sub-{s}.f16", subject=s, n_volumes=n))
        offset += n
    return rows, vrows, parts


def iter_run_volumes(cfg, subjects=None, tc: TrialCache | None = None):
    """Yield ``(subject, run, volumes)`` with volumes (n_vols, X, Y, Z) float32, preprocessed.

    Reads the trial cache (built with ``keep_volumes=True``); use it for masked brain
    modelling on all volumes of the training subjects, not only the trial blocks.
    """
    tc = tc or build_trial_cache(cfg, progress=False)
    if tc.volumes is None:
        raise DataError("this trial cache was built without volumes; rebuild with keep_volumes=True")
    vt = tc.volume_table
    subjects = sorted(vt["subject"].unique()) if subjects is None else [str(s) for s in subjects]
    for s in subjects:
        for r in sorted(vt.loc[vt["subject"] == s, "run"].unique()):
            idx = np.flatnonzero(((vt["subject"] == s) & (vt["run"] == r)).to_numpy())
            yield s, int(r), tc.volumes[idx[0]:idx[-1] + 1]
