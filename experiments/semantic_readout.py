"""Where the agent is lost, and class-conditional video tokens into the video-LLM (pseudo-target).

Run after notebook 04 of ``make reproduce`` (the default run's trial cache, video-LLM, frame
features and surrogate captions; the real targets stay sealed)::

    LLM4BRAIN_HOME=<run home> .venv/bin/python experiments/semantic_readout.py [subject] [n_shuffles] [response]

One training subject plays the target (default: the last one; its adaptation runs are not used
here, its other runs are scored), the other training subjects train. No Stage II training.
``response`` is ``data.response`` (``block``, the default, or ``beta``: single-trial maps).

1. Read-outs without the LLM: the voxels' own class / agent / scene logistic read-outs (PCA,
   standardised; C chosen by leave-one-subject-out over the *training* subjects), and the same
   attributes read from the ridge-predicted video tokens by probes fitted on the training
   clips' true video tokens.
2. Video tokens built from the read-outs (``semantic`` rows): the training trials' mean video
   tokens of the decoded class plus those of the decoded scene (minus the grand mean; the
   simulator draws scenes independently of classes), either at the most probable class and
   scene (``map``) or weighted by their posteriors (``soft``); ``oracle`` uses the true class
   and scene (how well the LLM reads such tokens at all). Each goes through the untrained
   bridge (the video-LLM's own projection); each is decoded again with the read-outs deranged
   across trials, ``n_shuffles`` times.

Appends to ``experiments/results/semantic_readout.csv`` and prints the table.
"""
import sys
import time

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from llm4brain.captions import load_captions
from llm4brain.config import EvalConfig
from llm4brain.data import load_stimuli, load_trial_cache, voxel_features
from llm4brain.evaluation.attributes import (AttributeParser, attribute_accuracy, distinct_share,
                                             truth_frame)
from llm4brain.evaluation.controls import derangements
from llm4brain.evaluation.decoding import EvalSet, build_eval_set, decode_eval_set
from llm4brain.evaluation.semantic import fit_label_readout
from llm4brain.experiments import experiment_inputs, tune_stage1
from llm4brain.models.stage1 import embed_clips
from llm4brain.models.stage2 import zero_shot_model
from llm4brain.training.guard import source_view, target_evaluation_view
from llm4brain.training.tuning import pseudo_target_splits, sealed_cache, with_overrides

from _common import RESULTS, require_run
from zero_shot import READOUT

OUT = RESULTS / "semantic_readout.csv"
CS = (1e-4, 1e-3, 1e-2, 1e-1)
VOXELS = EvalConfig().semantic_voxels     # the package default grid


def fit_logistic(X, y, groups, n_pca=256, n_voxels=VOXELS):
    """Voxel selection or PCA -> standardise -> logistic; the number of voxels and C by
    leave-one-subject-out accuracy on the training set (the package's
    :func:`llm4brain.evaluation.semantic.fit_label_readout`): ``(fitted pipeline,
    (n_voxels, C), {(n_voxels, C): LOSO accuracy})``."""
    r = fit_label_readout(X, y, groups, n_pca=n_pca, cs=CS, n_voxels=n_voxels)
    return r.model, (r.n_voxels, r.C), r.loso


