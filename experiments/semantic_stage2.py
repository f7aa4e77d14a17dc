"""Stage II trained on the semantic read-out's tokens (pseudo-target).

Run after notebook 04 of ``make reproduce`` (the default run's trial cache, video-LLM, frame
features and surrogate captions; the real targets stay sealed)::

    LLM4BRAIN_HOME=<run home> .venv/bin/python experiments/semantic_stage2.py [subject] [n_shuffles] [seeds] [variants]

One training subject plays the target (default: the last one): its adaptation runs are DA's
unlabelled target, its other runs are scored; the other training subjects train. The semantic
read-out (:mod:`llm4brain.evaluation.semantic`) is fitted on them; its prototype tokens of the
decoded class and scene are the fMRI tokens, and the paper's Stage II (the bridge trained with
the caption loss, DANCE on the adaptation trials) learns to answer from them. Conditions:

* ``zero-shot``: the read-out's tokens through the untrained bridge (what the package's
  semantic read-out decoder does);
* ``stage2 cross-fitted``: Stage II trained on training trials whose tokens come from read-outs
  fitted on the *other* training subjects (an unseen subject's error rate);
* ``stage2 in-sample``: the same with the read-out's own (in-sample) predictions;
* ``stage2 cross-fitted, no DA``: ``stage2.domain_adaptation: false``;
* ``stage2 true labels``: Stage II trained on the prototype tokens of each training trial's
  true class and scene (``semantic_stage2_data(..., true_labels=True)``), decoded as the others
  from the read-outs' tokens;
* a suffix ``@N`` (e.g. ``stage2 cross-fitted@100``) trains for N steps instead of
  ``stage2.steps``, ``@N:LR`` also sets ``stage2.lr``.

Each is decoded again with the read-outs deranged across trials within subject, ``n_shuffles``
times. ``seeds`` (comma-separated, default ``0``) are Stage II seeds; ``variants``
(comma-separated) picks conditions (default all). Appends to
``experiments/results/semantic_stage2.csv`` and prints the table.
"""
import sys
import time

import numpy as np
import pandas as pd
import torch

from llm4brain.captions import load_captions
from llm4brain.data import load_stimuli
from llm4brain.evaluation.attributes import (AttributeParser, attribute_accuracy, distinct_share,
                                             truth_frame)
from llm4brain.evaluation.decoding import EvalSet, build_eval_set, chance_permutation, decode_eval_set
from llm4brain.evaluation.semantic import (fit_semantic_readout, semantic_eval_tokens,
                                           semantic_stage2_data)
from llm4brain.experiments import experiment_inputs, tune_stage1
from llm4brain.models.stage2 import zero_shot_model
from llm4brain.training.stage2 import stage2_run_name, train_stage2
from llm4brain.training.tuning import pseudo_run_name, pseudo_target_splits, sealed_cache, with_overrides

from _common import RESULTS, require_run
from zero_shot import READOUT

OUT = RESULTS / "semantic_stage2.csv"
VARIANTS = ("zero-shot", "stage2 cross-fitted", "stage2 in-sample", "stage2 cross-fitted, no DA")


def main(subject=None, n_shuffles: int = 3, seeds=(0,), variants=VARIANTS,
         profile: str = "default") -> None:
    require_run(profile, "04")
    x = experiment_inputs(profile)
    captions, stim = load_captions(x.cfg), load_stimuli(x.cfg)
    cfg0 = x.cfg
    ps = pseudo_target_splits(x.tc.trials, x.splits, cfg0, subject)
    pt = ps.target_subjects[0]
    sc = sealed_cache(x.tc, x.splits)
    t0 = time.time()
    # a Stage I model only to build the evaluation set's table (its tokens are replaced)
    c1 = with_overrides(cfg0, READOUT, 0)
    _, models = tune_stage1(c1, x.tc, x.splits, {"readout": {}}, seeds=(0,), pseudo_target=pt,
                            vlm=x.vlm, features=x.features, progress=False)
    es0 = build_eval_set(c1, models[("readout", 0)][0].model, sc, ps, captions)
    readout = fit_semantic_readout(cfg0, sc, ps, x.vlm, x.features, stim)
    print("read-outs:", readout.info, flush=True)
    z_ev, decoded = semantic_eval_tokens(cfg0, readout, sc, ps, es0)
    es = EvalSet(es0.table, z_ev)
    truth = truth_frame(stim, es.table["stim_file"].tolist())
    truth["class"] = es.table["class_name"].astype(str).to_numpy()
    parser = AttributeParser()
    rows = []

    def score(condition, seed, texts, shuffle=None):
        acc = attribute_accuracy(parser.frame(list(texts)), truth)
        rows.append(dict(pseudo_target=pt, condition=condition, seed=seed,
                         shuffle=-1 if shuffle is None else shuffle, n_trials=len(texts),
                         distinct=round(distinct_share(list(texts)) * len(texts)),
                         **{a: round(100 * float(acc[a]), 1) for a in
                            ("agent", "action", "scene", "agent+action") if a in acc}))
        print(rows[-1], flush=True)

    score("Video2Text (reference)", -1, es.table["video2text"].tolist())
    for lab, v in decoded.items():
        acc = float((v == truth[lab].astype(str).to_numpy()).mean())
        print(f"read-out {lab}: {100 * acc:.1f} % on the pseudo-target", flush=True)

    def run(condition, model, seed):
        score(condition, seed, decode_eval_set(model, es, seed=seed)["fmri2text"])
        for k in range(n_shuffles):
            perm = torch.as_tensor(chance_permutation(es, k, seed=seed))
            score(f"{condition}, shuffled", seed,
                  decode_eval_set(model, es, z=es.z[perm], seed=seed)["fmri2text"], k)

    if "zero-shot" in variants:
        run("zero-shot", zero_shot_model(cfg0, x.vlm), 0)
    data = {}
    for seed in seeds:
        for v in variants:
            if not v.startswith("stage2"):
                continue
            cross = "in-sample" not in v
            clean = "true labels" in v
            da = "no DA" not in v
            over = {"stage2.seed": int(seed), "stage2.domain_adaptation": da}
            if "@" in v:                 # e.g. "stage2 cross-fitted@100" or "...@100:1e-4"
                steps, _, lr = v.split("@")[1].partition(":")
                over["stage2.steps"] = int(steps)
                if lr:
                    over["stage2.lr"] = float(lr)
            cfg = with_overrides(cfg0, over)
            if (cross, clean) not in data:
                data[cross, clean] = semantic_stage2_data(cfg, readout, sc, ps, captions, stim,
                                                          cross_fit=cross, true_labels=clean)
            tag = "-tl" if clean else "-cf" if cross else "-is"
            name = pseudo_run_name(f"semantic{tag}-{stage2_run_name(cfg, da)}", ps)
            r2 = train_stage2(cfg, data[cross, clean], x.vlm.llm, x.vlm.branch.proj,
                              domain_adaptation=da, progress=False, name=name)
            run(v, r2.model, int(seed))
    t = pd.DataFrame(rows).assign(seconds=round(time.time() - t0))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    t.to_csv(OUT, mode="a", header=not OUT.is_file(), index=False)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(t.drop(columns=["seconds"]).to_string(index=False))


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0] if a and a[0] not in ("", "null") else None,
         int(a[1]) if len(a) > 1 else 3,
         tuple(int(s) for s in a[2].split(",")) if len(a) > 2 else (0,),
         tuple(a[3].split(",")) if len(a) > 3 else VARIANTS)
