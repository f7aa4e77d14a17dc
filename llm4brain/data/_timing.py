"""When a run's volumes were acquired: the slice-timing reference read from its sidecars."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._base import DataError

__all__ = ["volume_reference"]


def _sidecar_fields(bold: Path, root: Path, keys) -> dict:
    """For each of ``keys``: (value, sidecar path) from the most specific sidecar holding it
    (:func:`_sidecar_candidates`, the BIDS inheritance order); absent keys are left out."""
    out = {}
    from ._bids import _sidecar_candidates
    for c in _sidecar_candidates(bold, root):
        if not c.is_file():
            continue
        try:
            d = json.loads(c.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{c} is not valid JSON ({exc}); fix or delete it") from exc
        for k in keys:
            if k not in out and d.get(k) is not None:
                out[k] = (d[k], c)
    return out


def volume_reference(bold: str | Path, root: str | Path, tr: float) -> tuple[float, str]:
    """When, within its TR, a run's volumes were acquired: ``t0`` (s), so that volume ``i``
    is at ``t0 + i * tr`` seconds from the start of the run (events' onsets count from there).

    The one rule every consumer of volume times uses (trial blocks, GLM betas, oracle, lag
    profile), read from the run's sidecars (BIDS inheritance, most specific first):

    1. ``SliceTimingCorrected: true`` with ``StartTime`` (fMRIPrep's derivatives): every slice
       was interpolated to the slice-timing reference, acquired ``StartTime`` s into the volume;
       ``t0 = StartTime``.
    2. ``SliceTimingCorrected: true`` without ``StartTime``: fMRIPrep's default reference,
       the middle of the volume (``t0 = tr / 2``).
    3. raw (not slice-timing corrected) data with ``SliceTiming``: the slices span the TR; the
       volume's time is the mean of its slice times.
    4. none of these: the middle of the volume, ``t0 = tr / 2`` (the documented default).

    Returns
    -------
    (t0, rule) : seconds, and a sentence naming the rule and the sidecar it came from.
    """
    bold, root, tr = Path(bold), Path(root), float(tr)
    f = _sidecar_fields(bold, root, ("SliceTimingCorrected", "StartTime", "SliceTiming"))

    def _num(key):
        v, c = f[key]
        try:
            return float(v), c
        except (TypeError, ValueError):
            raise DataError(f"{c}: {key} {v!r} is not a number (seconds); fix the sidecar") from None

    corrected = f.get("SliceTimingCorrected", (False, None))[0]
    if corrected is True or str(corrected).lower() == "true":
        if "StartTime" in f:
            t0, c = _num("StartTime")
            if not 0 <= t0 < tr:
                raise DataError(f"{c}: StartTime {t0:g} s lies outside the TR [0, {tr:g}) s; "
                                f"fix the sidecar (BIDS StartTime is in seconds)")
            return t0, (f"slice-timing corrected, reference StartTime {t0:g} s "
                        f"({Path(c).name})")
        return 0.5 * tr, (f"slice-timing corrected, no StartTime: the middle of the volume "
                          f"({0.5 * tr:g} s, fMRIPrep's default reference; "
                          f"{Path(f['SliceTimingCorrected'][1]).name})")
    if "SliceTiming" in f:
        v, c = f["SliceTiming"]
        try:
            st = np.asarray(v, np.float64).ravel()
        except (TypeError, ValueError):
            raise DataError(f"{c}: SliceTiming must be a list of seconds, got {v!r}") from None
        if not st.size or not np.isfinite(st).all() or st.min() < 0 or st.max() >= tr:
            raise DataError(f"{c}: SliceTiming must list times in [0, TR {tr:g}) s, got "
                            f"{st.min() if st.size else 'nothing'}..{st.max() if st.size else ''}; "
                            f"fix the sidecar (BIDS uses seconds)")
        t0 = float(st.mean())
        return t0, (f"raw data, mean of its {st.size} SliceTiming entries ({t0:g} s; "
                    f"{Path(c).name})")
    return 0.5 * tr, (f"no slice timing in the sidecars: the middle of the volume "
                      f"({0.5 * tr:g} s, the documented default)")
