"""Benchmark of the Stage I / Stage II steps on the default profile's sizes (issue 5, item 8).

Measures, on one CPU thread, the wall and process-CPU seconds of each step notebooks 03 and 05
repeat, then extrapolates both notebooks' run time from the default profile's settings
(steps, batch sizes, trial counts). The machine is shared by other jobs, so process-CPU time
(what this process itself used) is the robust number; on an idle 2-core machine the notebooks
run with 2 threads, so the 1-thread CPU time is an upper bound of their wall time.

Inputs are random tensors of the default shapes (block (3, 24, 30, 26) with an ellipsoid brain
mask of ~50 % of the box, the video branch's frame tokens) through the real architectures; the
LLM is the real SmolLM2-135M-Instruct (cached under ``runs/default/models``).

Writes ``bench/results/stages.csv`` and ``bench/results/stages.md``.

Run: ``.venv/bin/python bench/bench_stages.py`` (about 5 minutes).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pandas as pd
import torch

torch.set_num_threads(1)

from llm4brain.config import load_config  # noqa: E402
from llm4brain.evaluation.retrieval import permutation_test, retrieval_accuracy  # noqa: E402
from llm4brain.models.ridge import RidgeCV  # noqa: E402
from llm4brain.models.encoder import build_encoder  # noqa: E402
from llm4brain.models.precision import resolve_bf16  # noqa: E402
from llm4brain.models.qformer import build_video_branch  # noqa: E402
from llm4brain.training.losses import stage1_loss  # noqa: E402
from llm4brain.models.stage1 import build_stage1_model  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
BLOCK = (3, 24, 30, 26)
N_VOX = 8735                      # brain voxels of the default trial cache
N_TRIALS = dict(train=720, val=240, adapt=240, eval=240)
ROWS: list[dict] = []


def timed(name: str, fn, n: int = 1, unit: str = "call", repeat: int = 3, warmup: int = 1):
    """Median wall and CPU seconds of ``fn()`` over ``repeat`` runs (after ``warmup``)."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    row = dict(name=name, unit=unit, n=n, wall_s=float(np.median(walls)),
               cpu_s=float(np.median(cpus)))
    ROWS.append(row)
    print(f"{name:32s} wall {row['wall_s']:7.3f} s   cpu {row['cpu_s']:7.3f} s  ({n} {unit})",
          flush=True)
    return row


def ellipsoid_mask(shape) -> np.ndarray:
    g = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    return sum(x ** 2 for x in g) <= 1.0


def bench_stage1(cfg):
    mask = ellipsoid_mask(BLOCK[1:])
    enc = build_encoder(cfg, BLOCK, mask)
    branch = build_video_branch(cfg, 1280, 576).eval()
    model = build_stage1_model(cfg, enc, branch, mask=mask)
    s = cfg.stage1
    v = cfg.video
    B = s.batch_size
    blocks = torch.randn(B, *BLOCK)
    frame_tok = torch.randn(B, v.n_frames, v.num_query_tokens, v.qformer_hidden)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step():
        z, x = model(blocks, frame_tok)
        loss, _ = stage1_loss(z, x, s.beta, s.alpha, s.tau, s.pool)
        loss.backward()
        opt.step()
        opt.zero_grad()

    timed("stage1_train_step", step, B, f"trials (batch {B})")
    feats = torch.randn(16, v.n_frames, (v.image_size // 32) ** 2, 1280)
    with torch.no_grad():
        timed("frame_qformer_precompute", lambda: branch.frame_tokens(feats), 16, "clips")
        model.eval()
        b64 = torch.randn(64, *BLOCK)
        timed("stage1_embed_fmri", lambda: model.fmri_tokens(b64), 64, "trials")
        f64 = torch.randn(64, v.n_frames, v.num_query_tokens, v.qformer_hidden)
        timed("stage1_embed_video", lambda: model.video_tokens(f64), 64, "clips")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N_TRIALS["train"], N_VOX)).astype(np.float32)
    Y = rng.standard_normal((N_TRIALS["train"], v.qformer_hidden))
    timed("ridge_fit_loo", lambda: RidgeCV(s.ridge_alphas, cv=s.ridge_cv).fit(X, Y), 1, "fit",
          repeat=1)
    n = N_TRIALS["eval"]
    P, C = rng.standard_normal((n, 256)), rng.standard_normal((n, 256))
    groups = np.arange(n)

    def retrieval():
        retrieval_accuracy(P, C, s.n_candidates, k=(1, 5), rng=0, groups=groups)
        permutation_test(P, C, s.n_candidates, k=1, n_permutations=s.n_permutations, rng=0,
                         groups=groups)

    timed("retrieval_with_permutations", retrieval, n, "trials", repeat=1)


