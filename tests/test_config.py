"""Profile loading: ``inherit:`` chains of any depth, path-valued parents, cycles, errors."""
from __future__ import annotations

import pytest

from llm4brain.config import ConfigError, configs_dir, load_config


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_three_level_chain_merges_every_level(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM4BRAIN_CONFIGS", str(tmp_path))
    _write(tmp_path / "grand.yaml", "sim:\n  n_subjects: 4\n  n_classes: 3\n"
                                    "mae:\n  lr: 0.123\n  steps: 7\n")
    _write(tmp_path / "middle.yaml", "inherit: grand\nmae:\n  steps: 9\n")
    leaf = _write(tmp_path / "leaf.yaml", "inherit: middle\nsim:\n  n_classes: 5\n"
                                          "_git_revision: abc\n")
    cfg = load_config(leaf)
    assert cfg.mae.lr == 0.123                       # only the grandparent sets it
    assert cfg.mae.steps == 9                        # the middle overrides the grandparent
    assert cfg.sim.n_classes == 5                    # the leaf overrides the grandparent
    assert cfg.sim.n_subjects == 4                   # deep merge keeps the sibling key
    assert cfg.profile == "leaf"
    assert load_config("leaf").profile == "leaf" and load_config("middle").mae.steps == 9


def test_parent_profile_key_does_not_leak(tmp_path, monkeypatch):
    """A parent written by save_config carries ``profile:``; the leaf's name wins."""
    monkeypatch.setenv("LLM4BRAIN_CONFIGS", str(tmp_path))
    _write(tmp_path / "saved.yaml", "profile: smoke\n_git_revision: abc\nmae:\n  steps: 3\n")
    leaf = _write(tmp_path / "mine.yaml", "inherit: saved\n")
    cfg = load_config(leaf)
    assert cfg.profile == "mine" and cfg.mae.steps == 3
    assert load_config(tmp_path / "saved.yaml").profile == "smoke"


def test_repo_real_data_profiles_share_had_and_the_stage1_recipe(monkeypatch):
    # paths keep their ${VARS} until used, so loading needs no environment; set them anyway
    monkeypatch.setenv("HAD_ROOT", "/nonexistent/had")
    monkeypatch.setenv("URGEN_ROOT", "/nonexistent/urgen")
    monkeypatch.setenv("LLM4BRAIN_MODELS", "/nonexistent/models")
    monkeypatch.delenv("LLM4BRAIN_CONFIGS", raising=False)
    urgen, had, default = load_config("urgen"), load_config("had"), load_config("default")
    # the real-data roots keep the spatial projector; the simulated default's concept
    # bottleneck needs the scene labels that only the simulator writes
    assert urgen.stage1.projector == had.stage1.projector == "spatial"
    assert default.stage1.projector == "concept" and "scene" in default.stage1.concepts
    assert urgen.stage1.projector_dropout == default.stage1.projector_dropout == 0.5
    assert urgen.profile == "urgen" and urgen.data.target_subjects == ("03", "04")
    assert urgen.tokenizer == had.tokenizer                      # had's own settings reach urgen
    assert urgen.data.source == had.data.source == "fmriprep"


def test_replicate_profile_is_the_default_with_another_seed(monkeypatch):
    monkeypatch.delenv("LLM4BRAIN_CONFIGS", raising=False)
    rep, default = load_config("replicate"), load_config("default")
    assert rep.run.seed == 1 and default.run.seed == 0
    assert rep.run_dir.name == "replicate" and rep.figures_dir == rep.run_dir / "figures"
    for section in ("sim", "data", "tokenizer", "encoder", "mae", "stage1", "stage2", "eval"):
        assert getattr(rep, section) == getattr(default, section), section
    assert rep.sim.noise_sd >= 0.5                  # the same, realistic noise


def test_inherit_cycle_is_an_error_naming_the_chain(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM4BRAIN_CONFIGS", str(tmp_path))
    _write(tmp_path / "a.yaml", "inherit: b\n")
    _write(tmp_path / "b.yaml", "inherit: c.yaml\n")
    _write(tmp_path / "c.yaml", "inherit: a\n")
    with pytest.raises(ConfigError, match=r"cycle: a\.yaml -> b\.yaml -> c\.yaml -> a\.yaml"):
        load_config("a")
    _write(tmp_path / "self.yaml", "inherit: ./self.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: self\.yaml -> self\.yaml"):
        load_config(tmp_path / "self.yaml")


def test_inherit_by_path_relative_to_the_child(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                      # not where the parent is
    _write(tmp_path / "base" / "parent.yaml", "inherit: smoke\nmae:\n  steps: 11\n")
    child = _write(tmp_path / "sub" / "deep" / "child.yaml",
                   "inherit: ../../base/parent.yaml\nmae:\n  lr: 0.5\n")
    cfg = load_config(child)
    assert (cfg.mae.steps, cfg.mae.lr, cfg.profile) == (11, 0.5, "child")
    assert cfg.sim.n_subjects == load_config("smoke").sim.n_subjects      # smoke reached by name
    assert cfg.stage1.projector == "concept"                                 # and default behind it
    absolute = _write(tmp_path / "abs.yaml", f"inherit: {tmp_path / 'base' / 'parent.yaml'}\n")
    assert load_config(absolute).mae.steps == 11


def test_unknown_parent_names_the_file_and_the_profiles(tmp_path):
    mid = _write(tmp_path / "mid.yaml", "inherit: no_such_profile\n")
    leaf = _write(tmp_path / "leaf.yaml", "inherit: mid.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config(leaf)
    msg = str(err.value)
    assert str(mid) in msg and "no_such_profile" in msg
    assert "Available profiles:" in msg
    assert all(p.stem in msg for p in configs_dir().glob("*.yaml"))
    _write(tmp_path / "missing.yaml", "inherit: nowhere/parent.yaml\n")
    with pytest.raises(ConfigError, match=r"missing\.yaml: 'inherit: nowhere/parent\.yaml' names no file"):
        load_config(tmp_path / "missing.yaml")
    _write(tmp_path / "bad.yaml", "inherit: [smoke]\n")
    with pytest.raises(ConfigError, match=r"'inherit' must be a profile name"):
        load_config(tmp_path / "bad.yaml")


def test_profiles_are_the_yaml_files_and_all_load():
    from llm4brain.config import configs_dir, load_config, profiles

    names = profiles()
    assert set(names) == {p.stem for p in configs_dir().glob("*.yaml")}
    assert {"smoke", "classroom", "default", "had", "urgen"} <= set(names)
    for name in names:
        assert load_config(name).profile == name


# ------------------------------------------------------------ the layout of configs/ (README.md)
#: The real-data profiles: they start from had, never from the CPU profile default.
REAL_DATA = ("had", "urgen", "had_dryrun")
#: Where each profile's figures go (configs/README.md): committed for default and the
#: real-data profiles, under the run directory for every other one.
COMMITTED_FIGURES = {"default": "figures", "had": "figures/had", "urgen": "figures/urgen"}


def _makefile_chain(name: str) -> list[str]:
    """The files the Makefile's PROFILE_YAMLS follows: ``inherit:`` values as names under
    configs/ (quotes and spaces removed, as its sed | tr does)."""
    import re

    out, p = [], name
    while p and (configs_dir() / f"{p}.yaml").is_file():
        out.append(f"{p}.yaml")
        m = re.search(r"^inherit: *(.*)$", (configs_dir() / f"{p}.yaml").read_text(), re.M)
        p = re.sub(r"[\"' ]", "", m.group(1)) if m else ""
    return out


@pytest.mark.parametrize("name", REAL_DATA)
def test_real_data_profiles_do_not_inherit_default(name, monkeypatch):
    from llm4brain.config import inherit_chain

    monkeypatch.delenv("LLM4BRAIN_CONFIGS", raising=False)
    chain = [p.resolve() for p in inherit_chain(name)]
    assert (configs_dir() / "default.yaml").resolve() not in chain, \
        f"{name} reads configs/default.yaml: {chain}"
    assert (configs_dir() / "had.yaml").resolve() in chain
    assert chain[-1] == (configs_dir() / "base" / "shared.yaml").resolve()


def test_every_profile_ends_in_the_shared_base_as_the_makefile_follows_it(monkeypatch):
    from llm4brain.config import inherit_chain, profiles

    monkeypatch.delenv("LLM4BRAIN_CONFIGS", raising=False)
    assert "shared" not in profiles() and "base" not in profiles()
    for name in profiles():
        files = [p.resolve().relative_to(configs_dir().resolve()).as_posix()
                 for p in inherit_chain(name)]
        assert files[-1] == "base/shared.yaml", (name, files)
        parent = {"default": "base/shared.yaml", "had": "base/shared.yaml", "urgen": "had.yaml",
                  "had_dryrun": "had.yaml"}.get(name, "default.yaml")    # embedded on default
        assert files[1] == parent, (name, files)
        assert _makefile_chain(name) == files, \
            f"the Makefile's PROFILE_YAMLS would follow {_makefile_chain(name)}, not {files}"


def test_had_spells_out_what_it_took_from_default(monkeypatch):
    """The values had used to inherit from configs/default.yaml, now its own or the base's."""
    monkeypatch.delenv("LLM4BRAIN_CONFIGS", raising=False)
    had = load_config("had")
    assert had.data.block_trs == 2 and had.run.seed == 0
    s1 = had.stage1
    assert (s1.projector, s1.projector_dropout, s1.class_targets) == ("spatial", 0.5, 0.5)
    assert (s1.input_voxels, s1.early_stopping_every, s1.steps) == (1000, 25, 200)
    assert (had.dialogue.max_clips, had.dialogue.steps) == (48, 16)
    assert had.run.device == "auto" and had.data.frame_size == 224    # its own, as before
    for name in ("urgen", "had_dryrun"):
        other = load_config(name)
        assert (other.stage1.projector, other.stage1.input_voxels) == ("spatial", 1000), name


def test_one_figures_dir_rule(monkeypatch):
    from llm4brain.config import Config, profiles

    monkeypatch.delenv("LLM4BRAIN_CONFIGS", raising=False)
    for name in profiles():
        cfg = load_config(name)
        expected = (Config.base_dir() / COMMITTED_FIGURES[name] if name in COMMITTED_FIGURES
                    else cfg.run_dir / "figures")
        assert cfg.figures_dir == expected, (name, cfg.figures_dir)


def test_inherit_path_without_suffix_gets_yaml(tmp_path):
    _write(tmp_path / "base" / "shared.yaml", "mae:\n  steps: 13\n")
    leaf = _write(tmp_path / "leaf.yaml", "inherit: base/shared\n")
    assert load_config(leaf).mae.steps == 13
    _write(tmp_path / "bad.yaml", "inherit: base/nothing\n")
    with pytest.raises(ConfigError, match=r"'inherit: base/nothing' names no file"):
        load_config(tmp_path / "bad.yaml")
