"""The ``concept`` projector's start (``stage1.projector: concept``, paper 3.2's projection
adaptor with a semantic bottleneck, :class:`llm4brain.models.bridge.ConceptProjector`).

:func:`concept_values` gives the training trials' values of ``stage1.concepts`` (class, and
scene on the simulated data); :func:`fit_concepts` sets the projector's prototype tokens from
the training trials' video tokens and, with ``stage1.concept_voxels``, the voxels its heads
read and their logistic start. :func:`llm4brain.training.stage1.train_stage1` calls both.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data import voxel_features
from ..models.stage1 import Stage1Model, VideoInputs, embed_clips
from .guard import SourceView

__all__ = ["concept_values", "fit_concepts"]


def concept_values(cfg, view) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """The ``stage1.concepts`` values of a view's trials (the training subjects' training
    trials): per concept an int array (n,) indexing the sorted distinct values, and those
    values. ``class`` is the trial's class; any other concept is a column of the stimulus
    table (:func:`llm4brain.data.load_stimuli`; the simulated data has ``scene``)."""
    from .. import data
    concepts = tuple(cfg.stage1.concepts)
    stim = data.load_stimuli(cfg) if set(concepts) - {"class"} else None
    ids, names = {}, {}
    for c in concepts:
        y = data.clip_labels(c, view, stim, "stage1.concepts")
        u, inv = np.unique(y, return_inverse=True)
        if len(u) < 2:
            raise ValueError(f"stage1.concepts: the training trials hold one {c} value "
                             f"({u.tolist()}); the concept projector needs two or more")
        ids[c], names[c] = inv.astype(np.int64), u.tolist()
    return ids, names


def fit_concepts(cfg, model: Stage1Model, view: SourceView, video: VideoInputs, mask,
                 values: dict[str, np.ndarray]) -> dict:
    """Start of the ``concept`` projector from the training trials (``view``): its prototype
    tokens (the mean video tokens of each concept value, :meth:`ConceptProjector.set_prototypes`)
    and, with ``stage1.concept_voxels``, the voxels its heads read (the most selective for the
    joint concept values, by ``stage1.select_by``) with their mean and sd. Returns
    ``{"n_voxels"}``."""
    s = cfg.stage1
    Y = embed_clips(model, video, list(view.stim_file), s.eval_batch_size)
    model.projector.set_prototypes(Y, values)
    k = int(s.concept_voxels)
    if not k:
        return dict(n_voxels=0)
    m = np.asarray(mask, bool)
    if k > int(m.sum()):
        raise ValueError(f"stage1.concept_voxels = {k} is more than the {int(m.sum())} voxels of "
                         f"the brain mask: use at most that (0 reads the encoder's tokens only)")
    X = voxel_features(view.blocks, len(view), m, batch_size=s.eval_batch_size)
    from .stage1 import encoding_voxels, selective_voxels
    if s.select_by == "video":
        sel = encoding_voxels(X, Y.numpy(), k, setting="stage1.concept_voxels")
    else:
        joint = np.array(["|".join(map(str, t)) for t in zip(*values.values())])
        sel = selective_voxels(X, joint, k, "stage1.concept_voxels")
    Xs = X[:, sel]
    model.projector.set_voxels(np.flatnonzero(m.ravel())[sel], Xs)
    info = dict(n_voxels=k)
    if s.concept_cs:
        groups = np.asarray(view.subject).astype(str)
        info.update(_logistic_heads(model.projector, Xs, values, groups, s.concept_cs))
    return info


def _logistic_heads(proj, X: np.ndarray, values: dict, groups: np.ndarray, cs) -> dict:
    """Set the voxel heads (and the head biases) of a ConceptProjector to a multinomial
    logistic regression per concept on the standardised voxels, C by leave-one-subject-out
    accuracy (one subject: the largest C of the grid); returns the chosen C and accuracy per
    concept."""
    from sklearn.linear_model import LogisticRegression
    Z = (np.asarray(X, np.float64) - proj.voxel_mean.numpy()) / proj.voxel_scale.numpy()
    subjects = np.unique(groups)
    info, row = {}, 0
    for c, size in proj.sizes.items():
        y = np.asarray(values[c])
        scores = {}
        for C in cs:
            if len(subjects) < 2:
                scores[C] = np.nan
                continue
            acc = []
            for held in subjects:
                tr = groups != held
                lr = LogisticRegression(C=float(C), max_iter=500).fit(Z[tr], y[tr])
                acc.append(float((lr.predict(Z[~tr]) == y[~tr]).mean()))
            scores[C] = float(np.mean(acc))
        best = max(cs) if len(subjects) < 2 else max(cs, key=lambda C: (scores[C], -C))
        lr = LogisticRegression(C=float(best), max_iter=500).fit(Z, y)
        W, b = lr.coef_, lr.intercept_           # every value occurs: classes_ = 0..size-1
        if size == 2:                               # binary: sklearn keeps one row
            W, b = np.vstack([-W[0] / 2, W[0] / 2]), np.array([-b[0] / 2, b[0] / 2])
        with torch.no_grad():
            proj.voxel_head.weight[row:row + size] = torch.as_tensor(W, dtype=torch.float32)
            proj.head.bias[row:row + size] = torch.as_tensor(b, dtype=torch.float32)
        info[f"{c}_C"], info[f"{c}_loso"] = float(best), scores.get(best)
        row += size
    return info