def bench_stage2(cfg):
    from llm4brain.models.llm import load_llm
    from llm4brain.evaluation.decoding import decode
    from llm4brain.models.stage2 import build_stage2_model
    from llm4brain.training.stage2 import stage2_loss_fn

    llm = load_llm(cfg, device="cpu")
    s = cfg.stage2
    v = cfg.video
    L, H = v.num_video_query_tokens, v.qformer_hidden
    proj = torch.nn.Linear(H, llm.hidden_size)
    ins = list(cfg.captions.instructions)
    answer = "A small green bird flies quickly to the right across a forest clearing."
    for da in (True, False):
        model = build_stage2_model(cfg, proj, llm, n_classes=12, n_target=N_TRIALS["adapt"],
                                   domain_adaptation=da)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        model.train()
        batch = {"z": torch.randn(s.batch_size, L, H), "labels": torch.arange(s.batch_size) % 12,
                 "instructions": [ins[i % len(ins)] for i in range(s.batch_size)],
                 "answers": [answer] * s.batch_size,
                 "tz": torch.randn(s.target_batch_size, L, H),
                 "tidx": torch.arange(s.target_batch_size)}

        def step():
            loss, _ = stage2_loss_fn(model, batch)
            loss.backward()
            opt.step()
            opt.zero_grad()

        timed(f"stage2_train_step_{'da' if da else 'noda'}", step, s.batch_size,
              f"trials (batch {s.batch_size})")
    model.eval()
    bs = cfg.llm.batch_size
    z = torch.randn(bs, L, H)
    instr = [ins[i % len(ins)] for i in range(bs)]
    gen = llm.model.generate

    def full_length(*a, **kw):           # worst case: every answer runs to max_new_tokens
        kw["min_new_tokens"] = kw.get("max_new_tokens")
        return gen(*a, **kw)

    llm.model.generate = full_length
    try:
        for bf16 in (True, False):
            m = model if bf16 == model.use_bf16("cpu") else build_stage2_model(
                cfg.replace(stage2__bf16=bf16), proj, llm, domain_adaptation=False)
            timed(f"decode_bf16={bf16}", lambda: decode(m, z, instr, batch_size=bs), bs,
                  f"trials ({cfg.llm.max_new_tokens} new tokens)", repeat=1)
    finally:
        llm.model.generate = gen


def bench_scoring(cfg):
    from llm4brain.evaluation.metrics import TextScorer

    rng = np.random.default_rng(0)
    words = ("a small green bird flies quickly to the right in a forest person waves ball "
             "bounces car drives fish swims slowly").split()
    n = N_TRIALS["eval"]
    refs = [" ".join(rng.choice(words, 14)) for _ in range(n)]
    lists = [[" ".join(rng.choice(words, 14)) for _ in range(n)] for _ in range(7)]

    def score():
        TextScorer(cfg.eval).score_many(lists, refs)

    timed("score_7_conditions", score, 7 * n, "pairs", repeat=1, warmup=0)


