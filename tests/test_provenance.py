"""Provenance inside figures (PNG text chunks, PDF keywords), the PROVENANCE.tsv row of any
output, and ``llm4brain provenance FILE``."""
from __future__ import annotations

import dataclasses
import subprocess

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from llm4brain.cli import main as cli
from llm4brain.config import config_hash, load_config, repo_root, to_dict
from llm4brain.plotting import save_figure
from llm4brain.provenance import describe, read_embedded, record, stamp


@pytest.fixture
def cfg(tmp_path):
    c = load_config("smoke")
    return c.replace(run=dataclasses.replace(c.run, figures_dir=str(tmp_path / "figs")))


def _revision() -> str:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo_root(),
                         capture_output=True, text=True).stdout.strip()
    return rev or "unknown"


def test_figures_carry_revision_profile_and_config_hash(cfg):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png, pdf = save_figure(fig, "06_x", cfg)
    want = config_hash(to_dict(cfg))
    for p in (png, pdf):
        emb = read_embedded(p)
        assert emb["profile"] == "smoke" and emb["config_hash"] == want, (p, emb)
        assert emb["git_revision"].split("-")[0] == _revision()
    assert not list(png.parent.glob(".*"))                        # no temporary file left
    # a directory instead of a config: the revision only
    (p3,) = save_figure(fig, "y", png.parent, formats=("png",))
    assert read_embedded(p3) == dict(git_revision=stamp()["git_revision"], profile="",
                                     config_hash="")
    # a figure written by plain matplotlib carries nothing
    fig.savefig(png.parent / "plain.png")
    assert read_embedded(png.parent / "plain.png") == {}


def test_describe_and_cli_report_and_detect_changes(cfg, tmp_path, capsys):
    d = tmp_path / "figs"
    d.mkdir()
    marker = tmp_path / "started"
    marker.write_text("")
    fig, ax = plt.subplots()
    ax.bar([0, 1], [3, 4])
    png, _ = save_figure(fig, "06_bars", cfg)
    pd.DataFrame({"a": [1]}).to_csv(d / "table1.csv", index=False)
    rows = record(marker, cfg, "06_evaluation_tables")
    assert set(rows["file"]) == {"06_bars.png", "06_bars.pdf", "table1.csv"}

    info = describe(png)
    assert info["status"] == "ok" and info["recorded"]["notebook"] == "06_evaluation_tables"
    assert info["embedded"]["config_hash"] == info["recorded"]["config_hash"]
    assert cli(["provenance", str(png), str(d / "table1.csv")]) == 0
    out = capsys.readouterr().out
    assert "notebook 06_evaluation_tables, profile smoke" in out and "status: ok" in out

    (d / "table1.csv").write_text("a\n2\n")                         # edited after the run
    assert cli(["provenance", str(d / "table1.csv")]) == 1
    assert "differs from the one recorded" in capsys.readouterr().out
    other = tmp_path / "elsewhere.png"
    fig.savefig(other)
    assert describe(other)["status"] == "not recorded"
    with pytest.raises(FileNotFoundError, match="no such file"):
        describe(tmp_path / "missing.png")
    assert cli(["provenance", str(tmp_path / "missing.png")]) == 2
