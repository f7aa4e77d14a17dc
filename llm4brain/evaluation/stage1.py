"""Evaluation of Stage I: identification of each trial's clip, beside a ridge baseline.

Top-1 / top-5 identification of each trial's clip among ``N`` candidates (chance k/N,
permutation p-value) on held-out runs of training subjects and on the **evaluation** trials of
target subjects (read through :func:`llm4brain.training.guard.target_evaluation_view`: their
clips are used for scoring only), beside a ridge baseline (mask voxels averaged over the
block's volumes -> pooled video embedding, alpha by leave-one-out CV on training trials).
Results go to ``<run_dir>/results/stage1`` (:func:`stage1_results_dir`).
"""
from __future__ import annotations

from collections.abc import Mapping

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import save_npz, write_csv, write_json
from ..config import save_config
from ..data import voxel_features
from ..models.stage1 import Stage1Model, VideoInputs, embed_clips, embed_fmri
from ..training.guard import source_view, target_evaluation_view
from ..training.losses import pool_tokens
from ..training.stage1 import stage1_run_name
from .retrieval import permutation_test, retrieval_accuracy
from ..models.ridge import RidgeCV

__all__ = ["stage1_reading", "voxel_features", "stage1_results_dir", "Stage1Evaluation", "evaluate_stage1",
           "load_stage1_results", "paired_top1_test"]


def stage1_results_dir(cfg) -> Path:
    """``<run_dir>/results/stage1``."""
    return Path(cfg.run_dir) / "results" / "stage1"


@dataclass
class Stage1Evaluation:
    """Retrieval of Stage I and of the ridge baseline.

    Attributes
    ----------
    retrieval : DataFrame
        One row per (split, subject or ``all``, method): top1, top5, chance_top1,
        chance_top5, p_value (top-1 permutation test), n_trials, n_candidates.
    embeddings : dict of split -> dict
        ``z`` (n, H) pooled fMRI embedding, ``x`` (n, H) pooled video embedding, ``ridge``
        (n, H) ridge prediction (val / eval), ``meta`` DataFrame (subject, class_id,
        class_name, stim_file, clip_id, row).
    ridge_alpha : float
        Alpha chosen by cross-validation.
    paths : dict of str -> Path
        Files written.
    """

    retrieval: pd.DataFrame
    embeddings: dict
    ridge_alpha: float
    paths: dict = field(default_factory=dict)


def _meta(view) -> pd.DataFrame:
    return pd.DataFrame(dict(subject=view.subject, class_id=view.class_id,
                             class_name=view.class_name, stim_file=view.stim_file,
                             clip_id=view.clip_id, row=view.rows))


def paired_top1_test(correct_a, correct_b) -> float:
    """One-sided exact McNemar test that method A identifies more trials than method B on the
    same trials and distractors: binomial on the discordant trials (A right and B wrong vs
    the reverse), ``p = P(X >= n_AB | n_AB + n_BA, 1/2)``; 1.0 with no discordant trial."""
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired_top1_test: {a.shape} vs {b.shape} trials")
    ab, ba = int((a & ~b).sum()), int((~a & b).sum())
    return 1.0 if ab + ba == 0 else float(binomtest(ab, ab + ba, 0.5,
                                                     alternative="greater").pvalue)


