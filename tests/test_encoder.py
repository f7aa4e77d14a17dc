"""SC-MBM encoder and masked brain modelling: shapes, masking, loss, seeds, pretraining."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from llm4brain.config import load_config
from llm4brain.models.encoder import (MaskedBrainModel, build_encoder, build_mae, random_masking,
                                      sincos_pos_embed_3d)
from llm4brain.training.mae import mae_loss, mae_loss_fn, mae_reconstruction, volume_windows

SHAPE = (3, 10, 12, 9)


@pytest.fixture(scope="module")
def cfg():
    return load_config("smoke")


def _mask():
    m = np.zeros(SHAPE[1:], bool)
    m[1:9, 1:11, 1:8] = True
    return m


def _blocks(rng, n=4):
    return torch.from_numpy((rng.standard_normal((n,) + SHAPE) * _mask()).astype(np.float32))


def test_sincos_3d_reference():
    pos = torch.tensor([[0.0, 0, 0], [1, 2, 3], [4, 0, 1]])
    pe = sincos_pos_embed_3d(14, pos)           # 2 * (14 // 6) = 4 channels per axis, 2 left zero
    assert pe.shape == (3, 14)
    omega = 1.0 / 10000 ** (np.arange(2) / 2)
    for a in range(3):
        ang = pos[1, a].item() * omega
        np.testing.assert_allclose(pe[1, 4 * a:4 * a + 4].numpy(), np.r_[np.sin(ang), np.cos(ang)], atol=1e-6)
    assert torch.all(pe[:, 12:] == 0)
    assert len({tuple(r) for r in sincos_pos_embed_3d(32, pos).numpy().round(6)}) == 3


@pytest.mark.parametrize("kind", ["cnn3d", "nvl"])
@pytest.mark.parametrize("cls,pos", [(False, "sincos"), (True, "learned")])
def test_encoder_shapes(cfg, rng, kind, cls, pos):
    c = cfg.replace(tokenizer__kind=kind, encoder__use_cls_token=cls, encoder__pos_embed=pos,
                    tokenizer__embed_dim=24)            # tokenizer width != encoder width -> projection
    enc = build_encoder(c, SHAPE, _mask(), np.diag([10.0, 10, 10, 1]))
    z = enc(_blocks(rng, 2))
    assert z.shape == (2, enc.n_tokens + int(cls), c.encoder.embed_dim)
    assert isinstance(enc.embed_proj, torch.nn.Linear)
    assert all(hasattr(b.attn, n) for b in enc.blocks for n in ("q_proj", "k_proj", "v_proj", "out_proj"))


def test_random_masking_ratio_and_indices():
    g = torch.Generator().manual_seed(0)
    ids_keep, ids_restore, mask = random_masking(5, 40, 0.75, generator=g)
    assert ids_keep.shape == (5, 10)
    assert torch.all(mask.sum(1) == 30)
    assert torch.all(torch.gather(mask, 1, ids_keep) == 0)
    # ids_restore inverts the shuffle: restoring [kept, masked] order gives positions 0..N-1
    assert torch.all(torch.sort(ids_restore, dim=1).values == torch.arange(40))
    # masks differ across samples
    assert not torch.equal(mask[0], mask[1])
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(1, 10, 1.0)


@pytest.mark.parametrize("kind", ["cnn3d", "nvl"])
def test_mae_masks_configured_ratio(cfg, rng, kind):
    mae = build_mae(cfg.replace(tokenizer__kind=kind), SHAPE, _mask())
    out = mae(_blocks(rng, 3))
    N = mae.encoder.n_tokens
    keep = int(N * (1 - cfg.encoder.mask_ratio))
    assert cfg.encoder.mask_ratio == 0.75
    assert torch.all(out.mask.sum(1) == N - keep)
    assert out.latent.shape == (3, keep, cfg.encoder.embed_dim)
    assert out.pred.shape == out.target.shape == (3, N, mae.encoder.tokenizer.patch_dim)


def test_mae_loss_reference_and_ignores_visible_tokens():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    mask = torch.tensor([[1.0, 0, 1, 0, 0], [0, 0, 0, 1, 1]])
    # hand-computed reference: mean over masked tokens of per-token MSE
    per = ((pred - target) ** 2).mean(-1)
    ref = (per[0, 0] + per[0, 2] + per[1, 3] + per[1, 4]) / 4
    assert torch.allclose(mae_loss(pred, target, mask), ref)
    # changing the predictions of visible tokens leaves the loss unchanged
    p2 = pred.clone()
    p2[mask == 0] += 100.0
    assert torch.equal(mae_loss(p2, target, mask), mae_loss(pred, target, mask))
    p3 = pred.clone()
    p3[0, 0] += 1.0
    assert not torch.equal(mae_loss(p3, target, mask), mae_loss(pred, target, mask))
    # zero-weight values (outside the brain) are ignored too
    w = torch.ones(5, 4)
    w[:, 0] = 0
    p4 = pred.clone()
    p4[..., 0] += 7.0
    assert torch.allclose(mae_loss(p4, target, mask, w), mae_loss(pred, target, mask, w))
    # gradient only flows to masked tokens
    pg = pred.clone().requires_grad_(True)
    mae_loss(pg, target, mask).backward()
    assert torch.all(pg.grad[mask == 0] == 0) and torch.all(pg.grad[mask == 1].abs().sum(-1) > 0)


def test_mae_loss_fn_in_model_ignores_visible(cfg, rng):
    mae = build_mae(cfg, SHAPE, _mask())
    x = _blocks(rng, 2)
    g = torch.Generator().manual_seed(3)
    out = mae(x, generator=g)
    base = mae_loss(out.pred, out.target, out.mask, out.weight)
    pred = out.pred.detach().clone()
    pred[out.mask == 0] = 0.0
    assert torch.allclose(mae_loss(pred, out.target, out.mask, out.weight), base)
    loss, terms = mae_loss_fn(mae, x)
    assert set(terms) == {"mse_visible"} and loss.ndim == 0      # the loop logs "loss" itself
    loss.backward()
    grads = {n: p.grad for n, p in mae.named_parameters()}
    assert grads["encoder.tokenizer.convs.0.weight"] is not None
    assert grads["decoder_pred.weight"] is not None and grads["mask_token"] is not None


def test_same_seed_same_weights(cfg):
    a = build_mae(cfg, SHAPE, _mask()).state_dict()
    state = torch.random.get_rng_state()
    b = build_mae(cfg, SHAPE, _mask()).state_dict()
    assert torch.equal(state, torch.random.get_rng_state())        # global RNG untouched
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = build_mae(cfg, SHAPE, _mask(), seed=cfg.run.seed + 7).state_dict()
    assert not torch.equal(a["encoder.blocks.0.attn.q_proj.weight"], c["encoder.blocks.0.attn.q_proj.weight"])


def test_mae_learns_a_few_steps(cfg, rng):
    torch.manual_seed(0)
    mae = build_mae(cfg, SHAPE, _mask())
    x = _blocks(rng, 8)
    opt = torch.optim.Adam(mae.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(25):
        out = mae(x, generator=g)
        loss = mae_loss(out.pred, out.target, out.mask, out.weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_reconstruction_volumes(cfg, rng):
    mae = build_mae(cfg, SHAPE, _mask())
    x = _blocks(rng, 2)
    r = mae_reconstruction(mae, x, generator=torch.Generator().manual_seed(0))
    assert r["original"].shape == x.shape and r["reconstruction"].shape == x.shape
    assert torch.allclose(r["original"], x)
    # the masked input is zero exactly on masked tokens' cells
    assert float(r["masked"].abs().sum()) < float(r["original"].abs().sum())
    assert mae.training


def test_volume_windows(rng):
    runs = [("01", 1, rng.standard_normal((7, 2, 3, 4)).astype(np.float32)),
            ("01", 2, rng.standard_normal((5, 2, 3, 4)).astype(np.float32))]
    w = volume_windows(runs, 3)
    assert w.shape == (5 + 3, 3, 2, 3, 4)
    np.testing.assert_array_equal(w[6], runs[1][2][1:4])
    np.testing.assert_array_equal(np.asarray(w)[[0, 6]], w[np.array([0, 6])])     # lazy == stacked
    np.testing.assert_array_equal(w[2:4], np.stack([runs[0][2][2:5], runs[0][2][3:6]]))
    assert volume_windows(runs, 3, stride=2).shape[0] == 3 + 2
    assert volume_windows(runs, 3, max_blocks=4).shape[0] == 4
    with pytest.raises(ValueError, match="no run"):
        volume_windows(runs, 9)


def test_missing_checkpoint_is_a_clear_error(cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder.checkpoint"):
        build_encoder(cfg.replace(encoder__checkpoint=str(tmp_path / "nope.pth")), SHAPE)


def test_pretrain_mae_with_fit_loop(cfg, rng, tmp_path):
    from llm4brain.training.mae import load_pretrained_mae, mae_run_name, pretrain_mae

    data = (rng.standard_normal((12,) + SHAPE) * _mask()).astype(np.float32)
    c = cfg.replace(tokenizer__kind="nvl", tokenizer__grid_mm=10.0)
    res = pretrain_mae(c, data, mask=_mask(), affine=np.diag([10.0, 10, 10, 1]), run_dir=tmp_path,
                       steps=3, progress=False)
    assert isinstance(res.model, MaskedBrainModel)
    assert res.model.encoder.tokenizer.is_fitted
    assert {"step", "loss", "mse_visible"} <= set(res.log.columns)
    assert (tmp_path / "checkpoints" / mae_run_name(c)).is_dir()
    assert mae_run_name(c).startswith("mae_nvl-")
    back = load_pretrained_mae(c, SHAPE, np.ones(SHAPE[1:], bool), np.diag([10.0, 10, 10, 1]), run_dir=tmp_path)
    assert torch.equal(back.encoder.tokenizer.active, res.model.encoder.tokenizer.active)
    x = torch.from_numpy(data[:2])
    assert torch.allclose(back.encoder(x), res.model.eval().encoder(x))
    with pytest.raises(FileNotFoundError, match="notebook 02"):
        load_pretrained_mae(cfg, SHAPE, run_dir=tmp_path)


def test_mae_run_name_hashes_every_setting_of_the_weights(cfg):
    from llm4brain.training.mae import mae_run_name

    name = mae_run_name(cfg)
    prefix = f"mae_{cfg.tokenizer.kind}-"
    assert name.startswith(prefix) and len(name) == len(prefix) + 12
    assert mae_run_name(load_config("smoke")) == name                       # same config, same run
    changed = [cfg.replace(encoder__mask_ratio=0.5), cfg.replace(mae__lr=cfg.mae.lr * 2),
               cfg.replace(mae__steps=cfg.mae.steps + 1),
               cfg.replace(mae__norm_target=not cfg.mae.norm_target),
               cfg.replace(tokenizer__embed_dim=cfg.tokenizer.embed_dim + 8),
               cfg.replace(encoder__depth=cfg.encoder.depth + 1),
               cfg.replace(data__block_trs=cfg.data.block_trs + 1),
               cfg.replace(sim__n_subjects=cfg.sim.n_subjects + 1), cfg.replace(run__seed=cfg.run.seed + 1),
               cfg.replace(train__grad_accum=cfg.train.grad_accum + 1)]
    names = [mae_run_name(c) for c in changed]
    assert name not in names and len(set(names)) == len(names)
    # settings that do not touch the MAE keep its name
    assert mae_run_name(cfg.replace(stage1__lr=cfg.stage1.lr * 2)) == name


def test_pretrain_mae_new_mask_ratio_trains_a_new_run(cfg, rng, tmp_path):
    from llm4brain.training.mae import pretrain_mae

    data = (rng.standard_normal((12,) + SHAPE) * _mask()).astype(np.float32)
    kw = dict(mask=_mask(), affine=np.diag([10.0, 10, 10, 1]), run_dir=tmp_path, steps=2, progress=False)
    first = pretrain_mae(cfg, data, **kw)
    assert first.trained
    again = pretrain_mae(cfg, data, **kw)                  # same settings: the finished run is loaded
    assert not again.trained and again.checkpoint_dir == first.checkpoint_dir
    other = pretrain_mae(cfg.replace(encoder__mask_ratio=0.5), data, **kw)
    assert other.trained and other.checkpoint_dir != first.checkpoint_dir
    assert first.checkpoint_dir.is_dir() and other.checkpoint_dir.is_dir()


def test_neighbour_fill_predicts_smooth_volumes_and_not_white_noise(cfg, rng):
    from scipy.ndimage import gaussian_filter

    from llm4brain.training.mae import mae_baselines, neighbour_fill

    mae = build_mae(cfg, SHAPE, _mask())
    tok = mae.encoder.tokenizer
    smooth = np.stack([gaussian_filter(rng.standard_normal(SHAPE), (0, 2, 2, 2)) for _ in range(4)])
    smooth = torch.from_numpy((smooth / smooth.std() * _mask()).astype(np.float32))
    out = mae(smooth, generator=torch.Generator().manual_seed(0))
    fill = neighbour_fill(tok, out.target, out.mask, out.weight, 1.5)
    assert fill.shape == out.target.shape
    zero = float(mae_loss(torch.zeros_like(fill), out.target, out.mask, out.weight))
    assert float(mae_loss(fill, out.target, out.mask, out.weight)) < 0.8 * zero
    # visible values are not what it is scored on, and it never reads a masked value
    hidden_changed = out.target + 5.0 * out.mask[..., None]
    np.testing.assert_allclose(neighbour_fill(tok, hidden_changed, out.mask, out.weight, 1.5),
                               fill, atol=1e-5)
    b = mae_baselines(mae, _blocks(rng, 4), sigmas=(1.0,))     # white noise: nothing to fill
    assert b["neighbour_fill"] == pytest.approx(b["predict_zero"], rel=0.05)
    assert set(b) >= {"model", "predict_zero", "neighbour_fill", "neighbour_sigma"}


def test_class_probes_read_planted_classes_and_not_random_labels(cfg, rng):
    from llm4brain.training.mae import class_probe, encoder_probes

    y = np.repeat(np.arange(4), 100)
    X = rng.standard_normal((400, 50))
    X[:, :4] += 3.0 * np.eye(4)[y]
    assert class_probe(X[::2], y[::2], X[1::2], y[1::2], n_components=10) > 0.9
    assert class_probe(X[::2], rng.permutation(y)[::2], X[1::2], y[1::2], n_components=10) < 0.5
    enc = build_encoder(cfg, SHAPE, _mask())
    b = _blocks(rng, 24).numpy()
    b[:, :, 4, 5, 4] += 4.0 * np.repeat([0, 1], 12)[:, None]
    lab = np.repeat([0, 1], 12)
    got = encoder_probes(enc, b[::2], lab[::2], b[1::2], lab[1::2], _mask(), n_components=5)
    assert set(got) == {"voxels", "tokenizer", "encoder"} and got["voxels"] > 0.9


def test_neighbour_fill_on_the_nvl_grid(cfg, rng):
    from llm4brain.training.mae import mae_baselines

    c = cfg.replace(tokenizer__kind="nvl")
    mae = build_mae(c, SHAPE, _mask(), np.diag([6.0, 6, 6, 1]))
    x = _blocks(rng, 4)
    mae.encoder.tokenizer.fit_active_patches(x.numpy())
    tok = mae.encoder.tokenizer
    out = mae(x, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(tok.grid_patchify(tok.unpatchify(out.target)), out.target,
                               atol=1e-6)
    b = mae_baselines(mae, x, sigmas=(1.0,))
    assert np.isfinite([b["model"], b["predict_zero"], b["neighbour_fill"]]).all()


def test_mae_hides_masked_cells_from_the_cnn3d_encoder(cfg, rng):
    """The cnn3d convolutions reach 3 voxels into the neighbouring cell: a masked cell's voxels
    must not move the latent of the visible tokens (no leak of what is to be reconstructed)."""
    mae = build_mae(cfg.replace(tokenizer__kind="cnn3d"), SHAPE, _mask()).eval()
    tok = mae.encoder.tokenizer
    x = _blocks(rng, 2)
    gen = lambda: torch.Generator().manual_seed(3)           # noqa: E731  same mask both times
    a = mae(x, generator=gen())
    cells = tok.unpatchify(a.mask[..., None].expand(-1, -1, tok.patch_dim)).bool()
    assert cells.any() and (~cells).any()
    y = x.clone()
    y[cells] += 5.0 * torch.randn(int(cells.sum()), generator=torch.Generator().manual_seed(1))
    b = mae(y, generator=gen())
    assert torch.equal(a.mask, b.mask)
    torch.testing.assert_close(a.latent, b.latent)                # masked voxels hidden
    assert not torch.allclose(a.target, b.target)                 # while the targets did change
    # and hide_masked zeroes exactly the masked tokens' cells
    h = tok.hide_masked(x, a.mask)
    assert torch.all(h[cells] == 0) and torch.equal(h[~cells], x[~cells])


def test_mae_reading_says_which_baseline_the_pretraining_beats():
    from llm4brain.training.mae import mae_reading

    row = dict(tokenizer="cnn3d", predict_zero_mse=1.003, neighbour_fill_mse=0.9715, steps=200)
    nothing = mae_reading([dict(row, val_masked_mse=1.0046)])
    assert "1.0046" in nothing and "not below predicting zero" in nothing
    smooth = mae_reading([dict(row, val_masked_mse=0.990)])
    assert "not below the neighbour fill" in smooth
    learned = mae_reading([dict(row, val_masked_mse=0.950)])
    assert "below both baselines" in learned and "200 steps" in learned
    with pytest.raises(KeyError, match="neighbour_fill_mse"):
        mae_reading([dict(tokenizer="cnn3d", val_masked_mse=1.0, predict_zero_mse=1.0, steps=1)])
