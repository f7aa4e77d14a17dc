"""Frames of the stimulus clips sampled with decord, cached as a uint8 memory map.

Every clip is checked while it is decoded (:func:`llm4brain.data.read_frames`): undecodable,
truncated (fewer frames than its container declares) or shorter than its events' duration.
Bad clips are never dropped silently: by default the build stops with the list of all of
them; ``on_bad="skip"`` leaves them out, reports the count and keeps the list in
``FrameCache.bad`` (:meth:`FrameCache.keep_trials` then drops their trials with a count).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..config import config_hash
from ._bids import DataError, _say, fresh_build_dir
from ._video_io import read_frames

__all__ = ["FrameCache", "build_frame_cache"]

_BAD_COLUMNS = ["stim_file", "path", "reason"]


@dataclass
class FrameCache:
    """frames : memmap uint8 (n_clips, n_frames, size, size, 3); index : DataFrame (stim_file,
    path) in the same order; ``row(stim_file)`` gives a clip's row; ``bad`` : DataFrame
    (stim_file, path, reason) of the clips left out (``on_bad="skip"``; empty otherwise)."""

    frames: np.ndarray
    index: pd.DataFrame
    path: Path
    bad: pd.DataFrame | None = None

    def row(self, stim_file: str) -> int:
        try:
            return int(self._rows[stim_file])
        except KeyError:
            if stim_file in self._bad:
                raise KeyError(f"clip {stim_file} was left out of the frame cache {self.path}: "
                               f"{self._bad[stim_file]}. Drop its trials "
                               f"(FrameCache.keep_trials) or fix the file") from None
            raise

    def keep_trials(self, trials: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``trials`` whose clip has frames; the number dropped (trials and clips)
        is reported, never silent."""
        ok = trials["stim_file"].isin(self._rows)
        if not ok.all():
            clips = trials.loc[~ok, "stim_file"].unique()
            _say(f"{int((~ok).sum())} of {len(trials)} trial(s) dropped: their {len(clips)} "
                 f"clip(s) have no frames in {self.path} (e.g. {clips[0]}; see FrameCache.bad)",
                 warn=True)
        return trials[ok]

    def __post_init__(self):
        self._rows = {s: i for i, s in enumerate(self.index["stim_file"])}
        if self.bad is None:
            self.bad = pd.DataFrame(columns=_BAD_COLUMNS)
        self._bad = dict(zip(self.bad["stim_file"], self.bad["reason"]))


def _resolve(cfg, stim_files) -> pd.DataFrame:
    if isinstance(stim_files, pd.DataFrame):
        cols = ["stim_file"] + [c for c in ("path", "duration") if c in stim_files]
        df = stim_files[cols].copy()
    else:
        df = pd.DataFrame(dict(stim_file=list(stim_files)))
    if "path" not in df:
        df["path"] = [str(cfg.data_root / "stimuli" / s) for s in df["stim_file"]]
    return df.reset_index(drop=True)


def _bad_message(bad: pd.DataFrame, n: int, listing: Path) -> str:
    lines = "\n".join(f"  - {r.reason}" for r in bad.head(20).itertuples())
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    return (f"{len(bad)} of {n} stimulus clip(s) cannot be used (full list: {listing}):\n"
            f"{lines}{more}\nFix: re-download or restore those files (HAD lists known-bad "
            f"clips in validation/support_files/invalid_videos.csv), list them in "
            f"data.invalid_videos to drop their trials, or build the cache with "
            f"build_frame_cache(..., on_bad='skip') to leave them out; their trials are then "
            f"dropped with FrameCache.keep_trials(trials), with a count")


