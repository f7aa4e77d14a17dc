"""Notebooks: structure rules, and every notebook executed in order on the smoke profile.

Executing uses papermill with the ``llm4brain`` kernel of the venv (installed by the Makefile)
into a temporary LLM4BRAIN_HOME, so nothing in the checkout is touched.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
#: Notebooks outside the numbered chain (make tune, make ablations), run after it.
EXTRA = [ROOT / "notebooks" / "tune_pseudo_target.py", ROOT / "notebooks" / "ablations.py"]
#: Small parameters for the smoke run of the extra notebooks (papermill -y).
EXTRA_PARAMS = {
    "tune_pseudo_target": "SEEDS: [0, 1]\nSTAGE1_CANDIDATES: {spatial: {stage1.projector: spatial}}\n",
    "ablations": ("SEEDS: [0]\nROWS: {full: {}, without Stage I alignment: {stage1.align: false},"
                  " without MAE pretraining: {mae.pretrained: false}}\n"),
}


def _cells(path: Path) -> list[tuple[str, str]]:
    """(header, body) of each py:percent cell."""
    text = path.read_text()
    parts = re.split(r"^(# %%.*)$", text, flags=re.M)
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def test_notebooks_exist():
    names = [p.stem[:2] for p in NOTEBOOKS]
    assert names[:2] == ["00", "01"] and names == sorted(names)


def test_extra_notebooks_exist_and_have_make_targets():
    make = (ROOT / "Makefile").read_text()
    for nb in EXTRA:
        assert nb.is_file(), nb
        assert f"EXTRA_RULE" in make and nb.stem in make, nb.stem


@pytest.mark.parametrize("nb", NOTEBOOKS + EXTRA, ids=lambda p: p.stem)
def test_notebook_structure(nb):
    cells = _cells(nb)
    code = [(h, b) for h, b in cells if "[markdown]" not in h]
    assert code, f"{nb.name} has no code cell"
    head, body = code[0]
    assert 'tags=["parameters"]' in head, f"{nb.name}: first code cell must be tagged parameters"
    tree = ast.parse(body)
    for node in tree.body:           # literals only (numbers, strings, lists, dicts)
        assert isinstance(node, ast.Assign), f"{nb.name}: the parameters cell holds assignments"
        try:
            ast.literal_eval(node.value)
        except ValueError:
            pytest.fail(f"{nb.name}: the parameters cell holds literals only")
    assert any(getattr(t, "id", "") == "PROFILE" for n in tree.body for t in n.targets)
    assert "load_config(PROFILE" in code[1][1], f"{nb.name}: the 2nd code cell resolves the config"
    full = ast.parse("\n".join(b for h, b in code))
    bad = [n for n in ast.walk(full) if isinstance(n, (ast.FunctionDef, ast.ClassDef,
                                                          ast.AsyncFunctionDef))]
    assert not bad, f"{nb.name}: notebooks orchestrate only; move def/class into llm4brain"
    assert "sys.argv" not in nb.read_text()
    assert any("[markdown]" in h for h, _ in cells), f"{nb.name}: explain it in markdown"


@pytest.fixture(scope="module")
def smoke_home(tmp_path_factory):
    return tmp_path_factory.mktemp("nbhome")


@pytest.mark.notebooks
@pytest.mark.slow
def test_all_notebooks_run_on_smoke(smoke_home):
    """``make smoke`` equivalent: every notebook in order, headless, on the smoke profile."""
    env = dict(os.environ, LLM4BRAIN_HOME=str(smoke_home), MPLBACKEND="Agg",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    bindir = Path(sys.executable).parent
    out = smoke_home / "executed"
    out.mkdir()
    for nb in NOTEBOOKS:
        src = out / f"{nb.stem}.src.ipynb"
        subprocess.run([str(bindir / "jupytext"), "--quiet", "--to", "ipynb", "--set-kernel",
                        "llm4brain", "-o", str(src), str(nb)], check=True, env=env)
        r = subprocess.run([str(bindir / "papermill"), "--log-level", "WARNING", "-k", "llm4brain",
                            "-p", "PROFILE", "smoke", str(src), str(out / f"{nb.stem}.ipynb")],
                           cwd=ROOT / "notebooks", env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{nb.name} failed on the smoke profile:\n{r.stderr[-4000:]}"
    fig_dir = smoke_home / "runs" / "smoke" / "figures"
    figs = list(fig_dir.glob("*.png"))
    assert len(figs) >= 2 * len(NOTEBOOKS)
    # notebooks 04 and 06 score attributes, the new controls and N-way identification
    for name in ("04_attribute_accuracy.csv", "06_attribute_accuracy.png", "attributes_smoke.csv",
                 "attributes_smoke_vs_video2text.csv", "identification_smoke.csv"):
        assert (fig_dir / name).is_file(), name
    summary = (fig_dir / "summary.md").read_text()
    assert "Attribute accuracy" in summary and "caption identification" in summary
    assert "LLM without brain tokens" in summary and "constant answer" in summary
    # make tune and make ablations read the chain's run (small parameters here)
    for nb in EXTRA:
        src = out / f"{nb.stem}.src.ipynb"
        subprocess.run([str(bindir / "jupytext"), "--quiet", "--to", "ipynb", "--set-kernel",
                        "llm4brain", "-o", str(src), str(nb)], check=True, env=env)
        r = subprocess.run([str(bindir / "papermill"), "--log-level", "WARNING", "-k", "llm4brain",
                            "-p", "PROFILE", "smoke", "-y", EXTRA_PARAMS[nb.stem], str(src),
                            str(out / f"{nb.stem}.ipynb")],
                           cwd=ROOT / "notebooks", env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{nb.name} failed on the smoke profile:\n{r.stderr[-4000:]}"
    run = smoke_home / "runs" / "smoke"
    for f in ("candidates.json", "stage1_validation.csv", "stage2_validation.csv",
              "stage2_da_paired.csv", "verdict.json"):
        assert (run / "tuning" / f).is_file(), f
    import pandas as pd

    v = pd.read_csv(run / "tuning" / "stage2_validation.csv")
    assert set(v["candidate"]) >= {"DA on", "DA off"} and set(v["seed"]) == {0, 1}
    t3 = pd.read_csv(fig_dir / "ablations_smoke.csv", index_col=0)
    assert {"full", "without Stage I alignment", "without MAE pretraining",
            "chance (shuffled fMRI)", "prompt without brain tokens"} <= set(t3.index)
    assert (fig_dir / "ablations.png").is_file() and (fig_dir / "tune_stage2.png").is_file()
