"""Load public MinD-Vis / Mind-Video SC-MBM checkpoints into our encoder (key mapping).

MinD-Vis (Chen et al., CVPR 2023; ``code/sc_mbm/mae_for_fmri.py``) saves
``{'model': state_dict, 'config': ..., ...}`` after masked brain modelling on HCP / UKB; the
LDM finetuning checkpoints nest it as ``{'metafile': {'model': ..., 'config': ...}}``; Mind-Video
(Chen, Qing & Zhou, NeurIPS 2023) saves its ``fMRIEncoder`` as a diffusers model
(``fmri_encoder/diffusion_pytorch_model.bin``). Their keys (timm ``Block``):

=================================  ==========================================================
theirs                             ours
=================================  ==========================================================
``blocks.i.norm1.{weight,bias}``   ``blocks.i.norm1.*``
``blocks.i.attn.qkv.weight`` (3D,D)  split in three: ``blocks.i.attn.{q,k,v}_proj.weight``
``blocks.i.attn.qkv.bias`` (3D)    split: ``blocks.i.attn.{q,k,v}_proj.bias``
``blocks.i.attn.proj.*``           ``blocks.i.attn.out_proj.*``
``blocks.i.norm2.*``, ``mlp.fc1/fc2``  same names
``norm.*``, ``cls_token``          same names (``cls_token`` only with ``use_cls_token``)
``decoder_embed``, ``mask_token``, ``decoder_blocks.i.*``, ``decoder_norm``
                                   same names in :class:`~llm4brain.models.encoder.MaskedBrainModel`
``patch_embed.proj.*`` (Conv1d)    ``tokenizer.proj.*`` with the ``patch1d`` tokenizer; else
                                   skipped (1-D patches of a flat voxel vector)
``pos_embed``                      the encoder's table with ``patch1d`` (cls row dropped);
                                   else skipped (ours is 3-D over the token grid)
``decoder_pos_embed``              skipped: 1-D positions; ours are 3-D over the token grid
``decoder_pred.*``                 skipped: predicts 1-D voxel patches, ours 3-D token patches
``blocks.i.attn_temp/norm_temp``   skipped: Mind-Video's temporal attention has no counterpart
``proj_head.*``, ``logit_scale``   skipped: Mind-Video's contrastive head
=================================  ==========================================================
"""
from __future__ import annotations

import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

__all__ = ["CheckpointReport", "load_torch_file", "read_state_dict", "map_mindvis_state_dict",
           "load_mindvis_checkpoint"]

log = logging.getLogger(__name__)

_BLOCK = re.compile(r"^(blocks|decoder_blocks)\.(\d+)\.(.+)$")
_SAME_IN_BLOCK = ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight",
                  "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias")
_SKIP_PREFIX = {
    "patch_embed.": "MinD-Vis' Conv1d patch embedding over a flat voxel vector does not apply to "
                    "3-D tokens; the tokenizer is trained from scratch",
    "pos_embed": "1-D positional embedding; ours is 3-D over the tokenizer grid",
    "decoder_pos_embed": "1-D positional embedding; ours is 3-D over the tokenizer grid",
    "decoder_pred.": "predicts 1-D voxel patches; our decoder predicts 3-D token patches",
    "nature_img_": "MinD-Vis' image-reconstruction head, not part of the encoder",
    "proj_head.": "Mind-Video's contrastive projection head, not part of the encoder",
    "logit_scale": "Mind-Video's contrastive temperature, not part of the encoder",
}


@dataclass
class CheckpointReport:
    """What :func:`load_mindvis_checkpoint` did.

    loaded : our keys filled from the checkpoint
    missing : our transformer keys the checkpoint did not provide (left as initialised)
    unexpected : checkpoint keys that have no place in our model
    skipped : checkpoint key -> reason it does not apply (logged as a warning)
    """

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.path}: loaded {len(self.loaded)} tensors, missing {len(self.missing)}, "
                f"unexpected {len(self.unexpected)}, skipped {len(self.skipped)}")


