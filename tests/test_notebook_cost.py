"""Each notebook's first cell states its measured time, generated from bench/results."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import notebook_cost  # noqa: E402


def test_every_notebook_states_the_time_the_tables_measured():
    assert notebook_cost.main(["--check"]) == 0, "run .venv/bin/python bench/notebook_cost.py"


def test_time_line_reads_the_table_of_each_profile(tmp_path):
    (tmp_path / "notebook_times_default.md").write_text(
        "# machine: epyc-avx2\n# date: 2026-12-07\n\n| notebook | seconds | minutes |\n"
        "|---|---:|---:|\n| 03_stage1_alignment | 600 | 10.0 |\n| 04_x | 50 | 0.8 |\n")
    (tmp_path / "notebook_times_classroom.md").write_text(
        "# machine: epyc-avx2\n# date: 2026-12-07\n\n| notebook | seconds | minutes |\n"
        "|---|---:|---:|\n| 03_stage1_alignment | 45 | 0.8 |\n")
    tables = notebook_cost._tables(tmp_path)
    line = notebook_cost.time_line("03_stage1_alignment", tables)
    assert line.startswith(notebook_cost.MARK)
    assert "10.0 min on `default`" in line and "45 s on `classroom`" in line
    assert "AMD EPYC" in line and "2026-12-07" in line
    assert "classroom" not in notebook_cost.time_line("04_x", tables)
    assert "not measured" in notebook_cost.time_line("09_y", tables)


def test_a_table_without_its_machine_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(notebook_cost, "NOTEBOOK_TIMES", {})     # no description to fall back on
    (tmp_path / "notebook_times_classroom.md").write_text(
        "| notebook | seconds | minutes |\n|---|---:|---:|\n| 03_a | 45 | 0.8 |\n")
    with pytest.raises(SystemExit, match="machine"):
        notebook_cost._tables(tmp_path)


def test_a_notebook_without_the_mark_is_named(tmp_path):
    (tmp_path / "05_x.py").write_text("# %% [markdown]\n# # 05\n")
    with pytest.raises(SystemExit, match="05_x.py"):
        notebook_cost.expected_lines(tmp_path, tmp_path)


def test_notebook_times_never_replace_another_machines_table(tmp_path):
    import notebook_times

    assert notebook_times.output_path("default", "epyc-avx2", tmp_path).name == "notebook_times_default.md"
    (tmp_path / "notebook_times_default.md").write_text("# Notebook wall times\n\n# machine: epyc-avx2\n")
    assert notebook_times.output_path("default", "epyc-avx2", tmp_path).name == "notebook_times_default.md"
    assert (notebook_times.output_path("default", "xeon-avx512-bf16", tmp_path).name
            == "notebook_times_default_xeon-avx512-bf16.md")
