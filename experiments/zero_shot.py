"""Zero-shot decoding on the pseudo-target: ridge-predicted video tokens into the video-LLM.

Run after notebook 04 of ``make reproduce`` (it reads the default run's trial cache, video-LLM,
frame features and surrogate captions; the real targets stay sealed: the pseudo-target splits of
the sealed cache, as in ``stage2_candidates.py``)::

    .venv/bin/python experiments/zero_shot.py

No Stage II training: the fMRI tokens are Stage I's closed-form voxel read-out (ridge from the
training subjects' voxels to the pretrained video tokens, ``stage1.voxel_readout: ridge``,
``stage1.align: false``), and the bridge is the video-LLM's own projection
(``LLMBridge`` at initialisation), so the LLM reads the tokens as if they came from a clip.
Ridge predictions are shrunk toward the mean; the ``rescaled`` rows map each token dimension
of the pseudo-target's predictions onto the training clips' video-token mean and standard
deviation (the statistics of the predictions are taken on the pseudo-target's *unlabelled
adaptation runs*, as DA may; brain-diffuser's feature normalisation). Scores: attribute
accuracy against the simulator's truth, the same decoder with the fMRI tokens deranged across
trials (one shuffle), distinct answers; Video2Text of the same trials for reference.
Appends to ``experiments/results/zero_shot.csv`` and prints the table.
"""
import json
import sys
import time

import numpy as np
import pandas as pd
import torch

from llm4brain.captions import load_captions
from llm4brain.data import load_stimuli
from llm4brain.evaluation.attributes import (AttributeParser, attribute_accuracy, distinct_share,
                                             truth_frame)
from llm4brain.evaluation.controls import derangements
from llm4brain.evaluation.decoding import EvalSet, build_eval_set, decode_eval_set
from llm4brain.experiments import experiment_inputs, tune_stage1
from llm4brain.models.stage1 import embed_clips
from llm4brain.models.stage2 import zero_shot_model
from llm4brain.training.guard import source_view, target_adaptation_view
from llm4brain.training.stage2 import target_features
from llm4brain.training.tuning import pseudo_target_splits, sealed_cache, with_overrides

from _common import RESULTS, require_run

OUT = RESULTS / "zero_shot.csv"
READOUT = {"stage1.voxel_readout": "ridge", "stage1.center": True, "stage1.align": False}


def main(scales=(1.0,), seed: int = 0, profile: str = "default") -> None:
    require_run(profile, "04")
    x = experiment_inputs(profile)
    captions, stim = load_captions(x.cfg), load_stimuli(x.cfg)
    cfg = with_overrides(x.cfg, READOUT, seed)
    ps = pseudo_target_splits(x.tc.trials, x.splits, cfg, None)
    sc = sealed_cache(x.tc, x.splits)
    t0 = time.time()
    _, models = tune_stage1(cfg, x.tc, x.splits, {"readout": {}}, seeds=(seed,),
                            vlm=x.vlm, features=x.features, progress=False)
    res, _ = models[("readout", seed)]
    s1 = res.model
    sv = source_view(sc, ps, "train")
    files = list(dict.fromkeys(str(f) for f in sv.stim_file))
    xv = embed_clips(s1, res.video, files)                      # (n clips, L, H)
    mu_x, sd_x = xv.mean(0), xv.std(0)
    za = target_features(s1, target_adaptation_view(sc, ps, seed=seed)).z
    mu_z, sd_z = za.mean(0), za.std(0).clamp_min(1e-6)
    es = build_eval_set(cfg, s1, sc, ps, captions)
    truth = truth_frame(stim, es.table["stim_file"].tolist())
    model = zero_shot_model(cfg, x.vlm)
    parser = AttributeParser()
    subj = es.table["subject"].astype(str).to_numpy()
    perm = torch.as_tensor(derangements(len(subj), 1, np.random.default_rng((seed, 0)),
                                        groups=subj)[0])
    rows = []

    def score(name, texts):
        acc = attribute_accuracy(parser.frame(list(texts)), truth)
        r = {a: round(100 * float(acc[a]), 1) for a in
             ("agent", "action", "scene", "agent+action") if a in acc}
        r["distinct"] = round(distinct_share(texts) * len(texts))
        rows.append(dict(condition=name, seed=seed, n_trials=len(texts), **r))
        print(rows[-1], flush=True)

    score("Video2Text (reference)", es.table["video2text"].tolist())
    print(f"sd ratio of predictions (adaptation runs) to video tokens: "
          f"{float((sd_z / sd_x.clamp_min(1e-6)).mean()):.3f}", flush=True)
    tokens = [("raw read-out", es.z)] + [
        (f"rescaled x{k:g}", mu_x + k * (es.z - mu_z) * (sd_x / sd_z)) for k in scales]
    for tag, z in tokens:
        for cond, zz in ((tag, z), (f"{tag}, shuffled fMRI", z[perm])):
            dec = decode_eval_set(model, EvalSet(es.table, zz), seed=seed, progress=False)
            score(cond, dec["fmri2text"].tolist())
            if zz is z:
                print("  e.g.", dec["fmri2text"].tolist()[:4], flush=True)
    t = pd.DataFrame(rows).assign(seconds=round(time.time() - t0))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    t.to_csv(OUT, mode="a", header=not OUT.is_file(), index=False)
    print(t.to_string(index=False))


if __name__ == "__main__":
    main(tuple(json.loads(sys.argv[1])) if len(sys.argv) > 1 else (1.0,))
