"""Settings of the shared training loop (``train``) and of Stage I / Stage II (``stage1``,
``stage2``). Defaults are the CPU ``default`` profile; GPU profiles override them in YAML."""
from __future__ import annotations

from dataclasses import dataclass

from ._video import check_bf16_setting

__all__ = ["TrainLoopConfig", "Stage1Config", "Stage2Config"]


@dataclass(frozen=True)
class TrainLoopConfig:
    """The one training loop (:func:`llm4brain.training.loop.fit`) used by every trainer.

    grad_accum : int
        Micro-batches accumulated per optimiser step (effective batch = grad_accum x batch x
        number of processes).
    mixed_precision : str
        ``no`` | ``fp16`` | ``bf16`` (passed to ``accelerate.Accelerator``).
    checkpoint_every : int
        Optimiser steps between checkpoints (0: only the final one).
    log_every : int
        Optimiser steps averaged into one row of the CSV log.
    schedule : str
        Learning-rate schedule after warm-up: ``cosine`` (to ``min_lr_ratio * lr``) or
        ``constant``.
    warmup_fraction : float
        Share of the steps with a linear warm-up (0 disables).
    min_lr_ratio : float
        Final learning rate of the cosine schedule, as a fraction of ``lr``.
    max_grad_norm : float
        Gradient clipping threshold (global L2 norm); 0 disables.
    betas : tuple of float
        AdamW betas.
    """

    grad_accum: int = 1
    mixed_precision: str = "no"      # no | fp16 | bf16 (accelerate)
    checkpoint_every: int = 100
    log_every: int = 10
    schedule: str = "cosine"         # cosine | constant
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self):
        _one_of("train.mixed_precision", self.mixed_precision, ("no", "fp16", "bf16"))
        _one_of("train.schedule", self.schedule, ("cosine", "constant"))
        _at_least("train.grad_accum", self.grad_accum, 1)
        _at_least("train.log_every", self.log_every, 1)
        _at_least("train.checkpoint_every", self.checkpoint_every, 0)
        _in_unit("train.warmup_fraction", self.warmup_fraction)
        _in_unit("train.min_lr_ratio", self.min_lr_ratio)


