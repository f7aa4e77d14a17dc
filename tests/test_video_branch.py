"""Frame encoders, Q-Formers, the video branch, Video-LLaMA key mapping, frame-feature cache."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from llm4brain.config import load_config
from llm4brain.dryrun import lavis_key
from llm4brain.models.frame_encoders import (FRAME_ENCODERS, EfficientNetLite0Encoder,
                                             build_frame_encoder, build_frame_feature_cache,
                                             encode_frames, frame_feature_dim, subsample_frames)
from llm4brain.models.qformer import (FrameQFormer, VideoQFormer, build_video_branch,
                                      load_branch_checkpoint, map_videollama_state_dict)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    return load_config("smoke", overrides={"run": {"run_dir": str(run)}})


@pytest.fixture(scope="module")
def effnet64():
    return EfficientNetLite0Encoder(image_size=64)


def _frames(rng, n, size=64):
    return torch.from_numpy(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))


# ----------------------------------------------------------------------------- encoders
def test_registry_keys():
    assert set(FRAME_ENCODERS) == {"efficientnet-lite0", "blip2-vision"}


def test_effnet_shapes_frozen_and_reference(effnet64, rng):
    x = _frames(rng, 3)
    out = effnet64(x)
    assert out.shape == (3, 4, 1280)                 # 64 px -> 2 x 2 cells
    assert not any(p.requires_grad for p in effnet64.parameters())
    effnet64.train()
    assert not effnet64.training and not effnet64.net.training
    # independent reference: manual ImageNet normalisation + the package's extract_features
    mean = np.array([0.485, 0.456, 0.406])[None, :, None, None]
    std = np.array([0.229, 0.224, 0.225])[None, :, None, None]
    pix = (x.numpy().transpose(0, 3, 1, 2) / 255.0 - mean) / std
    with torch.no_grad():
        ref = effnet64.net.extract_features(torch.tensor(pix, dtype=torch.float32))
    np.testing.assert_allclose(out.numpy(), ref.flatten(2).transpose(1, 2).numpy(), atol=1e-4)


def test_effnet_resizes_to_image_size(effnet64, rng):
    assert effnet64(_frames(rng, 2, size=96)).shape == (2, 4, 1280)
    assert effnet64.n_patches() == 4


def test_encoder_rejects_float_frames(effnet64):
    with pytest.raises(TypeError, match="uint8"):
        effnet64(torch.zeros(1, 64, 64, 3))


def test_unknown_frame_encoder_is_clear(cfg):
    bad = cfg.replace(video__frame_encoder="resnet")
    with pytest.raises(KeyError, match="video.frame_encoder"):
        build_frame_encoder(bad)


def test_blip2_missing_path_names_file_and_key(cfg, tmp_path):
    missing = tmp_path / "blip2-flan-t5-xxl"
    bad = cfg.replace(video__frame_encoder="blip2-vision", video__frame_encoder_path=str(missing))
    with pytest.raises(FileNotFoundError) as exc:
        build_frame_encoder(bad)
    assert str(missing) in str(exc.value) and "video.frame_encoder_path" in str(exc.value)
    with pytest.raises(FileNotFoundError, match="video.frame_encoder_path"):
        frame_feature_dim(bad)


def _tiny_blip2_vision():
    from transformers import Blip2VisionConfig, Blip2VisionModel
    torch.manual_seed(0)
    conf = Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, image_size=32, patch_size=16)
    return Blip2VisionModel(conf).eval()


@pytest.mark.parametrize("layout", ["vision-folder", "blip2-folder"])
def test_blip2_vision_local_folder(cfg, tmp_path, rng, layout):
    import json

    from safetensors.torch import save_file
    model = _tiny_blip2_vision()
    folder = tmp_path / layout
    if layout == "vision-folder":
        model.save_pretrained(folder)
    else:   # a whole BLIP-2 folder: weights prefixed with vision_model.
        folder.mkdir()
        conf = {"model_type": "blip-2", "vision_config": model.config.to_dict()}
        (folder / "config.json").write_text(json.dumps(conf))
        save_file({f"vision_model.{k}": v.contiguous() for k, v in model.state_dict().items()},
                  str(folder / "model.safetensors"))
    c = cfg.replace(video__frame_encoder="blip2-vision", video__frame_encoder_path=str(folder),
                    video__image_size=32, video__encoder_bf16=False)
    enc = build_frame_encoder(c)
    assert frame_feature_dim(c) == 32 and enc.feature_dim == 32
    x = _frames(rng, 2, size=32)
    out = enc(x)
    assert out.shape == (2, 1 + 4, 32)
    # reference: the encoder output *before* post_layernorm (that LayerNorm is ln_vision)
    pix = enc.preprocess(x)
    with torch.no_grad():
        h = model.encoder(inputs_embeds=model.embeddings(pix)).last_hidden_state
    np.testing.assert_allclose(out.numpy(), h.numpy(), atol=1e-5)


# ----------------------------------------------------------------------------- Q-Formers
def test_qformer_shapes_and_attention(cfg):
    torch.manual_seed(0)
    br = build_video_branch(cfg, encoder_dim=40, llm_dim=24)
    v = cfg.video
    feats = torch.randn(2, v.n_frames, 5, 40)
    assert br.frame_tokens(feats).shape == (2, v.n_frames, v.num_query_tokens, v.qformer_hidden)
    assert br.video_hidden(feats).shape == (2, v.num_video_query_tokens, v.qformer_hidden)
    out = br(feats)
    assert out.shape == (2, v.num_video_query_tokens, 24)
    assert br.num_tokens == v.num_video_query_tokens
    att = br.frame_attention(feats)
    assert att.shape == (2, v.n_frames, v.num_query_tokens, 5)
    np.testing.assert_allclose(att.sum(-1).numpy(), 1.0, atol=1e-5)


def test_frame_order_matters_and_too_many_frames():
    torch.manual_seed(0)
    vq = VideoQFormer(hidden=16, num_queries=3, layers=1, heads=2, intermediate=32,
                      max_frame_pos=4, dropout=0.0).eval()
    x = torch.randn(1, 4, 2, 16)
    with torch.no_grad():    # sharpen the (near-uniform at init) cross-attention
        att = vq.qformer.encoder.layer[0].crossattention.attention
        att.query.weight.mul_(40.0)
        att.key.weight.mul_(40.0)
        a, b = vq(x), vq(x.flip(1))
    assert a.shape == (1, 3, 16)
    assert not torch.allclose(a, b, atol=1e-4)        # frame position embeddings ...
    with torch.no_grad():
        vq.frame_position.weight.zero_()
        torch.testing.assert_close(vq(x), vq(x.flip(1)), atol=1e-5, rtol=1e-5)  # ... only
    with pytest.raises(ValueError, match="max_frame_pos"):
        vq(torch.randn(1, 5, 2, 16))


def test_frame_qformer_queries_learned():
    fq = FrameQFormer(8, num_queries=4, hidden=16, layers=1, heads=2, intermediate=32)
    names = dict(fq.named_parameters())
    assert names["query_tokens"].shape == (1, 4, 16) and names["query_tokens"].requires_grad


def test_branch_rejects_more_frames_than_positions(cfg):
    with pytest.raises(ValueError, match="max_frame_pos"):
        build_video_branch(cfg.replace(video__n_frames=40), 8, 8)


# ----------------------------------------------------------------------------- checkpoints
# Our key -> the Video-LLaMA (LAVIS) name, written independently of the loader
# (llm4brain.dryrun writes the dry run's Video-LLaMA checkpoint with it).
_to_lavis = lavis_key


def test_videollama_checkpoint_roundtrip(cfg, tmp_path):
    torch.manual_seed(1)
    src = build_video_branch(cfg, 12, 10)
    sd = {_to_lavis(k): v.clone() for k, v in src.state_dict().items()}
    # parts of a real checkpoint that must be ignored
    sd["llama_model.model.embed_tokens.weight"] = torch.zeros(3, 3)
    sd["Qformer.bert.encoder.layer.0.intermediate.dense.weight"] = torch.zeros(3, 3)
    sd["Qformer.cls.predictions.bias"] = torch.zeros(3)
    sd["visual_encoder.blocks.0.attn.qkv.weight"] = torch.zeros(3, 3)
    path = tmp_path / "VL_finetuned.pth"
    torch.save({"model": sd}, path)
    torch.manual_seed(2)
    dst = build_video_branch(cfg, 12, 10)
    loaded = load_branch_checkpoint(dst, str(path), "video.checkpoint",
                                    required=("video_qformer.", "proj."))
    assert set(loaded) == set(src.state_dict())
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_mapping_of_transformers_blip2_names():
    sd = {"qformer.encoder.layer.0.attention.attention.query.weight": torch.ones(1),
          "qformer.layernorm.weight": torch.ones(1), "query_tokens": torch.ones(1),
          "vision_model.post_layernorm.bias": torch.ones(1),
          "language_model.lm_head.weight": torch.ones(1)}
    out = map_videollama_state_dict(sd)
    assert set(out) == {"frame_qformer.qformer.encoder.layer.0.attention.attention.query.weight",
                        "frame_qformer.qformer.layernorm.weight", "frame_qformer.query_tokens",
                        "ln_vision.bias"}


def test_missing_checkpoint_names_file_and_key(cfg, tmp_path):
    br = build_video_branch(cfg, 12, 10)
    missing = tmp_path / "Video-LLaMA-2-7B-Finetuned" / "VL_LLaMA_2_7B_Finetuned.pth"
    with pytest.raises(FileNotFoundError) as exc:
        load_branch_checkpoint(br, str(missing), "video.checkpoint")
    assert str(missing) in str(exc.value) and "video.checkpoint" in str(exc.value)


def test_checkpoint_shape_mismatch_is_clear(cfg, tmp_path):
    src = build_video_branch(cfg.replace(video__qformer_hidden=32), 12, 10)
    path = tmp_path / "ck.pth"
    torch.save({_to_lavis(k): v for k, v in src.state_dict().items()}, path)
    with pytest.raises(ValueError, match="qformer_hidden"):
        load_branch_checkpoint(build_video_branch(cfg, 12, 10), str(path), "video.checkpoint")


# ----------------------------------------------------------------------------- feature cache
def test_subsample_frames():
    np.testing.assert_array_equal(subsample_frames(8, 4), [0, 2, 5, 7])
    np.testing.assert_array_equal(subsample_frames(4, 4), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="video.n_frames"):
        subsample_frames(4, 8)


def test_encode_frames_independent_of_batch_size(effnet64, rng):
    frames = rng.integers(0, 256, (3, 2, 64, 64, 3), dtype=np.uint8)
    a = encode_frames(effnet64, frames, batch_size=2, progress=False)
    b = encode_frames(effnet64, frames, batch_size=64, progress=False)
    assert a.shape == (3, 2, 4, 1280) and a.dtype == np.float16
    np.testing.assert_allclose(a.astype(float), b.astype(float), atol=1e-2)


class _Counting(torch.nn.Module):
    """Wraps an encoder and counts forward calls."""

    def __init__(self, enc):
        super().__init__()
        self.enc, self.calls = enc, 0
        self.mean, self.feature_dim = enc.mean, enc.feature_dim

    def forward(self, x):
        self.calls += 1
        return self.enc(x)

    def n_patches(self):
        return self.enc.n_patches()


def test_frame_feature_cache_reused_and_keyed(cfg, effnet64, rng, tmp_path):
    from llm4brain.data import FrameCache
    c = cfg.replace(video__n_frames=2, video__image_size=64, video__encoder_bf16=False)
    frames = rng.integers(0, 256, (3, 4, 64, 64, 3), dtype=np.uint8)
    index = pd.DataFrame(dict(stim_file=["a.mp4", "b.mp4", "c.mp4"],
                              path=[str(tmp_path / f) for f in "abc"]))
    fc = FrameCache(frames, index, tmp_path / "frames-abc")
    enc = _Counting(effnet64)
    cache = build_frame_feature_cache(c, None, frame_cache=fc, encoder=enc, progress=False)
    assert cache.features.shape == (3, 2, 4, 1280) and enc.calls > 0
    assert cache.path.parent == c.run_dir / "cache"
    assert cache.path.name.startswith("frame_features_")
    # rows come back in the requested order and equal a direct encoding of frames 0 and 3
    got = cache.get(["c.mp4", "a.mp4"])
    ref = effnet64(torch.from_numpy(frames[2, [0, 3]]))
    np.testing.assert_allclose(got[0].numpy(), ref.numpy(), atol=2e-2, rtol=1e-2)
    with pytest.raises(KeyError, match="z.mp4"):
        cache.get(["z.mp4"])
    n_calls, mtime = enc.calls, cache.path.stat().st_mtime_ns
    again = build_frame_feature_cache(c, None, frame_cache=fc, encoder=enc, progress=False)
    assert enc.calls == n_calls and again.path == cache.path
    assert again.path.stat().st_mtime_ns == mtime
    other = build_frame_feature_cache(c.replace(video__n_frames=4), None, frame_cache=fc,
                                      encoder=enc, progress=False)
    assert other.path != cache.path and enc.calls > n_calls


def test_blip2_folder_loads_frame_qformer_only(cfg, tmp_path):
    from safetensors.torch import save_file
    torch.manual_seed(3)
    src = build_video_branch(cfg, 12, 10)
    sd = {"qformer." + k[len("frame_qformer.qformer."):]: v.contiguous()
          for k, v in src.state_dict().items() if k.startswith("frame_qformer.qformer.")}
    sd["query_tokens"] = src.frame_qformer.query_tokens.detach().clone()
    sd["vision_model.post_layernorm.weight"] = src.ln_vision.weight.detach().clone()
    sd["vision_model.post_layernorm.bias"] = src.ln_vision.bias.detach().clone()
    sd["language_model.lm_head.weight"] = torch.zeros(4, 4)
    folder = tmp_path / "blip2"
    folder.mkdir()
    save_file(sd, str(folder / "model-00001-of-00001.safetensors"))
    torch.manual_seed(4)
    dst = build_video_branch(cfg, 12, 10)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    loaded = load_branch_checkpoint(dst, str(folder), "video.qformer_checkpoint",
                                    required=("frame_qformer.",))
    assert all(k.startswith(("frame_qformer.", "ln_vision.")) for k in loaded)
    for k, v in dst.state_dict().items():
        ref = src.state_dict()[k] if k in loaded else before[k]
        assert torch.equal(v, ref), k
