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

__all__ = ["reading_paragraph", "examples_with_questions", "da_reading", "recon_reading", "attribute_reading",
           "simulation_reading", "loading_reading"]


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


def da_reading(table: pd.DataFrame, ci, metric: str = "bertscore") -> str:
    """Notebook 05's conclusion in words: DA on and off beside chance, the baseline and the
    ceiling (the ``subject == "all"`` rows of its table), and the paired interval ``ci``
    (:class:`llm4brain.evaluation.controls.Interval`, DA on minus off, per trial)."""
    if not {"condition", "subject", metric} <= set(table.columns):
        raise KeyError(f"da_reading: the table needs columns condition, subject and {metric} "
                       f"(notebook 05's 05_da_ablation.csv)")
    allr = table[table.subject == "all"].set_index("condition")[metric]
    for need in ("DA on", "DA off"):
        if need not in allr:
            raise KeyError(f"da_reading: no {need!r} row for subject 'all' in the table")
    label = METRIC_LABELS.get(metric, metric)
    on, off = float(allr["DA on"]), float(allr["DA off"])
    if ci.low > 0:
        da = "DA helps: the paired interval lies above 0"
    elif ci.high < 0:
        da = "DA hurts: the paired interval lies below 0"
    else:
        da = "the paired interval includes 0, so this run does not tell DA on from off"
    parts = [f"**Conclusion.** On the target subjects' evaluation trials, fMRI2Text scores "
             f"{label} {on:.2f} with domain adaptation and {off:.2f} without (on minus off, "
             f"per trial: {ci}; {da})."]
    ref = []
    for cond, what in (("chance (mean)", "chance (the same decoder on shuffled fMRI)"),
                       ("ridge + NN baseline", "the ridge + nearest-neighbour baseline"),
                       ("semantic read-out", "the semantic read-out"),
                       ("noise ceiling", "the noise ceiling")):
        if cond in allr and np.isfinite(allr[cond]):
            ref.append(f"{what} {float(allr[cond]):.2f}")
    if ref:
        parts.append("Beside it: " + ", ".join(ref) + ".")
    if "chance (mean)" in allr and np.isfinite(allr["chance (mean)"]):
        ch = float(allr["chance (mean)"])
        parts.append("With DA it is " + ("above" if on > ch else "not above") + " its chance level"
                     + (f" and {'ahead of' if on > float(allr['ridge + NN baseline']) else 'not ahead of'}"
                        f" the baseline." if "ridge + NN baseline" in allr else "."))
    return " ".join(parts)


def recon_reading(table: pd.DataFrame, metrics=("PixCorr", "SSIM", "Early id (%)", "Late id (%)")) -> str:
    """Notebook 08's conclusion in words, from the Total row of its reconstruction table
    (columns ``"<metric> | <decoder>"``): the fMRI reconstruction beside chance, the ridge
    baseline and the ceiling, metric by metric."""
    if "Total" not in table.index:
        raise KeyError("recon_reading: the table has no 'Total' row (notebook 08's recon table)")
    t = table.loc["Total"]
    missing = [m for m in metrics if f"{m} | fMRI" not in t or f"{m} | chance" not in t]
    if missing:
        raise KeyError(f"recon_reading: no 'fMRI' and 'chance' columns for {missing}")
    fmt = lambda m, v: f"{v:.1f} %" if "%" in m else f"{v:.3f}"       # noqa: E731
    above = [m for m in metrics if t[f"{m} | fMRI"] > t[f"{m} | chance"]]
    parts = []
    for m in metrics:
        s = f"{m} {fmt(m, t[f'{m} | fMRI'])} (chance {fmt(m, t[f'{m} | chance'])}"
        for dec, name in (("ridge baseline", "ridge"), ("ceiling", "ceiling")):
            if f"{m} | {dec}" in t and np.isfinite(t[f"{m} | {dec}"]):
                s += f", {name} {fmt(m, t[f'{m} | {dec}'])}"
        parts.append(s + ")")
    verdict = ("above chance on every metric" if len(above) == len(metrics) else
               "above chance on " + (", ".join(above) if above else "no metric"))
    return (f"**Conclusion (mean of the target subjects).** The reconstruction from fMRI is "
            f"{verdict}: " + "; ".join(parts) + ". Identification is two-way (chance 50 %).")


def attribute_reading(attr: pd.DataFrame, condition: str = "video-LLM answer") -> str:
    """Notebook 04's conclusion in words: each attribute's accuracy of ``condition`` beside its
    pairing chance (rows of :func:`llm4brain.evaluation.attributes.attribute_summary`), the
    attributes whose 95 % interval lies above that chance, and the share of distinct answers."""
    need = {"condition", "attribute", "accuracy", "ci_low", "pairing_chance", "distinct"}
    if need - set(attr.columns):
        raise KeyError(f"attribute_reading: the table lacks {sorted(need - set(attr.columns))} "
                       f"(notebook 04's 04_attribute_accuracy.csv)")
    a = attr[attr.condition == condition]
    if a.empty:
        raise KeyError(f"attribute_reading: no rows for condition {condition!r}")
    above = [r.attribute for r in a.itertuples() if r.ci_low > r.pairing_chance]
    at = [r.attribute for r in a.itertuples() if r.ci_low <= r.pairing_chance]
    each = "; ".join(f"{r.attribute} {r.accuracy:.1f} % (chance {r.pairing_chance:.1f})"
                     for r in a.itertuples())
    txt = (f"**Conclusion.** Scored against the simulator's truth, the {condition}s name: {each}. "
           f"Above chance (95 % interval over clips): {', '.join(above) if above else 'none'}")
    txt += (f"; at chance: {', '.join(at)}." if at else ".")
    txt += (f" {float(a['distinct'].iloc[0]):.1f} % of the answers are distinct. Every fMRI-side "
            f"score against these answers is capped by them: a decoder can at best reproduce them.")
    return txt


