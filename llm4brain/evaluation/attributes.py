"""Attribute-level scoring: which agent, action, colour, size, direction, speed and scene a text
names, and how often that is the truth.

BERTScore cannot tell "right agent, wrong scene" from fluent noise. On simulated data every clip's
truth is known (``stimuli/descriptions.tsv``: agent, action, colour, size, direction, speed,
scene), so any text (Video2Text, fMRI2Text, a control) can be read back onto those attributes
and scored per attribute.

A text is read with the simulator's lexicon (:func:`llm4brain.sim.description_lexicon`,
written to ``stimuli/lexicon.json``): every word or phrase the descriptions and paraphrases use
for each value ("automobile" -> car, "puppy" -> dog, "among the trees in the woods" -> forest,
"from right to left" -> left). Matching is on lower-cased words with punctuation removed;
phrases of all attributes compete, longest first, so "beach ball" names an agent and not a
scene and "a green field" a scene and not a colour. When a text names several values of one
attribute (two agents in one sentence), the first mention counts: in these descriptions the
grammatical subject comes first.

>>> p = AttributeParser()
>>> p.parse("A big green automobile cruises along from right to left, among the trees in the woods.")
{'agent': 'car', 'action': 'driving', 'colour': 'green', 'size': 'large', 'direction': 'left', 'speed': None, 'scene': 'forest'}
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..sim import description_lexicon
from .controls import bootstrap_ci
from .stage2_results import EXTRA_CONTROLS

__all__ = ["ATTRIBUTES", "COMBINED", "AttributeParser", "load_lexicon", "attribute_frame",
           "attribute_correct", "attribute_accuracy", "attribute_chance", "distinct_share",
           "sign_flip_pvalue", "attribute_summary", "truth_frame", "ATTRIBUTE_CONDITIONS",
           "stage2_attribute_tables", "attribute_wide"]

#: The attributes every simulated clip has, in table order.
ATTRIBUTES: tuple[str, ...] = ("agent", "action", "colour", "size", "direction", "speed", "scene")
#: Combined scores: the class (agent and action right) and everything right.
COMBINED: tuple[str, ...] = ("agent+action", "all")

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(str(text).lower())


def load_lexicon(source: str | os.PathLike | Mapping | None = None) -> dict:
    """The lexicon ``{"attributes": {attr: {value: [phrases]}}, "unmarked": {attr: value}}``.

    Parameters
    ----------
    source : path, mapping or None
        A ``lexicon.json`` file, a dataset root (``<root>/stimuli/lexicon.json``), a lexicon
        mapping, or None for the simulator's built-in lexicon.

    Raises
    ------
    FileNotFoundError
        A path that is neither a lexicon file nor a dataset root holding one.
    ValueError
        A lexicon without an ``attributes`` mapping.
    """
    if source is None:
        return description_lexicon()
    if isinstance(source, Mapping):
        lex = dict(source)
    else:
        p = Path(source)
        if p.is_dir():
            p = p / "stimuli" / "lexicon.json"
        if not p.is_file():
            raise FileNotFoundError(f"no attribute lexicon at {p}: simulate the dataset again "
                                    f"(notebook 00 writes stimuli/lexicon.json) or pass "
                                    f"lexicon=None for the simulator's built-in one")
        lex = json.loads(p.read_text())
    if not isinstance(lex.get("attributes"), Mapping):
        raise ValueError(f"attribute lexicon {source!r} has no 'attributes' mapping "
                         f"(expected {{'attributes': {{attribute: {{value: [phrases]}}}}}})")
    lex.setdefault("unmarked", {})
    return lex


class AttributeParser:
    """Read the attributes a text names (see the module docstring for the rules).

    Parameters
    ----------
    lexicon : path, mapping or None
        See :func:`load_lexicon`.
    unmarked : bool, default True
        Fill an attribute the text leaves unsaid with the lexicon's unmarked value (the
        simulator leaves a medium size unsaid); False leaves it None.

    Raises
    ------
    ValueError
        When one phrase names two different values of the same attribute.
    """

    def __init__(self, lexicon=None, *, unmarked: bool = True):
        lex = load_lexicon(lexicon)
        self.attributes: tuple[str, ...] = tuple(lex["attributes"])
        self.unmarked: dict = dict(lex.get("unmarked", {})) if unmarked else {}
        self.values: dict[str, tuple[str, ...]] = {a: tuple(v) for a, v in lex["attributes"].items()}
        index: dict[tuple[str, ...], tuple[str, str]] = {}
        for attr, values in lex["attributes"].items():
            for value, phrases in values.items():
                for ph in list(phrases) + [value]:
                    key = tuple(_words(ph))
                    if not key:
                        continue
                    old = index.get(key)
                    if old is not None and old[0] == attr and old[1] != value:
                        raise ValueError(f"attribute lexicon: phrase {ph!r} names both "
                                         f"{attr}={old[1]!r} and {attr}={value!r}")
                    # across attributes the first one listed wins (agent before scene, ...)
                    index.setdefault(key, (attr, value))
        self._index = index
        self._max_len = max((len(k) for k in index), default=1)

    def matches(self, text: str) -> list[tuple[int, int, str, str]]:
        """Non-overlapping matches ``(start_word, n_words, attribute, value)`` in text order."""
        w = _words(text)
        cands = []
        for i in range(len(w)):
            for n in range(min(self._max_len, len(w) - i), 0, -1):
                hit = self._index.get(tuple(w[i:i + n]))
                if hit is not None:
                    cands.append((i, n) + hit)
        cands.sort(key=lambda c: (-c[1], c[0]))
        taken = np.zeros(len(w), bool)
        out = []
        for i, n, attr, value in cands:
            if not taken[i:i + n].any():
                taken[i:i + n] = True
                out.append((i, n, attr, value))
        return sorted(out)

    def parse(self, text: str) -> dict[str, str | None]:
        """``{attribute: value or None}``: the first-mentioned value of each attribute."""
        out: dict[str, str | None] = {a: None for a in self.attributes}
        for _, _, attr, value in self.matches(text):
            if out[attr] is None:
                out[attr] = value
        for attr, value in self.unmarked.items():
            if attr in out and out[attr] is None:
                out[attr] = value
        return out

    def frame(self, texts: Sequence[str]) -> pd.DataFrame:
        """One row per text, one column per attribute (None where the text names none)."""
        cache: dict[str, dict] = {}
        rows = []
        for t in texts:
            t = "" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t)
            if t not in cache:
                cache[t] = self.parse(t)
            rows.append(cache[t])
        return pd.DataFrame(rows, columns=list(self.attributes))


def attribute_frame(texts: Sequence[str], parser: AttributeParser | None = None) -> pd.DataFrame:
    """:meth:`AttributeParser.frame` with the built-in lexicon by default."""
    return (parser or AttributeParser()).frame(texts)


def truth_frame(stim: pd.DataFrame, stim_files: Sequence[str] | None = None) -> pd.DataFrame:
    """The true attributes of clips from a stimulus table (``load_stimuli``; simulated data).

    Parameters
    ----------
    stim : DataFrame
        Has ``stim_file`` and the attribute columns of ``descriptions.tsv``.
    stim_files : list of str, optional
        Clips in this order (default: the table's rows).

    Raises
    ------
    ValueError
        The table lacks attribute columns (real data has no truth), or a clip is unknown.
    """
    missing = [a for a in ATTRIBUTES if a not in stim.columns]
    if missing:
        raise ValueError(f"the stimulus table has no {missing} column(s): attribute scores need "
                         f"the simulator's stimuli/descriptions.tsv (real data has no truth)")
    t = stim.drop_duplicates("stim_file").set_index("stim_file")[list(ATTRIBUTES)]
    if stim_files is None:
        return t.reset_index(drop=True)
    files = [str(f) for f in stim_files]
    unknown = sorted(set(files) - set(t.index))
    if unknown:
        raise ValueError(f"{len(unknown)} clip(s) not in the stimulus table, e.g. {unknown[:3]}")
    return t.loc[files].reset_index(drop=True).astype(str)


def attribute_correct(pred: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per text, 1.0 where an attribute equals the truth (0.0 where it is wrong or unsaid),
    plus ``agent+action`` and ``all`` (every attribute right)."""
    if len(pred) != len(truth):
        raise ValueError(f"attribute_correct: {len(pred)} parsed texts for {len(truth)} truths")
    attrs = [a for a in ATTRIBUTES if a in pred.columns and a in truth.columns]
    p = pred[attrs].reset_index(drop=True)
    t = truth[attrs].reset_index(drop=True).astype(str)
    ok = pd.DataFrame({a: (p[a].astype(object).where(p[a].notna(), None) == t[a]).astype(float)
                       for a in attrs})
    if {"agent", "action"} <= set(attrs):
        ok["agent+action"] = ok["agent"] * ok["action"]
    ok["all"] = ok[attrs].prod(axis=1)
    return ok


def attribute_accuracy(pred: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    """Share of texts right per attribute (and combined), in [0, 1]."""
    return attribute_correct(pred, truth).mean()


def attribute_chance(pred: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    """Accuracy expected when texts and clips are paired at random (the same texts, the same
    clips): per attribute sum_v P(text says v) P(clip is v). The combined scores use the
    joint distribution of the predicted tuple against the true tuples."""
    attrs = [a for a in ATTRIBUTES if a in pred.columns and a in truth.columns]
    out = {}
    n = len(pred)
    for a in attrs:
        pp = pred[a].astype(object).where(pred[a].notna(), "\0").value_counts() / n
        pt = truth[a].astype(str).value_counts() / len(truth)
        out[a] = float(sum(pp.get(v, 0.0) * pt[v] for v in pt.index))
    for name, cols in (("agent+action", ["agent", "action"]), ("all", attrs)):
        if not set(cols) <= set(attrs):
            continue
        kp = pred[cols].astype(object).where(pred[cols].notna(), "\0").apply(tuple, axis=1)
        kt = truth[cols].astype(str).apply(tuple, axis=1)
        pp, pt = kp.value_counts() / n, kt.value_counts() / len(truth)
        out[name] = float(sum(pp.get(v, 0.0) * pt[v] for v in pt.index))
    return pd.Series(out)


def distinct_share(texts: Sequence[str]) -> float:
    """Distinct texts / texts (1.0 = every answer different; 1/n = one answer for all)."""
    texts = [" ".join(str(t).split()).lower() for t in texts]
    return len(set(texts)) / max(len(texts), 1)


def sign_flip_pvalue(diff: np.ndarray, n_perm: int = 10000, rng=None) -> float:
    """One-sided paired permutation p-value of ``mean(diff) > 0`` (random sign flips).

    ``diff`` holds one value per trial (e.g. correct(decode) - mean correct(shuffled decodes)).
    Returns ``(1 + #{flipped mean >= observed}) / (1 + n_perm)``.
    """
    d = np.asarray(diff, float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    obs = d.mean()
    hits = 0
    for s in range(0, n_perm, 2000):
        k = min(2000, n_perm - s)
        signs = rng.integers(0, 2, size=(k, d.size), dtype=np.int8) * 2 - 1
        hits += int(((signs * d).mean(1) >= obs - 1e-12).sum())
    return (1 + hits) / (1 + n_perm)


def attribute_summary(texts: Mapping[str, Sequence[str]], truth: pd.DataFrame, *,
                      chance: Mapping[str, Sequence[Sequence[str]]] | None = None,
                      parser: AttributeParser | None = None, n_boot: int = 1000,
                      n_perm: int = 10000, rng=0) -> pd.DataFrame:
    """Attribute accuracy of several conditions against the truth, with CIs and p-values.

    Parameters
    ----------
    texts : mapping condition -> list of n texts
        E.g. ``{"Video2Text": ..., "fMRI2Text (DA)": ..., "ridge + NN": ...}``, each aligned
        with ``truth``.
    truth : DataFrame (n, attributes)
        :func:`truth_frame` of the trials' clips.
    chance : mapping condition -> list of shuffles (each a list of n texts), optional
        Decodes from shuffled fMRI of a condition; the condition's p-value is the sign-flip
        test of its per-trial correctness against the mean correctness of its shuffles.
    n_boot, n_perm, rng : bootstrap draws (CIs over trials), sign flips, seed.

    Returns
    -------
    DataFrame
        Tidy rows ``condition, attribute, accuracy, ci_low, ci_high, pairing_chance,
        shuffle_chance, p_vs_shuffle, distinct, n`` (accuracy in percent). ``pairing_chance``
        is :func:`attribute_chance` of the condition's own texts (what random pairing gives);
        ``shuffle_chance`` the mean accuracy of its shuffled-fMRI decodes (when given).
    """
    parser = parser or AttributeParser()
    rng = np.random.default_rng(rng)
    rows = []
    chance = dict(chance or {})
    for cond, tx in texts.items():
        pred = parser.frame(list(tx))
        ok = attribute_correct(pred, truth)
        pc = attribute_chance(pred, truth)
        sh_ok = None
        if chance.get(cond):
            sh = [attribute_correct(parser.frame(list(s)), truth) for s in chance[cond]]
            sh_ok = sum(sh) / len(sh)
        dist = distinct_share(tx)
        for a in ok.columns:
            ci = bootstrap_ci(ok[a].to_numpy(), n_boot=n_boot, rng=rng)
            row = dict(condition=cond, attribute=a, accuracy=100 * float(ok[a].mean()),
                       ci_low=100 * ci.low, ci_high=100 * ci.high,
                       pairing_chance=100 * float(pc.get(a, np.nan)),
                       shuffle_chance=np.nan, p_vs_shuffle=np.nan, distinct=100 * dist,
                       n=len(ok))
            if sh_ok is not None:
                row["shuffle_chance"] = 100 * float(sh_ok[a].mean())
                row["p_vs_shuffle"] = sign_flip_pvalue(ok[a].to_numpy() - sh_ok[a].to_numpy(),
                                                       n_perm, rng)
            rows.append(row)
    return pd.DataFrame(rows)


def _aligned(df: pd.DataFrame | None, ref: pd.DataFrame, col: str) -> list[str] | None:
    if df is None:
        return None
    key = ["subject", "trial_index"]
    a = df.assign(subject=df["subject"].astype(str)).set_index(key)
    want = pd.MultiIndex.from_frame(ref[key].assign(subject=ref["subject"].astype(str)))
    missing = want.difference(a.index)
    if len(missing):
        raise ValueError(f"a Stage II result lacks {len(missing)} of the model's evaluation "
                         f"trials (e.g. {list(missing[:3])}); re-run notebook 05")
    return a.loc[want, col].astype(str).tolist()


#: Condition labels of the attribute table, in row order.
ATTRIBUTE_CONDITIONS: dict[str, str] = {
    "upper": "Video2Text (the targets)",
    "model": "fMRI2Text, with DA",
    "noda": "fMRI2Text, without DA",
    "baseline": "ridge + NN baseline",
    "ceiling": "noise ceiling (best decoder on noise-free responses)",
    "no_brain": "LLM without brain tokens",
    "constant": "constant answer (most frequent training answer)",
    "semantic": "semantic read-out (voxel class/scene -> video-LLM)",
    "chance": "chance: shuffled fMRI",
    "semantic_chance": "chance of the semantic read-out: read-outs shuffled",
}


def stage2_attribute_tables(results, stim: pd.DataFrame, *, n_boot: int = 1000,
                            n_perm: int = 10000, rng=0,
                            parser: AttributeParser | None = None) -> dict[str, pd.DataFrame]:
    """Attribute accuracy of every saved Stage II condition (simulated data).

    Parameters
    ----------
    results : Stage2Results
        :func:`llm4brain.evaluation.stage2_results.load_stage2_results` of the run.
    stim : DataFrame
        The stimulus table with the true attributes (:func:`llm4brain.data.load_stimuli`).

    Returns
    -------
    dict with two tidy tables (rows of :func:`attribute_summary`):
        ``"truth"``: each condition's texts against the clips' true attributes, every fMRI
        condition with its p-value against the shuffled-fMRI decodes (sign-flip test over
        trials) and the mean accuracy of those decodes (the semantic read-out against its own
        decodes with the read-outs shuffled, when saved); ``"video2text"``: the fMRI
        conditions against the attributes Video2Text names (the decoder's training target).
    """
    parser = parser or AttributeParser()
    model = results.model
    truth = truth_frame(stim, model["stim_file"])
    texts = {ATTRIBUTE_CONDITIONS["upper"]: model["video2text"].astype(str).tolist(),
             ATTRIBUTE_CONDITIONS["model"]: model["fmri2text"].astype(str).tolist()}
    for cond in ("noda", "baseline", "ceiling") + EXTRA_CONTROLS:
        t = _aligned(getattr(results, cond, None), model, "fmri2text")
        if t is not None:
            texts[ATTRIBUTE_CONDITIONS[cond]] = t
    shuffles = [c["fmri2text"].astype(str).tolist() for c in results.chance]
    sem_shuffles = [c["fmri2text"].astype(str).tolist()
                    for c in getattr(results, "semantic_chance", None) or []]
    fmri = [k for k in texts if k != ATTRIBUTE_CONDITIONS["upper"]]
    # each fMRI condition against the shuffled-fMRI decodes, the semantic read-out against its
    # own (the read-outs shuffled): a decoder's null is that decoder with its input shuffled
    own = {ATTRIBUTE_CONDITIONS["semantic"]: sem_shuffles}
    chance = {k: own.get(k, shuffles) for k in fmri if own.get(k, shuffles)} or None
    out_truth = attribute_summary(texts, truth, chance=chance, parser=parser, n_boot=n_boot,
                                  n_perm=n_perm, rng=rng)
    if shuffles:
        pooled = attribute_summary({ATTRIBUTE_CONDITIONS["chance"]: sum(shuffles, [])},
                                   pd.concat([truth] * len(shuffles), ignore_index=True),
                                   parser=parser, n_boot=n_boot, n_perm=n_perm, rng=rng)
        out_truth = pd.concat([out_truth, pooled], ignore_index=True)
    if sem_shuffles:
        pooled = attribute_summary({ATTRIBUTE_CONDITIONS["semantic_chance"]: sum(sem_shuffles, [])},
                                   pd.concat([truth] * len(sem_shuffles), ignore_index=True),
                                   parser=parser, n_boot=n_boot, n_perm=n_perm, rng=rng)
        out_truth = pd.concat([out_truth, pooled], ignore_index=True)
    v2t = parser.frame(model["video2text"].astype(str).tolist())
    v2t_truth = v2t.astype(object).where(v2t.notna(), "(none)")
    out_v2t = attribute_summary({k: texts[k] for k in fmri}, v2t_truth, chance=chance,
                                parser=parser, n_boot=n_boot, n_perm=n_perm, rng=rng)
    return {"truth": out_truth, "video2text": out_v2t}


def attribute_wide(tidy: pd.DataFrame, *, p_values: bool = True) -> pd.DataFrame:
    """Display form: conditions x attributes, ``"acc [low, high]"`` (percent), with the
    pairing chance row of each condition's texts, and p-values vs shuffled fMRI."""
    order = list(dict.fromkeys(tidy["condition"]))
    cols = list(dict.fromkeys(tidy["attribute"]))
    cell = tidy.assign(v=[f"{a:.1f} [{lo:.1f}, {hi:.1f}]" for a, lo, hi in
                          zip(tidy["accuracy"], tidy["ci_low"], tidy["ci_high"])])
    wide = cell.pivot(index="condition", columns="attribute", values="v").loc[order, cols]
    first = tidy.drop_duplicates("condition").set_index("condition").loc[order]
    wide["distinct answers %"] = first["distinct"].round(1).astype(str)
    if p_values and tidy["p_vs_shuffle"].notna().any():
        p = tidy.pivot(index="condition", columns="attribute", values="p_vs_shuffle").loc[order]
        wide["p (agent) vs shuffled"] = p.get("agent", pd.Series(np.nan, index=order)).map(
            lambda v: "" if not np.isfinite(v) else f"{v:.4f}")
    pc = tidy.pivot(index="condition", columns="attribute", values="pairing_chance").loc[order, cols]
    chance_row = pc.mean(0).round(1).astype(str)
    chance_row.name = "pairing chance (mean over rows)"
    return pd.concat([wide, chance_row.to_frame().T]).fillna("")
