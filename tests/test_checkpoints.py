"""MinD-Vis / Mind-Video checkpoint key mapping onto our encoder (fabricated tiny state dicts).

Key names and shapes follow MinD-Vis ``code/sc_mbm/mae_for_fmri.py`` (``MAEforFMRI``: timm
``Block`` with fused ``attn.qkv``, ``PatchEmbed1D`` Conv1d, 1-D ``pos_embed`` with a cls slot,
checkpoint dict under ``'model'`` next to a pickled config object) and Mind-Video's
``fMRIEncoder`` (``attn_temp`` / ``norm_temp``, ``proj_head``, ``logit_scale``).
"""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from llm4brain.config import load_config
from llm4brain.models.adaptors import add_adaptors
from llm4brain.models.checkpoints import load_mindvis_checkpoint, map_mindvis_state_dict, read_state_dict
from llm4brain.models.encoder import build_encoder, build_mae

SHAPE = (3, 8, 8, 8)
D, HEADS, DD, DEPTH, P, NVOX = 16, 2, 8, 2, 16, 64


class Config_MBM_fMRI:          # stands in for MinD-Vis' pickled config object
    def __init__(self):
        self.mask_ratio, self.patch_size = 0.75, P


def fake_mindvis_state_dict(depth=DEPTH, dim=D, dec_dim=DD, dec_depth=1, mind_video=False, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g) * 0.2

    n = NVOX // P
    sd = {"cls_token": r(1, 1, dim), "pos_embed": r(1, n + 1, dim),
          "patch_embed.proj.weight": r(dim, 1, P), "patch_embed.proj.bias": r(dim),
          "norm.weight": 1 + r(dim), "norm.bias": r(dim)}

    def block(prefix, d):
        out = {f"{prefix}.norm1.weight": 1 + r(d), f"{prefix}.norm1.bias": r(d),
               f"{prefix}.attn.qkv.weight": r(3 * d, d), f"{prefix}.attn.qkv.bias": r(3 * d),
               f"{prefix}.attn.proj.weight": r(d, d), f"{prefix}.attn.proj.bias": r(d),
               f"{prefix}.norm2.weight": 1 + r(d), f"{prefix}.norm2.bias": r(d),
               f"{prefix}.mlp.fc1.weight": r(d, d), f"{prefix}.mlp.fc1.bias": r(d),     # mlp_ratio 1.0
               f"{prefix}.mlp.fc2.weight": r(d, d), f"{prefix}.mlp.fc2.bias": r(d)}
        if mind_video:
            out.update({f"{prefix}.attn_temp.qkv.weight": r(3 * d, d), f"{prefix}.attn_temp.qkv.bias": r(3 * d),
                        f"{prefix}.attn_temp.proj.weight": r(d, d), f"{prefix}.attn_temp.proj.bias": r(d),
                        f"{prefix}.norm_temp.weight": 1 + r(d), f"{prefix}.norm_temp.bias": r(d)})
        return out

    for i in range(depth):
        sd.update(block(f"blocks.{i}", dim))
    if mind_video:
        sd.update({"mask_token": r(1, 1, dim), "proj_head.projection.weight": r(8, dim),
                   "logit_scale": torch.ones(())})
    elif dec_depth:
        sd.update({"decoder_embed.weight": r(dec_dim, dim), "decoder_embed.bias": r(dec_dim),
                   "mask_token": r(1, 1, dec_dim), "decoder_pos_embed": r(1, n + 1, dec_dim),
                   "decoder_norm.weight": 1 + r(dec_dim), "decoder_norm.bias": r(dec_dim),
                   "decoder_pred.weight": r(P, dec_dim), "decoder_pred.bias": r(P)})
        for i in range(dec_depth):
            sd.update(block(f"decoder_blocks.{i}", dec_dim))
    return sd


@pytest.fixture(scope="module")
def cfg():
    c = load_config("smoke")
    return c.replace(encoder__embed_dim=D, encoder__num_heads=HEADS, encoder__depth=DEPTH,
                     encoder__mlp_ratio=1.0, encoder__decoder_embed_dim=DD, encoder__decoder_depth=1,
                     encoder__decoder_num_heads=2, tokenizer__embed_dim=D)


@pytest.fixture
def ckpt(tmp_path):
    sd = fake_mindvis_state_dict()
    path = tmp_path / "fmri_encoder.pth"
    torch.save({"model": sd, "config": Config_MBM_fMRI(), "epoch": 3, "optimizer": {"state": {}}}, path)
    return path, sd