# ====================================================================== reading
class _Stub:
    """Placeholder for pickled Python objects of the original code base (configs...)."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state


_SAFE_MODULES = ("torch", "collections", "numpy", "_codecs")


class _LenientUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.split(".")[0] in _SAFE_MODULES:
            return super().find_class(module, name)
        if module == "builtins" and name in ("set", "frozenset", "slice", "range", "complex", "dict",
                                             "list", "tuple", "int", "float", "str", "bytes", "bool"):
            return super().find_class(module, name)
        return type(name, (_Stub,), {"__module__": "llm4brain.stub." + module})


class _lenient_pickle:  # a minimal pickle "module" for torch.load(pickle_module=...)
    Unpickler = _LenientUnpickler
    load = pickle.load
    __name__ = "llm4brain_lenient_pickle"


def _find_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for rel in ("fmri_encoder/diffusion_pytorch_model.safetensors",
                    "fmri_encoder/diffusion_pytorch_model.bin",
                    "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                    "checkpoint.pth", "model.safetensors", "pytorch_model.bin"):
            if (path / rel).is_file():
                return path / rel
        cands = sorted(path.glob("*.pth")) + sorted(path.glob("*.pt"))
        if len(cands) == 1:
            return cands[0]
    raise FileNotFoundError(f"no SC-MBM checkpoint at {path} (config key encoder.checkpoint): expected a "
                            f".pth/.bin/.safetensors file or a Mind-Video folder with fmri_encoder/")


def _unwrap(obj) -> dict:
    for _ in range(4):
        if isinstance(obj, dict) and not all(torch.is_tensor(v) for v in obj.values()):
            for key in ("model", "metafile", "state_dict", "model_state_dict", "module"):
                if key in obj and isinstance(obj[key], dict):
                    obj = obj[key]
                    break
            else:
                obj = {k: v for k, v in obj.items() if torch.is_tensor(v)}
        else:
            break
    if not isinstance(obj, dict) or not obj:
        raise ValueError("the checkpoint holds no state dict (looked under 'model', 'metafile', 'state_dict')")
    return obj


def load_torch_file(path) -> object:
    """``torch.load`` of a checkpoint someone else wrote, without running its pickled code.

    ``weights_only=True`` first; a file that also pickles Python objects of its original code
    base (MinD-Vis configs, LAVIS / Video-LLaMA training state) is read again with a restricted
    unpickler that builds only torch / numpy / collections objects and plain builtins and
    replaces every other class by an inert stub — nothing of the file's own code runs.
    """
    f = Path(path)
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError):
        log.warning("%s pickles Python objects of its original code base; reading it with those "
                    "objects replaced by stubs", f)
        return torch.load(f, map_location="cpu", weights_only=False, pickle_module=_lenient_pickle)


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """Read a MinD-Vis / Mind-Video checkpoint into a flat ``{key: tensor}`` (CPU).

    Tries ``torch.load(weights_only=True)`` first; a file that also pickles Python objects of
    the original code (MinD-Vis stores its ``Config_MBM_fMRI``) is read with those objects
    replaced by inert stubs. Only load checkpoints from sources you trust.
    """
    f = _find_file(Path(os.path.expanduser(os.path.expandvars(str(path)))))   # ${LLM4BRAIN_MODELS}/...
    if f.suffix == ".safetensors":
        from safetensors.torch import load_file
        return _unwrap(load_file(str(f)))
    return _unwrap(load_torch_file(f))


# ====================================================================== mapping
def _strip_prefix(sd: dict) -> dict:
    """Remove a wrapper prefix (``module.``, ``cond_stage_model.mae.``...) in front of ``blocks.``."""
    anchor = next((k for k in sd if re.search(r"(^|\.)blocks\.0\.", k) and not k.startswith("decoder_")
                   and ".decoder_blocks." not in k), None)
    if anchor is None:
        return sd
    prefix = anchor[:anchor.index("blocks.0.")]
    if not prefix:
        return sd
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def map_mindvis_state_dict(sd: dict) -> tuple[dict, dict, list]:
    """Translate MinD-Vis / Mind-Video keys into ours (see the module docstring table).

    Returns
    -------
    mapped : dict
        Our key -> tensor; encoder keys are relative to :class:`FMRIEncoder`, decoder keys
        (``decoder_*``, ``mask_token``) relative to :class:`MaskedBrainModel`.
    skipped : dict
        Their key -> reason.
    unexpected : list
        Their keys with no counterpart and no known reason.
    """
    sd = _strip_prefix(dict(sd))
    has_decoder = any(k.startswith("decoder_embed.") for k in sd)
    mapped, skipped, unexpected = {}, {}, []
    for k, v in sd.items():
        reason = next((r for p, r in _SKIP_PREFIX.items() if k.startswith(p)), None)
        if reason is not None:
            skipped[k] = reason
            continue
        m = _BLOCK.match(k)
        if m:
            group, i, rest = m.groups()
            base = f"{group}.{i}."
            if rest in _SAME_IN_BLOCK:
                mapped[base + rest] = v
            elif rest in ("attn.qkv.weight", "attn.qkv.bias"):
                if v.shape[0] % 3:
                    raise ValueError(f"checkpoint key {k} has shape {tuple(v.shape)}, not 3*D rows")
                kind = rest.rsplit(".", 1)[1]
                for name, part in zip(("q_proj", "k_proj", "v_proj"), v.chunk(3, dim=0)):
                    mapped[f"{base}attn.{name}.{kind}"] = part.clone()
            elif rest.startswith("attn.proj."):
                mapped[base + "attn.out_proj." + rest[len("attn.proj."):]] = v
            elif rest.startswith(("attn_temp.", "norm_temp.")):
                skipped[k] = "Mind-Video's temporal attention has no counterpart in our encoder"
            else:
                unexpected.append(k)
        elif k in ("norm.weight", "norm.bias", "cls_token") or k.startswith(("decoder_embed.", "decoder_norm.")):
            mapped[k] = v
        elif k == "mask_token":
            if has_decoder:
                mapped[k] = v
            else:
                skipped[k] = "encoder-side mask token (unused at inference)"
        else:
            unexpected.append(k)
    return mapped, skipped, unexpected


def _patch1d_parts(encoder, sd: dict, path) -> dict:
    """With the ``patch1d`` tokenizer, MinD-Vis's patch embedding and positional table load
    too: ``patch_embed.proj.*`` -> ``tokenizer.proj.*`` (a Conv1d of the same shape) and
    ``pos_embed`` (1, [1 +] n_patches, D; the cls row dropped) -> the encoder's table."""
    out = {}
    tok = encoder.tokenizer
    for kind in ("weight", "bias"):
        k = f"patch_embed.proj.{kind}"
        if k in sd:
            want = tuple(getattr(tok.proj, kind).shape)
            if tuple(sd[k].shape) != want:
                raise ValueError(f"checkpoint {path}: {k} has shape {tuple(sd[k].shape)} but the "
                                 f"patch1d tokenizer's Conv1d is {want}: set tokenizer.embed_dim "
                                 f"to the checkpoint's width, tokenizer.patch1d_size to its kernel "
                                 f"and tokenizer.in_chans to its input channels (MinD-Vis: 1)")
            out[f"tokenizer.proj.{kind}"] = sd[k]
    if "pos_embed" in sd:
        pe = sd["pos_embed"]
        n = tok.n_grid
        if pe.ndim == 3 and pe.shape[1] == n + 1:
            pe = pe[:, 1:]
        if tuple(pe.shape) != tuple(encoder.pos_embed.shape):
            raise ValueError(f"checkpoint {path}: pos_embed has {tuple(sd['pos_embed'].shape)} "
                             f"but the encoder's table is {tuple(encoder.pos_embed.shape)} "
                             f"({n} patches): the checkpoint was made for another number of "
                             f"voxels (MinD-Vis pads each subject's voxels to num_voxels)")
        out["pos_embed"] = pe
    return out


