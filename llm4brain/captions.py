"""Surrogate captions (paper 3.2, Stage II): the video-LLM's answers are the text targets.

"For a given batch of N fMRI records, we assign each of them a randomly selected instruction
from a candidate instruction list, and generate surrogate groundtruth data from ViT-embedded
video tokens and the instructions." Here every (subject, clip) record gets one instruction,
drawn with ``captions.seed`` from ``captions.instructions``; the pretrained video-LLM answers
it. Answers are cached as a TSV (clip_id, stim_file, subject, instruction, answer) under
``<run_dir>/captions/`` keyed by a hash of everything that made them, so a changed setting
(e.g. the instruction list) builds a new table and an unchanged one is reused.

On the simulated data the true descriptions exist, so :func:`caption_agreement` reports how
well the answers match them (BERTScore F1 with MiniLM, SacreBLEU-1/2, ROUGE-L) next to the
control "the answer given for a random other clip".
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .config import config_hash, to_dict
from .data import discover_runs, load_stimuli, read_events
from .evaluation.metrics import TextScorer
from .training.vlpretrain import load_video_llm, video_features, video_llm_id

__all__ = ["CAPTION_COLUMNS", "clip_records", "draw_instructions", "caption_key",
           "caption_path", "generate_captions", "load_captions", "random_other",
           "caption_agreement", "agreement_summary"]

CAPTION_COLUMNS = ("clip_id", "stim_file", "subject", "instruction", "answer")


def clip_records(cfg, stim: pd.DataFrame | None = None,
                 subjects: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (subject, stimulus clip) shown in the experiment, in event order.

    Parameters
    ----------
    cfg : Config (``data`` section: where the events files are)
    stim : DataFrame, optional
        Stimulus table (:func:`llm4brain.data.load_stimuli`) to take ``clip_id`` and
        ``description`` from.
    subjects : list of str, optional
        Default ``captions.subjects`` or all.

    Returns
    -------
    DataFrame with ``subject``, ``stim_file``, ``clip_id``, ``description`` (may be empty).
    """
    subjects = list(subjects) if subjects is not None else list(cfg.captions.subjects)
    rows = []
    for rf in discover_runs(cfg.data_root, cfg.data):
        if subjects and rf.subject not in subjects:
            continue
        ev = read_events(rf.events, cfg.data.onset_offset)
        for sf in ev["stim_file"]:
            rows.append((rf.subject, rf.run, str(sf)))
    if not rows:
        raise ValueError(f"no events found under {cfg.data_root} for subjects {subjects or 'all'}"
                         f" (settings data.root / captions.subjects)")
    df = pd.DataFrame(rows, columns=["subject", "run", "stim_file"])
    df = df.drop_duplicates(["subject", "stim_file"]).drop(columns="run").reset_index(drop=True)
    if stim is not None:
        s = stim[stim["corpus"] == "subjects"] if "corpus" in stim else stim
        s = s.drop_duplicates("stim_file").set_index("stim_file")
        df["clip_id"] = [s["clip_id"].get(f, Path(f).stem) if "clip_id" in s else Path(f).stem
                         for f in df["stim_file"]]
        df["description"] = [str(s["description"].get(f, "")) if "description" in s else ""
                             for f in df["stim_file"]]
    else:
        df["clip_id"] = [Path(f).stem for f in df["stim_file"]]
        df["description"] = ""
    return df


def draw_instructions(n: int, instructions: Sequence[str], seed: int) -> list[str]:
    """One instruction per record, drawn uniformly with ``seed`` (paper 3.2)."""
    if not instructions:
        raise ValueError("captions.instructions is empty; give at least one instruction")
    rng = np.random.default_rng(seed)
    return [instructions[k] for k in rng.integers(len(instructions), size=n)]


def caption_key(cfg, records: pd.DataFrame) -> str:
    """Hash of the settings and records that determine the caption table."""
    gen = {k: getattr(cfg.llm, k) for k in ("max_new_tokens", "do_sample", "temperature",
                                            "top_p", "batch_size")}
    return config_hash(dict(model=video_llm_id(cfg), gen=gen,
                            captions=to_dict(cfg.captions),
                            records=list(zip(records["subject"], records["stim_file"]))))


def caption_path(cfg, key: str) -> Path:
    """``<run_dir>/captions/captions_<key>.tsv``."""
    return Path(cfg.run_dir) / "captions" / f"captions_{key}.tsv"


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def generate_captions(cfg, *, vlm=None, features=None, stim: pd.DataFrame | None = None,
                      rebuild: bool = False, progress: bool = True) -> pd.DataFrame:
    """Surrogate answers for every (subject, clip) record; cached.

    Parameters
    ----------
    cfg : Config
        ``captions`` (instructions, seed, subjects), ``llm`` (generation settings).
    vlm : VideoLLM, optional
        Default :func:`llm4brain.training.vlpretrain.load_video_llm` (only loaded when the
        cache is missing).
    features : FrameFeatureCache, optional
        Default :func:`llm4brain.training.vlpretrain.video_features`.
    stim : DataFrame, optional
        Stimulus table (default :func:`llm4brain.data.load_stimuli`).
    rebuild : bool
        Generate again even when the cached table exists.

    Returns
    -------
    DataFrame with columns :data:`CAPTION_COLUMNS` (+ ``description`` when known), also
    written to :func:`caption_path` (with a ``.json`` of the settings beside it).
    """
    if stim is None:
        stim = load_stimuli(cfg)
    rec = clip_records(cfg, stim)
    key = caption_key(cfg, rec)
    path = caption_path(cfg, key)
    if path.is_file() and not rebuild:
        return _read(path)
    if vlm is None:
        vlm = load_video_llm(cfg)
    if features is None:
        features = video_features(cfg, stim, progress)
    ins = draw_instructions(len(rec), list(cfg.captions.instructions), cfg.captions.seed)
    files = rec["stim_file"].tolist()
    answers = vlm.generate(lambda rows: features.get([files[i] for i in rows]), ins,
                           seed=cfg.captions.seed, progress=progress)
    out = pd.DataFrame(dict(clip_id=rec["clip_id"], stim_file=rec["stim_file"],
                            subject=rec["subject"], instruction=ins,
                            answer=[a.replace("\t", " ").replace("\n", " ") for a in answers]))
    if rec["description"].astype(str).str.len().gt(0).any():
        out["description"] = rec["description"].values
    path.parent.mkdir(parents=True, exist_ok=True)
    # the settings first, then the table under its final name: the table's presence is what
    # marks the cache complete, and neither is ever half-written under its own name
    meta, tmp_meta = path.with_suffix(".json"), path.with_suffix(".json.tmp")
    tmp_meta.write_text(json.dumps(
        dict(key=key, llm=to_dict(cfg.llm), captions=to_dict(cfg.captions),
             video=to_dict(cfg.video), n=len(out)), indent=1))
    os.replace(tmp_meta, meta)
    tmp = path.with_suffix(".tmp")
    out.to_csv(tmp, sep="\t", index=False)
    os.replace(tmp, path)
    return _read(path)


