"""N-way caption identification (Mind Captioning, Horikawa 2025): is a decoded text closer to
its own trial's reference than to the references of N - 1 other trials? Chance is 1/N whatever
the metric, so it reads the same for BERTScore and for attribute agreement, and a decoder that
says the same fluent sentence for every trial sits exactly at chance.

>>> sim = scorer.bertscore_matrix(decoded, video2text)     # doctest: +SKIP
>>> nway_identification(sim, n_way=20)["accuracy"]          # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .attributes import ATTRIBUTES, ATTRIBUTE_CONDITIONS, AttributeParser, _aligned, truth_frame
from .stage2_results import EXTRA_CONTROLS
from .controls import bootstrap_ci

__all__ = ["nway_identification", "attribute_similarity", "stage2_identification",
           "identification_wide"]


def nway_identification(sim: np.ndarray, n_way: int = 20, *, n_draws: int = 200, rng=0,
                        n_boot: int = 1000, alpha: float = 0.05) -> dict:
    """N-way identification accuracy from a similarity matrix.

    Parameters
    ----------
    sim : array (n, n)
        ``sim[i, j]``: similarity of trial i's decoded text to trial j's reference.
    n_way : int
        Candidates per test (the own reference and ``n_way - 1`` others drawn at random).
    n_draws : int
        Random candidate sets per trial; a trial's score is its mean over draws, a tie with the
        best distractor counting as a share (1 / number tied).

    Returns
    -------
    dict with ``accuracy`` (percent), ``ci_low``, ``ci_high`` (bootstrap over trials),
    ``chance`` = 100 / n_way, ``n_way``, ``per_trial`` (array of n, in [0, 1]).

    Raises
    ------
    ValueError
        ``sim`` not square, or fewer than ``n_way`` trials.
    """
    sim = np.asarray(sim, float)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"nway_identification: sim must be square (n, n), got {sim.shape}")
    n = sim.shape[0]
    if not 2 <= n_way <= n:
        raise ValueError(f"nway_identification: n_way = {n_way} needs 2 <= n_way <= n = {n} trials")
    rng = np.random.default_rng(rng)
    own = np.diag(sim)
    per = np.zeros(n)
    others = np.array([np.delete(np.arange(n), i) for i in range(n)])      # (n, n-1)
    for _ in range(n_draws):
        pick = np.argsort(rng.random((n, n - 1)), axis=1)[:, :n_way - 1]
        d = sim[np.arange(n)[:, None], np.take_along_axis(others, pick, 1)]  # (n, N-1)
        best = d.max(1)
        ties = (d == best[:, None]).sum(1)
        per += np.where(own > best, 1.0, np.where(own == best, 1.0 / (ties + 1), 0.0))
    per /= n_draws
    ci = bootstrap_ci(per, n_boot=n_boot, rng=rng, alpha=alpha)
    return dict(accuracy=100 * per.mean(), ci_low=100 * ci.low, ci_high=100 * ci.high,
                chance=100.0 / n_way, n_way=int(n_way), per_trial=per)


def attribute_similarity(pred: pd.DataFrame, ref: pd.DataFrame) -> np.ndarray:
    """``sim[i, j]``: how many attributes text i names as reference j does (0..7).

    ``pred`` and ``ref``: attribute frames (:meth:`AttributeParser.frame` or
    :func:`truth_frame`); an attribute a text leaves unsaid matches nothing.
    """
    attrs = [a for a in ATTRIBUTES if a in pred.columns and a in ref.columns]
    sim = np.zeros((len(pred), len(ref)))
    for a in attrs:
        p = pred[a].astype(object).to_numpy()
        r = ref[a].astype(object).to_numpy()
        sim += (p[:, None] == r[None, :]) & pd.notna(p)[:, None]
    return sim


def stage2_identification(results, scorer=None, *, stim: pd.DataFrame | None = None,
                          n_way: int = 20, n_draws: int = 200, n_boot: int = 1000,
                          rng=0) -> pd.DataFrame:
    """N-way identification of every saved Stage II condition against Video2Text.

    For each condition (fMRI2Text with / without DA, the baseline, the ceiling, the LLM without
    brain tokens, the constant answer, the first shuffled-fMRI decode): BERTScore F1 of each
    decoded text against every trial's Video2Text (``scorer.bertscore_matrix``), and the number
    of attributes it shares with each Video2Text; with ``stim`` (simulated data) also the
    attributes shared with each clip's truth.

    Returns
    -------
    DataFrame
        ``condition, similarity, accuracy, ci_low, ci_high, chance, n_way, n`` (percent).
    """
    labels = ATTRIBUTE_CONDITIONS
    model = results.model
    n_way = min(n_way, len(model))
    conds = {labels["model"]: model["fmri2text"].astype(str).tolist()}
    for cond in ("noda", "baseline", "ceiling") + EXTRA_CONTROLS:
        t = _aligned(getattr(results, cond, None), model, "fmri2text")
        if t is not None:
            conds[labels[cond]] = t
    if results.chance:
        conds[labels["chance"] + " (shuffle 0)"] = results.chance[0]["fmri2text"].astype(str).tolist()
    refs = model["video2text"].astype(str).tolist()
    parser = AttributeParser()
    ref_attr = parser.frame(refs)
    truth = truth_frame(stim, model["stim_file"]) if stim is not None else None
    rows = []
    for k, (cond, texts) in enumerate(conds.items()):
        sims = {}
        if scorer is not None:
            sims["BERTScore vs Video2Text"] = scorer.bertscore_matrix(texts, refs)
        att = parser.frame(texts)
        sims["attributes vs Video2Text"] = attribute_similarity(att, ref_attr)
        if truth is not None:
            sims["attributes vs truth"] = attribute_similarity(att, truth)
        for name, sim in sims.items():
            r = nway_identification(sim, n_way, n_draws=n_draws, n_boot=n_boot, rng=(rng, k))
            rows.append(dict(condition=cond, similarity=name, accuracy=r["accuracy"],
                             ci_low=r["ci_low"], ci_high=r["ci_high"], chance=r["chance"],
                             n_way=r["n_way"], n=len(texts)))
    return pd.DataFrame(rows)


def identification_wide(tidy: pd.DataFrame) -> pd.DataFrame:
    """Display form: conditions x similarity, ``"acc [low, high]"`` (percent), chance row."""
    cell = tidy.assign(v=[f"{a:.1f} [{lo:.1f}, {hi:.1f}]" for a, lo, hi in
                          zip(tidy["accuracy"], tidy["ci_low"], tidy["ci_high"])])
    order = list(dict.fromkeys(tidy["condition"]))
    cols = list(dict.fromkeys(tidy["similarity"]))
    wide = cell.pivot(index="condition", columns="similarity", values="v").loc[order, cols]
    n_way = int(tidy["n_way"].iloc[0])
    chance = pd.DataFrame([[f"{100 / n_way:.1f}"] * len(cols)], columns=cols,
                          index=[f"chance (1/{n_way})"])
    return pd.concat([wide, chance])
