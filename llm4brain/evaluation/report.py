"""Evaluation report of a run: saved Stage II answers -> scores -> Tables 1-2, summary, examples.

Notebook 05 (Stage II) writes one TSV per decoder under ``<run_dir>/results/stage2/``, each with
the columns :data:`RESULT_COLUMNS` (one row per evaluation trial of a target subject):

==========================  ===========================================================
condition                   file (see :data:`STAGE2_FILES`, the one place to adjust names)
==========================  ===========================================================
``model``                   llm4brain with domain adaptation (the paper's method)
``noda``                    the same without domain adaptation (ablation)
``chance``                  ``chance_shuffle_<k>.tsv``: fMRI shuffled across trials, k = 0..K-1
``baseline``                ridge to video embedding -> nearest training clip's answer
``ceiling``                 ridge + NN fitted and applied on the simulator's noise-free responses (simulated only)
==========================  ===========================================================

This module scores every file with one :class:`~llm4brain.evaluation.metrics.TextScorer`
(fMRI2Text against Video2Text), adds the *upper reference* (Video2Text against the true clip
descriptions, simulated data only), caches every score under ``<run_dir>/eval/`` keyed by a
hash of the texts and the metric settings (an unchanged input is never re-scored, so the
BERTScore model is not even loaded), and builds:

* **Table 1** (llm4brain, with DA) and **Table 2** (ablation without DA) in the paper's format:
  a row per target subject and a Total row (``eval.total_row``), in percent;
* the **summary table**: per metric, chance (mean [95 % range over shuffles]), baseline,
  llm4brain and its ablation (bootstrap 95 % CI over trials), noise ceiling, and Video2Text vs
  the truth;
* **qualitative examples** per target subject (best, middle, worst: failures included);
* ``summary.md``: the summary table, Tables 1-2 and a paragraph that reads the numbers.

Nothing is reordered, clipped or re-labelled: if the model scores below chance or above the
ceiling, the tables and the paragraph say so.

>>> ev = score_run(cfg)                   # doctest: +SKIP
>>> rep = build_report(ev, cfg)           # doctest: +SKIP
>>> paths = write_report(rep, cfg)        # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .attributes import attribute_wide
from .identification import identification_wide
from .controls import (CONDITIONS, ChanceResult, _chance_from_scores, bootstrap_by_group,
                       summary_table)
from .metrics import METRIC_LABELS, METRICS, TextScorer, TextScores
from .tables import (format_summary, select_examples, subject_label, subject_table, to_markdown,
                     write_summary_table, write_table)

__all__ = [
    "RESULT_COLUMNS", "STAGE2_FILES", "EXTRA_CONTROLS", "CHANCE_PATTERN", "TABLES", "CONDITION_ORDER",
    "stage2_results_dir", "resolve_stage2_files", "read_stage2_tsv", "load_descriptions",
    "Stage2Results", "load_stage2_results", "EvalResults", "score_run", "Report",
    "build_report", "reading_paragraph", "summary_markdown", "examples_with_questions",
    "write_report",
]

#: Columns every Stage II result TSV has (one row per evaluation trial).
RESULT_COLUMNS = ("subject", "trial_index", "clip_id", "stim_file", "instruction", "fmri2text",
                  "video2text")

#: File names (first existing wins) of each Stage II result under ``results/stage2/``.
#: Stage II (``llm4brain/training/stage2.py``) names them; adjust here only.
STAGE2_FILES: dict[str, tuple[str, ...]] = {
    "model": ("fmri2text_da.tsv", "fmri2text.tsv"),
    "noda": ("fmri2text_noda.tsv",),
    "baseline": ("baseline_nn.tsv",),
    "ceiling": ("ceiling.tsv",),
    "no_brain": ("no_brain.tsv",),
    "constant": ("constant.tsv",),
}
#: Controls that are decoders of their own (written by Stage II, scored like the model).
EXTRA_CONTROLS = ("no_brain", "constant")
#: Chance decodings (fMRI shuffled across trials), one file per shuffle ``k``.
CHANCE_PATTERN = re.compile(r"^chance_shuffle_(\d+)\.tsv$")

#: Tables written per profile: name stem -> (condition, caption).
TABLES: dict[str, tuple[str, str]] = {
    "table1": ("model", "llm4brain (with domain adaptation): fMRI2Text vs Video2Text"),
    "table2": ("noda", "Ablation, llm4brain without domain adaptation: fMRI2Text vs Video2Text"),
}

#: Condition labels of the summary table, in column order.
CONDITION_ORDER: dict[str, str] = {
    "chance": CONDITIONS["chance"],
    "pairing_chance": CONDITIONS["pairing_chance"],
    "baseline": CONDITIONS["baseline"],
    "model": CONDITIONS["model"],
    "noda": "llm4brain without DA",
    "no_brain": "LLM without brain tokens",
    "constant": "constant answer (most frequent training answer)",
    "ceiling": CONDITIONS["ceiling"],
    "upper": CONDITIONS["upper"],
}

_CACHE_VERSION = 1
_TEXT_COLS = ("fmri2text", "video2text")


# ---------------------------------------------------------------------------- locating files
def _run_dir(cfg_or_run_dir) -> Path:
    if hasattr(cfg_or_run_dir, "run_dir"):
        return Path(cfg_or_run_dir.run_dir)
    return Path(cfg_or_run_dir)


def stage2_results_dir(cfg_or_run_dir) -> Path:
    """``<run_dir>/results/stage2`` (a Config or the run directory itself)."""
    return _run_dir(cfg_or_run_dir) / "results" / "stage2"


def resolve_stage2_files(cfg_or_dir) -> dict[str, Path | list[Path] | None]:
    """Which Stage II result files exist (the single place that knows their names).

    Parameters
    ----------
    cfg_or_dir : Config, run directory, or the ``results/stage2`` directory itself

    Returns
    -------
    dict
        ``model``, ``noda``, ``baseline``, ``ceiling``: Path or None when absent;
        ``chance``: list of Paths sorted by shuffle index (empty when absent).

    Raises
    ------
    FileNotFoundError
        The directory does not exist or holds no result of the model with DA.
    """
    d = Path(cfg_or_dir) if not hasattr(cfg_or_dir, "run_dir") else stage2_results_dir(cfg_or_dir)
    if d.name != "stage2" and (stage2_results_dir(d)).is_dir():
        d = stage2_results_dir(d)
    if not d.is_dir():
        raise FileNotFoundError(f"no Stage II results at {d}: run notebook "
                                f"05_stage2_domain_adaptation (it writes results/stage2/*.tsv)")
    out: dict[str, Path | list[Path] | None] = {}
    for cond, names in STAGE2_FILES.items():
        out[cond] = next((d / n for n in names if (d / n).is_file()), None)
    chance = [(int(m.group(1)), p) for p in d.iterdir() if (m := CHANCE_PATTERN.match(p.name))]
    out["chance"] = [p for _, p in sorted(chance)]
    man = d / "manifest.json"
    if man.is_file():  # written by llm4brain.training.stage2.write_stage2_outputs: authoritative
        out.update(_from_manifest(json.loads(man.read_text()), d, man))
    if out["model"] is None:
        raise FileNotFoundError(f"{d} has no result of the model with domain adaptation (one of "
                                f"{STAGE2_FILES['model']}; files present: "
                                f"{sorted(p.name for p in d.iterdir())}). Re-run notebook 05, or "
                                f"adjust llm4brain.evaluation.report.STAGE2_FILES")
    return out


def _from_manifest(m: Mapping, d: Path, path: Path) -> dict:
    """File roles from Stage II's ``manifest.json`` (``fmri2text``: name -> file, ``main``,
    ``chance``: [files], ``baseline``, ``ceiling``)."""
    def existing(name):
        if not name:
            return None
        p = d / name
        if not p.is_file():
            raise FileNotFoundError(f"{path} lists {name} but {p} does not exist: re-run "
                                    f"notebook 05 (Stage II)")
        return p
    out: dict = {}
    dec = dict(m.get("fmri2text") or {})
    main = "da" if "da" in dec else m.get("main")
    if main in dec:
        out["model"] = existing(dec[main])
    out["noda"] = existing(dec["noda"]) if "noda" in dec and main != "noda" else None
    if "chance" in m:
        out["chance"] = [existing(f) for f in m["chance"]]
    for cond in ("baseline", "ceiling") + EXTRA_CONTROLS:
        if cond in m:
            out[cond] = existing(m[cond])
    return out


def read_stage2_tsv(path: str | os.PathLike) -> pd.DataFrame:
    """One Stage II result TSV, validated.

    Returns
    -------
    DataFrame of shape (n_trials, >= 7)
        :data:`RESULT_COLUMNS` (``subject`` as str, ``trial_index`` as int, texts with missing
        answers as ``""``) plus any extra columns of the file.

    Raises
    ------
    ValueError
        Missing columns, no rows, or a (subject, trial_index) pair listed twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run notebook 05 (Stage II) first")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing} (has {list(df.columns)}); a Stage II "
                         f"result needs {list(RESULT_COLUMNS)}")
    if df.empty:
        raise ValueError(f"{path} has no trials")
    try:
        df["trial_index"] = df["trial_index"].astype(int)
    except ValueError as exc:
        raise ValueError(f"{path}: column trial_index must hold integers ({exc})") from None
    dup = df.duplicated(["subject", "trial_index"])
    if dup.any():
        raise ValueError(f"{path}: trials listed twice: "
                         f"{df.loc[dup, ['subject', 'trial_index']].head().values.tolist()}")
    for c in _TEXT_COLS:
        df[c] = df[c].astype(str)
    return df.reset_index(drop=True)


