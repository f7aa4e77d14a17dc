"""The environment is the one requirements.lock describes (what make builds .venv from)."""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert m, f"requirements.lock: not an exact pin: {line!r}"
        pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_lock_pins_every_dependency_exactly():
    pins = _lock()
    assert pins["torch"] == "2.13.0"
    for name in ("transformers", "peft", "nilearn", "papermill", "numpy", "pandas"):
        assert name in pins, name


def test_installed_versions_are_the_locked_ones():
    pins = _lock()
    wrong = {}
    for name, want in pins.items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong[name] = (want, "not installed")
            continue
        if have.split("+")[0] != want:
            wrong[name] = (want, have)
    assert not wrong, f"installed packages differ from requirements.lock (rebuild with make venv): {wrong}"


def test_lock_holds_the_lab_and_figure_packages():
    pins = _lock()
    for name in ("jupyterlab", "jupyter-server", "seaborn", "jupytext"):
        assert name in pins, name


def test_gpu_environment_takes_every_version_from_the_lock():
    """environment.yml gives Python and make only: no second list of versions to drift."""
    import yaml

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert all(isinstance(d, str) for d in deps), "no pip: section (make installs from the lock)"
    assert {d.split("=")[0] for d in deps} == {"python", "pip", "make"}
