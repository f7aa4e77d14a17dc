"""Writing Stage II's outputs: every model's fMRI2Text and the controls notebook 06 scores.

:func:`write_stage2_outputs` decodes the evaluation trials with each trained model and writes,
under ``<run_dir>/results/stage2`` (:mod:`llm4brain.evaluation.stage2_results`), the chance
decodes, the LLM without brain tokens, the constant answer, the ridge + nearest-neighbour
baseline, the noise ceiling (simulated data: the semantic read-out on the simulator's
noise-free responses, :func:`~llm4brain.evaluation.semantic.semantic_ceiling_decodes`; the
ridge + NN on them when the read-out is off), the semantic read-out with its own chance
decodes (:mod:`llm4brain.evaluation.semantic`; ``eval.semantic_readout``) and
``manifest.json`` naming each file's role.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from ..atomic import write_json
from ..config import save_config
from ..training.stage2 import stage2_run_name
from ..models.stage2 import stage2_seed
from .baselines import ceiling_decodes, has_ground_truth, nn_baseline
from .decoding import (EvalSet, chance_decodes, constant_decodes, decode_eval_set,
                       n_chance_decodes, no_brain_decodes)
from .semantic import semantic_ceiling_decodes
from .stage2_results import DECODE_COLUMNS, save_decodes, stage2_results_dir

__all__ = ["write_stage2_outputs"]


def write_stage2_outputs(cfg, models: dict, eval_set: EvalSet, captions: pd.DataFrame, *,
                         tc=None, main: str | None = None, train_subjects: Sequence[str] = (),
                         splits=None, vlm=None, features=None, stim: pd.DataFrame | None = None,
                         progress: bool = True) -> dict:
    """Decode the evaluation trials with every model and write the controls of notebook 06.

    Parameters
    ----------
    cfg : Config
    models : dict name -> Stage2Model
        E.g. ``{"da": ..., "noda": ...}``; each writes ``fmri2text_<name>.tsv``.
    eval_set : EvalSet
    captions : DataFrame (surrogate answers; training clips' ones for the baseline)
    tc : TrialCache, needed for the noise ceiling (simulated data:
        :func:`~llm4brain.evaluation.semantic.semantic_ceiling_decodes`, or
        :func:`ceiling_decodes` when the semantic read-out does not run)
    main : str, optional
        Model used for the chance decodes and the ceiling (default ``da`` when
        ``stage2.domain_adaptation`` else ``noda``).
    train_subjects : list of str
        The training subjects (``splits.train_subjects``), for the constant-answer control
        (skipped when empty).
    splits, vlm : Splits, VideoLLM, optional
        For the semantic read-out (with ``tc`` and ``eval.semantic_readout``; skipped, with a
        note in the manifest, when one is missing).
    features : FrameFeatureCache, optional
        Default :func:`llm4brain.training.vlpretrain.video_features` (read from its cache).
    stim : DataFrame, optional
        The stimulus table (default :func:`llm4brain.data.load_stimuli`), for the read-outs'
        labels other than ``class``.

    Returns
    -------
    dict
        The manifest (also ``results/stage2/manifest.json``): file names per role.
    """
    d = stage2_results_dir(cfg)
    d.mkdir(parents=True, exist_ok=True)
    main = main or ("da" if cfg.stage2.domain_adaptation else "noda")
    if main not in models:
        raise KeyError(f"main model {main!r} not in {sorted(models)}")
    seed = stage2_seed(cfg)
    manifest: dict = dict(columns=list(DECODE_COLUMNS), n_trials=len(eval_set), main=main,
                          fmri2text={}, chance=[], baseline="baseline_nn.tsv", ceiling=None,
                          ceiling_note="", run_names={})
    for name, model in models.items():
        f = f"fmri2text_{name}.tsv"
        save_decodes(decode_eval_set(model, eval_set, seed=seed, progress=progress,
                                     desc=f"fMRI2Text {name}"), d / f)
        manifest["fmri2text"][name] = f
        manifest["run_names"][name] = stage2_run_name(cfg, model.domain_adaptation)
    n_sh = n_chance_decodes(cfg)
    for k, df in enumerate(chance_decodes(models[main], eval_set, n_sh, seed=seed,
                                          progress=progress)):
        f = f"chance_shuffle_{k}.tsv"
        save_decodes(df, d / f)
        manifest["chance"].append(f)
    manifest["n_shuffles"] = n_sh
    manifest["n_shuffles_requested"] = int(cfg.eval.n_shuffles)
    save_decodes(nn_baseline(cfg, eval_set, captions), d / "baseline_nn.tsv")
    save_decodes(no_brain_decodes(models[main], eval_set, seed=seed, progress=progress),
                 d / "no_brain.tsv")
    manifest["no_brain"] = "no_brain.tsv"
    if train_subjects:
        save_decodes(constant_decodes(eval_set, captions, train_subjects), d / "constant.tsv")
        manifest["constant"] = "constant.tsv"
    sem = _semantic(cfg, manifest, d, eval_set, tc=tc, splits=splits, vlm=vlm,
                    features=features, stim=stim, n_shuffles=n_sh, seed=seed, progress=progress)
    if tc is not None and has_ground_truth(cfg):
        if sem is not None:      # the best decoder of the package, on noise-free responses
            readout, model, stim = sem
            ceiling, info = semantic_ceiling_decodes(cfg, readout, model, tc, splits, eval_set,
                                                     stim, seed=seed, progress=progress)
            manifest["ceiling_decoder"] = "semantic read-out on noise-free responses"
            manifest["ceiling_readout"] = info
        else:
            ceiling = ceiling_decodes(cfg, tc, eval_set, captions)
            manifest["ceiling_decoder"] = "ridge + NN on noise-free responses"
        save_decodes(ceiling, d / "ceiling.tsv")
        manifest["ceiling"] = "ceiling.tsv"
    else:
        manifest["ceiling_note"] = ("no noise ceiling: the dataset has no simulator ground truth "
                                    "(real data)" if not has_ground_truth(cfg) else
                                    "no noise ceiling: tc (the trial cache) not given")
    write_json(d / "manifest.json", manifest, indent=1)
    save_config(cfg, d)
    return manifest


def _semantic(cfg, manifest: dict, d, eval_set: EvalSet, *, tc, splits, vlm, features, stim,
              n_shuffles: int, seed: int, progress: bool):
    """The semantic read-out's decodes, its chance decodes and its fitted settings; returns
    ``(readout, bridge, stim)`` for the noise ceiling, or None when it did not run."""
    for f in [d / "semantic.tsv", *d.glob("semantic_shuffle_*.tsv")]:   # an earlier run's
        f.unlink(missing_ok=True)
    if not cfg.eval.semantic_readout:
        manifest["semantic_note"] = "eval.semantic_readout is false"
        return None
    missing = [k for k, v in (("tc", tc), ("splits", splits), ("vlm", vlm)) if v is None]
    if missing:
        manifest["semantic_note"] = f"no semantic read-out: {', '.join(missing)} not given"
        return None
    from ..data import load_stimuli
    from ..models.stage2 import zero_shot_model
    from ..training.vlpretrain import video_features
    from .semantic import fit_semantic_readout, semantic_decodes

    features = features if features is not None else video_features(cfg, progress=progress)
    if stim is None and len(cfg.eval.semantic_labels) > 1:     # labels beyond the class
        stim = load_stimuli(cfg)
    readout = fit_semantic_readout(cfg, tc, splits, vlm, features, stim, cache=True)
    model = zero_shot_model(cfg, vlm)
    dec, shuffled, _ = semantic_decodes(cfg, readout, model, tc, splits, eval_set, n_shuffles,
                                        seed=seed, progress=progress)
    save_decodes(dec, d / "semantic.tsv")
    manifest["semantic"] = "semantic.tsv"
    manifest["semantic_chance"] = []
    for k, df in enumerate(shuffled):
        f = f"semantic_shuffle_{k}.tsv"
        save_decodes(df, d / f)
        manifest["semantic_chance"].append(f)
    manifest["semantic_readout"] = readout.info
    return readout, model, stim
