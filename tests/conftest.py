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
