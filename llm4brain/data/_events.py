"""events.tsv files and stimulus maps: onsets (with HAD's lead-in rule), classes, clips."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ._base import DataError, _say

__all__ = ["EVENT_COLUMNS", "HAD_LEAD_IN_S", "read_events", "read_stimuli_map", "onset_offset_for"]


EVENT_COLUMNS = ("onset", "duration", "trial_type", "response", "response_time", "stim_file")


HAD_LEAD_IN_S = 12.0   # HAD's official GLMs add begin_dur = 12 s to every events.tsv onset


_AUTO_TOL_S = 2.0      # onset_offset: auto: "about 0 s" / "about 12 s" means within this


def read_stimuli_map(path: str | Path) -> pd.DataFrame:
    """Read an Urgen-style stimulus mapping TSV: columns ``trial_type``, ``stim_file`` and
    optionally ``class_name`` (one row per video; ``trial_type`` as in the events files)."""

    path = Path(os.path.expandvars(str(path)))
    if not path.is_file():
        raise DataError(f"stimulus mapping file {path} (data.stimuli_map) not found: write a TSV "
                        f"with columns trial_type, stim_file[, class_name] (docs/gpu.md, Urgen)")
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
