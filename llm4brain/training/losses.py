"""The paper's training objectives (section 3.2, equations 1-6) as pure functions.

Every function takes torch tensors and returns a scalar tensor (differentiable) and has no
state. The equation numbers are those of the paper (``seeds/001``); the paper numbers both the
CLIP loss and the weighted L2/L1 loss "(1)", we call the latter **eq. 1b**.

=================================================  =========================================
function                                           equation
=================================================  =========================================
:func:`clip_loss`                                  eq. 1  (CLIP / InfoNCE, both directions)
:func:`l2l1_loss`                                  eq. 1b (weighted L2 / L1 over tokens)
:func:`stage1_loss`                                eq. 2  (beta * CLIP + (1 - beta) * L2L1)
:func:`~llm4brain.models.video_llm.caption_loss`   eq. 3  (answer-token cross-entropy)
:func:`neighbourhood_clustering_loss`              eq. 4  (DANCE NC)
:func:`entropy_separation_loss`                    eq. 5  (DANCE ES)
:func:`stage2_loss`                                eq. 6  (lambda * CE + (1 - lambda) * DA)
=================================================  =========================================

Eq. 3 needs the LLM (only the answer positions go through its LM head), so it lives beside
the prompt splicing in :mod:`llm4brain.models.video_llm`. The stateful helpers of domain
adaptation (memory bank, cosine classifier) live in :mod:`llm4brain.models.dance`, the DANCE
loss on them in :mod:`llm4brain.training.da`.
"""
from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn.functional as F

__all__ = [
    "clip_loss", "l2l1_loss", "pool_tokens", "stage1_loss",
    "neighbourhood_clustering_loss", "entropy_separation_loss", "entropy", "default_rho",
    "stage2_loss", "POOLINGS",
]

_MASK = -1e9  # finite "minus infinity": exp() underflows to 0 and 0 * _MASK stays finite


