"""Embedded VAE (trained on the pretraining corpus only) and NVL's dual-stream heads."""
import numpy as np
import pandas as pd
import pytest
import torch

from llm4brain.config import load_config
from llm4brain.data import FrameCache
from llm4brain.reconstruction.dual_stream import DualStreamHeads
from llm4brain.reconstruction.vae import FrameVAE, key_frames, to_tensor_images, to_uint8_images
from llm4brain.training.losses import clip_loss
from llm4brain.reconstruction.train import (dual_stream_loss, train_dual_heads, train_frame_vae,
                                      vae_training_frames)


def _cfg(tmp_path, **recon):
    over = {"run": {"run_dir": str(tmp_path / "run")}, "train": {"checkpoint_every": 10_000},
            "recon": dict(dict(image_size=16, vae_latent=16, vae_channels=8, vae_steps=100,
                               vae_batch_size=32, vae_lr=6e-3, vae_kl_weight=0.05,
                               head_steps=60, head_hidden=32, head_batch_size=16), **recon)}
    return load_config("smoke", overrides=over)


def _squares(n, rng, size=16):
    """Coloured squares on a dark background at random places (structure a VAE can learn)."""
    out = np.full((n, size, size, 3), 20, np.uint8)
    for k in range(n):
        y, x = rng.integers(0, size - 6, 2)
        out[k, y:y + 6, x:x + 6] = rng.integers(80, 256, 3)
    return out


def test_vae_round_trip_beats_the_mean_image(tmp_path, rng):
    torch.manual_seed(0)
    cfg = _cfg(tmp_path)
    train, test = _squares(256, rng), _squares(32, rng)
    vae, log, trained = train_frame_vae(cfg, train, progress=False)
    assert trained and len(log) and log["rec"].iloc[-10:].mean() < log["rec"].iloc[:10].mean()
    x = to_tensor_images(test, 16)
    with torch.no_grad():
        rec = vae.decode(vae.encode(x)[0])
    mse_vae = float(((rec - x) ** 2).mean())
    mean_img = to_tensor_images(train, 16).mean(0, keepdim=True)
    mse_mean = float(((mean_img - x) ** 2).mean())
    assert mse_vae < 0.7 * mse_mean
    assert to_uint8_images(rec).shape == (32, 16, 16, 3)
    again, _, trained2 = train_frame_vae(cfg, train, progress=False)   # finished run: reloaded
    assert not trained2
    with torch.no_grad():
        assert torch.equal(again.decode(again.encode(x)[0]), rec)


def test_vae_checks_shapes():
    with pytest.raises(ValueError, match="multiple of 8"):
        FrameVAE(20)
    with pytest.raises(ValueError, match=r"\(N, 3, 16, 16\)"):
        FrameVAE(16).encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="uint8"):
        to_tensor_images(np.zeros((1, 8, 8, 3)), 16)
    fr = np.arange(2 * 3 * 2 * 2 * 3, dtype=np.uint8).reshape(2, 3, 2, 2, 3)
    assert np.array_equal(key_frames(fr), fr[:, 1])


def _stim_and_cache(tmp_path, dup=False):
    subj = [f"a/s{i}.mp4" for i in range(3)]
    pre = [f"p/c{i}.mp4" for i in range(4)] + (subj[:1] if dup else [])
    stim = pd.DataFrame({"stim_file": subj + pre, "clip_id": subj + pre,
                         "corpus": ["subjects"] * 3 + ["pretrain"] * len(pre)})
    files = list(dict.fromkeys(subj + pre))
    frames = np.zeros((len(files), 2, 4, 4, 3), np.uint8)
    frames[:3] = 255                                   # subject clips: white frames
    frames[3:] = np.arange(1, len(files) - 2)[:, None, None, None, None]
    index = pd.DataFrame({"stim_file": files, "path": files})
    return stim, FrameCache(frames, index, tmp_path)


def test_vae_frames_come_from_the_pretraining_corpus_only(tmp_path):
    stim, fc = _stim_and_cache(tmp_path)
    fr = vae_training_frames(stim, fc)
    assert fr.shape == (8, 4, 4, 3)                    # 4 corpus clips x 2 frames
    assert not (fr == 255).any()                       # no subject frame reaches training
    assert sorted(np.unique(fr)) == [1, 2, 3, 4]
    stim_dup, fc_dup = _stim_and_cache(tmp_path, dup=True)
    with pytest.raises(ValueError, match="shown to no subject|pretrain"):
        vae_training_frames(stim_dup, fc_dup)          # a subject clip listed in the corpus
    with pytest.raises(ValueError, match="no pretraining-corpus clip"):
        vae_training_frames(stim[stim.corpus == "subjects"], fc)
    with pytest.raises(ValueError, match="corpus"):
        vae_training_frames(stim.drop(columns="corpus"), fc)


def test_dual_stream_loss_weighting():
    g = torch.Generator().manual_seed(0)
    hp, h = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    lp, lo = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    c, m = float(clip_loss(hp, h, 0.1)), float(((lp - lo) ** 2).mean())
    for w in (0.0, 0.3, 1.0):
        loss, terms = dual_stream_loss(hp, h, lp, lo, w, 0.1)
        assert float(loss) == pytest.approx(w * c + (1 - w) * m, rel=1e-5)
        assert terms["mse"] == pytest.approx(m, rel=1e-5)


def test_dual_heads_learn_a_linear_map(tmp_path, rng):
    cfg = _cfg(tmp_path, head_steps=150, high_weight=0.3, head_lr=1e-2, head_hidden=64)
    z = rng.normal(size=(200, 12)).astype(np.float32)
    W_h, W_l = rng.normal(size=(12, 6)), rng.normal(size=(12, 4))
    high, low = (z @ W_h).astype(np.float32), (z @ W_l).astype(np.float32)
    clips = np.array([f"c{i}" for i in range(200)])
    heads, log, trained = train_dual_heads(cfg, z, high, low, clips, name="heads-test",
                                           progress=False)
    assert isinstance(heads, DualStreamHeads) and trained
    zt = rng.normal(size=(50, 12)).astype(np.float32)
    with torch.no_grad():
        hp, lp = heads(torch.from_numpy(zt))
    assert float(((lp.numpy() - zt @ W_l) ** 2).mean()) < 0.5 * float(((zt @ W_l) ** 2).mean())
    assert log["clip"].iloc[-10:].mean() < log["clip"].iloc[:10].mean()
    with pytest.raises(ValueError, match="same number"):
        train_dual_heads(cfg, z, high[:10], low, clips, name="bad", progress=False)