def _is_decoder_key(k: str) -> bool:
    return k.startswith(("decoder_", "mask_token"))


def load_mindvis_checkpoint(model: nn.Module, path, *, strict_shapes: bool = True) -> CheckpointReport:
    """Load the transformer blocks of a MinD-Vis / Mind-Video checkpoint into our model.

    Parameters
    ----------
    model : FMRIEncoder or MaskedBrainModel
        Build it with the checkpoint's sizes (MinD-Vis: ``configs/had.yaml``: embed 1024,
        depth 24, 16 heads, mlp_ratio 1.0, decoder 512). Load before adding adaptors (keys
        under a peft ``base_layer`` are found too).
    path : path
        ``.pth`` / ``.bin`` / ``.safetensors`` file or Mind-Video pipeline folder.
    strict_shapes : bool
        Raise on a shape mismatch (else skip the tensor with a warning).

    Returns
    -------
    CheckpointReport
        Also logged: one warning per kind of skipped key (their Conv1d patch embedding and 1-D
        positional embedding do not apply), and missing / unexpected keys.
    """
    from .encoder import FMRIEncoder, MaskedBrainModel

    if isinstance(model, MaskedBrainModel):
        enc_prefix, has_dec = "encoder.", True
    elif isinstance(model, FMRIEncoder):
        enc_prefix, has_dec = "", False
    else:
        raise TypeError(f"load_mindvis_checkpoint expects an FMRIEncoder or MaskedBrainModel, "
                        f"got {type(model).__name__}")
    sd = read_state_dict(path)
    encoder = model if isinstance(model, FMRIEncoder) else model.encoder
    whole = _patch1d_parts(encoder, _strip_prefix(dict(sd)), path) \
        if getattr(encoder.tokenizer, "kind", "") == "patch1d" else {}
    consumed = {"pos_embed"} | {f"patch_embed.proj.{t}" for t in ("weight", "bias")
                                if f"tokenizer.proj.{t}" in whole}
    sd = {k: v for k, v in _strip_prefix(dict(sd)).items()
          if not (whole and k in consumed and (k != "pos_embed" or "pos_embed" in whole))}
    mapped, skipped, unexpected = map_mindvis_state_dict(sd)
    ours = model.state_dict()
    report = CheckpointReport(path=str(path), skipped=dict(skipped), unexpected=list(unexpected))
    to_load = {enc_prefix + k: v for k, v in whole.items() if k != "pos_embed"}
    if "pos_embed" in whole:                 # a non-persistent buffer: copied, not state-loaded
        with torch.no_grad():
            encoder.pos_embed.copy_(whole["pos_embed"].to(encoder.pos_embed.dtype))
    for k, v in mapped.items():
        if _is_decoder_key(k):
            if not has_dec:
                report.skipped[k] = "MAE decoder weight; load into a MaskedBrainModel to use it"
                continue
            target = k
        else:
            target = enc_prefix + k
        if target not in ours:
            alt = re.sub(r"\.(weight|bias)$", r".base_layer.\1", target)   # peft-wrapped Linear
            if alt in ours:
                target = alt
            elif k == "cls_token":
                report.skipped[k] = "our encoder has no cls token (encoder.use_cls_token: false)"
                continue
            else:
                report.unexpected.append(k)
                continue
        if tuple(ours[target].shape) != tuple(v.shape):
            ref = mapped.get("norm.weight")
            D = ref.shape[0] if ref is not None else "?"
            depth = 1 + max((int(m.group(2)) for m in map(_BLOCK.match, mapped) if m and m.group(1) == "blocks"),
                            default=-1)
            msg = (f"checkpoint tensor {k} has shape {tuple(v.shape)} but our {target} is "
                   f"{tuple(ours[target].shape)}; the checkpoint looks like embed_dim={D}, depth={depth}: "
                   f"set encoder.embed_dim / num_heads / mlp_ratio / depth / decoder_embed_dim in the "
                   f"profile to the checkpoint's (MinD-Vis: 1024 / 16 / 1.0 / 24 / 512, see configs/had.yaml)")
            if strict_shapes:
                raise ValueError(msg)
            log.warning(msg)
            report.skipped[k] = "shape mismatch"
            continue
        to_load[target] = v.to(ours[target].dtype)
    model.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load) + (["pos_embed"] if "pos_embed" in whole else [])
    transformer = re.compile(r"^(encoder\.)?(blocks\.|norm\.|cls_token)|^(decoder_blocks\.|decoder_embed\.|"
                             r"decoder_norm\.|mask_token)")
    report.missing = sorted(k for k in ours if transformer.match(k) and k not in to_load
                            and "lora_" not in k)
    reasons = {}
    for k, r in report.skipped.items():
        reasons.setdefault(r, []).append(k)
    for r, keys in reasons.items():
        log.warning("checkpoint %s: skipped %d key(s) (%s): %s", path, len(keys), ", ".join(keys[:3])
                    + (" ..." if len(keys) > 3 else ""), r)
    if report.missing:
        log.warning("checkpoint %s: %d of our transformer keys are missing (left as initialised): %s",
                    path, len(report.missing), report.missing[:5])
    if report.unexpected:
        log.warning("checkpoint %s: %d unexpected keys ignored: %s", path, len(report.unexpected),
                    report.unexpected[:5])
    log.info(report.summary())
    return report
