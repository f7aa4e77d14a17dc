"""The "Time" line of each notebook's first cell, written from the measured notebook tables.

Every notebook's first markdown cell says what it needs and how long it takes. The second part
is not typed by hand: this script reads ``bench/results/notebook_times_<profile>.md`` (written
by ``bench/notebook_times.py`` after a run) for the ``default`` and ``classroom`` profiles and
rewrites the one line of each notebook that starts with ``# <!-- time -->``.

Usage: ``.venv/bin/python bench/notebook_cost.py`` (``--check`` exits 1, naming the notebooks,
when a line differs from what the tables say; ``tests/test_notebook_cost.py`` runs it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timings_doc import MACHINES, NOTEBOOK_TIMES, RESULTS, ROOT, parse_notebook_times  # noqa: E402

__all__ = ["PROFILES", "MARK", "format_seconds", "time_line", "expected_lines", "main"]

#: The profiles whose times each notebook states, in this order.
PROFILES = ("default", "classroom")
#: The start of the generated line (an HTML comment: invisible in the rendered notebook).
MARK = "# <!-- time -->"
NOTEBOOKS = ROOT / "notebooks"
#: Short names of :data:`timings_doc.MACHINES` for a notebook's first cell.
SHORT = {"epyc-avx2": "2-core AMD EPYC, AVX2 only", "xeon-amx": "2-core Intel Xeon with AMX",
         "cpu-bf16": "2-core CPU with bfloat16"}


def format_seconds(s: float) -> str:
    """``42 s`` under two minutes, else ``6.5 min``."""
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _tables(results: Path) -> dict[str, dict]:
    out = {}
    for profile in PROFILES:
        path = results / f"notebook_times_{profile}.md"
        if path.is_file():
            t = parse_notebook_times(path)
            machine = t["header"].get("machine") or NOTEBOOK_TIMES.get(path.name, {}).get("machine")
            if machine not in MACHINES:
                raise SystemExit(f"{path}: no '# machine:' header naming one of {sorted(MACHINES)}")
            out[profile] = dict(rows={r[0]: r[1] for r in t["rows"]}, machine=machine,
                                date=t["header"].get("date", t["date"]))
    return out


def time_line(stem: str, tables: dict[str, dict]) -> str:
    """The generated line of notebook ``stem`` (e.g. ``03_stage1_alignment``)."""
    parts = []
    for profile, t in tables.items():
        if stem in t["rows"]:
            parts.append(f"{format_seconds(t['rows'][stem])} on `{profile}` "
                         f"({SHORT.get(t['machine'], t['machine'])}, {t['date']})")
    if not parts:
        return f"{MARK}**Time:** not measured yet (run `bench/notebook_times.py` after a run)."
    return f"{MARK}**Time:** " + "; ".join(parts) + " (`bench/results/notebook_times_*.md`)."


def expected_lines(notebooks: Path = NOTEBOOKS, results: Path = RESULTS) -> dict[Path, str]:
    """Notebook source -> its generated line; every numbered notebook must carry the mark."""
    tables = _tables(results)
    out = {}
    for nb in sorted(notebooks.glob("[0-9][0-9]_*.py")):
        if not any(l.startswith(MARK) for l in nb.read_text().splitlines()):
            raise SystemExit(f"{nb}: its first markdown cell has no line starting with "
                             f"'{MARK}' (where the measured time goes)")
        out[nb] = time_line(nb.stem, tables)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    a = ap.parse_args(argv)
    stale = []
    for nb, line in expected_lines().items():
        lines = nb.read_text().splitlines(keepends=True)
        new = [line + "\n" if l.startswith(MARK) else l for l in lines]
        if new != lines:
            stale.append(nb.name)
            if not a.check:
                nb.write_text("".join(new))
    if a.check and stale:
        print(f"out of date: {', '.join(stale)}; run .venv/bin/python bench/notebook_cost.py")
        return 1
    print(("updated: " + ", ".join(stale)) if stale else "every notebook's time line is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
