"""One call from a run's saved answers to its report: :func:`evaluate_run`.

Notebook 06 calls it and shows what it returns; scripts and tests can do the same::

    report = evaluate_run(load_config("default"))      # doctest: +SKIP
    report.summary_wide                                # doctest: +SKIP

The chain: :func:`llm4brain.evaluation.stage2_results.load_stage2_results` (notebook 05's TSVs)
-> :func:`llm4brain.evaluation.scoring.score_run` (cached) -> attribute accuracy against the
simulator's truth (simulated data only) -> N-way caption identification -> Stage I's clip
identification (notebook 03's ``results/stage1/retrieval.csv``) ->
:func:`llm4brain.evaluation.report.build_report` -> optionally
:func:`llm4brain.evaluation.report_writer.write_report`.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..data import load_stimuli
from .attributes import stage2_attribute_tables
from .identification import stage2_identification
from .metrics import TextScorer
from .report import Report, build_report
from .report_writer import write_report
from .scoring import score_run
from .stage2_results import load_stage2_results

__all__ = ["evaluate_run", "stage1_retrieval"]


def stage1_retrieval(cfg) -> pd.DataFrame | None:
    """Stage I's clip identification table of the run (notebook 03), or None when absent."""
    path = Path(cfg.run_dir) / "results" / "stage1" / "retrieval.csv"
    return pd.read_csv(path, dtype={"subject": str}) if path.is_file() else None


def evaluate_run(cfg, *, scorer: TextScorer | None = None, rebuild: bool = False,
                 write: bool = True, stim: pd.DataFrame | None = None) -> Report:
    """Score a run's saved Stage II answers and build its report (Tables 1-2, summary, reading).

    Parameters
    ----------
    cfg : Config
        The profile; its run directory must hold notebook 05's results.
    scorer : TextScorer, optional
        Default ``TextScorer(cfg.eval)``.
    rebuild : bool
        Re-score instead of reading the cached scores.
    write : bool
        Write the report to ``cfg.figures_dir`` (``summary.md``, CSV, Markdown, LaTeX); the
        written paths are in ``report.metadata["paths"]``.
    stim : DataFrame, optional
        The stimulus table (default :func:`llm4brain.data.load_stimuli`); attribute accuracy
        is computed when it carries the true attributes (``agent``, ``scene``).

    Returns
    -------
    Report
        With ``report.scores`` (the :class:`EvalResults`), ``report.attributes`` (or None on
        real data), ``report.identification`` and ``report.retrieval`` (or None without
        notebook 03's table).
    """
    scorer = scorer if scorer is not None else TextScorer(cfg.eval)
    results = load_stage2_results(cfg)
    ev = score_run(cfg, scorer=scorer, results=results, rebuild=rebuild)
    stim = load_stimuli(cfg) if stim is None else stim
    simulated = {"agent", "scene"} <= set(stim.columns)
    report = build_report(ev, cfg)
    report.scores = ev
    report.attributes = (stage2_attribute_tables(results, stim, n_boot=cfg.eval.n_bootstrap,
                                                 n_perm=max(1000, 20 * cfg.eval.n_permutations),
                                                 rng=cfg.run.seed) if simulated else None)
    report.identification = stage2_identification(results, scorer, stim=stim if simulated else None,
                                                  n_way=min(20, len(results.model)),
                                                  n_boot=cfg.eval.n_bootstrap, rng=cfg.run.seed)
    report.retrieval = stage1_retrieval(cfg)
    if write:
        report.metadata["paths"] = write_report(report, cfg)
    return report
