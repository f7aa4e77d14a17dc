"""The GPU profiles' diffusion decoder, exercised with a tiny random unCLIP pipeline."""
import json

import numpy as np
import pytest

from llm4brain.config import load_config
from llm4brain.models.diffusion import (decode_image_embeddings, encode_images,
                                        load_diffusion_decoder, noise_level)
from llm4brain.testing import make_tiny_unclip


def _cfg(path):
    return load_config("smoke", overrides={"recon": {"decoder": "diffusion",
                                                     "diffusion_path": str(path)}})


def test_missing_path_names_the_key_and_the_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="recon.diffusion_path is empty.*download"):
        load_diffusion_decoder(load_config("smoke"))
    with pytest.raises(FileNotFoundError, match=r"recon.diffusion_path = .*model_index.json"):
        load_diffusion_decoder(_cfg(tmp_path / "nowhere"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model_index.json").write_text(json.dumps(
        {"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ValueError, match="StableDiffusionPipeline"):
        load_diffusion_decoder(_cfg(tmp_path / "other"))
    assert noise_level(0.93) == 70 and noise_level(1.0) == 0
    with pytest.raises(ValueError, match="diffusion_strength"):
        noise_level(1.5)


def test_tiny_pipeline_encodes_and_decodes(tmp_path):
    pipe = load_diffusion_decoder(_cfg(make_tiny_unclip(tmp_path / "unclip")))
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    emb = encode_images(pipe, frames)
    assert emb.shape == (3, 8) and np.isfinite(emb).all()
    a = decode_image_embeddings(pipe, emb[:2], steps=2, size=16, seed=1)
    b = decode_image_embeddings(pipe, emb[:2], steps=2, size=16, seed=1)
    assert a.shape == (2, 16, 16, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)                       # seeded: reproducible
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        decode_image_embeddings(pipe, np.zeros((1, 5)), steps=1)
