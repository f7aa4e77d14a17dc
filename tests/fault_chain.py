"""The smoke chain up to surrogate captions, run as a script by ``tests/test_faults.py``.

``python tests/fault_chain.py STEP [STEP ...]`` runs the named steps (``data``, ``cache``,
``mae``, ``stage1``, ``captions``) in order on the smoke profile in ``$LLM4BRAIN_HOME``, each
reusing what earlier runs left, as the notebooks do. ``LLM4BRAIN_FAULT=<step>:<n>`` kills the
process with SIGKILL in the middle of that step (at its n-th unit of work: the n-th BOLD run
read, the n-th Stage I micro-batch, the n-th caption batch), which nothing can catch or clean
up after: what a power cut or the OOM killer does.
"""
from __future__ import annotations

import os
import signal
import sys


def _kill_on(obj, attr: str, step: str, n: int):
    """Wrap ``obj.attr`` so that its n-th call kills the process (after the call returns)."""
    real, calls = getattr(obj, attr), [0]

    def wrapped(*a, **k):
        out = real(*a, **k)
        calls[0] += 1
        if calls[0] == n:
            print(f"fault: SIGKILL in {step} at call {n}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    setattr(obj, attr, wrapped)


def main(steps: list[str]) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    torch.set_num_threads(1)
    from llm4brain import captions as cap_mod
    from llm4brain.config import load_config
    from llm4brain.data import (_runs, build_trial_cache, iter_run_volumes, load_splits,
                                load_stimuli, make_splits)
    from llm4brain.sim import simulate_dataset
    from llm4brain.models.frame_encoders import FrameFeatureCache
    from llm4brain.training import stage1 as s1
    from llm4brain.training.mae import load_pretrained_mae, pretrain_mae, volume_windows
    from llm4brain.training.vlpretrain import pretrain_video_llm, video_features

    fault = os.environ.get("LLM4BRAIN_FAULT", "")
    where, _, n = fault.partition(":")
    n = int(n or 0)
    if where == "cache":
        _kill_on(_runs, "load_bold", where, n)
    elif where == "stage1":
        real_sampler = s1.make_stage1_sampler

        def sampler(*a, **k):
            f = real_sampler(*a, **k)

            def batch(i, rng):
                if i == n:
                    print(f"fault: SIGKILL in stage1 at micro-batch {n}", flush=True)
                    os.kill(os.getpid(), signal.SIGKILL)
                return f(i, rng)
            return batch
        s1.make_stage1_sampler = sampler
    elif where == "captions":
        _kill_on(FrameFeatureCache, "get", where, n)

    cfg = load_config("smoke")
    if "data" in steps:
        simulate_dataset(cfg, progress=False)
    if "cache" in steps:
        tc = build_trial_cache(cfg, progress=False)
        make_splits(tc.trials, cfg)
    if {"mae", "stage1", "captions"} & set(steps):
        tc = build_trial_cache(cfg, progress=False)
        splits = load_splits(cfg.run_dir / "splits.json")
    if "mae" in steps:
        windows = volume_windows(iter_run_volumes(cfg, splits.train_subjects, tc), tc.block_shape[0],
                                 cfg.mae.block_stride, cfg.mae.max_blocks)
        pretrain_mae(cfg, windows, mask=tc.mask, affine=tc.affine, progress=False)
    if {"stage1", "captions"} & set(steps):
        stim = load_stimuli(cfg)
        features = video_features(cfg, stim, progress=False)
        vl = pretrain_video_llm(cfg, stim=stim, features=features, device=cfg.run.device)
    if "stage1" in steps:
        mae = load_pretrained_mae(cfg, tc.block_shape, tc.mask, tc.affine)
        s1.train_stage1(cfg, tc, splits, vlm=vl.model, features=features, mae=mae, progress=False)
    if "captions" in steps:
        cap_mod.generate_captions(cfg, vlm=vl.model, features=features, stim=stim, progress=False)
    print("fault_chain: done", " ".join(steps), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