def _retrieval_rows(split: str, method: str, pred: np.ndarray, cand: np.ndarray,
                    meta: pd.DataFrame, n_candidates: int, n_perm: int, seed: int,
                    metric: str = "cosine", ranks: dict | None = None,
                    raw: tuple | None = None) -> list[dict]:
    """Rows of ``method`` for all trials and each subject; ``ranks[(split, method, who)]``
    receives each trial's rank of its own clip (for the paired tests). ``raw``: the
    uncentred ``(pred, cand)``, scored against the same distractors as ``top1_uncentred``."""
    rows = []
    groups = [("all", np.arange(len(meta)))] + [
        (str(s), np.flatnonzero(meta["subject"].astype(str).to_numpy() == s))
        for s in sorted(meta["subject"].astype(str).unique())]
    for who, idx in groups:
        n_cand = min(n_candidates, len(np.unique(meta["stim_file"].to_numpy()[idx])))
        if n_cand < 2:
            continue
        ks = tuple(sorted({1, min(5, n_cand)}))
        clips = meta["stim_file"].to_numpy()[idx]
        acc = retrieval_accuracy(pred[idx], cand[idx], n_cand, k=ks, rng=seed, groups=clips,
                                 metric=metric)
        perm = permutation_test(pred[idx], cand[idx], n_cand, k=1, n_permutations=n_perm,
                                rng=seed, groups=clips, metric=metric)
        if ranks is not None:
            ranks[(split, method, who)] = acc["ranks"]
        unc = (retrieval_accuracy(raw[0][idx], raw[1][idx], n_cand, k=(1,), rng=seed,
                                  groups=clips, metric=metric)["top1"] if raw is not None
               else acc["top1"])
        rows.append(dict(split=split, subject=who, method=method, top1=acc["top1"],
                         top1_uncentred=unc,
                         top5=acc.get("top5", acc[f"top{ks[-1]}"]),
                         chance_top1=acc["chance_top1"],
                         chance_top5=acc.get("chance_top5", acc[f"chance_top{ks[-1]}"]),
                         p_value=perm["p_value"], n_trials=len(idx), n_candidates=n_cand))
    return rows


def _has_ground_truth(cfg) -> bool:
    d = Path(cfg.data_root) / "derivatives" / "simulation"
    return d.is_dir() and any(d.glob("sub-*_groundtruth.npz"))


def ceiling_features(cfg, tc, views: dict) -> dict | None:
    """The inputs of the identification ceiling (simulated data only; ``None`` otherwise).

    The simulator's true encoding model gives every trial's **noise-free** response
    (:func:`llm4brain.sim.noise_free_trial_blocks`, in the units of the z-scored data). The
    best identifier there can be compares a trial's *measured* response with the noise-free
    responses of the candidate clips (in this subject: the truth knows its tuning exactly)
    on the voxels that respond at all: what is left between it and 100 % is what the
    measurement noise takes, whatever the decoder. Both sides are centred on the training
    trials' means (measured and noise-free). Returns ``{split: (measured, noise_free)}`` for
    ``val`` and ``eval``."""
    from .. import sim

    if not _has_ground_truth(cfg):
        return None
    nf = {k: voxel_features(lambda pos, b=sim.noise_free_trial_blocks(cfg, tc, v.rows): b[pos],
                            len(v), tc.mask) for k, v in views.items()}
    meas = {k: voxel_features(v.blocks, len(v), tc.mask) for k, v in views.items()}
    live = nf["train"].std(0) > 1e-6
    mt, nt = meas["train"][:, live].mean(0), nf["train"][:, live].mean(0)
    return {k: (meas[k][:, live] - mt, nf[k][:, live] - nt) for k in ("val", "eval")}


