"""The Stage II results format: folder, file names, columns, condition labels, save and read.

Notebook 05 writes one TSV per decoder under ``<run_dir>/results/stage2/``
(:func:`stage2_results_dir`), each with the columns :data:`DECODE_COLUMNS` (one row per
evaluation trial of a target subject):

==========================  ===========================================================
condition                   file (see :data:`STAGE2_FILES`, the one place to adjust names)
==========================  ===========================================================
``model``                   llm4brain with domain adaptation (the paper's method)
``noda``                    the same without domain adaptation (ablation)
``chance``                  ``chance_shuffle_<k>.tsv``: fMRI shuffled across trials, k = 0..K-1
``baseline``                ridge to video embedding -> nearest training clip's answer
``ceiling``                 semantic read-out fitted and applied on the simulator's noise-free responses (simulated only)
``no_brain``, ``constant``  the LLM without brain tokens; the most frequent training answer
``semantic``                voxel class/scene read-outs -> prototype video tokens -> video-LLM
``semantic_chance``         ``semantic_shuffle_<k>.tsv``: the same with the read-outs shuffled
==========================  ===========================================================

Everything that writes or reads these files goes through this module: :func:`save_decodes`,
:func:`read_decodes` (validated), :func:`resolve_stage2_files` (which files exist, from
``manifest.json`` when present) and :func:`load_stage2_results` (all of a run, aligned).
:data:`CONDITION_ORDER` holds the label of each condition.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import load_stimuli

__all__ = [
    "DECODE_COLUMNS", "STAGE2_FILES", "EXTRA_CONTROLS", "CHANCE_PATTERN",
    "SEMANTIC_CHANCE_PATTERN", "CONDITION_ORDER",
    "stage2_results_dir", "resolve_stage2_files", "save_decodes", "read_decodes",
    "load_descriptions", "Stage2Results", "load_stage2_results",
]


#: Columns of every Stage II result TSV (fMRI2Text, chance, baseline, ceiling, controls), in
#: order: one row per evaluation trial of a target subject.
DECODE_COLUMNS = ("subject", "trial_index", "clip_id", "stim_file", "instruction", "fmri2text",
                  "video2text")


#: File names (first existing wins) of each Stage II result under ``results/stage2/``.
#: :func:`llm4brain.evaluation.stage2_outputs.write_stage2_outputs` writes them; adjust here only.
STAGE2_FILES: dict[str, tuple[str, ...]] = {
    "model": ("fmri2text_da.tsv", "fmri2text.tsv"),
    "noda": ("fmri2text_noda.tsv",),
    "baseline": ("baseline_nn.tsv",),
    "ceiling": ("ceiling.tsv",),
    "no_brain": ("no_brain.tsv",),
    "constant": ("constant.tsv",),
    "semantic": ("semantic.tsv",),
}


#: Controls that are decoders of their own (written by Stage II, scored like the model).
EXTRA_CONTROLS = ("no_brain", "constant", "semantic")


#: Chance decodings (fMRI shuffled across trials), one file per shuffle ``k``.
CHANCE_PATTERN = re.compile(r"^chance_shuffle_(\d+)\.tsv$")

#: Chance decodings of the semantic read-out (read-outs shuffled across trials).
SEMANTIC_CHANCE_PATTERN = re.compile(r"^semantic_shuffle_(\d+)\.tsv$")


#: Label of each condition (file role) in tables and plots, in the summary table's column
#: order: the one table of condition labels.
CONDITION_ORDER: dict[str, str] = {
    "chance": "chance (fMRI shuffled)",
    "pairing_chance": "chance (re-paired)",
    "baseline": "baseline (ridge + NN)",
    "model": "llm4brain",
    "noda": "llm4brain without DA",
    "no_brain": "LLM without brain tokens",
    "constant": "constant answer (most frequent training answer)",
    "semantic": "semantic read-out (voxel class/scene -> video-LLM)",
    "semantic_chance": "semantic read-out, read-outs shuffled",
    "ceiling": "noise ceiling",
    "upper": "Video2Text vs truth",
}


_TEXT_COLS = ("fmri2text", "video2text")


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
    for key, pattern in (("chance", CHANCE_PATTERN), ("semantic_chance", SEMANTIC_CHANCE_PATTERN)):
        found = [(int(m.group(1)), p) for p in d.iterdir() if (m := pattern.match(p.name))]
        out[key] = [p for _, p in sorted(found)]
    man = d / "manifest.json"
    if man.is_file():  # written by llm4brain.evaluation.stage2_outputs.write_stage2_outputs: authoritative
        out.update(_from_manifest(json.loads(man.read_text()), d, man))
    if out["model"] is None:
        raise FileNotFoundError(f"{d} has no result of the model with domain adaptation (one of "
                                f"{STAGE2_FILES['model']}; files present: "
                                f"{sorted(p.name for p in d.iterdir())}). Re-run notebook 05, or "
                                f"adjust llm4brain.evaluation.stage2_results.STAGE2_FILES")
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
    for key in ("chance", "semantic_chance"):
        if key in m:
            out[key] = [existing(f) for f in m[key]]
    for cond in ("baseline", "ceiling") + EXTRA_CONTROLS:
        if cond in m:
            out[cond] = existing(m[cond])
    return out


def save_decodes(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a decoding table (:data:`DECODE_COLUMNS`) as TSV, atomically."""
    missing = [c for c in DECODE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"decoding table lacks columns {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    df[list(DECODE_COLUMNS)].to_csv(tmp, sep="\t", index=False)
    os.replace(tmp, path)
    return path


def read_decodes(path: str | os.PathLike) -> pd.DataFrame:
    """One Stage II result TSV (written by :func:`save_decodes`), validated.

    Returns
    -------
    DataFrame of shape (n_trials, >= 7)
        :data:`DECODE_COLUMNS` (``subject`` as str, ``trial_index`` as int, texts with missing
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
    missing = [c for c in DECODE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing} (has {list(df.columns)}); a Stage II "
                         f"result needs {list(DECODE_COLUMNS)}")
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


@dataclass
class Stage2Results:
    """The saved decodings of a run (frames of :func:`read_decodes`).

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
    semantic: pd.DataFrame | None = None
    semantic_chance: list[pd.DataFrame] = field(default_factory=list)

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
        if self.semantic_chance:
            rows.append(dict(condition=CONDITION_ORDER["semantic_chance"],
                             file=f"{len(self.semantic_chance)} x semantic_shuffle_<k>.tsv",
                             n_trials=len(self.semantic_chance[0])))
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
    model = read_decodes(files["model"])
    other = {c: read_decodes(files[c]) if files.get(c) is not None else None
             for c in ("noda", "baseline", "ceiling") + EXTRA_CONTROLS}
    chance = [_align(read_decodes(p), model, p) for p in files["chance"]]
    sem_chance = [_align(read_decodes(p), model, p) for p in files.get("semantic_chance", [])]
    if descriptions is True:
        cfg = cfg_or_run_dir if hasattr(cfg_or_run_dir, "run_dir") else None
        rd = None if cfg is not None else Path(files["model"]).parents[2]
        descriptions = load_descriptions(cfg, rd)
    return Stage2Results(model, other["noda"], chance, other["baseline"], other["ceiling"],
                         descriptions if isinstance(descriptions, pd.Series) else None, files,
                         other["no_brain"], other["constant"], other["semantic"], sem_chance)
