"""Run identity: which settings name a trained model, and the one helper that builds the name.

A checkpoint is found again by its name, ``<prefix>-<hash>``, where the hash
(:func:`llm4brain.config.config_hash`) covers every setting that determines the trained weights.
Settings that only change how a model is evaluated or decoded are **not** part of a run's
identity (:data:`NOT_IDENTITY`): changing them keeps the checkpoint. Switches added after runs
existed join the identity only away from their default (:data:`IDENTITY_OFF_DEFAULT`), so the
runs made before the switch keep their names.

>>> run_key("stage1", dict(stage1=identity(cfg, "stage1"), seed=cfg.run.seed))  # doctest: +SKIP
'stage1-3f2a...'
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Callable

from ._loader import to_dict

__all__ = ["NOT_IDENTITY", "IDENTITY_OFF_DEFAULT", "identity", "run_key", "config_hash"]

#: Fields of each config section that never enter a run's identity.
NOT_IDENTITY: dict[str, tuple[str, ...]] = {
    # evaluation of Stage I (retrieval, ridge baseline), not its training
    "stage1": ("eval_batch_size", "n_candidates", "n_permutations", "ridge_alphas", "ridge_cv"),
    # domain adaptation is in the name itself (stage2-da / stage2-noda); the shuffle cap only
    # changes how many chance decodes are written
    "stage2": ("domain_adaptation", "max_shuffles"),
    # generation settings: they change decodes, not weights
    "llm": ("max_new_tokens", "do_sample", "temperature", "top_p", "batch_size"),
    # inference batch size of the frame encoder
    "video": ("encoder_batch_size",),
    # how the trial cache is built, not what it holds: worker processes, the folder of derived
    # files (filtered events, resampling links)
    "data": ("cache_workers", "work_dir"),
}


def _spatial_only(section: dict) -> bool:
    return section.get("projector") not in ("spatial", "concept")


def _concept_only(section: dict) -> bool:
    return section.get("projector") != "concept"


#: Fields left out of the identity when the predicate on the section's values holds: at their
#: default (switches added after runs existed), or where they have no effect.
IDENTITY_OFF_DEFAULT: dict[str, dict[str, Callable[[dict], bool]]] = {
    "stage1": {
        "projector_token_dim": _spatial_only,        # sizes of the spatial projector only
        "projector_dropout": _spatial_only,
        "concepts": _concept_only,                   # settings of the concept projector only
        "concept_voxels": _concept_only,
        "concept_ce": _concept_only,
        "concept_cs": _concept_only,
        "concept_sharpen": lambda s: (s.get("projector") != "concept"
                                      or s.get("concept_sharpen", 1.0) == 1.0),
        "align": lambda s: bool(s.get("align", True)),                        # ablation switch, on
        "encoder_adaptors": lambda s: bool(s.get("encoder_adaptors", True)),  # ablation switch, on
        "train_encoder": lambda s: not s.get("train_encoder", False),        # candidate, off
        "soft_tau": lambda s: not s.get("soft_tau", 0.0),                    # candidate, off
        "class_targets": lambda s: not s.get("class_targets", 0.0),          # candidate, off
        "early_stopping_every": lambda s: not s.get("early_stopping_every", 0),  # off
        "select_by": lambda s: s.get("select_by", "class") == "class",

        "center": lambda s: not s.get("center", False),                      # candidate, off
        "voxel_readout": lambda s: s.get("voxel_readout", "none") == "none",  # candidate, off
        "voxel_readout_rank": lambda s: s.get("voxel_readout", "none") == "none",
        "voxel_readout_voxels": lambda s: (s.get("voxel_readout", "none") == "none"
                                           or not s.get("voxel_readout_voxels", 0)),
        "input_voxels": lambda s: not s.get("input_voxels", 0),              # candidate, off
    },
    # Stage I's ablation switch (no SC-MBM pretraining), on by default
    "mae": {"pretrained": lambda s: bool(s.get("pretrained", True))},
    # -1 (or any negative value) means run.seed, already part of the Stage I identity
    "stage2": {"seed": lambda s: s.get("seed", -1) < 0},
    # real-data switches, off by default; the compact cache format changes the values (float16)
    "data": {"invalid_videos": lambda s: not s.get("invalid_videos"),
             "resample_to": lambda s: not s.get("resample_to"),
             "cifti_structures": lambda s: s.get("source") != "ciftify",
             "cache_format": lambda s: s.get("cache_format", "dense32") == "dense32",
             "response": lambda s: s.get("response", "block") == "block"},
    # the patch1d tokenizer's sizes (MinD-Vis's Conv1d), only with that tokenizer
    "tokenizer": {"patch1d_size": lambda s: s.get("kind") != "patch1d",
                  "in_chans": lambda s: s.get("kind") != "patch1d"},
}


def identity(cfg, section: str, *, drop: tuple[str, ...] = ()) -> dict:
    """The settings of ``cfg.<section>`` that are part of a run's identity.

    Parameters
    ----------
    cfg : Config
    section : str
        A config section (``stage1``, ``stage2``, ``llm``, ``mae``, ``data``, ...).
    drop : tuple of str
        Further fields this particular run does not depend on.

    Returns
    -------
    dict
        ``to_dict(cfg.<section>)`` without the fields of :data:`NOT_IDENTITY`, the fields of
        :data:`IDENTITY_OFF_DEFAULT` whose predicate holds, and ``drop``.
    """
    values = to_dict(getattr(cfg, section))
    rules = IDENTITY_OFF_DEFAULT.get(section, {})
    out = {}
    for k, v in values.items():
        if k in NOT_IDENTITY.get(section, ()) or k in drop:
            continue
        if k in rules and rules[k](values):
            continue
        out[k] = v
    return out


def run_key(prefix: str, key: dict) -> str:
    """``<prefix>-<hash of key>``: the name of a run (its checkpoint) with identity ``key``.

    An empty ``prefix`` gives the bare hash (e.g. the video-LLM id inside other keys).
    """
    h = config_hash(key)
    return f"{prefix}-{h}" if prefix else h


def config_hash(obj) -> str:
    """Short stable hash of a dataclass / dict (used to key runs and caches)."""
    d = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]