def load_descriptions(cfg=None, run_dir: str | os.PathLike | None = None) -> pd.Series | None:
    """True description of each clip (simulated data only), indexed by ``stim_file``.

    Looks in ``<data_root>/stimuli/descriptions.tsv`` (:func:`llm4brain.data.load_stimuli`),
    then in the caption tables of notebook 04 (``<run_dir>/captions/captions_*.tsv``, whose
    ``description`` column is filled on simulated data).

    Returns
    -------
    Series of str or None
        None when no description exists (real data: no text ground truth).
    """
    if cfg is not None:
        try:
            has_desc = (cfg.data_root / "stimuli" / "descriptions.tsv").is_file()
        except Exception:  # noqa: BLE001 - an unset ${HAD_ROOT} is not an error here
            has_desc = False
        if has_desc:
            from ..data import load_stimuli
            s = load_stimuli(cfg)
            s = s[s["description"].astype(str).str.strip().ne("")]
            if len(s):
                return s.drop_duplicates("stim_file").set_index("stim_file")["description"] \
                    .astype(str)
    rd = Path(run_dir) if run_dir is not None else (_run_dir(cfg) if cfg is not None else None)
    if rd is None:
        return None
    parts = []
    for p in sorted((rd / "captions").glob("captions_*.tsv")):
        t = pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False)
        if {"stim_file", "description"} <= set(t.columns):
            parts.append(t[["stim_file", "description"]])
    if not parts:
        return None
    t = pd.concat(parts)
    t = t[t["description"].str.strip().ne("")].drop_duplicates("stim_file")
    return t.set_index("stim_file")["description"] if len(t) else None


