"""Write ``docs/timings.md`` from the timing logs in ``bench/results/`` (the page is generated).

Usage::

    .venv/bin/python bench/timings_doc.py           # rewrite docs/timings.md
    .venv/bin/python bench/timings_doc.py --check   # exit 1 when docs/timings.md is out of date

Inputs:

* ``bench/results/*time*.log``: GNU ``/usr/bin/time -v`` output of one command (all of it, or
  only its ``Elapsed (wall clock)`` and ``Maximum resident set size`` lines), optionally with
  pytest's summary line (``588 passed, 16 deselected ...``) and ``#`` comment lines;
* ``bench/results/notebook_times_<profile>.md``: per-notebook wall times from papermill's
  metadata, written by ``bench/notebook_times.py``.

The page keeps the **latest** figure per machine and command; older measurements stay in the
git history of the logs (``git log -p bench/results/``).

Which machine a log was measured on: a log may say it itself in comment lines
(``# machine: <key of MACHINES>``, ``# command: make ...``, ``# date: YYYY-MM-DD``, optionally ``# how: ...``); the logs
that do not are described in :data:`LOGS` and :data:`NOTEBOOK_TIMES` below. A log named
nowhere stops the script with an error saying what to add.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "timings.md"

__all__ = ["MACHINES", "LOGS", "NOTEBOOK_TIMES", "parse_time_log", "parse_notebook_times",
           "format_duration", "time_entries", "notebook_entries", "render", "main"]

#: The machines the logs were measured on (all with 2 cores, all running float32).
MACHINES: dict[str, str] = {
    "epyc-avx2": "AMD EPYC, 2 cores, AVX2 only (no AVX-512, no native bfloat16)",
    "xeon-amx": "Intel Xeon with AMX (AVX-512, native bfloat16), 2 cores",
    "cpu-bf16": "2-core x86 CPU with AVX512-BF16 (model not recorded)",
    "xeon-avx512-bf16": "Intel Xeon, 2 cores, AVX-512 with native bfloat16 (AVX512-BF16), no AMX",
}

# None of the committed logs names its CPU or its date. Each entry below says which machine,
# command and day a log comes from, read from the commit that added the log's current content
# (`git log -1 -- bench/results/<log>`) and the README of that commit:
#   make_test_time.log, reproduce_avx2_time.log: 19cc869 (2026-12-07), "AVX2 EPYC"
#   reproduce_default_time.log: c6d05c0 (2026-12-04), fresh clone at f9408d7, "AMX Xeon"
#   smoke_time.log: 0d2a942 (2026-12-02), "4 min 02 s on the AVX2 EPYC"
#   notebook_times_default.md: the same run as reproduce_default_time.log
#   notebook_times_had_dryrun.md: f966046 (2026-12-02), the README's timings were the EPYC's
#   notebook_times_smoke.md: f605e1b (2026-11-21), the CPU with AVX512-BF16 of that week
LOGS: dict[str, dict[str, str]] = {
    "make_test_time.log": dict(machine="epyc-avx2", command="make test", date="2026-12-07",
                               how="fresh clone, venv included"),
    "reproduce_avx2_time.log": dict(machine="epyc-avx2", command="make reproduce",
                                    date="2026-12-07", how="fresh clone, venv included"),
    "reproduce_default_time.log": dict(machine="xeon-amx", command="make reproduce",
                                       date="2026-12-04",
                                       how="fresh clone at f9408d7, venv included, idle"),
    "classroom_time.log": dict(machine="epyc-avx2", command="make classroom", date="2026-12-07",
                               how="fresh clone at d4a1c79 after make test there (.venv present)"),
    "smoke_time.log": dict(machine="epyc-avx2", command="make smoke", date="2026-12-02",
                           how="fresh clone of 11969fe, after make test there"),
}

#: The per-notebook tables: machine, the command whose run they time, and a note.
NOTEBOOK_TIMES: dict[str, dict[str, str]] = {
    "notebook_times_default.md": dict(machine="xeon-amx", command="make reproduce",
                                      note="the run of reproduce_default_time.log"),
    "notebook_times_default_xeon-avx512-bf16.md": dict(
        machine="xeon-avx512-bf16", command="make reproduce",
        note="the run of reproduce_xeon_avx512_time.log"),
    "notebook_times_classroom_xeon-avx512-bf16.md": dict(
        machine="xeon-avx512-bf16", command="make classroom",
        note="the run of classroom_xeon_avx512_time.log"),
    "notebook_times_classroom.md": dict(machine="epyc-avx2", command="make classroom",
                                        note="the run of classroom_time.log"),
    "notebook_times_had_dryrun.md": dict(machine="epyc-avx2", command="make had-dryrun",
                                         note="the machine shared with two other jobs (load "
                                              "5-10 on its 2 cores): upper bounds"),
    "notebook_times_smoke.md": dict(machine="cpu-bf16", command="make smoke",
                                    note="notebooks 00-06 only (07 and 08 did not exist yet)"),
}

_WALL = re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\):\s*([0-9:.]+)")
_RSS = re.compile(r"Maximum resident set size \(kbytes\):\s*(\d+)")
_PYTEST = re.compile(r"^(\d+ passed[^\n]*?)(?:, \d+ warnings?)? in [0-9.]+s", re.M)
_HEADER = re.compile(r"^#\s*(machine|command|date|how):\s*(.+?)\s*$", re.M)
_NB_ROW = re.compile(r"^\|\s*(\d\d_[A-Za-z0-9_]+)\s*\|\s*([0-9.]+)\s*\|\s*([0-9.]+)\s*\|", re.M)
_NB_TOTAL = re.compile(r"^\|\s*\*\*total\*\*\s*\|\s*\*\*([0-9.]+)\*\*\s*\|", re.M)
_NB_START = re.compile(r"first start (\d{4}-\d\d-\d\d)")
_NB_PROFILE = re.compile(r"profile `([^`]+)`")


def _seconds(clock: str) -> float:
    """``h:mm:ss`` or ``m:ss.cc`` -> seconds."""
    secs = 0.0
    for part in clock.split(":"):
        secs = secs * 60 + float(part)
    return secs


def format_duration(seconds: float) -> str:
    """``1950.07`` -> ``32 min 30 s`` (rounded to the second; hours when there are any)."""
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h} h {m} min {s} s"
    return f"{m} min {s} s" if m else f"{s} s"


def parse_time_log(path: Path) -> dict:
    """Wall clock (s), peak RSS (kB), pytest's summary and the header fields of one log."""
    text = Path(path).read_text()
    wall, rss = _WALL.search(text), _RSS.search(text)
    if wall is None or rss is None:
        raise ValueError(f"{path}: no 'Elapsed (wall clock)' or 'Maximum resident set size' "
                         f"line: is it the output of /usr/bin/time -v?")
    tests = _PYTEST.search(text)
    return dict(wall_s=_seconds(wall.group(1)), rss_kb=int(rss.group(1)),
                tests=tests.group(1) if tests else "",
                header=dict(_HEADER.findall(text)))


