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
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ._data import DataConfig, SimConfig
from ._encoder import AdaptorConfig, EncoderConfig, MAEConfig, TokenizerConfig
from ._eval import EvalConfig
from ._loader import ConfigError, from_dict, read_yaml, to_dict
from ._run import RunConfig
from ._train import Stage1Config, Stage2Config, TrainLoopConfig
from ._video import CaptionConfig, LLMConfig, VideoConfig, VLPretrainConfig

__all__ = [
    "Config", "ConfigError", "load_config", "save_config", "config_hash", "git_revision",
    "repo_root", "configs_dir", "PROFILES",
    "RunConfig", "SimConfig", "DataConfig", "TokenizerConfig", "EncoderConfig",
    "AdaptorConfig", "MAEConfig", "VideoConfig", "LLMConfig", "VLPretrainConfig",
    "CaptionConfig", "TrainLoopConfig", "Stage1Config", "Stage2Config", "EvalConfig",
]

PROFILES = ("smoke", "default", "had", "urgen")


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


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_config(profile: str | os.PathLike = "default", overrides: dict | None = None) -> Config:
    """Load a profile by name (``configs/<name>.yaml``) or by path, with optional overrides.

    Parameters
    ----------
    profile : str or path
        ``smoke``, ``default``, ``had``, ``urgen`` or the path of a YAML file. A YAML file may
        name a parent profile with ``inherit: <name>``.
    overrides : dict, optional
        Nested mapping ``{"section": {"key": value}}`` applied last (e.g. from papermill).

    Raises
    ------
    ConfigError
        Unknown profile, unknown key or wrong type; the message names the key and the file.
    """
    p = Path(profile)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        path, name = p, p.stem
    else:
        path, name = configs_dir() / f"{profile}.yaml", str(profile)
        if not path.is_file():
            avail = sorted(x.stem for x in configs_dir().glob("*.yaml"))
            raise ConfigError(f"unknown profile '{profile}': no file {path}. "
                              f"Available profiles: {', '.join(avail)}")
    data = read_yaml(path)
    parent = data.pop("inherit", None)
    if parent is not None:
        parent_data = read_yaml(configs_dir() / f"{parent}.yaml")
        parent_data.pop("inherit", None)
        data = _merge(parent_data, data)
    data = {k: v for k, v in data.items() if not str(k).startswith("_")}  # e.g. _git_revision
    data.setdefault("profile", name)
    if overrides:
        data = _merge(data, overrides)
    return from_dict(Config, data, source=str(path))


def config_hash(obj) -> str:
    """Short stable hash of a dataclass / dict (used to key caches)."""
    import hashlib
    d = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


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
    out.write_text(yaml.safe_dump(d, sort_keys=False))
    return out
