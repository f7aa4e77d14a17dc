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


OPTIONAL = {"jupyterlab": "lab", "diffusers": "recon", "papermill": "notebooks",
            "jupytext": "notebooks", "nbconvert": "notebooks", "ipykernel": "notebooks"}


def test_notebook_lab_and_diffusion_packages_are_extras_the_makefile_installs():
    import tomllib
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    hard = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in meta["dependencies"]}
    extras = meta["optional-dependencies"]
    for name, extra in OPTIONAL.items():
        assert name not in hard, f"{name} is a hard dependency; it belongs to [{extra}]"
        assert any(d.startswith(name) for d in extras[extra]), (name, extra)
    make = (ROOT / "Makefile").read_text()
    assert '-e ".[test,notebooks,lab,recon]"' in make


def test_the_library_imports_the_optional_packages_only_inside_functions():
    import ast
    bad = []
    for f in sorted((ROOT / "llm4brain").rglob("*.py")):
        for node in ast.parse(f.read_text()).body:           # module level only
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{f.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                    if n.split(".")[0] in OPTIONAL]
    assert not bad, bad
