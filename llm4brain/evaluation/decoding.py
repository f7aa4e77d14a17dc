"""Stage II decoding: fMRI2Text of the target subjects' evaluation trials and its controls.

After training (:mod:`llm4brain.training.stage2`), :func:`decode_eval_set` decodes every
target-subject **evaluation** trial (:func:`~llm4brain.training.guard.target_evaluation_view`,
scoring code only); each row keeps Video2Text (the video-LLM's surrogate answer to the same
instruction) as the reference. The controls decode the same trials: chance (fMRI shuffled
across evaluation trials, :func:`chance_decodes`), the LLM without brain tokens
(:func:`no_brain_decodes`) and a constant answer (:func:`constant_decodes`); the decoders that
never generate are :mod:`llm4brain.evaluation.baselines`. The files are written by
:func:`llm4brain.evaluation.stage2_outputs.write_stage2_outputs`, in the format of
:mod:`llm4brain.evaluation.stage2_results`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..models.stage1 import embed_fmri
from ..models.stage2 import Stage2Model
from ..models.video_llm import generate_from_prefix, splice_prefix
from ..training.guard import target_evaluation_view
from ..training.stage2 import caption_pairs
from .controls import derangements
from .stage2_results import DECODE_COLUMNS

__all__ = ["EvalSet", "build_eval_set", "decode", "unique_inputs", "decode_eval_set", "no_brain_decodes",
           "constant_decodes", "n_chance_decodes", "chance_permutation", "chance_decodes"]


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
    ev = target_evaluation_view(tc, splits)
    pairs = caption_pairs(captions, ev.subject, ev.stim_file, "target evaluation")
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
    ``stage2.bf16`` is true, or ``auto`` on CUDA with bfloat16:
    :meth:`Stage2Model.use_bf16`); batch ``k`` uses seed ``seed + k``.

    With greedy decoding (``llm.do_sample`` false) each distinct (tokens, instruction) pair is
    generated once and its answer given to every row that holds it: the semantic read-out's
    trials share a few prototype inputs, so most of its rows are copies
    (:func:`unique_inputs`; the answers are those of decoding every row,
    ``tests/test_stage2.py``).
    """
    ins = list(instructions)
    if len(z) != len(ins):
        raise ValueError(f"{len(z)} fMRI token rows for {len(ins)} instructions")
    first, inverse = (unique_inputs(z, ins) if not model.llm_cfg.do_sample
                      else (list(range(len(ins))), list(range(len(ins)))))
    zu, iu = z[first], [ins[i] for i in first]
    texts = _generate(model, iu, lambda s, e: model.prompt_batch(zu[s:e], iu[s:e])[0],
                      seed=seed, progress=progress, desc=desc, batch_size=batch_size)
    return [texts[j] for j in inverse]


def unique_inputs(z: torch.Tensor, instructions: Sequence[str]) -> tuple[list[int], list[int]]:
    """Rows with identical tokens and instruction: ``(first, inverse)`` such that row ``i``
    equals row ``first[inverse[i]]`` (exact equality of the token values)."""
    zb = z.detach().to("cpu", torch.float32).contiguous().numpy()
    seen: dict = {}
    first, inverse = [], []
    for i, ins in enumerate(instructions):
        key = (zb[i].tobytes(), ins)
        if key not in seen:
            seen[key] = len(first)
            first.append(i)
        inverse.append(seen[key])
    return first, inverse


def decode_frame(table: pd.DataFrame, texts: Sequence[str]) -> pd.DataFrame:
    """A decoding table (:data:`~llm4brain.evaluation.stage2_results.DECODE_COLUMNS`): the
    evaluation trials of ``table`` with ``texts`` as their fMRI2Text."""
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
    return decode_frame(eval_set.table, texts)


def no_brain_decodes(model: Stage2Model, eval_set: EvalSet, *, seed: int = 0,
                     progress: bool = False) -> pd.DataFrame:
    """Control: the frozen LLM given each trial's prompt with **no** brain tokens (the
    placeholder removed), so what it says comes from the instruction and the LLM alone
    (Tang et al.'s null sequences). Same generation settings as :func:`decode`."""
    ins = eval_set.table["instruction"].tolist()
    uniq = list(dict.fromkeys(ins)) if not model.llm_cfg.do_sample else ins   # greedy: once each

    def empty_batch(s, e):
        return splice_prefix(model.llm, [model.prompt(i) for i in uniq[s:e]],
                             torch.zeros(e - s, 0, model.llm.hidden_size),
                             placeholder=model.llm_cfg.placeholder)

    texts = _generate(model, uniq, empty_batch, seed=seed, progress=progress,
                      desc="no brain tokens")
    if uniq is not ins:
        texts = [texts[uniq.index(i)] for i in ins]
    return decode_frame(eval_set.table, texts)


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
    return decode_frame(eval_set.table, [mode] * len(eval_set))


def n_chance_decodes(cfg) -> int:
    """``eval.n_shuffles`` capped by ``stage2.max_shuffles`` (0 = no cap)."""
    n = int(cfg.eval.n_shuffles)
    cap = int(cfg.stage2.max_shuffles)
    return min(n, cap) if cap > 0 else n


def chance_permutation(eval_set: EvalSet, k: int, *, seed: int = 0) -> np.ndarray:
    """Shuffle ``k`` of the chance decodes: a derangement of the evaluation trials within
    subject (:func:`llm4brain.evaluation.controls.derangements`, rng ``(seed, k)``)."""
    subj = eval_set.table["subject"].astype(str).to_numpy()
    return derangements(len(subj), 1, np.random.default_rng((seed, k)), groups=subj)[0]


def chance_decodes(model: Stage2Model, eval_set: EvalSet, n_shuffles: int, *, seed: int = 0,
                   progress: bool = False) -> list[pd.DataFrame]:
    """Chance level: decode with the fMRI tokens shuffled across the evaluation trials of each
    subject, no trial keeping its own (a derangement within subject,
    :func:`llm4brain.evaluation.controls.derangements`; shuffle ``k`` uses seed ``(seed, k)``).
    Instructions and references stay put."""
    out = []
    for k in range(n_shuffles):
        perm = chance_permutation(eval_set, k, seed=seed)
        out.append(decode_eval_set(model, eval_set, z=eval_set.z[torch.as_tensor(perm)],
                                   seed=seed, progress=progress, desc=f"chance {k}"))
    return out
