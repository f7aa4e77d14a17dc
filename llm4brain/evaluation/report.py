"""Evaluation report of a run: saved Stage II answers -> scores -> Tables 1-2, summary, examples.

Notebook 05 (Stage II) writes one TSV per decoder under ``<run_dir>/results/stage2/`` (the
format, file names and condition labels: :mod:`llm4brain.evaluation.stage2_results`).
:func:`llm4brain.evaluation.scoring.score_run` scores every file (cached under
``<run_dir>/eval/``); this module builds from the scores:

* **Table 1** (llm4brain, with DA) and **Table 2** (ablation without DA) in the paper's format:
  a row per target subject and a Total row (``eval.total_row``), in percent;
* the **summary table**: per metric, chance (mean [95 % range over shuffles]), baseline,
  llm4brain and its ablation (bootstrap 95 % CI over trials), noise ceiling, and Video2Text vs
  the truth;
* **qualitative examples** per target subject (best, middle, worst: failures included);
* a paragraph that reads the numbers (:mod:`llm4brain.evaluation.reading`).

:func:`llm4brain.evaluation.report_writer.write_report` writes them (``summary.md``, CSV,
Markdown, LaTeX).

Nothing is reordered, clipped or re-labelled: if the model scores below chance or above the
ceiling, the tables and the paragraph say so.

>>> ev = score_run(cfg)                   # doctest: +SKIP
>>> rep = build_report(ev, cfg)           # doctest: +SKIP
>>> paths = write_report(rep, cfg)        # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .controls import bootstrap_by_group, summary_table
from .metrics import METRICS
from .reading import reading_paragraph
from .scoring import EvalResults
from .stage2_results import CONDITION_ORDER, EXTRA_CONTROLS
from .tables import format_summary, select_examples, subject_table

__all__ = ["TABLES", "Report", "build_report"]


#: Tables written per profile: name stem -> (condition, caption).
TABLES: dict[str, tuple[str, str]] = {
    "table1": ("model", "llm4brain (with domain adaptation): fMRI2Text vs Video2Text"),
    "table2": ("noda", "Ablation, llm4brain without domain adaptation: fMRI2Text vs Video2Text"),
}


@dataclass
class Report:
    """Everything the notebook shows and writes (numbers in percent).

    Attributes
    ----------
    tables : dict name -> DataFrame
        ``table1`` (with DA), ``table2`` (without DA) in the paper's format.
    table_ci : dict name -> DataFrame
        Tidy bootstrap intervals per subject and Total (:func:`bootstrap_by_group`).
    ceiling_table : DataFrame or None
        The noise ceiling in the same format (for the ceiling line per subject).
    summary : DataFrame
        Tidy summary (metric, condition, estimate, low, high, interval, n).
    summary_wide : DataFrame
        Display form: metrics x conditions, ``"est [low, high]"``.
    examples : DataFrame
        Qualitative examples per subject.
    reading : str
        One paragraph reading the numbers.
    """

    profile: str
    tables: dict
    table_ci: dict
    ceiling_table: pd.DataFrame | None
    summary: pd.DataFrame
    summary_wide: pd.DataFrame
    examples: pd.DataFrame
    reading: str
    metadata: dict = field(default_factory=dict)
    #: ``{"truth": tidy, "video2text": tidy}`` from
    #: :func:`llm4brain.evaluation.attributes.stage2_attribute_tables` (simulated data), or None.
    attributes: dict | None = None
    #: :func:`llm4brain.evaluation.identification.stage2_identification`, or None.
    identification: pd.DataFrame | None = None
    #: Stage I's clip identification (``results/stage1/retrieval.csv``,
    #: :func:`llm4brain.evaluation.stage1.evaluate_stage1`), or None.
    retrieval: pd.DataFrame | None = None
    #: The scored results behind the tables (:class:`EvalResults`, set by
    #: :func:`llm4brain.evaluation.evaluate.evaluate_run`), or None.
    scores: EvalResults | None = None


def _ordered(tidy: pd.DataFrame) -> pd.DataFrame:
    order = {lab: i for i, lab in enumerate(CONDITION_ORDER.values())}
    t = tidy.copy()
    t["_c"] = t["condition"].map(lambda c: order.get(c, len(order)))
    t["_m"] = t["metric"].map({m: i for i, m in enumerate(METRICS)})
    return t.sort_values(["_m", "_c"], kind="stable").drop(columns=["_c", "_m"]) \
        .reset_index(drop=True)


def build_report(ev: EvalResults, cfg=None, *, n_boot: int | None = None, rng=None,
                 n_examples: int | None = None) -> Report:
    """Tables 1-2, the summary table, examples and the reading paragraph from scored results.

    Parameters
    ----------
    ev : EvalResults
        From :func:`score_run`.
    cfg : Config, optional
        ``eval.n_bootstrap``, ``eval.ci_alpha``, ``eval.total_row``, ``eval.n_examples``,
        ``run.seed``; default ``ev.eval_cfg``.
    n_boot, rng, n_examples : optional
        Overrides (rng default: ``run.seed``, so intervals are reproducible).

    Returns
    -------
    Report
    """
    ec = cfg.eval if cfg is not None else ev.eval_cfg
    n_boot = ec.n_bootstrap if n_boot is None else n_boot
    seed = cfg.run.seed if cfg is not None else ev.seed
    rng = np.random.default_rng(seed) if rng is None else rng
    profile = getattr(cfg, "profile", ev.profile) if cfg is not None else ev.profile
    tables, cis = {}, {}
    for name, (cond, _) in TABLES.items():
        s = getattr(ev, cond)
        if s is None:
            continue
        tables[name] = subject_table(s, total=ec.total_row)
        cis[name] = bootstrap_by_group(s, n_boot=n_boot, rng=rng, alpha=ec.ci_alpha,
                                       total=ec.total_row)
    ceiling_table = subject_table(ev.ceiling, total=ec.total_row) if ev.ceiling is not None \
        else None
    extra = {CONDITION_ORDER[k]: getattr(ev, k) for k in ("noda",) + EXTRA_CONTROLS
             + ("semantic_chance",) if getattr(ev, k, None) is not None}
    tidy = summary_table(ev.model, chance=ev.chance, baseline=ev.baseline, ceiling=ev.ceiling,
                         upper=ev.upper, extra=extra or None,
                         n_boot=n_boot, rng=rng, alpha=ec.ci_alpha, total=ec.total_row)
    tidy = _ordered(tidy)
    examples = select_examples(ev.model, ec.n_examples if n_examples is None else n_examples)
    n_sub = ev.model.per_trial["subject"].nunique()
    md = {**ev.metadata, "n_trials": len(ev.model.per_trial), "n_subjects": int(n_sub),
          "n_bootstrap": n_boot, "ci_alpha": ec.ci_alpha, "total_row": ec.total_row,
          "n_shuffles": len(ev.chance.draws) if ev.chance is not None else 0,
          "status": dict(ev.status)}
    return Report(profile, tables, cis, ceiling_table, tidy, format_summary(tidy), examples,
                  reading_paragraph(tidy, profile=profile, meta=md), md)
