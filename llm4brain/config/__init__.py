"""Profiles: YAML files in ``configs/`` loaded into frozen, validated dataclasses.

>>> from llm4brain.config import load_config
>>> cfg = load_config("smoke")
>>> cfg.sim.n_subjects, cfg.run_dir.name
(3, 'smoke')

Each section has its own module (``_data.py``, ``_encoder.py``, ...). Unknown keys and
wrong types raise :class:`ConfigError` naming the key.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..atomic import write_text
from ._data import DataConfig, SimConfig
from ._dialogue import DialogueConfig
from ._encoder import AdaptorConfig, EncoderConfig, MAEConfig, TokenizerConfig
from ._eval import EvalConfig
from ._identity import IDENTITY_OFF_DEFAULT, NOT_IDENTITY, config_hash, identity, run_key
from ._loader import ConfigError, from_dict, read_yaml, to_dict
from ._recon import ReconConfig
from ._run import RunConfig
from ._train import Stage1Config, Stage2Config, TrainLoopConfig
from ._video import CaptionConfig, LLMConfig, VideoConfig, VLPretrainConfig

__all__ = [
    "Config", "ConfigError", "load_config", "save_config", "config_hash", "git_revision",
    "repo_root", "configs_dir", "profiles", "inherit_chain", "identity", "run_key", "NOT_IDENTITY",
    "IDENTITY_OFF_DEFAULT",
    "RunConfig", "SimConfig", "DataConfig", "TokenizerConfig", "EncoderConfig",
    "AdaptorConfig", "MAEConfig", "VideoConfig", "LLMConfig", "VLPretrainConfig",
    "CaptionConfig", "TrainLoopConfig", "Stage1Config", "Stage2Config", "EvalConfig",
    "ReconConfig", "DialogueConfig",
]



@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of a run (one section per concern)."""

    profile: str = "default"
    run: RunConfig = field(default_factory=RunConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    adaptor: AdaptorConfig = field(default_factory=AdaptorConfig)
    mae: MAEConfig = field(default_factory=MAEConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    vlpretrain: VLPretrainConfig = field(default_factory=VLPretrainConfig)
    captions: CaptionConfig = field(default_factory=CaptionConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    eval: EvalConfig = field(default_factory=EvalConfig)
    recon: ReconConfig = field(default_factory=ReconConfig)
    dialogue: DialogueConfig = field(default_factory=DialogueConfig)

    # ------------------------------------------------------------------ paths
    @staticmethod
    def base_dir() -> Path:
        """Where relative paths resolve: ``$LLM4BRAIN_HOME``, else the checkout (when
        installed editable, so notebooks run from ``notebooks/`` write to the same place),
        else the current directory."""
        env = os.environ.get("LLM4BRAIN_HOME")
        if env:
            return Path(env)
        root = repo_root()
        return root if (root / "configs").is_dir() and (root / "pyproject.toml").is_file() \
            else Path(os.getcwd())

    @property
    def run_dir(self) -> Path:
        """Absolute run directory (``run.run_dir`` with ``{profile}`` expanded)."""
        p = Path(os.path.expandvars(self.run.run_dir.replace("{profile}", self.profile)))
        if not p.is_absolute():
            p = self.base_dir() / p
        return p

    @property
    def data_root(self) -> Path:
        """Absolute BIDS root of the dataset."""
        p = Path(os.path.expandvars(self.data.root.replace("{run_dir}", str(self.run_dir))))
        if not p.is_absolute():
            p = self.base_dir() / p
        return p

    @property
    def simulated_data(self) -> bool:
        """True when ``data.root`` is the run directory's embedded dataset (``{run_dir}/...``),
        the one notebook 00 simulates; any other root is read as it is (real data)."""
        return "{run_dir}" in self.data.root

    @property
    def figures_dir(self) -> Path:
        """Absolute figures directory (``run.figures_dir`` with ``{profile}`` and
        ``{run_dir}`` expanded)."""
        p = Path(os.path.expandvars(self.run.figures_dir.replace("{profile}", self.profile)
                                    .replace("{run_dir}", str(self.run_dir))))
        if not p.is_absolute():
            p = self.base_dir() / p
        return p

    def replace(self, **sections) -> "Config":
        """Copy with whole sections or ``section__key=value`` overrides replaced."""
        changes: dict = {}
        for key, value in sections.items():
            if "__" in key:
                sec, sub = key.split("__", 1)
                base = changes.get(sec, getattr(self, sec))
                changes[sec] = dataclasses.replace(base, **{sub: value})
            else:
                changes[key] = value
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return to_dict(self)


def repo_root() -> Path:
    """The checkout root (parent of the ``llm4brain`` package)."""
    return Path(__file__).resolve().parents[2]


def configs_dir() -> Path:
    env = os.environ.get("LLM4BRAIN_CONFIGS")
    return Path(env) if env else repo_root() / "configs"


def profiles() -> tuple[str, ...]:
    """The profile names: one per ``configs/<name>.yaml``."""
    return tuple(sorted(p.stem for p in configs_dir().glob("*.yaml")))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _is_path_ref(ref: str) -> bool:
    """Whether an ``inherit:`` value is a file path (a YAML suffix or a directory part)."""
    return Path(ref).suffix in (".yaml", ".yml") or "/" in ref or os.sep in ref


def _available_profiles() -> str:
    return ", ".join(profiles()) or "(none)"


def _chain(paths: list[Path]) -> str:
    """``a.yaml -> b.yaml -> a.yaml`` (full paths when the files are in several folders)."""
    if len({p.parent for p in paths}) == 1:
        return " -> ".join(p.name for p in paths) + f" (in {paths[0].parent})"
    return " -> ".join(str(p) for p in paths)


def _parent_path(ref, child: Path) -> Path:
    """The file named by ``inherit: <ref>`` in ``child``.

    A profile name resolves in :func:`configs_dir`; a path (``*.yaml`` / ``*.yml`` or with a
    ``/``; ``~`` and ``$VARS`` expanded) resolves against the folder of ``child`` when relative.
    A path without a suffix that names no file gets ``.yaml``: ``inherit: base/shared`` in
    ``configs/default.yaml`` is ``configs/base/shared.yaml``.
    """
    if not isinstance(ref, (str, os.PathLike)) or not str(ref).strip():
        raise ConfigError(f"{child}: 'inherit' must be a profile name or the path of a YAML file, "
                          f"got {ref!r}")
    ref = os.path.expanduser(os.path.expandvars(str(ref).strip()))
    if _is_path_ref(ref):
        path = Path(ref) if Path(ref).is_absolute() else child.parent / ref
        if not path.is_file() and not path.suffix and path.with_suffix(".yaml").is_file():
            path = path.with_suffix(".yaml")
        if not path.is_file():
            raise ConfigError(f"{child}: 'inherit: {ref}' names no file ({path} does not exist); "
                              f"give a path relative to {child.parent} or a profile name. "
                              f"Available profiles: {_available_profiles()}")
        return path
    path = configs_dir() / f"{ref}.yaml"
    if not path.is_file():
        raise ConfigError(f"{child}: 'inherit: {ref}' is not a profile (no file {path}). "
                          f"Available profiles: {_available_profiles()}")
    return path


def _read_profile(path: Path, _chain_so_far: tuple = ()) -> dict:
    """The mapping of ``path`` deep-merged over its ``inherit:`` ancestors (any depth).

    Parents' ``profile`` keys are dropped, so the result names the leaf's profile only.

    Raises
    ------
    ConfigError
        A cycle (message: the chain of files) or an unknown parent (message: the file whose
        ``inherit:`` is wrong and the available profiles).
    """
    chain = _chain_so_far + (path,)
    key = path.resolve()
    if key in [p.resolve() for p in _chain_so_far]:
        raise ConfigError(f"'inherit:' cycle: {_chain(list(chain))}; remove one of these "
                          f"'inherit:' lines")
    data = read_yaml(path)
    ref = data.pop("inherit", None)
    if ref is None:
        return data
    parent = _read_profile(_parent_path(ref, path), chain)
    parent.pop("profile", None)
    return _merge(parent, data)


def inherit_chain(profile: str | os.PathLike) -> tuple[Path, ...]:
    """The YAML files a profile is read from, the profile's own first, then its ``inherit:``
    parents up to the root (e.g. ``urgen.yaml``, ``had.yaml``, ``base/shared.yaml``).

    Raises
    ------
    ConfigError
        As :func:`load_config`: unknown profile, unknown parent or a cycle.
    """
    p = Path(profile)
    path = p if p.suffix in (".yaml", ".yml") or p.is_file() else configs_dir() / f"{profile}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown profile '{profile}': no file {path}. "
                          f"Available profiles: {_available_profiles()}")
    chain = [path]
    while (ref := read_yaml(chain[-1]).get("inherit")) is not None:
        parent = _parent_path(ref, chain[-1])
        if parent.resolve() in [c.resolve() for c in chain]:
            raise ConfigError(f"'inherit:' cycle: {_chain(chain + [parent])}; remove one of "
                              f"these 'inherit:' lines")
        chain.append(parent)
    return tuple(chain)


def load_config(profile: str | os.PathLike = "default", overrides: dict | None = None) -> Config:
    """Load a profile by name (``configs/<name>.yaml``) or by path, with optional overrides.

    Parameters
    ----------
    profile : str or path
        ``smoke``, ``default``, ``had``, ``urgen`` or the path of a YAML file.
    overrides : dict, optional
        Nested mapping ``{"section": {"key": value}}`` applied last (e.g. from papermill).

    Raises
    ------
    ConfigError
        Unknown profile, unknown key or wrong type (the message names the key and the file), an
        unknown ``inherit:`` parent or an inheritance cycle.

    Notes
    -----
    A YAML file may name a parent with ``inherit: <profile name>`` (a file of
    :func:`configs_dir`) or ``inherit: <path/to/parent.yaml>`` (relative paths resolve against
    the folder of the file that names it). Parents may inherit in turn, to any depth; each file
    deep-merges over its parent (the child wins, key by key inside sections). ``profile`` is the
    leaf's name (or its own ``profile:`` key); top-level keys starting with ``_`` (e.g.
    ``_git_revision`` written by :func:`save_config`) are dropped.
    """
    p = Path(profile)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        path, name = p, p.stem
    else:
        path, name = configs_dir() / f"{profile}.yaml", str(profile)
        if not path.is_file():
            raise ConfigError(f"unknown profile '{profile}': no file {path}. "
                              f"Available profiles: {_available_profiles()}")
    data = _read_profile(path)
    data = {k: v for k, v in data.items() if not str(k).startswith("_")}  # e.g. _git_revision
    data.setdefault("profile", name)
    if overrides:
        data = _merge(data, overrides)
    return from_dict(Config, data, source=str(path))


def git_revision() -> str:
    """The git revision of the checkout, or ``unknown`` (with ``-dirty`` when modified)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo_root(),
                             capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo_root(), capture_output=True, text=True, timeout=5).stdout
        return (rev or "unknown") + ("-dirty" if dirty.strip() else "")
    except Exception:  # noqa: BLE001 - git missing is not an error
        return "unknown"


def save_config(cfg: Config, directory: str | os.PathLike | None = None,
                name: str = "config.yaml") -> Path:
    """Write the resolved config (and git revision) as YAML to ``directory`` (default run dir)."""
    directory = Path(directory) if directory is not None else cfg.run_dir
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / name
    d = cfg.to_dict()
    d["_git_revision"] = git_revision()
    write_text(out, yaml.safe_dump(d, sort_keys=False))
    return out
