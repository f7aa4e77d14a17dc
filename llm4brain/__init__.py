"""llm4brain: cross-subject semantic decoding of video-evoked fMRI with a frozen LLM.

Subpackages
-----------
Lowest layer first: each imports only the ones listed before it (``tests/test_layering.py``).

config      profiles (YAML) -> frozen dataclasses; run identity (``identity``, ``run_key``)
data        BIDS loaders of the HAD layout, trial and frame caches, splits
sim         the simulator of the embedded dataset (clips, descriptions, BOLD, oracle)
models      fMRI tokenizers, SC-MBM encoder, adaptors, video branch, LLMs, Stage I / II models
training    losses (paper eq. 1-6), the training loop, the leakage guard, the trainers
evaluation  retrieval, decoding, baselines, text metrics, chance, noise ceiling, tables, report
decoders    every decoder in one index; ridge, caption nearest-neighbour and semantic read-out
            in scikit-learn shape on a user's own arrays (``fit`` / ``predict`` / ``decode``)

The pipeline modules at the top (captions, dialogue, plotting*, provenance, cli, runnb,
nbdeps, gallery, ...) orchestrate these for the notebooks and the ``make`` targets.
"""
__version__ = "0.1.0"
__all__ = ["__version__"]