def parse_notebook_times(path: Path) -> dict:
    """Profile, first start date, ``[(notebook, seconds, minutes)]`` and the total (seconds:
    the table's own total row, else the sum of its rows) of a notebook table."""
    text = Path(path).read_text()
    rows = [(name, float(s), float(m)) for name, s, m in _NB_ROW.findall(text)]
    if not rows:
        raise ValueError(f"{path}: no notebook rows (| NN_name | seconds | minutes |)")
    start, profile, total = _NB_START.search(text), _NB_PROFILE.search(text), _NB_TOTAL.search(text)
    return dict(rows=rows, date=start.group(1) if start else "", header=dict(_HEADER.findall(text)),
                total_s=float(total.group(1)) if total else sum(r[1] for r in rows),
                profile=profile.group(1) if profile else Path(path).stem[len("notebook_times_"):])


def _describe(name: str, header: dict, table: dict) -> dict:
    info = dict(table.get(name, {}))
    info.update({k: v for k, v in header.items() if v})
    missing = [k for k in ("machine", "command") if not info.get(k)]
    if missing or info["machine"] not in MACHINES:
        raise ValueError(
            f"bench/results/{name}: which machine and command it was measured on is not known "
            f"(missing {missing or ['a machine in MACHINES']}): add '# machine: <one of "
            f"{sorted(MACHINES)}>', '# command: make ...' and '# date: YYYY-MM-DD' lines to the "
            f"log, or an entry to LOGS / NOTEBOOK_TIMES in bench/timings_doc.py")
    return info