def evaluate_stage1(cfg, model: Stage1Model, tc, splits, video: VideoInputs, *,
                    save: bool = True, progress: bool = True, semantic=None,
                    ceiling: bool = True) -> Stage1Evaluation:
    """Retrieval of Stage I and of the ridge baseline; results written to ``results/stage1``.

    ``semantic``: a :class:`llm4brain.evaluation.semantic.SemanticRetrieval`
    (:func:`~llm4brain.evaluation.semantic.fit_semantic_retrieval`) adds the rows of method
    ``semantic`` (class and scene posteriors of fMRI and clips, dot product) against the same
    distractors. Every non-ridge row carries ``p_vs_ridge``, the one-sided exact McNemar test
    (:func:`paired_top1_test`) that it identifies more of the same trials than the ridge.
    ``ceiling`` (simulated data): rows of method ``ceiling``, the true encoding model's
    identification of the same trials against the same distractors (:func:`ceiling_features`).

    Splits scored: ``val`` (held-out runs of training subjects) and ``eval`` (target
    subjects' evaluation trials, :func:`~llm4brain.training.guard.target_evaluation_view`).
    Both methods are scored against the same candidates (pooled Stage I video embeddings)
    with the same distractors (seed ``cfg.run.seed``).

    Files: ``retrieval.csv``, ``summary.json`` (settings, ridge alpha, target numbers),
    ``embeddings.npz`` (per split: ``<split>_z``, ``<split>_x``, ``<split>_ridge``,
    ``<split>_rows``, ``train_mean_x``, ``train_mean_z``) and ``embeddings_meta.tsv``.

    Scoring is the centred cosine, as the field scores identification: every embedding is
    scored and saved minus the **training** trials' mean (video embeddings and ridge
    predictions minus the video one, fMRI embeddings minus the fMRI one; nothing of the
    targets enters the centre). Pooled video tokens share a large common component (pairwise
    cosines 0.5-0.99), which the raw cosine mostly sees; the raw figure stays beside it as
    ``top1_uncentred``. The semantic read-out compares class and scene posteriors by their dot
    product, which has no common component to remove (its two columns agree).
    """
    s = cfg.stage1
    views = {"train": source_view(tc, splits, "train"), "val": source_view(tc, splits, "val"),
             "eval": target_evaluation_view(tc, splits)}
    emb: dict[str, dict] = {}
    for split, view in views.items():
        z = embed_fmri(model, view.blocks, len(view), s.eval_batch_size, progress)
        x = embed_clips(model, video, view.stim_file, s.eval_batch_size)
        emb[split] = dict(z=pool_tokens(z, s.pool).numpy(), x=pool_tokens(x, s.pool).numpy(),
                          meta=_meta(view))
    # ridge baseline: voxels -> pooled video embedding, alpha by CV on training trials
    X = {k: voxel_features(v.blocks, len(v), tc.mask) for k, v in views.items()}
    ridge = RidgeCV(alphas=s.ridge_alphas, cv=s.ridge_cv).fit(X["train"], emb["train"]["x"])
    for split in ("val", "eval"):
        emb[split]["ridge"] = ridge.predict(X[split]).astype(np.float32)
    raw = {k: {f: e[f].copy() for f in ("x", "z", "ridge") if f in e} for k, e in emb.items()}
    mx, mz = emb["train"]["x"].mean(0), emb["train"]["z"].mean(0)
    for e in emb.values():      # centred cosine: every embedding minus its training trials' mean
        e["x"], e["z"] = e["x"] - mx, e["z"] - mz
        if "ridge" in e:
            e["ridge"] = e["ridge"] - mx
    ceil = ceiling_features(cfg, tc, views) if ceiling else None
    rows, ranks = [], {}
    for split in ("val", "eval"):
        e, r = emb[split], raw[split]
        for method, pred, rp in (("stage1", e["z"], r["z"]), ("ridge", e["ridge"], r["ridge"])):
            rows += _retrieval_rows(split, method, pred, e["x"], e["meta"], s.n_candidates,
                                    s.n_permutations, cfg.run.seed, ranks=ranks,
                                    raw=(rp, r["x"]))
        if ceil is not None:
            rows += _retrieval_rows(split, "ceiling", *ceil[split], e["meta"], s.n_candidates,
                                    s.n_permutations, cfg.run.seed, ranks=ranks)
        if semantic is not None:
            e["semantic_fmri"] = semantic.fmri(X[split]).astype(np.float32)
            e["semantic_clips"] = semantic.clips(views[split].stim_file).astype(np.float32)
            rows += _retrieval_rows(split, "semantic", e["semantic_fmri"], e["semantic_clips"],
                                    e["meta"], s.n_candidates, s.n_permutations, cfg.run.seed,
                                    metric="dot", ranks=ranks)
    for r in rows:
        if r["method"] not in ("ridge", "ceiling"):
            r["p_vs_ridge"] = paired_top1_test(ranks[(r["split"], r["method"], r["subject"])] < 1,
                                               ranks[(r["split"], "ridge", r["subject"])] < 1)
    table = pd.DataFrame(rows)
    out = Stage1Evaluation(table, emb, float(np.atleast_1d(ridge.alpha_)[0]))
    if save:
        d = stage1_results_dir(cfg)
        d.mkdir(parents=True, exist_ok=True)
        write_csv(table, d / "retrieval.csv", index=False)
        arrays = {}
        for split, e in emb.items():
            for key in ("z", "x", "ridge", "semantic_fmri", "semantic_clips"):
                if key in e:
                    arrays[f"{split}_{key}"] = e[key]
            arrays[f"{split}_rows"] = e["meta"]["row"].to_numpy()
        arrays["train_mean_x"], arrays["train_mean_z"] = mx, mz
        save_npz(d / "embeddings.npz", **arrays)
        write_csv(pd.concat([e["meta"].assign(split=k) for k, e in emb.items()]),
                  d / "embeddings_meta.tsv", sep="\t", index=False)
        tgt = table[(table.split == "eval") & (table.subject == "all")].set_index("method")
        summary = dict(run_name=stage1_run_name(cfg), ridge_alpha=out.ridge_alpha,
                       n_candidates=s.n_candidates, n_permutations=s.n_permutations,
                       similarity="cosine centred on the training trials' means",
                       target=tgt[["top1", "top1_uncentred", "top5", "chance_top1", "p_value",
                                   "n_trials"]]
                       .to_dict(orient="index"))
        write_json(d / "summary.json", summary, indent=1, default=float)
        save_config(cfg, d)
        out.paths = {k: d / f for k, f in (("retrieval", "retrieval.csv"),
                                           ("embeddings", "embeddings.npz"),
                                           ("meta", "embeddings_meta.tsv"),
                                           ("summary", "summary.json"))}
    return out


