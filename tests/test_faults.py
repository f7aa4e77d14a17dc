"""Runs that lose nothing: a run killed with SIGKILL inside the trial cache build, inside Stage I
training and inside caption generation, then run again, gives exactly what an uninterrupted
run gives; a full disk while writing the trial cache gives a clear error and leaves nothing a
later run would trust.

The chain is ``tests/fault_chain.py`` on the smoke profile, in subprocesses (a SIGKILL cannot
be simulated in-process); the uninterrupted reference is built once for the module.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llm4brain.config import load_config

CHAIN = Path(__file__).with_name("fault_chain.py")
pytestmark = pytest.mark.slow


def _chain(home: Path, *steps: str, fault: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, LLM4BRAIN_HOME=str(home), LLM4BRAIN_FAULT=fault, MPLBACKEND="Agg",
               TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([sys.executable, str(CHAIN), *steps], env=env, capture_output=True,
                          text=True, timeout=900)


def _ok(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0 and "fault_chain: done" in r.stdout, r.stdout[-2000:] + r.stderr[-4000:]


def _killed(r: subprocess.CompletedProcess, where: str) -> None:
    assert r.returncode == -signal.SIGKILL, r.stdout[-2000:] + r.stderr[-4000:]
    assert f"fault: SIGKILL in {where}" in r.stdout


def _run(home: Path) -> Path:
    return home / "runs" / "smoke"


@pytest.fixture(scope="module")
def reference(smoke_chain) -> Path:
    """The uninterrupted run (conftest's session-wide smoke chain)."""
    return smoke_chain


def _copy_run(src: Path, dst: Path, drop: list[str]) -> None:
    """Copy a run directory (file times kept: cache keys hash them) without ``drop`` globs."""
    shutil.copytree(_run(src), _run(dst))
    for pattern in drop:
        for p in _run(dst).glob(pattern):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def _only(run: Path, pattern: str) -> Path:
    found = sorted(run.glob(pattern))
    assert len(found) == 1, (pattern, found)
    return found[0]


def test_kill_inside_the_trial_cache_build(reference, tmp_path):
    _copy_run(reference, tmp_path, ["cache", "splits.json", "checkpoints", "logs", "captions"])
    _killed(_chain(tmp_path, "cache", fault="cache:3"), "cache")
    run = _run(tmp_path)
    assert not [p for p in (run / "cache").glob("trials-*") if not p.name.endswith(".tmp")]
    _ok(_chain(tmp_path, "cache"))                               # the same command again
    new, ref = _only(run / "cache", "trials-*"), _only(_run(reference) / "cache", "trials-*")
    assert not new.name.endswith(".tmp")          # (its key hashes the source paths: not ref's)
    for f in ("blocks.f32", "volumes.f32", "trials.tsv", "volumes.tsv", "mask.npy"):
        assert (new / f).read_bytes() == (ref / f).read_bytes(), f
    meta_new, meta_ref = (json.loads((d / "meta.json").read_text()) for d in (new, ref))
    for m in (meta_new, meta_ref):
        for k in ("build_seconds", "root", "key"):
            m.pop(k)
        m["tr_sources"] = [Path(t).name for t in m["tr_sources"]]
    assert meta_new == meta_ref
    assert (run / "splits.json").read_text() == (_run(reference) / "splits.json").read_text()


def _stage1_state(run: Path) -> tuple[dict, pd.DataFrame]:
    ck = _only(run / "checkpoints", "stage1-*")
    state = torch.load(ck / "state.pt", map_location="cpu", weights_only=False)
    log = pd.read_csv(run / "logs" / f"{ck.name}.csv")
    return state, log.drop(columns=[c for c in log.columns if "time" in c or "elapsed" in c])


def test_kill_inside_stage1_training(reference, tmp_path):
    _copy_run(reference, tmp_path, ["checkpoints/stage1-*", "logs/stage1-*", "captions"])
    cfg = load_config("smoke")
    n = (cfg.train.checkpoint_every + cfg.stage1.steps) // 2 * cfg.train.grad_accum
    _killed(_chain(tmp_path, "stage1", fault=f"stage1:{n}"), "stage1")
    state = torch.load(_only(_run(tmp_path) / "checkpoints", "stage1-*") / "state.pt",
                       map_location="cpu", weights_only=False)
    assert not state["finished"] and state["step"] == cfg.train.checkpoint_every
    _ok(_chain(tmp_path, "stage1"))                              # resumes from step 10
    (new, new_log), (ref, ref_log) = _stage1_state(_run(tmp_path)), _stage1_state(_run(reference))
    assert new["finished"] and new["step"] == ref["step"] == cfg.stage1.steps
    # the log first: rows up to step 10 come from the killed process, the rest from the
    # resumed one, so a mismatch names where the two runs part (before or after the resume)
    pd.testing.assert_frame_equal(new_log, ref_log)
    assert new["model"].keys() == ref["model"].keys()
    for k in ref["model"]:
        assert torch.equal(new["model"][k], ref["model"][k]), k


def test_kill_inside_caption_generation(reference, tmp_path):
    _copy_run(reference, tmp_path, ["captions"])
    _killed(_chain(tmp_path, "captions", fault="captions:2"), "captions")
    assert not list((_run(tmp_path) / "captions").glob("*.tsv"))   # nothing that counts as done
    _ok(_chain(tmp_path, "captions"))
    new = _only(_run(tmp_path) / "captions", "captions_*.tsv")
    ref = _only(_run(reference) / "captions", "captions_*.tsv")
    assert new.name == ref.name and new.read_bytes() == ref.read_bytes()
    assert new.with_suffix(".json").read_text() == ref.with_suffix(".json").read_text()


class _FullDisk:
    """A file object whose writes fail with ENOSPC once ``limit`` bytes were written."""

    def __init__(self, f, limit: int):
        self.f, self.left = f, limit

    def write(self, b):
        if len(b) > self.left:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.left -= len(b)
        return self.f.write(b)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_full_disk_while_writing_the_trial_cache(reference, tmp_path, monkeypatch):
    from llm4brain.data import _cache, build_trial_cache

    _copy_run(reference, tmp_path, ["cache", "checkpoints", "logs", "captions"])
    monkeypatch.setenv("LLM4BRAIN_HOME", str(tmp_path))
    cfg = load_config("smoke")
    real_open = open
    monkeypatch.setattr(_cache, "open", lambda p, mode="r", *a, **k: (
        _FullDisk(real_open(p, mode, *a, **k), 200_000) if "w" in mode else real_open(p, mode, *a, **k)),
        raising=False)
    with pytest.raises(OSError, match="no space left on the device while writing the trial "
                                      "cache") as ei:
        build_trial_cache(cfg, progress=False)
    assert ei.value.errno == errno.ENOSPC
    assert "free space there or move the run directory" in str(ei.value)
    assert not list((cfg.run_dir / "cache").glob("trials-*"))   # neither final nor partial
    monkeypatch.undo()
    monkeypatch.setenv("LLM4BRAIN_HOME", str(tmp_path))
    tc = build_trial_cache(cfg, progress=False)                   # disk freed: a complete build
    ref = _only(_run(reference) / "cache", "trials-*")
    assert np.array_equal(np.asarray(tc.blocks), np.fromfile(ref / "blocks.f32", np.float32)
                          .reshape(np.asarray(tc.blocks).shape))
