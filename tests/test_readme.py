"""The README and docs/ against the files they quote.

* the README's headline table, number by number, against ``figures/summary.md`` (parsed here on
  its own, not with the package's report code);
* its notebook minutes against ``bench/results/notebook_times_default.md``, its two command
  times against their GNU time logs, every decimal number of its prose against the results
  files (``figures/``, the benchmarks' ``bench/results/``, the experiments'
  ``experiments/results/``);
* its length, the two commands near the top, the number of "N min N s" stamps;
* every relative link (and ``#anchor``) of README.md and docs/*.md;
* every ``make`` target of the Makefile documented in README.md or docs/;
* docs/timings.md is what ``bench/timings_doc.py`` writes now.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SUMMARY = ROOT / "figures" / "summary.md"
NOTEBOOK_TIMES = ROOT / "bench" / "results" / "notebook_times_default.md"

MAX_LINES = 250
MAX_STAMPS = 12
STAMP = re.compile(r"[0-9]+ min [0-9]+ s")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


# ----------------------------------------------------------------------------- helpers
def md_tables(text: str) -> list[dict]:
    """Every pipe table of a Markdown text: ``{"section", "header", "rows"}`` (cells stripped),
    ``section`` the text of the last heading above it."""
    tables, section, cur = [], "", None
    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            cur = None
            continue
        if in_code:
            continue
        if line.startswith("#"):
            section, cur = line.lstrip("#").strip(), None
            continue
        if line.lstrip().startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cur is None:
                cur = dict(section=section, header=cells, rows=[])
                tables.append(cur)
            elif not set("".join(cells)) <= set(":- "):
                cur["rows"].append(cells)
        else:
            cur = None
    return tables


def first_number(cell: str) -> float:
    m = NUMBER.search(cell.replace("**", ""))
    if m is None:
        raise AssertionError(f"no number in cell {cell!r}")
    return float(m.group(0))


def table_in(tables: list[dict], section: str) -> dict:
    found = [t for t in tables if t["section"] == section]
    assert found, f"no table under the heading {section!r}"
    return found[0]


def cell(table: dict, row_key: tuple[str, ...], column: str) -> str:
    assert column in table["header"], f"{column!r} not a column of {table['section']!r}"
    j = table["header"].index(column)
    rows = [r for r in table["rows"] if tuple(r[:len(row_key)]) == row_key]
    assert len(rows) == 1, f"{len(rows)} rows {row_key!r} in {table['section']!r}"
    return rows[0][j]


def strip_code(text: str) -> str:
    """The text without fenced code blocks and inline code spans."""
    text = re.sub(r"^```.*?^```[^\n]*$", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    h = heading.strip().lower().replace("`", "")
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    out, seen = set(), {}
    for line in strip_code_blocks(path.read_text()).splitlines():
        if line.startswith("#"):
            s = slug(line.lstrip("#"))
            n = seen.get(s, 0)
            out.add(s if n == 0 else f"{s}-{n}")
            seen[s] = n + 1
    return out


def strip_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```[^\n]*$", "", text, flags=re.S | re.M)


def timings_doc():
    spec = importlib.util.spec_from_file_location("timings_doc", ROOT / "bench" / "timings_doc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text()


# ----------------------------------------------------------------------------- shape
def test_readme_is_short(readme):
    n = len(readme.splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines (at most {MAX_LINES}): move detail to docs/"


def test_two_commands_in_the_first_60_lines(readme):
    top = "\n".join(readme.splitlines()[:60])
    for cmd in ("make reproduce", "make test"):
        assert re.search(rf"{cmd}(?![\w-])", top), f"{cmd!r} not in README.md's first 60 lines"


def test_few_time_stamps(readme):
    stamps = STAMP.findall(readme)
    assert len(stamps) <= MAX_STAMPS, f"{len(stamps)} 'N min N s' stamps in README.md: {stamps}"


def test_licence_and_citation():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert re.search(r"^license\s*=.*\bMIT\b", (ROOT / "pyproject.toml").read_text(), re.M), \
        "pyproject.toml no longer declares the MIT licence that LICENSE carries"
    cff = (ROOT / "CITATION.cff").read_text()
    assert "cff-version: 1.2.0" in cff and "license: MIT" in cff
    for arxiv in ("2409.17987", "2404.19438"):
        assert arxiv in cff, f"CITATION.cff does not cite arXiv:{arxiv}"


# ----------------------------------------------------------------------------- numbers
_S = "Summary: every metric beside its controls"
_A = "Attribute accuracy: does the text name what was shown?"
_I = "20-way caption identification"
_C = "Clip identification from fMRI (Stage I, notebook 03)"
_CHAIN = "fMRI2Text (Stage I + Stage II with DA)"
_SEM = "semantic read-out (voxel class/scene -> video-LLM)"
_TARGETS = "target subjects, evaluation trials (240)"

#: README row (decoder, metric) -> (section of summary.md, row key, column) for each column.
HEADLINE = {
    (_CHAIN, "BERTScore vs Video2Text"): dict(
        value=(_S, ("BERTScore",), "llm4brain"),
        chance=(_S, ("BERTScore",), "chance (fMRI shuffled)"),
        baseline=(_S, ("BERTScore",), "baseline (ridge + NN)"),
        ceiling=(_S, ("BERTScore",), "noise ceiling")),
    (_CHAIN, "agent named right (%)"): dict(
        value=(_A, ("fMRI2Text, with DA",), "agent"),
        chance=(_A, ("chance: shuffled fMRI",), "agent"),
        baseline=(_A, ("ridge + NN baseline",), "agent"),
        ceiling=(_A, ("noise ceiling (best decoder on noise-free responses)",), "agent")),
    (_CHAIN, "20-way caption identification (%)"): dict(
        value=(_I, ("fMRI2Text, with DA",), "BERTScore vs Video2Text"),
        chance=(_I, ("chance (1/20)",), "BERTScore vs Video2Text"),
        baseline=(_I, ("ridge + NN baseline",), "BERTScore vs Video2Text"),
        ceiling=(_I, ("noise ceiling (best decoder on noise-free responses)",), "BERTScore vs Video2Text")),
    ("semantic read-out", "BERTScore vs Video2Text"): dict(
        value=(_S, ("BERTScore",), _SEM),
        chance=(_S, ("BERTScore",), "semantic read-out, read-outs shuffled"),
        baseline=(_S, ("BERTScore",), "baseline (ridge + NN)"),
        ceiling=(_S, ("BERTScore",), "noise ceiling")),
    ("semantic read-out", "agent named right (%)"): dict(
        value=(_A, (_SEM,), "agent"),
        chance=(_A, ("chance of the semantic read-out: read-outs shuffled",), "agent"),
        baseline=(_A, ("ridge + NN baseline",), "agent"),
        ceiling=(_A, ("noise ceiling (best decoder on noise-free responses)",), "agent")),
    ("semantic read-out", "scene named right (%)"): dict(
        value=(_A, (_SEM,), "scene"),
        chance=(_A, ("chance of the semantic read-out: read-outs shuffled",), "scene"),
        baseline=(_A, ("ridge + NN baseline",), "scene"),
        ceiling=(_A, ("noise ceiling (best decoder on noise-free responses)",), "scene")),
    ("Stage I", "clip identification, top-1 of 20 (%)"): dict(
        value=(_C, ("Stage I (llm4brain)", _TARGETS), "top-1"),
        chance=(_C, ("Stage I (llm4brain)", _TARGETS), "chance top-1 / top-5"),
        baseline=(_C, ("ridge baseline", _TARGETS), "top-1"),
        ceiling=(_C, ("ceiling (true encoding model, measured trial)", _TARGETS), "top-1")),
    ("semantic retrieval", "clip identification, top-1 of 20 (%)"): dict(
        value=(_C, ("semantic retrieval (voxel class/scene read-outs)", _TARGETS), "top-1"),
        chance=(_C, ("semantic retrieval (voxel class/scene read-outs)", _TARGETS),
                "chance top-1 / top-5"),
        baseline=(_C, ("ridge baseline", _TARGETS), "top-1"),
        ceiling=(_C, ("ceiling (true encoding model, measured trial)", _TARGETS), "top-1")),
}
HEADLINE_COLUMNS = ("decoder", "metric", "value", "chance", "baseline", "ceiling")


def headline_table(readme: str) -> dict:
    found = [t for t in md_tables(readme) if tuple(t["header"]) == HEADLINE_COLUMNS]
    assert len(found) == 1, (f"README.md needs exactly one table with the columns "
                             f"{HEADLINE_COLUMNS}, found {len(found)}")
    return found[0]


def test_headline_table_is_at_most_8_rows(readme):
    rows = headline_table(readme)["rows"]
    assert 1 <= len(rows) <= 8, f"{len(rows)} rows in the headline table (at most 8)"
    keys = [tuple(r[:2]) for r in rows]
    unknown = [k for k in keys if k not in HEADLINE]
    assert not unknown, (f"headline rows without a source in figures/summary.md: {unknown}; "
                         f"add them to HEADLINE in tests/test_readme.py")


def test_headline_numbers_are_those_of_summary_md(readme):
    summary = md_tables(SUMMARY.read_text())
    wrong = []
    for row in headline_table(readme)["rows"]:
        src = HEADLINE[tuple(row[:2])]
        for j, col in enumerate(HEADLINE_COLUMNS[2:], start=2):
            section, key, column = src[col]
            expected = first_number(cell(table_in(summary, section), key, column))
            got = first_number(row[j])
            if got != expected:
                wrong.append(f"{row[0]} / {row[1]} / {col}: README {got}, summary.md {expected}")
    assert not wrong, "README headline table differs from figures/summary.md:\n" + "\n".join(wrong)


def test_notebook_minutes_are_those_of_the_timing_file(readme):
    tables = [t for t in md_tables(readme) if t["header"][:3] == ["notebook", "purpose", "min"]]
    assert len(tables) == 1, "README.md needs one table: notebook | purpose | min | reads"
    row = re.compile(r"^\|\s*(\d\d_\w+)\s*\|\s*([0-9.]+)\s*\|\s*([0-9.]+)\s*\|", re.M)
    times = {m.group(1): float(m.group(3)) for m in row.finditer(NOTEBOOK_TIMES.read_text())}
    listed = {}
    for row in tables[0]["rows"]:
        name = re.sub(r"^\[([^\]]+)\].*$", r"\1", row[0])
        listed[name] = first_number(row[2])
    sources = {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py")}
    assert set(listed) == sources, \
        f"notebooks table lists {sorted(listed)}, notebooks/ has {sorted(sources)}"
    wrong = {n: (m, times.get(n)) for n, m in listed.items() if times.get(n) != m}
    assert not wrong, f"README minutes differ from {NOTEBOOK_TIMES.name} (README, file): {wrong}"


def test_command_times_are_those_of_their_logs(readme):
    td = timings_doc()
    logs = ROOT / "bench" / "results"
    quoted = {"make test": "make_test_time.log", "make reproduce": "reproduce_avx2_time.log"}
    top = "\n".join(readme.splitlines()[:60])
    for cmd, log in quoted.items():
        t = td.format_duration(td.parse_time_log(logs / log)["wall_s"])
        assert re.search(rf"`{cmd}`[^.]*?\*\*{t}\*\*", top, re.S), \
            f"README's first 60 lines should give {cmd!r} as **{t}** (bench/results/{log})"
        assert f"bench/results/{log}" in top, f"README does not name bench/results/{log}"
    known = {td.format_duration(td.parse_time_log(p)["wall_s"]) for p in logs.glob("*time*.log")}
    stray = set(STAMP.findall(readme)) - known
    assert not stray, f"README times not in any bench/results/*time*.log: {sorted(stray)}"


#: Where the numbers the prose quotes are: the default run's figures, the benchmarks' results
#: and timing logs, the experiments' results.
RESULTS_DIRS = ("bench/results", "experiments/results")


def _results_text() -> str:
    files = [p for pat in ("figures/*.md", "figures/*.csv",
                           *(f"{d}/**/*.{ext}" for d in RESULTS_DIRS
                             for ext in ("md", "csv", "log", "json")))
             for p in ROOT.glob(pat)]
    return "\n".join(p.read_text(errors="replace") for p in files)


def test_readme_decimals_come_from_results_files(readme):
    prose = strip_code(readme)
    prose = re.sub(r"\]\([^)]*\)", "]", prose)                      # link targets
    prose = re.sub(r"arXiv:\S+", "", prose)                          # identifiers, not results
    corpus = _results_text()
    missing = sorted({n for n in re.findall(r"(?<![\w.])\d+\.\d+(?:e-\d+)?(?![\w.])", prose)
                      if not re.search(rf"(?<![\d.]){re.escape(n)}(?!\d)", corpus)})
    assert not missing, f"decimal numbers in README.md found in no results file: {missing}"


# ----------------------------------------------------------------------------- links
def _md_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("path", _md_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    text = strip_code(path.read_text())
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):               # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"broken links in {path.relative_to(ROOT)}: {broken}"


def test_docs_pages_exist():
    for name in ("method", "results", "timings", "gpu", "engineering", "teaching", "stage1"):
        assert (DOCS / f"{name}.md").is_file(), f"docs/{name}.md is missing"


def test_every_make_target_is_documented():
    targets = set(re.findall(r"^([a-z][a-z0-9_-]*):(?!=)", (ROOT / "Makefile").read_text(), re.M))
    assert {"reproduce", "test"} <= targets
    text = "\n".join(p.read_text() for p in _md_files())
    undocumented = sorted(t for t in targets
                          if not re.search(rf"make {re.escape(t)}(?![\w-])", text))
    assert not undocumented, \
        f"make targets documented neither in README.md nor in docs/: {undocumented}"


# ----------------------------------------------------------------------------- timings.md
def test_timings_doc_is_generated_from_the_logs():
    td = timings_doc()
    assert (DOCS / "timings.md").read_text() == td.render(), (
        "docs/timings.md is not what bench/timings_doc.py writes from bench/results/ now: run "
        "`.venv/bin/python bench/timings_doc.py`")


def test_timings_doc_names_every_log_and_its_machine():
    td = timings_doc()
    text = td.render()
    for e in td.time_entries() + td.notebook_entries():
        assert e["machine"] in td.MACHINES and td.MACHINES[e["machine"]] in text
        assert e["file"] in text


def test_timings_doc_refuses_a_log_without_a_machine(tmp_path):
    td = timings_doc()
    (tmp_path / "mystery_time.log").write_text(
        "\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02.50\n"
        "\tMaximum resident set size (kbytes): 1048576\n")
    with pytest.raises(ValueError, match="mystery_time.log"):
        td.time_entries(tmp_path)
    (tmp_path / "mystery_time.log").write_text(
        "# machine: epyc-avx2\n# command: make smoke\n# date: 2026-12-08\n"
        "\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02.50\n"
        "\tMaximum resident set size (kbytes): 1048576\n")
    (e,) = td.time_entries(tmp_path)
    assert (e["command"], e["machine"], td.format_duration(e["wall_s"])) == \
        ("make smoke", "epyc-avx2", "1 min 2 s")
    assert td.format_duration(3 * 3600 + 61) == "3 h 1 min 1 s"
