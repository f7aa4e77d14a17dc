"""Dialogue and reasoning training data: multi-turn surrogate dialogues (NVL's three tasks).

Stage II teaches the bridge one answer per trial, to one instruction. NVL trains on three
task types — brief caption, detailed description, complex reasoning — and on multi-round
dialogue. Here the video-LLM provides them as it provides Stage II's captions (paper 3.2):
for every clip a **training** subject saw, it answers one instruction of each task of
``dialogue.turns`` in turn, from the clip's video tokens, every earlier question and answer
kept in the chat history (:func:`generate_dialogues`, cached as a TSV). Each turn of each
training trial's dialogue is then one Stage II example — the fMRI tokens in the first user
turn, the history before the question, the surrogate answer as target
(:func:`dialogue_stage2_data`) — and :func:`train_dialogue_stage2` continues the trained
Stage II bridge on them with Stage II's own loss (eq. 6, DANCE included when the run has it).

Target subjects take no part: :func:`generate_dialogues` refuses a clip no training subject
saw (:class:`~llm4brain.training.guard.LeakageError`), and the Stage II examples come from
:func:`~llm4brain.training.stage2.build_stage2_data`, which reads the training subjects'
training runs through the leakage guard.
"""
from __future__ import annotations

from ..training.vlpretrain import load_video_llm
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..atomic import write_csv, write_json
from ..captions import clip_records
from ..config import config_hash, identity, run_key, to_dict
from ..data import load_stimuli
from ..models.video_llm import generate_from_prefix, splice_prefix
from ..training.guard import LeakageError, source_view
from ..training.stage2 import Stage2Data, stage2_run_name, train_stage2
from ..training.tuning import with_overrides
from ..training.vlpretrain import video_features, video_llm_id
from .conversation import render_chat

__all__ = ["DIALOGUE_COLUMNS", "dialogue_clips", "draw_dialogue_instructions", "dialogue_messages",
           "dialogue_prompt", "dialogue_key", "dialogue_path", "generate_dialogues",
           "load_dialogues", "dialogue_stage2_data", "dialogue_run_name",
           "train_dialogue_stage2"]

DIALOGUE_COLUMNS = ("stim_file", "turn", "task", "instruction", "answer")


def dialogue_clips(cfg, tc, splits) -> list[str]:
    """The clips of the training subjects' training trials that get a dialogue: all of them,
    or ``dialogue.max_clips`` drawn with ``dialogue.seed`` (sorted)."""
    files = sorted(set(map(str, source_view(tc, splits, "train").stim_file)))
    n = int(cfg.dialogue.max_clips)
    if n and n < len(files):
        pick = np.random.default_rng(cfg.dialogue.seed).choice(len(files), size=n, replace=False)
        files = sorted(files[int(i)] for i in pick)
    return files


def draw_dialogue_instructions(files: Sequence[str], dialogue_cfg) -> pd.DataFrame:
    """One instruction per clip and turn: turn ``k`` draws from the set of task
    ``dialogue.turns[k]`` with ``dialogue.seed`` (the same files give the same draws).

    Returns
    -------
    DataFrame ``stim_file, turn, task, instruction`` (clips in the given order, turns 0..)
    """
    rng = np.random.default_rng(dialogue_cfg.seed)
    files = [str(f) for f in files]
    picks = [(task, dialogue_cfg.instructions(task),
              rng.integers(len(dialogue_cfg.instructions(task)), size=len(files)))
             for task in dialogue_cfg.turns]
    rows = [(f, k, task, options[int(pick[i])]) for i, f in enumerate(files)
            for k, (task, options, pick) in enumerate(picks)]
    return pd.DataFrame(rows, columns=["stim_file", "turn", "task", "instruction"])