def extrapolate(cfg) -> pd.DataFrame:
    r = {row["name"]: row for row in ROWS}
    s1, s2 = cfg.stage1, cfg.stage2
    n_clips = N_TRIALS["train"] + N_TRIALS["val"] + N_TRIALS["eval"]
    n_s1_embed = N_TRIALS["train"] + N_TRIALS["val"] + N_TRIALS["eval"]
    n_s2_embed = N_TRIALS["train"] + N_TRIALS["adapt"] + 2 * N_TRIALS["eval"]  # + ceiling
    n_shuffles = min(cfg.eval.n_shuffles, s2.max_shuffles) if s2.max_shuffles else cfg.eval.n_shuffles
    n_decodes = 2 + n_shuffles + 1
    per = lambda name: r[name]["cpu_s"] / r[name]["n"]  # noqa: E731
    s2_bf16 = resolve_bf16(s2.bf16, "cpu", name="stage2.bf16")   # "auto" -> this CPU's choice
    parts = [
        ("03", "frame Q-Former outputs of all clips", n_clips * per("frame_qformer_precompute")),
        ("03", f"Stage I training ({s1.steps} steps)", s1.steps * r["stage1_train_step"]["cpu_s"]),
        ("03", "embeddings (fMRI + video)", n_s1_embed * (per("stage1_embed_fmri")
                                                          + per("stage1_embed_video"))),
        ("03", "ridge baseline (LOO-CV)", r["ridge_fit_loo"]["cpu_s"]),
        ("03", "retrieval + permutations (val + eval, all + per subject)",
         4 * r["retrieval_with_permutations"]["cpu_s"]),
        ("05", "fMRI tokens (train, adapt, eval, ceiling)", n_s2_embed * per("stage1_embed_fmri")),
        ("05", f"Stage II with DA ({s2.steps} steps)", s2.steps * r["stage2_train_step_da"]["cpu_s"]),
        ("05", f"Stage II without DA ({s2.steps} steps)",
         s2.steps * r["stage2_train_step_noda"]["cpu_s"]),
        ("05", f"decoding {n_decodes} x {N_TRIALS['eval']} trials (bf16={s2_bf16})",
         n_decodes * N_TRIALS["eval"] * per(f"decode_bf16={s2_bf16}")),
        ("05", "BERTScore/BLEU/ROUGE of 7 conditions", r["score_7_conditions"]["cpu_s"]),
    ]
    return pd.DataFrame(parts, columns=["notebook", "part", "cpu_s_1thread"])


def main():
    cfg = load_config("default")
    t0 = time.time()
    bench_stage1(cfg)
    bench_stage2(cfg)
    bench_scoring(cfg)
    OUT.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(ROWS)
    table.to_csv(OUT / "stages.csv", index=False)
    ext = extrapolate(cfg)
    tot = ext.groupby("notebook")["cpu_s_1thread"].sum()
    lines = ["# Stage I / Stage II step timings (default profile sizes, 1 CPU thread)", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M')} on a shared 2-core machine; "
             f"median of 3 runs (1 for the slow ones). `cpu_s` is this process's CPU time "
             f"(robust to other jobs), `wall_s` the elapsed time.", "",
             "| step | per | wall s | cpu s |", "|---|---|---:|---:|"]
    lines += [f"| {x['name']} | {x['n']} {x['unit']} | {x['wall_s']:.3f} | {x['cpu_s']:.3f} |"
              for x in ROWS]
    lines += ["", "## Extrapolated notebook time (1 thread CPU seconds; model loading, "
              "video-LLM pretraining and frame-feature extraction excluded)", "",
              "| notebook | part | seconds |", "|---|---|---:|"]
    lines += [f"| {a} | {b} | {c:.0f} |" for a, b, c in ext.itertuples(index=False)]
    lines += [f"| **03** | total | **{tot.get('03', 0):.0f}** |",
              f"| **05** | total | **{tot.get('05', 0):.0f}** |",
              f"| **03 + 05** | total | **{tot.sum():.0f} s = {tot.sum() / 60:.1f} min** |",
              "", f"(benchmark itself took {time.time() - t0:.0f} s wall)"]
    (OUT / "stages.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
