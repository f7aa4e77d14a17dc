"""Scoring a run's saved Stage II results, with a cache under ``<run_dir>/eval``.

:func:`score_run` scores every file of :mod:`llm4brain.evaluation.stage2_results` with one
:class:`~llm4brain.evaluation.metrics.TextScorer` (fMRI2Text against Video2Text), adds the
*upper reference* (Video2Text against the true clip descriptions, simulated data only) and the
chance decodings' distribution. Every score is cached keyed by a hash of the texts and the
metric settings: an unchanged input is never re-scored, so the BERTScore model is not even
loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .controls import ChanceResult, _chance_from_scores
from .metrics import TextScorer
from .scores import TextScores
from .stage2_results import EXTRA_CONTROLS, _TEXT_COLS, Stage2Results, load_stage2_results

__all__ = ["EvalResults", "score_run"]


_CACHE_VERSION = 2  # 2: SacreBLEU-4 and CIDEr-D columns


def _settings_key(scorer: TextScorer) -> dict:
    c = scorer.cfg
    return dict(version=_CACHE_VERSION, bertscore=scorer.use_bertscore,
                bertscore_model=c.bertscore_model, bertscore_layers=c.bertscore_layers,
                bertscore_idf=c.bertscore_idf, bleu_tokenize=c.bleu_tokenize,
                bleu_lowercase=c.bleu_lowercase, rouge_stemmer=c.rouge_stemmer)


def _input_key(scorer: TextScorer, cand_lists, refs, meta: pd.DataFrame, extra=None) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([_settings_key(scorer), extra], sort_keys=True, default=str).encode())
    h.update(pd.util.hash_pandas_object(meta.astype(str), index=False).to_numpy().tobytes())
    for texts in [refs, *cand_lists]:
        h.update(json.dumps(list(texts)).encode())
    return h.hexdigest()[:16]


def _meta(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in _TEXT_COLS if c in df.columns]).reset_index(drop=True)


def _load_cached(cache_dir: Path, name: str, key: str) -> TextScores | None:
    try:
        s = TextScores.load(cache_dir, name)
    except (FileNotFoundError, ValueError, KeyError):
        return None
    return s if s.metadata.get("input_key") == key else None


def _score_cached(scorer, cache_dir, name, cands, refs, meta, status, rebuild) -> TextScores:
    key = _input_key(scorer, [cands], refs, meta)
    hit = None if rebuild else _load_cached(cache_dir, name, key)
    if hit is not None:
        status[name] = "cached"
        return hit
    res = scorer.score(cands, refs, meta=meta)
    res.metadata = {**res.metadata, "input_key": key}
    res.save(cache_dir, name)
    status[name] = "scored"
    return res


@dataclass
class EvalResults:
    """Every score of a run (percent), as cached under ``<run_dir>/eval``.

    Attributes
    ----------
    model, noda, baseline, ceiling : TextScores or None
        fMRI2Text of each decoder against Video2Text, per trial.
    upper : TextScores or None
        Video2Text (candidate) against the true description (reference), per evaluation trial.
    chance : ChanceResult or None
        Aggregates per shuffle (and per subject) of the chance decodings.
    chance_trials : TextScores or None
        Per-trial scores of every shuffle (column ``draw``), for distributions.
    status : dict
        name -> ``cached`` or ``scored``.
    """

    model: TextScores
    noda: TextScores | None = None
    chance: ChanceResult | None = None
    chance_trials: TextScores | None = None
    baseline: TextScores | None = None
    ceiling: TextScores | None = None
    upper: TextScores | None = None
    profile: str = ""
    eval_cfg: object = None
    seed: int = 0
    status: dict = field(default_factory=dict)
    no_brain: TextScores | None = None
    constant: TextScores | None = None
    semantic: TextScores | None = None
    semantic_chance: ChanceResult | None = None

    def conditions(self) -> dict:
        """Non-empty results by condition key (the keys of :data:`CONDITION_ORDER`)."""
        return {k: getattr(self, k) for k in ("chance", "baseline", "model", "noda", "ceiling",
                                              "upper") + EXTRA_CONTROLS
                if getattr(self, k) is not None}

    @property
    def metadata(self) -> dict:
        """Metric settings (BERTScore model, layers, BLEU signature ...) behind the numbers."""
        return {k: v for k, v in self.model.metadata.items() if k != "input_key"}


def score_run(cfg, *, scorer: TextScorer | None = None, results: Stage2Results | None = None,
              rebuild: bool = False, cache_dir: str | os.PathLike | None = None) -> EvalResults:
    """Score every saved Stage II result of a run, reusing cached scores.

    Parameters
    ----------
    cfg : Config
        ``run_dir`` (where the results are), ``eval`` (metric settings), ``profile``.
    scorer : TextScorer, optional
        Default ``TextScorer(cfg.eval)``. The BERTScore model loads only if something has to be
        scored (once per process).
    results : Stage2Results, optional
        Default :func:`load_stage2_results` (``cfg``).
    rebuild : bool
        Score again even when the cache matches.
    cache_dir : path, optional
        Default ``<run_dir>/eval``.

    Returns
    -------
    EvalResults
        Cached scores are reused when the texts and metric settings are unchanged; any change
        of a TSV (or of ``eval.*`` metric settings) re-scores that condition only.
    """
    scorer = scorer if scorer is not None else TextScorer(cfg.eval)
    res = results if results is not None else load_stage2_results(cfg)
    cache = Path(cache_dir) if cache_dir is not None else Path(cfg.run_dir) / "eval"
    status: dict = {}
    out = EvalResults(model=None,  # type: ignore[arg-type]  # set just below
                      profile=getattr(cfg, "profile", ""), eval_cfg=scorer.cfg,
                      seed=int(getattr(getattr(cfg, "run", None), "seed", 0)), status=status)
    for cond in ("model", "noda", "baseline", "ceiling") + EXTRA_CONTROLS:
        df = getattr(res, cond, None)
        if df is not None:
            setattr(out, cond, _score_cached(scorer, cache, cond, df["fmri2text"].tolist(),
                                             df["video2text"].tolist(), _meta(df), status,
                                             rebuild))
    model = res.model
    if res.descriptions is not None:
        found = model["stim_file"].isin(res.descriptions.index).to_numpy()
        if found.any():
            sub = model[found].reset_index(drop=True)
            out.upper = _score_cached(scorer, cache, "upper", sub["video2text"].tolist(),
                                      res.descriptions.loc[sub["stim_file"]].tolist(), _meta(sub),
                                      status, rebuild)
    if len(res.chance) >= 2:
        out.chance, out.chance_trials = _chance_cached(scorer, cache, res.chance, model, status,
                                                       rebuild)
    elif len(res.chance) == 1:
        status["chance"] = "skipped: one shuffle cannot give an interval (stage2 n_shuffles >= 2)"
    sem = getattr(res, "semantic_chance", None) or []
    if len(sem) >= 2:
        out.semantic_chance, _ = _chance_cached(scorer, cache, sem, model, status, rebuild,
                                                name="semantic_chance")
    elif len(sem) == 1:
        status["semantic_chance"] = "skipped: one shuffle cannot give an interval"
    return out


def _chance_cached(scorer, cache, chance_frames, model, status, rebuild, name="chance"):
    refs = model["video2text"].tolist()
    meta = _meta(model)
    cands = [c["fmri2text"].tolist() for c in chance_frames]
    c = scorer.cfg
    key = _input_key(scorer, cands, refs, meta, extra=dict(alpha=c.ci_alpha, total=c.total_row))
    if not rebuild:
        per = _load_cached(cache, f"{name}_trials", key)
        try:
            ch = ChanceResult.load(cache, name)
        except FileNotFoundError:
            ch = None
        if per is not None and ch is not None and ch.metadata.get("input_key") == key:
            status[name] = "cached"
            return ch, per
    scores = scorer.score_many(cands, refs, meta=meta)
    md = {**scores[0].metadata, "input_key": key}
    ch = _chance_from_scores(scores, "fmri_shuffle", c.ci_alpha, c.total_row, "subject", None,
                             {"n_draws": len(scores), "total": c.total_row, **md})
    ch.save(cache, name)
    per = TextScores(pd.concat([s.per_trial.assign(draw=k) for k, s in enumerate(scores)],
                               ignore_index=True), {}, md)
    per.save(cache, f"{name}_trials")
    status[name] = "scored"
    return ch, per