def dialogue_messages(questions: Sequence[str], answers: Sequence[str], *,
                      placeholder: str = "<video>") -> list[dict]:
    """Chat messages of a dialogue so far: question ``k`` with answer ``k`` for every answer
    given, then the next question; the placeholder opens the first user turn (as in
    :class:`~llm4brain.dialogue.Conversation` and Stage II's single-turn prompt)."""
    if len(answers) not in (len(questions), len(questions) - 1):
        raise ValueError(f"{len(questions)} questions and {len(answers)} answers: a dialogue "
                         f"has one answer per question, the last one possibly pending")
    out = []
    for k, q in enumerate(questions):
        out.append({"role": "user", "content": f"{placeholder}\n{q}" if k == 0 else str(q)})
        if k < len(answers):
            out.append({"role": "assistant", "content": str(answers[k])})
    return out


def dialogue_prompt(tokenizer, llm_cfg, questions: Sequence[str],
                    answers: Sequence[str]) -> str:
    """The generation prompt of the last question after the earlier turns.

    With one question it equals Stage II's single-turn prompt
    (:func:`llm4brain.models.video_llm.format_prompt`).

    Raises
    ------
    ValueError
        ``llm.prompt_template`` is set (a single-turn format string cannot hold a history)
        or the tokenizer has no chat template.
    """
    if len(answers) != len(questions) - 1:
        raise ValueError("dialogue_prompt takes the questions so far and the answers to all "
                         "but the last")
    if llm_cfg.prompt_template:
        raise ValueError(f"surrogate dialogues need the LLM's chat template; llm.prompt_template "
                         f"= {llm_cfg.prompt_template!r} is a single-turn format. Clear it with an "
                         f"LLM whose tokenizer has a chat template, or keep dialogue.steps: 0")
    text = render_chat(tokenizer, dialogue_messages(questions, answers,
                                                    placeholder=llm_cfg.placeholder),
                       system_prompt=llm_cfg.system_prompt)
    if text.count(llm_cfg.placeholder) != 1:
        raise ValueError(f"the dialogue prompt holds the placeholder {llm_cfg.placeholder!r} "
                         f"{text.count(llm_cfg.placeholder)} times; it must appear once (an "
                         f"answer or question containing it? llm.placeholder)")
    return text


def dialogue_key(cfg, files: Sequence[str]) -> str:
    """Hash of everything that makes the dialogue table: video-LLM, prompt settings, the
    instruction sets, turns, seed and answer length (not ``dialogue.steps``), the clips."""
    d = to_dict(cfg.dialogue)
    d.pop("steps", None)
    prompt = {k: getattr(cfg.llm, k) for k in ("placeholder", "system_prompt", "prompt_template")}
    return config_hash(dict(model=video_llm_id(cfg), prompt=prompt, dialogue=d,
                            files=[str(f) for f in files]))


def dialogue_path(cfg, key: str) -> Path:
    """``<run_dir>/dialogues/dialogues_<key>.tsv``."""
    return Path(cfg.run_dir) / "dialogues" / f"dialogues_{key}.tsv"


