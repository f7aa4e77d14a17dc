"""Which commit and configuration made each figure and table: ``<figures_dir>/PROVENANCE.tsv``.

After a notebook runs, ``make`` calls ``python -m llm4brain.provenance`` with the notebook's
name and a marker file touched before it started; every file of the profile's figures
directory written since then gets one row (the newest write wins):

``file, sha256, notebook, profile, config_hash, git_revision, written_utc``

``config_hash`` is :func:`llm4brain.config.config_hash` of the resolved profile (the config
saved in the run directory has the same settings); ``git_revision`` ends in ``-dirty`` when the
checkout had uncommitted changes. :func:`check` tells whether a file is still the one
recorded.

>>> record("runs/default/notebooks/03.started", cfg, "03_stage1_alignment")  # doctest: +SKIP
"""
from __future__ import annotations

import argparse
import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

__all__ = ["PROVENANCE_FILE", "COLUMNS", "record", "read_provenance", "check", "main"]

PROVENANCE_FILE = "PROVENANCE.tsv"
COLUMNS = ("file", "sha256", "notebook", "profile", "config_hash", "git_revision", "written_utc")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_provenance(figures_dir: str | os.PathLike) -> pd.DataFrame:
    """The provenance table of a figures directory (empty when there is none)."""
    p = Path(figures_dir) / PROVENANCE_FILE
    if not p.is_file():
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False)


def record(since: str | os.PathLike | float, cfg, notebook: str) -> pd.DataFrame:
    """Add a row for every file of ``cfg.figures_dir`` modified after ``since``.

    Parameters
    ----------
    since : path of a marker file (its modification time) or a POSIX timestamp
    cfg : Config of the run
    notebook : name of what wrote the files (e.g. ``03_stage1_alignment``)

    Returns
    -------
    DataFrame : the rows added or replaced.
    """
    from .config import config_hash, git_revision, to_dict

    t0 = os.stat(since).st_mtime if isinstance(since, (str, os.PathLike)) else float(since)
    d = Path(cfg.figures_dir)
    d.mkdir(parents=True, exist_ok=True)
    rev, chash = git_revision(), config_hash(to_dict(cfg))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    new = [dict(file=p.relative_to(d).as_posix(), sha256=_sha256(p), notebook=notebook,
                profile=cfg.profile, config_hash=chash, git_revision=rev, written_utc=now)
           for p in sorted(d.rglob("*")) if p.is_file() and p.name != PROVENANCE_FILE
           and p.stat().st_mtime >= t0 - 1e-3]
    old = read_provenance(d)
    rows = pd.DataFrame(new, columns=list(COLUMNS))
    table = pd.concat([old[~old["file"].isin(rows["file"])], rows], ignore_index=True)
    table = table.sort_values("file").reset_index(drop=True)
    tmp = d / (PROVENANCE_FILE + ".tmp")
    table.to_csv(tmp, sep="\t", index=False)
    os.replace(tmp, d / PROVENANCE_FILE)
    return rows


def check(figures_dir: str | os.PathLike) -> pd.DataFrame:
    """Rows whose file is missing or no longer has the recorded checksum (column ``status``:
    ``ok``, ``changed``, ``missing``)."""
    d = Path(figures_dir)
    t = read_provenance(d).copy()
    t["status"] = [("missing" if not (d / f).is_file() else
                    "ok" if _sha256(d / f) == s else "changed")
                   for f, s in zip(t["file"], t["sha256"])]
    return t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llm4brain.provenance",
                                 description="record which commit and config wrote figures")
    ap.add_argument("--profile", required=True)
    ap.add_argument("--since", required=True, help="marker file touched before the notebook ran")
    ap.add_argument("--notebook", required=True)
    a = ap.parse_args(argv)
    from .config import load_config

    rows = record(a.since, load_config(a.profile), a.notebook)
    print(f">> provenance: {len(rows)} file(s) of {a.notebook} recorded")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