def _latest(entries: list[dict], key) -> list[dict]:
    """The latest entry (by date, then file name) of each group ``key(entry)``."""
    best: dict = {}
    for e in sorted(entries, key=lambda e: (e["date"], e["file"])):
        best[key(e)] = e
    return sorted(best.values(), key=lambda e: (e["command"], e["machine"]))


def time_entries(results: Path = RESULTS) -> list[dict]:
    """The latest GNU time figure per machine and command."""
    entries = []
    for path in sorted(Path(results).glob("*time*.log")):
        parsed = parse_time_log(path)
        info = _describe(path.name, parsed["header"], LOGS)
        entries.append(dict(file=path.name, machine=info["machine"], command=info["command"],
                            date=info.get("date", ""), how=info.get("how", ""),
                            wall_s=parsed["wall_s"], rss_kb=parsed["rss_kb"],
                            tests=parsed["tests"]))
    return _latest(entries, lambda e: (e["machine"], e["command"]))


def notebook_entries(results: Path = RESULTS) -> list[dict]:
    """The latest per-notebook table per machine, command and profile."""
    entries = []
    for path in sorted(Path(results).glob("notebook_times_*.md")):
        parsed = parse_notebook_times(path)
        info = _describe(path.name, parsed["header"], NOTEBOOK_TIMES)
        entries.append(dict(file=path.name, machine=info["machine"], command=info["command"],
                            note=info.get("note", ""), date=parsed["date"],
                            profile=parsed["profile"], rows=parsed["rows"],
                            total_s=parsed["total_s"]))
    return _latest(entries, lambda e: (e["machine"], e["command"], e["profile"]))


def _gib(kb: int) -> str:
    return f"{kb / 1024 ** 2:.2f} GiB"


def render(results: Path = RESULTS) -> str:
    """The text of ``docs/timings.md``."""
    times, notebooks = time_entries(results), notebook_entries(results)
    used = sorted({e["machine"] for e in times + notebooks})
    out = [
        "# Timings",
        "",
        "<!-- Generated by bench/timings_doc.py from bench/results/*time*.log and "
        "bench/results/notebook_times_*.md: edit those, then run "
        "`.venv/bin/python bench/timings_doc.py`. -->",
        "",
        "The latest measurement of each command on each machine. Older measurements are in the "
        "git history of the logs (`git log -p bench/results/`). Every run is float32 (a CPU "
        "run uses bfloat16 only when asked to, [engineering.md](engineering.md)), except those "
        "of `cpu-bf16`, made when `auto` still chose bfloat16 autocast on CPUs with native "
        "bfloat16.",
        "",
        "## Machines",
        "",
        "| machine | CPU |",
        "|---|---|",
    ]
    out += [f"| `{m}` | {MACHINES[m]} |" for m in used]
    out += [
        "",
        "## Commands",
        "",
        "Wall clock and peak resident memory from GNU `/usr/bin/time -v`.",
        "",
        "| command | machine | date | wall clock | peak RSS | how | tests | log |",
        "|---|---|---|---:|---:|---|---|---|",
    ]
    for e in times:
        out.append(f"| `{e['command']}` | `{e['machine']}` | {e['date']} | "
                   f"{format_duration(e['wall_s'])} | {_gib(e['rss_kb'])} | {e['how']} | "
                   f"{e['tests']} | [{e['file']}](../bench/results/{e['file']}) |")
    out += [
        "",
        "## Notebooks",
        "",
        "Per-notebook wall times from papermill's metadata (`bench/notebook_times.py PROFILE` "
        "after the run).",
    ]
    for e in notebooks:
        total = e["total_s"]
        out += [
            "",
            f"### `{e['command']}`, profile `{e['profile']}`, `{e['machine']}` "
            f"({e['date'] or 'date not recorded'})",
            "",
            f"{e['note'][:1].upper() + e['note'][1:]}; "
            f"[{e['file']}](../bench/results/{e['file']}).",
            "",
            "| notebook | seconds | minutes |",
            "|---|---:|---:|",
        ]
        out += [f"| {name} | {s:.0f} | {m:.1f} |" for name, s, m in e["rows"]]
        out.append(f"| **total** | **{total:.0f}** | **{total / 60:.1f}** |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if docs/timings.md differs from what would be written")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is out of date: run .venv/bin/python bench/timings_doc.py",
                  file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
