"""NVL's reconstruction metrics: PixCorr, SSIM, two-way identification."""
import numpy as np
import pandas as pd
import pytest

from llm4brain.reconstruction.metrics import (RECON_LABELS, pixcorr, reconstruction_table,
                                                 score_reconstructions, ssim,
                                                 two_way_identification)


@pytest.fixture
def imgs():
    return np.random.default_rng(0).random((5, 16, 16, 3))


def test_pixcorr_identity_affine_and_hand_case(imgs):
    assert pixcorr(imgs, imgs) == pytest.approx(np.ones(5))
    assert pixcorr(imgs, 0.5 * imgs + 0.2) == pytest.approx(np.ones(5))
    assert pixcorr(imgs, 1 - imgs) == pytest.approx(-np.ones(5))
    a = np.zeros((1, 2, 2, 3))
    a[0, 1] = 1.0                      # pixels 0 0 | 1 1 (rows)
    b = np.zeros((1, 2, 2, 3))
    b[0, :, 1] = 1.0                   # pixels 0 1 | 0 1 (columns): uncorrelated
    assert pixcorr(a, b)[0] == pytest.approx(0.0)
    c = a.copy()
    c[0, 0, 0] = 1.0                   # 3 of 4 pixels per channel: r = 1/sqrt(3)
    assert pixcorr(a, c)[0] == pytest.approx(1 / np.sqrt(3))
    u8 = (imgs * 255).astype(np.uint8)
    assert pixcorr(u8, u8) == pytest.approx(np.ones(5))
    with pytest.raises(ValueError, match="shape"):
        pixcorr(imgs, imgs[:, :8])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pixcorr(imgs * 3, imgs)


def test_ssim_identical_is_one_and_lower_otherwise(imgs):
    assert ssim(imgs, imgs) == pytest.approx(np.ones(5))
    noisy = (imgs + np.random.default_rng(1).normal(0, 0.2, imgs.shape)).clip(0, 1)
    s = ssim(noisy, imgs)
    assert (s < 0.9).all() and (s > -1).all()
    assert ssim(imgs, noisy) == pytest.approx(s)          # symmetric
    with pytest.raises(ValueError, match="11 x 11"):
        ssim(imgs[:, :8, :8], imgs[:, :8, :8])


def test_two_way_identification_identical_and_hand_case():
    f = np.random.default_rng(2).normal(size=(6, 20))
    assert two_way_identification(f, f) == pytest.approx(np.full(6, 100.0))
    true = np.array([[1, 2, 3], [3, 2, 1], [1, 3, 2]], float)
    pred = true[[2, 1, 2]]     # trial 0's prediction equals trial 2's frame
    # trial 0: r(pred0, true0) = 0.5 beats r(pred0, true1) = -0.5, loses to r(pred0, true2) = 1
    got = two_way_identification(pred, true)
    assert got == pytest.approx([50.0, 100.0, 100.0])
    grouped = two_way_identification(pred, true, groups=["a", "a", "b"])
    assert grouped[:2] == pytest.approx([100.0, 100.0]) and np.isnan(grouped[2])
    shuffled = two_way_identification(f[::-1], f)
    assert shuffled.mean() < 100


def test_table_has_subjects_total_and_conditions(imgs):
    feats = {"early": imgs.reshape(5, -1), "late": imgs.reshape(5, -1)[:, ::-1]}
    meta = pd.DataFrame({"subject": ["05", "05", "05", "06", "06"]})
    model = score_reconstructions(imgs, imgs, feats, feats, meta)
    chance = pd.concat([score_reconstructions(imgs[p], imgs, {k: v[p] for k, v in feats.items()},
                                              feats, meta).assign(draw=k)
                        for k, p in enumerate([[1, 2, 0, 4, 3], [2, 0, 1, 4, 3]])])
    t = reconstruction_table({"fMRI": model, "chance": chance})
    assert list(t.index) == ["sub-05", "sub-06", "Total"]
    assert t.loc["Total", "PixCorr | fMRI"] == pytest.approx(1.0)
    assert t.loc["sub-06", "Late id (%) | chance"] == pytest.approx(0.0)
    assert t.loc["sub-05", "PixCorr | chance"] < 0.5
    assert list(t.columns[:2]) == [f"{RECON_LABELS['pixcorr']} | fMRI", "PixCorr | chance"]


def test_grid_and_bars_figures(imgs):
    from llm4brain.reconstruction.plots import (grid_trials, plot_reconstruction_bars,
                                          plot_reconstruction_grid)
    meta = pd.DataFrame({"subject": ["05", "05", "05", "06", "06"]})
    rows = grid_trials(meta, 2, seed=0)
    assert len(rows) == 4 and set(meta["subject"].iloc[rows]) == {"05", "06"}
    assert np.array_equal(rows, grid_trials(meta, 2, seed=0))
    u8 = (imgs * 255).astype(np.uint8)
    fig = plot_reconstruction_grid({"seen": u8, "fMRI": u8[::-1]}, rows, ["a", "b", "c", "d"])
    assert len(fig.axes) == 8
    feats = {"early": imgs.reshape(5, -1), "late": imgs.reshape(5, -1)}
    t = reconstruction_table({"fMRI": score_reconstructions(imgs, imgs, feats, feats, meta)})
    assert len(plot_reconstruction_bars(t, ["fMRI", "chance"]).axes) == 4