def load_stage1_results(cfg) -> tuple[dict, pd.DataFrame]:
    """``(arrays, meta)`` saved by :func:`evaluate_stage1` (``embeddings.npz`` and its TSV).

    Raises
    ------
    FileNotFoundError
        When notebook 03 has not written them for this profile.
    """
    d = stage1_results_dir(cfg)
    if not (d / "embeddings.npz").is_file():
        raise FileNotFoundError(f"no Stage I results in {d}: run notebook 03_stage1_alignment")
    with np.load(d / "embeddings.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = pd.read_csv(d / "embeddings_meta.tsv", sep="\t", dtype={"subject": str},
                       keep_default_na=False)
    return arrays, meta


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def stage1_reading(summary: Mapping, alpha: float = 0.01) -> str:
    """Notebook 03's conclusion in words, from its summary (``notebook_summary.json``).

    Every number is read from ``summary`` (keys ``target_top1_<method>``, ``p_value_<method>``,
    ``p_vs_ridge_<method>``, ``chance_top1``, ``n_trials``; ``semantic`` optional), so the text
    cannot drift from the table; ``alpha`` is the level at which a decoder counts as above
    chance or ahead of the ridge.
    """
    need = ("target_top1_stage1", "target_top1_ridge", "p_value_stage1", "p_value_ridge",
            "chance_top1", "n_trials", "p_vs_ridge_stage1")
    missing = [k for k in need if k not in summary]
    if missing:
        raise KeyError(f"stage1_reading: the summary lacks {missing} (written by notebook 03)")
    n, chance = int(summary["n_trials"]), float(summary["chance_top1"])
    k = int(round(1 / chance)) if chance > 0 else 0

    def verdict(method: str) -> str:
        top, p = float(summary[f"target_top1_{method}"]), float(summary[f"p_value_{method}"])
        where = "above chance" if p < alpha else "not distinguishable from chance"
        return f"{_pct(top)} ({_p(p)} against chance: {where})"

    st, rg = float(summary["target_top1_stage1"]), float(summary["target_top1_ridge"])
    pv = float(summary["p_vs_ridge_stage1"])
    if pv < alpha:
        versus = "ahead of" if st > rg else "behind"
    else:
        versus = "not distinguishable from"
    parts = [f"**Conclusion.** On the {n} evaluation trials of the target subjects, Stage I "
             f"picks the shown clip among {k} candidates in {verdict('stage1')}; chance is "
             f"{_pct(chance)}. The ridge from the voxels reads {verdict('ridge')}, and Stage I "
             f"is {versus} it (paired test, {_p(pv)})."]
    if "target_top1_semantic" in summary:
        ps = float(summary.get("p_vs_ridge_semantic", float("nan")))
        parts.append(f"The semantic read-out (class and scene from selective voxels) reads "
                     f"{verdict('semantic')}" + (f", against the ridge {_p(ps)}." if ps == ps else "."))
    return " ".join(parts)