def simulation_reading(subjects: pd.DataFrame, signal_sd: float, *, n_runs: int,
                       clips_per_run: int, n_targets: int) -> str:
    """Notebook 00's conclusion in words: the dataset written and its signal against its noise.

    ``subjects``: one row per subject with ``subject``, ``gain``, ``noise_sd_pct``,
    ``hrf_peak_shift_s``, ``shift_mm`` (the notebook's table of the simulator's subject
    parameters); ``signal_sd``: the across-trial sd of the noise-free amplitude in the first
    subject's responsive voxels (percent signal change)."""
    need = {"subject", "gain", "noise_sd_pct", "hrf_peak_shift_s", "shift_mm"}
    if need - set(subjects.columns):
        raise KeyError(f"simulation_reading: the table lacks {sorted(need - set(subjects.columns))}")
    t = subjects
    n = len(t)
    noise = t["noise_sd_pct"].astype(float)
    shift = np.array([np.linalg.norm(np.asarray(v, float)) for v in t["shift_mm"]])
    first = float(noise.iloc[0])
    return (f"**Conclusion.** {n} subjects ({n - n_targets} for training, {n_targets} held out as "
            f"targets), {n_runs} runs of {clips_per_run} clips each. In sub-{t['subject'].iloc[0]}'s "
            f"responsive voxels a trial's noise-free amplitude varies by {signal_sd:.2f} % across "
            f"clips against a thermal noise of {first:.2f} % per volume "
            f"({signal_sd / first:.1f} : 1 before averaging a block's volumes); across subjects the "
            f"noise is {noise.min():.2f}-{noise.max():.2f} %, the gain {t['gain'].min():.2f}-"
            f"{t['gain'].max():.2f}, the anatomical shift {shift.min():.1f}-{shift.max():.1f} mm and "
            f"the HRF peak shift {t['hrf_peak_shift_s'].abs().max():.2f} s at most. Notebook 01 "
            f"measures what this leaves in one trial.")


def loading_reading(reliability: pd.DataFrame, *, untuned: Sequence[str] = (),
                    lags: pd.DataFrame | None = None, block_s: Sequence[float] = (),
                    splits: Mapping[str, int] | None = None) -> str:
    """Notebook 01's conclusion in words: where and when the trials carry signal.

    ``reliability``: rows with ``region``, ``voxels``, ``median_single_trial_r`` (the
    notebook's ``01_reliability.csv``); ``untuned``: the regions the simulator tunes to nothing
    (negative controls); ``lags``: :func:`llm4brain.sim.lag_profile`'s rows (``time_s``,
    ``region``, ``r``; simulated data only) and ``block_s`` the times of the volumes a block
    keeps (:func:`llm4brain.sim.block_times`); ``splits``: trials per split."""
    need = {"region", "voxels", "median_single_trial_r"}
    if need - set(reliability.columns):
        raise KeyError(f"loading_reading: the table lacks {sorted(need - set(reliability.columns))} "
                       f"(notebook 01's 01_reliability.csv)")
    r = reliability.sort_values("median_single_trial_r", ascending=False)
    r = r[r["median_single_trial_r"].notna()]
    tuned = r[~r["region"].isin(list(untuned))]
    ctrl = r[r["region"].isin(list(untuned))]
    if r.empty:
        txt = ("**Conclusion.** Single-trial reliability cannot be measured here (too few trials "
               "of each class in each half of the runs).")
    else:
        txt = ("**Conclusion.** Median single-trial reliability (Spearman-Brown) by region: "
               + ", ".join(f"{x.region} {x.median_single_trial_r:.2f}" for x in tuned.itertuples()))
        if len(ctrl):
            txt += (f"; in the regions tuned to nothing (" + ", ".join(ctrl["region"]) + ") at most "
                    f"{ctrl['median_single_trial_r'].max():.2f}")
        txt += ". Real event-related fMRI gives about 0.05-0.3 in responsive visual voxels"
        high = list(tuned.loc[tuned["median_single_trial_r"] > 0.3, "region"])
        txt += (f"; above that range here: {', '.join(high)}." if high else ".")
    if lags is not None and len(lags):
        lg = lags[~lags["region"].isin(list(untuned))]
        mean_r = lg.groupby("time_s")["r"].mean()
        peak = float(mean_r.idxmax())
        txt += (f" The measured BOLD follows the trials' amplitudes best {peak:+g} s after the "
                f"onset (mean r {mean_r.max():.2f} over the tuned regions)")
        if len(block_s):
            at = [f"{t:+g} s (r {mean_r.loc[min(mean_r.index, key=lambda x: abs(x - t))]:.2f})"
                  for t in block_s]
            txt += "; a trial block keeps the volumes at " + ", ".join(at)
        txt += "."
    if splits:
        txt += " Trials per split: " + ", ".join(f"{k} {v}" for k, v in splits.items()) + "."
    return txt