@dataclass(frozen=True)
class Stage1Config:
    """Stage I: fMRI <-> video alignment (paper eqs. 1-2) and its retrieval evaluation.

    Optimisation: ``steps``, ``batch_size`` (distinct clips a batch: the CLIP negatives),
    ``lr``, ``weight_decay`` (AdamW, the shared loop).

    beta : weight of the CLIP term in eq. 2 (0.95 on the CPU profile: eq. 1b sums over the
    H = 256 token dimensions, so with beta = 0.5 its gradient swamps CLIP's and the fMRI tokens
    regress to the mean video token; measured, CLIP stays at chance); alpha : weight of L1 in
    eq. 1b;
    tau : CLIP temperature (eq. 1, 0.05 in the paper); pool : how tokens are pooled for the
    CLIP term and for retrieval (``mean`` | ``flatten`` | ``first``).
    soft_tau : float
        ``0`` (the paper): one-hot CLIP targets. ``> 0``: MindEye's soft CLIP targets, the
        softmax of the batch's video-video cosine similarities at this temperature
        (:func:`llm4brain.training.losses.clip_loss`): clips that look alike stop being
        negatives the fMRI has to tell apart.
    voxel_readout : str
        ``none`` (the paper): the fMRI tokens come from the encoder's tokens alone.
        ``ridge``: a reduced-rank linear read-out of the brain-mask voxels is added to the
        projector's tokens (:class:`llm4brain.models.bridge.VoxelReadout`), fitted in closed
        form before Stage I (ridge from the training trials' voxels to their video tokens,
        alpha from ``ridge_alphas`` by ``ridge_cv``) and kept fixed, while the encoder path
        learns what it adds; ``ridge-tuned``: the same, and the read-out trains with Stage I.
    voxel_readout_rank : int
        Rank of the read-out (the ridge coefficients truncated by an SVD).
    voxel_readout_voxels : int
        ``0``: the read-out reads every brain-mask voxel. ``k > 0``: only the ``k`` voxels whose
        one-way ANOVA F of the training trials' class is largest (most mask voxels carry no
        stimulus signal; the others' weights stay at zero, also with ``ridge-tuned``).
    input_voxels : int
        ``0`` (the paper): the tokenizer reads every brain-mask voxel. ``k > 0``: an input
        mask keeps only the ``k`` voxels whose one-way ANOVA F of the Stage I training trials'
        class is largest (chosen on those trials before the first step, stored with the model)
        and zeroes the rest of every volume before the 3D-CNN tokenizer.
    class_targets : float
        Class-aware CLIP targets (``0``, the paper: one-hot): the share of each trial's target
        spread over the batch's clips of its class (its own included), so same-class clips
        are partial positives instead of negatives (with 12 classes and batches of 32, ~93 %
        of anchors have a same-class negative). Uses the training trials' class labels only.
    early_stopping_every : int
        ``0`` (the paper): the model after the last step is kept. ``k > 0``: every ``k``
        steps the model is scored on the training subjects' validation runs (pairwise
        identification, centred cosine) and the best step's weights are kept
        (:class:`llm4brain.training.stage1.EarlyStopping`).
    select_by : str
        How ``input_voxels`` and ``voxel_readout_voxels`` choose voxels: ``class`` (the
        training trials' one-way ANOVA F of their class) or ``video`` (an encoding model: the
        adjusted R^2 of each voxel on the first 20 principal components of the training
        clips' video embeddings; no labels needed, and it finds scene-driven voxels that
        the class F misses).
    center : bool
        Centred cosine in the CLIP term (on by default; ``False`` is the paper's raw cosine):
        each side's batch mean (of training trials: the training mean's estimate) is
        subtracted before the cosine, so the loss sees what differs between clips instead of
        the large component all pooled video tokens share (pairwise cosines 0.5-0.99). The
        evaluation (Stage I, ridge baseline, ridge + NN, noise ceiling) always scores the
        centred cosine on the training trials' means, with the raw figure beside it.
    projector : str
        fMRI-side projection adaptor (registry :data:`llm4brain.models.bridge.PROJECTORS`):
        ``query`` (L learned queries cross-attending to the encoder tokens, like a Q-Former
        layer), ``mlp`` (mean-pooled tokens -> nonlinear low-rank MLP -> L tokens) or
        ``spatial`` (each token squeezed to ``projector_token_dim`` features, all tokens
        concatenated -> nonlinear low-rank MLP -> L tokens: keeps where a response is) or
        ``concept`` (a semantic bottleneck: heads over the values of ``concepts`` read the
        concatenated tokens and ``concept_voxels`` selected voxels; their posteriors weight
        prototype video tokens, :class:`llm4brain.models.bridge.ConceptProjector`).
    concepts : list of str
        ``concept`` projector: the labels of the training clips whose values it decodes
        (``class``; the simulated data also has ``scene``, read from the stimulus table).
    concept_voxels : int
        ``concept`` projector: the heads also read this many voxels directly (the most
        selective of the training trials by ``select_by``, block means, standardised); 0: the
        encoder's tokens only.
    concept_ce : float
        ``concept`` projector: weight of the heads' cross-entropy on the training trials'
        concept values, added to eq. 2 (0: the heads learn from the alignment alone).
    concept_sharpen : float
        ``concept`` projector: the prototypes are weighted by ``softmax(concept_sharpen *
        logits)``, 1 the heads' posteriors, larger values nearer their most probable value.
    concept_cs : list of float
        ``concept`` projector with ``concept_voxels``: the voxel heads start at a multinomial
        logistic regression of each concept on the read voxels (standardised), its C chosen
        from this grid by leave-one-subject-out accuracy over the training subjects
        (:func:`llm4brain.training.concepts.fit_concepts`); empty: they start near zero.
    projector_layers, projector_heads, projector_rank : int
        Cross-attention layers and heads of ``query``; hidden rank of ``mlp`` and ``spatial``.
    projector_token_dim : int
        Features kept per encoder token by ``spatial`` and ``concept``.
    projector_dropout : float
        Dropout on ``spatial``'s and ``concept``'s concatenated token features (and on
        ``concept``'s voxels).
    l2l1_detach_video : bool
        Stop-gradient on the video tokens in the L2/L1 term (eq. 1b): the reconstruction term
        moves the fMRI side only, CLIP trains both. Without it the video adaptors collapse
        every clip onto the fMRI tokens (see :func:`llm4brain.training.stage1.stage1_loss_fn`).
    video_warmup : float
        Share of the steps during which the video tokens are constants (the video adaptors
        start training after it; see :func:`llm4brain.training.stage1.stage1_loss_fn`).
    qformer_adaptors : str
        Where the Q-Former adaptors go: ``video`` (the video Q-Former, as the paper's
        introduction says; the frame Q-Former is frozen and its outputs are computed once),
        ``both`` (frame and video Q-Formers) or ``none``.
    align : bool
        ``false`` (ablation "without Stage I alignment"): Stage I trains nothing (one step at
        learning rate 0 writes the initial model): the MAE encoder with a freshly initialised
        projection feeds Stage II.
    encoder_adaptors : bool
        ``false`` (ablation): no adaptors in the fMRI encoder (the tokenizer and projection
        still train); with ``qformer_adaptors: none`` there is no adaptor at all.
    train_encoder : bool
        ``true``: every weight of the fMRI encoder's transformer trains in Stage I (full
        fine-tuning instead of adaptors: no encoder adaptors are added whatever
        ``encoder_adaptors`` says; the fixed sin-cos positions stay frozen). Off as in
        the paper; a candidate on the pseudo-target where the frozen encoder loses the signal.
    eval_batch_size : int
        Trials a forward pass when embedding for evaluation.
    n_candidates : N of the top-k identification (chance k/N); n_permutations :
    permutations of the retrieval p-value; ridge_alphas : regularisation grid of the ridge
    baseline (voxels -> video embedding); ridge_cv : 0 = efficient leave-one-out, k >= 2 =
    k-fold cross-validation.
    """

    steps: int = 400
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.1
    beta: float = 0.95
    alpha: float = 0.5
    tau: float = 0.05
    pool: str = "mean"
    soft_tau: float = 0.0
    class_targets: float = 0.0
    early_stopping_every: int = 0
    center: bool = True
    voxel_readout: str = "none"
    voxel_readout_rank: int = 128
    voxel_readout_voxels: int = 0
    input_voxels: int = 0
    select_by: str = "class"
    projector: str = "query"
    projector_layers: int = 1
    projector_heads: int = 4
    projector_rank: int = 64
    projector_token_dim: int = 8
    projector_dropout: float = 0.0
    concepts: tuple[str, ...] = ("class",)
    concept_voxels: int = 0
    concept_ce: float = 0.0
    concept_cs: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    concept_sharpen: float = 1.0
    qformer_adaptors: str = "video"
    l2l1_detach_video: bool = True
    video_warmup: float = 0.5
    align: bool = True
    encoder_adaptors: bool = True
    train_encoder: bool = False
    eval_batch_size: int = 64
    n_candidates: int = 20
    n_permutations: int = 1000
    ridge_alphas: tuple[float, ...] = (1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6)
    ridge_cv: int = 0

    def __post_init__(self):
        _one_of("stage1.pool", self.pool, ("mean", "flatten", "first"))
        _one_of("stage1.qformer_adaptors", self.qformer_adaptors, ("video", "both", "none"))
        _one_of("stage1.voxel_readout", self.voxel_readout, ("none", "ridge", "ridge-tuned"))
        _one_of("stage1.select_by", self.select_by, ("class", "video"))
        _at_least("stage1.voxel_readout_rank", self.voxel_readout_rank, 1)
        _at_least("stage1.voxel_readout_voxels", self.voxel_readout_voxels, 0)
        _at_least("stage1.input_voxels", self.input_voxels, 0)
        _at_least("stage1.concept_voxels", self.concept_voxels, 0)
        if not self.concept_sharpen > 0:
            raise ValueError(f"stage1.concept_sharpen must be > 0, got {self.concept_sharpen}")
        if self.concept_ce < 0:
            raise ValueError(f"stage1.concept_ce must be >= 0, got {self.concept_ce}")
        if not self.concepts or len(set(self.concepts)) != len(self.concepts):
            raise ValueError(f"stage1.concepts = {list(self.concepts)}: name one or more "
                             f"distinct labels, e.g. [class] or [class, scene]")
        _in_unit("stage1.beta", self.beta)
        _in_unit("stage1.alpha", self.alpha)
        _in_unit("stage1.video_warmup", self.video_warmup)
        _at_least("stage1.n_candidates", self.n_candidates, 2)
        _at_least("stage1.steps", self.steps, 1)
        _at_least("stage1.batch_size", self.batch_size, 2)
        _at_least("stage1.projector_layers", self.projector_layers, 1)
        _at_least("stage1.projector_heads", self.projector_heads, 1)
        _at_least("stage1.projector_rank", self.projector_rank, 1)
        _at_least("stage1.projector_token_dim", self.projector_token_dim, 1)
        if not 0.0 <= self.projector_dropout < 1.0:
            raise ValueError(f"stage1.projector_dropout must be in [0, 1), got "
                             f"{self.projector_dropout}")
        _at_least("stage1.eval_batch_size", self.eval_batch_size, 1)
        if self.tau <= 0:
            raise ValueError(f"stage1.tau must be > 0, got {self.tau}")
        _at_least("stage1.early_stopping_every", self.early_stopping_every, 0)
        if not 0.0 <= self.class_targets <= 1.0:
            raise ValueError(f"stage1.class_targets must be in [0, 1] (0 = the paper's one-hot "
                             f"CLIP targets), got {self.class_targets}")
        if self.soft_tau < 0:
            raise ValueError(f"stage1.soft_tau must be >= 0 (0 = the paper's one-hot CLIP "
                             f"targets), got {self.soft_tau}")
        if self.ridge_cv == 1 or self.ridge_cv < 0:
            raise ValueError(f"stage1.ridge_cv must be 0 (leave-one-out) or >= 2 folds, "
                             f"got {self.ridge_cv}")


