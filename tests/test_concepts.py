"""Concept localisation (llm4brain.dialogue.attribution / concepts): phrases and their tokens,
attributions against closed forms, AUC and permutation p-values against independent
references, a planted read-out found in its region, the whole chain on both tokenizers.

Everything here is tiny and random (no run directory); the concept table of a trained smoke
run is in ``tests/test_dialogue.py`` (it reuses that module's Stage II run).
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from llm4brain.dialogue import (CONCEPT_TABLE_COLUMNS, ChatModels, ConceptAttributions,
                                Phrase, attribute, concept_attributions, concept_table,
                                concept_volume, find_phrases, phrase_token_mask,
                                region_labels, roc_auc)
from llm4brain.sim import REGIONS, voxel_coordinates

ANSWER = "A small red ball rolls quickly to the left on the beach ."


# ------------------------------------------------------------------ phrases and tokens
def test_find_phrases_spans_and_types():
    ph = find_phrases(ANSWER)
    assert {k: p.text for k, p in ph.items()} == {
        "agent": "ball", "action": "rolls", "colour": "red", "motion": "quickly",
        "scene": "beach"}
    for p in ph.values():
        assert ANSWER[p.start:p.end] == p.text
    assert find_phrases("nothing to see here") == {}
    assert find_phrases("Two people walk")["agent"].value == "person"


def test_phrase_token_mask_fast_and_slow_tokenizers(make_tiny_llm):
    llm = make_tiny_llm([ANSWER])
    tok = llm.tokenizer
    ph = find_phrases(ANSWER)
    kinds = ["agent", "scene", "colour"]
    ids, m = phrase_token_mask(tok, ANSWER, [ph[k] for k in kinds])
    assert ids == tok(ANSWER, add_special_tokens=False)["input_ids"]
    for j, k in enumerate(kinds):
        assert tok.decode([i for i, keep in zip(ids, m[:, j]) if keep]).strip() == ph[k].text
    # truncation cuts the scene (the last word but one) off
    ids6, m6 = phrase_token_mask(tok, ANSWER, [ph["agent"], ph["scene"]], max_tokens=6)
    assert len(ids6) == 6 and m6[:, 0].sum() == 1 and m6[:, 1].sum() == 0
    # the decode-based spans of a slow tokenizer give the same mask
    slow = type("Slow", (), {"is_fast": False, "decode": staticmethod(tok.decode),
                             "__call__": lambda self, t, **kw: tok(t, **kw)})()
    ids_s, m_s = phrase_token_mask(slow, ANSWER, [ph[k] for k in kinds])
    assert ids_s == ids and (m_s == m).all()
    empty = Phrase("scene", "", "", 0, 0, "")
    assert not phrase_token_mask(tok, ANSWER, [empty])[1].any()


# ------------------------------------------------------------------ attribution methods
def test_gradient_x_input_of_a_linear_model_is_weight_times_input():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 4, 4, 4, generator=g)
    w = torch.randn(2, 2, 4, 4, 4, generator=g)

    def f(b):
        return torch.einsum("btxyz,ktxyz->bk", b, w)

    a = attribute(f, x)
    ref = torch.einsum("btxyz,ktxyz->bkxyz", x, w)
    assert a.shape == (3, 2, 4, 4, 4)
    assert torch.allclose(a, ref, atol=1e-5)
    # only the asked outputs are attributed
    assert (attribute(f, x, outputs=[1])[:, 0] == 0).all()
    with pytest.raises(ValueError, match="gradient_x_input"):
        attribute(f, x, method="saliency")


def test_integrated_gradients_complete_on_a_nonlinear_model():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 3, 3, 3, generator=g)
    w = torch.randn(3, 3, 3, 3, generator=g)

    def f(b):
        h = torch.tanh((b * w).sum((1, 2, 3, 4)) / 4)
        return torch.stack([h, h ** 2 + (b ** 3).sum((1, 2, 3, 4)) / 50], 1)

    ig = attribute(f, x, method="integrated_gradients", n_steps=64).sum((2, 3, 4))
    with torch.no_grad():
        delta = f(x) - f(torch.zeros_like(x))
    assert torch.allclose(ig, delta, rtol=1e-2, atol=1e-3), (ig, delta)
    gxi = attribute(f, x).sum((2, 3, 4))
    assert not torch.allclose(gxi, delta, rtol=1e-2, atol=1e-3)   # first order: not complete


# ------------------------------------------------------------------ AUC and p-values
def test_roc_auc_and_voxel_permutation_p_against_references():
    from scipy.stats import mannwhitneyu
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    n = 40
    lab = np.zeros(n, bool)
    lab[:8] = True
    s = rng.normal(size=n) + 0.8 * lab
    s[10] = s[2]                                             # a tie across the classes
    assert roc_auc(s, lab) == pytest.approx(roc_auc_score(lab, s), abs=1e-12)
    with pytest.raises(ValueError, match="positives and negatives"):
        roc_auc(s, np.zeros(n, bool))
    # the table's p_perm on one subject, one trial: Mann-Whitney's exact one-sided p
    mask = np.ones((n, 1, 1), bool)
    att = ConceptAttributions(s[None, None].astype(np.float32),
                              pd.DataFrame(dict(subject=["01"], phrase_agent=["ball"])),
                              ["agent"], mask, np.eye(4))
    t = concept_table(att, {"01": {"LOC": lab, "M1": np.roll(lab, 20)}}, n_perm=3000, seed=3)
    assert list(t.columns) == list(CONCEPT_TABLE_COLUMNS)
    loc = t[t.region == "LOC"].iloc[0]
    assert loc.expected and loc.auc == pytest.approx(roc_auc_score(lab, np.abs(s)))
    ref = mannwhitneyu(np.abs(s)[lab], np.abs(s)[~lab], alternative="greater").pvalue
    assert loc.p_perm == pytest.approx(ref, abs=0.03)
    assert t["region"].tolist() == ["LOC", "M1"] and not t["expected"].iloc[1]
    assert t["chance"].eq(0.5).all() and t["n_perm"].eq(3000).all()


def _grid(res=6.0):
    """A box grid over MNI space (mask = all voxels inside an ellipsoid brain)."""
    shape = (24, 30, 24)
    aff = np.diag([res, res, res, 1.0])
    aff[:3, 3] = [-72, -108, -60]
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    xyz = ijk @ aff[:3, :3].T + aff[:3, 3]
    mask = (((xyz - [0, -18, 10]) / [68, 90, 68]) ** 2).sum(-1) <= 1
    return mask, aff


@pytest.mark.parametrize("planted", ["LOC", "PPA", "dlPFC"])
def test_planted_linear_readout_peaks_in_its_region(planted):
    mask, aff = _grid()
    coords = voxel_coordinates(mask, aff)
    regs = region_labels(coords)
    idx = np.flatnonzero(regs[planted])
    rng = np.random.default_rng(5)
    n_trials = 6
    vol = torch.zeros((n_trials, 3) + mask.shape)
    x = torch.as_tensor(rng.normal(size=(n_trials, 3, int(mask.sum()))), dtype=torch.float32)
    vol[:, :, torch.as_tensor(mask)] = x
    w = torch.zeros(int(mask.sum()))
    w[idx] = torch.as_tensor(rng.normal(size=len(idx)), dtype=torch.float32)
    wv = torch.zeros(mask.shape)
    wv[torch.as_tensor(mask)] = w

    def readout(b):                                          # one region's linear read-out
        return (b * wv).sum((1, 2, 3, 4))[:, None]

    a = attribute(readout, vol)[:, :, torch.as_tensor(mask)].numpy()
    att = ConceptAttributions(a, pd.DataFrame(dict(subject=["01"] * n_trials,
                                                   phrase_agent=["ball"] * n_trials)),
                              ["agent"], mask, aff)
    t = concept_table(att, {"01": regs}, n_perm=200, seed=0).set_index("region")
    assert t.loc[planted, "auc"] > 0.99
    assert t.loc[planted, "p_spatial"] < 0.05 and t.loc[planted, "p_perm"] < 0.01
    far = [r.name for r in REGIONS
           if not (regs[r.name] & regs[planted]).any() and r.name != planted]
    assert far
    for r in far:                                            # disjoint regions: at chance
        assert abs(t.loc[r, "auc"] - 0.5) < 0.05, (r, t.loc[r, "auc"])
        assert t.loc[r, "p_spatial"] > 0.2
    img = concept_volume(att.mean_abs("agent"), mask, aff)
    assert img.shape == mask.shape and np.allclose(img.affine, aff)
    peak = np.unravel_index(np.argmax(np.asarray(img.dataobj)), mask.shape)
    assert regs[planted][np.flatnonzero(mask.ravel()).tolist().index(
        np.ravel_multi_index(peak, mask.shape))]


# ------------------------------------------------------------------ the chain, both tokenizers
def _chain(kind, tmp_path, tiny_world, make_tiny_llm):
    from llm4brain.models.stage1 import build_stage1_model
    from llm4brain.models.stage2 import build_stage2_model
    from llm4brain.testing import TINY_LLM_DIM
    from llm4brain.training.guard import target_evaluation_view

    w = tiny_world(tmp_path, tokenizer={"kind": kind, "grid_mm": 10.0, "patch_size": 2})
    cfg = w["cfg"]
    llm = make_tiny_llm([ANSWER, "the dog runs on the beach"], hidden=TINY_LLM_DIM, seed=2)
    stage1 = build_stage1_model(cfg, w["encoder"], w["branch"]).eval()
    assert stage1.encoder.tokenizer.kind == kind
    stage2 = build_stage2_model(cfg, w["branch"].proj, llm, domain_adaptation=False).eval()
    view = target_evaluation_view(w["tc"], w["splits"])
    trials = pd.DataFrame(dict(subject=view.subject, trial_index=view.rows,
                               stim_file=view.trials["stim_file"].to_numpy(),
                               position=np.arange(len(view))))
    trials["trial"] = np.arange(len(trials))
    models = ChatModels(cfg, stage1, stage2, SimpleNamespace(llm=llm), trials,
                        w["tc"].mask, np.eye(4), view)
    answers = [ANSWER, "the dog runs on the beach", "nothing at all"] * 2
    dec = pd.DataFrame(dict(trial_index=trials["trial_index"], fmri2text=answers,
                            instruction="Describe the video briefly."))
    return models, dec, answers


@pytest.mark.parametrize("kind", ["cnn3d", "nvl"])
def test_concept_attributions_through_the_whole_chain(kind, tmp_path, tiny_world, make_tiny_llm):
    from llm4brain.dialogue import PhraseScorer

    models, dec, answers = _chain(kind, tmp_path, tiny_world, make_tiny_llm)
    stage1, stage2, llm, view = models.stage1, models.stage2, models.llm, models._view
    types = {"agent": ("agent",), "scene": ("scene",)}
    res = concept_attributions(models, dec, phrase_types=types, batch_size=4)
    n_vox = int(models.mask.sum())
    assert res.maps.shape == (6, 2, n_vox)
    assert res.settings["tokenizer"] == kind and res.settings["method"] == "gradient_x_input"
    assert res.trials["phrase_agent"].tolist() == ["ball", "dog", ""] * 2
    has = (res.trials["phrase_agent"] != "").to_numpy()
    assert np.isfinite(res.maps[has, 0]).all() and np.isnan(res.maps[~has]).all()
    assert (np.abs(res.maps[has, 0]).sum(1) > 0).all()
    assert res.n_trials("agent") == 4 and res.mean_abs("agent").shape == (n_vox,)
    # the scorer: phrase log-probabilities of a plain forward pass over the whole sequence
    rows = np.flatnonzero(has)[:2]
    ph = [find_phrases(answers[i]) for i in rows]
    masks = [phrase_token_mask(llm.tokenizer, answers[i], [p["agent"], p["scene"]],
                               max_tokens=models.cfg.llm.max_answer_tokens)[1]
             for i, p in zip(rows, ph)]
    sc = PhraseScorer(stage1, stage2, ["Describe the video briefly."] * 2,
                      [answers[i] for i in rows], masks)
    blocks = torch.as_tensor(view.blocks(models.trials["position"].to_numpy()[rows]))
    kept = np.array([m.any(0) for m in masks])             # a phrase cut off: NaN
    assert not kept.all()
    with torch.no_grad():
        got = sc(blocks).numpy()
    assert np.allclose(res.trials[["logp_agent", "logp_scene"]].to_numpy()[rows],
                       np.where(kept, got, np.nan), atol=1e-5, equal_nan=True)
    batch, _ = stage2.prompt_batch(stage1.fmri_tokens(blocks), sc.instructions, sc.answers)
    with torch.no_grad():
        logits = llm.model(inputs_embeds=batch.inputs_embeds,
                           attention_mask=batch.attention_mask,
                           position_ids=batch.position_ids).logits.float()
    lp = torch.log_softmax(logits[:, :-1], -1)
    L = logits.shape[1]
    for b, m in enumerate(masks):
        n = len(m)
        tgt, pos = batch.labels[b, L - n - 1:L - 1], torch.arange(L - n - 2, L - 2)
        ref = [float(lp[b, pos[m[:, j]], tgt[m[:, j]]].sum()) for j in range(2)]
        assert np.allclose(got[b], ref, atol=1e-4)
    # (the random world fills the blocks outside the mask too: sum over the whole grid)
    gxi = attribute(sc, blocks).sum((2, 3, 4)).numpy()[kept]
    with torch.no_grad():
        delta = (sc(blocks) - sc(torch.zeros_like(blocks))).numpy()[kept]
    if kind == "nvl":
        # integrated gradients are complete: they add up to logp(x) - logp(0)
        ig = attribute(sc, blocks, method="integrated_gradients", n_steps=16)
        assert np.allclose(ig.sum((2, 3, 4)).numpy()[kept], delta, rtol=0.02, atol=0.02)
        res_ig = concept_attributions(models, dec, phrase_types=types, batch_size=4,
                                      method="integrated_gradients", n_steps=4, max_trials=2)
        assert len(res_ig.trials) == 2 and res_ig.settings["n_steps"] == 4
    else:
        # GroupNorm makes the chain blind to the block's scale: gradient x input sums to ~0
        # (Euler), integrated gradients from the zero block are refused
        total = np.abs(attribute(sc, blocks).numpy()).sum((2, 3, 4))[kept]
        assert (np.abs(gxi) < 1e-3 * total).all() and (np.abs(delta) > 0.05).all()
        with pytest.raises(ValueError, match="gradient_x_input"):
            concept_attributions(models, dec, phrase_types=types,
                                 method="integrated_gradients")


def test_concept_attributions_errors(tmp_path, tiny_world, make_tiny_llm):
    models, dec, _ = _chain("nvl", tmp_path, tiny_world, make_tiny_llm)
    with pytest.raises(ValueError, match="fmri2text"):
        concept_attributions(models, dec.drop(columns="fmri2text"))
    with pytest.raises(ValueError, match="target evaluation trial"):
        concept_attributions(models, dec.assign(trial_index=-5))
    with pytest.raises(ValueError, match="saliency"):
        concept_attributions(models, dec, method="saliency")
