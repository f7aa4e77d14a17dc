"""Wall time of every executed notebook of a run, from papermill's own metadata.

Usage: ``.venv/bin/python bench/notebook_times.py [PROFILE]`` (default ``default``) after
``make reproduce`` (or ``make smoke`` with ``smoke``). Reads
``runs/<profile>/notebooks/*.ipynb`` (``metadata.papermill.duration`` and the start/end
times) and writes ``bench/results/notebook_times_<profile>.md``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from llm4brain.config import load_config


def notebook_times(run_dir: Path) -> list[dict]:
    """One dict per executed notebook: name, seconds, start, end (papermill metadata)."""
    rows = []
    for nb in sorted((run_dir / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if nb.name.endswith(".src.ipynb"):
            continue
        meta = json.loads(nb.read_text())["metadata"].get("papermill", {})
        if meta.get("duration") is None:
            raise SystemExit(f"{nb} has no papermill duration: was it executed by make?")
        rows.append(dict(notebook=nb.stem, seconds=float(meta["duration"]),
                         start=meta.get("start_time", ""), end=meta.get("end_time", "")))
    if not rows:
        raise SystemExit(f"no executed notebooks under {run_dir / 'notebooks'}: run make reproduce")
    return rows


def main(profile: str = "default") -> Path:
    cfg = load_config(profile)
    rows = notebook_times(cfg.run_dir)
    total = sum(r["seconds"] for r in rows)
    lines = [f"# Notebook wall times, profile `{profile}`", "",
             f"From papermill metadata of `{cfg.run_dir / 'notebooks'}` "
             f"(first start {rows[0]['start']}).", "",
             "| notebook | seconds | minutes |", "|---|---:|---:|"]
    lines += [f"| {r['notebook']} | {r['seconds']:.0f} | {r['seconds'] / 60:.1f} |" for r in rows]
    lines += [f"| **total** | **{total:.0f}** | **{total / 60:.1f}** |", ""]
    out = Path(__file__).parent / "results" / f"notebook_times_{profile}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    main(*sys.argv[1:2])
