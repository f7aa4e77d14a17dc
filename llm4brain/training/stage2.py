"""Stage II: instruction tuning of the fMRI -> LLM bridge with domain adaptation (eqs. 3-6).

Frozen: the LLM, the Q-Formers, the fMRI encoder with its Stage I adaptors and projection.
Trained: the **bridge** (:class:`llm4brain.models.bridge.LLMBridge`, initialised from the
video branch's projection) and, with domain adaptation on, a cosine classifier head over the
C video classes of the training subjects.

Per step (paper 3.2):

* **source** — B training-subject trials; their fMRI tokens ``z`` (frozen Stage I model)
  pass the bridge and are spliced into the chat prompt of the trial's instruction
  (:func:`llm4brain.models.video_llm.splice_prefix`); the loss is the token cross-entropy of
  the surrogate answer (eq. 3, :func:`llm4brain.models.video_llm.caption_loss`);
* **target** (domain adaptation on) — B_t unlabelled target-subject trials from the
  *adaptation* runs, read only through
  :func:`llm4brain.training.guard.target_adaptation_view`; their pooled bridge output feeds
  DANCE's neighbourhood clustering (eq. 4, memory bank + classifier prototypes) and entropy
  separation (eq. 5); the classifier also gets the source trials' class labels
  (cross-entropy ``cls``). ``L_DA = cls_weight * cls + NC + ES``;
* **total** — eq. 6, ``lam * CE + (1 - lam) * L_DA``; with ``stage2.domain_adaptation``
  off the loss is CE alone and no DA term is built or logged.

Because everything before the bridge is frozen, the fMRI tokens of every trial are computed
once (:func:`build_stage2_data`), which makes a step cost one LLM forward/backward.

Decoding of the evaluation trials and the controls (chance, baselines, ceiling) are
:mod:`llm4brain.evaluation.decoding` and :mod:`llm4brain.evaluation.baselines`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..config import identity, run_key
from ..models.stage1 import embed_fmri
from ..models.stage2 import Stage2Model, build_stage2_model, stage2_seed
from ..models.video_llm import caption_loss
from .da import dance_loss
from .guard import (FORBIDDEN_TARGET_FIELDS, LeakageError, TargetAdaptationView,
                    source_view, target_adaptation_view)
from .loop import fit
from .losses import default_rho, stage2_loss
from .stage1 import stage1_run_name
from .vlpretrain import video_llm_id

__all__ = ["TargetFeatures", "Stage2Data", "build_stage2_data", "source_stage2_data",
           "target_features",
           "stage2_run_name", "make_stage2_sampler", "stage2_loss_fn", "Stage2Result",
           "train_stage2", "caption_pairs"]


class TargetFeatures:
    """Frozen fMRI tokens of target subjects' adaptation trials — and nothing else.

    Built from a :class:`~llm4brain.training.guard.TargetAdaptationView` (opaque order, no
    labels, clips, captions, runs, onsets or evaluation trials). Asking for any of those
    raises :class:`~llm4brain.training.guard.LeakageError`.

    Attributes
    ----------
    z : tensor (n, L, H)
    subjects : array (n,) subject label of each opaque index (the domain)
    """

    __slots__ = ("z", "subjects")

    def __init__(self, z: torch.Tensor, subjects: np.ndarray):
        object.__setattr__(self, "z", z)
        object.__setattr__(self, "subjects", np.asarray(subjects).copy())

    def __len__(self) -> int:
        return int(self.z.shape[0])

    def __getattr__(self, name: str):
        if name.lower() in FORBIDDEN_TARGET_FIELDS:
            raise LeakageError(f"'{name}' of target subjects is not available to Stage II "
                               f"training: only unlabelled adaptation fMRI is (paper 3.2)")
        raise AttributeError(f"TargetFeatures has no attribute '{name}' (z, subjects only)")

    def __setattr__(self, name, value):
        raise AttributeError("TargetFeatures is read-only")

    def __repr__(self) -> str:
        return (f"TargetFeatures({len(self)} unlabelled adaptation trials of subjects "
                f"{sorted(set(self.subjects))})")


@dataclass
class Stage2Data:
    """Everything Stage II training sees.

    Attributes
    ----------
    source_z : tensor (n_s, L, H)
        Frozen fMRI tokens of the training subjects' training trials.
    source_labels : int array (n_s,)
        Class index 0..C-1 among :attr:`class_names` (the training subjects' classes).
    class_names : list of C str
    instructions, answers : lists of n_s str
        Each trial's instruction and surrogate answer (Video2Text of its clip).
    source_meta : DataFrame (subject, stim_file, class_id, row)
    target : TargetFeatures
        Unlabelled adaptation trials of the target subjects.
    prompts : list of n_s str, optional
        Rendered chat prompts (the placeholder in the first user turn) to use instead of the
        single-turn prompt of each instruction: the multi-turn examples of the surrogate
        dialogues (:func:`llm4brain.dialogue.data.dialogue_stage2_data`).
    """

    source_z: torch.Tensor
    source_labels: np.ndarray
    class_names: list
    instructions: list
    answers: list
    source_meta: pd.DataFrame
    target: TargetFeatures
    prompts: list | None = None

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def _caption_lookup(captions: pd.DataFrame, subjects: Sequence[str]) -> dict:
    need = {"subject", "stim_file", "instruction", "answer"}
    if not need <= set(captions.columns):
        raise ValueError(f"the caption table lacks columns {sorted(need - set(captions.columns))}"
                         f"; build it with llm4brain.captions.generate_captions (notebook 04)")
    c = captions[captions["subject"].astype(str).isin([str(s) for s in subjects])]
    return {(str(s), str(f)): (str(i), str(a)) for s, f, i, a in
            zip(c["subject"], c["stim_file"], c["instruction"], c["answer"])}


def _lookup(table: dict, subjects, files, what: str) -> list[tuple[str, str]]:
    out, missing = [], []
    for s, f in zip(subjects, files):
        v = table.get((str(s), str(f)))
        if v is None:
            missing.append((str(s), str(f)))
        out.append(v)
    if missing:
        raise KeyError(f"{len(missing)} {what} trials have no surrogate caption (e.g. "
                       f"{missing[0]}): regenerate the captions for these settings "
                       f"(notebook 04, generate_captions(cfg))")
    return out


def caption_pairs(captions: pd.DataFrame, subjects: Sequence[str], files: Sequence[str],
                  what: str) -> list[tuple[str, str]]:
    """``(instruction, answer)`` of each trial ``(subjects[i], files[i])`` from the caption table.

    Parameters
    ----------
    captions : DataFrame with ``subject``, ``stim_file``, ``instruction``, ``answer``
        (:func:`llm4brain.captions.generate_captions`, notebook 04).
    subjects, files : sequences of n str
    what : str
        Which trials these are, for the error message (``training``, ``target evaluation``).

    Raises
    ------
    ValueError
        The table lacks a column.
    KeyError
        A trial has no surrogate caption.
    """
    subj = [str(s) for s in subjects]
    return _lookup(_caption_lookup(captions, sorted(set(subj))), subj, files, what)


def target_features(stage1_model, view: TargetAdaptationView, batch_size: int = 64,
                    progress: bool = False) -> TargetFeatures:
    """Frozen fMRI tokens of the adaptation trials, read only through the guard's view."""
    if not isinstance(view, TargetAdaptationView):
        raise LeakageError(f"target_features takes a TargetAdaptationView (the only target data "
                           f"training may see), got {type(view).__name__}")
    z = embed_fmri(stage1_model, view.blocks, len(view), batch_size, progress)
    return TargetFeatures(z, view.subjects)


def build_stage2_data(cfg, stage1_model, tc, splits, captions: pd.DataFrame, *,
                      progress: bool = False) -> Stage2Data:
    """Stage II training inputs, through the leakage guard only.

    Source: :func:`~llm4brain.training.guard.source_view` (training subjects' training
    runs) joined with their surrogate captions. Target:
    :func:`~llm4brain.training.guard.target_adaptation_view` (unlabelled adaptation runs).
    Target captions, clips, labels and evaluation trials are never read.
    """
    bs = cfg.stage1.eval_batch_size
    sv = source_view(tc, splits, "train")
    z_s = embed_fmri(stage1_model, sv.blocks, len(sv), bs, progress)
    tview = target_adaptation_view(tc, splits, seed=stage2_seed(cfg))
    return source_stage2_data(sv, captions, z_s, target_features(stage1_model, tview, bs,
                                                                 progress))


def source_stage2_data(sv, captions: pd.DataFrame, source_z: torch.Tensor,
                       target: TargetFeatures) -> Stage2Data:
    """:class:`Stage2Data` of a source view's trials (their class labels, instructions,
    surrogate answers and metadata) with the given fMRI tokens of those trials and of the
    target's adaptation trials."""
    pairs = caption_pairs(captions, sv.subject, sv.stim_file, "training")
    classes = np.unique(np.asarray(sv.class_id, dtype=int))
    labels = np.searchsorted(classes, np.asarray(sv.class_id, dtype=int))
    names = {int(c): str(n) for c, n in zip(sv.class_id, sv.class_name)}
    meta = pd.DataFrame(dict(subject=sv.subject, stim_file=sv.stim_file, class_id=sv.class_id,
                             row=sv.rows))
    return Stage2Data(source_z, labels.astype(np.int64), [names[int(c)] for c in classes],
                      [p[0] for p in pairs], [p[1] for p in pairs], meta, target)


def stage2_run_name(cfg, domain_adaptation: bool | None = None) -> str:
    """``stage2-da-<hash>`` or ``stage2-noda-<hash>``: both runs share everything but DA.

    The identity is Stage II's settings (:func:`llm4brain.config.identity`: without the shuffle
    cap, and without ``seed`` when it defers to ``run.seed``), the Stage I run, the LLM's
    prompt settings (generation settings stay out), the video-LLM and the captions.
    """
    da = cfg.stage2.domain_adaptation if domain_adaptation is None else domain_adaptation
    key = dict(stage2=identity(cfg, "stage2"), stage1=stage1_run_name(cfg),
               llm=identity(cfg, "llm"), vl=video_llm_id(cfg), captions=identity(cfg, "captions"))
    return run_key(f"stage2-{'da' if da else 'noda'}", key)


def make_stage2_sampler(data: Stage2Data, batch_size: int, target_batch_size: int = 0,
                        domain_adaptation: bool = True) -> Callable:
    """``sample_batch(i, rng)`` for the training loop.

    Returns
    -------
    callable ``(i, rng) -> dict`` with ``z``, ``labels``, ``instructions``, ``answers`` and,
    with domain adaptation, ``tz`` and ``tidx`` (target tokens and their opaque indices —
    the only target information in a batch).
    """
    n_s, n_t = len(data.answers), len(data.target)
    if n_s < 1:
        raise ValueError("Stage II needs training trials with surrogate captions")
    labels = torch.as_tensor(data.source_labels, dtype=torch.long)

    def sample_batch(i: int, rng: np.random.Generator) -> dict:
        s = np.sort(rng.choice(n_s, size=min(batch_size, n_s), replace=False))
        batch = {"z": data.source_z[s], "labels": labels[s],
                 "instructions": [data.instructions[k] for k in s],
                 "answers": [data.answers[k] for k in s]}
        if data.prompts is not None:
            batch["prompts"] = [data.prompts[k] for k in s]
        if domain_adaptation:
            t = np.sort(rng.choice(n_t, size=min(target_batch_size, n_t), replace=False))
            batch["tz"] = data.target.z[t]
            batch["tidx"] = torch.as_tensor(t, dtype=torch.long)
        return batch

    return sample_batch


@dataclass
class Stage2Result:
    """What :func:`train_stage2` returns: model (eval mode), log, run_name, trained."""

    model: Stage2Model
    log: pd.DataFrame
    run_name: str
    trained: bool


def stage2_loss_fn(model: Stage2Model, batch: dict):
    """Stage II loss of a batch (eq. 6): ``(loss, terms)``, the training loop's ``loss_fn``.

    ``batch``: ``z`` (B, L, H), ``instructions``, ``answers`` (B str), ``labels`` (B,)
    and, with domain adaptation, ``tz`` (B_t, L, H) target tokens and ``tidx`` (B_t,)
    their memory-bank rows. Terms: ``ce`` (and ``cls``, ``nc``, ``es``, ``da``). The CE term is
    eq. 3 (:func:`llm4brain.models.video_llm.caption_loss`); with domain adaptation the DANCE
    terms use ``rho`` = :func:`~llm4brain.training.losses.default_rho` of the C classes, and
    the memory bank's rows of the batch are updated.
    """
    c = model.cfg
    pb, prefix = model.prompt_batch(batch["z"], batch["instructions"], batch["answers"],
                                    prompts=batch.get("prompts"))
    dev = prefix.device
    reduction = "token" if c.ce_reduction == "mean" else "sequence"
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=model.use_bf16(dev)):
        ce = caption_loss(model.llm, pb, reduction=reduction)
    ce = ce.float()
    terms = {"ce": float(ce.detach())}
    if not model.domain_adaptation:
        return stage2_loss(ce, None, c.lam), terms
    fs = model.bridge.features(prefix)
    cls = F.cross_entropy(model.classifier(fs), batch["labels"].to(dev).long())
    ft = model.bridge.features(model.bridge(batch["tz"].to(dev)))
    tidx = batch["tidx"].to(dev)
    nc_es, t = dance_loss(ft, tidx, model.bank, model.classifier,
                          nc_temperature=c.nc_temperature,
                          rho=default_rho(model.n_classes, c.es_rho_scale), margin=c.es_margin)
    da = c.cls_weight * cls + nc_es
    loss = stage2_loss(ce, da, c.lam)
    model.bank.update(ft.detach(), tidx)       # DANCE: bank rows <- newest features
    terms.update(cls=float(cls.detach()), nc=t["nc"], es=t["es"], da=float(da.detach()))
    return loss, terms


