"""The Makefile's notebook rules: a failed notebook is never taken as done; one make per run
directory at a time. Runs make on a scratch checkout of two tiny notebooks with the venv's
papermill and kernel (a few seconds)."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent

OK = ('# %% tags=["parameters"]\nPROFILE = "x"\n\n# %%\nimport os, pathlib\n'
      'd = pathlib.Path(os.environ["LLM4BRAIN_HOME"]) / "runs" / PROFILE / "figures"\n'
      'd.mkdir(parents=True, exist_ok=True)\n(d / "ok_table.csv").write_text("a,b\\n1,2\\n")\n')
FAIL = '# %% tags=["parameters"]\nPROFILE = "x"\n\n# %%\nraise RuntimeError("planted")\n'


@pytest.fixture
def scratch(tmp_path):
    if shutil.which("flock") is None or not (VENV / "bin" / "papermill").exists():
        pytest.fail("the test needs flock (util-linux) and the venv's papermill")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "00_ok.py").write_text(OK)
    (tmp_path / "notebooks" / "01_fail.py").write_text(FAIL)
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "requirements.lock").write_text("")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "jupyterlab-overrides.json").write_text("{}")
    stamp = tmp_path / "stamp"
    stamp.write_text("")
    for f in ("pyproject.toml", "requirements.lock", "configs/jupyterlab-overrides.json"):   # older than the stamp: no venv build
        os.utime(tmp_path / f, (0, 0))
    (tmp_path / "venv").symlink_to(VENV)
    return tmp_path


def _make(d: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", f"VENV=venv", f"STAMP=stamp",
                           f"LLM4BRAIN_HOME={d}", "PROFILE=smoke", *args], cwd=d,
                          capture_output=True, text=True, timeout=300)


def test_failed_notebook_is_not_up_to_date_and_is_kept_for_inspection(scratch):
    out = scratch / "runs" / "smoke" / "notebooks"
    r = _make(scratch, "reproduce")
    assert r.returncode != 0
    assert (out / "00_ok.ipynb").is_file()
    assert not (out / "01_fail.ipynb").exists()                 # no target left behind
    assert (out / "01_fail.failed.ipynb").is_file()
    assert "01_fail.py failed" in r.stdout + r.stderr
    assert "planted" in (out / "01_fail.failed.ipynb").read_text()
    r2 = _make(scratch, "reproduce")                             # runs it again, fails again
    assert r2.returncode != 0 and "up to date" not in r2.stdout + r2.stderr
    assert "01_fail.py failed" in r2.stdout + r2.stderr
    (scratch / "notebooks" / "01_fail.py").write_text(OK)       # fixed: now it completes
    r3 = _make(scratch, "reproduce")
    assert r3.returncode == 0, r3.stdout + r3.stderr
    assert (out / "01_fail.ipynb").is_file() and not (out / "01_fail.failed.ipynb").exists()
    # each figure/table written is recorded with its commit and config
    from llm4brain.provenance import check, read_provenance

    prov = read_provenance(scratch / "runs" / "smoke" / "figures")
    assert list(prov["file"]) == ["ok_table.csv"]
    assert set(prov["notebook"]) <= {"00_ok", "01_fail"} and set(prov["profile"]) == {"smoke"}
    assert prov["git_revision"].iloc[0] and len(prov["config_hash"].iloc[0]) >= 8
    assert set(check(scratch / "runs" / "smoke" / "figures")["status"]) == {"ok"}
    (scratch / "runs" / "smoke" / "figures" / "ok_table.csv").write_text("changed")
    assert set(check(scratch / "runs" / "smoke" / "figures")["status"]) == {"changed"}


def test_second_make_on_the_same_run_directory_stops(scratch):
    run = scratch / "runs" / "smoke"
    run.mkdir(parents=True)
    with open(run / ".make.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)           # a make is running
        r = _make(scratch, "reproduce")
    assert r.returncode != 0
    assert "another make is running on" in r.stdout + r.stderr
    assert not (run / "notebooks").exists()                      # nothing was written


def test_make_lab_allows_root_only_when_root(scratch):
    r = _make(scratch, "-n", "lab", "LAB_ARGS=--port=9999")
    assert r.returncode == 0, r.stderr
    cmd = next(l for l in r.stdout.splitlines() if "jupyter lab" in l)
    assert "--notebook-dir=notebooks" in cmd and cmd.endswith("--port=9999")
    assert ("--allow-root" in cmd) == (os.geteuid() == 0), cmd


def test_make_nb_runs_one_notebook_and_names_the_choices(scratch):
    out = scratch / "runs" / "smoke" / "notebooks"
    r = _make(scratch, "nb")
    assert r.returncode != 0 and "give NB=NN, one of: 00_ok 01_fail" in r.stdout + r.stderr
    r = _make(scratch, "nb", "NB=00")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "00_ok.ipynb").is_file() and not (out / "01_fail.failed.ipynb").exists()
    assert "make nb NB=00 (smoke) took" in r.stdout
    r = _make(scratch, "nb", "NB=00")                            # up to date: nothing runs
    assert "[smoke] 00_ok.py" not in r.stdout
    r = _make(scratch, "nb", "NB=00", "FORCE=1")                 # asked: it runs again
    assert r.returncode == 0 and "[smoke] 00_ok.py" in r.stdout
