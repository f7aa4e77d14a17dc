"""Nonlinear low-rank adaptors (paper Fig. 2), inserted through peft's custom LoRA layers.

LLM4Brain freezes the SC-MBM fMRI encoder and the Q-Former and adds, to the *query
projection* of self-attention and to the *MLP* of every block, a nonlinear low-rank branch

.. math::  h = W_0 x + b_0 + \\frac{\\alpha}{r}\\, U\\, \\sigma(D\\, \\mathrm{drop}(x)),
           \\qquad D \\in \\mathbb{R}^{r \\times d_{in}},\\ U \\in \\mathbb{R}^{d_{out} \\times r},\\ U_0 = 0

(down-projection D, non-linearity sigma, up-projection U initialised to zero so that the
adapted model equals the frozen one at step 0, scaling alpha / r). With sigma = identity this is
LoRA (Hu et al. 2021).

Integration: :class:`NonlinearLowRankAdaptor` subclasses peft's LoRA ``Linear`` layer and is
registered for ``nn.Linear`` through ``LoraConfig._register_custom_module`` (peft's
experimental custom-layer API, peft >= 0.13), so peft's own machinery injects it, marks only
adaptor weights trainable and saves / loads them (``get_peft_model_state_dict``,
``set_peft_model_state_dict``, ``PeftModel.save_pretrained`` / ``from_pretrained``). A
nonlinear branch cannot be merged into ``W_0``; ``merge`` raises.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

import torch
import torch.nn as nn
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.lora.layer import Linear as _LoraLinear
from peft.tuners.lora.layer import LoraLayer
import pandas as pd

from ..config import AdaptorConfig
from .encoder import FMRIEncoder, MaskedBrainModel
from ..atomic import write_json

__all__ = ["NonlinearLowRankAdaptor", "ACTIVATIONS", "ENCODER_TARGETS", "QFORMER_TARGETS",
           "adaptor_layer_class", "make_lora_config", "target_modules_for", "add_adaptors",
           "count_parameters", "adaptor_table", "save_adaptor", "load_adaptor", "adapted_layers"]

#: name -> non-linearity module between down- and up-projection
ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU,
                                           "tanh": nn.Tanh, "identity": nn.Identity}

#: ``adaptor.target`` -> regex (peft full-match) over module names of our FMRIEncoder
#: (also inside a MaskedBrainModel or a larger model: the MAE decoder blocks are not matched)
ENCODER_TARGETS: dict[str, str] = {
    "query_mlp": r"(.*\.)?blocks\.\d+\.(attn\.q_proj|mlp\.fc1|mlp\.fc2)",
    "query": r"(.*\.)?blocks\.\d+\.attn\.q_proj",
    "mlp": r"(.*\.)?blocks\.\d+\.mlp\.(fc1|fc2)",
    "qkv_mlp": r"(.*\.)?blocks\.\d+\.(attn\.(q|k|v)_proj|mlp\.fc1|mlp\.fc2)",
}
_QF_MLP = r"intermediate(_query)?\.dense|output(_query)?\.dense"
#: ``adaptor.target`` -> regex over ``transformers.Blip2QFormerModel`` module names
#: (self-attention ``attention.attention.query``; MLPs ``intermediate[_query].dense`` and
#: ``output[_query].dense``; the attention output ``attention.output.dense`` is not an MLP)
QFORMER_TARGETS: dict[str, str] = {
    "query_mlp": rf"(.*\.)?layer\.\d+\.(attention\.attention\.query|{_QF_MLP})",
    "query": r"(.*\.)?layer\.\d+\.attention\.attention\.query",
    "mlp": rf"(.*\.)?layer\.\d+\.({_QF_MLP})",
    "qkv_mlp": rf"(.*\.)?layer\.\d+\.(attention\.attention\.(query|key|value)|{_QF_MLP})",
}


class NonlinearLowRankAdaptor(_LoraLinear):
    """peft LoRA ``Linear`` with a non-linearity between down- and up-projection (Fig. 2).

    ``forward(x) = base_layer(x) + lora_B(act(lora_A(dropout(x)))) * scaling`` with
    ``lora_B`` zero-initialised (peft's ``init_lora_weights=True``) and ``scaling = alpha / r``.
    The non-linearity is the class attribute ``nonlinearity`` (see :func:`adaptor_layer_class`).

    Parameters are those of ``peft.tuners.lora.layer.Linear`` (peft builds it).
    """

    nonlinearity: str = "gelu"
    other_param_names = LoraLayer.other_param_names + ("lora_act",)

    def update_layer(self, adapter_name, r, lora_alpha, config, **kwargs):
        if not hasattr(self, "lora_act"):
            self.lora_act = nn.ModuleDict()
        if getattr(config, "use_dora", False):
            raise ValueError("NonlinearLowRankAdaptor does not support DoRA (use_dora=True)")
        self.lora_act[adapter_name] = ACTIVATIONS[self.nonlinearity]()
        super().update_layer(adapter_name, r, lora_alpha=lora_alpha, config=config, **kwargs)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """(..., d_in) -> (..., d_out)."""
        if kwargs.pop("adapter_names", None) is not None:
            raise NotImplementedError("mixed-batch adapter_names is not supported by NonlinearLowRankAdaptor")
        result = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return result
        dtype = result.dtype
        for name in self.active_adapters:
            if name not in self.lora_A:
                continue
            a = self.lora_A[name]
            h = self._cast_input_dtype(x, a.weight.dtype)
            h = self.lora_B[name](self.lora_act[name](a(self.lora_dropout[name](h))))
            result = result + h * self.scaling[name]
        return result.to(dtype)

    def merge(self, safe_merge: bool = False, adapter_names=None) -> None:
        raise NotImplementedError("a nonlinear low-rank adaptor cannot be merged into the base weight "
                                  "(the non-linearity sits between the projections)")

    def get_delta_weight(self, adapter) -> torch.Tensor:
        raise NotImplementedError("a nonlinear low-rank adaptor has no equivalent delta weight")

    def __repr__(self) -> str:
        return f"NonlinearLowRankAdaptor[{self.nonlinearity}](" + super().__repr__().split("(", 1)[1]


_CLASSES: dict[str, type] = {"gelu": NonlinearLowRankAdaptor}


def adaptor_layer_class(nonlinearity: str) -> type:
    """The :class:`NonlinearLowRankAdaptor` subclass with the given non-linearity (cached)."""
    if nonlinearity not in ACTIVATIONS:
        raise ValueError(f"adaptor.nonlinearity = {nonlinearity!r} is not one of: {', '.join(ACTIVATIONS)}")
    if nonlinearity not in _CLASSES:
        _CLASSES[nonlinearity] = type(f"NonlinearLowRankAdaptor_{nonlinearity}", (NonlinearLowRankAdaptor,),
                                      {"nonlinearity": nonlinearity, "__module__": __name__})
    return _CLASSES[nonlinearity]


def _acfg(cfg):
    return getattr(cfg, "adaptor", cfg)


def make_lora_config(cfg, target_modules) -> LoraConfig:
    """A peft ``LoraConfig`` whose ``nn.Linear`` targets become :class:`NonlinearLowRankAdaptor`.

    Usable with ``peft.get_peft_model`` / ``PeftModel.from_pretrained(..., config=...)`` as well.

    Parameters
    ----------
    cfg : Config or AdaptorConfig
        ``rank``, ``alpha``, ``dropout``, ``nonlinearity``.
    target_modules : str (regex, full match) or list of str (name suffixes)
    """
    a = _acfg(cfg)
    if a.rank < 1:
        raise ValueError(f"adaptor.rank must be >= 1, got {a.rank}")
    lc = LoraConfig(r=int(a.rank), lora_alpha=float(a.alpha), lora_dropout=float(a.dropout),
                    target_modules=target_modules, bias="none", init_lora_weights=True)
    lc._register_custom_module({nn.Linear: adaptor_layer_class(a.nonlinearity)})
    return lc


def target_modules_for(model: nn.Module, target: str = "query_mlp") -> str:
    """The target-module regex for our encoder or a ``Blip2QFormerModel`` (``adaptor.target``)."""
    names = [n for n, _ in model.named_modules()]
    if isinstance(model, (FMRIEncoder, MaskedBrainModel)) or any(n.endswith("attn.q_proj") for n in names):
        table = ENCODER_TARGETS
    elif any(n.endswith("attention.attention.query") for n in names):
        table = QFORMER_TARGETS
    else:
        raise ValueError(f"cannot guess adaptor targets for {type(model).__name__}; pass target_modules "
                         f"(a regex or a list of Linear layer names)")
    if target not in table:
        raise ValueError(f"adaptor.target = {target!r} is not one of: {', '.join(table)}")
    return table[target]


def adapted_layers(model: nn.Module) -> list[str]:
    """Names of the layers that carry a :class:`NonlinearLowRankAdaptor`."""
    return [n for n, m in model.named_modules() if isinstance(m, NonlinearLowRankAdaptor)]


def add_adaptors(model: nn.Module, cfg, target_modules=None, *, adapter_name: str = "default",
                 trainable: Iterable[str] = ()) -> nn.Module:
    """Insert nonlinear low-rank adaptors in place (peft ``inject_adapter_in_model``).

    All base weights are frozen; only the adaptors (and parameters whose names start with a
    prefix in ``trainable``) require gradients.

    Parameters
    ----------
    model : nn.Module
        Our :class:`FMRIEncoder` / :class:`MaskedBrainModel`, a ``Blip2QFormerModel`` or any
        model with ``target_modules`` given.
    cfg : Config or AdaptorConfig
    target_modules : str or list of str, optional
        Default: :func:`target_modules_for` ``(model, cfg.adaptor.target)``.
    adapter_name : str
    trainable : iterable of str
        Name prefixes kept trainable (e.g. ``("tokenizer.",)`` in Stage I).

    Returns
    -------
    The same model, modified.
    """
    a = _acfg(cfg)
    targets = target_modules if target_modules is not None else target_modules_for(model, a.target)
    if isinstance(targets, str):
        hits = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and re.fullmatch(targets, n)]
        if not hits:
            raise ValueError(f"adaptor target regex {targets!r} matches no nn.Linear of {type(model).__name__}")
    inject_adapter_in_model(make_lora_config(a, targets), model, adapter_name=adapter_name)
    prefixes = tuple(trainable)
    if prefixes:
        for n, p in model.named_parameters():
            if n.startswith(prefixes):
                p.requires_grad_(True)
    meta = getattr(model, "_llm4brain_adaptors", {})
    meta[adapter_name] = dict(rank=a.rank, alpha=a.alpha, nonlinearity=a.nonlinearity, dropout=a.dropout,
                              target=a.target, target_modules=targets if isinstance(targets, str) else list(targets),
                              trainable=list(prefixes))
    model._llm4brain_adaptors = meta
    return model


def count_parameters(model: nn.Module) -> dict:
    """Parameter counts: ``dict(total, trainable, percent)`` (percent = 100 * trainable / total)."""
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return dict(total=int(total), trainable=int(train), percent=100.0 * train / max(total, 1))


def adaptor_table(models: dict):
    """DataFrame (one row per named model): total, trainable, percent, adapted layers."""

    rows = [dict(model=name, **count_parameters(m), adapted_layers=len(adapted_layers(m)))
            for name, m in models.items()]
    return pd.DataFrame(rows)


def save_adaptor(model: nn.Module, directory, *, adapter_name: str = "default",
                 include_trainable: bool = False) -> Path:
    """Save only the adaptor weights (peft state dict, safetensors) and their settings.

    Writes ``adaptor.safetensors`` and ``adaptor_config.json`` (plus ``trainable.safetensors``
    with the other trainable parameters when ``include_trainable``).
    """
    from safetensors.torch import save_file

    if not adapted_layers(model):
        raise ValueError("the model has no NonlinearLowRankAdaptor; call add_adaptors first")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    sd = get_peft_model_state_dict(model, adapter_name=adapter_name)
    save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(d / "adaptor.safetensors"))
    meta = dict(getattr(model, "_llm4brain_adaptors", {}).get(adapter_name, {}))
    meta.update(adapter_name=adapter_name, n_tensors=len(sd), n_params=int(sum(v.numel() for v in sd.values())))
    if include_trainable:
        extra = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters()
                 if p.requires_grad and "lora_" not in n}
        save_file(extra, str(d / "trainable.safetensors"))
        meta["trainable_tensors"] = len(extra)
    write_json(d / "adaptor_config.json", meta, indent=2)
    return d


def load_adaptor(model: nn.Module, directory, *, adapter_name: str | None = None) -> nn.Module:
    """Load adaptors saved by :func:`save_adaptor` (injecting them first when absent).

    Raises
    ------
    FileNotFoundError
        No ``adaptor.safetensors`` / ``adaptor_config.json`` in ``directory``.
    ValueError
        The saved adaptor does not fit the model (missing or unexpected adaptor keys).
    """
    from safetensors.torch import load_file

    d = Path(directory)
    if not (d / "adaptor.safetensors").is_file() or not (d / "adaptor_config.json").is_file():
        raise FileNotFoundError(f"no adaptor in {d}: expected adaptor.safetensors and adaptor_config.json "
                                f"written by save_adaptor")
    meta = json.loads((d / "adaptor_config.json").read_text())
    name = adapter_name or meta.get("adapter_name", "default")
    if not any(isinstance(m, NonlinearLowRankAdaptor) and name in m.lora_A for m in model.modules()):
        acfg = AdaptorConfig(rank=meta["rank"], alpha=meta["alpha"], nonlinearity=meta["nonlinearity"],
                             dropout=meta["dropout"], target=meta.get("target", "query_mlp"))
        add_adaptors(model, acfg, meta["target_modules"], adapter_name=name, trainable=meta.get("trainable", ()))
    sd = load_file(str(d / "adaptor.safetensors"))
    res = set_peft_model_state_dict(model, sd, adapter_name=name)
    missing = [k for k in res.missing_keys if "lora_" in k and f".{name}." in k]
    if missing or res.unexpected_keys:
        raise ValueError(f"adaptor in {d} does not fit this model: missing {missing[:5]}, "
                         f"unexpected {list(res.unexpected_keys)[:5]}")
    if (d / "trainable.safetensors").is_file():
        model.load_state_dict(load_file(str(d / "trainable.safetensors")), strict=False)
    return model