def train_stage2(cfg, data: Stage2Data, llm, video_proj: nn.Linear, *,
                 domain_adaptation: bool | None = None, overwrite: bool = False,
                 progress: bool = True, name: str | None = None,
                 init: Stage2Model | None = None) -> Stage2Result:
    """Train (or load) the Stage II bridge with the shared training loop.

    Parameters
    ----------
    cfg : Config
        ``cfg.stage2`` (steps, batch sizes, lr, lam, DA settings), ``cfg.llm``, ``cfg.train``.
    data : Stage2Data
        From :func:`build_stage2_data`.
    llm : LLMBackend
        Frozen LLM (:func:`llm4brain.models.llm.load_llm`).
    video_proj : nn.Linear
        The pretrained video branch's projection (``vlm.branch.proj``), copied into the bridge.
    domain_adaptation : bool, optional
        Overrides ``stage2.domain_adaptation`` (the ablation); the run name says which.
    overwrite : bool
    name : str, optional
        Checkpoint name (default :func:`stage2_run_name`; tuning runs add their pseudo-target,
        :func:`llm4brain.training.tuning.pseudo_run_name`).
    init : Stage2Model, optional
        Continue from this trained model (its bridge, classifier and memory bank) instead of
        the video branch's projection: the dialogue continuation
        (:func:`llm4brain.dialogue.data.train_dialogue_stage2`).

    Returns
    -------
    Stage2Result
    """
    da = cfg.stage2.domain_adaptation if domain_adaptation is None else bool(domain_adaptation)
    model = build_stage2_model(cfg, video_proj, llm, n_classes=data.n_classes,
                               n_target=len(data.target), domain_adaptation=da)
    if init is not None:
        if bool(init.domain_adaptation) != da:
            raise ValueError(f"init was trained with domain adaptation "
                             f"{'on' if init.domain_adaptation else 'off'}; continue it with the "
                             f"same setting (domain_adaptation={bool(init.domain_adaptation)})")
        model.load_state_dict(init.state_dict())
    elif da:   # memory bank starts from the target features of the initial bridge
        model.bank.fill(model.target_embeddings(data.target.z))
    s = cfg.stage2
    name = stage2_run_name(cfg, da) if name is None else name
    model.train()
    res = fit(model, stage2_loss_fn, make_stage2_sampler(data, s.batch_size, s.target_batch_size, da),
              run_dir=cfg.run_dir, name=name, steps=s.steps, lr=s.lr, loop_cfg=cfg.train,
              seed=stage2_seed(cfg), weight_decay=s.weight_decay, overwrite=overwrite,
              progress=progress, config=cfg, device=cfg.run.device)
    res.model.eval()
    return Stage2Result(res.model, res.log, name, res.trained)
