"""Shared fixtures: seeded rng, Agg backend, one torch thread, figures closed after each test."""
from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    torch = None


@pytest.fixture
def rng():
    return np.random.default_rng(42)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------- builders of tiny test inputs
# (llm4brain.testing; not part of the library's public API). Session-scoped factories, so
# module-scoped fixtures can call them too.
@pytest.fixture(scope="session")
def make_tiny_bids():
    """``make_tiny_bids(root, ...)``: a few tiny NIfTI files in the HAD layout."""
    from llm4brain.testing import make_tiny_bids

    return make_tiny_bids


@pytest.fixture(scope="session")
def truncate_mp4():
    """``truncate_mp4(path, keep_frames)``: an mp4 cut after its first frames."""
    from llm4brain.testing import truncate_mp4

    return truncate_mp4


@pytest.fixture(scope="session")
def make_tiny_llm():
    """``make_tiny_llm(texts, hidden=..., layers=...)``: a tiny random Llama, no files."""
    from llm4brain.testing import make_tiny_llm

    return make_tiny_llm


@pytest.fixture(scope="session")
def tiny_world():
    """``tiny_world(tmp_path, seed=0, **sections)``: the random Stage I / II world (a dict)."""
    from llm4brain.testing import make_tiny_world

    return make_tiny_world


@pytest.fixture(scope="session")
def tiny_stage_config():
    """``tiny_stage_config(tmp_path, **sections)``: the smoke profile shrunk to that world."""
    from llm4brain.testing import tiny_stage_config

    return tiny_stage_config


@pytest.fixture(scope="session")
def fit_tiny_stage1():
    """``fit_tiny_stage1(world, steps=2)``: Stage I trained on it, ``(model, video, result)``."""
    from llm4brain.testing import fit_tiny_stage1

    return fit_tiny_stage1


@pytest.fixture(scope="session")
def smoke_chain(tmp_path_factory):
    """A ``LLM4BRAIN_HOME`` holding the smoke chain up to surrogate captions (dataset, trial
    cache, MAE, video-LLM, Stage I, captions), built once per session by
    ``tests/fault_chain.py`` in a subprocess. Tests copy it or add runs beside its own; none
    changes what it holds."""
    import subprocess
    import sys
    from pathlib import Path

    home = tmp_path_factory.mktemp("smoke_chain")
    env = dict(os.environ, LLM4BRAIN_HOME=str(home), MPLBACKEND="Agg")
    env.pop("LLM4BRAIN_FAULT", None)
    r = subprocess.run([sys.executable, str(Path(__file__).with_name("fault_chain.py")), "data",
                        "cache", "mae", "stage1", "captions"], env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0 and "fault_chain: done" in r.stdout, r.stdout[-2000:] + r.stderr[-4000:]
    return home