@dataclass(frozen=True)
class Stage2Config:
    """Stage II: instruction tuning of the bridge adaptor + DANCE domain adaptation (eqs. 3-6).

    Optimisation: ``steps``, ``batch_size`` (training-subject trials with their surrogate
    answers a step), ``lr``, ``weight_decay``.

    lam : lambda of eq. 6 (weight of CE; 1 - lam weighs the DA loss).
    domain_adaptation : switch for the ablation (False: CE only; classifier, memory bank and
        the DA terms are not built and not logged).
    ce_reduction : ``mean`` (per token, as Video-LLaMA) or ``sequence`` (eq. 3 literally).
    bridge_rank : rank of the nonlinear low-rank adaptor of the bridge (0: the bridge is the
        linear projection only). The bridge's projection starts as a copy of the video
        branch's projection (Q-Former space -> LLM embeddings).
    bf16 : ``true``, ``false`` or ``auto`` (default): bfloat16 autocast of the frozen LLM
        (training forward/backward and generation; 1.5-1.7x faster on CPUs with native
        bfloat16, 20-50x slower on AVX2-only CPUs). ``auto`` decides as ``vlpretrain.bf16``
        (:func:`llm4brain.models.precision.resolve_bf16`), once per process.
    cls_weight : weight of the source classification cross-entropy (cosine classifier on the
        training subjects' class labels) inside L_DA = cls_weight * L_cls + L_NC + L_ES.
    nc_temperature : NC temperature (DANCE 0.05; the paper states 0.5).
    classifier_temperature : temperature of the cosine classifier head (DANCE 0.05).
    es_rho_scale : rho = es_rho_scale * ln(C) (DANCE 0.5).
    es_margin : m of eq. 5 (DANCE 0.5).
    memory_momentum : memory-bank update momentum (DANCE 0: rows replaced by new features).
    target_batch_size : unlabelled target-subject trials per step for the DA terms.
    seed : seed of Stage II alone (initialisation, batches, the DA bank, the adaptation
        view's order); ``-1`` (default) = ``run.seed``. Lets DA on / off be compared over
        several Stage II seeds on one Stage I model.
    max_shuffles : cap on the chance decodes (``eval.n_shuffles`` repeats of decoding with
        fMRI shuffled across evaluation trials); 0 = no cap. The CPU profile decodes 3.
    """

    steps: int = 100
    batch_size: int = 8
    target_batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    lam: float = 0.7
    domain_adaptation: bool = True
    ce_reduction: str = "mean"
    bridge_rank: int = 16
    bf16: bool | str = "auto"             # true | false | auto
    cls_weight: float = 1.0
    nc_temperature: float = 0.05
    classifier_temperature: float = 0.05
    es_rho_scale: float = 0.5        # rho = es_rho_scale * ln(C)
    es_margin: float = 0.5
    memory_momentum: float = 0.0
    seed: int = -1
    max_shuffles: int = 3

    def __post_init__(self):
        _one_of("stage2.ce_reduction", self.ce_reduction, ("mean", "sequence"))
        check_bf16_setting("stage2.bf16", self.bf16)
        _in_unit("stage2.lam", self.lam)
        _in_unit("stage2.memory_momentum", self.memory_momentum)
        if self.memory_momentum >= 1.0:
            raise ValueError("stage2.memory_momentum must be < 1")
        _at_least("stage2.steps", self.steps, 1)
        _at_least("stage2.batch_size", self.batch_size, 1)
        _at_least("stage2.target_batch_size", self.target_batch_size, 2)
        _at_least("stage2.bridge_rank", self.bridge_rank, 0)
        _at_least("stage2.cls_weight", self.cls_weight, 0.0)
        _at_least("stage2.max_shuffles", self.max_shuffles, 0)
        _at_least("stage2.seed", self.seed, -1)
        for key in ("nc_temperature", "classifier_temperature"):
            if getattr(self, key) <= 0:
                raise ValueError(f"stage2.{key} must be > 0, got {getattr(self, key)}")


def _one_of(key: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{key} = {value!r} is not one of {', '.join(map(repr, allowed))}")


def _at_least(key: str, value, low) -> None:
    if value < low:
        raise ValueError(f"{key} must be >= {low}, got {value}")


def _in_unit(key: str, value) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{key} must be in [0, 1], got {value}")