# ---------------------------------------------------------------------------- loading
@dataclass
class Stage2Results:
    """The saved decodings of a run (frames of :func:`read_stage2_tsv`).

    Attributes
    ----------
    model : DataFrame
        llm4brain with domain adaptation; defines the evaluation trials and their order.
    noda, baseline, ceiling : DataFrame or None
    chance : list of DataFrame
        One per shuffle, rows aligned to ``model`` (same trials, same order).
    descriptions : Series or None
        True description by ``stim_file`` (simulated data).
    files : dict
        The paths read (:func:`resolve_stage2_files`).
    """

    model: pd.DataFrame
    noda: pd.DataFrame | None = None
    chance: list[pd.DataFrame] = field(default_factory=list)
    baseline: pd.DataFrame | None = None
    ceiling: pd.DataFrame | None = None
    descriptions: pd.Series | None = None
    files: dict = field(default_factory=dict)
    no_brain: pd.DataFrame | None = None
    constant: pd.DataFrame | None = None

    def available(self) -> pd.DataFrame:
        """One row per condition: file, trials (for the notebook's overview)."""
        rows = []
        for cond in ("model", "noda", "baseline", "ceiling") + EXTRA_CONTROLS:
            df, f = getattr(self, cond), self.files.get(cond)
            rows.append(dict(condition=CONDITION_ORDER[cond], file=f.name if f else "--",
                             n_trials=len(df) if df is not None else 0))
        rows.append(dict(condition=CONDITION_ORDER["chance"],
                         file=f"{len(self.chance)} x chance_shuffle_<k>.tsv" if self.chance
                         else "--", n_trials=len(self.chance[0]) if self.chance else 0))
        rows.append(dict(condition=CONDITION_ORDER["upper"],
                         file="true descriptions" if self.descriptions is not None else "--",
                         n_trials=len(self.model) if self.descriptions is not None else 0))
        return pd.DataFrame(rows)


