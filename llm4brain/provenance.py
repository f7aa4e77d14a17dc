"""Which commit and configuration made each figure and table: ``<figures_dir>/PROVENANCE.tsv``.

After a notebook runs, ``make`` calls ``python -m llm4brain.provenance`` with the notebook's
name and a marker file touched before it started; every file of the profile's figures
directory written since then gets one row (the newest write wins):

``file, sha256, notebook, profile, config_hash, git_revision, written_utc``

``config_hash`` is :func:`llm4brain.config.config_hash` of the resolved profile (the config
saved in the run directory has the same settings); ``git_revision`` ends in ``-dirty`` when the
checkout had uncommitted changes. :func:`check` tells whether a file is still the one
recorded.

Figures also carry it inside: :func:`llm4brain.plotting.save_figure` writes the git revision,
profile and config hash into each PNG (text chunks ``llm4brain:*``) and PDF (the document's
``Keywords``), so a figure copied out of the run still says what made it.
:func:`describe` gathers both for one file; ``llm4brain provenance FILE`` prints it.

>>> record("runs/default/notebooks/03.started", cfg, "03_stage1_alignment")  # doctest: +SKIP
"""
from __future__ import annotations

from .config import config_hash, git_revision, to_dict
from .config import config_hash, to_dict
from .config import git_revision
from .config import load_config
import argparse
import functools
import hashlib
import os
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

__all__ = ["PROVENANCE_FILE", "COLUMNS", "FIELDS", "record", "read_provenance", "check",
           "stamp", "png_metadata", "pdf_metadata", "read_embedded", "describe", "format_description",
           "main"]

PROVENANCE_FILE = "PROVENANCE.tsv"
COLUMNS = ("file", "sha256", "notebook", "profile", "config_hash", "git_revision", "written_utc")
#: What a figure carries inside it.
FIELDS = ("git_revision", "profile", "config_hash")
_PDF_KEYWORDS = re.compile(rb"/Keywords\s*\(llm4brain ([^)]*)\)")


@functools.lru_cache(maxsize=1)
def _revision() -> str:
    return git_revision()


def stamp(cfg=None) -> dict[str, str]:
    """``{git_revision, profile, config_hash}`` of the checkout and ``cfg`` (profile and hash
    empty without a config). The revision is read once per process."""

    d = dict(git_revision=_revision(), profile="", config_hash="")
    if cfg is not None and hasattr(cfg, "profile"):
        d.update(profile=str(cfg.profile), config_hash=config_hash(to_dict(cfg)))
    return d


def png_metadata(st: dict) -> dict[str, str]:
    """matplotlib ``savefig(metadata=...)`` for a PNG: one text chunk per field."""
    return {"Software": "llm4brain", **{f"llm4brain:{k}": str(st.get(k, "")) for k in FIELDS}}


def pdf_metadata(st: dict) -> dict[str, str]:
    """matplotlib ``savefig(metadata=...)`` for a PDF: the fields in ``Keywords``."""
    kw = " ".join(f"{k}={st.get(k, '') or '-'}" for k in FIELDS)
    return {"Creator": "llm4brain", "Keywords": f"llm4brain {kw}"}


def read_embedded(path: str | os.PathLike) -> dict[str, str]:
    """The provenance fields written inside a PNG or PDF by ``save_figure`` ({} if none)."""
    p = Path(path)
    if p.suffix.lower() == ".png":
        from PIL import Image

        with Image.open(p) as im:
            text = dict(getattr(im, "text", {}) or {})
        return {k: text[f"llm4brain:{k}"] for k in FIELDS if f"llm4brain:{k}" in text}
    if p.suffix.lower() == ".pdf":
        m = _PDF_KEYWORDS.search(p.read_bytes())
        if not m:
            return {}
        pairs = (kv.split("=", 1) for kv in m.group(1).decode("latin-1").split())
        return {k: ("" if v == "-" else v) for k, v in pairs if k in FIELDS}
    return {}


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

    t0 = os.stat(since).st_mtime if isinstance(since, (str, os.PathLike)) else float(since)
    d = Path(cfg.figures_dir)
    d.mkdir(parents=True, exist_ok=True)
    rev, chash = git_revision(), config_hash(to_dict(cfg))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    new = [dict(file=p.relative_to(d).as_posix(), sha256=_sha256(p), notebook=notebook,
                profile=cfg.profile, config_hash=chash, git_revision=rev, written_utc=now)
           for p in sorted(d.rglob("*")) if p.is_file() and p.name != PROVENANCE_FILE
           and not p.name.startswith(".")
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


def describe(path: str | os.PathLike) -> dict:
    """Everything known about what made ``path``: the fields embedded in it (PNG/PDF) and its
    row of the nearest ``PROVENANCE.tsv`` above it, with ``status`` (``ok`` when the file is
    unchanged since it was recorded, ``changed``, or ``not recorded``).

    Raises
    ------
    FileNotFoundError : ``path`` does not exist.
    """
    p = Path(path).resolve()
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    out = dict(file=str(path), embedded=read_embedded(p), recorded=None, status="not recorded")
    for d in p.parents:
        if (d / PROVENANCE_FILE).is_file():
            t = read_provenance(d)
            row = t[t["file"] == p.relative_to(d).as_posix()]
            if len(row):
                rec = row.iloc[-1].to_dict()
                out.update(recorded=dict(rec, table=str(d / PROVENANCE_FILE)),
                           status="ok" if _sha256(p) == rec["sha256"] else "changed")
            break
    return out


def format_description(d: dict) -> str:
    """Human-readable lines of :func:`describe`'s result."""
    lines = [d["file"]]
    emb = d["embedded"]
    if emb:
        lines.append("  embedded: " + ", ".join(f"{k} {emb.get(k) or '-'}" for k in FIELDS))
    elif Path(d["file"]).suffix.lower() in (".png", ".pdf"):
        lines.append("  embedded: none (written before figures carried provenance)")
    r = d["recorded"]
    if r:
        lines.append(f"  recorded in {os.path.relpath(r['table'])}: notebook {r['notebook']}, profile {r['profile']}, "
                     f"config {r['config_hash']}, revision {r['git_revision']}, {r['written_utc']}")
        lines.append(f"  status: {d['status']}" + (" (sha256 matches)" if d["status"] == "ok" else
                     " (the file differs from the one recorded)"))
    else:
        lines.append(f"  recorded: no {PROVENANCE_FILE} row for it")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llm4brain.provenance",
                                 description="record which commit and config wrote figures")
    ap.add_argument("--profile", required=True)
    ap.add_argument("--since", required=True, help="marker file touched before the notebook ran")
    ap.add_argument("--notebook", required=True)
    a = ap.parse_args(argv)

    rows = record(a.since, load_config(a.profile), a.notebook)
    print(f">> provenance: {len(rows)} file(s) of {a.notebook} recorded")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