def load_captions(cfg, stim: pd.DataFrame | None = None) -> pd.DataFrame:
    """The caption table of the current settings (Stage II's text targets).

    Raises
    ------
    FileNotFoundError
        When it was not generated with these settings (run notebook 04).
    """
    if stim is None:
        stim = load_stimuli(cfg)
    rec = clip_records(cfg, stim)
    path = caption_path(cfg, caption_key(cfg, rec))
    if not path.is_file():
        raise FileNotFoundError(f"no surrogate captions for these settings at {path}: run "
                                f"notebook 04 (generate_captions(cfg)) first")
    return _read(path)


def random_other(n: int, seed: int, groups: Sequence | None = None) -> np.ndarray:
    """For each record a random *other* record (a derangement): the control pairing.

    Parameters
    ----------
    n : int
    seed : int
    groups : sequence of n labels, optional
        If given, the other record is drawn among those with a different clip (label), e.g.
        ``stim_file``, so that a clip seen by two subjects is never its own control.

    Returns
    -------
    int array of shape (n,), ``out[i] != i``
    """
    if n < 2:
        raise ValueError("the random-clip control needs at least 2 records")
    rng = np.random.default_rng(seed)
    out = (np.arange(n) + rng.integers(1, n, size=n)) % n
    if groups is not None:
        g = np.asarray(groups)
        for _ in range(100):
            bad = np.flatnonzero(g[out] == g)
            if not len(bad):
                break
            out[bad] = (bad + rng.integers(1, n, size=len(bad))) % n
    return out


def caption_agreement(captions: pd.DataFrame, cfg, *, scorer=None,
                      references: Sequence[str] | None = None) -> dict:
    """How well the surrogate answers match the true descriptions, vs a random-clip control.

    Parameters
    ----------
    captions : DataFrame from :func:`generate_captions` (``answer``, ``description``)
    cfg : Config (``eval`` metric settings, ``captions.seed`` for the control)
    scorer : TextScorer, optional
        Default ``TextScorer(cfg.eval)`` (BERTScore with MiniLM on the CPU profile).
    references : list of str, optional
        True descriptions (default ``captions["description"]``).

    Returns
    -------
    dict with ``per_clip`` (DataFrame: subject, stim_file, condition, metrics) and
    ``summary`` (:func:`agreement_summary`).

    Raises
    ------
    ValueError
        When no true descriptions exist (real data: nothing to compare with).
    """
    refs = list(references) if references is not None else (
        captions["description"].astype(str).tolist() if "description" in captions else [])
    if not refs or not any(r.strip() for r in refs):
        raise ValueError("no true descriptions to compare the answers with (real data has none;"
                         " the agreement report needs the simulated dataset)")
    answers = captions["answer"].astype(str).tolist()
    other = random_other(len(answers), cfg.captions.seed, captions["stim_file"].tolist())
    control = [answers[j] for j in other]
    scorer = scorer if scorer is not None else TextScorer(cfg.eval)
    meta = captions[["subject", "stim_file"]].reset_index(drop=True)
    res_true, res_ctrl = scorer.score_many([answers, control], refs, meta=meta)
    per = pd.concat([res_true.per_trial.assign(condition="video-LLM answer"),
                     res_ctrl.per_trial.assign(condition="random other clip")],
                    ignore_index=True)
    return dict(per_clip=per, summary=agreement_summary({"video-LLM answer": res_true,
                                                         "random other clip": res_ctrl}))


def agreement_summary(results: dict) -> pd.DataFrame:
    """One row per condition: BERTScore F1 (mean), SacreBLEU-1/2 (corpus), ROUGE-L F (mean),
    in percent, plus the standard error of the mean per-clip BERTScore."""
    rows = []
    for cond, r in results.items():
        a = r.aggregate
        bs = r.per_trial["bertscore"].to_numpy(float)
        rows.append(dict(condition=cond, n=len(bs), bertscore=a["bertscore"],
                         bertscore_sem=float(bs.std(ddof=1) / np.sqrt(len(bs))) if len(bs) > 1
                         else float("nan"),
                         sacrebleu1=a["sacrebleu1"], sacrebleu2=a["sacrebleu2"],
                         rougeL_f=a["rougeL_f"]))
    return pd.DataFrame(rows)
