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

After training, :func:`decode_eval_set` writes fMRI2Text for every target-subject
**evaluation** trial (:func:`~llm4brain.training.guard.target_evaluation_view`, scoring code
only) beside Video2Text (the video-LLM's surrogate answer to the same instruction), and
:func:`write_stage2_outputs` adds the controls notebook 06 reads: chance decodes (fMRI
shuffled across evaluation trials), a ridge + nearest-neighbour caption baseline and, on the
simulated data, a noise ceiling (the noise-free responses decoded).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .guard import (FORBIDDEN_TARGET_FIELDS, LeakageError, TargetAdaptationView,
                    source_view, target_adaptation_view, target_evaluation_view)

__all__ = ["DECODE_COLUMNS", "TargetFeatures", "Stage2Data", "build_stage2_data",
           "target_features", "Stage2Model", "build_stage2_model", "stage2_run_name",
           "make_stage2_sampler", "Stage2Result", "train_stage2", "EvalSet",
           "build_eval_set", "decode", "decode_eval_set", "chance_decodes", "nn_baseline",
           "ceiling_decodes", "save_decodes", "read_decodes", "stage2_results_dir",
           "write_stage2_outputs", "n_chance_decodes", "stage2_seed", "has_ground_truth", "no_brain_decodes",
           "constant_decodes"]

#: Columns of every decoding TSV (fMRI2Text, chance, baseline, ceiling), in order.
DECODE_COLUMNS = ("subject", "trial_index", "clip_id", "stim_file", "instruction", "fmri2text",
                  "video2text")


# ============================================================================ data
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
    """

    source_z: torch.Tensor
    source_labels: np.ndarray
    class_names: list
    instructions: list
    answers: list
    source_meta: pd.DataFrame
    target: TargetFeatures

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


def target_features(stage1_model, view: TargetAdaptationView, batch_size: int = 64,
                    progress: bool = False) -> TargetFeatures:
    """Frozen fMRI tokens of the adaptation trials, read only through the guard's view."""
    from .stage1 import embed_fmri

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
    from .stage1 import embed_fmri

    z_s = embed_fmri(stage1_model, sv.blocks, len(sv), bs, progress)
    pairs = _lookup(_caption_lookup(captions, splits.train_subjects), sv.subject, sv.stim_file,
                    "training")
    classes = np.unique(np.asarray(sv.class_id, dtype=int))
    labels = np.searchsorted(classes, np.asarray(sv.class_id, dtype=int))
    names = {int(c): str(n) for c, n in zip(sv.class_id, sv.class_name)}
    meta = pd.DataFrame(dict(subject=sv.subject, stim_file=sv.stim_file, class_id=sv.class_id,
                             row=sv.rows))
    tview = target_adaptation_view(tc, splits, seed=stage2_seed(cfg))
    return Stage2Data(z_s, labels.astype(np.int64), [names[int(c)] for c in classes],
                      [p[0] for p in pairs], [p[1] for p in pairs], meta,
                      target_features(stage1_model, tview, bs, progress))


# ============================================================================ model
class Stage2Model(nn.Module):
    """Bridge (+ DANCE head and memory bank) in front of a frozen LLM.

    Parameters
    ----------
    bridge : LLMBridge
    llm : LLMBackend
        Frozen; kept as a plain attribute (not in ``state_dict``/``parameters``).
    llm_cfg : LLMConfig
        Prompt format and generation settings.
    stage2_cfg : Stage2Config
    n_classes : int, optional
        C; required with domain adaptation.
    n_target : int, optional
        Rows of the memory bank (adaptation trials); required with domain adaptation.
    seed : int
    """

    def __init__(self, bridge: nn.Module, llm, llm_cfg, stage2_cfg, *,
                 n_classes: int | None = None, n_target: int | None = None,
                 domain_adaptation: bool | None = None, seed: int = 0):
        super().__init__()
        from .da import CosineClassifier, MemoryBank
        from .losses import default_rho

        self.bridge = bridge
        self.llm = llm
        self.llm_cfg = llm_cfg
        self.cfg = stage2_cfg
        self.domain_adaptation = bool(stage2_cfg.domain_adaptation if domain_adaptation is None
                                      else domain_adaptation)
        self._prompts: dict[str, str] = {}
        if self.domain_adaptation:
            if not n_classes or n_classes < 2 or not n_target or n_target < 2:
                raise ValueError(f"domain adaptation needs >= 2 classes and >= 2 target "
                                 f"adaptation trials (got {n_classes}, {n_target}); set "
                                 f"stage2.domain_adaptation: false otherwise")
            dim = int(bridge.proj.out_features)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + 31)
                self.classifier = CosineClassifier(dim, n_classes,
                                                   stage2_cfg.classifier_temperature)
            self.bank = MemoryBank(n_target, dim, stage2_cfg.memory_momentum, seed)
            self.rho = default_rho(n_classes, stage2_cfg.es_rho_scale)
        else:
            self.classifier = None
            self.bank = None
            self.rho = float("nan")

    def use_bf16(self, device) -> bool:
        """``stage2.bf16`` (bool or ``"auto"``) decided for ``device``: the ``auto`` decision
        is made once per process and device type
        (:func:`llm4brain.models.precision.resolve_bf16`), not every step."""
        from ..models.precision import resolve_bf16

        return resolve_bf16(self.cfg.bf16, device, name="stage2.bf16")

    # --------------------------------------------------------------- prompts and prefixes
    def prompt(self, instruction: str) -> str:
        """Chat prompt of ``instruction`` with the placeholder (cached)."""
        from ..models.video_llm import format_prompt

        if instruction not in self._prompts:
            c = self.llm_cfg
            self._prompts[instruction] = format_prompt(
                self.llm.tokenizer, instruction, placeholder=c.placeholder,
                system_prompt=c.system_prompt, template=c.prompt_template)
        return self._prompts[instruction]

    def prompt_batch(self, z: torch.Tensor, instructions: Sequence[str],
                     answers: Sequence[str] | None = None):
        """:class:`~llm4brain.models.video_llm.PromptBatch` of fMRI tokens z (B, L, H)."""
        from ..models.video_llm import splice_prefix

        dev = next(self.bridge.parameters()).device
        prefix = self.bridge(z.to(dev))
        return splice_prefix(self.llm, [self.prompt(i) for i in instructions], prefix,
                             placeholder=self.llm_cfg.placeholder, answers=answers,
                             max_answer_tokens=self.llm_cfg.max_answer_tokens), prefix

    @torch.no_grad()
    def target_embeddings(self, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Pooled bridge features (n, D) of fMRI tokens (n, L, H) (DA feature space)."""
        dev = next(self.bridge.parameters()).device
        out = [self.bridge.features(self.bridge(z[s:s + batch_size].to(dev))).float().cpu()
               for s in range(0, len(z), batch_size)]
        return torch.cat(out) if out else torch.empty(0)

    # --------------------------------------------------------------- loss (eq. 6)
    def forward(self, batch: dict):
        """Stage II loss of a batch: ``(loss, terms)``.

        ``batch``: ``z`` (B, L, H), ``instructions``, ``answers`` (B str), ``labels`` (B,)
        and, with domain adaptation, ``tz`` (B_t, L, H) target tokens and ``tidx`` (B_t,)
        their memory-bank rows. Terms: ``ce`` (and ``cls``, ``nc``, ``es``, ``da``).
        """
        from ..models.video_llm import caption_loss
        from .da import dance_loss
        from .losses import stage2_loss

        c = self.cfg
        pb, prefix = self.prompt_batch(batch["z"], batch["instructions"], batch["answers"])
        dev = prefix.device
        reduction = "token" if c.ce_reduction == "mean" else "sequence"
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.use_bf16(dev)):
            ce = caption_loss(self.llm, pb, reduction=reduction)
        ce = ce.float()
        terms = {"ce": float(ce.detach())}
        if not self.domain_adaptation:
            return stage2_loss(ce, None, c.lam), terms
        fs = self.bridge.features(prefix)
        cls = F.cross_entropy(self.classifier(fs), batch["labels"].to(dev).long())
        ft = self.bridge.features(self.bridge(batch["tz"].to(dev)))
        tidx = batch["tidx"].to(dev)
        nc_es, t = dance_loss(ft, tidx, self.bank, self.classifier,
                              nc_temperature=c.nc_temperature, rho=self.rho,
                              margin=c.es_margin)
        da = c.cls_weight * cls + nc_es
        loss = stage2_loss(ce, da, c.lam)
        self.bank.update(ft.detach(), tidx)       # DANCE: bank rows <- newest features
        terms.update(cls=float(cls.detach()), nc=t["nc"], es=t["es"], da=float(da.detach()))
        return loss, terms


def build_stage2_model(cfg, video_proj: nn.Linear, llm, *, n_classes: int | None = None,
                       n_target: int | None = None,
                       domain_adaptation: bool | None = None) -> Stage2Model:
    """Bridge initialised from ``video_proj`` (``VideoBranch.proj``) + optional DA head."""
    from ..models.bridge import build_bridge

    bridge = build_bridge(cfg, video_proj)
    return Stage2Model(bridge, llm, cfg.llm, cfg.stage2, n_classes=n_classes,
                       n_target=n_target, domain_adaptation=domain_adaptation,
                       seed=stage2_seed(cfg))


def stage2_seed(cfg) -> int:
    """Stage II's seed: ``stage2.seed``, or ``run.seed`` when it is -1."""
    return int(cfg.run.seed if cfg.stage2.seed < 0 else cfg.stage2.seed)


def stage2_run_name(cfg, domain_adaptation: bool | None = None) -> str:
    """``stage2-da-<hash>`` or ``stage2-noda-<hash>``: both runs share everything but DA."""
    from ..config import config_hash, to_dict
    from .stage1 import stage1_run_name
    from .vlpretrain import video_llm_id

    da = cfg.stage2.domain_adaptation if domain_adaptation is None else domain_adaptation
    s2 = to_dict(cfg.stage2)
    for k in ("domain_adaptation", "max_shuffles"):
        s2.pop(k, None)
    if s2.get("seed", -1) < 0:      # run.seed, already in the Stage I name
        s2.pop("seed", None)
    llm = {k: getattr(cfg.llm, k) for k in ("backend", "path", "dtype", "placeholder",
                                            "system_prompt", "prompt_template",
                                            "max_answer_tokens")}
    key = dict(stage2=s2, stage1=stage1_run_name(cfg), llm=llm, vl=video_llm_id(cfg),
               captions=to_dict(cfg.captions))
    return f"stage2-{'da' if da else 'noda'}-{config_hash(key)}"


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


def _loss_fn(model, batch):
    return model(batch)


def train_stage2(cfg, data: Stage2Data, llm, video_proj: nn.Linear, *,
                 domain_adaptation: bool | None = None, overwrite: bool = False,
                 progress: bool = True, name: str | None = None) -> Stage2Result:
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

    Returns
    -------
    Stage2Result
    """
    from .loop import fit

    da = cfg.stage2.domain_adaptation if domain_adaptation is None else bool(domain_adaptation)
    model = build_stage2_model(cfg, video_proj, llm, n_classes=data.n_classes,
                               n_target=len(data.target), domain_adaptation=da)
    if da:   # memory bank starts from the target features of the initial bridge
        model.bank.fill(model.target_embeddings(data.target.z))
    s = cfg.stage2
    name = stage2_run_name(cfg, da) if name is None else name
    model.train()
    res = fit(model, _loss_fn, make_stage2_sampler(data, s.batch_size, s.target_batch_size, da),
              run_dir=cfg.run_dir, name=name, steps=s.steps, lr=s.lr, loop_cfg=cfg.train,
              seed=stage2_seed(cfg), weight_decay=s.weight_decay, overwrite=overwrite,
              progress=progress, config=cfg, device=cfg.run.device)
    res.model.eval()
    return Stage2Result(res.model, res.log, name, res.trained)


# ============================================================================ decoding
@dataclass
class EvalSet:
    """Target subjects' evaluation trials, for decoding and scoring only (never training).

    table : DataFrame with ``subject``, ``trial_index`` (trial-cache row), ``clip_id``,
        ``stim_file``, ``instruction``, ``video2text``, ``class_name``
    z : tensor (n, L, H) frozen fMRI tokens
    """

    table: pd.DataFrame
    z: torch.Tensor

    def __len__(self) -> int:
        return len(self.table)


def build_eval_set(cfg, stage1_model, tc, splits, captions: pd.DataFrame, *,
                   progress: bool = False) -> EvalSet:
    """fMRI tokens, instruction and Video2Text of every target evaluation trial.

    Reads :func:`~llm4brain.training.guard.target_evaluation_view` (scoring code only); the
    instruction and Video2Text are the surrogate-caption record of (subject, clip).
    """
    from .stage1 import embed_fmri

    ev = target_evaluation_view(tc, splits)
    pairs = _lookup(_caption_lookup(captions, splits.target_subjects), ev.subject,
                    ev.stim_file, "target evaluation")
    table = pd.DataFrame(dict(subject=ev.subject, trial_index=ev.rows, clip_id=ev.clip_id,
                              stim_file=ev.stim_file, instruction=[p[0] for p in pairs],
                              video2text=[p[1] for p in pairs], class_name=ev.class_name))
    z = embed_fmri(stage1_model, ev.blocks, len(ev), cfg.stage1.eval_batch_size, progress)
    return EvalSet(table, z)


@torch.no_grad()
def _generate(model: Stage2Model, instructions: Sequence[str], prompt_batch, *, seed: int,
              progress: bool, desc: str, batch_size: int | None = None) -> list[str]:
    """Batched generation shared by the decoders: ``prompt_batch(s, e)`` builds the
    :class:`PromptBatch` of rows ``s:e``; batch ``k`` uses seed ``seed + k``."""
    from ..models.video_llm import generate_from_prefix

    c = model.llm_cfg
    bs = batch_size or c.batch_size
    n = len(instructions)
    was = model.training
    model.eval()
    out: list[str] = []
    try:
        for k, s in enumerate(tqdm(range(0, n, bs), desc=desc, disable=not progress,
                                   total=(n + bs - 1) // bs, unit="batch")):
            pb = prompt_batch(s, min(n, s + bs))
            dev = pb.inputs_embeds.device
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=model.use_bf16(dev)):
                out += generate_from_prefix(model.llm, pb, max_new_tokens=c.max_new_tokens,
                                            do_sample=c.do_sample, temperature=c.temperature,
                                            top_p=c.top_p, seed=seed + k)
    finally:
        model.train(was)
    return [t.replace("\t", " ").replace("\n", " ") for t in out]


def decode(model: Stage2Model, z: torch.Tensor, instructions: Sequence[str], *,
           batch_size: int | None = None, seed: int = 0, progress: bool = False,
           desc: str = "fMRI2Text") -> list[str]:
    """fMRI2Text: the frozen LLM's answers given fMRI tokens z (n, L, H) and instructions.

    Batched (``batch_size``, default ``llm.batch_size``), left-padded generation with the KV cache (settings
    ``cfg.llm``: max_new_tokens, do_sample, temperature, top_p; bfloat16 autocast when
    ``stage2.bf16`` is true, or ``auto`` on a device with native bfloat16:
    :meth:`Stage2Model.use_bf16`); batch ``k`` uses seed ``seed + k``.
    """
    ins = list(instructions)
    if len(z) != len(ins):
        raise ValueError(f"{len(z)} fMRI token rows for {len(ins)} instructions")
    return _generate(model, ins, lambda s, e: model.prompt_batch(z[s:e], ins[s:e])[0],
                     seed=seed, progress=progress, desc=desc, batch_size=batch_size)


def _frame(table: pd.DataFrame, texts: Sequence[str]) -> pd.DataFrame:
    df = table.copy()
    df["fmri2text"] = list(texts)
    return df[list(DECODE_COLUMNS)]


def decode_eval_set(model: Stage2Model, eval_set: EvalSet, *, z: torch.Tensor | None = None,
                    seed: int = 0, progress: bool = False, desc: str = "fMRI2Text") -> pd.DataFrame:
    """Decode every evaluation trial; DataFrame with :data:`DECODE_COLUMNS`.

    ``z`` replaces the trials' own fMRI tokens (shuffled for chance, noise-free for the
    ceiling); instructions and Video2Text stay those of the trials.
    """
    zz = eval_set.z if z is None else z
    texts = decode(model, zz, eval_set.table["instruction"].tolist(), seed=seed,
                   progress=progress, desc=desc)
    return _frame(eval_set.table, texts)


def no_brain_decodes(model: Stage2Model, eval_set: EvalSet, *, seed: int = 0,
                     progress: bool = False) -> pd.DataFrame:
    """Control: the frozen LLM given each trial's prompt with **no** brain tokens (the
    placeholder removed), so what it says comes from the instruction and the LLM alone
    (Tang et al.'s null sequences). Same generation settings as :func:`decode`."""
    from ..models.video_llm import splice_prefix

    ins = eval_set.table["instruction"].tolist()

    def empty_batch(s, e):
        return splice_prefix(model.llm, [model.prompt(i) for i in ins[s:e]],
                             torch.zeros(e - s, 0, model.llm.hidden_size),
                             placeholder=model.llm_cfg.placeholder)

    return _frame(eval_set.table, _generate(model, ins, empty_batch, seed=seed,
                                            progress=progress, desc="no brain tokens"))


def constant_decodes(eval_set: EvalSet, captions: pd.DataFrame,
                     train_subjects: Sequence[str]) -> pd.DataFrame:
    """Control: the most frequent surrogate answer of the *training* subjects' clips, given
    for every evaluation trial (what a decoder that ignores the brain and guesses the mode
    scores). Ties go to the answer first in the caption table."""
    tr = captions[captions["subject"].astype(str).isin([str(s) for s in train_subjects])]
    if tr.empty:
        raise ValueError("no surrogate answers of training subjects: run notebook 04 first")
    counts = tr["answer"].astype(str).value_counts(sort=False)
    mode = counts.index[int(np.argmax(counts.to_numpy()))]
    return _frame(eval_set.table, [mode] * len(eval_set))


def n_chance_decodes(cfg) -> int:
    """``eval.n_shuffles`` capped by ``stage2.max_shuffles`` (0 = no cap)."""
    n = int(cfg.eval.n_shuffles)
    cap = int(cfg.stage2.max_shuffles)
    return min(n, cap) if cap > 0 else n


def chance_decodes(model: Stage2Model, eval_set: EvalSet, n_shuffles: int, *, seed: int = 0,
                   progress: bool = False) -> list[pd.DataFrame]:
    """Chance level: decode with the fMRI tokens shuffled across the evaluation trials of each
    subject, no trial keeping its own (a derangement within subject,
    :func:`llm4brain.evaluation.controls.derangements`; shuffle ``k`` uses seed ``(seed, k)``).
    Instructions and references stay put."""
    from llm4brain.evaluation.controls import derangements

    subj = eval_set.table["subject"].astype(str).to_numpy()
    out = []
    for k in range(n_shuffles):
        perm = derangements(len(subj), 1, np.random.default_rng((seed, k)), groups=subj)[0]
        out.append(decode_eval_set(model, eval_set, z=eval_set.z[torch.as_tensor(perm)],
                                   seed=seed, progress=progress, desc=f"chance {k}"))
    return out


def nn_baseline(cfg, eval_set: EvalSet, captions: pd.DataFrame, *,
                same_instruction: bool = True) -> pd.DataFrame:
    """Ridge + nearest-neighbour caption retrieval (a decoder that never generates).

    The ridge of notebook 03 (mask voxels -> pooled video embedding, fitted on training
    trials) predicts each evaluation trial's video embedding; the most similar (cosine)
    **training** clip's surrogate answer is returned as the decoded text. With
    ``same_instruction`` only training clips captioned under the trial's instruction compete
    (all of them when none was).
    """
    from .stage1 import load_stage1_results

    arrays, meta = load_stage1_results(cfg)
    pos = {int(r): i for i, r in enumerate(arrays["eval_rows"])}
    try:
        P = arrays["eval_ridge"][[pos[int(r)] for r in eval_set.table["trial_index"]]]
    except KeyError as exc:
        raise KeyError(f"evaluation trial {exc.args[0]} has no ridge prediction in the Stage I "
                       f"results: re-run notebook 03 for these splits") from None
    return _frame(eval_set.table, _nearest_training_answers(P, arrays, meta, eval_set,
                                                            captions, same_instruction))


def _nearest_training_answers(P: np.ndarray, arrays: dict, meta: pd.DataFrame,
                              eval_set: EvalSet, captions: pd.DataFrame,
                              same_instruction: bool) -> list[str]:
    """For each predicted video embedding (row of ``P``, one per evaluation trial), the
    surrogate answer of the most similar (cosine) training clip of the Stage I results."""
    tr = meta[meta["split"] == "train"].reset_index(drop=True)
    lookup = _caption_lookup(captions, sorted(tr["subject"].astype(str).unique()))
    pairs = _lookup(lookup, tr["subject"], tr["stim_file"], "training")
    tr_ins = np.array([p[0] for p in pairs])
    tr_ans = [p[1] for p in pairs]
    X = arrays["train_x"]
    S = (P / np.linalg.norm(P, axis=1, keepdims=True).clip(1e-12)) @ \
        (X / np.linalg.norm(X, axis=1, keepdims=True).clip(1e-12)).T
    texts = []
    for i, ins in enumerate(eval_set.table["instruction"]):
        s = S[i].copy()
        if same_instruction and (tr_ins == ins).any():
            s[tr_ins != ins] = -np.inf
        texts.append(tr_ans[int(np.argmax(s))])
    return texts


def has_ground_truth(cfg) -> bool:
    """Whether the dataset is simulated (ground truth under ``derivatives/simulation``)."""
    d = Path(cfg.data_root) / "derivatives" / "simulation"
    return d.is_dir() and any(d.glob("sub-*_groundtruth.npz"))


def ceiling_decodes(cfg, tc, eval_set: EvalSet, captions: pd.DataFrame, *,
                    same_instruction: bool = True) -> pd.DataFrame | None:
    """Noise ceiling: the ridge + nearest-neighbour decoder of :func:`nn_baseline` fitted and
    applied on the simulator's **noise-free** responses (``None`` on real data).

    The training trials' noise-free blocks (:func:`llm4brain.data.noise_free_trial_blocks`,
    in the units of the z-scored data, averaged over the block's volumes) are regressed on
    their pooled Stage I video embeddings (ridge, alpha by cross-validation from
    ``stage1.ridge_alphas``); the evaluation trials' noise-free responses predict an
    embedding and the nearest training clip's surrogate answer is the decoded text. What is
    left between this oracle and Video2Text is what cross-subject differences in tuning (and
    the decoder family) cost even without measurement noise. (Feeding the noise-free blocks
    to the trained network instead is no ceiling: they are ~15x smaller than the noisy
    inputs it was trained on, and it decodes them worse than chance.)
    """
    from ..data import noise_free_trial_blocks
    from ..evaluation.ridge import RidgeCV
    from .stage1 import load_stage1_results, voxel_features

    if not has_ground_truth(cfg):
        return None
    arrays, meta = load_stage1_results(cfg)

    def feats(rows: np.ndarray) -> np.ndarray:
        # one call: each run's BOLD and ground truth are read once for all its trials
        blocks = noise_free_trial_blocks(cfg, tc, rows)
        return voxel_features(lambda pos: blocks[pos], len(rows), tc.mask)

    tr_rows = np.asarray(arrays["train_rows"], int)
    ridge = RidgeCV(alphas=cfg.stage1.ridge_alphas, cv=cfg.stage1.ridge_cv).fit(
        feats(tr_rows), arrays["train_x"])
    P = ridge.predict(feats(eval_set.table["trial_index"].to_numpy().astype(int)))
    return _frame(eval_set.table, _nearest_training_answers(np.asarray(P), arrays, meta,
                                                            eval_set, captions,
                                                            same_instruction))


def stage2_results_dir(cfg) -> Path:
    """``<run_dir>/results/stage2``."""
    return Path(cfg.run_dir) / "results" / "stage2"


def save_decodes(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a decoding table (:data:`DECODE_COLUMNS`) as TSV, atomically."""
    missing = [c for c in DECODE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"decoding table lacks columns {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    df[list(DECODE_COLUMNS)].to_csv(tmp, sep="\t", index=False)
    os.replace(tmp, path)
    return path


def read_decodes(path: str | os.PathLike) -> pd.DataFrame:
    """Read a decoding TSV (strings kept as written, ``trial_index`` as int)."""
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    df["trial_index"] = df["trial_index"].astype(int)
    return df


def write_stage2_outputs(cfg, models: dict, eval_set: EvalSet, captions: pd.DataFrame, *,
                         tc=None, main: str | None = None, train_subjects: Sequence[str] = (),
                         progress: bool = True) -> dict:
    """Decode the evaluation trials with every model and write the controls of notebook 06.

    Parameters
    ----------
    cfg : Config
    models : dict name -> Stage2Model
        E.g. ``{"da": ..., "noda": ...}``; each writes ``fmri2text_<name>.tsv``.
    eval_set : EvalSet
    captions : DataFrame (surrogate answers; training clips' ones for the baseline)
    tc : TrialCache, needed for the noise ceiling (simulated data; :func:`ceiling_decodes`)
    main : str, optional
        Model used for the chance decodes and the ceiling (default ``da`` when
        ``stage2.domain_adaptation`` else ``noda``).
    train_subjects : list of str
        The training subjects (``splits.train_subjects``), for the constant-answer control
        (skipped when empty).

    Returns
    -------
    dict
        The manifest (also ``results/stage2/manifest.json``): file names per role.
    """
    from ..config import save_config

    d = stage2_results_dir(cfg)
    d.mkdir(parents=True, exist_ok=True)
    main = main or ("da" if cfg.stage2.domain_adaptation else "noda")
    if main not in models:
        raise KeyError(f"main model {main!r} not in {sorted(models)}")
    seed = stage2_seed(cfg)
    manifest: dict = dict(columns=list(DECODE_COLUMNS), n_trials=len(eval_set), main=main,
                          fmri2text={}, chance=[], baseline="baseline_nn.tsv", ceiling=None,
                          ceiling_note="", run_names={})
    for name, model in models.items():
        f = f"fmri2text_{name}.tsv"
        save_decodes(decode_eval_set(model, eval_set, seed=seed, progress=progress,
                                     desc=f"fMRI2Text {name}"), d / f)
        manifest["fmri2text"][name] = f
        manifest["run_names"][name] = stage2_run_name(cfg, model.domain_adaptation)
    n_sh = n_chance_decodes(cfg)
    for k, df in enumerate(chance_decodes(models[main], eval_set, n_sh, seed=seed,
                                          progress=progress)):
        f = f"chance_shuffle_{k}.tsv"
        save_decodes(df, d / f)
        manifest["chance"].append(f)
    manifest["n_shuffles"] = n_sh
    manifest["n_shuffles_requested"] = int(cfg.eval.n_shuffles)
    save_decodes(nn_baseline(cfg, eval_set, captions), d / "baseline_nn.tsv")
    save_decodes(no_brain_decodes(models[main], eval_set, seed=seed, progress=progress),
                 d / "no_brain.tsv")
    manifest["no_brain"] = "no_brain.tsv"
    if train_subjects:
        save_decodes(constant_decodes(eval_set, captions, train_subjects), d / "constant.tsv")
        manifest["constant"] = "constant.tsv"
    if tc is not None and has_ground_truth(cfg):
        save_decodes(ceiling_decodes(cfg, tc, eval_set, captions), d / "ceiling.tsv")
        manifest["ceiling"] = "ceiling.tsv"
    else:
        manifest["ceiling_note"] = ("no noise ceiling: the dataset has no simulator ground truth "
                                    "(real data)" if not has_ground_truth(cfg) else
                                    "no noise ceiling: tc (the trial cache) not given")
    (d / "manifest.json").write_text(json.dumps(manifest, indent=1))
    save_config(cfg, d)
    return manifest
