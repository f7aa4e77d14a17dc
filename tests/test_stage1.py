"""Stage I (paper eqs. 1-2): what is trained, batches, reproducibility, retrieval outputs.

Everything runs on a tiny random world: 3 subjects (2 training, 1 target), blocks of shape
(2, 8, 8, 8), a 2-layer encoder, a 1-layer Q-Former; no file from the pretrained models
(``llm4brain.testing.make_tiny_world``, the ``tiny_world`` fixture).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from llm4brain.evaluation import stage1 as es1
from llm4brain.models import stage1 as ms1
from llm4brain.testing import TINY_BLOCK as BLOCK
from llm4brain.testing import TINY_FEAT as FEAT
from llm4brain.training import concepts
from llm4brain.training import stage1 as s1
from llm4brain.models.stage1 import embed_clips
from llm4brain.training.losses import pool_tokens
from llm4brain.training.guard import source_view


# ----------------------------------------------------------------------------- tests
def test_trainable_set_is_the_papers(tiny_world, tmp_path):
    w = tiny_world(tmp_path)
    model = ms1.build_stage1_model(w["cfg"], w["encoder"], w["branch"])
    names = ms1.trainable_names(model)
    assert any(n.startswith("encoder.tokenizer.") for n in names)
    assert any(n.startswith("encoder.blocks.") and "lora_" in n for n in names)
    assert any(n.startswith("branch.video_qformer.") and "lora_" in n for n in names)
    assert any(n.startswith("projector.") for n in names)
    for n in names:
        ok = (n.startswith(("encoder.tokenizer.", "encoder.embed_proj.", "projector."))
              or ("lora_" in n and n.startswith(("encoder.blocks.", "branch.video_qformer."))))
        assert ok, f"unexpected trainable parameter {n}"
    # the paper's adaptors go into the *video* Q-Former: the frame Q-Former is untouched
    assert not any(n.startswith("branch.frame_qformer.") for n in names)
    assert not any("lora_" in n for n, _ in model.branch.frame_qformer.named_parameters())
    # the pretrained modules passed in are copied, not modified
    assert not any("lora_" in n for n, _ in w["encoder"].named_parameters())
    assert not any("lora_" in n for n, _ in w["branch"].named_parameters())


def test_one_step_changes_only_trainable_parameters(tiny_world, tmp_path):
    w = tiny_world(tmp_path)
    cfg = w["cfg"]
    model = ms1.build_stage1_model(cfg, w["encoder"], w["branch"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = set(ms1.trainable_names(model))
    video = ms1.VideoInputs(model, w["features"], w["tc"].trials["stim_file"])
    batch = s1.make_stage1_sampler(source_view(w["tc"], w["splits"]), video, 4)(
        0, np.random.default_rng(0))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2,
                            weight_decay=0.0)
    loss, terms = s1.stage1_loss_fn(cfg.stage1)(model, batch)
    assert set(terms) == {"clip", "l2l1"} and torch.isfinite(loss)
    loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= trainable, f"frozen parameters changed: {sorted(changed - trainable)[:5]}"
    # each trained group moved (lora_A gets no gradient at step 1 since lora_B starts at 0)
    for prefix in ("encoder.tokenizer.", "projector."):
        assert any(n.startswith(prefix) for n in changed), prefix
    assert any("lora_B" in n and n.startswith("encoder.") for n in changed)
    assert any("lora_B" in n and n.startswith("branch.video_qformer.") for n in changed)
    assert not any(n.startswith(("branch.frame_qformer.", "branch.proj.")) for n in changed)


def test_sampler_draws_distinct_clips_from_training_trials_only(tiny_world, tmp_path):
    w = tiny_world(tmp_path)
    model = ms1.build_stage1_model(w["cfg"], w["encoder"], w["branch"])
    video = ms1.VideoInputs(model, w["features"], w["tc"].trials["stim_file"])
    view = source_view(w["tc"], w["splits"], "train")
    sample = s1.make_stage1_sampler(view, video, 5)
    b1 = sample(3, np.random.default_rng((0, 3)))
    b2 = sample(3, np.random.default_rng((0, 3)))
    assert torch.equal(b1["blocks"], b2["blocks"]) and torch.equal(b1["video"], b2["video"])
    assert b1["blocks"].shape == (5,) + BLOCK
    assert b1["video"].shape[:2] == (5, FEAT[0])            # frame-Q-Former tokens (B, F, Nq, H)
    train_blocks = w["tc"].blocks[w["splits"].train_idx]
    for blk in b1["blocks"].numpy():
        assert any(np.array_equal(blk, t) for t in train_blocks)
    assert len({v.numpy().tobytes() for v in b1["video"]}) == 5   # distinct clips


def test_seeds_reproduce_and_differ(fit_tiny_stage1, tiny_world, tmp_path):
    m1, _, r1 = fit_tiny_stage1(tiny_world(tmp_path / "a"))
    m2, _, _ = fit_tiny_stage1(tiny_world(tmp_path / "b"))
    m3, _, _ = fit_tiny_stage1(tiny_world(tmp_path / "c", run={"seed": 5}))
    sd1, sd2, sd3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    assert any(not torch.equal(sd1[k], sd3[k]) for k in ms1.trainable_names(m1))
    assert {"step", "loss", "clip", "l2l1"} <= set(r1.log.columns)


def test_qformer_adaptors_both_trains_frame_qformer(tiny_world, tmp_path):
    w = tiny_world(tmp_path, stage1={"qformer_adaptors": "both"})
    model = ms1.build_stage1_model(w["cfg"], w["encoder"], w["branch"])
    assert model.video_input == "features"
    assert any(n.startswith("branch.frame_qformer.") and "lora_" in n
               for n in ms1.trainable_names(model))
    video = ms1.VideoInputs(model, w["features"])
    batch = s1.make_stage1_sampler(source_view(w["tc"], w["splits"]), video, 3)(
        0, np.random.default_rng(0))
    assert batch["video"].shape == (3,) + FEAT
    z, x = model(batch["blocks"], batch["video"])
    assert z.shape == x.shape == (3, model.n_tokens, w["branch"].proj.in_features)


def test_projectors_registry_shapes(tiny_stage_config, tmp_path):
    from llm4brain.models.bridge import PROJECTORS, build_projector

    cfg = tiny_stage_config(tmp_path)
    for name in PROJECTORS:
        p = build_projector(cfg.replace(stage1__projector=name), 12, 16, 5, n_input_tokens=7,
                            sizes={"class": 3})
        assert p(torch.randn(3, 7, 12)).shape == (3, 5, 16)
    with pytest.raises(ValueError, match="concepts' sizes"):
        build_projector(cfg.replace(stage1__projector="concept"), 12, 16, 5, n_input_tokens=7)
    with pytest.raises(ValueError, match="needs the number of encoder tokens"):
        build_projector(cfg.replace(stage1__projector="spatial"), 12, 16, 5)
    sp = build_projector(cfg.replace(stage1__projector="spatial"), 12, 16, 5, n_input_tokens=7)
    with pytest.raises(ValueError, match="built for 7 encoder tokens"):
        sp(torch.randn(3, 6, 12))
    # spatial keeps where a response is: tokens permuted -> a different output
    x = torch.randn(2, 7, 12)
    assert not torch.allclose(sp(x), sp(x[:, torch.randperm(7)]), atol=1e-5)
    mlp = build_projector(cfg.replace(stage1__projector="mlp"), 12, 16, 5)
    assert torch.allclose(mlp(x), mlp(x[:, torch.randperm(7)]), atol=1e-5)
    with pytest.raises(KeyError, match="stage1.projector"):
        build_projector(cfg.replace(stage1__projector="nope"), 12, 16, 5)


def test_evaluate_writes_retrieval_and_embeddings(fit_tiny_stage1, tiny_world, tmp_path):
    w = tiny_world(tmp_path)
    model, video, _ = fit_tiny_stage1(w)
    ev = es1.evaluate_stage1(w["cfg"], model, w["tc"], w["splits"], video, progress=False)
    t = ev.retrieval
    assert set(t["split"]) == {"val", "eval"} and set(t["method"]) == {"stage1", "ridge"}
    assert {"top1", "top5", "chance_top1", "p_value", "n_trials", "n_candidates"} <= set(t.columns)
    assert np.allclose(t["chance_top1"], 1 / t["n_candidates"])
    ev_all = t[(t.split == "eval") & (t.subject == "all")]
    assert (ev_all["n_trials"] == len(w["splits"].eval_idx)).all()
    assert set(t[t.split == "eval"]["subject"]) == {"all", "03"}
    d = es1.stage1_results_dir(w["cfg"])
    for f in ("retrieval.csv", "embeddings.npz", "embeddings_meta.tsv", "summary.json"):
        assert (d / f).is_file(), f
    arrays, meta = es1.load_stage1_results(w["cfg"])
    assert np.array_equal(np.sort(arrays["eval_rows"]), np.sort(w["splits"].eval_idx))
    assert arrays["eval_ridge"].shape == arrays["eval_x"].shape
    assert set(meta["split"]) == {"train", "val", "eval"}
    # scored and saved centred on the training trials' means only (each side)
    assert "top1_uncentred" in t.columns and t["top1_uncentred"].between(0, 1).all()
    np.testing.assert_allclose(arrays["train_x"].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(arrays["train_z"].mean(0), 0, atol=1e-5)
    stim = w["tc"].trials["stim_file"].to_numpy()
    pooled = {k: pool_tokens(embed_clips(model, video, stim[arrays[f"{k}_rows"]], 8),
                             w["cfg"].stage1.pool).numpy() for k in ("train", "eval")}
    np.testing.assert_allclose(arrays["train_mean_x"], pooled["train"].mean(0), rtol=1e-4,
                               atol=1e-7)
    # the targets' trials are centred on the training mean, not on their own
    np.testing.assert_allclose(arrays["eval_x"], pooled["eval"] - arrays["train_mean_x"],
                               rtol=1e-4, atol=1e-7)


def test_centred_cosine_sees_what_a_shared_component_hides(rng):
    from llm4brain.evaluation.retrieval import retrieval_accuracy

    n, d = 200, 64
    s = rng.standard_normal((n, d))                      # what differs between clips
    b = 12.0 * rng.standard_normal(d)                    # what every video embedding shares
    x = b + s + 0.5 * rng.standard_normal((n, d)) * rng.random((n, 1))
    z = s + 1.5 * rng.standard_normal((n, d)) + 3.0 * rng.standard_normal(d)
    raw = retrieval_accuracy(z, x, 20, k=(1,), rng=0)["top1"]
    cen = retrieval_accuracy(z - z[:100].mean(0), x - x[:100].mean(0), 20, k=(1,), rng=0)["top1"]
    assert cen > raw + 0.2, (raw, cen)


def test_voxel_features_reference(rng):
    blocks = rng.standard_normal((5, 3, 4, 4, 4)).astype(np.float32)
    mask = rng.random((4, 4, 4)) > 0.5
    got = es1.voxel_features(lambda p: blocks[p], 5, mask, batch_size=2)
    ref = np.stack([b[:, mask].mean(0) for b in blocks])
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    flat = es1.voxel_features(lambda p: blocks[p], 5, mask, how="flat")
    assert flat.shape == (5, 3 * mask.sum())
    with pytest.raises(ValueError, match="mean"):
        es1.voxel_features(lambda p: blocks[p], 5, mask, how="max")


def test_load_stage1_without_run_names_notebook(tiny_world, tmp_path):
    w = tiny_world(tmp_path)
    with pytest.raises(FileNotFoundError, match="notebook 03"):
        s1.load_stage1(w["cfg"], w["tc"])


def test_loss_value_is_eq2_and_l2l1_does_not_move_video_side(tiny_world, tmp_path):
    from llm4brain.training.losses import stage1_loss

    w = tiny_world(tmp_path)
    cfg = w["cfg"]
    model = ms1.build_stage1_model(cfg, w["encoder"], w["branch"])
    video = ms1.VideoInputs(model, w["features"], w["tc"].trials["stim_file"])
    batch = s1.make_stage1_sampler(source_view(w["tc"], w["splits"]), video, 4)(
        0, np.random.default_rng(0))
    # make the video adaptors non-trivial so gradients reach lora_A too
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    z, x = model(batch["blocks"], batch["video"])
    s = cfg.stage1
    ref, _ = stage1_loss(z, x, s.beta, s.alpha, s.tau, s.pool, center=s.center)
    loss, terms = s1.stage1_loss_fn(s)(model, batch)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    # pure L2/L1 (beta = 0): no gradient reaches the video Q-Former's adaptors ...
    only_l2 = s1.stage1_loss_fn(s.__class__(**{**s.__dict__, "beta": 0.0}))
    model.zero_grad()
    only_l2(model, batch)[0].backward()
    vq = [p.grad for n, p in model.named_parameters() if n.startswith("branch.video_qformer.")
          and p.requires_grad]
    assert vq and all(g is None or float(g.abs().sum()) == 0.0 for g in vq)
    # ... unless the stop-gradient is switched off
    off = s1.stage1_loss_fn(s.__class__(**{**s.__dict__, "beta": 0.0,
                                            "l2l1_detach_video": False}))
    model.zero_grad()
    off(model, batch)[0].backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for n, p in
               model.named_parameters() if n.startswith("branch.video_qformer."))


def test_ablation_switches_change_what_stage1_trains(tiny_world, tmp_path):
    """stage1.align off trains nothing (the saved model is the initial one);
    stage1.encoder_adaptors off leaves the encoder without adaptors; mae.pretrained off
    starts from a random encoder; settings at their defaults keep the run name."""
    from types import SimpleNamespace

    w = tiny_world(tmp_path)
    cfg = w["cfg"]
    base = s1.stage1_run_name(cfg)
    assert s1.stage1_run_name(cfg.replace(stage1__align=True, stage1__encoder_adaptors=True,
                                          mae__pretrained=True)) == base
    assert s1.stage1_run_name(cfg.replace(stage1__projector_dropout=0.3)) == base  # not spatial
    names = {s1.stage1_run_name(cfg.replace(**{k: False})) for k in
             ("stage1__align", "stage1__encoder_adaptors", "mae__pretrained")}
    assert len(names) == 3 and base not in names
    parts = dict(mae=SimpleNamespace(encoder=w["encoder"]), vlm=SimpleNamespace(branch=w["branch"]))
    c = cfg.replace(stage1__align=False, stage1__steps=3)
    res = s1.train_stage1(c, w["tc"], w["splits"], features=w["features"], progress=False, **parts)
    init = ms1.build_stage1_model(c, w["encoder"], w["branch"])
    for (n, p), (_, q) in zip(res.model.named_parameters(), init.named_parameters()):
        assert torch.equal(p, q), n
    assert len(res.log) == 1
    noad = ms1.build_stage1_model(cfg.replace(stage1__encoder_adaptors=False), w["encoder"],
                                 w["branch"])
    assert not any("lora_" in n for n, _ in noad.encoder.named_parameters())
    assert any("lora_" in n for n, _ in init.encoder.named_parameters())
    assert any(p.requires_grad for n, p in noad.encoder.named_parameters()
               if n.startswith("tokenizer."))
    import copy

    pretrained = copy.deepcopy(w["encoder"])          # stands for an MAE-trained encoder
    with torch.no_grad():
        for p in pretrained.parameters():
            p.add_(0.5)
    mae = SimpleNamespace(encoder=pretrained)
    used, _ = s1._pretrained_parts(cfg, w["tc"], vlm=parts["vlm"], mae=mae)
    assert used is pretrained
    enc, _ = s1._pretrained_parts(cfg.replace(mae__pretrained=False), w["tc"],
                                  vlm=parts["vlm"], mae=mae)
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(),   # the random init
                                                 w["encoder"].state_dict().values()))


def test_train_encoder_unfreezes_the_encoder_and_names_its_own_run(tiny_world, tmp_path):
    """stage1.train_encoder: every encoder weight but the positions trains (the frozen default
    trains only the tokenizer, projection and adaptors); off keeps the run name, on changes it."""
    w = tiny_world(tmp_path)
    cfg = w["cfg"]
    base = s1.stage1_run_name(cfg)
    assert s1.stage1_run_name(cfg.replace(stage1__train_encoder=False)) == base
    assert s1.stage1_run_name(cfg.replace(stage1__train_encoder=True)) != base
    frozen = ms1.build_stage1_model(cfg, w["encoder"], w["branch"])
    full = ms1.build_stage1_model(cfg.replace(stage1__train_encoder=True,
                                              stage1__encoder_adaptors=False),
                                  w["encoder"], w["branch"])
    blocks = [n for n, _ in full.encoder.named_parameters() if n.startswith("blocks.")]
    assert blocks
    assert all(p.requires_grad for n, p in full.encoder.named_parameters()
               if n.startswith("blocks."))
    assert not any(p.requires_grad for n, p in frozen.encoder.named_parameters()
                   if n.startswith("blocks.") and "lora_" not in n)
    assert not any(p.requires_grad for n, p in full.encoder.named_parameters()
                   if n.startswith(("pos_embed", "cls_token")))
    both = ms1.build_stage1_model(cfg.replace(stage1__train_encoder=True), w["encoder"], w["branch"])
    assert not any("lora_" in n for n, _ in both.encoder.named_parameters())


def test_soft_tau_names_its_own_run_and_is_checked(tiny_world, tmp_path):
    """stage1.soft_tau: 0 (one-hot CLIP, the paper) keeps the run name; > 0 changes it;
    a negative value is refused naming the setting."""
    cfg = tiny_world(tmp_path)["cfg"]
    base = s1.stage1_run_name(cfg)
    assert s1.stage1_run_name(cfg.replace(stage1__soft_tau=0.0)) == base
    assert s1.stage1_run_name(cfg.replace(stage1__soft_tau=0.1)) != base
    with pytest.raises(ValueError, match="stage1.soft_tau"):
        cfg.replace(stage1__soft_tau=-0.1)


def test_voxel_readout_full_rank_is_sklearns_ridge(rng):
    """VoxelReadout.fit_ridge at full rank predicts what sklearn's RidgeCV predicts; a lower
    rank keeps the top directions of the predictions; the untrained read-out emits zeros."""
    from sklearn.linear_model import RidgeCV

    from llm4brain.models.bridge import VoxelReadout
    mask = np.zeros((3, 4, 2), bool)
    mask[1:, :3] = True                                       # 12 voxels
    blocks = rng.normal(size=(40, 2, 3, 4, 2)).astype(np.float32)
    W = rng.normal(size=(12, 6))
    X = blocks.mean(1)[:, mask]
    Y = (X @ W + 0.1 * rng.normal(size=(40, 6))).reshape(40, 2, 3)
    ro = VoxelReadout(mask, n_tokens=2, out_dim=3, rank=6)
    assert torch.count_nonzero(ro(torch.from_numpy(blocks))) == 0
    np.testing.assert_allclose(ro.voxels(torch.from_numpy(blocks)).numpy(), X, rtol=1e-6)
    info = ro.fit_ridge(X, Y, alphas=(0.1, 1.0, 10.0))
    ref = RidgeCV(alphas=(0.1, 1.0, 10.0)).fit(X.astype(np.float64), Y.reshape(40, -1))
    got = ro(torch.from_numpy(blocks)).detach().numpy().reshape(40, -1)
    np.testing.assert_allclose(got, ref.predict(X.astype(np.float64)), atol=1e-4)
    assert info["rank"] == 6 and info["kept_variance"] == pytest.approx(1.0)
    ro2 = VoxelReadout(mask, n_tokens=2, out_dim=3, rank=2)
    info2 = ro2.fit_ridge(X, Y, alphas=(0.1, 1.0, 10.0))
    assert info2["rank"] == 2 and 0.3 < info2["kept_variance"] < 1.0
    with pytest.raises(ValueError, match="mask"):
        ro(torch.zeros(1, 2, 3, 3, 2))
    # a voxel selection: the ridge of the kept columns, the others read with weight zero
    keep = np.array([0, 3, 4, 9])
    ro3 = VoxelReadout(mask, n_tokens=2, out_dim=3, rank=6)
    info3 = ro3.fit_ridge(X, Y, alphas=(0.1, 1.0, 10.0), voxels=keep)
    ref3 = RidgeCV(alphas=(0.1, 1.0, 10.0)).fit(X[:, keep].astype(np.float64), Y.reshape(40, -1))
    got3 = ro3(torch.from_numpy(blocks)).detach().numpy().reshape(40, -1)
    np.testing.assert_allclose(got3, ref3.predict(X[:, keep].astype(np.float64)), atol=1e-4)
    assert info3["n_voxels"] == 4 and ro3.keep.sum() == 4
    assert torch.count_nonzero(ro3.down.weight[:, [1, 2, 5]]) == 0
    with pytest.raises(ValueError, match="voxels must index"):
        ro3.fit_ridge(X, Y, alphas=(1.0,), voxels=[12])


def test_selective_voxels_ranks_by_the_anova_f(rng):
    y = np.repeat(["a", "b", "c"], 20)
    X = rng.normal(size=(60, 8))
    X[:, 5] += np.repeat([0.0, 3.0, -3.0], 20)              # strongly class-selective
    X[:, 2] += np.repeat([0.0, 1.0, -1.0], 20)              # weakly
    X[:, 7] = 1.0                                            # constant: ranks last
    assert list(s1.selective_voxels(X, y, 2)) == [2, 5]
    assert 7 not in s1.selective_voxels(X, y, 7)
    with pytest.raises(ValueError, match="one class"):
        s1.selective_voxels(X, ["a"] * 60, 2)


def test_voxel_readout_starts_stage1_at_the_ridge_and_needs_the_mask(tiny_world, tmp_path):
    """stage1.voxel_readout: the model needs the mask; before any Stage I step its fMRI
    tokens are zero, and after fit_voxel_readout (what train_stage1 runs first) they are the
    ridge's predictions of the video tokens; ``ridge`` keeps it fixed, ``ridge-tuned`` trains
    it; the setting names its own run."""
    w = tiny_world(tmp_path)
    cfg = w["cfg"].replace(stage1__voxel_readout="ridge", stage1__voxel_readout_rank=4)
    assert s1.stage1_run_name(cfg) != s1.stage1_run_name(w["cfg"])
    assert s1.stage1_run_name(w["cfg"].replace(stage1__voxel_readout_rank=4)) == \
        s1.stage1_run_name(w["cfg"])
    with pytest.raises(ValueError, match="mask"):
        ms1.build_stage1_model(cfg, w["encoder"], w["branch"])
    m = ms1.build_stage1_model(cfg, w["encoder"], w["branch"], mask=w["tc"].mask)
    assert not any(p.requires_grad for p in m.readout.parameters())
    b = torch.from_numpy(w["tc"].blocks[:4].astype(np.float32))
    assert torch.count_nonzero(m.eval().fmri_tokens(b)) == 0    # zero read-out, zero last layer
    video = ms1.VideoInputs(m, w["features"], w["tc"].trials["stim_file"])
    view = source_view(w["tc"], w["splits"], "train")
    s1.fit_voxel_readout(cfg.replace(stage1__voxel_readout_rank=10_000), m, view, video,
                         w["tc"].mask)
    from llm4brain.data import voxel_features
    from llm4brain.models.ridge import RidgeCV
    X = voxel_features(view.blocks, len(view), w["tc"].mask)
    Y = ms1.embed_clips(m, video, list(view.stim_file)).numpy().reshape(len(view), -1)
    ref = RidgeCV(cfg.stage1.ridge_alphas).fit(X, Y).predict(X)
    got = ms1.embed_fmri(m, view.blocks, len(view)).numpy().reshape(len(view), -1)
    np.testing.assert_allclose(got, ref, atol=1e-3 * np.abs(ref).max())
    assert s1.stage1_run_name(cfg.replace(stage1__voxel_readout_voxels=5)) != \
        s1.stage1_run_name(cfg)
    assert s1.stage1_run_name(w["cfg"].replace(stage1__voxel_readout_voxels=5)) == \
        s1.stage1_run_name(w["cfg"])
    info = s1.fit_voxel_readout(cfg.replace(stage1__voxel_readout_voxels=5), m, view, video,
                                w["tc"].mask)
    assert info["n_voxels"] == 5 and int(m.readout.keep.sum()) == 5
    tuned = ms1.build_stage1_model(cfg.replace(stage1__voxel_readout="ridge-tuned"),
                                   w["encoder"], w["branch"], mask=w["tc"].mask)
    assert all(p.requires_grad for p in tuned.readout.parameters())
    with pytest.raises(ValueError, match="stage1.voxel_readout"):
        cfg.replace(stage1__voxel_readout="linear")


def test_input_voxels_mask_the_tokenizer_input_to_the_selected_voxels(tiny_world, tmp_path):
    """stage1.input_voxels: the model needs the mask; fit_input_mask keeps exactly the k
    voxels with the largest ANOVA F of the training trials' class (against sklearn's
    f_classif); the tokenizer then sees zeros elsewhere (changing an unselected voxel leaves
    the fMRI tokens unchanged, changing a selected one does not); the setting names its own
    run and is refused when larger than the mask."""
    from sklearn.feature_selection import f_classif
    from llm4brain.data import voxel_features
    w = tiny_world(tmp_path)
    cfg = w["cfg"].replace(stage1__input_voxels=5)
    assert s1.stage1_run_name(cfg) != s1.stage1_run_name(w["cfg"])
    with pytest.raises(ValueError, match="stage1.input_voxels"):
        ms1.build_stage1_model(cfg, w["encoder"], w["branch"])
    with pytest.raises(ValueError, match="stage1.input_voxels"):
        w["cfg"].replace(stage1__input_voxels=-1)
    m = ms1.build_stage1_model(cfg, w["encoder"], w["branch"], mask=w["tc"].mask).eval()
    mask = np.asarray(w["tc"].mask, bool)
    assert torch.equal(m.input_mask.bool(), torch.from_numpy(mask))   # the brain mask at first
    view = source_view(w["tc"], w["splits"], "train")
    keep = s1.fit_input_mask(cfg, m, view, w["tc"].mask)
    X = voxel_features(view.blocks, len(view), mask)
    F = np.nan_to_num(f_classif(X.astype(np.float64), np.asarray(view.class_name))[0], nan=-1)
    ref = np.zeros(mask.size, bool)
    ref[np.flatnonzero(mask.ravel())[np.argsort(-F, kind="stable")[:5]]] = True
    np.testing.assert_array_equal(keep.ravel(), ref)
    assert int(m.input_mask.sum()) == 5 and "input_mask" in m.state_dict()
    b = torch.from_numpy(w["tc"].blocks[:2].astype(np.float32))
    z = m.fmri_tokens(b)
    off = np.argwhere(mask & ~keep)[0]
    on = np.argwhere(keep)[0]
    b_off, b_on = b.clone(), b.clone()
    b_off[:, :, off[0], off[1], off[2]] += 10.0
    b_on[:, :, on[0], on[1], on[2]] += 10.0
    torch.testing.assert_close(m.fmri_tokens(b_off), z)
    assert not torch.allclose(m.fmri_tokens(b_on), z)
    with pytest.raises(ValueError, match="more than the"):
        s1.fit_input_mask(cfg.replace(stage1__input_voxels=int(mask.sum()) + 1), m, view, mask)


def test_input_mask_is_chosen_by_train_stage1_and_restored_by_load_stage1(tiny_world, tmp_path):
    """train_stage1 narrows the input mask to the k selected voxels before its first step; the
    finished checkpoint holds it, and load_stage1 gives the same mask and the same tokens."""
    from types import SimpleNamespace
    w = tiny_world(tmp_path)
    cfg = w["cfg"].replace(stage1__input_voxels=7, stage1__steps=2)
    parts = dict(mae=SimpleNamespace(encoder=w["encoder"]), vlm=SimpleNamespace(branch=w["branch"]))
    res = s1.train_stage1(cfg, w["tc"], w["splits"], features=w["features"], progress=False,
                          **parts)
    assert int(res.model.input_mask.sum()) == 7
    back = s1.load_stage1(cfg, w["tc"], **parts)
    torch.testing.assert_close(back.input_mask, res.model.input_mask)
    b = torch.from_numpy(w["tc"].blocks[:3].astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(back.fmri_tokens(b), res.model.fmri_tokens(b))


def test_pairwise_identification_reference(rng):
    z = rng.standard_normal((6, 4))
    assert s1.pairwise_identification(z, z) == 1.0
    assert s1.pairwise_identification(z, -z) == 0.0
    x = rng.standard_normal((6, 4))
    S = (z / np.linalg.norm(z, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1,
                                                                               keepdims=True)).T
    ref = np.mean([S[i, j] < S[i, i] for i in range(6) for j in range(6) if j != i])
    assert s1.pairwise_identification(z, x) == pytest.approx(ref)


def test_early_stopping_keeps_the_best_validation_step(tiny_world, tmp_path):
    from types import SimpleNamespace

    w = tiny_world(tmp_path)
    parts = dict(mae=SimpleNamespace(encoder=w["encoder"]), vlm=SimpleNamespace(branch=w["branch"]))
    c = w["cfg"].replace(stage1__steps=4, stage1__early_stopping_every=1, stage1__lr=5e-2)
    assert s1.stage1_run_name(c) != s1.stage1_run_name(w["cfg"])
    res = s1.train_stage1(c, w["tc"], w["splits"], features=w["features"], progress=False, **parts)
    curve = pd.read_csv(c.run_dir / "logs" / f"{res.run_name}.early_stopping.csv")
    assert list(curve["step"]) == [1, 2, 3, 4] and curve["val_pairwise"].between(0, 1).all()
    best = int(curve["step"][curve["val_pairwise"].idxmax()])
    st = torch.load(c.run_dir / "checkpoints" / res.run_name / "state.pt", weights_only=False)
    assert st["best_step"] == best and st["finished"]
    # the returned model, the checkpoint and a reload all hold the best step's weights
    stopper = s1.EarlyStopping(res.model, w["tc"], w["splits"], res.video, c.stage1)
    assert stopper.score(res.model) == pytest.approx(curve["val_pairwise"].max(), abs=1e-6)
    again = s1.train_stage1(c, w["tc"], w["splits"], features=w["features"], progress=False,
                            **parts)
    assert not again.trained
    for (n, p), (_, q) in zip(res.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(p, q), n


def test_encoding_voxels_find_the_voxels_the_video_embeddings_drive(rng):
    n = 200
    lat = rng.standard_normal((n, 4))                       # what differs between clips
    Y = (lat @ rng.standard_normal((4, 48))).reshape(n, 3, 16) + 0.1 * rng.standard_normal(
        (n, 3, 16))                                          # video tokens (n, L, H)
    X = rng.standard_normal((n, 40))
    drive = lat @ rng.standard_normal((4, 5))
    X[:, [3, 17, 21, 30, 38]] += 0.5 * drive / drive.std(0)
    got = s1.encoding_voxels(X, Y, 5, n_components=10)
    assert list(got) == [3, 17, 21, 30, 38]
    with pytest.raises(ValueError, match="stage1.input_voxels"):
        s1.encoding_voxels(X[:2], Y[:2], 5, setting="stage1.input_voxels")


def test_stage1_reading_states_the_summary_numbers_and_verdicts():
    from llm4brain.evaluation.stage1 import stage1_reading
    s = dict(target_top1_stage1=0.142, target_top1_ridge=0.154, p_value_stage1=0.001,
             p_value_ridge=0.0005, chance_top1=0.05, n_trials=240, p_vs_ridge_stage1=0.76,
             target_top1_semantic=0.429, p_value_semantic=0.0002, p_vs_ridge_semantic=0.0001)
    text = stage1_reading(s)
    assert "240 evaluation trials" in text and "among 20 candidates" in text
    assert "14.2 % (p = 0.001 against chance: above chance)" in text
    assert "not distinguishable from it (paired test, p = 0.760)" in text
    assert "42.9 % (p < 0.001" in text and "chance is 5.0 %" in text
    s.update(p_value_stage1=0.4, p_vs_ridge_stage1=0.001, target_top1_stage1=0.05)
    text = stage1_reading(s)
    assert "not distinguishable from chance" in text and "is behind it" in text
    with pytest.raises(KeyError, match="p_vs_ridge_stage1"):
        stage1_reading({k: v for k, v in s.items() if k != "p_vs_ridge_stage1"})


def test_concept_projector_mixes_prototypes_by_the_heads_posteriors(rng):
    """ConceptProjector: z = G + sum_c p_c @ (P_c - G); with one-hot posteriors the tokens are
    exactly the value's mean training tokens; sizes are checked; the voxel path reads the set
    voxels only (changing another voxel leaves the logits unchanged)."""
    from llm4brain.models.bridge import ConceptProjector
    L, H, N, De = 2, 3, 4, 5
    proj = ConceptProjector(De, H, L, N, {"class": 3, "scene": 2}, token_dim=2, n_voxels=2).eval()
    tokens = torch.as_tensor(rng.normal(size=(12, L, H)), dtype=torch.float32)
    cls = np.arange(12) % 3
    scn = (np.arange(12) // 3) % 2
    proj.set_prototypes(tokens, {"class": cls, "scene": scn})
    G = tokens.mean(0)
    big = 50.0
    logits = {"class": torch.tensor([[big, 0.0, 0.0]]), "scene": torch.tensor([[0.0, big]])}
    want = tokens[cls == 0].mean(0) + tokens[scn == 1].mean(0) - G
    torch.testing.assert_close(proj.mix(logits)[0], want, atol=1e-5, rtol=1e-5)
    # uniform posteriors: the mean of the value prototypes
    flat = {"class": torch.zeros(1, 3), "scene": torch.zeros(1, 2)}
    want = (sum(tokens[cls == v].mean(0) for v in range(3)) / 3
            + sum(tokens[scn == v].mean(0) for v in range(2)) / 2 - G)
    torch.testing.assert_close(proj.mix(flat)[0], want, atol=1e-5, rtol=1e-5)
    # voxel path: only the voxels set are read
    blocks = torch.as_tensor(rng.normal(size=(3, 2, 2, 2, 2)), dtype=torch.float32)
    proj.set_voxels(np.array([1, 6]), rng.normal(size=(20, 2)))
    enc = torch.as_tensor(rng.normal(size=(3, N, De)), dtype=torch.float32)
    with torch.no_grad():
        base = proj.logits(enc, blocks)
        other = blocks.clone()
        other[:, :, 0, 0, 0] += 5.0                  # flat index 0: not read
        torch.testing.assert_close(proj.logits(enc, other)["class"], base["class"])
        read = blocks.clone()
        read[:, :, 1, 1, 0] += 5.0                   # flat index 6: read
        assert not torch.allclose(proj.logits(enc, read)["class"], base["class"])
    with pytest.raises(ValueError, match="blocks"):
        proj.logits(enc)
    with pytest.raises(ValueError, match="at least 2 values"):
        ConceptProjector(De, H, L, N, {"class": 1})
    # sharpen: softmax(s * logits) weights the prototypes; a large s gives the argmax value's
    sharp = ConceptProjector(De, H, L, N, {"class": 3, "scene": 2}, sharpen=200.0)
    sharp.set_prototypes(tokens, {"class": cls, "scene": scn})
    mild = {"class": torch.tensor([[0.0, 0.3, 0.1]]), "scene": torch.tensor([[0.2, 0.0]])}
    want = tokens[cls == 1].mean(0) + tokens[scn == 0].mean(0) - G
    torch.testing.assert_close(sharp.mix(mild)[0], want, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="sharpen"):
        ConceptProjector(De, H, L, N, {"class": 3}, sharpen=0.0)


def test_concept_projector_trains_restores_and_names_its_run(tiny_world, tmp_path):
    """stage1.projector: concept: train_stage1 sets the prototypes from the training trials'
    video tokens, the heads learn (the concept cross-entropy is logged and falls below its
    start), load_stage1 rebuilds the heads' sizes from the checkpoint and gives the same
    tokens; its settings name their own run only with that projector; a concept the
    stimulus table lacks is refused by name."""
    from types import SimpleNamespace
    w = tiny_world(tmp_path)
    base = w["cfg"]
    cfg = base.replace(stage1__projector="concept", stage1__concept_ce=1.0, stage1__steps=12,
                       stage1__concept_voxels=6, stage1__lr=5e-2, stage1__concept_cs=[],
                       stage1__qformer_adaptors="none")     # video tokens fixed: G is exact
    assert s1.stage1_run_name(cfg) != s1.stage1_run_name(cfg.replace(stage1__concept_ce=0.5))
    assert s1.stage1_run_name(base.replace(stage1__concept_ce=0.5)) == s1.stage1_run_name(base)
    with pytest.raises(ValueError, match="concept_sizes"):
        ms1.build_stage1_model(cfg, w["encoder"], w["branch"], mask=w["tc"].mask)
    parts = dict(mae=SimpleNamespace(encoder=w["encoder"]), vlm=SimpleNamespace(branch=w["branch"]))
    res = s1.train_stage1(cfg, w["tc"], w["splits"], features=w["features"], progress=False,
                          **parts)
    assert "concept_ce" in res.log.columns
    ce = res.log["concept_ce"].to_numpy()
    assert ce[-3:].mean() < ce[:3].mean()
    view = source_view(w["tc"], w["splits"], "train")
    Y = embed_clips(res.model, res.video, list(view.stim_file))
    ids, names = concepts.concept_values(cfg, view)
    assert names["class"] == sorted(set(np.asarray(view.class_name).astype(str)))
    torch.testing.assert_close(res.model.projector.grand, Y.reshape(len(Y), -1).mean(0))
    assert int(res.model.projector.voxel_index.numel()) == 6
    back = s1.load_stage1(cfg, w["tc"], **parts)
    b = torch.from_numpy(w["tc"].blocks[:3].astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(back.fmri_tokens(b), res.model.fmri_tokens(b))
    with pytest.raises(ValueError, match="at least the|distinct labels"):
        base.replace(stage1__concepts=["class", "class"])


def test_concept_heads_start_at_the_loso_chosen_logistic_regression(tiny_world, tmp_path):
    """fit_concepts with stage1.concept_cs: the voxel heads equal sklearn's multinomial
    logistic regression of the class on the standardised selected voxels, at the C whose
    leave-one-subject-out accuracy over the training subjects is best."""
    from sklearn.linear_model import LogisticRegression
    from llm4brain.data import voxel_features
    w = tiny_world(tmp_path)
    cs = (1e-2, 1.0)
    cfg = w["cfg"].replace(stage1__projector="concept", stage1__concept_voxels=5,
                           stage1__concept_cs=list(cs))
    view = source_view(w["tc"], w["splits"], "train")
    ids, names = concepts.concept_values(cfg, view)
    m = ms1.build_stage1_model(cfg, w["encoder"], w["branch"], mask=w["tc"].mask,
                               concept_sizes={c: len(v) for c, v in names.items()})
    video = ms1.VideoInputs(m, w["features"], w["tc"].trials["stim_file"])
    info = concepts.fit_concepts(cfg, m, view, video, w["tc"].mask, ids)
    mask = np.asarray(w["tc"].mask, bool)
    X = voxel_features(view.blocks, len(view), mask)
    flat = np.flatnonzero(mask.ravel())
    cols = np.searchsorted(flat, m.projector.voxel_index.numpy())
    Z = (X[:, cols] - X[:, cols].mean(0)) / X[:, cols].std(0, ddof=1)
    y, g = ids["class"], np.asarray(view.subject).astype(str)
    loso = {C: np.mean([(LogisticRegression(C=C, max_iter=500).fit(Z[g != h], y[g != h])
                         .predict(Z[g == h]) == y[g == h]).mean() for h in np.unique(g)])
            for C in cs}
    best = max(cs, key=lambda C: (loso[C], -C))
    assert info["class_C"] == best
    ref = LogisticRegression(C=best, max_iter=500).fit(Z, y)
    np.testing.assert_allclose(m.projector.voxel_head.weight.detach().numpy(), ref.coef_,
                               rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(m.projector.head.bias.detach().numpy(), ref.intercept_,
                               rtol=1e-3, atol=1e-4)


def test_concept_values_read_other_labels_from_the_stimulus_table(tiny_world, tmp_path,
                                                                   monkeypatch):
    """concept_values: class from the trials, any other concept from the stimulus table's
    column of that name (ids index the sorted values); a column the table lacks is refused
    naming the setting and the fix."""
    import llm4brain.data as data
    w = tiny_world(tmp_path)
    view = source_view(w["tc"], w["splits"], "train")
    files = sorted(set(np.asarray(w["tc"].trials["stim_file"]).astype(str)))
    scene = {f: ("beach" if i % 2 else "forest") for i, f in enumerate(files)}
    monkeypatch.setattr(data, "load_stimuli", lambda cfg: pd.DataFrame(
        dict(stim_file=files, scene=[scene[f] for f in files])))
    cfg = w["cfg"].replace(stage1__concepts=["class", "scene"])
    ids, names = concepts.concept_values(cfg, view)
    assert names["scene"] == ["beach", "forest"]
    want = [names["scene"].index(scene[f]) for f in np.asarray(view.stim_file).astype(str)]
    np.testing.assert_array_equal(ids["scene"], want)
    np.testing.assert_array_equal(np.asarray(names["class"])[ids["class"]],
                                  np.asarray(view.class_name).astype(str))
    with pytest.raises(ValueError, match="stage1.concepts names .colour.*set stage1.concepts"):
        concepts.concept_values(w["cfg"].replace(stage1__concepts=["class", "colour"]), view)
