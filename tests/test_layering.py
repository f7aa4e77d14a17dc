"""Layers point down: a module never imports one of a higher layer.

``config`` and ``atomic`` < ``data`` < ``sim`` < ``models`` < ``training`` < ``evaluation`` < the pipeline
modules at the package top (captions, experiments, plotting, provenance, cli, testing) and the
notebooks. Every import counts, function-local ones included.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import llm4brain

PACKAGE = Path(llm4brain.__file__).resolve().parent

#: Layer of each top-level part of the package (subpackage or module), lowest first.
LAYERS: dict[str, int] = {
    "config": 0, "atomic": 0,
    "data": 1,
    "sim": 2,
    "models": 3,
    "training": 4,
    "evaluation": 5,
    "captions": 6, "experiments": 6, "plotting": 6, "plotting_data": 6, "reconstruction": 6,
    "provenance": 6, "cli": 6, "testing": 6, "dialogue": 6, "dryrun": 6,
    "gallery": 6, "nbdeps": 6, "runnb": 6, "decoders": 6,
}
LAYER_NAMES = {0: "config", 1: "data", 2: "sim", 3: "models", 4: "training", 5: "evaluation",
               6: "pipeline"}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every ``llm4brain`` import in a file, at any depth."""
    mod = module_name(path, root)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "llm4brain":           # from llm4brain import data, models
                out += [(node.lineno, f"llm4brain.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, name))
    return [(line, n) for line, n in out if n == "llm4brain" or n.startswith("llm4brain.")]


def layer_of(module: str) -> int | None:
    """Layer of ``llm4brain.<part>...``; ``None`` for the package root itself."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    if parts[1] not in LAYERS:
        raise KeyError(f"{module}: '{parts[1]}' has no layer in tests/test_layering.py LAYERS; "
                       f"give it one")
    return LAYERS[parts[1]]


def violations(root: Path = PACKAGE) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        mod = module_name(path, root)
        here = layer_of(mod)
        if here is None:
            continue
        for line, target in imported_modules(path, root):
            there = layer_of(target)
            if there is not None and there > here:
                out.append(f"{mod} (line {line}) imports {target}: layer "
                           f"'{LAYER_NAMES[here]}' may not import the higher layer "
                           f"'{LAYER_NAMES[there]}' (config < data < sim < models < training "
                           f"< evaluation < pipeline)")
    return out


def test_every_part_of_the_package_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert parts <= set(LAYERS), f"no layer for {sorted(parts - set(LAYERS))}"


def test_layers_point_down():
    bad = violations()
    assert not bad, "imports pointing up:\n" + "\n".join(bad)


def test_a_planted_upward_import_is_reported(tmp_path):
    pkg = tmp_path / "llm4brain"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "data" / "_x.py").write_text(
        "from ._y import ok\n"
        "def f():\n"
        "    from ..evaluation.ridge import RidgeCV\n"
        "    import llm4brain.sim\n")
    bad = violations(pkg)
    assert len(bad) == 2
    assert bad[0].startswith("llm4brain.data._x (line 3) imports llm4brain.evaluation.ridge")
    assert "'data' may not import the higher layer 'evaluation'" in bad[0]
    assert "imports llm4brain.sim:" in bad[1]


@pytest.mark.parametrize("module,expected", [("llm4brain.training.stage2", 4),
                                             ("llm4brain.sim._render", 2),
                                             ("llm4brain.plotting", 6)])
def test_layer_of(module, expected):
    assert layer_of(module) == expected


def test_public_apis_hold_no_test_helper_and_data_no_simulator():
    import llm4brain.data as data
    import llm4brain.models.llm as llm
    import llm4brain.sim as sim
    import llm4brain.testing as testing

    for mod in (data, llm, sim):
        assert not set(testing.__all__) & set(mod.__all__), mod.__name__
    assert not set(sim.__all__) & set(data.__all__)
    assert not any(hasattr(data, n) for n in ("simulate_dataset", "noise_free_trial_blocks",
                                               "lag_profile", "REGIONS", "make_tiny_bids"))
    for mod in (data, sim, testing):
        missing = [n for n in mod.__all__ if not hasattr(mod, n)]
        assert not missing, f"{mod.__name__}.__all__ names missing objects: {missing}"