def build_frame_cache(cfg, stim_files, *, n_frames: int | None = None, size: int | None = None,
                      rebuild: bool = False, progress: bool = True,
                      durations: dict | None = None, on_bad: str = "raise") -> FrameCache:
    """Decode ``n_frames`` frames (uniformly spaced, resized to ``size``) of every clip.

    Parameters
    ----------
    cfg : Config (``data.n_frames``, ``data.frame_size`` are the defaults)
    stim_files : list of stim_file strings (relative to ``<root>/stimuli``) or a stimulus table
        with ``stim_file`` and ``path`` columns (:func:`load_stimuli`); a ``duration`` column
        (seconds, from the events) is the minimum each clip must last.
    durations : dict, optional
        ``{stim_file: seconds}``, the same check (overrides the ``duration`` column).
    on_bad : str
        ``"raise"`` (default): decode every clip, then raise DataError listing all bad clips
        (undecodable, truncated, shorter than their duration) and write the list to
        ``run_dir/cache/bad_clips-<key>.tsv``. ``"skip"``: leave them out of the cache (a
        separate cache), report how many and list them in ``FrameCache.bad``.
    Returns
    -------
    FrameCache under ``run_dir/cache/frames-<key>``; the key hashes the clip list, their sizes
    and mtimes, ``n_frames`` and ``size`` (and ``on_bad`` when ``"skip"``).
    """
    if on_bad not in ("raise", "skip"):
        raise ValueError(f"build_frame_cache: on_bad must be 'raise' or 'skip', got {on_bad!r}")
    n_frames = n_frames or cfg.data.n_frames
    size = size or cfg.data.frame_size
    df = _resolve(cfg, stim_files)
    for p in df["path"]:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"stim file {p} not found: check data.root and the stim_file "
                                    f"column of the events / descriptions TSV")
    key_d = dict(files=[(p, os.path.getsize(p), int(os.path.getmtime(p))) for p in df["path"]],
                 n=n_frames, size=size)
    if on_bad == "skip":
        key_d["skip_bad"] = True
    key = config_hash(key_d)
    path = cfg.run_dir / "cache" / f"frames-{key}"
    if (path / "meta.json").is_file() and not rebuild:
        meta = json.loads((path / "meta.json").read_text())
        index = pd.read_csv(path / "index.tsv", sep="\t")
        bad = pd.read_csv(path / "bad_clips.tsv", sep="\t") if (path / "bad_clips.tsv").is_file() \
            else None
        shape = (meta.get("n_clips", len(index)), n_frames, size, size, 3)
        mm = np.memmap(path / "frames.u8", dtype=np.uint8, mode="r", shape=shape) if shape[0] \
            else np.zeros(shape, np.uint8)
        return FrameCache(mm, index, path, bad)
    dur = {}
    if "duration" in df:
        dur = {s: float(d) for s, d in zip(df["stim_file"], df["duration"]) if pd.notna(d)}
    dur.update(durations or {})
    tmp = fresh_build_dir(path)
    good, bad = [], []
    # sequential writes of the good clips (their number is known only at the end)
    with open(tmp / "frames.u8", "wb") as f:
        for i, (sf, p) in enumerate(tqdm(list(zip(df["stim_file"], df["path"])),
                                         desc="decode frames", disable=not progress)):
            try:
                fr = read_frames(p, n_frames, size, min_duration=dur.get(sf))
            except (ValueError, RuntimeError, OSError) as exc:
                bad.append(dict(stim_file=sf, path=p, reason=str(exc)))
                continue
            f.write(np.ascontiguousarray(fr, dtype=np.uint8).tobytes())
            good.append(i)
    bad_df = pd.DataFrame(bad, columns=_BAD_COLUMNS)
    if len(bad_df) and on_bad == "raise":
        listing = cfg.run_dir / "cache" / f"bad_clips-{key}.tsv"
        bad_df.to_csv(listing, sep="\t", index=False)
        shutil.rmtree(tmp)
        raise DataError(_bad_message(bad_df, len(df), listing))
    if len(bad_df):
        _say(f"frame cache: {len(bad_df)} of {len(df)} clip(s) left out (on_bad='skip'), e.g. "
             f"{bad_df.reason[0]}. List: {path / 'bad_clips.tsv'}; drop "
             f"their trials with FrameCache.keep_trials(trials)", warn=True)
        bad_df.to_csv(tmp / "bad_clips.tsv", sep="\t", index=False)
    index = df.loc[good, ["stim_file", "path"]].reset_index(drop=True)
    index.to_csv(tmp / "index.tsv", sep="\t", index=False)
    (tmp / "meta.json").write_text(json.dumps(dict(n_clips=len(index), n_frames=n_frames,
                                                   size=size, n_bad=len(bad_df))))
    tmp.rename(path)
    shape = (len(index), n_frames, size, size, 3)
    mm = np.memmap(path / "frames.u8", dtype=np.uint8, mode="r", shape=shape) if len(index) \
        else np.zeros(shape, np.uint8)
    return FrameCache(mm, index, path, bad_df if len(bad_df) else None)