def main(subject=None, n_shuffles: int = 5, response: str = "block", seed: int = 0,
         profile: str = "default") -> None:
    require_run(profile, "04")
    x = experiment_inputs(profile)
    captions, stim = load_captions(x.cfg), load_stimuli(x.cfg)
    cfg = with_overrides(x.cfg, {**READOUT, "data.response": response}, seed)
    tc = load_trial_cache(cfg)
    ps = pseudo_target_splits(tc.trials, x.splits, cfg, subject)
    pt = ps.target_subjects[0]
    sc = sealed_cache(tc, x.splits)
    t0 = time.time()
    _, models = tune_stage1(cfg, tc, x.splits, {"readout": {}}, seeds=(seed,),
                            pseudo_target=pt, vlm=x.vlm, features=x.features, progress=False)
    res, _ = models[("readout", seed)]
    s1 = res.model
    sv, ev = source_view(sc, ps, "train"), target_evaluation_view(sc, ps)
    bs = cfg.stage1.eval_batch_size
    X_tr = voxel_features(sv.blocks, len(sv), tc.mask, batch_size=bs)
    X_ev = voxel_features(ev.blocks, len(ev), tc.mask, batch_size=bs)
    Y_tr = embed_clips(s1, res.video, list(sv.stim_file), bs)                 # (n, L, H)
    t_tr, t_ev = truth_frame(stim, list(sv.stim_file)), truth_frame(stim, list(ev.stim_file))
    t_tr["class"] = np.asarray(sv.class_name).astype(str)
    t_ev["class"] = np.asarray(ev.class_name).astype(str)
    groups = np.asarray(sv.subject).astype(str)
    rows = []

    def row(**r):
        rows.append(dict(pseudo_target=pt, response=response, seed=seed, n_trials=len(ev), **r))
        print(rows[-1], flush=True)

    # 1. read-outs without the LLM
    post = {}
    for att in ("class", "agent", "scene"):
        clf, c, cv = fit_logistic(X_tr, t_tr[att].to_numpy(), groups)
        post[att] = (clf.classes_, clf.predict_proba(X_ev))
        acc = float((clf.classes_[post[att][1].argmax(1)] == t_ev[att].to_numpy()).mean())
        row(condition=f"voxels -> {att} (logistic, {c[0] or 'all'} voxels, C={c[1]:g}, "
                      f"LOSO {100 * cv[c]:.1f})",
            kind="read-out", **{att: round(100 * acc, 1)},
            chance=round(100 * float(t_ev[att].value_counts(normalize=True).max()), 1))
    es = build_eval_set(cfg, s1, sc, ps, captions)
    if list(es.table["stim_file"]) != list(ev.stim_file):
        raise RuntimeError("evaluation set and evaluation view disagree on the trial order")
    flat_tr = Y_tr.reshape(len(Y_tr), -1).numpy()
    flat_ev = es.z.reshape(len(es.z), -1).numpy()
    for att in ("agent", "scene"):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
        probe.fit(flat_tr, t_tr[att].to_numpy())
        acc = float((probe.predict(flat_ev) == t_ev[att].to_numpy()).mean())
        row(condition=f"ridge-predicted video tokens -> {att} (probe on true tokens)",
            kind="read-out", **{att: round(100 * acc, 1)})

    # 2. class-conditional tokens into the LLM
    grand = Y_tr.mean(0)
    classes_c, p_c = post["class"]
    classes_s, p_s = post["scene"]
    cls = t_tr["class"].to_numpy()
    scn = t_tr["scene"].to_numpy()
    M_c = torch.stack([Y_tr[torch.as_tensor(cls == c)].mean(0) for c in classes_c])
    M_s = torch.stack([Y_tr[torch.as_tensor(scn == s)].mean(0) for s in classes_s])

    def tokens(pc, ps_):
        pc, ps_ = torch.as_tensor(pc, dtype=M_c.dtype), torch.as_tensor(ps_, dtype=M_s.dtype)
        return (torch.einsum("nc,clh->nlh", pc, M_c) + torch.einsum("ns,slh->nlh", ps_, M_s)
                - grand)

    def onehot(p):
        return np.eye(p.shape[1])[p.argmax(1)]

    oracle_c = np.stack([(classes_c == c).astype(float) for c in t_ev["class"]])
    oracle_s = np.stack([(classes_s == s).astype(float) for s in t_ev["scene"]])
    model = zero_shot_model(cfg, x.vlm)
    parser = AttributeParser()
    truth = truth_frame(stim, es.table["stim_file"].tolist())
    subj = es.table["subject"].astype(str).to_numpy()
    perms = derangements(len(subj), n_shuffles, np.random.default_rng((seed, 1)), groups=subj)

    def decode_score(name, kind, z):
        dec = decode_eval_set(model, EvalSet(es.table, z), seed=seed, progress=False)
        texts = dec["fmri2text"].tolist()
        acc = attribute_accuracy(parser.frame(texts), truth)
        row(condition=name, kind=kind, distinct=round(distinct_share(texts) * len(texts)),
            **{a: round(100 * float(acc[a]), 1) for a in ("agent", "action", "scene",
                                                          "agent+action") if a in acc})
        return texts

    row(condition="Video2Text (reference)", kind="reference",
        distinct=round(distinct_share(es.table["video2text"].tolist()) * len(es.table)),
        **{a: round(100 * float(v), 1) for a, v in attribute_accuracy(
            parser.frame(es.table["video2text"].tolist()), truth).items()
           if a in ("agent", "action", "scene", "agent+action")})
    decode_score("oracle class + scene tokens", "oracle", tokens(oracle_c, oracle_s))
    for tag, (pc, pss) in {"map": (onehot(p_c), onehot(p_s)), "soft": (p_c, p_s)}.items():
        texts = decode_score(f"semantic {tag}", tag, tokens(pc, pss))
        print("  e.g.", texts[:4], flush=True)
        for k, perm in enumerate(perms):
            decode_score(f"semantic {tag}, shuffled fMRI #{k}", f"{tag} shuffled",
                         tokens(pc[perm], pss[perm]))
    t = pd.DataFrame(rows).assign(seconds=round(time.time() - t0))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    t.to_csv(OUT, mode="a", header=not OUT.is_file(), index=False)
    with pd.option_context("display.width", 200, "display.max_colwidth", 70):
        print(t.drop(columns=["seed", "seconds"]).to_string(index=False))


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0] if a and a[0] not in ("", "null") else None,
         int(a[1]) if len(a) > 1 else 5, a[2] if len(a) > 2 else "block")
