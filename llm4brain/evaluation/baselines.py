"""Decoders that never generate, for Stage II's controls: a ridge + nearest-neighbour caption
baseline and, on the simulated data, its noise ceiling.

The ridge of notebook 03 (mask voxels -> pooled video embedding, :mod:`llm4brain.evaluation.stage1`)
predicts each evaluation trial's video embedding; the most similar training clip's surrogate
answer is the decoded text. The ceiling fits and applies the same decoder on the simulator's
noise-free responses (:func:`llm4brain.sim.noise_free_trial_blocks`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import sim
from ..training.stage2 import caption_pairs
from .decoding import EvalSet, decode_frame
from ..models.ridge import RidgeCV
from .stage1 import load_stage1_results, voxel_features

__all__ = ["nn_baseline", "nearest_training_answers", "has_ground_truth", "ceiling_decodes",
           "noise_free_features"]


def nn_baseline(cfg, eval_set: EvalSet, captions: pd.DataFrame, *,
                same_instruction: bool = True) -> pd.DataFrame:
    """Ridge + nearest-neighbour caption retrieval (a decoder that never generates).

    The ridge of notebook 03 (mask voxels -> pooled video embedding, fitted on training
    trials) predicts each evaluation trial's video embedding; the most similar (cosine)
    **training** clip's surrogate answer is returned as the decoded text. With
    ``same_instruction`` only training clips captioned under the trial's instruction compete
    (all of them when none was).
    """
    arrays, meta = load_stage1_results(cfg)
    pos = {int(r): i for i, r in enumerate(arrays["eval_rows"])}
    try:
        P = arrays["eval_ridge"][[pos[int(r)] for r in eval_set.table["trial_index"]]]
    except KeyError as exc:
        raise KeyError(f"evaluation trial {exc.args[0]} has no ridge prediction in the Stage I "
                       f"results: re-run notebook 03 for these splits") from None
    return decode_frame(eval_set.table, nearest_training_answers(P, arrays, meta, eval_set,
                                                            captions, same_instruction))


def nearest_training_answers(P: np.ndarray, arrays: dict, meta: pd.DataFrame,
                              eval_set: EvalSet, captions: pd.DataFrame,
                              same_instruction: bool) -> list[str]:
    """For each predicted video embedding (row of ``P``, one per evaluation trial), the
    surrogate answer of the most similar (cosine) training clip of the Stage I results."""
    tr = meta[meta["split"] == "train"].reset_index(drop=True)
    pairs = caption_pairs(captions, tr["subject"], tr["stim_file"], "training")
    tr_ins = np.array([p[0] for p in pairs])
    tr_ans = [p[1] for p in pairs]
    X = arrays["train_x"]
    S = (P / np.linalg.norm(P, axis=1, keepdims=True).clip(1e-12)) @ \
        (X / np.linalg.norm(X, axis=1, keepdims=True).clip(1e-12)).T
    texts = []
    for i, ins in enumerate(eval_set.table["instruction"]):
        s = S[i].copy()
        if same_instruction and (tr_ins == ins).any():
            s[tr_ins != ins] = -np.inf
        texts.append(tr_ans[int(np.argmax(s))])
    return texts


def has_ground_truth(cfg) -> bool:
    """Whether the dataset is simulated (ground truth under ``derivatives/simulation``)."""
    d = Path(cfg.data_root) / "derivatives" / "simulation"
    return d.is_dir() and any(d.glob("sub-*_groundtruth.npz"))


def noise_free_features(cfg, tc, rows, batch_size: int = 64) -> np.ndarray:
    """(n, V) the simulator's noise-free responses of trial ``rows``, averaged over each
    block's volumes, in the units of the z-scored data (:func:`llm4brain.sim.noise_free_trial_blocks`,
    one read of each run for all the rows): the input of the noise ceilings."""
    rows = np.asarray(rows, int)
    blocks = sim.noise_free_trial_blocks(cfg, tc, rows)
    return voxel_features(lambda pos: blocks[pos], len(rows), tc.mask, batch_size=batch_size)


def ceiling_decodes(cfg, tc, eval_set: EvalSet, captions: pd.DataFrame, *,
                    same_instruction: bool = True) -> pd.DataFrame | None:
    """Noise ceiling: the ridge + nearest-neighbour decoder of :func:`nn_baseline` fitted and
    applied on the simulator's **noise-free** responses (``None`` on real data).

    The training trials' noise-free blocks (:func:`llm4brain.sim.noise_free_trial_blocks`,
    in the units of the z-scored data, averaged over the block's volumes) are regressed on
    their pooled Stage I video embeddings (ridge, alpha by cross-validation from
    ``stage1.ridge_alphas``); the evaluation trials' noise-free responses predict an
    embedding and the nearest training clip's surrogate answer is the decoded text. What is
    left between this oracle and Video2Text is what cross-subject differences in tuning (and
    the decoder family) cost even without measurement noise. (Feeding the noise-free blocks
    to the trained network instead is no ceiling: they are ~15x smaller than the noisy
    inputs it was trained on, and it decodes them worse than chance.)
    """
    if not has_ground_truth(cfg):
        return None
    arrays, meta = load_stage1_results(cfg)
    feats = lambda rows: noise_free_features(cfg, tc, rows)       # noqa: E731

    tr_rows = np.asarray(arrays["train_rows"], int)
    ridge = RidgeCV(alphas=cfg.stage1.ridge_alphas, cv=cfg.stage1.ridge_cv).fit(
        feats(tr_rows), arrays["train_x"])
    P = ridge.predict(feats(eval_set.table["trial_index"].to_numpy().astype(int)))
    return decode_frame(eval_set.table, nearest_training_answers(np.asarray(P), arrays, meta,
                                                            eval_set, captions,
                                                            same_instruction))
