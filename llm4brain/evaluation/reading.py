"""Prose about a run's numbers: the paragraph that reads the summary table, and the examples.

Nothing is reordered, clipped or re-labelled: if the model scores below chance or above the
ceiling, the paragraph says so.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import METRIC_LABELS
from .stage2_results import CONDITION_ORDER
from .tables import subject_label

__all__ = ["reading_paragraph", "examples_with_questions"]


def _row(tidy, metric, cond):
    r = tidy[(tidy["metric"] == metric) & (tidy["condition"] == CONDITION_ORDER[cond])]
    if r.empty or not np.isfinite(r["estimate"].iloc[0]):
        return None
    return r.iloc[0]


def _iv(r) -> str:
    return f"{r['estimate']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"


def _compare(a, b) -> str:
    """'above' / 'below' / 'not distinguishable from' by interval overlap."""
    if a["low"] > b["high"]:
        return "above"
    if a["high"] < b["low"]:
        return "below"
    return "not distinguishable from"


def reading_paragraph(tidy: pd.DataFrame, *, profile: str = "", meta: Mapping | None = None,
                      metrics: Sequence[str] = ("bertscore", "sacrebleu1")) -> str:
    """One paragraph that reads the summary numbers as they are (nothing is reordered).

    Parameters
    ----------
    tidy : DataFrame
        Tidy summary (:func:`~llm4brain.evaluation.controls.summary_table`).
    profile : str
    meta : mapping, optional
        ``n_trials``, ``n_subjects``, ``n_shuffles``, ``bertscore_model`` for the wording.
    metrics : sequence of str
        Metrics discussed (those with no finite model value are skipped).

    Returns
    -------
    str
        Markdown paragraph. Comparisons use interval overlap: "above chance" means llm4brain's
        95 % bootstrap interval lies entirely above the 95 % range of the chance level.
    """
    meta = dict(meta or {})
    parts = []
    n, k = meta.get("n_trials"), meta.get("n_subjects")
    where = f"On the `{profile}` profile" if profile else "Here"
    if n:
        where += f" ({n} evaluation trials of {k} target subject{'s' if k != 1 else ''})"
    for m in metrics:
        mod = _row(tidy, m, "model")
        if mod is None:
            continue
        lab = METRIC_LABELS[m]
        s = f"{lab}: llm4brain scores {_iv(mod)}"
        ch = _row(tidy, m, "chance")
        if ch is not None:
            rel = _compare(mod, ch)
            s += (f"; with the fMRI shuffled across trials the same decoder scores {_iv(ch)}, so "
                  f"the model is **{rel} chance**")
        else:
            s += "; no chance level was computed, so this number cannot be judged on its own"
        base = _row(tidy, m, "baseline")
        if base is not None:
            s += (f"; the ridge + nearest-neighbour baseline scores {_iv(base)} "
                  f"(llm4brain is {_compare(mod, base)} it)")
        noda = _row(tidy, m, "noda")
        if noda is not None:
            s += (f"; without domain adaptation {_iv(noda)} (with DA is "
                  f"{_compare(mod, noda)} without)")
        ceil = _row(tidy, m, "ceiling")
        if ceil is not None:
            if ch is not None and ceil["estimate"] > ch["estimate"]:
                gap = ceil["estimate"] - ch["estimate"]
                frac = 100 * (mod["estimate"] - ch["estimate"]) / gap
                s += (f"; the noise ceiling is {_iv(ceil)}, so llm4brain covers {frac:.0f} % of "
                      f"the distance from chance to the ceiling")
            else:
                s += f"; the noise ceiling is {_iv(ceil)}"
                if ch is not None:
                    s += " (not above chance, so the fraction of the gap is undefined)"
            if mod["estimate"] > ceil["estimate"]:
                s += " (the model scores above its ceiling estimate)"
        up = _row(tidy, m, "upper")
        if up is not None:
            s += (f"; Video2Text itself agrees with the true descriptions at {_iv(up)}")
        parts.append(s + ".")
    if not parts:
        return f"{where}: no metric has a finite value for llm4brain; nothing to read."
    text = f"{where}, scored against Video2Text (percent). " + " ".join(parts)
    text += (" Intervals are 95 % bootstrap intervals over trials for decoders and the 2.5-97.5 "
             "percentiles over shuffles for chance; they show trial-sampling uncertainty of a "
             "single trained model, not variation across training runs. All scores are relative "
             "to the video-LLM's surrogate answers (Video2Text), not to what was shown: a decoder "
             "can at best reproduce Video2Text, whose own agreement with the truth (last column, "
             "simulated data only) bounds what the numbers say about the videos.")
    bm = meta.get("bertscore_model")
    if bm:
        text += (f" BERTScore uses `{Path(str(bm)).name}` without baseline rescaling, so its "
                 f"absolute level is not comparable with the paper's roberta-large numbers; "
                 f"compare each number with its chance level and ceiling instead.")
    return text


def examples_with_questions(examples: pd.DataFrame, *, metric: str = "bertscore") -> str:
    """The paper's example layout per subject: Question, Video2Text, fMRI2Text (Markdown)."""
    lines = []
    for g, sub in examples.groupby("subject", sort=True):
        lines.append(f"### {subject_label(g)}\n")
        for _, r in sub.iterrows():
            tag = f"trial {r['trial_index']}" if "trial_index" in r else ""
            if "clip_id" in r and str(r["clip_id"]):
                tag += f", clip {r['clip_id']}"
            lines.append(f"- *{r['rank']}* ({METRIC_LABELS[metric]} {r[metric]:.2f}; {tag})")
            if "instruction" in r and str(r["instruction"]):
                lines.append(f"  - **Question:** {r['instruction']}")
            lines.append(f"  - **Video2Text:** {r['reference']}")
            lines.append(f"  - **fMRI2Text:** {r['candidate']}")
        lines.append("")
    return "\n".join(lines)
