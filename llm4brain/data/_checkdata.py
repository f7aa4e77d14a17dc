"""``llm4brain check-data``: everything the trial cache and the frame cache will need, checked
before a long run, as a table of OK / WARN / ERROR rows."""
from __future__ import annotations

from ._cache import read_run_events
from ._runs import timing_note
from ._video_io import declared_video_length, read_frames
import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._bids import (DataError, check_same_tr, discover_runs, grid_mismatch, read_events,
                    read_invalid_videos, resample_target)

__all__ = ["CheckRow", "check_data", "format_check_table"]

_MAX_CLIP_ROWS = 20


@dataclass(frozen=True)
class CheckRow:
    """One line of the check-data table."""

    status: str      # OK | WARN | ERROR
    check: str
    item: str
    detail: str


def _mb(n_bytes: float) -> str:
    if n_bytes >= 2 ** 30:
        return f"{n_bytes / 2 ** 30:.2f} GiB"
    return f"{n_bytes / 2 ** 20:.1f} MiB" if n_bytes >= 2 ** 20 else f"{n_bytes / 2 ** 10:.1f} KiB"


def _free_bytes(d: Path) -> tuple[Path, int]:
    d = Path(d)
    while not d.exists() and d != d.parent:
        d = d.parent
    return d, shutil.disk_usage(d).free


