"""Writing a run's report: Tables 1-2 (CSV, Markdown, LaTeX), the summary table, examples and
``summary.md`` into the profile's figures directory.

>>> paths = write_report(build_report(score_run(cfg), cfg), cfg)   # doctest: +SKIP
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_csv, write_text
from .attributes import attribute_wide
from .cider import CIDER_NOTE
from .identification import identification_wide
from .metrics import METRIC_LABELS, METRICS
from .reading import examples_with_questions
from .report import TABLES, Report
from .tables import to_markdown, write_summary_table, write_table

__all__ = ["summary_markdown", "write_report"]


def _settings_md(meta: Mapping) -> str:
    sig = meta.get("bleu_signature", {})
    items = [
        f"BERTScore F1: model `{meta.get('bertscore_model')}`, layer "
        f"{meta.get('bertscore_layers')}, idf {meta.get('bertscore_idf')}, no baseline "
        f"rescaling; mean over trials" + ("" if meta.get("bertscore_enabled", True)
                                          else " (**disabled**: BERTScore not computed)"),
        f"SacreBLEU-1/2/4: corpus-level over the trials of a row (n-gram statistics summed), "
        f"tokeniser `{(sig.get('sacrebleu1') or '').split('tok:')[-1].split('|')[0] or '?'}`, "
        f"uniform weights over orders 1..n; sacrebleu signature "
        f"`{' / '.join(dict.fromkeys(str(v) for v in sig.values())) or '?'}`",
        f"ROUGE-L F/P/R: rouge-score, Porter stemmer {meta.get('rouge_stemmer')}; mean over trials",
        CIDER_NOTE,
        f"Total row: `{meta.get('total_row')}`; intervals: {meta.get('n_bootstrap')} bootstrap "
        f"resamples of trials (stratified by subject), chance over {meta.get('n_shuffles')} "
        f"shuffles; 1 - alpha = {1 - float(meta.get('ci_alpha', 0.05)):.2f}",
    ]
    return "\n".join(f"- {i}" for i in items) + "\n"


RETRIEVAL_METHODS = {"stage1": "Stage I (llm4brain)", "ridge": "ridge baseline",
                     "semantic": "semantic retrieval (voxel class/scene read-outs)",
                     "ceiling": "ceiling (true encoding model, measured trial)"}
RETRIEVAL_SPLITS = {"val": "training subjects, held-out runs",
                    "eval": "target subjects, evaluation trials"}


def retrieval_wide(retrieval: pd.DataFrame) -> pd.DataFrame:
    """Stage I's clip identification over all trials of each split: one row per (split,
    method), top-1 / top-5 and their chance in percent, the permutation p-value and, where
    written, the paired test against the ridge."""
    t = retrieval[retrieval["subject"].astype(str) == "all"]
    rows = []
    for split, name in RETRIEVAL_SPLITS.items():
        for method, label in RETRIEVAL_METHODS.items():
            r = t[(t["split"] == split) & (t["method"] == method)]
            if r.empty:
                continue
            r = r.iloc[0]
            pr = r.get("p_vs_ridge", np.nan)
            rows.append({"trials": f"{name} ({int(r['n_trials'])})", "method": label,
                         "top-1": f"{100 * r['top1']:.1f}", "top-5": f"{100 * r['top5']:.1f}",
                         "top-1 uncentred": (f"{100 * r['top1_uncentred']:.1f}"
                                             if np.isfinite(r.get("top1_uncentred", np.nan))
                                             else ""),
                         "chance top-1 / top-5": f"{100 * r['chance_top1']:.0f} / "
                                                 f"{100 * r['chance_top5']:.0f}",
                         "p (permutation)": f"{r['p_value']:.3g}",
                         "p vs ridge (paired)": "" if method == "ridge" or not np.isfinite(pr)
                         else f"{pr:.2g}"})
    return pd.DataFrame(rows).set_index("method") if rows else pd.DataFrame()


def retrieval_markdown(retrieval: pd.DataFrame) -> list[str]:
    """The ``summary.md`` section of :func:`retrieval_wide`."""
    wide = retrieval_wide(retrieval)
    if wide.empty:
        return []
    n = int(retrieval["n_candidates"].iloc[0])
    return [f"## Clip identification from fMRI (Stage I, notebook 03)\n",
            f"Percent of trials whose own clip ranks first (top-1) or among the first five "
            f"(top-5) of {n} candidates (the trial's clip and {n - 1} clips of other trials, "
            f"the same for every method), by the cosine centred on the training trials' "
            f"means (top-1 uncentred: the raw cosine). p (permutation): trials and clips re-paired at "
            f"random; p vs ridge: one-sided exact McNemar test on the same trials. The "
            f"semantic retrieval is not the paper's Stage I: the voxels' class and scene "
            f"read-outs against video probes of the same labels. The ceiling (simulated data) "
            f"compares each measured trial with the noise-free responses of its candidates, "
            f"which the simulator's true encoding model gives: no decoder can know more.\n",
            to_markdown(wide)]


def summary_markdown(report: Report) -> str:
    """Content of ``summary.md``: reading, summary table, Tables 1-2, settings, examples."""
    out = [f"# llm4brain results: profile `{report.profile}`\n", report.reading + "\n",
           "## Summary: every metric beside its controls\n",
           "Percent (CIDEr-D x100, the COCO scale); brackets: 95 % interval (bootstrap over trials for decoders, spread over "
           "shuffles for chance).\n", to_markdown(report.summary_wide)]
    for name, (_, caption) in TABLES.items():
        if name in report.tables:
            title = re.sub(r"^table(\d+)$", r"Table \1", name)
            out += [f"## {title}: {caption}\n", to_markdown(report.tables[name])]
    if report.attributes:
        out += ["## Attribute accuracy: does the text name what was shown?\n",
                "Percent of evaluation trials whose text names the clip's true agent, action, "
                "colour, size, direction, speed and scene (read with the simulator's lexicon; "
                "an unsaid size counts as medium, as the descriptions leave it unsaid); "
                "brackets: 95 % bootstrap interval over trials; p: one-sided sign-flip test of "
                "the per-trial correctness against the mean of the shuffled-fMRI decodes; "
                "pairing chance: what the same texts score when paired with random clips.\n",
                to_markdown(attribute_wide(report.attributes["truth"]))]
        if "video2text" in report.attributes:
            out += ["### The same, against the attributes Video2Text names (the decoder's "
                    "target)\n", to_markdown(attribute_wide(report.attributes["video2text"]))]
    if report.identification is not None and len(report.identification):
        n_way = int(report.identification["n_way"].iloc[0])
        out += [f"## {n_way}-way caption identification\n",
                f"Percent of trials whose decoded text is closer to its own trial's reference "
                f"than to those of {n_way - 1} other trials drawn at random (Mind Captioning's "
                f"test; chance 1/{n_way} whatever the similarity; ties share). Similarity: "
                f"BERTScore F1, or the number of attributes two texts name alike. Brackets: "
                f"95 % bootstrap interval over trials.\n",
                to_markdown(identification_wide(report.identification))]
    if report.retrieval is not None and len(report.retrieval):
        out += retrieval_markdown(report.retrieval)
    out += ["## Metric settings\n", _settings_md(report.metadata),
            "## Examples (best to worst per target subject)\n",
            examples_with_questions(report.examples)]
    return "\n".join(out)


def _subject_ci_wide(tidy_ci: pd.DataFrame) -> pd.DataFrame:
    t = tidy_ci[tidy_ci["metric"].isin(METRICS)].copy()
    t["cell"] = [f"{e:.2f} [{lo:.2f}, {hi:.2f}]" if np.isfinite(e) else "--"
                 for e, lo, hi in zip(t["estimate"], t["low"], t["high"])]
    groups = list(pd.unique(t["group"]))
    wide = t.pivot(index="group", columns="metric", values="cell").reindex(
        index=groups, columns=[m for m in METRICS if m in set(t["metric"])])
    wide.columns = [METRIC_LABELS[m] for m in wide.columns]
    wide.index.name = "Subject"
    return wide


def write_report(report: Report, cfg_or_dir, *, summary_name: str = "summary.md"
                 ) -> dict[str, Path]:
    """Write tables (CSV/MD/LaTeX), the summary table, examples and ``summary.md``.

    Files (``<p>`` = the profile, so an Urgen run does not overwrite HAD's tables):
    ``table1_<p>``, ``table2_<p>`` (+ ``_ci`` variants with intervals),
    ``summary_<p>`` (CSV tidy, MD/LaTeX wide), ``examples_<p>`` (CSV, MD) and ``summary.md``.

    Parameters
    ----------
    report : Report
    cfg_or_dir : Config (its ``figures_dir``) or a directory

    Returns
    -------
    dict
        Name -> path of every file written.
    """
    out_dir = Path(cfg_or_dir.figures_dir) if hasattr(cfg_or_dir, "figures_dir") \
        else Path(cfg_or_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    p = report.profile or "run"
    paths: dict[str, Path] = {}
    for name, (_, caption) in TABLES.items():
        if name not in report.tables:
            continue
        cap = f"{caption} (profile {p}, percent; CIDEr-D x100)"
        for fmt, path in write_table(report.tables[name], out_dir, f"{name}_{p}",
                                     caption=cap).items():
            paths[f"{name}.{fmt}"] = path
        for fmt, path in write_table(_subject_ci_wide(report.table_ci[name]), out_dir,
                                     f"{name}_{p}_ci", caption=cap + ", 95 % bootstrap CI").items():
            paths[f"{name}_ci.{fmt}"] = path
    for fmt, path in write_summary_table(report.summary, out_dir, f"summary_{p}").items():
        paths[f"summary.{fmt}"] = path
    ex_csv, ex_md = out_dir / f"examples_{p}.csv", out_dir / f"examples_{p}.md"
    write_csv(report.examples, ex_csv, index=False)
    write_text(ex_md, f"# Examples, profile `{p}`\n\n" + examples_with_questions(report.examples))
    paths["examples.csv"], paths["examples.md"] = ex_csv, ex_md
    for kind, tidy in (report.attributes or {}).items():
        stem = f"attributes_{p}" + ("" if kind == "truth" else f"_vs_{kind}")
        write_csv(tidy, out_dir / f"{stem}.csv", index=False)
        write_text(out_dir / f"{stem}.md", to_markdown(attribute_wide(tidy)))
        paths[f"{stem}.csv"], paths[f"{stem}.md"] = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    if report.identification is not None:
        write_csv(report.identification, out_dir / f"identification_{p}.csv", index=False)
        write_text(out_dir / f"identification_{p}.md",
                   to_markdown(identification_wide(report.identification)))
        paths["identification.csv"] = out_dir / f"identification_{p}.csv"
    paths["summary_md"] = out_dir / summary_name
    write_text(paths["summary_md"], summary_markdown(report))
    return paths
