"""Wall time of every executed notebook of a run, from papermill's own metadata.

Usage: ``.venv/bin/python bench/notebook_times.py [PROFILE]`` (default ``default``) after
``make reproduce`` (or ``make smoke`` with ``smoke``). Reads
``runs/<profile>/notebooks/*.ipynb`` (``metadata.papermill.duration`` and the start/end
times) and writes ``bench/results/notebook_times_<profile>.md`` (``..._<profile>_<machine>.md`` when that
file holds another machine's table: :func:`output_path`).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from llm4brain.config import load_config


def machine_id() -> str:
    """The machine key of ``bench/timings_doc.py`` (MACHINES) that this CPU matches."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(re.findall(r"\b[a-z0-9_]+\b", info.split("flags", 1)[-1].split("\n", 1)[0]))
    if "amx_bf16" in flags:
        return "xeon-amx"
    if "avx512_bf16" in flags and "Intel(R) Xeon" in info:
        return "xeon-avx512-bf16"
    if "avx512_bf16" in flags:
        return "cpu-bf16"
    if "AMD EPYC" in info and "avx2" in flags:
        return "epyc-avx2"
    raise SystemExit("this CPU is none of bench/timings_doc.py's MACHINES: add it there")


def slow_cells(path: Path, at_least_s: float = 20.0) -> list[tuple[float, str]]:
    """(seconds, first line) of the cells of an executed notebook that ran >= ``at_least_s``."""
    out = []
    for c in json.loads(Path(path).read_text())["cells"]:
        d = c.get("metadata", {}).get("papermill", {}).get("duration")
        if d and d >= at_least_s:
            src = "".join(c["source"]).strip().splitlines()
            line = next((l for l in src if not l.startswith(("t0 =", "#"))), src[0] if src else "")
            out.append((float(d), line[:70]))
    return out


def notebook_times(run_dir: Path) -> list[dict]:
    """One dict per executed notebook: name, seconds, start, end (papermill metadata)."""
    rows = []
    for nb in sorted((run_dir / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if nb.name.endswith((".src.ipynb", ".part.ipynb", ".failed.ipynb")):
            continue
        meta = json.loads(nb.read_text())["metadata"].get("papermill", {})
        if meta.get("duration") is None:
            raise SystemExit(f"{nb} has no papermill duration: was it executed by make?")
        rows.append(dict(notebook=nb.stem, seconds=float(meta["duration"]),
                         start=meta.get("start_time", ""), end=meta.get("end_time", ""),
                         cells=slow_cells(nb)))
    if not rows:
        raise SystemExit(f"no executed notebooks under {run_dir / 'notebooks'}: run make reproduce")
    return rows


def output_path(profile: str, machine: str, results: Path | None = None) -> Path:
    """``notebook_times_<profile>.md``, unless that file holds another machine's table: then
    ``notebook_times_<profile>_<machine>.md``, so that one machine's run never replaces
    another's figures (``bench/timings_doc.py`` shows the latest of each machine)."""
    results = Path(results) if results is not None else Path(__file__).parent / "results"
    plain = results / f"notebook_times_{profile}.md"
    if plain.is_file():
        m = re.search(r"^# machine:\s*(\S+)", plain.read_text(), re.M)
        if m and m.group(1) != machine:
            return results / f"notebook_times_{profile}_{machine}.md"
    return plain


def main(profile: str = "default") -> Path:
    cfg = load_config(profile)
    rows = notebook_times(cfg.run_dir)
    total = sum(r["seconds"] for r in rows)
    lines = [f"# Notebook wall times, profile `{profile}`", "",
             f"# machine: {machine_id()}", f"# command: make {'reproduce' if profile == 'default' else profile}",
             f"# date: {rows[0]['start'][:10]}", "",
             f"From papermill metadata of `{cfg.run_dir / 'notebooks'}` "
             f"(first start {rows[0]['start']}).", "",
             "| notebook | seconds | minutes |", "|---|---:|---:|"]
    lines += [f"| {r['notebook']} | {r['seconds']:.0f} | {r['seconds'] / 60:.1f} |" for r in rows]
    lines += [f"| **total** | **{total:.0f}** | **{total / 60:.1f}** |", ""]
    lines += ["Where the seconds go: the cells that ran 20 s or more.", "",
              "| notebook | cell (first line) | seconds |", "|---|---|---:|"]
    lines += [f"| {r['notebook']} | `{line.replace('|', '/')}` | {d:.0f} |"
              for r in rows for d, line in r["cells"]]
    lines += [""]
    out = output_path(profile, machine_id())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    main(*sys.argv[1:2])
