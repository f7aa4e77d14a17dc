"""The semantic read-out decoder: voxels -> class (and scene) -> prototype video tokens -> the
video-LLM. A decoder that goes through the frozen LLM without any Stage I or Stage II training.

For each label of ``eval.semantic_labels`` (``class``, and on the simulated data ``scene``) a
logistic read-out is fitted on the training subjects' training trials: mask voxels averaged
over the block's volumes, standardised, the ``k`` voxels whose one-way ANOVA F of the label is
largest on the fitting trials (``k = 0``: every voxel, then PCA to ``eval.semantic_pca``
components), standardised, logistic regression; ``k`` from ``eval.semantic_voxels`` and C from
``eval.semantic_cs`` are chosen together by leave-one-subject-out accuracy over the training
subjects (the selection is refitted inside every fold), then the read-out is refitted on them
all. Most mask voxels carry no stimulus signal: on the default profile keeping the 300 most
selective ones doubles the class read-out's leave-one-subject-out accuracy (18.5 -> 37.8 %,
chance 8.3 %; ``experiments/results/semantic_readout.md``). A target evaluation trial's most
probable class and scene pick the *prototype* video tokens: the mean video tokens (the video
Q-Former's outputs, before the projection into the LLM) of the training trials of that class,
plus the mean of those of that scene, minus the grand mean (the simulator draws scenes
independently of classes). The video-LLM's own projection (an untrained Stage II bridge)
carries them into the frozen LLM, which answers the trial's instruction.

Its chance level shuffles the read-outs across the evaluation trials of each subject (the same
derangements as the fMRI2Text chance decodes, :func:`llm4brain.evaluation.decoding.chance_decodes`).
Nothing here reads a target subject's video, caption or label: the evaluation trials give their
voxels only (:func:`llm4brain.training.guard.target_evaluation_view`).

Measured on two pseudo-targets (``experiments/semantic_readout.py``,
``experiments/results/semantic_readout.md``): with the voxel selection, the agent 27.5 / 36.7 %
against 19.4 / 16.4 % with the read-outs shuffled, the action 20.0 / 24.2 % against 8.9 / 7.5 %,
48 distinct answers of 120; answers from the posterior-weighted mean of the prototypes instead of
the most probable one collapse.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..data import clip_labels, voxel_features
from ..training.guard import source_view, target_adaptation_view, target_evaluation_view
from .baselines import noise_free_features
from .decoding import EvalSet, chance_permutation, decode_eval_set

__all__ = ["LabelReadout", "SemanticReadout", "fit_label_readout", "fit_semantic_readout",
           "semantic_decodes", "cross_fitted_predictions", "semantic_stage2_data",
           "semantic_eval_tokens", "semantic_readout_path", "SemanticRetrieval",
           "fit_semantic_retrieval", "noise_free_readout", "semantic_ceiling_decodes"]


@dataclass
class LabelReadout:
    """One label's logistic read-out: the fitted pipeline, its classes, the chosen C and number
    of voxels (0: all, with PCA) and the leave-one-subject-out accuracy of every candidate
    ``(n_voxels, C)`` (training subjects only)."""

    label: str
    model: object
    classes: np.ndarray
    C: float
    loso: dict[tuple[int, float], float]
    n_voxels: int = 0
    n_pca: int = 256

    def refit(self, X: np.ndarray, y: Sequence):
        """A fresh pipeline with this read-out's number of voxels and C, fitted on ``(X, y)``
        (e.g. the other subjects' trials, for cross-fitted predictions)."""
        X = np.asarray(X, np.float32)
        return _pipeline(self.C, self.n_pca, len(X), X.shape[1], self.n_voxels).fit(
            X, np.asarray(y).astype(str))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes[self.model.predict_proba(X).argmax(1)]


def _pipeline(C: float, n_pca: int, n: int, n_features: int, n_voxels: int = 0):
    if 0 < n_voxels < n_features:      # the most label-selective voxels, no PCA
        return make_pipeline(StandardScaler(), SelectKBest(f_classif, k=n_voxels),
                             StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    k = max(1, min(n_pca, n - 1, n_features))        # PCA needs k <= min(trials, features)
    return make_pipeline(StandardScaler(), PCA(k, random_state=0),
                         StandardScaler(), LogisticRegression(C=C, max_iter=2000))


def fit_label_readout(X: np.ndarray, y: Sequence, groups: Sequence, *, label: str = "class",
                      n_pca: int = 256, cs: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1),
                      n_voxels: Sequence[int] = (0,)) -> LabelReadout:
    """Logistic read-out of ``y`` from ``X`` (rows: trials); the number of voxels and C by
    leave-one-group-out.

    Parameters
    ----------
    X : array (n, V)
    y : labels (n,)
    groups : subject of each row (at least two distinct)
    label : name, for messages
    n_pca, cs : PCA components (capped at the training rows - 1 and at the features) and the
        candidate inverse regularisations
    n_voxels : candidate numbers of columns kept by the ANOVA F-test of ``y`` (fitted on each
        fold's training rows); 0 keeps every column and reduces them by PCA instead

    Raises
    ------
    ValueError
        Fewer than two groups or two classes, or rows that disagree in number.
    """
    X, y, groups = np.asarray(X, np.float32), np.asarray(y).astype(str), np.asarray(groups).astype(str)
    if not (len(X) == len(y) == len(groups)):
        raise ValueError(f"semantic read-out of {label}: {len(X)} rows of voxels, {len(y)} "
                         f"labels, {len(groups)} groups")
    if len(np.unique(groups)) < 2:
        raise ValueError(f"semantic read-out of {label}: C is chosen by leave-one-subject-out "
                         f"and needs at least two training subjects, got {sorted(set(groups))}")
    if len(np.unique(y)) < 2:
        raise ValueError(f"semantic read-out of {label}: the training trials hold one value "
                         f"({y[0]!r}); nothing to read out")
    if not cs:
        raise ValueError("semantic read-out: eval.semantic_cs is empty")
    if not n_voxels or min(n_voxels) < 0:
        raise ValueError(f"semantic read-out: eval.semantic_voxels = {list(n_voxels)}; give "
                         f"one or more counts >= 0 (0: every voxel, with PCA)")
    loso = {}
    for k in dict.fromkeys(int(v) for v in n_voxels):
        for c in cs:
            acc = []
            for g in np.unique(groups):
                tr, te = groups != g, groups == g
                m = _pipeline(c, n_pca, int(tr.sum()), X.shape[1], k).fit(X[tr], y[tr])
                acc.append(float((m.predict(X[te]) == y[te]).mean()))
            loso[(k, float(c))] = float(np.mean(acc))
    best = max(loso, key=loso.get)           # first of the best (the grid's order breaks ties)
    model = _pipeline(best[1], n_pca, len(X), X.shape[1], best[0]).fit(X, y)
    return LabelReadout(label, model, np.asarray(model.classes_), best[1], loso, best[0],
                        int(n_pca))


@dataclass
class SemanticReadout:
    """What :func:`fit_semantic_readout` returns.

    readouts : one :class:`LabelReadout` per label; prototypes : per label, a dict value ->
    mean video tokens (L, H) of its training trials; grand : mean video tokens of all training
    trials (L, H).
    """

    readouts: dict[str, LabelReadout]
    prototypes: dict[str, dict[str, torch.Tensor]]
    grand: torch.Tensor
    info: dict = field(default_factory=dict)

    def tokens(self, decoded: dict[str, Sequence[str]]) -> torch.Tensor:
        """Prototype tokens (n, L, H): the sum over labels of the decoded value's mean tokens,
        minus (labels - 1) grand means."""
        labels = list(self.readouts)
        n = len(decoded[labels[0]])
        out = -(len(labels) - 1) * self.grand.expand(n, *self.grand.shape).clone()
        for lab in labels:
            out += torch.stack([self.prototypes[lab][str(v)] for v in decoded[lab]])
        return out

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Most probable value of every label for voxel rows ``X``."""
        return {lab: r.predict(X) for lab, r in self.readouts.items()}


def _label_values(label: str, view, stim: pd.DataFrame | None) -> np.ndarray:
    return clip_labels(label, view, stim, "eval.semantic_labels")


@torch.no_grad()
def _video_tokens(vlm, features, stim_files: Sequence[str], batch_size: int) -> torch.Tensor:
    """Video Q-Former outputs (n, L, H) of clips (before the projection into the LLM)."""
    files = list(dict.fromkeys(str(s) for s in stim_files))
    dev = next(vlm.branch.parameters()).device
    was = vlm.branch.training
    vlm.branch.eval()
    try:
        per = torch.cat([vlm.branch.video_hidden(features.get(files[s:s + batch_size]).to(dev))
                         .float().cpu() for s in range(0, len(files), batch_size)])
    finally:
        vlm.branch.train(was)
    row = {f: i for i, f in enumerate(files)}
    return per[torch.as_tensor([row[str(s)] for s in stim_files])]


def semantic_readout_path(cfg, tc, splits):
    """Where :func:`fit_semantic_readout` keeps a fitted read-out with ``cache=True``:
    ``<run_dir>/cache/semantic-<key>.pt``, the key hashing the ``eval.semantic_*`` settings,
    the trial cache, the training rows and the video-LLM. None when the trial cache has no key
    (an in-memory cache, as in the tests)."""
    import hashlib

    from ..config import run_key
    from ..training.vlpretrain import video_llm_id

    meta = getattr(tc, "meta", None) or {}
    if "key" not in meta:
        return None
    e = cfg.eval
    rows = np.asarray(splits.train_idx, np.int64)
    key = dict(eval=dict(labels=list(e.semantic_labels), pca=e.semantic_pca,
                         cs=list(e.semantic_cs), voxels=list(e.semantic_voxels)),
               trials=str(meta["key"]), rows=hashlib.sha256(rows.tobytes()).hexdigest()[:16],
               vl=video_llm_id(cfg))
    return cfg.run_dir / "cache" / f"{run_key('semantic', key)}.pt"


def fit_semantic_readout(cfg, tc, splits, vlm, features, stim: pd.DataFrame | None = None,
                         *, cache: bool = False) -> SemanticReadout:
    """Fit the read-outs and prototypes on the training subjects' training trials.

    With ``cache`` the fitted read-out is saved under :func:`semantic_readout_path` and
    loaded from there by later calls with the same settings and trials (notebook 03 fits it
    for the semantic retrieval, notebook 05 reuses it for the decodes).

    Parameters
    ----------
    cfg : Config
        ``eval.semantic_labels`` / ``semantic_pca`` / ``semantic_cs``,
        ``stage1.eval_batch_size``.
    tc : TrialCache
    splits : Splits
    vlm : VideoLLM
        Its video branch gives the prototypes' tokens.
    features : FrameFeatureCache
        :func:`llm4brain.training.vlpretrain.video_features`.
    stim : DataFrame, optional
        The stimulus table (needed for labels other than ``class``).
    """
    path = semantic_readout_path(cfg, tc, splits) if cache else None
    if path is not None and path.is_file():
        return torch.load(path, weights_only=False)       # written by this function only
    e = cfg.eval
    labels = list(e.semantic_labels)
    if not labels or labels[0] != "class":
        raise ValueError(f"eval.semantic_labels = {labels}: the first label must be 'class'")
    sv = source_view(tc, splits, "train")
    bs = cfg.stage1.eval_batch_size
    X = voxel_features(sv.blocks, len(sv), tc.mask, batch_size=bs)
    groups = np.asarray(sv.subject).astype(str)
    Y = _video_tokens(vlm, features, list(np.asarray(sv.stim_file).astype(str)), bs)
    readouts, prototypes = {}, {}
    for lab in labels:
        y = _label_values(lab, sv, stim)
        r = fit_label_readout(X, y, groups, label=lab, n_pca=e.semantic_pca, cs=e.semantic_cs,
                              n_voxels=e.semantic_voxels)
        readouts[lab] = r
        prototypes[lab] = {str(v): Y[torch.as_tensor(y == v)].mean(0) for v in r.classes}
    info = {lab: dict(C=r.C, n_voxels=r.n_voxels, loso_accuracy=r.loso[(r.n_voxels, r.C)],
                      n_values=len(r.classes))
            for lab, r in readouts.items()}
    out = SemanticReadout(readouts, prototypes, Y.mean(0), info)
    if path is not None:
        from ..atomic import atomic_path

        with atomic_path(path) as tmp:
            torch.save(out, tmp)
    return out


def semantic_decodes(cfg, readout: SemanticReadout, model, tc, splits, eval_set: EvalSet,
                     n_shuffles: int, *, seed: int = 0, progress: bool = False
                     ) -> tuple[pd.DataFrame, list[pd.DataFrame], dict[str, np.ndarray]]:
    """Decode every target evaluation trial from its prototype tokens, and ``n_shuffles``
    times with the read-outs deranged within subject (shuffle ``k``: rng ``(seed, k)``).

    Parameters
    ----------
    model : Stage2Model
        An untrained bridge (:func:`llm4brain.models.stage2.zero_shot_model`): the video-LLM's
        own projection.
    eval_set : EvalSet
        Its rows must be the target evaluation view's, in order.

    Returns
    -------
    (decodes, shuffled decodes, decoded labels of each trial)
    """
    z, decoded = semantic_eval_tokens(cfg, readout, tc, splits, eval_set)
    out = decode_eval_set(model, eval_set, z=z, seed=seed,
                          progress=progress, desc="semantic read-out")
    shuffled = []
    for k in range(n_shuffles):
        perm = chance_permutation(eval_set, k, seed=seed)      # the fMRI2Text chance's shuffles
        z = readout.tokens({lab: v[perm] for lab, v in decoded.items()})
        shuffled.append(decode_eval_set(model, eval_set, z=z, seed=seed, progress=progress,
                                        desc=f"semantic chance {k}"))
    return out, shuffled, decoded


def cross_fitted_predictions(readout: SemanticReadout, X: np.ndarray, groups: Sequence,
                             labels: dict[str, Sequence]) -> dict[str, np.ndarray]:
    """Every group's rows decoded by read-outs fitted on the *other* groups (each label with
    its chosen number of voxels and C): predictions at the noise level of an unseen subject,
    for training a decoder on top of the read-out without teaching it in-sample confidence.

    Parameters
    ----------
    readout : SemanticReadout
    X : array (n, V) voxel rows
    groups : (n,) subject of each row (at least two distinct)
    labels : label -> (n,) values of each row (the read-outs' labels)
    """
    X, groups = np.asarray(X, np.float32), np.asarray(groups).astype(str)
    if len(np.unique(groups)) < 2:
        raise ValueError(f"cross-fitted read-outs need at least two subjects, got "
                         f"{sorted(set(groups))}")
    missing = sorted(set(readout.readouts) - set(labels))
    if missing:
        raise ValueError(f"cross_fitted_predictions: no values given for label(s) {missing}")
    out = {}
    for lab, r in readout.readouts.items():
        y = np.asarray(labels[lab]).astype(str)
        if len(y) != len(X):
            raise ValueError(f"cross_fitted_predictions: {len(X)} rows, {len(y)} {lab} values")
        pred = np.empty(len(X), dtype=object)
        for g in np.unique(groups):
            te = groups == g
            m = r.refit(X[~te], y[~te])
            pred[te] = m.classes_[m.predict_proba(X[te]).argmax(1)]
        unknown = set(pred) - set(r.classes)
        if unknown:      # a fold can miss a value the full read-out has; never the reverse
            raise ValueError(f"cross-fitted {lab} predictions {sorted(unknown)} have no prototype")
        out[lab] = pred.astype(str)
    return out


def semantic_stage2_data(cfg, readout: SemanticReadout, tc, splits, captions: pd.DataFrame,
                         stim: pd.DataFrame | None = None, *, cross_fit: bool = True,
                         true_labels: bool = False):
    """Stage II inputs whose fMRI tokens are the semantic read-out's prototype tokens.

    Source: the training subjects' training trials, each with the prototype tokens of its
    decoded class (and scene) — decoded by read-outs fitted on the *other* training subjects
    (``cross_fit``, the default: the tokens carry an unseen subject's errors, as the targets'
    will) or by the read-out itself (in-sample) — and its surrogate answer. With
    ``true_labels`` a training trial's tokens are the prototypes of its clip's *true* class
    (and scene) instead (training subjects' labels, which Stage II may read): the bridge then
    learns what a clean prototype should be answered with, not how to hedge against the
    read-out's errors. Target: the
    prototype tokens of the target subjects' unlabelled adaptation trials, read through
    :func:`~llm4brain.training.guard.target_adaptation_view`. Nothing of the targets but their
    adaptation fMRI is read.

    Returns
    -------
    :class:`llm4brain.training.stage2.Stage2Data`
    """
    from ..models.stage2 import stage2_seed
    from ..training.stage2 import TargetFeatures, source_stage2_data

    bs = cfg.stage1.eval_batch_size
    sv = source_view(tc, splits, "train")
    ys = ({lab: _label_values(lab, sv, stim) for lab in readout.readouts}
          if true_labels or cross_fit else None)
    if true_labels:             # no voxels read: the tokens are the labels' prototypes
        decoded = ys
        unknown = {lab: sorted(set(v) - set(readout.prototypes[lab])) for lab, v in ys.items()}
        if any(unknown.values()):
            raise ValueError(f"training trials' labels without a prototype: {unknown}")
    else:
        X = voxel_features(sv.blocks, len(sv), tc.mask, batch_size=bs)
        decoded = (cross_fitted_predictions(readout, X, sv.subject, ys) if cross_fit
                   else readout.predict(X))
    tview = target_adaptation_view(tc, splits, seed=stage2_seed(cfg))
    Xt = voxel_features(tview.blocks, len(tview), tc.mask, batch_size=bs)
    target = TargetFeatures(readout.tokens(readout.predict(Xt)), tview.subjects)
    return source_stage2_data(sv, captions, readout.tokens(decoded), target)


def semantic_eval_tokens(cfg, readout: SemanticReadout, tc, splits, eval_set: EvalSet
                         ) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Prototype tokens (n, L, H) of the target evaluation trials and their decoded labels
    (the evaluation set's rows, in order)."""
    ev = target_evaluation_view(tc, splits)
    if list(np.asarray(ev.rows, int)) != list(eval_set.table["trial_index"].astype(int)):
        raise ValueError("semantic read-out: the evaluation set's trials are not the target "
                         "evaluation view's (build it with build_eval_set on the same splits)")
    X = voxel_features(ev.blocks, len(ev), tc.mask, batch_size=cfg.stage1.eval_batch_size)
    decoded = readout.predict(X)
    return readout.tokens(decoded), decoded



# ============================================================================ noise ceiling
def noise_free_readout(cfg, readout: SemanticReadout, tc, splits,
                       stim: pd.DataFrame | None = None) -> SemanticReadout:
    """``readout`` refitted on the training trials' **noise-free** responses (simulated data):
    the same labels, the number of voxels and C chosen again by leave-one-subject-out over the
    same grids (``eval.semantic_voxels``, ``eval.semantic_cs``), the same prototype tokens.
    What the semantic read-out would decode if the scanner added no noise: the subjects'
    own shares of tuning and anatomical shifts stay."""
    sv = source_view(tc, splits, "train")
    X = noise_free_features(cfg, tc, sv.rows, cfg.stage1.eval_batch_size)
    groups = np.asarray(sv.subject).astype(str)
    e = cfg.eval
    readouts = {lab: fit_label_readout(X, _label_values(lab, sv, stim), groups,
                                       label=f"{lab} (noise-free)", n_pca=e.semantic_pca,
                                       cs=e.semantic_cs, n_voxels=e.semantic_voxels)
                for lab in readout.readouts}
    info = {lab: dict(C=r.C, n_voxels=r.n_voxels, loso_accuracy=r.loso[(r.n_voxels, r.C)],
                      n_values=len(r.classes)) for lab, r in readouts.items()}
    return SemanticReadout(readouts, readout.prototypes, readout.grand, info)


def semantic_ceiling_decodes(cfg, readout: SemanticReadout, model, tc, splits,
                             eval_set: EvalSet, stim: pd.DataFrame | None = None, *,
                             seed: int = 0, progress: bool = False
                             ) -> tuple[pd.DataFrame, dict]:
    """Noise ceiling of the text decoders (simulated data only): the semantic read-out
    (:func:`noise_free_readout`: fitted on the training trials' noise-free responses) applied
    to the target evaluation trials' noise-free responses, its prototype tokens read by
    ``model`` (the untrained bridge of :func:`semantic_decodes`).

    The simulator's true encoding model gives the responses; the decoder is the package's
    best one on the embedded data. Returns the decodes (the evaluation set's rows, in order)
    and, per label, the noise-free read-out's settings and its accuracy on the evaluation
    trials (scored against the simulator's truth, for the record: nothing is chosen on it)."""
    ev = target_evaluation_view(tc, splits)
    rows = np.asarray(ev.rows, int)
    if list(rows) != list(eval_set.table["trial_index"].astype(int)):
        raise ValueError("semantic ceiling: the evaluation set's trials are not the target "
                         "evaluation view's (build it with build_eval_set on the same splits)")
    nf = noise_free_readout(cfg, readout, tc, splits, stim)
    decoded = nf.predict(noise_free_features(cfg, tc, rows, cfg.stage1.eval_batch_size))
    truth = tc.trials.iloc[rows]
    for lab, r in nf.readouts.items():
        y = (truth["class_name"].astype(str).to_numpy() if lab == "class" else
             clip_labels(lab, truth, stim, "eval.semantic_labels"))
        nf.info[lab]["eval_accuracy"] = float(np.mean(np.asarray(decoded[lab]) == y))
    out = decode_eval_set(model, eval_set, z=nf.tokens(decoded), seed=seed, progress=progress,
                          desc="noise ceiling (semantic)")
    return out, nf.info

# ============================================================================ retrieval
@dataclass
class SemanticRetrieval:
    """A retrieval space built from what the voxels encode: class and scene.

    A trial's fMRI maps to the log-posteriors of the semantic read-outs (the voxels' class and
    scene logistic read-outs, :class:`SemanticReadout`); a clip maps to the posteriors of
    *video probes* — logistic read-outs of the same labels from the clip's pooled video tokens
    (the video Q-Former's outputs averaged over tokens), fitted on the training subjects'
    training clips with C by leave-one-subject-out. A trial's score for a candidate clip is
    the dot product, sum over labels of ``sum_v p_video(v | clip) log p_fmri(v | trial)``:
    the expected log-likelihood of the clip's labels under the trial's read-outs. Scored with
    the same candidates and distractors as Stage I (``method = semantic`` in
    ``results/stage1/retrieval.csv``). Not the paper's Stage I: nothing is trained
    contrastively, and a clip is told from others of the same class and scene only by chance.
    """

    readout: SemanticReadout
    probes: dict[str, LabelReadout]
    vlm: object
    features: object
    batch_size: int = 64

    def fmri(self, X: np.ndarray) -> np.ndarray:
        """(n, D) log-posteriors of the read-outs' values (labels concatenated)."""
        return np.hstack([np.log(np.clip(r.model.predict_proba(np.asarray(X, np.float32)),
                                         1e-6, 1.0)) for r in self.readout.readouts.values()])

    def clips(self, stim_files: Sequence[str]) -> np.ndarray:
        """(n, D) posteriors of the video probes for clips (same columns as :meth:`fmri`)."""
        Y = _video_tokens(self.vlm, self.features, list(stim_files), self.batch_size).mean(1)
        return np.hstack([self.probes[lab].model.predict_proba(Y.numpy())
                          for lab in self.readout.readouts])


def fit_semantic_retrieval(cfg, tc, splits, vlm, features, stim: pd.DataFrame | None = None,
                           readout: SemanticReadout | None = None, *, cache: bool = False
                           ) -> SemanticRetrieval:
    """The semantic read-out (fitted here unless given; ``cache`` as in
    :func:`fit_semantic_readout`) and its video probes, on the training subjects' training
    trials only (:func:`fit_semantic_readout`'s data)."""
    readout = readout if readout is not None else fit_semantic_readout(
        cfg, tc, splits, vlm, features, stim, cache=cache)
    sv = source_view(tc, splits, "train")
    bs = cfg.stage1.eval_batch_size
    Y = _video_tokens(vlm, features, list(np.asarray(sv.stim_file).astype(str)), bs).mean(1)
    groups = np.asarray(sv.subject).astype(str)
    probes = {}
    for lab, r in readout.readouts.items():
        y = _label_values(lab, sv, stim)
        p = fit_label_readout(Y.numpy(), y, groups, label=f"{lab} (video probe)",
                              n_pca=cfg.eval.semantic_pca, cs=cfg.eval.semantic_cs,
                              n_voxels=(0,))
        if list(p.classes) != list(r.classes):
            raise ValueError(f"video probe of {lab} has values {list(p.classes)}, the fMRI "
                             f"read-out {list(r.classes)}: they must be fitted on the same trials")
        probes[lab] = p
    return SemanticRetrieval(readout, probes, vlm, features, bs)