def _up(t: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs (autocast) are computed in float32; float64 stays float64."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _full_precision(fn):
    """Run a loss with autocast disabled (inputs are upcast by :func:`_up`)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.autocast("cpu", enabled=False))
            if torch.cuda.is_available():
                stack.enter_context(torch.autocast("cuda", enabled=False))
            return fn(*args, **kwargs)
    return wrapper


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


# ----------------------------------------------------------------------------- Stage I
@_full_precision
def clip_loss(z: torch.Tensor, x: torch.Tensor, tau: float = 0.05,
              soft_tau: float = 0.0, center: bool = False, labels: torch.Tensor | None = None,
              label_weight: float = 0.0) -> torch.Tensor:
    """CLIP loss between fMRI predictions and video embeddings (paper eq. 1).

    .. math::
        L = -\\frac{1}{B}\\sum_i \\Big(\\log\\frac{e^{s(\\hat z_i, z_i)/\\tau}}
            {\\sum_j e^{s(\\hat z_i, z_j)/\\tau}} +
            \\log\\frac{e^{s(\\hat z_i, z_i)/\\tau}}{\\sum_k e^{s(\\hat z_k, z_i)/\\tau}}\\Big)

    with ``s`` the cosine similarity. As written in the paper, the two directions
    (fMRI -> video and video -> fMRI) are **summed**, not averaged (the CLIP reference code
    averages them: this loss is twice that one).

    Parameters
    ----------
    z : tensor of shape (B, D)
        fMRI-side embeddings :math:`\\hat z` (pool tokens first, see :func:`pool_tokens`).
    x : tensor of shape (B, D)
        Video-side embeddings; row ``i`` is the positive of ``z[i]``.
    tau : float
        Temperature (0.05 in the paper).
    soft_tau : float
        ``0`` (the paper): the positive of row ``i`` is column ``i`` alone (one-hot targets).
        ``> 0``: soft targets, MindEye's *SoftCLIP* (Scotti et al. 2023): the target
        distribution of row ``i`` is ``softmax_j(s(x_i, x_j) / soft_tau)`` over the video
        embeddings of the batch (no gradient through it), so clips that look alike are
        partial positives instead of negatives the fMRI must tell apart. As ``soft_tau -> 0``
        it becomes the one-hot loss. Its minimum is the targets' entropy (twice), not 0.
    center : bool
        Centred cosine: subtract each side's batch mean before the cosine (``stage1.center``).
        Embeddings that share a large common component (the video Q-Former's pooled tokens:
        pairwise cosines 0.5-0.99) differ from each other in a small part of their length;
        without centring the cosine, and the loss, barely see those differences.
    labels, label_weight : tensor (B,) of int, float in [0, 1]
        Class-aware targets (``stage1.class_targets``): the target of row ``i`` is
        ``(1 - w)`` on its own clip plus ``w`` spread evenly over the batch's clips of its
        class (itself included), so a same-class clip is a partial positive, not a negative
        the fMRI must be pushed away from. Combined with ``soft_tau`` the two target
        distributions are mixed the same way. ``w = 0``: the paper's targets.

    Returns
    -------
    tensor of shape ()
    """
    _check(z.ndim == 2 and x.ndim == 2 and z.shape == x.shape,
           f"clip_loss expects z and x of the same shape (B, D); got {tuple(z.shape)} and "
           f"{tuple(x.shape)}. Pool token sequences first (stage1_loss(pool=...)).")
    _check(tau > 0, f"clip_loss: temperature tau must be > 0, got {tau}")
    _check(soft_tau >= 0, f"clip_loss: soft_tau must be >= 0 (0 = one-hot targets), got {soft_tau}")
    z, x = _up(z), _up(x)
    if center:
        _check(z.shape[0] >= 2, "clip_loss: center=True needs a batch of at least 2")
        z, x = z - z.mean(0, keepdim=True), x - x.mean(0, keepdim=True)
    _check(0.0 <= label_weight <= 1.0, f"clip_loss: label_weight must be in [0, 1], got "
           f"{label_weight}")
    xn = F.normalize(x, dim=-1)
    logits = F.normalize(z, dim=-1) @ xn.T / tau
    if soft_tau > 0:        # symmetric targets: the same for both directions
        target = F.softmax(xn.detach() @ xn.detach().T / soft_tau, dim=-1)
    else:
        target = torch.arange(z.shape[0], device=z.device)
    if labels is not None and label_weight > 0:
        _check(labels.shape == (z.shape[0],), f"clip_loss: labels must be (B,) = "
               f"({z.shape[0]},), got {tuple(labels.shape)}")
        same = (labels[:, None] == labels[None, :]).to(logits.dtype)
        own = target if target.ndim == 2 else F.one_hot(target, z.shape[0]).to(logits.dtype)
        target = (1 - label_weight) * own + label_weight * same / same.sum(1, keepdim=True)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)


@_full_precision
def l2l1_loss(z: torch.Tensor, x: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Weighted L2 / L1 reconstruction loss over tokens (paper eq. 1b).

    .. math::
        L = \\frac{1}{NL}\\sum_{n=1}^N\\sum_{l=1}^L (1-\\alpha)\\,\\|z_n^{(l)} - x_n^{(l)}\\|_2^2
            + \\alpha\\,\\|z_n^{(l)} - x_n^{(l)}\\|_1

    Norms are taken over the feature dimension D of each token (so the loss grows with D).

    Parameters
    ----------
    z, x : tensor of shape (N, L, D) or (N, D)
        fMRI tokens and video tokens (an (N, D) input counts as L = 1).
    alpha : float in [0, 1]
        Weight of the L1 term.

    Returns
    -------
    tensor of shape ()
    """
    _check(z.shape == x.shape, f"l2l1_loss expects z and x of the same shape (N, L, D); got "
                               f"{tuple(z.shape)} and {tuple(x.shape)}")
    _check(0.0 <= alpha <= 1.0, f"l2l1_loss: alpha must be in [0, 1], got {alpha}")
    diff = (_up(z) - _up(x))
    l2 = diff.pow(2).sum(-1)
    l1 = diff.abs().sum(-1)
    return ((1.0 - alpha) * l2 + alpha * l1).mean()


def _pool_mean(t: torch.Tensor) -> torch.Tensor:
    return t.mean(dim=1)


def _pool_flatten(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1)


def _pool_first(t: torch.Tensor) -> torch.Tensor:
    return t[:, 0]


POOLINGS = {"mean": _pool_mean, "flatten": _pool_flatten, "first": _pool_first}


def pool_tokens(tokens: torch.Tensor, pool: str = "mean") -> torch.Tensor:
    """Pool a token sequence (B, L, D) into one vector per sample for the CLIP loss.

    ``mean`` averages the L tokens (B, D); ``flatten`` concatenates them (B, L*D);
    ``first`` keeps token 0 (B, D). A (B, D) input is returned unchanged.
    """
    if tokens.ndim == 2:
        return tokens
    _check(tokens.ndim == 3, f"pool_tokens expects (B, L, D) tokens, got {tuple(tokens.shape)}")
    if pool not in POOLINGS:
        raise ValueError(f"unknown pooling '{pool}' (setting stage1.pool); choose one of "
                         f"{', '.join(POOLINGS)}")
    return POOLINGS[pool](tokens)


def stage1_loss(z_tok: torch.Tensor, x_tok: torch.Tensor, beta: float = 0.5, alpha: float = 0.5,
                tau: float = 0.05, pool: str = "mean",
                soft_tau: float = 0.0,
                center: bool = False, labels: torch.Tensor | None = None,
                label_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Stage I objective (paper eq. 2): ``beta * L_CLIP + (1 - beta) * L_L2L1``.

    Parameters
    ----------
    z_tok : tensor of shape (B, L, D)
        fMRI tokens (encoder + adaptors + projection).
    x_tok : tensor of shape (B, L, D)
        Video tokens (Q-Former output) of the clips seen in those trials.
    beta : float in [0, 1]
        Weight of the CLIP term.
    alpha : float in [0, 1]
        Weight of the L1 part of the reconstruction term (eq. 1b).
    tau : float
        CLIP temperature (eq. 1).
    pool : {"mean", "flatten", "first"}
        How tokens are pooled for the CLIP term (:func:`pool_tokens`).
    soft_tau : float
        Soft CLIP targets (:func:`clip_loss`); 0 = one-hot, as in the paper.
    center : bool
        Centred cosine in the CLIP term (:func:`clip_loss`).

    Returns
    -------
    total : tensor of shape ()
    terms : dict
        ``{"clip": float, "l2l1": float, "total": float}`` (detached, for logging).
    """
    _check(0.0 <= beta <= 1.0, f"stage1_loss: beta must be in [0, 1], got {beta}")
    lc = clip_loss(pool_tokens(z_tok, pool), pool_tokens(x_tok, pool), tau, soft_tau, center,
                   labels, label_weight)
    lr = l2l1_loss(z_tok, x_tok, alpha)
    total = beta * lc + (1.0 - beta) * lr
    return total, {"clip": float(lc.detach()), "l2l1": float(lr.detach()),
                   "total": float(total.detach())}


# ----------------------------------------------------------------------------- Stage II
@_full_precision
def entropy(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Entropy (nats) of ``softmax(logits)`` along ``dim``; masked logits (-1e9) contribute 0."""
    logp = F.log_softmax(_up(logits), dim=dim)
    return -(logp.exp() * logp).sum(dim)


@_full_precision
def neighbourhood_clustering_loss(features: torch.Tensor, memory_bank: torch.Tensor,
                                  prototypes: torch.Tensor, indices: torch.Tensor,
                                  temperature: float = 0.05) -> torch.Tensor:
    """DANCE neighbourhood clustering loss on target features (paper eq. 4).

    Each target feature ``f_i`` (L2-normalised) is compared with the N memory-bank entries and
    the K classifier prototypes, ``F = [V_1..V_N, w_1..w_K]``;
    ``p_ij = exp(F_j . f_i / T) / Z_i`` with the sum of ``Z_i`` over ``j != i``, and the loss
    is the entropy of ``p_i`` averaged over the batch:
    ``L_NC = -1/B sum_i sum_{j != i} p_ij log p_ij``.

    As in DANCE's reference implementation, the bank entries of the samples of the batch are
    replaced by their current features (so gradients flow between batch members), the other
    entries are constants (no gradient), and the sample's own entry is excluded.

    Parameters
    ----------
    features : tensor of shape (B, D)
        Target-domain features (normalised here).
    memory_bank : tensor of shape (N, D)
        Stored target features, row ``indices[i]`` being sample ``i`` (normalised here,
        detached).
    prototypes : tensor of shape (K, D)
        Classifier weights (normalised here; gradients flow to them).
    indices : int tensor of shape (B,)
        Rows of ``memory_bank`` holding the batch samples (distinct).
    temperature : float
        0.05 in DANCE, 0.5 in the paper (setting ``stage2.nc_temperature``).

    Returns
    -------
    tensor of shape ()
    """
    _check(features.ndim == 2 and memory_bank.ndim == 2 and prototypes.ndim == 2
           and features.shape[1] == memory_bank.shape[1] == prototypes.shape[1],
           f"neighbourhood_clustering_loss: features (B, D), memory_bank (N, D) and prototypes "
           f"(K, D) must share D; got {tuple(features.shape)}, {tuple(memory_bank.shape)}, "
           f"{tuple(prototypes.shape)}")
    idx = torch.as_tensor(indices, device=features.device).long().reshape(-1)
    B, N = features.shape[0], memory_bank.shape[0]
    _check(idx.numel() == B, f"neighbourhood_clustering_loss: {idx.numel()} indices for {B} "
                             f"features")
    _check(bool((idx >= 0).all()) and bool((idx < N).all()),
           f"neighbourhood_clustering_loss: indices must lie in [0, {N}) (memory bank size)")
    _check(idx.unique().numel() == B, "neighbourhood_clustering_loss: indices of a batch must be "
                                      "distinct (sample each target trial at most once a batch)")
    _check(temperature > 0, f"temperature must be > 0, got {temperature}")
    f = F.normalize(_up(features), dim=1)
    bank = F.normalize(memory_bank.detach().to(f.dtype), dim=1)
    sim_bank = f @ bank.T                                   # (B, N), constants on the bank side
    sim_bank = sim_bank.index_copy(1, idx, f @ f.T)         # batch entries: current features
    self_mask = torch.zeros(B, N, dtype=torch.bool, device=f.device)
    self_mask[torch.arange(B, device=f.device), idx] = True
    sim_bank = sim_bank.masked_fill(self_mask, _MASK * temperature)
    sim_proto = f @ F.normalize(prototypes.to(f.dtype), dim=1).T
    logits = torch.cat([sim_bank, sim_proto], dim=1) / temperature
    return entropy(logits, dim=1).mean()


@_full_precision
def entropy_separation_loss(logits: torch.Tensor, rho: float, margin: float = 0.5) -> torch.Tensor:
    """DANCE entropy separation loss (paper eq. 5).

    ``H_i`` is the entropy of the class distribution ``p_i = softmax(logits_i)``;
    ``L_es(p_i) = -|H_i - rho|`` if ``|H_i - rho| > margin`` else 0, averaged over the batch.
    Samples already far from the threshold ``rho`` are pushed further (confidently known:
    lower entropy; unknown: higher entropy); those within the margin are left alone.
    (DANCE's code clamps at ``margin`` instead of 0: same gradient, loss shifted.)

    Parameters
    ----------
    logits : tensor of shape (B, C)
        Classifier outputs (already divided by the classifier temperature).
    rho : float
        Entropy threshold; DANCE uses ``ln(C) / 2`` (``stage2.es_rho_scale * ln(C)``).
    margin : float
        ``m`` (0.5 in DANCE).

    Returns
    -------
    tensor of shape ()
    """
    _check(logits.ndim == 2, f"entropy_separation_loss expects logits (B, C), got "
                             f"{tuple(logits.shape)}")
    _check(margin >= 0, f"entropy_separation_loss: margin must be >= 0, got {margin}")
    dist = (entropy(logits, dim=1) - rho).abs()
    return torch.where(dist > margin, -dist, torch.zeros_like(dist)).mean()


def default_rho(n_classes: int, scale: float = 0.5) -> float:
    """DANCE's entropy threshold ``rho = scale * ln(C)`` (scale 0.5 in DANCE)."""
    _check(n_classes >= 2, f"need at least 2 classes for entropy separation, got {n_classes}")
    return scale * math.log(n_classes)


def stage2_loss(ce: torch.Tensor, da: torch.Tensor | None, lam: float = 0.7) -> torch.Tensor:
    """Stage II objective (paper eq. 6): ``lambda * L_CE + (1 - lambda) * L_DA``.

    Parameters
    ----------
    ce : tensor of shape ()
        Token cross-entropy (eq. 3) on training subjects.
    da : tensor of shape () or None
        Domain-adaptation loss ``L_NC + L_ES`` (eqs. 4-5) on target subjects' unlabelled
        fMRI. ``None`` (ablation without domain adaptation) returns ``ce`` alone, i.e. the
        gradient of CE is not scaled down by lambda.
    lam : float in [0, 1]

    Returns
    -------
    tensor of shape ()
    """
    _check(0.0 <= lam <= 1.0, f"stage2_loss: lam (stage2.lam) must be in [0, 1], got {lam}")
    if da is None:
        return ce
    return lam * ce + (1.0 - lam) * da

