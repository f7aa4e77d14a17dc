"""Shared pieces of the real-data readers: the error type, BIDS entities, run records and
the messages the loader prints."""
from __future__ import annotations

import logging
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DataError", "RunFiles", "fresh_build_dir"]


_RUN_RE = re.compile(r"sub-(?P<sub>[^_/]+)(?:_ses-(?P<ses>[^_/]+))?_task-(?P<task>[^_/]+)"
                     r"(?:_acq-[^_/]+)?(?:_run-(?P<run>\d+))?")


# entities fMRIPrep adds to a raw file name (removed to find the raw run's sidecar)
_DERIV_ENTITIES = re.compile(r"_(?:space|res|den|desc|cohort|from|to|mode|hemi|label)-[^_]+")


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


DEFAULT_T0_FRACTION = 0.5  # of a TR: fMRIPrep's default slice-timing reference


@dataclass(frozen=True)
class RunFiles:
    """The files of one functional run (``tr_source``: the sidecar JSON the TR came from, or
    ``"NIfTI header"``; ``t0``: the acquisition time in seconds of its first volume relative
    to the run's start, so volume ``i`` is at ``t0 + i * tr``, and ``timing_source`` the rule
    that gave it, see :func:`llm4brain.data.volume_reference`). ``t0`` None: the documented
    default, half a TR."""

    subject: str
    session: str
    run: int
    bold: Path
    events: Path
    confounds: Path | None
    mask: Path | None
    tr: float
    tr_source: str = ""
    t0: float | None = None
    timing_source: str = ""

    @property
    def t0_s(self) -> float:
        """Acquisition time (s) of volume 0: ``t0``, or half a TR when no rule gave one."""
        return float(self.t0) if self.t0 is not None else DEFAULT_T0_FRACTION * float(self.tr)


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