def _read(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    df["turn"] = df["turn"].astype(int)
    return df


def _training_clips(cfg, splits, stim) -> set:
    rec = clip_records(cfg, stim, subjects=list(splits.train_subjects))
    return set(map(str, rec["stim_file"]))


def generate_dialogues(cfg, files: Sequence[str], splits, *, vlm=None, features=None,
                       stim: pd.DataFrame | None = None, rebuild: bool = False,
                       progress: bool = True) -> pd.DataFrame:
    """Multi-turn surrogate dialogues of training subjects' clips; cached.

    Parameters
    ----------
    cfg : Config (``dialogue``, ``llm``)
    files : sequence of str
        Stimulus files (``stim_file``) to build dialogues for, e.g. the clips of the training
        subjects' training trials (``source_view(tc, splits).stim_file``).
    splits : Splits
        Which subjects train: a clip no training subject saw is refused.
    vlm : VideoLLM, optional (loaded when the cache is missing)
    features : FrameFeatureCache, optional
    stim : DataFrame, optional (stimulus table)
    rebuild : bool
        Generate again even when the cached table exists.

    Returns
    -------
    DataFrame :data:`DIALOGUE_COLUMNS`, one row per clip and turn, also written to
    :func:`dialogue_path` (with the settings in a ``.json`` beside it).

    Raises
    ------
    LeakageError
        A file is not among the training subjects' clips.
    """


    files = list(dict.fromkeys(map(str, files)))
    if not files:
        raise ValueError("generate_dialogues: no clips given")
    if stim is None:
        stim = load_stimuli(cfg)
    outside = [f for f in files if f not in _training_clips(cfg, splits, stim)]
    if outside:
        raise LeakageError(f"{len(outside)} of the clips given (e.g. {outside[0]!r}) were not "
                           f"shown to a training subject ({', '.join(splits.train_subjects)}); "
                           f"dialogue training data comes from training subjects' clips only")
    key = dialogue_key(cfg, files)
    path = dialogue_path(cfg, key)
    if path.is_file() and not rebuild:
        return _read(path)
    vlm = load_video_llm(cfg) if vlm is None else vlm
    features = video_features(cfg, stim, progress) if features is None else features
    plan = draw_dialogue_instructions(files, cfg.dialogue)
    q = plan.pivot(index="stim_file", columns="turn", values="instruction").loc[files]
    n_turns = len(cfg.dialogue.turns)
    answers = {f: [] for f in files}
    c, tok = cfg.llm, vlm.llm.tokenizer
    bs = c.batch_size
    was = vlm.branch.training
    vlm.branch.eval()
    bar = tqdm(total=n_turns * len(files), desc="surrogate dialogues", unit="answer",
               disable=not progress)
    try:
        for s in range(0, len(files), bs):
            chunk = files[s:s + bs]
            with torch.no_grad():
                video = vlm.encode_video(torch.as_tensor(
                    np.asarray(features.get(chunk), dtype=np.float32)))
            for k in range(n_turns):
                prompts = [dialogue_prompt(tok, c, list(q.loc[f, :k]), answers[f]) for f in chunk]
                batch = splice_prefix(vlm.llm, prompts, video, placeholder=c.placeholder)
                out = generate_from_prefix(vlm.llm, batch,
                                           max_new_tokens=cfg.dialogue.max_new_tokens,
                                           seed=cfg.dialogue.seed + s + k)
                for f, a in zip(chunk, out):
                    a = " ".join(a.replace("\t", " ").split()).replace(c.placeholder, "")
                    answers[f].append(a)
                bar.update(len(chunk))
    finally:
        bar.close()
        vlm.branch.train(was)
    plan["answer"] = [answers[f][k] for f, k in zip(plan["stim_file"], plan["turn"])]
    out = plan[list(DIALOGUE_COLUMNS)]
    # the settings first, then the table: the table's presence marks the cache complete
    write_json(path.with_suffix(".json"), dict(key=key, dialogue=to_dict(cfg.dialogue),
                                               llm=to_dict(cfg.llm), n_clips=len(files),
                                               n_rows=len(out)), indent=1)
    write_csv(out, path, sep="\t", index=False)
    return _read(path)


def load_dialogues(cfg, files: Sequence[str]) -> pd.DataFrame:
    """The dialogue table of these settings and clips.

    Raises
    ------
    FileNotFoundError
        When it was not generated (notebook 07, :func:`generate_dialogues`).
    """
    files = list(dict.fromkeys(map(str, files)))
    path = dialogue_path(cfg, dialogue_key(cfg, files))
    if not path.is_file():
        raise FileNotFoundError(f"no surrogate dialogues for these settings at {path}: run "
                                f"notebook 07 (generate_dialogues(cfg, files, splits)) first")
    return _read(path)


def dialogue_stage2_data(data: Stage2Data, dialogues: pd.DataFrame, tokenizer,
                         llm_cfg, *, clips_with_dialogue_only: bool = False) -> Stage2Data:
    """Stage II examples of every turn of every training trial's dialogue.

    Trial ``i`` of ``data`` (fMRI tokens, class label) gives one example per turn ``k``: the
    prompt holds the dialogue's questions 0..k and answers 0..k-1
    (:func:`dialogue_prompt`), the target is answer ``k``. The target subjects' adaptation
    features are ``data``'s, unchanged.

    ``clips_with_dialogue_only`` keeps only the trials whose clip has a dialogue (the
    ``dialogue.max_clips`` subset); the returned ``source_meta`` lists the trials used.

    Raises
    ------
    KeyError
        A training trial's clip has no dialogue and ``clips_with_dialogue_only`` is false.
    """
    need = set(DIALOGUE_COLUMNS)
    if not need <= set(dialogues.columns):
        raise ValueError(f"the dialogue table lacks columns {sorted(need - set(dialogues.columns))}"
                         f"; build it with llm4brain.dialogue.data.generate_dialogues")
    by_file = {f: g.sort_values("turn") for f, g in dialogues.groupby("stim_file")}
    files = [str(f) for f in data.source_meta["stim_file"]]
    missing = sorted({f for f in files if f not in by_file})
    if missing and len(missing) == len(set(files)):
        raise KeyError(f"none of the {len(set(files))} training clips has a surrogate dialogue: "
                       f"generate_dialogues for the training trials' clips (dialogue_clips)")
    if missing and not clips_with_dialogue_only:
        raise KeyError(f"{len(missing)} training clips have no surrogate dialogue (e.g. "
                       f"{missing[0]}): generate_dialogues for the training trials' clips")
    prompts_of: dict[str, list[tuple[str, str, str, int]]] = {}
    for f in dict.fromkeys(f for f in files if f in by_file):
        g = by_file[f]
        qs, ans = list(g["instruction"]), list(g["answer"])
        prompts_of[f] = [(dialogue_prompt(tokenizer, llm_cfg, qs[:k + 1], ans[:k]), qs[k],
                          ans[k], int(t)) for k, t in enumerate(g["turn"])]
    idx, prompts, instr, answers, turns = [], [], [], [], []
    for i, f in enumerate(files):
        for p, q, a, t in prompts_of.get(f, ()):
            idx.append(i)
            prompts.append(p)
            instr.append(q)
            answers.append(a)
            turns.append(t)
    idx = np.asarray(idx, dtype=np.int64)
    meta = data.source_meta.iloc[idx].reset_index(drop=True).assign(turn=turns)
    return Stage2Data(data.source_z[torch.as_tensor(idx)], data.source_labels[idx],
                      list(data.class_names), instr, answers, meta, data.target, prompts)


def dialogue_run_name(cfg, domain_adaptation: bool | None = None) -> str:
    """``stage2dlg-<hash>``: the Stage II run continued, and every dialogue setting."""
    return run_key("stage2dlg", dict(stage2=stage2_run_name(cfg, domain_adaptation),
                                     dialogue=identity(cfg, "dialogue")))


def train_dialogue_stage2(cfg, data: Stage2Data, dialogues: pd.DataFrame, stage2_model, llm,
                          video_proj, *, overwrite: bool = False, progress: bool = True):
    """Continue a trained Stage II model on the surrogate dialogues (``dialogue.steps`` steps).

    Parameters
    ----------
    cfg : Config
    data : Stage2Data (:func:`~llm4brain.training.stage2.build_stage2_data`)
    dialogues : DataFrame (:func:`generate_dialogues`)
    stage2_model : Stage2Model
        The trained Stage II run to continue (its DA setting is kept).
    llm, video_proj : as :func:`~llm4brain.training.stage2.train_stage2`

    Returns
    -------
    Stage2Result (run name :func:`dialogue_run_name`)
    """
    if cfg.dialogue.steps < 1:
        raise ValueError("dialogue.steps is 0: set it to the number of continuation steps "
                         "(e.g. dialogue.steps: 60) to train on the dialogues")
    ddata = dialogue_stage2_data(data, dialogues, llm.tokenizer, cfg.llm,
                                 clips_with_dialogue_only=bool(cfg.dialogue.max_clips))
    da = bool(stage2_model.domain_adaptation)
    c = with_overrides(cfg, {"stage2.steps": int(cfg.dialogue.steps)})
    return train_stage2(c, ddata, llm, video_proj, domain_adaptation=da, overwrite=overwrite,
                        progress=progress, name=dialogue_run_name(cfg, da), init=stage2_model)
