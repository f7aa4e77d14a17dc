"""GPU-profile image decoder: a ``diffusers`` Stable unCLIP image-variation pipeline.

NVL (and MindEye2) turn a predicted CLIP image embedding into an image with an unCLIP
diffusion model. :func:`load_diffusion_decoder` loads a ``StableUnCLIPImg2ImgPipeline`` from
the local folder ``recon.diffusion_path`` (nothing downloads at run time);
:func:`encode_images` gives the pipeline's own CLIP image embeddings of frames (the targets a
high-level head is trained on); :func:`decode_image_embeddings` generates images from
embeddings. NVL's beta = 0.93 (``recon.diffusion_strength``) is the share of the predicted
embedding kept against the prior: unCLIP's ``noise_level = round((1 - beta) * 1000)`` noises
the embedding before decoding (0 = the embedding as predicted).

A folder without ``tokenizer``/``text_encoder`` (an image-only pipeline) is accepted: the
prompt is then an all-zero text embedding.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["DIFFUSION_DOWNLOAD", "load_diffusion_decoder", "encode_images",
           "decode_image_embeddings", "noise_level"]

#: What to download when ``recon.diffusion_path`` is missing.
DIFFUSION_DOWNLOAD = ("a diffusers Stable unCLIP pipeline, e.g. `huggingface-cli download "
                      "stabilityai/stable-diffusion-2-1-unclip-small --local-dir <dir>` (the "
                      "decoder family NVL and MindEye2 use), then set recon.diffusion_path: <dir> "
                      "in the profile")

_CLASSES = ("StableUnCLIPImg2ImgPipeline",)


def load_diffusion_decoder(cfg, device: str | torch.device = "cpu",
                           dtype: torch.dtype | None = None):
    """The unCLIP pipeline at ``cfg.recon.diffusion_path`` on ``device``.

    Raises
    ------
    FileNotFoundError
        When ``recon.diffusion_path`` is empty or holds no ``model_index.json``, naming the key
        and what to download.
    ValueError
        When the folder holds another kind of pipeline.
    """
    from diffusers import StableUnCLIPImg2ImgPipeline

    raw = cfg.recon.diffusion_path
    if not raw:
        raise FileNotFoundError(f"recon.diffusion_path is empty: the diffusion decoder "
                                f"(recon.decoder: diffusion) needs {DIFFUSION_DOWNLOAD}")
    folder = Path(os.path.expanduser(os.path.expandvars(raw)))
    index = folder / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"recon.diffusion_path = {raw!r}: {index} not found. Download "
                                f"{DIFFUSION_DOWNLOAD}")
    kind = json.loads(index.read_text()).get("_class_name")
    if kind not in _CLASSES:
        raise ValueError(f"recon.diffusion_path = {raw!r} holds a {kind}; the decoder needs one "
                         f"of {_CLASSES} ({DIFFUSION_DOWNLOAD})")
    extra = {k: None for k in ("tokenizer", "text_encoder") if not (folder / k).is_dir()}
    kw = {"torch_dtype": dtype} if dtype is not None else {}
    pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(str(folder), local_files_only=True,
                                                       **extra, **kw)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@torch.no_grad()
def encode_images(pipe, frames: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """The pipeline's CLIP image embeddings of uint8 frames (N, H, W, 3): (N, D) float32."""
    a = np.asarray(frames)
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, H, W, 3), got {a.dtype} {a.shape}")
    enc = pipe.image_encoder
    p = next(enc.parameters())
    out = []
    for b in range(0, len(a), batch_size):
        px = pipe.feature_extractor(images=list(a[b:b + batch_size]),
                                    return_tensors="pt").pixel_values
        out.append(enc(px.to(p.device, p.dtype)).image_embeds.float().cpu().numpy())
    return np.concatenate(out)


def noise_level(strength: float) -> int:
    """unCLIP ``noise_level`` of NVL's beta (``recon.diffusion_strength``) in [0, 1]."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"recon.diffusion_strength = {strength} must lie in [0, 1]")
    return int(round((1.0 - strength) * 1000))


@torch.no_grad()
def decode_image_embeddings(pipe, embeds, *, steps: int = 25, strength: float = 0.93,
                            size: int | None = None, seed: int = 0,
                            batch_size: int = 4) -> np.ndarray:
    """Images generated from image embeddings (N, D): uint8 (N, S, S, 3).

    Parameters
    ----------
    steps : int
        Denoising steps (``recon.diffusion_steps``).
    strength : float
        NVL's beta (``recon.diffusion_strength``), see :func:`noise_level`.
    size : int, optional
        Output side in pixels (default: the pipeline's).
    seed : int
        Seeds the generator, so a run is reproducible.
    """
    E = torch.as_tensor(np.asarray(embeds), dtype=torch.float32)
    d = int(pipe.image_encoder.config.projection_dim)
    if E.ndim != 2 or E.shape[1] != d:
        raise ValueError(f"image embeddings must have shape (N, {d}) for this pipeline, got "
                         f"{tuple(E.shape)}")
    p = next(pipe.unet.parameters())
    size = size or int(pipe.unet.config.sample_size) * pipe.vae_scale_factor
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    out = []
    for b in range(0, len(E), batch_size):
        e = E[b:b + batch_size].to(p.device, p.dtype)
        kw = {}
        if pipe.tokenizer is None or pipe.text_encoder is None:
            kw["prompt_embeds"] = torch.zeros(len(e), 1, int(pipe.unet.config.cross_attention_dim),
                                              device=p.device, dtype=p.dtype)
        else:
            kw["prompt"] = [""] * len(e)
        img = pipe(image_embeds=e, guidance_scale=1.0, num_inference_steps=int(steps),
                   height=size, width=size, noise_level=noise_level(strength),
                   output_type="np", generator=gen, **kw).images
        out.append((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(out)