def reference_timm_block(x, sd, prefix, heads):
    """Independent forward of a timm ViT Block with fused qkv, from their weights."""
    B, N, C = x.shape
    h = F.layer_norm(x, (C,), sd[f"{prefix}.norm1.weight"], sd[f"{prefix}.norm1.bias"])
    qkv = F.linear(h, sd[f"{prefix}.attn.qkv.weight"], sd[f"{prefix}.attn.qkv.bias"])
    q, k, v = qkv.reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    att = ((q @ k.transpose(-2, -1)) * (C // heads) ** -0.5).softmax(-1)
    h = (att @ v).transpose(1, 2).reshape(B, N, C)
    x = x + F.linear(h, sd[f"{prefix}.attn.proj.weight"], sd[f"{prefix}.attn.proj.bias"])
    h = F.layer_norm(x, (C,), sd[f"{prefix}.norm2.weight"], sd[f"{prefix}.norm2.bias"])
    h = F.linear(F.gelu(F.linear(h, sd[f"{prefix}.mlp.fc1.weight"], sd[f"{prefix}.mlp.fc1.bias"])),
                 sd[f"{prefix}.mlp.fc2.weight"], sd[f"{prefix}.mlp.fc2.bias"])
    return x + h


def test_key_mapping_splits_qkv_and_renames():
    sd = fake_mindvis_state_dict()
    mapped, skipped, unexpected = map_mindvis_state_dict(sd)
    assert not unexpected
    w = sd["blocks.1.attn.qkv.weight"]
    assert torch.equal(mapped["blocks.1.attn.q_proj.weight"], w[:D])
    assert torch.equal(mapped["blocks.1.attn.k_proj.weight"], w[D:2 * D])
    assert torch.equal(mapped["blocks.1.attn.v_proj.weight"], w[2 * D:])
    assert torch.equal(mapped["blocks.1.attn.v_proj.bias"], sd["blocks.1.attn.qkv.bias"][2 * D:])
    assert torch.equal(mapped["blocks.0.attn.out_proj.weight"], sd["blocks.0.attn.proj.weight"])
    assert torch.equal(mapped["decoder_blocks.0.attn.q_proj.weight"], sd["decoder_blocks.0.attn.qkv.weight"][:DD])
    assert set(skipped) == {"patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed",
                            "decoder_pos_embed", "decoder_pred.weight", "decoder_pred.bias"}
    assert "Conv1d" in skipped["patch_embed.proj.weight"]


def test_load_into_mae_and_outputs_match_reference(cfg, ckpt, caplog):
    path, sd = ckpt
    mae = build_mae(cfg, SHAPE)
    with caplog.at_level(logging.WARNING, logger="llm4brain.models.checkpoints"):
        rep = load_mindvis_checkpoint(mae, path)        # file also pickles a config object
    assert "does not apply" in caplog.text and "1-D positional" in caplog.text
    assert "stubs" in caplog.text                     # their pickled config object was stubbed
    assert rep.missing == [] and rep.unexpected == []
    assert "encoder.blocks.0.attn.q_proj.weight" in rep.loaded and "decoder_blocks.0.mlp.fc2.bias" in rep.loaded
    assert torch.equal(mae.mask_token, sd["mask_token"])
    # our blocks with mapped weights compute exactly what their fused-qkv blocks compute
    x = torch.randn(2, 5, D)
    with torch.no_grad():
        ours = x
        ref = x
        for i in range(DEPTH):
            ours = mae.encoder.blocks[i](ours)
            ref = reference_timm_block(ref, sd, f"blocks.{i}", HEADS)
        assert torch.allclose(ours, ref, atol=1e-5)
        assert torch.allclose(mae.encoder.norm(ours), F.layer_norm(ref, (D,), sd["norm.weight"], sd["norm.bias"]),
                              atol=1e-5)


def test_encoder_only_skips_decoder_and_cls(cfg, ckpt):
    path, _ = ckpt
    enc = build_encoder(cfg, SHAPE)
    rep = load_mindvis_checkpoint(enc, path)
    assert "decoder_blocks.0.norm1.weight" in rep.skipped and "cls_token" in rep.skipped
    assert rep.missing == []
    with_cls = build_encoder(cfg.replace(encoder__use_cls_token=True), SHAPE)
    rep2 = load_mindvis_checkpoint(with_cls, path)
    assert "cls_token" in rep2.loaded


def test_build_encoder_loads_configured_checkpoint(cfg, ckpt):
    path, sd = ckpt
    enc = build_encoder(cfg.replace(encoder__checkpoint=str(path)), SHAPE)
    assert torch.equal(enc.blocks[1].mlp.fc1.weight, sd["blocks.1.mlp.fc1.weight"])
    assert torch.equal(enc.blocks[0].attn.k_proj.bias, sd["blocks.0.attn.qkv.bias"][D:2 * D])


def test_prefixes_mind_video_and_safetensors(cfg, tmp_path):
    from safetensors.torch import save_file

    # MinD-Vis stage-B LDM checkpoint: nested metafile, prefixed keys
    sd = fake_mindvis_state_dict()
    pref = {"cond_stage_model.mae." + k: v for k, v in sd.items()}
    torch.save({"metafile": {"model": pref, "config": Config_MBM_fMRI()}}, tmp_path / "finetuned.pth")
    got = read_state_dict(tmp_path / "finetuned.pth")
    assert "cond_stage_model.mae.blocks.0.attn.qkv.weight" in got
    mapped, _, unexpected = map_mindvis_state_dict(got)
    assert "blocks.0.attn.q_proj.weight" in mapped and not unexpected
    # Mind-Video: diffusers folder with temporal attention and a projection head
    mv = fake_mindvis_state_dict(mind_video=True)
    (tmp_path / "mv" / "fmri_encoder").mkdir(parents=True)
    save_file(mv, str(tmp_path / "mv" / "fmri_encoder" / "diffusion_pytorch_model.safetensors"))
    enc = build_encoder(cfg, SHAPE)
    rep = load_mindvis_checkpoint(enc, tmp_path / "mv")
    assert "blocks.0.attn_temp.qkv.weight" in rep.skipped and "proj_head.projection.weight" in rep.skipped
    assert "mask_token" in rep.skipped and rep.missing == [] and rep.unexpected == []
    assert torch.equal(enc.blocks[0].attn.q_proj.weight, mv["blocks.0.attn.qkv.weight"][:D])


def test_depth_and_shape_mismatch(cfg, tmp_path):
    deeper = fake_mindvis_state_dict(depth=DEPTH + 1, dec_depth=0)
    torch.save({"model": deeper}, tmp_path / "deep.pth")
    rep = load_mindvis_checkpoint(build_encoder(cfg, SHAPE), tmp_path / "deep.pth")
    assert any(k.startswith(f"blocks.{DEPTH}.") for k in rep.unexpected)
    shallow = fake_mindvis_state_dict(depth=DEPTH - 1, dec_depth=0)
    torch.save({"model": shallow}, tmp_path / "shallow.pth")
    rep = load_mindvis_checkpoint(build_encoder(cfg, SHAPE), tmp_path / "shallow.pth")
    assert rep.missing and all(k.startswith(f"blocks.{DEPTH - 1}.") for k in rep.missing)
    wide = fake_mindvis_state_dict(dim=2 * D, dec_depth=0)
    torch.save({"model": wide}, tmp_path / "wide.pth")
    with pytest.raises(ValueError, match="embed_dim=32.*had.yaml"):
        load_mindvis_checkpoint(build_encoder(cfg, SHAPE), tmp_path / "wide.pth")


def test_load_after_adaptors_targets_base_layer(cfg, ckpt):
    path, sd = ckpt
    enc = add_adaptors(build_encoder(cfg, SHAPE), cfg)
    rep = load_mindvis_checkpoint(enc, path)
    assert "blocks.0.attn.q_proj.base_layer.weight" in rep.loaded
    assert torch.equal(enc.blocks[0].attn.q_proj.base_layer.weight, sd["blocks.0.attn.qkv.weight"][:D])


class _Evil:
    """Pickles to a call of os.system: a hostile checkpoint."""

    def __reduce__(self):
        import os
        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


@pytest.mark.parametrize("reader", ["mindvis", "videollama"])
def test_foreign_checkpoints_never_run_their_pickled_code(tmp_path, monkeypatch, reader):
    """Both readers of other projects' checkpoints (SC-MBM and Q-Former) refuse to execute
    code a file pickles; the tensors still load."""
    import torch

    from llm4brain.models.checkpoints import read_state_dict
    from llm4brain.models.qformer import _read_state_dict

    monkeypatch.chdir(tmp_path)
    f = tmp_path / "ckpt.pth"
    torch.save({"model": {"blocks.0.attn.qkv.weight": torch.ones(2, 2)}, "cfg": _Evil()}, f)
    sd = read_state_dict(f) if reader == "mindvis" else _read_state_dict(f)
    assert torch.equal(sd["blocks.0.attn.qkv.weight"], torch.ones(2, 2))
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()
