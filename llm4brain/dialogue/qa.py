"""Question answering from fMRI, scored against the simulator's truth (NVL's "complex
reasoning" reduced to questions whose answers are known).

Every simulated clip has a known agent, colour, size, direction, speed and scene
(:func:`llm4brain.evaluation.attributes.truth_frame`). :data:`QUESTIONS` asks about each
with a fixed set of options; the LLM answers with the trial's bridged fMRI tokens spliced
into the prompt (fMRI-grounded), with the clip's video tokens (video-grounded, the
reference: what the video-LLM itself can tell), and with **another** trial's fMRI tokens
(shuffled within subject, several shuffles: what the decoder says whatever the brain did).
:class:`AnswerParser` maps each answer onto an option, or ``"none"``.

Options, and why:

* ``agent``: animal / person / object (bird, dog, fish / person / ball, car);
* ``colour``: the simulator's ten colours;
* ``size``: small / large; trials whose agent is medium-sized are left out of this question
  (the simulator also draws medium, which the options do not hold);
* ``direction``: left / right;
* ``speed``: fast / slow;
* ``scene``: which of the eight scenes (beach, street, room, field, forest, snow, desert,
  night). Indoors/outdoors is not asked: only "room" is indoors, so one trial in eight
  would be indoors and "outdoors" alone would score 87.5 % against a chance of 50 %.

Chance is 1/k for k options; the shuffled-fMRI level is the empirical one (the same decoder
and questions, the answers scored against the trial whose fMRI was *not* used).

>>> res = qa_accuracy(load_chat_models(cfg))      # doctest: +SKIP
>>> res.table                                      # one row per question
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..config import save_config
from ..data import load_stimuli
from ..evaluation.attributes import AttributeParser, load_lexicon, truth_frame
from ..evaluation.controls import bootstrap_ci, derangements
from ..evaluation.decoding import n_chance_decodes
from ..models.stage1 import embed_fmri
from ..models.video_llm import format_prompt, generate_from_prefix, splice_prefix
from ..sim._catalogue import COLOURS, SCENES

__all__ = ["Question", "QUESTIONS", "NONE", "AnswerParser", "ask_all", "qa_truth",
           "qa_answers", "qa_table", "QAResult", "qa_accuracy", "qa_results_dir",
           "write_qa", "qa_reading", "QA_TABLE_COLUMNS", "QA_ANSWER_COLUMNS"]

#: The parsed answer of a text that names no option, or more than one.
NONE = "none"

_AGENT_KIND = {"person": "person", "bird": "animal", "dog": "animal", "fish": "animal",
               "ball": "object", "car": "object"}


@dataclass(frozen=True)
class Question:
    """A question whose answer the simulator knows.

    Attributes
    ----------
    name : str
        Short key (table rows).
    text : str
        What the LLM is asked.
    attribute : str
        The truth column (:data:`llm4brain.evaluation.attributes.ATTRIBUTES`) it is about.
    options : tuple of str
        The k answers it accepts.
    truth_map : mapping, optional
        True attribute value -> option (values missing from it leave the trial out of
        this question); default: the value itself when it is an option.
    phrases : mapping option -> list of str, optional
        Words that name an option, replacing the lexicon's phrases of ``attribute``
        (default: the lexicon's, :func:`llm4brain.evaluation.attributes.load_lexicon`).
    """

    name: str
    text: str
    attribute: str
    options: tuple
    truth_map: Mapping | None = None
    phrases: Mapping | None = None

    @property
    def k(self) -> int:
        return len(self.options)

    def truth(self, value) -> str | None:
        """The option a true attribute value corresponds to (None: not scored)."""
        v = str(value)
        if self.truth_map is not None:
            return self.truth_map.get(v)
        return v if v in self.options else None


def _agent_kind_phrases(lexicon: Mapping | None = None) -> dict:
    agents = load_lexicon(lexicon)["attributes"]["agent"]
    out = {"animal": ["animal", "animals", "creature", "pet"],
           "person": ["human", "someone", "somebody"],
           "object": ["object", "objects", "toy", "item"]}   # not "thing": the question says it
    for agent, phrases in agents.items():
        out[_AGENT_KIND[agent]] += [agent] + list(phrases)
    return out


def _questions() -> tuple[Question, ...]:
    return (
        Question("agent", "Is the main thing in the video an animal, a person or an object?",
                 "agent", ("animal", "person", "object"), truth_map=dict(_AGENT_KIND),
                 phrases=_agent_kind_phrases()),
        Question("colour", "What colour is it?", "colour", tuple(COLOURS)),
        Question("size", "Is it small or large?", "size", ("small", "large")),
        Question("direction", "Does it move to the left or to the right?", "direction",
                 ("left", "right")),
        Question("speed", "Does it move fast or slowly?", "speed", ("fast", "slow")),
        Question("scene", "Where does it take place?", "scene", tuple(SCENES)),
    )


#: The questions of :func:`qa_accuracy`, one per simulated attribute.
QUESTIONS: tuple[Question, ...] = _questions()


class AnswerParser:
    """Map a generated answer onto one of a question's options, or :data:`NONE`.

    The words of every attribute compete as in
    :class:`llm4brain.evaluation.attributes.AttributeParser` (longest phrase first, so
    "beach ball" is an agent and not a scene, "from right to left" is left); the
    question's attribute is read from the matches. An answer that names exactly one value
    of it, and that value is an option, gets that option; one that names none, or several
    different ones ("left or right"), or a value outside the options ("medium"), gets
    :data:`NONE`.

    Parameters
    ----------
    lexicon : path, mapping or None
        See :func:`llm4brain.evaluation.attributes.load_lexicon` (None: the simulator's).
    """

    def __init__(self, lexicon=None):
        self.lexicon = load_lexicon(lexicon)
        self._parsers: dict = {}

    def _parser(self, q: Question):
        if q.name not in self._parsers:
            attrs = dict(self.lexicon["attributes"])
            if q.phrases is not None:
                # the question's words first: they win over another attribute's
                attrs = {q.attribute: {o: list(p) for o, p in q.phrases.items()},
                         **{a: v for a, v in attrs.items() if a != q.attribute}}
            self._parsers[q.name] = AttributeParser({"attributes": attrs}, unmarked=False)
        return self._parsers[q.name]

    def parse(self, question: Question, text: str) -> str:
        """The option ``text`` gives as its answer to ``question``, or :data:`NONE`."""
        named = {v for _, _, a, v in self._parser(question).matches(str(text or ""))
                 if a == question.attribute}
        if len(named) == 1:
            (v,) = named
            if v in question.options:
                return v
        return NONE


def qa_truth(truth: pd.DataFrame, questions: Sequence[Question] = QUESTIONS) -> pd.DataFrame:
    """Per trial the right option of each question (None where it is not scored).

    Parameters
    ----------
    truth : DataFrame (n, attributes), :func:`llm4brain.evaluation.attributes.truth_frame`
    """
    missing = sorted({q.attribute for q in questions} - set(truth.columns))
    if missing:
        raise ValueError(f"the truth table lacks {missing}: question answering needs the "
                         f"simulator's attributes (stimuli/descriptions.tsv; real data has no "
                         f"truth)")
    return pd.DataFrame({q.name: pd.Series([q.truth(v) for v in truth[q.attribute]],
                                           dtype=object) for q in questions})


@torch.no_grad()
def ask_all(llm, prefix: torch.Tensor, question: str, *, placeholder: str = "<video>",
            system_prompt: str = "", max_new_tokens: int = 16, batch_size: int = 32
            ) -> list[str]:
    """Greedy answers to one question for many recordings (a one-turn dialogue each).

    The prompt is the first turn of a :class:`~llm4brain.dialogue.Conversation`
    (:func:`llm4brain.models.video_llm.format_prompt`); the answers equal
    ``Conversation.ask`` on each recording alone.

    Parameters
    ----------
    llm : LLMBackend
    prefix : tensor of shape (n, N, D)
        Bridged fMRI tokens or video tokens of n recordings.
    question : str

    Returns
    -------
    list of n str
    """

    prompt = format_prompt(llm.tokenizer, question, placeholder=placeholder,
                           system_prompt=system_prompt)
    out: list[str] = []
    for s in range(0, len(prefix), batch_size):
        e = min(len(prefix), s + batch_size)
        pb = splice_prefix(llm, [prompt] * (e - s), prefix[s:e], placeholder=placeholder)
        out += generate_from_prefix(llm, pb, max_new_tokens=max_new_tokens, do_sample=False)
    return [" ".join(t.split()) for t in out]


#: Columns of :func:`qa_answers`.
QA_ANSWER_COLUMNS = ("condition", "shuffle", "question", "subject", "trial_index", "stim_file",
                     "source_trial_index", "text", "answer", "truth", "correct")


def qa_answers(llm, brain: torch.Tensor, trials: pd.DataFrame, truth: pd.DataFrame, *,
               video: torch.Tensor | None = None, extra: dict | None = None,
               questions: Sequence[Question] = QUESTIONS,
               n_shuffles: int = 3, seed: int = 0, placeholder: str = "<video>",
               system_prompt: str = "", max_new_tokens: int = 16, batch_size: int = 32,
               parser: AnswerParser | None = None, progress: bool = False) -> pd.DataFrame:
    """Every question asked about every trial, from its fMRI, its clip and shuffled fMRI.

    Parameters
    ----------
    llm : LLMBackend
    brain : tensor of shape (n, N, D)
        Bridged fMRI tokens of the n trials (``Stage2Model.bridge(z)``).
    trials : DataFrame with ``subject``, ``trial_index``, ``stim_file`` (n rows)
    truth : DataFrame (n, attributes) of the trials' clips
    video : tensor of shape (n, Nv, D), optional
        Video tokens of the trials' clips (the video-grounded answers).
    extra : dict name -> tensor (n, N, D), optional
        Other decoders' prefix tokens of the same trials, each asked as condition ``name``
        (e.g. ``semantic``: the semantic read-out's prototype tokens through the video-LLM's
        projection).
    n_shuffles : int
        Shuffles of the fMRI across trials within subject (no trial keeps its own;
        shuffle ``k`` uses seed ``(seed, k)``, as Stage II's chance decodes).
    max_new_tokens, batch_size : generation (greedy).

    Returns
    -------
    DataFrame with :data:`QA_ANSWER_COLUMNS`: ``condition`` is ``fmri``, ``video`` or
    ``shuffled`` (``shuffle`` its number, -1 otherwise), ``source_trial_index`` the trial
    whose tokens were used, ``answer`` the parsed option, ``truth`` the right one of the
    trial asked about, ``correct`` 1.0 / 0.0 (NaN where the question is not scored).
    """


    n = len(trials)
    extra = dict(extra or {})
    bad = [k for k, v in extra.items() if len(v) != n or k in ("fmri", "video", "shuffled")]
    if bad:
        raise ValueError(f"qa_answers: extra decoders {bad} need {n} token rows and a name other "
                         f"than fmri, video, shuffled")
    if len(brain) != n or len(truth) != n or (video is not None and len(video) != n):
        raise ValueError(f"qa_answers: {len(brain)} fMRI token rows, {len(truth)} truths"
                         f"{'' if video is None else f', {len(video)} video token rows'} for "
                         f"{n} trials")
    parser = parser or AnswerParser()
    right = qa_truth(truth, questions)
    subj = trials["subject"].astype(str).to_numpy()
    tidx = trials["trial_index"].to_numpy()
    conds: list[tuple[str, int, torch.Tensor, np.ndarray]] = [("fmri", -1, brain, np.arange(n))]
    if video is not None:
        conds.append(("video", -1, video, np.arange(n)))
    conds += [(k, -1, v, np.arange(n)) for k, v in extra.items()]
    for k in range(n_shuffles):
        perm = derangements(n, 1, np.random.default_rng((seed, k)), groups=subj)[0]
        conds.append(("shuffled", k, brain[torch.as_tensor(perm)], perm))
    rows = []
    total = len(conds) * len(questions)
    bar = tqdm(total=total, desc="QA", disable=not progress, unit="question")
    for cond, k, prefix, src in conds:
        for q in questions:
            texts = ask_all(llm, prefix, q.text, placeholder=placeholder,
                            system_prompt=system_prompt, max_new_tokens=max_new_tokens,
                            batch_size=batch_size)
            for i, t in enumerate(texts):
                ans, tr = parser.parse(q, t), right[q.name].iloc[i]
                tr = None if pd.isna(tr) else str(tr)
                rows.append((cond, k, q.name, subj[i], int(tidx[i]),
                             str(trials["stim_file"].iloc[i]), int(tidx[src[i]]), t, ans,
                             tr, np.nan if tr is None else float(ans == tr)))
            bar.update()
    bar.close()
    return pd.DataFrame(rows, columns=list(QA_ANSWER_COLUMNS))


#: Columns of :func:`qa_table` (accuracies and shares in percent).
QA_TABLE_COLUMNS = ("question", "options", "k", "n", "fmri", "fmri_ci_low", "fmri_ci_high",
                    "video", "chance", "shuffled_mean", "shuffled_low", "shuffled_high",
                    "n_shuffles", "fmri_none", "video_none", "semantic", "semantic_none")


def qa_table(answers: pd.DataFrame, questions: Sequence[Question] = QUESTIONS, *,
             n_boot: int = 1000, alpha: float = 0.05, rng=0) -> pd.DataFrame:
    """Accuracy per question of the answers of :func:`qa_answers` (percent).

    Parameters
    ----------
    answers : DataFrame with :data:`QA_ANSWER_COLUMNS`
    questions : the questions, in table order (their options give k)
    n_boot, alpha, rng : bootstrap over trials of the fMRI accuracy's interval.

    Returns
    -------
    DataFrame with :data:`QA_TABLE_COLUMNS`, one row per question:

    * ``n`` trials scored (those whose truth is an option);
    * ``fmri``: fMRI-grounded accuracy, with a percentile-bootstrap interval over trials
      (``fmri_ci_low``, ``fmri_ci_high``, level ``1 - alpha``);
    * ``video``: video-grounded accuracy (NaN without video answers);
    * ``chance``: 100 / k;
    * ``shuffled_mean``: mean accuracy over the shuffles; ``shuffled_low`` /
      ``shuffled_high`` the ``alpha/2`` and ``1 - alpha/2`` percentiles of the shuffles'
      accuracies (linear interpolation; equal to the mean with one shuffle);
    * ``fmri_none`` / ``video_none``: share of answers naming no option (or several);
    * ``semantic`` / ``semantic_none``: the same for the semantic read-out's answers (NaN
      without them).
    """

    rng = np.random.default_rng(rng)
    rows = []
    for q in questions:
        a = answers[answers["question"] == q.name]
        scored = a[a["correct"].notna()]

        def right(cond):        # 0/1 per scored answer of one condition
            return scored[scored["condition"] == cond]["correct"].to_numpy(float)

        def pct(x):
            return 100 * x.mean() if len(x) else np.nan

        def none(cond):         # share of a condition's answers that name no option
            c = a[a["condition"] == cond]
            return 100 * float((c["answer"] == NONE).mean()) if len(c) else np.nan

        f = right("fmri")
        sh = scored[scored["condition"] == "shuffled"]
        accs = 100 * sh.groupby("shuffle")["correct"].mean().to_numpy(float)
        row = dict(question=q.name, options="/".join(q.options), k=q.k, n=len(f),
                   fmri=pct(f), fmri_ci_low=np.nan, fmri_ci_high=np.nan,
                   video=pct(right("video")), chance=100 / q.k,
                   shuffled_mean=accs.mean() if len(accs) else np.nan,
                   shuffled_low=(np.percentile(accs, 100 * alpha / 2) if len(accs)
                                 else np.nan),
                   shuffled_high=(np.percentile(accs, 100 * (1 - alpha / 2)) if len(accs)
                                  else np.nan),
                   n_shuffles=len(accs), fmri_none=none("fmri"), video_none=none("video"),
                   semantic=pct(right("semantic")), semantic_none=none("semantic"))
        if len(f) > 1:
            ci = bootstrap_ci(f, n_boot=n_boot, rng=rng, alpha=alpha)
            row.update(fmri_ci_low=100 * ci.low, fmri_ci_high=100 * ci.high)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(QA_TABLE_COLUMNS))


@dataclass
class QAResult:
    """What :func:`qa_accuracy` returns: ``answers`` (one row per condition, question and
    trial; :data:`QA_ANSWER_COLUMNS`) and ``table`` (one row per question;
    :data:`QA_TABLE_COLUMNS`)."""

    answers: pd.DataFrame
    table: pd.DataFrame
    settings: dict = field(default_factory=dict)


def qa_accuracy(models, *, questions: Sequence[Question] = QUESTIONS,
                n_shuffles: int | None = None, max_new_tokens: int = 16,
                video: bool = True, max_trials: int | None = None, semantic: bool = True,
                progress: bool = False) -> QAResult:
    """Question answering on the target subjects' evaluation trials of a run, scored
    against the simulator's truth.

    Parameters
    ----------
    models : ChatModels
        :func:`llm4brain.dialogue.load_chat_models` of the run.
    questions : the questions (default :data:`QUESTIONS`)
    n_shuffles : int, optional
        Shuffled-fMRI repeats (default: Stage II's, ``min(eval.n_shuffles,
        stage2.max_shuffles)``).
    max_new_tokens : int
        Longest answer (tokens).
    video : bool
        Also answer from the clips' video tokens.
    max_trials : int, optional
        Ask about at most this many trials per subject (the first ones in trial-cache
        order, fixed before any answer is seen; the shuffles then draw among them).
    semantic : bool
        Also ask the semantic read-out (``eval.semantic_readout``; the read-out notebooks 03
        and 05 fitted, from its cache): its prototype tokens of the same trials through the
        video-LLM's own projection, as its Stage II decodes.

    Raises
    ------
    ValueError
        On real data (no simulator truth: ``stimuli/descriptions.tsv`` lacks the attribute
        columns).
    """

    cfg = models.cfg
    stim = load_stimuli(cfg)
    trials = models.trials.sort_values("position")
    if max_trials is not None:
        trials = trials.groupby("subject", sort=False).head(int(max_trials))
    pos = trials["position"].to_numpy()
    truth = truth_frame(stim, trials["stim_file"].tolist())
    lex = Path(cfg.data_root) / "stimuli" / "lexicon.json"
    parser = AnswerParser(lex if lex.is_file() else None)
    n_sh = n_chance_decodes(cfg) if n_shuffles is None else int(n_shuffles)
    bs = int(cfg.llm.batch_size)
    with torch.no_grad():
        view = models._view
        z = embed_fmri(models.stage1, lambda p: view.blocks(pos[p]), len(pos),
                       cfg.stage1.eval_batch_size)
        brain = _bridged(models.stage2.bridge, z, bs)
        vid = None
        if video:
            feats = models.features()
            files = trials["stim_file"].tolist()
            vid = torch.cat([models.vlm.encode_video(torch.as_tensor(np.asarray(
                feats.get(files[s:s + bs]), dtype=np.float32))) for s in range(0, len(files), bs)])
        extra = ({"semantic": _semantic_prefix(models, pos)}
                 if semantic and cfg.eval.semantic_readout else {})
    c = cfg.llm
    ans = qa_answers(models.llm, brain, trials.reset_index(drop=True),
                     truth, video=vid, extra=extra, questions=questions, n_shuffles=n_sh,
                     seed=int(cfg.run.seed), placeholder=c.placeholder,
                     system_prompt=c.system_prompt, max_new_tokens=max_new_tokens,
                     batch_size=bs, parser=parser, progress=progress)
    table = qa_table(ans, questions, n_boot=int(cfg.eval.n_bootstrap),
                     alpha=float(cfg.eval.ci_alpha), rng=int(cfg.run.seed))
    settings = dict(profile=cfg.profile, n_trials=len(trials), max_trials=max_trials,
                    n_shuffles=n_sh,
                    max_new_tokens=max_new_tokens, video=bool(video), semantic=bool(extra),
                    stage2_domain_adaptation=bool(models.stage2.domain_adaptation),
                    questions={q.name: q.text for q in questions})
    return QAResult(ans, table, settings)


def _semantic_prefix(models, pos: np.ndarray) -> torch.Tensor:
    """The semantic read-out's answers' prefix for evaluation-view positions ``pos``: its
    prototype tokens (:func:`llm4brain.evaluation.semantic.fit_semantic_readout`, from its
    cache) through the untrained bridge (the video-LLM's projection), as
    :func:`llm4brain.evaluation.semantic.semantic_decodes` feeds the LLM."""
    from ..data import load_splits, load_stimuli, load_trial_cache, voxel_features
    from ..evaluation.semantic import fit_semantic_readout
    from ..models.stage2 import zero_shot_model

    cfg = models.cfg
    tc = load_trial_cache(cfg)
    splits = load_splits(Path(cfg.run_dir) / "splits.json")
    stim = load_stimuli(cfg) if len(cfg.eval.semantic_labels) > 1 else None
    readout = fit_semantic_readout(cfg, tc, splits, models.vlm, models.features(), stim,
                                   cache=True)
    view = models._view
    X = voxel_features(lambda p: view.blocks(pos[p]), len(pos), tc.mask,
                       batch_size=cfg.stage1.eval_batch_size)
    return _bridged(zero_shot_model(cfg, models.vlm).bridge, readout.tokens(readout.predict(X)),
                    int(cfg.llm.batch_size))


def _bridged(bridge, z: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``bridge(z)`` in batches, on the bridge's device: the LLM prefix of tokens ``z``."""
    dev = next(bridge.parameters()).device
    return torch.cat([bridge(z[s:s + batch_size].to(dev)) for s in range(0, len(z), batch_size)])


def qa_results_dir(cfg) -> Path:
    """``<run_dir>/results/dialogue``."""
    return Path(cfg.run_dir) / "results" / "dialogue"


def write_qa(result: QAResult, cfg, directory: str | os.PathLike | None = None) -> dict:
    """Write ``qa_table.csv``, ``qa_answers.tsv`` and ``qa_settings.json`` (+ the config)
    under :func:`qa_results_dir` (or ``directory``), atomically; returns their paths."""


    d = Path(directory) if directory is not None else qa_results_dir(cfg)
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, write in (("qa_table.csv", lambda p: result.table.to_csv(p, index=False)),
                        ("qa_answers.tsv",
                         lambda p: result.answers.to_csv(p, sep="\t", index=False)),
                        ("qa_settings.json",
                         lambda p: Path(p).write_text(json.dumps(result.settings, indent=1)))):
        tmp = d / (name + ".tmp")
        write(tmp)
        os.replace(tmp, d / name)
        out[name] = d / name
    save_config(cfg, d)
    return out


def qa_reading(table: pd.DataFrame) -> str:
    """Notebook 07's conclusion on question answering, in words, from :func:`qa_table`'s rows.

    A question counts as answered *from the brain* only when the fMRI accuracy is above the
    highest shuffled-fMRI decode (``shuffled_high``), not merely above ``1/k``: a decoder that
    always gives the commonest option beats ``1/k`` without reading the trial."""
    need = {"question", "k", "fmri", "chance", "shuffled_high", "video"}
    if need - set(table.columns):
        raise KeyError(f"qa_reading: the table lacks {sorted(need - set(table.columns))} (07_qa_table.csv)")
    above = [r.question for r in table.itertuples() if r.fmri > r.shuffled_high]
    sem = "semantic" in table.columns and table["semantic"].notna().any()
    each = "; ".join(f"{r.question} {r.fmri:.1f} % (1/{int(r.k)} = {r.chance:.1f}, shuffled up to "
                     f"{r.shuffled_high:.1f}, from the clip {r.video:.1f}"
                     + (f", semantic read-out {r.semantic:.1f}" if sem else "") + ")"
                     for r in table.itertuples())
    return (f"**Conclusion (question answering).** From fMRI: {each}. Above every shuffled-fMRI "
            f"decode: {', '.join(above) if above else 'no question'}.")
