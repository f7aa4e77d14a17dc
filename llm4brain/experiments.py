"""Experiments over settings and seeds: pseudo-target tuning and the ablation table.

Drivers that train and score many runs, used by the notebooks ``tune_pseudo_target`` (``make
tune``) and ``ablations`` (``make ablations``). They sit above :mod:`llm4brain.training` and
:mod:`llm4brain.evaluation` and import both; neither imports this module.

* :func:`tune_stage1`, :func:`tune_stage2` — candidates (dotted overrides) on the
  **pseudo-target** (:mod:`llm4brain.training.tuning`): the real targets are sealed;
* :func:`run_ablations` — rows of Table 3 on the **target subjects** (their evaluation trials,
  scored once), each over training seeds; :func:`score_decodes` scores any decoding table
  (BERTScore vs Video2Text, attributes vs the simulator's truth, distinct answers).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from .config import load_config
from .data import load_splits, load_trial_cache
from .evaluation.attributes import AttributeParser, attribute_correct, truth_frame
from .evaluation.baselines import nearest_training_answers
from .evaluation.decoding import build_eval_set, chance_decodes, decode_eval_set
from .evaluation.stage1 import evaluate_stage1
from .models.stage2 import zero_shot_model
from .training.mae import load_pretrained_mae
from .training.stage1 import stage1_run_name, train_stage1
from .training.stage2 import build_stage2_data, stage2_run_name, train_stage2
from .training.tuning import pseudo_run_name, pseudo_target_splits, sealed_cache, with_overrides
from .training.vlpretrain import load_video_llm, video_features

__all__ = ["ExperimentInputs", "experiment_inputs", "tune_stage1", "tune_stage2",
           "run_ablations", "score_decodes"]


@dataclass
class ExperimentInputs:
    """What every experiment on a finished run reads: its config, trial cache, splits,
    pretrained video-LLM and frame-feature cache."""

    cfg: object
    tc: object
    splits: object
    vlm: object
    features: object


def experiment_inputs(profile: str = "default") -> ExperimentInputs:
    """The inputs of :func:`tune_stage1` / :func:`tune_stage2` from a profile's finished run
    (``make reproduce`` first: it raises naming the missing file otherwise)."""
    cfg = load_config(profile)
    return ExperimentInputs(cfg, load_trial_cache(cfg), load_splits(cfg.run_dir / "splits.json"),
                            load_video_llm(cfg), video_features(cfg, progress=False))


def _retrieval_summary(ev, candidate: str, seed: int) -> list[dict]:
    t = ev.retrieval[ev.retrieval["subject"] == "all"]
    return [dict(candidate=candidate, seed=seed,
                 split={"val": "training held-out runs", "eval": "pseudo-target"}[r.split],
                 method=r.method, top1=100 * r.top1, top5=100 * r.top5,
                 chance_top1=100 * r.chance_top1, p_value=r.p_value, n_trials=r.n_trials)
            for r in t.itertuples()]


def tune_stage1(cfg, tc, splits, candidates: dict, *, seeds=(0,), pseudo_target=None,
                vlm=None, features=None, mae=None, progress: bool = True):
    """Train and score every Stage I candidate on the pseudo-target.

    Parameters
    ----------
    candidates : dict name -> dotted overrides (``{}`` = the profile as it is)
    seeds : training seeds (``run.seed``) per candidate

    Returns
    -------
    (DataFrame, dict)
        Rows ``candidate, seed, split, method, top1, top5, chance_top1, p_value, n_trials``
        (percent; ``split`` is the training subjects' held-out runs or the pseudo-target,
        ``method`` stage1 or ridge) and the trained Stage I models by ``(candidate, seed)``.
    """
    ps = pseudo_target_splits(tc.trials, splits, cfg, pseudo_target)
    sc = sealed_cache(tc, splits)
    rows, models = [], {}
    for name, over in candidates.items():
        for seed in seeds:
            c = with_overrides(cfg, over, seed)
            res = train_stage1(c, sc, ps, vlm=vlm, features=features, mae=mae,
                               progress=progress,
                               name=pseudo_run_name(stage1_run_name(c), ps))
            ev = evaluate_stage1(c, res.model, sc, ps, res.video, save=False, progress=False)
            rows += _retrieval_summary(ev, name, seed)
            models[(name, seed)] = (res, ev)
    return pd.DataFrame(rows), models


def _pseudo_nn_texts(ev, eval_set, captions) -> list[str]:
    """Ridge + nearest-neighbour captions of the pseudo-target (Stage I's ridge)."""
    meta = pd.concat([e["meta"].assign(split=k) for k, e in ev.embeddings.items()],
                     ignore_index=True)
    arrays = {"train_x": ev.embeddings["train"]["x"]}
    pos = {int(r): i for i, r in enumerate(ev.embeddings["eval"]["meta"]["row"])}
    P = ev.embeddings["eval"]["ridge"][[pos[int(r)] for r in eval_set.table["trial_index"]]]
    return nearest_training_answers(P, arrays, meta, eval_set, captions, True)


def tune_stage2(cfg, tc, splits, captions, stim, candidates: dict, *, seeds=(0, 1, 2),
                seed_key: str = "stage2.seed", pseudo_target=None, vlm=None, features=None,
                mae=None, scorer=None, zero_shot: bool = False, progress: bool = True):
    """Stage II candidates (e.g. DA on / off) on the pseudo-target, each over ``seeds``.

    Each (candidate, seed) trains Stage I (the candidate's settings; one model for all seeds
    with the default ``seed_key="stage2.seed"``, one per seed with ``"run.seed"``) and
    Stage II on the other training subjects, with the pseudo-target's adaptation runs as DA's unlabelled
    target, and decodes the pseudo-target's scored runs. Scores: attribute accuracy against
    the simulator's truth (agent, action, scene, all), its shuffled-fMRI chance (one
    derangement of the fMRI tokens), distinct answers, and BERTScore against Video2Text when
    a ``scorer`` (:class:`llm4brain.evaluation.metrics.TextScorer`) is given; the ridge + NN
    baseline once per seed. With ``zero_shot``, also the candidate's Stage I tokens read
    through the video-LLM's own projection, with no Stage II training (condition
    ``zero-shot``, and its shuffled fMRI: ``zero-shot, shuffled fMRI``), once per Stage I.

    Returns
    -------
    (DataFrame, dict)
        Rows ``candidate, seed, condition, metric, value`` and the decoding tables by
        ``(candidate, seed)``.
    """
    ps = pseudo_target_splits(tc.trials, splits, cfg, pseudo_target)
    sc = sealed_cache(tc, splits)
    parser = AttributeParser()
    rows, tables = [], {}
    s1_cache: dict = {}
    zero_done: set = set()          # Stage I run names whose zero-shot decode is scored

    def score(cand, seed, cond, texts, truth, refs):
        ok = attribute_correct(parser.frame(list(texts)), truth)
        out = [dict(candidate=cand, seed=seed, condition=cond, metric=a,
                    value=100 * float(ok[a].mean())) for a in
               ("agent", "action", "scene", "agent+action", "all") if a in ok]
        out.append(dict(candidate=cand, seed=seed, condition=cond, metric="distinct",
                        value=float(len(set(" ".join(str(t).split()).lower() for t in texts)))))
        if scorer is not None:
            out.append(dict(candidate=cand, seed=seed, condition=cond, metric="bertscore",
                            value=float(scorer.score(list(texts), refs).aggregate["bertscore"])))
        return out

    if seed_key not in ("stage2.seed", "run.seed"):
        raise ValueError(f"seed_key must be 'stage2.seed' or 'run.seed', got {seed_key!r}")
    for name, over in candidates.items():
        for seed in seeds:
            c = with_overrides(cfg, {**over, seed_key: int(seed)})
            key1 = stage1_run_name(c)
            if key1 not in s1_cache:
                _, m = tune_stage1(c, tc, splits, {name: {}}, seeds=(c.run.seed,),
                                   pseudo_target=pseudo_target, vlm=vlm, features=features,
                                   mae=mae, progress=progress)
                s1_cache[key1] = m[(name, c.run.seed)]
            res1, ev1 = s1_cache[key1]
            s1 = res1.model
            data = build_stage2_data(c, s1, sc, ps, captions)
            da = c.stage2.domain_adaptation
            r2 = train_stage2(c, data, vlm.llm, vlm.branch.proj, domain_adaptation=da,
                              progress=progress,
                              name=pseudo_run_name(stage2_run_name(c, da), ps))
            es = build_eval_set(c, s1, sc, ps, captions)
            truth = truth_frame(stim, es.table["stim_file"].tolist())
            refs = es.table["video2text"].tolist()
            dec = decode_eval_set(r2.model, es, seed=seed, progress=progress)
            sh = chance_decodes(r2.model, es, 1, seed=seed, progress=progress)[0]
            rows += score(name, seed, "fMRI2Text", dec["fmri2text"], truth, refs)
            rows += score(name, seed, "shuffled fMRI", sh["fmri2text"], truth, refs)
            if zero_shot and key1 not in zero_done:
                zero_done.add(key1)
                z0 = zero_shot_model(c, vlm)
                zd = decode_eval_set(z0, es, seed=seed, progress=progress)
                zs = chance_decodes(z0, es, 1, seed=seed, progress=progress)[0]
                rows += score(name, seed, "zero-shot", zd["fmri2text"], truth, refs)
                rows += score(name, seed, "zero-shot, shuffled fMRI", zs["fmri2text"], truth, refs)
                tables[(f"{name} (zero-shot)", seed)] = zd
            if (key1, "nn") not in s1_cache:
                s1_cache[(key1, "nn")] = _pseudo_nn_texts(ev1, es, captions)
                rows += score("(baseline)", seed, "ridge + NN", s1_cache[(key1, "nn")],
                              truth, refs)
            tables[(name, seed)] = dec
    return pd.DataFrame(rows), tables


# ============================================================================ ablations
def score_decodes(df: pd.DataFrame, stim: pd.DataFrame, scorer=None, parser=None) -> dict:
    """BERTScore against Video2Text (when ``scorer`` is given), attribute accuracy (%) against
    the simulator's truth (agent, action, scene, all) and distinct answers of one decoding
    table (:data:`llm4brain.evaluation.stage2_results.DECODE_COLUMNS`)."""
    parser = parser or AttributeParser()
    df = df.sort_values(["subject", "trial_index"]).reset_index(drop=True)
    texts = df["fmri2text"].astype(str).tolist()
    ok = attribute_correct(parser.frame(texts), truth_frame(stim, df["stim_file"].tolist()))
    out = {a: 100 * float(ok[a].mean()) for a in ("agent", "action", "scene", "all") if a in ok}
    out["distinct"] = float(len({" ".join(t.lower().split()) for t in texts}))
    if scorer is not None:
        out["bertscore"] = float(scorer.score(texts, df["video2text"].astype(str).tolist())
                                 .aggregate["bertscore"])
    return out


def run_ablations(cfg, tc, splits, captions, rows: dict, *, seeds=(0, 1, 2), vlm=None,
                  features=None, mae_for=None, progress: bool = False, on_done=None) -> dict:
    """Train and decode every ablation row for every training seed (``run.seed``).

    Parameters
    ----------
    rows : dict name -> dotted overrides (``{}`` = the profile)
    mae_for : callable ``tokenizer kind -> MaskedBrainModel``; the pretrained MAE each row
        starts from (shared by seeds; default: loaded once per kind with the profile's seed)
    on_done : callable ``(row, seed, decodes, seconds, trained)``, optional (progress, files)

    Returns
    -------
    dict (row, seed) -> decoding DataFrame of the target subjects' evaluation trials.
    Finished runs are reloaded (same names as notebooks 03 and 05 for the profile's own
    settings), so the ``full`` row with the profile's seed costs no training.
    """
    maes: dict = {}

    def default_mae(kind):
        if kind not in maes:
            maes[kind] = load_pretrained_mae(cfg.replace(tokenizer__kind=kind), tc.block_shape,
                                             tc.mask, tc.affine)
        return maes[kind]

    mae_for = mae_for or default_mae
    out = {}
    for row, over in rows.items():
        for seed in seeds:
            t0 = time.time()
            c = with_overrides(cfg, over, seed)
            r1 = train_stage1(c, tc, splits, vlm=vlm, features=features,
                              mae=mae_for(c.tokenizer.kind), progress=progress)
            data = build_stage2_data(c, r1.model, tc, splits, captions)
            r2 = train_stage2(c, data, vlm.llm, vlm.branch.proj,
                              domain_adaptation=c.stage2.domain_adaptation, progress=progress)
            es = build_eval_set(c, r1.model, tc, splits, captions)
            out[(row, seed)] = decode_eval_set(r2.model, es, seed=seed, progress=progress)
            if on_done is not None:
                on_done(row, seed, out[(row, seed)], time.time() - t0,
                        bool(r1.trained or r2.trained))
    return out
