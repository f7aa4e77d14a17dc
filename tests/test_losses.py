"""Losses of the paper (eqs. 1-6) against hand-computed / independent numpy references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from llm4brain.models.dance import CosineClassifier, MemoryBank
from llm4brain.training.da import dance_loss
from llm4brain.training.losses import (clip_loss, default_rho, entropy_separation_loss,
                                       l2l1_loss, neighbourhood_clustering_loss, pool_tokens,
                                       stage1_loss, stage2_loss)


def _t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def _np_unit(a):
    a = np.asarray(a, dtype=float)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _np_logsumexp(v):
    m = np.max(v)
    return m + math.log(np.sum(np.exp(v - m)))


# ----------------------------------------------------------------------------- eq. 1
def test_clip_loss_hand_value_two_orthogonal_pairs():
    # z_i == x_i, the two pairs orthogonal: s = [[1, 0], [0, 1]], tau = 0.5
    z = _t([[1.0, 0.0], [0.0, 2.0]])  # scale must not matter (cosine)
    x = _t([[3.0, 0.0], [0.0, 1.0]])
    per_dir = -(2.0 - math.log(math.exp(2.0) + 1.0))      # -log(e^2 / (e^2 + e^0))
    assert float(clip_loss(z, x, tau=0.5)) == pytest.approx(2 * per_dir, abs=1e-12)


def test_clip_loss_matches_numpy_reference_both_directions(rng):
    z, x = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    s = _np_unit(z) @ _np_unit(x).T / 0.05
    row = np.mean([-(s[i, i] - _np_logsumexp(s[i, :])) for i in range(4)])
    col = np.mean([-(s[i, i] - _np_logsumexp(s[:, i])) for i in range(4)])
    assert float(clip_loss(_t(z), _t(x), 0.05)) == pytest.approx(row + col, rel=1e-9)
    # asymmetric: swapping arguments swaps directions, total unchanged
    assert float(clip_loss(_t(x), _t(z), 0.05)) == pytest.approx(row + col, rel=1e-9)
    assert row != pytest.approx(col)


def test_soft_clip_loss_matches_numpy_reference(rng):
    """stage1.soft_tau: cross-entropy of both directions against softmax(video sims / soft_tau)."""
    z, x = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    s = _np_unit(z) @ _np_unit(x).T / 0.05
    v = _np_unit(x) @ _np_unit(x).T / 0.2
    q = np.exp(v - v.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    row = np.mean([-(q[i] * (s[i] - _np_logsumexp(s[i]))).sum() for i in range(5)])
    col = np.mean([-(q[i] * (s[:, i] - _np_logsumexp(s[:, i]))).sum() for i in range(5)])
    assert float(clip_loss(_t(z), _t(x), 0.05, soft_tau=0.2)) == pytest.approx(row + col, rel=1e-9)
    # a cold target temperature is the one-hot loss; a warm one is not
    assert float(clip_loss(_t(z), _t(x), 0.05, soft_tau=1e-4)) == pytest.approx(
        float(clip_loss(_t(z), _t(x), 0.05)), rel=1e-6)
    assert float(clip_loss(_t(z), _t(x), 0.05, soft_tau=0.5)) != pytest.approx(
        float(clip_loss(_t(z), _t(x), 0.05)), rel=1e-3)
    # no gradient flows through the targets: with z fixed, d/dx comes from the logits only
    xt = _t(x).requires_grad_(True)
    clip_loss(_t(z), xt, 0.05, soft_tau=0.2).backward()
    g_soft = xt.grad.clone()
    xt.grad = None
    q_t = torch.softmax(torch.nn.functional.normalize(_t(x), dim=-1)
                        @ torch.nn.functional.normalize(_t(x), dim=-1).T / 0.2, -1)
    logits = (torch.nn.functional.normalize(_t(z), dim=-1)
              @ torch.nn.functional.normalize(xt, dim=-1).T / 0.05)
    (torch.nn.functional.cross_entropy(logits, q_t)
     + torch.nn.functional.cross_entropy(logits.T, q_t)).backward()
    assert torch.allclose(g_soft, xt.grad, atol=1e-12)
    with pytest.raises(ValueError, match="soft_tau"):
        clip_loss(_t(z), _t(x), 0.05, soft_tau=-1.0)


def test_centred_clip_loss_is_the_loss_of_the_centred_batch(rng):
    """stage1.center: the cosine after subtracting each side's batch mean; a common offset
    added to every video embedding changes the plain loss and not the centred one."""
    z, x = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    ref = float(clip_loss(_t(z - z.mean(0)), _t(x - x.mean(0)), 0.05))
    assert float(clip_loss(_t(z), _t(x), 0.05, center=True)) == pytest.approx(ref, rel=1e-12)
    off = x + 10.0 * rng.normal(size=(1, 4))
    assert float(clip_loss(_t(z), _t(off), 0.05, center=True)) == pytest.approx(ref, rel=1e-9)
    assert float(clip_loss(_t(z), _t(off), 0.05)) != pytest.approx(
        float(clip_loss(_t(z), _t(x), 0.05)), rel=1e-3)


def test_class_aware_targets_spread_weight_over_the_batch_s_same_class_clips(rng):
    """stage1.class_targets: target of row i = (1 - w) one-hot + w uniform over its class in
    the batch; against a numpy reference of the two cross-entropies."""
    z, x = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    lab = np.array([0, 1, 0, 2, 1, 0])
    w, tau = 0.6, 0.1
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    L = zn @ xn.T / tau
    same = (lab[:, None] == lab[None]).astype(float)
    q = (1 - w) * np.eye(6) + w * same / same.sum(1, keepdims=True)

    def ce(lg):
        lp = lg - np.log(np.exp(lg).sum(1, keepdims=True))
        return float(-(q * lp).sum(1).mean())

    got = float(clip_loss(_t(z), _t(x), tau, labels=torch.as_tensor(lab), label_weight=w))
    assert got == pytest.approx(ce(L) + ce(L.T), rel=1e-10)
    # w = 0 or labels all distinct: the paper's one-hot loss
    plain = float(clip_loss(_t(z), _t(x), tau))
    assert float(clip_loss(_t(z), _t(x), tau, labels=torch.as_tensor(lab), label_weight=0.0)) \
        == pytest.approx(plain, rel=1e-12)
    assert float(clip_loss(_t(z), _t(x), tau, labels=torch.arange(6), label_weight=0.9)) \
        == pytest.approx(plain, rel=1e-12)
    with pytest.raises(ValueError, match="label_weight"):
        clip_loss(_t(z), _t(x), tau, labels=torch.as_tensor(lab), label_weight=1.5)


def test_losses_ignore_autocast(rng):
    z = torch.tensor(rng.normal(size=(4, 8)), dtype=torch.float32)
    x = torch.tensor(rng.normal(size=(4, 8)), dtype=torch.float32)
    ref = float(clip_loss(z, x, 0.05))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = clip_loss(z, x, 0.05)
    assert got.dtype == torch.float32 and float(got) == pytest.approx(ref, rel=1e-6)


def test_clip_loss_rejects_tokens():
    with pytest.raises(ValueError, match="Pool token sequences"):
        clip_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))


# ----------------------------------------------------------------------------- eq. 1b
def test_l2l1_hand_value():
    # one sample, two tokens, D = 2; diffs (1, -2) and (0, 3)
    z = _t([[[1.0, -2.0], [0.0, 3.0]]])
    x = torch.zeros_like(z)
    alpha = 0.25
    tok1 = 0.75 * (1 + 4) + 0.25 * (1 + 2)
    tok2 = 0.75 * 9 + 0.25 * 3
    assert float(l2l1_loss(z, x, alpha)) == pytest.approx((tok1 + tok2) / 2)


def test_l2l1_numpy_reference(rng):
    z, x = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5))
    ref = np.mean([[0.4 * np.sum((z[n, l] - x[n, l]) ** 2) + 0.6 * np.sum(np.abs(z[n, l] - x[n, l]))
                    for l in range(4)] for n in range(3)])
    assert float(l2l1_loss(_t(z), _t(x), 0.6)) == pytest.approx(ref, rel=1e-10)
    with pytest.raises(ValueError, match="alpha"):
        l2l1_loss(_t(z), _t(x), 1.5)


# ----------------------------------------------------------------------------- eq. 2
@pytest.mark.parametrize("pool", ["mean", "flatten", "first"])
def test_stage1_total_is_convex_combination(rng, pool):
    z, x = _t(rng.normal(size=(4, 3, 6))), _t(rng.normal(size=(4, 3, 6)))
    total, terms = stage1_loss(z, x, beta=0.3, alpha=0.5, tau=0.1, pool=pool)
    ref_pool = {"mean": lambda a: a.mean(1), "flatten": lambda a: a.reshape(4, -1),
                "first": lambda a: a[:, 0]}[pool]
    c = float(clip_loss(ref_pool(z), ref_pool(x), 0.1))
    r = float(l2l1_loss(z, x, 0.5))
    assert terms["clip"] == pytest.approx(c) and terms["l2l1"] == pytest.approx(r)
    assert float(total) == pytest.approx(0.3 * c + 0.7 * r) == terms["total"]
    assert total.requires_grad is False or total.grad_fn is not None


def test_pool_unknown_names_setting():
    with pytest.raises(ValueError, match="stage1.pool"):
        pool_tokens(torch.zeros(2, 3, 4), "max")


# ----------------------------------------------------------------------------- eq. 3
# ----------------------------------------------------------------------------- eq. 4
def test_nc_hand_value_excludes_self():
    # one target sample f = e1 stored at bank row 0; other rows e1 and -e1; one prototype e2;
    # T = 1. Without its own entry: logits (1, -1, 0) -> p = (e, 1/e, 1) / Z.
    f = _t([[2.0, 0.0]])
    bank = _t([[0.3, 0.7], [1.0, 0.0], [-1.0, 0.0]])   # row 0 is stale: replaced, then excluded
    proto = _t([[0.0, 5.0]])
    w = np.array([math.e, 1 / math.e, 1.0])
    p = w / w.sum()
    expected = -np.sum(p * np.log(p))
    got = float(neighbourhood_clustering_loss(f, bank, proto, torch.tensor([0]), 1.0))
    assert got == pytest.approx(expected, rel=1e-10)
    # had self been kept (logit 1 once more), the value would differ
    w_self = np.array([math.e, math.e, 1 / math.e, 1.0])
    p_self = w_self / w_self.sum()
    assert got != pytest.approx(-np.sum(p_self * np.log(p_self)), rel=1e-3)


def _np_nc(f, bank, proto, idx, T):
    f, bank, proto = _np_unit(f), _np_unit(bank), _np_unit(proto)
    out = []
    for i in range(len(f)):
        entries = []
        for j in range(len(bank)):
            if j == idx[i]:
                continue                             # self excluded
            if j in list(idx):                       # batch member: its current feature
                entries.append(f[list(idx).index(j)])
            else:
                entries.append(bank[j])
        entries.extend(proto)
        logits = np.array([e @ f[i] for e in entries]) / T
        p = np.exp(logits - _np_logsumexp(logits))
        out.append(-np.sum(p * np.log(p)))
    return np.mean(out)


def test_nc_matches_numpy_reference(rng):
    f = rng.normal(size=(3, 4))
    bank = rng.normal(size=(6, 4))
    proto = rng.normal(size=(2, 4))
    idx = np.array([4, 1, 2])
    for T in (0.05, 0.5):
        got = float(neighbourhood_clustering_loss(_t(f), _t(bank), _t(proto), torch.tensor(idx), T))
        assert got == pytest.approx(_np_nc(f, bank, proto, idx, T), rel=1e-9)


def test_nc_gradients_and_errors(rng):
    f = _t(rng.normal(size=(3, 4))).requires_grad_()
    bank = _t(rng.normal(size=(6, 4))).requires_grad_()
    proto = _t(rng.normal(size=(2, 4))).requires_grad_()
    neighbourhood_clustering_loss(f, bank, proto, torch.tensor([0, 1, 2]), 0.05).backward()
    assert f.grad is not None and torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0
    assert proto.grad is not None and proto.grad.abs().sum() > 0
    assert bank.grad is None                        # the bank is a constant
    with pytest.raises(ValueError, match="distinct"):
        neighbourhood_clustering_loss(f, bank, proto, torch.tensor([0, 0, 2]), 0.05)
    with pytest.raises(ValueError, match="memory bank size"):
        neighbourhood_clustering_loss(f, bank, proto, torch.tensor([0, 1, 6]), 0.05)


# ----------------------------------------------------------------------------- eq. 5
def test_es_hand_values_with_margin():
    C = 4
    rho = default_rho(C)                            # ln(4) / 2 = ln 2
    assert rho == pytest.approx(math.log(2))
    big = -1e4
    logits = _t([[0.0, 0.0, 0.0, 0.0],              # H = ln 4: |H - rho| = ln 2 > 0.5
                 [0.0, big, big, big],              # H = 0:    |H - rho| = ln 2 > 0.5
                 [0.0, 0.0, big, big]])             # H = ln 2: |H - rho| = 0 <= 0.5 -> 0
    got = float(entropy_separation_loss(logits, rho, margin=0.5))
    assert got == pytest.approx(-(math.log(2) + math.log(2)) / 3, rel=1e-9)
    # with a margin above ln 2 every sample is inside it -> 0
    assert float(entropy_separation_loss(logits, rho, margin=0.7)) == 0.0
    # p = (0.7, 0.1, 0.1, 0.1): H by hand, rho = 0 and margin 0 -> -H
    p = np.array([0.7, 0.1, 0.1, 0.1])
    H = -np.sum(p * np.log(p))
    assert float(entropy_separation_loss(_t([np.log(p)]), 0.0, 0.0)) == pytest.approx(-H)


# ----------------------------------------------------------------------------- eq. 6
def test_stage2_loss():
    ce, da = torch.tensor(2.0), torch.tensor(-0.5)
    assert float(stage2_loss(ce, da, 0.7)) == pytest.approx(0.7 * 2.0 + 0.3 * -0.5)
    assert float(stage2_loss(ce, None, 0.7)) == 2.0      # DA switched off: CE alone
    with pytest.raises(ValueError, match="stage2.lam"):
        stage2_loss(ce, da, 1.2)


# ----------------------------------------------------------------------------- DA helpers
def test_memory_bank_update_and_fill(rng):
    bank = MemoryBank(5, 3, momentum=0.0, seed=1)
    assert torch.allclose(bank.bank.norm(dim=1), torch.ones(5))
    before = bank.bank.clone()
    f = torch.tensor(rng.normal(size=(2, 3)), dtype=torch.float32)
    bank.update(f, torch.tensor([3, 0]))
    assert torch.allclose(bank.bank[3], f[0] / f[0].norm())
    assert torch.allclose(bank.bank[0], f[1] / f[1].norm())
    assert torch.equal(bank.bank[[1, 2, 4]], before[[1, 2, 4]])
    m = MemoryBank(5, 3, momentum=0.5, seed=1)
    old = m.bank[2].clone()
    m.update(f[:1], torch.tensor([2]))
    ref = 0.5 * old.numpy() + 0.5 * _np_unit(f[0].numpy())
    assert np.allclose(m.bank[2].numpy(), ref / np.linalg.norm(ref), atol=1e-6)
    m.fill(torch.ones(5, 3))
    assert torch.allclose(m.bank, torch.full((5, 3), 1 / math.sqrt(3)))
    assert "bank" in m.state_dict()                 # saved with the model by the loop


def test_cosine_classifier_and_dance_loss(rng):
    head = CosineClassifier(3, n_classes=4, temperature=0.1)
    x = torch.tensor(rng.normal(size=(2, 3)), dtype=torch.float32)
    w = head.weight.detach().numpy()
    ref = _np_unit(x.numpy()) @ _np_unit(w).T / 0.1
    assert np.allclose(head(x).detach().numpy(), ref, atol=1e-5)
    assert torch.allclose(head(5 * x), head(x), atol=1e-5)   # scale-free
    bank = MemoryBank(6, 3)
    loss, terms = dance_loss(x, torch.tensor([1, 4]), bank, head, nc_temperature=0.05,
                             rho=default_rho(4), margin=0.5)
    nc = neighbourhood_clustering_loss(x, bank.bank, head.prototypes, torch.tensor([1, 4]), 0.05)
    es = entropy_separation_loss(head(x), default_rho(4), 0.5)
    assert float(loss.detach()) == pytest.approx(float((nc + es).detach()), rel=1e-6)
    assert set(terms) == {"nc", "es"}
    loss.backward()
    assert head.weight.grad is not None