def _align(df: pd.DataFrame, ref: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Rows of ``df`` in the trial order of ``ref``; same trials and Video2Text required."""
    key = ["subject", "trial_index"]
    a = df.set_index(key)
    want = pd.MultiIndex.from_frame(ref[key])
    missing, extra = want.difference(a.index), a.index.difference(want)
    if len(missing) or len(extra):
        raise ValueError(f"{path} covers other trials than the model's result file: "
                         f"{len(missing)} missing, {len(extra)} extra (e.g. "
                         f"{list(missing[:3]) or list(extra[:3])}). A chance decoding must "
                         f"decode the same evaluation trials; re-run notebook 05")
    out = a.loc[want].reset_index()
    bad = out["video2text"].str.strip().to_numpy() != ref["video2text"].str.strip().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}: Video2Text of trial {tuple(ref.loc[i, key])} differs from "
                         f"the model's result file ({out.loc[i, 'video2text']!r} vs "
                         f"{ref.loc[i, 'video2text']!r}); the chance decodings must keep each "
                         f"trial's own reference. Re-run notebook 05")
    return out


def load_stage2_results(cfg_or_run_dir, *, descriptions: pd.Series | None | bool = True
                        ) -> Stage2Results:
    """Read every saved Stage II result of a run.

    Parameters
    ----------
    cfg_or_run_dir : Config or path (run directory or its ``results/stage2``)
    descriptions : Series, None, or True
        True descriptions by ``stim_file``; True (default) looks them up with
        :func:`load_descriptions`; None skips the upper reference.

    Returns
    -------
    Stage2Results
    """
    files = resolve_stage2_files(cfg_or_run_dir)
    model = read_stage2_tsv(files["model"])
    other = {c: read_stage2_tsv(files[c]) if files.get(c) is not None else None
             for c in ("noda", "baseline", "ceiling") + EXTRA_CONTROLS}
    chance = [_align(read_stage2_tsv(p), model, p) for p in files["chance"]]
    if descriptions is True:
        cfg = cfg_or_run_dir if hasattr(cfg_or_run_dir, "run_dir") else None
        rd = None if cfg is not None else Path(files["model"]).parents[2]
        descriptions = load_descriptions(cfg, rd)
    return Stage2Results(model, other["noda"], chance, other["baseline"], other["ceiling"],
                         descriptions if isinstance(descriptions, pd.Series) else None, files,
                         other["no_brain"], other["constant"])


# ---------------------------------------------------------------------------- scoring + cache
def _settings_key(scorer: TextScorer) -> dict:
    c = scorer.cfg
    return dict(version=_CACHE_VERSION, bertscore=scorer.use_bertscore,
                bertscore_model=c.bertscore_model, bertscore_layers=c.bertscore_layers,
                bertscore_idf=c.bertscore_idf, bleu_tokenize=c.bleu_tokenize,
                bleu_lowercase=c.bleu_lowercase, rouge_stemmer=c.rouge_stemmer)


def _input_key(scorer: TextScorer, cand_lists, refs, meta: pd.DataFrame, extra=None) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([_settings_key(scorer), extra], sort_keys=True, default=str).encode())
    h.update(pd.util.hash_pandas_object(meta.astype(str), index=False).to_numpy().tobytes())
    for texts in [refs, *cand_lists]:
        h.update(json.dumps(list(texts)).encode())
    return h.hexdigest()[:16]


def _meta(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in _TEXT_COLS if c in df.columns]).reset_index(drop=True)


def _load_cached(cache_dir: Path, name: str, key: str) -> TextScores | None:
    try:
        s = TextScores.load(cache_dir, name)
    except (FileNotFoundError, ValueError, KeyError):
        return None
    return s if s.metadata.get("input_key") == key else None


def _score_cached(scorer, cache_dir, name, cands, refs, meta, status, rebuild) -> TextScores:
    key = _input_key(scorer, [cands], refs, meta)
    hit = None if rebuild else _load_cached(cache_dir, name, key)
    if hit is not None:
        status[name] = "cached"
        return hit
    res = scorer.score(cands, refs, meta=meta)
    res.metadata = {**res.metadata, "input_key": key}
    res.save(cache_dir, name)
    status[name] = "scored"
    return res


@dataclass
class EvalResults:
    """Every score of a run (percent), as cached under ``<run_dir>/eval``.

    Attributes
    ----------
    model, noda, baseline, ceiling : TextScores or None
        fMRI2Text of each decoder against Video2Text, per trial.
    upper : TextScores or None
        Video2Text (candidate) against the true description (reference), per evaluation trial.
    chance : ChanceResult or None
        Aggregates per shuffle (and per subject) of the chance decodings.
    chance_trials : TextScores or None
        Per-trial scores of every shuffle (column ``draw``), for distributions.
    status : dict
        name -> ``cached`` or ``scored``.
    """

    model: TextScores
    noda: TextScores | None = None
    chance: ChanceResult | None = None
    chance_trials: TextScores | None = None
    baseline: TextScores | None = None
    ceiling: TextScores | None = None
    upper: TextScores | None = None
    profile: str = ""
    eval_cfg: object = None
    seed: int = 0
    status: dict = field(default_factory=dict)
    no_brain: TextScores | None = None
    constant: TextScores | None = None

    def conditions(self) -> dict:
        """Non-empty results by condition key (the keys of :data:`CONDITION_ORDER`)."""
        return {k: getattr(self, k) for k in ("chance", "baseline", "model", "noda", "ceiling",
                                              "upper") + EXTRA_CONTROLS
                if getattr(self, k) is not None}

    @property
    def metadata(self) -> dict:
        """Metric settings (BERTScore model, layers, BLEU signature ...) behind the numbers."""
        return {k: v for k, v in self.model.metadata.items() if k != "input_key"}


def score_run(cfg, *, scorer: TextScorer | None = None, results: Stage2Results | None = None,
              rebuild: bool = False, cache_dir: str | os.PathLike | None = None) -> EvalResults:
    """Score every saved Stage II result of a run, reusing cached scores.

    Parameters
    ----------
    cfg : Config
        ``run_dir`` (where the results are), ``eval`` (metric settings), ``profile``.
    scorer : TextScorer, optional
        Default ``TextScorer(cfg.eval)``. The BERTScore model loads only if something has to be
        scored (once per process).
    results : Stage2Results, optional
        Default :func:`load_stage2_results` (``cfg``).
    rebuild : bool
        Score again even when the cache matches.
    cache_dir : path, optional
        Default ``<run_dir>/eval``.

    Returns
    -------
    EvalResults
        Cached scores are reused when the texts and metric settings are unchanged; any change
        of a TSV (or of ``eval.*`` metric settings) re-scores that condition only.
    """
    scorer = scorer if scorer is not None else TextScorer(cfg.eval)
    res = results if results is not None else load_stage2_results(cfg)
    cache = Path(cache_dir) if cache_dir is not None else Path(cfg.run_dir) / "eval"
    status: dict = {}
    out = EvalResults(model=None,  # type: ignore[arg-type]  # set just below
                      profile=getattr(cfg, "profile", ""), eval_cfg=scorer.cfg,
                      seed=int(getattr(getattr(cfg, "run", None), "seed", 0)), status=status)
    for cond in ("model", "noda", "baseline", "ceiling") + EXTRA_CONTROLS:
        df = getattr(res, cond, None)
        if df is not None:
            setattr(out, cond, _score_cached(scorer, cache, cond, df["fmri2text"].tolist(),
                                             df["video2text"].tolist(), _meta(df), status,
                                             rebuild))
    model = res.model
    if res.descriptions is not None:
        found = model["stim_file"].isin(res.descriptions.index).to_numpy()
        if found.any():
            sub = model[found].reset_index(drop=True)
            out.upper = _score_cached(scorer, cache, "upper", sub["video2text"].tolist(),
                                      res.descriptions.loc[sub["stim_file"]].tolist(), _meta(sub),
                                      status, rebuild)
    if len(res.chance) >= 2:
        out.chance, out.chance_trials = _chance_cached(scorer, cache, res.chance, model, status,
                                                       rebuild)
    elif len(res.chance) == 1:
        status["chance"] = "skipped: one shuffle cannot give an interval (stage2 n_shuffles >= 2)"
    return out


def _chance_cached(scorer, cache, chance_frames, model, status, rebuild):
    refs = model["video2text"].tolist()
    meta = _meta(model)
    cands = [c["fmri2text"].tolist() for c in chance_frames]
    c = scorer.cfg
    key = _input_key(scorer, cands, refs, meta, extra=dict(alpha=c.ci_alpha, total=c.total_row))
    if not rebuild:
        per = _load_cached(cache, "chance_trials", key)
        try:
            ch = ChanceResult.load(cache, "chance")
        except FileNotFoundError:
            ch = None
        if per is not None and ch is not None and ch.metadata.get("input_key") == key:
            status["chance"] = "cached"
            return ch, per
    scores = scorer.score_many(cands, refs, meta=meta)
    md = {**scores[0].metadata, "input_key": key}
    ch = _chance_from_scores(scores, "fmri_shuffle", c.ci_alpha, c.total_row, "subject", None,
                             {"n_draws": len(scores), "total": c.total_row, **md})
    ch.save(cache, "chance")
    per = TextScores(pd.concat([s.per_trial.assign(draw=k) for k, s in enumerate(scores)],
                               ignore_index=True), {}, md)
    per.save(cache, "chance_trials")
    status["chance"] = "scored"
    return ch, per


# ---------------------------------------------------------------------------- the report
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
             if getattr(ev, k, None) is not None}
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


# ---------------------------------------------------------------------------- reading
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


# ---------------------------------------------------------------------------- writing
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


def _settings_md(meta: Mapping) -> str:
    sig = meta.get("bleu_signature", {})
    items = [
        f"BERTScore F1: model `{meta.get('bertscore_model')}`, layer "
        f"{meta.get('bertscore_layers')}, idf {meta.get('bertscore_idf')}, no baseline "
        f"rescaling; mean over trials" + ("" if meta.get("bertscore_enabled", True)
                                          else " (**disabled**: BERTScore not computed)"),
        f"SacreBLEU-1/2: corpus-level over the trials of a row (n-gram statistics summed), "
        f"tokeniser `{(sig.get('sacrebleu1') or '').split('tok:')[-1].split('|')[0] or '?'}`, "
        f"uniform weights over orders 1..n; sacrebleu signature "
        f"`{' / '.join(dict.fromkeys(str(v) for v in sig.values())) or '?'}`",
        f"ROUGE-L F/P/R: rouge-score, Porter stemmer {meta.get('rouge_stemmer')}; mean over trials",
        f"Total row: `{meta.get('total_row')}`; intervals: {meta.get('n_bootstrap')} bootstrap "
        f"resamples of trials (stratified by subject), chance over {meta.get('n_shuffles')} "
        f"shuffles; 1 - alpha = {1 - float(meta.get('ci_alpha', 0.05)):.2f}",
    ]
    return "\n".join(f"- {i}" for i in items) + "\n"


def summary_markdown(report: Report) -> str:
    """Content of ``summary.md``: reading, summary table, Tables 1-2, settings, examples."""
    out = [f"# llm4brain results: profile `{report.profile}`\n", report.reading + "\n",
           "## Summary: every metric beside its controls\n",
           "Percent; brackets: 95 % interval (bootstrap over trials for decoders, spread over "
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
        cap = f"{caption} (profile {p}, percent)"
        for fmt, path in write_table(report.tables[name], out_dir, f"{name}_{p}",
                                     caption=cap).items():
            paths[f"{name}.{fmt}"] = path
        for fmt, path in write_table(_subject_ci_wide(report.table_ci[name]), out_dir,
                                     f"{name}_{p}_ci", caption=cap + ", 95 % bootstrap CI").items():
            paths[f"{name}_ci.{fmt}"] = path
    for fmt, path in write_summary_table(report.summary, out_dir, f"summary_{p}").items():
        paths[f"summary.{fmt}"] = path
    ex_csv, ex_md = out_dir / f"examples_{p}.csv", out_dir / f"examples_{p}.md"
    report.examples.to_csv(ex_csv, index=False)
    ex_md.write_text(f"# Examples, profile `{p}`\n\n" + examples_with_questions(report.examples))
    paths["examples.csv"], paths["examples.md"] = ex_csv, ex_md
    for kind, tidy in (report.attributes or {}).items():
        stem = f"attributes_{p}" + ("" if kind == "truth" else f"_vs_{kind}")
        tidy.to_csv(out_dir / f"{stem}.csv", index=False)
        (out_dir / f"{stem}.md").write_text(to_markdown(attribute_wide(tidy)))
        paths[f"{stem}.csv"], paths[f"{stem}.md"] = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    if report.identification is not None:
        report.identification.to_csv(out_dir / f"identification_{p}.csv", index=False)
        (out_dir / f"identification_{p}.md").write_text(
            to_markdown(identification_wide(report.identification)))
        paths["identification.csv"] = out_dir / f"identification_{p}.csv"
    paths["summary_md"] = out_dir / summary_name
    paths["summary_md"].write_text(summary_markdown(report))
    return paths