def check_data(root: str | Path, data_cfg, *, cache_dir: str | Path | None = None,
               decode: bool = True, keep_volumes: bool = True) -> list[CheckRow]:
    """Check a HAD-layout dataset against the loader's settings without building anything.

    Rows (one per check, or per subject / run / bad clip): the runs found (``runs``), each
    subject's files (``files``: BOLD, events, confounds and brain masks per run), the TRs
    (``tr``), each run (``run``: volumes, grid, events inside the run and every trial block
    ending before it, the onset offset applied), the voxel grids (``grid``; with
    ``data.resample_to`` the target), the onset offsets (``onset offset``), the trials
    ``data.invalid_videos`` drops (``invalid videos``), every stim file (``stimuli``:
    present, decodable, not truncated, lasting its events' duration; ``decode=False`` checks
    presence and the duration the container declares) and the disk the trial cache will
    take (``disk``: trials x block volumes x voxels of the bounding box of the brain masks x
    4 bytes, plus every volume when ``keep_volumes``) against the free space at
    ``cache_dir``.

    Returns
    -------
    list of CheckRow; any ``ERROR`` row means the run would stop.
    """
    import nibabel as nib


    root = Path(root)
    rows: list[CheckRow] = []
    add = lambda *a: rows.append(CheckRow(*a))  # noqa: E731
    try:
        runs = discover_runs(root, data_cfg, resample=False)
    except DataError as exc:
        add("ERROR", "runs", str(root), str(exc))
        return rows
    subjects = list(dict.fromkeys(r.subject for r in runs))
    src = (f"source {data_cfg.source}" + (f", space {data_cfg.space}"
                                          if data_cfg.source == "fmriprep" else ""))
    add("OK", "runs", str(root), f"{len(subjects)} subject(s), {len(runs)} run(s) ({src})")

    # ---- files per subject
    n_runs = {s: sum(r.subject == s for r in runs) for s in subjects}
    usual = int(np.median(list(n_runs.values())))
    for s in subjects:
        sr = [r for r in runs if r.subject == s]
        status, notes = "OK", []
        if n_runs[s] != usual:
            status = "WARN"
            notes.append(f"{n_runs[s]} run(s) where most subjects have {usual}")
        if data_cfg.source == "fmriprep":
            no_conf = [r.run for r in sr if r.confounds is None]
            no_mask = [r.run for r in sr if r.mask is None]
            if no_conf and data_cfg.confounds:
                status = "WARN"
                notes.append(f"no confounds TSV for run(s) {no_conf} (no confounds regressed)")
            if no_mask:
                status = "WARN"
                notes.append(f"no desc-brain_mask for run(s) {no_mask} (intensity mask used)")
        kinds = "BOLD + events" + (" + confounds + mask" if data_cfg.source == "fmriprep"
                                   and status == "OK" else "")
        add(status, "files", f"sub-{s}",
            f"{len(sr)} run(s) ({', '.join(str(r.run) for r in sr)}): {kinds}"
            + (f"; {'; '.join(notes)}" if notes else ""))

    # ---- TRs
    try:
        check_same_tr(runs)
        srcs = sorted({Path(r.tr_source).name if r.tr_source != "NIfTI header" else r.tr_source
                       for r in runs})
        add("OK", "tr", "all runs", f"{runs[0].tr:g} s ({len(runs)} run(s); from "
                                    f"{', '.join(srcs[:3])}{' ...' if len(srcs) > 3 else ''})")
    except DataError as exc:
        add("ERROR", "tr", "all runs", str(exc))
    add("OK", "timing", "all runs", timing_note(runs))

    # ---- each run: grid, events, onset offset, blocks
    ref, grids, offsets, masks_ok = None, {}, {}, True
    union_bbox, n_trials, n_vols_total, clips = None, 0, 0, {}
    for r in runs:
        item = f"sub-{r.subject} run-{r.run:02d}"
        try:
            img = nib.load(str(r.bold))
            shape = tuple(int(x) for x in img.shape)
        except Exception as exc:  # noqa: BLE001
            add("ERROR", "run", item, f"BOLD file {r.bold} is not a readable NIfTI "
                                      f"({type(exc).__name__}: {exc}); re-download it")
            continue
        if len(shape) != 4:
            add("ERROR", "run", item, f"BOLD file {r.bold} must be 4-D, has shape {shape}")
            continue
        vox = tuple(round(float(z), 3) for z in img.header.get_zooms()[:3])
        grids.setdefault((shape[:3], tuple(np.round(img.affine, 3).ravel())),
                         [r, img.affine, 0])[2] += 1
        if ref is None:
            ref = (r.bold, shape, img.affine)
        n_vols_total += shape[3]
        problems = []
        if r.tr_source == "NIfTI header":
            problems.append(("WARN", f"TR {r.tr:g} s from the NIfTI header of {r.bold.name}: "
                                     f"add RepetitionTime to its sidecar JSON"))
        if r.mask is not None:
            try:
                m = nib.load(str(r.mask))
                if tuple(m.shape[:3]) != shape[:3] or not np.allclose(m.affine, img.affine,
                                                                      atol=1e-3):
                    masks_ok = False
                    problems.append(("ERROR", f"brain mask {r.mask} is not on the grid of its "
                                              f"BOLD: resample it (nilearn.image.resample_to_img("
                                              f"mask_img, bold_img, interpolation='nearest'))"))
                else:
                    nz = np.argwhere(np.asarray(m.dataobj) > 0)
                    if len(nz):
                        lo, hi = nz.min(0)[:3], nz.max(0)[:3] + 1
                        union_bbox = (lo, hi) if union_bbox is None else (
                            np.minimum(union_bbox[0], lo), np.maximum(union_bbox[1], hi))
            except Exception as exc:  # noqa: BLE001
                masks_ok = False
                problems.append(("ERROR", f"brain mask {r.mask} is not a readable NIfTI "
                                          f"({type(exc).__name__}); re-create it"))
        else:
            masks_ok = False
        try:
            ev = read_run_events(r, shape[3], data_cfg)
            off, rule = ev.attrs.get("onset_offset", 0.0), ev.attrs.get("onset_offset_rule", "")
            offsets.setdefault(off, []).append(item)
            n_trials += len(ev)
            for sf, d in zip(ev["stim_file"], ev["duration"]):
                clips[sf] = max(clips.get(sf, 0.0), float(d))
            last = float((ev["onset"] + ev["duration"]).max()) if len(ev) else 0.0
            desc = (f"{shape[3]} vols x TR {r.tr:g} s = {shape[3] * r.tr:g} s, grid "
                    f"{shape[:3]} at {'x'.join(f'{v:g}' for v in vox)} mm; {len(ev)} trial(s), "
                    f"onsets +{off:g} s ({rule}), last event ends at {last:g} s")
        except DataError as exc:
            problems.append(("ERROR", str(exc)))
            desc = f"{shape[3]} vols x TR {r.tr:g} s, grid {shape[:3]}"
            try:       # still check its clips and count its trials
                ev = read_events(r.events, data_cfg.onset_offset,
                                 stimuli_map=data_cfg.stimuli_map or None)
                n_trials += len(ev)
                for sf, d in zip(ev["stim_file"], ev["duration"]):
                    clips[sf] = max(clips.get(sf, 0.0), float(d))
            except DataError:
                pass
        status = ("ERROR" if any(p[0] == "ERROR" for p in problems) else
                  "WARN" if problems else "OK")
        add(status, "run", item, desc + "".join(f"; {p[1]}" for p in problems))

    # ---- grids
    target = None
    if getattr(data_cfg, "resample_to", ""):
        try:
            target = resample_target(data_cfg.resample_to, root)
            add("OK", "grid", "data.resample_to",
                f"{len(grids)} grid(s) in the data, every run resampled onto {target[2]} "
                f"(aligns grids, not anatomy)")
        except DataError as exc:
            add("ERROR", "grid", "data.resample_to", str(exc))
    elif ref is not None:
        bad = [(g[0], grid_mismatch(g[0].bold, k[0], g[1], ref[0], ref[1], ref[2]))
               for k, g in list(grids.items())[1:]]
        if bad:
            for r, msg in bad:
                add("ERROR", "grid", f"sub-{r.subject}", msg)
        else:
            add("OK", "grid", "all runs", f"one grid {ref[1][:3]} for all {len(runs)} run(s)")

    # ---- onset offsets
    setting = data_cfg.onset_offset
    summary = ", ".join(f"+{o:g} s on {len(v)} run(s)" for o, v in sorted(offsets.items()))
    if offsets:
        add("OK", "onset offset", f"data.onset_offset: {setting}", summary)

    # ---- invalid videos
    if getattr(data_cfg, "invalid_videos", ()):
        names = read_invalid_videos(data_cfg.invalid_videos, root)
        plain = discover_runs(root, dataclasses.replace(data_cfg, invalid_videos=()),
                              resample=False)
        per_sub, known = {s: 0 for s in subjects}, set()
        for a, b in zip(plain, runs):
            try:             # (an unreadable events file already has its ERROR row)
                sfs = list(read_events(a.events, 0.0, stimuli_map=data_cfg.stimuli_map or None)
                           ["stim_file"])
                if a.events != b.events:
                    per_sub[a.subject] += len(sfs) - len(read_events(
                        b.events, 0.0, stimuli_map=data_cfg.stimuli_map or None))
            except DataError:
                continue
            for sf in sfs:
                known.update((sf, Path(sf).name, Path(sf).stem))
        dropped = ", ".join(f"sub-{s}: {n}" for s, n in per_sub.items()) or "none"
        unknown = [n for n in names if n not in known]
        add("WARN" if unknown else "OK", "invalid videos", f"{len(names)} name(s)",
            f"trials dropped: {dropped}"
            + (f"; {len(unknown)} name(s) match no clip: {unknown[:5]}"
               f"{' ...' if len(unknown) > 5 else ''} (check the spelling)" if unknown else ""))

    # ---- stimuli
    stim_root = root / "stimuli"
    if not stim_root.is_dir():
        add("ERROR", "stimuli", str(stim_root), f"no stimuli/ folder under {root}: put the "
                                                f"{len(clips)} clip(s) named in the events there")
    elif clips:
        bad = []
        for sf, dur in clips.items():
            p = stim_root / sf
            if not p.is_file():
                bad.append((sf, f"stim file {p} not found: put the clip there or fix the "
                                f"stim_file column"))
                continue
            try:
                if decode:
                    read_frames(p, 1, 32, min_duration=dur)
                else:
                    decl = declared_video_length(p)
                    if decl is not None and np.isfinite(decl[1]) and decl[1] < 0.9 * dur:
                        raise ValueError(f"stim file {p}: its container declares "
                                         f"{decl[1]:.2f} s but its events show it for {dur:g} s")
            except (ValueError, OSError) as exc:
                bad.append((sf, str(exc)))
        how = ("decodable, not truncated, each lasting its events' duration" if decode else
               "present, declared durations cover the events (not decoded: --no-decode)")
        if bad:
            for sf, msg in bad[:_MAX_CLIP_ROWS]:
                add("ERROR", "stimuli", sf, msg)
            if len(bad) > _MAX_CLIP_ROWS:
                add("ERROR", "stimuli", "...", f"{len(bad) - _MAX_CLIP_ROWS} more bad clip(s)")
            add("ERROR", "stimuli", "all clips", f"{len(bad)} of {len(clips)} clip(s) unusable "
                                                 f"(the other {len(clips) - len(bad)}: {how}). Fix or restore them, or "
                                                 f"list them in data.invalid_videos")
        else:
            add("OK", "stimuli", "all clips", f"{len(clips)} clip(s) {how}")

    # ---- disk
    if ref is not None:
        if target is not None:
            n_vox, how = int(np.prod(target[0])), "the data.resample_to grid (upper bound)"
        elif union_bbox is not None and masks_ok:
            n_vox = int(np.prod(union_bbox[1] - union_bbox[0]))
            how = (f"the brain masks' bounding box "
                   f"{tuple(int(x) for x in union_bbox[1] - union_bbox[0])}")
        else:
            n_vox, how = int(np.prod(ref[1][:3])), "the full grid (no usable mask files: upper bound)"
        T = int(data_cfg.block_trs)
        where, free = _free_bytes(Path(cache_dir) if cache_dir else root)
        if getattr(data_cfg, "cache_format", "dense32") == "masked16":
            # every volume once, float16, brain voxels only (the box bounds them from above)
            need = n_vols_total * n_vox * 2
            detail = (f"at most {_mb(need)} (data.cache_format masked16): {n_vols_total} volumes x "
                      f"{n_vox} voxels of {how} x 2 B, fewer by the share of the box outside "
                      f"the brain; {_mb(free)} free at {where}")
        else:
            blocks = n_trials * T * n_vox * 4
            vols = n_vols_total * n_vox * 4 if keep_volumes else 0
            need = blocks + vols
            detail = (f"{_mb(need)}: {n_trials} trial(s) x {T} volume(s) x {n_vox} voxels of {how} "
                      f"x 4 B = {_mb(blocks)}" + (f", plus {n_vols_total} volumes = {_mb(vols)}"
                                                  if keep_volumes else "")
                      + f"; {_mb(free)} free at {where}")
        status = "ERROR" if need > free else "WARN" if need > 0.8 * free else "OK"
        if status != "OK":
            detail += "; free some space or set run.run_dir on a larger disk"
        add(status, "disk", "trial cache", detail)
    return rows


def format_check_table(rows: list[CheckRow]) -> str:
    """The rows as a fixed-width table with a summary line."""
    w_check = max([len("CHECK")] + [len(r.check) for r in rows])
    w_item = max([len("ITEM")] + [len(r.item) for r in rows])
    line = lambda s, c, i, d: f"{s:<6} {c:<{w_check}} {i:<{w_item}} {d}"  # noqa: E731
    out = [line("STATUS", "CHECK", "ITEM", "DETAIL")]
    out += [line(r.status, r.check, r.item, r.detail) for r in rows]
    n = {k: sum(r.status == k for r in rows) for k in ("OK", "WARN", "ERROR")}
    out.append(f"{n['OK']} OK, {n['WARN']} WARN, {n['ERROR']} ERROR")
    return "\n".join(out)
