"""Concept localisation, part 2: are the maps right? Scored against the simulator's anatomy.

The simulator tunes each region to one feature group (:data:`llm4brain.sim.REGIONS`: EVC
low-level statistics, MT+ motion, LOC the agent, EBA/pSTS the action, PPA the scene; M1, A1
and dlPFC respond to nothing). A subject's region is the set of mask voxels whose membership
(the Gaussian blob around the region's centre, evaluated at the subject's shifted
coordinates, exactly as the simulator did) is at least ``min_membership`` (default 0.5: the
region's half-maximum core).

For each phrase type (:data:`~llm4brain.dialogue.attribution.PHRASE_TYPES`) and region the
score is the **ROC-AUC** of the mean |attribution| over a subject's trials, region voxels
against all other mask voxels (0.5 = chance: the map does not single the region out; 1 =
every region voxel outranks every other voxel), averaged over target subjects. Two
permutation tests give one-sided p-values of that mean AUC (``(1 + #null >= observed) /
(1 + n)``):

* ``p_perm``: voxel labels shuffled (a random voxel set of the region's size) — the classic
  Mann-Whitney null; it treats voxels as independent, which smooth maps are not, so it is
  optimistic;
* ``p_spatial``: the region moved by a random whole-voxel shift of the grid (wrapping around,
  kept when at least half of it lands in the brain) — same shape, same spatial smoothness,
  another place: the null to read.

:func:`concept_volume` puts a map back on the trial cache's grid (its mask and affine: MNI152
space on the simulated data and fMRIPrep's MNI outputs, a subject's T1w space otherwise).
"""
from __future__ import annotations

from .attribution import concept_attributions
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from tqdm.auto import tqdm

from ..atomic import atomic_path, write_csv, write_json, write_text
from ..config import save_config
from ..sim import REGIONS, region_weights, voxel_coordinates
from .attribution import PHRASE_GROUP, ConceptAttributions

__all__ = ["roc_auc", "auc_null", "region_labels", "subject_regions", "concept_table",
           "concept_volume", "concept_markdown", "ConceptResult", "concept_localisation", "concepts_results_dir",
           "write_concepts", "concept_reading", "CONCEPT_TABLE_COLUMNS"]

#: Columns of :func:`concept_table`.
CONCEPT_TABLE_COLUMNS = ("phrase", "group", "region", "region_group", "expected", "n_trials",
                         "n_subjects", "n_region_voxels", "auc", "chance", "p_perm",
                         "p_spatial", "n_perm")


def roc_auc(scores, labels) -> float:
    """ROC-AUC of ``scores`` for ``labels`` (True = positive), ties counted half (the
    Mann-Whitney U / (n1 n0))."""
    s = np.asarray(scores, float)
    y = np.asarray(labels, bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError(f"ROC-AUC needs positives and negatives, got {n1} and {n0}")
    r = rankdata(s)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _auc_from_ranks(rank_sums: np.ndarray, n1: int, n: int) -> np.ndarray:
    return (rank_sums - n1 * (n1 + 1) / 2) / (n1 * (n - n1))


def auc_null(ranks: np.ndarray, null_sets: np.ndarray) -> np.ndarray:
    """AUCs of the voxel sets in ``null_sets`` (n_perm, n1) given the ranks (n,) of a map."""
    return _auc_from_ranks(ranks[null_sets].sum(1), null_sets.shape[1], len(ranks))


def region_labels(coords: np.ndarray, regions=REGIONS, *, min_membership: float = 0.5
                  ) -> dict[str, np.ndarray]:
    """Region name -> bool (n_voxels,) of voxels at ``coords`` (mm, already shifted)."""
    if not 0 < float(min_membership) <= 1:
        raise ValueError(f"min_membership must be in (0, 1], got {min_membership}")
    w = region_weights(coords, regions)
    return {r.name: w[i] >= float(min_membership) for i, r in enumerate(regions)}


def subject_regions(data_root, subjects: Sequence[str], mask: np.ndarray, affine: np.ndarray,
                    *, min_membership: float = 0.5) -> dict[str, dict[str, np.ndarray]]:
    """The simulator's regions of each subject on a grid: subject -> region -> bool
    (n_mask_voxels,).

    Reads the subjects' anatomical shifts from
    ``<data_root>/derivatives/simulation/generator.json``.

    Raises
    ------
    FileNotFoundError
        Not a simulated dataset (real data have no known regions).
    """
    path = Path(data_root) / "derivatives" / "simulation" / "generator.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: concept maps can be scored only on the "
                                f"simulated dataset (its generator knows the regions); on real "
                                f"data draw the maps without the AUC table")
    gen = json.loads(path.read_text())
    coords = voxel_coordinates(np.asarray(mask, bool), np.asarray(affine, float))
    out = {}
    for s in subjects:
        s = str(s)
        p = gen["subjects"].get(s)
        if p is None:
            raise KeyError(f"subject {s} is not in {path} (subjects: {sorted(gen['subjects'])})")
        out[s] = region_labels(coords - np.asarray(p["shift_mm"], float),
                               min_membership=min_membership)
    return out


def _spatial_sets(labels: np.ndarray, mask: np.ndarray, n_perm: int,
                  rng: np.random.Generator) -> list[np.ndarray] | None:
    """Voxel index sets of the region moved by random grid shifts (wrapping around)."""
    vol = np.zeros(mask.shape, bool)
    vol[mask] = labels
    n1 = int(labels.sum())
    idx_vol = np.full(mask.shape, -1, np.int64)
    idx_vol[mask] = np.arange(int(mask.sum()))
    out, tries = [], 0
    while len(out) < n_perm and tries < 50 * n_perm:
        tries += 1
        d = [int(rng.integers(-(g // 2), g // 2 + 1)) for g in mask.shape]
        if not any(d):
            continue
        moved = np.roll(vol, d, axis=(0, 1, 2)) & mask
        k = idx_vol[moved]
        if len(k) >= max(1, n1 // 2):
            out.append(k)
    return out if len(out) == n_perm else None


def concept_table(attributions: ConceptAttributions, regions: Mapping[str, Mapping[str, np.ndarray]],
                  *, n_perm: int = 1000, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """AUC of every phrase type's map for every region, with permutation p-values.

    Parameters
    ----------
    attributions : ConceptAttributions
    regions : subject -> region -> bool (n_voxels,) (:func:`subject_regions`)
    n_perm : int
        Draws of each null.
    seed : int

    Returns
    -------
    DataFrame with :data:`CONCEPT_TABLE_COLUMNS`, one row per phrase type and region:
    ``expected`` marks the region tuned to the phrase's feature group; ``auc`` the mean over
    the subjects that have trials with the phrase (NaN when none does) beside ``chance``
    0.5; ``n_region_voxels`` summed over those subjects.
    """

    if n_perm < 1:
        raise ValueError(f"n_perm must be >= 1, got {n_perm}")
    mask = np.asarray(attributions.mask, bool)
    group_of = {r.name: r.group for r in REGIONS}
    names = [r.name for r in REGIONS if any(r.name in v for v in regions.values())]
    rng = np.random.default_rng(seed)
    nulls: dict = {}      # (subject, region) -> (voxel sets, spatial sets)
    for s, regs in regions.items():
        for name in names:
            lab = np.asarray(regs[name], bool)
            n1 = int(lab.sum())
            if n1 == 0 or n1 == len(lab):
                nulls[s, name] = None
                continue
            perm = np.stack([rng.choice(len(lab), n1, replace=False) for _ in range(n_perm)])
            sp = _spatial_sets(lab, mask, n_perm, rng)
            nulls[s, name] = (perm, sp)
    rows = []
    bar = tqdm(attributions.phrase_types, desc="concept AUCs", disable=not progress)
    for kind in bar:
        per_subject = []
        for s in regions:
            if attributions.n_trials(kind, s) == 0:
                continue
            m = attributions.mean_abs(kind, s)
            if np.isfinite(m).all():
                per_subject.append((s, rankdata(m), attributions.n_trials(kind, s)))
        for name in names:
            row = dict(phrase=kind, group=PHRASE_GROUP.get(kind, ""), region=name,
                       region_group=group_of.get(name) or "none",
                       expected=group_of.get(name) == PHRASE_GROUP.get(kind),
                       n_trials=sum(n for _, _, n in per_subject),
                       n_subjects=0, n_region_voxels=0, auc=np.nan, chance=0.5,
                       p_perm=np.nan, p_spatial=np.nan, n_perm=int(n_perm))
            aucs, null_v, null_s = [], [], []
            for s, r, _ in per_subject:
                lab = np.asarray(regions[s][name], bool)
                if nulls.get((s, name)) is None:
                    continue
                perm, sp = nulls[s, name]
                n1 = int(lab.sum())
                aucs.append(float(_auc_from_ranks(r[lab].sum(), n1, len(r))))
                null_v.append(auc_null(r, perm))
                null_s.append(None if sp is None else np.array(
                    [_auc_from_ranks(r[k].sum(), len(k), len(r)) for k in sp]))
                row["n_region_voxels"] += n1
            if aucs:
                obs = float(np.mean(aucs))
                nv = np.mean(null_v, 0)
                row.update(n_subjects=len(aucs), auc=obs,
                           p_perm=float((1 + (nv >= obs - 1e-12).sum()) / (1 + len(nv))))
                if all(x is not None for x in null_s):
                    ns = np.mean(null_s, 0)
                    row["p_spatial"] = float((1 + (ns >= obs - 1e-12).sum()) / (1 + len(ns)))
            rows.append(row)
    return pd.DataFrame(rows, columns=list(CONCEPT_TABLE_COLUMNS))


def concept_volume(values: np.ndarray, mask: np.ndarray, affine: np.ndarray):
    """A Nifti1Image of ``values`` (n_mask_voxels,) on the grid of ``mask`` (zero outside)."""
    import nibabel as nib

    mask = np.asarray(mask, bool)
    v = np.asarray(values, np.float32)
    if v.shape != (int(mask.sum()),):
        raise ValueError(f"values of shape {v.shape} for a mask of {int(mask.sum())} voxels")
    vol = np.zeros(mask.shape, np.float32)
    vol[mask] = np.nan_to_num(v)
    return nib.Nifti1Image(vol, np.asarray(affine, float))


@dataclass
class ConceptResult:
    """What :func:`concept_localisation` returns: the per-trial ``attributions``, the AUC
    ``table`` (:data:`CONCEPT_TABLE_COLUMNS`), the target subjects' ``regions`` and
    ``settings``."""

    attributions: ConceptAttributions
    table: pd.DataFrame
    regions: dict
    settings: dict = field(default_factory=dict)

    def volume(self, kind: str, subject: str | None = None):
        """Mean |attribution| of a phrase type as a Nifti1Image (all target subjects)."""
        a = self.attributions
        return concept_volume(a.mean_abs(kind, subject), a.mask, a.affine)

    def region_volume(self, name: str):
        """Share of target subjects in whom a voxel belongs to region ``name`` (image)."""
        a = self.attributions
        v = np.mean([np.asarray(r[name], float) for r in self.regions.values()], 0)
        return concept_volume(v, a.mask, a.affine)


def concept_localisation(models, decodes: pd.DataFrame, *, n_perm: int = 1000,
                         min_membership: float = 0.5, progress: bool = False,
                         **kwargs) -> ConceptResult:
    """Attribution maps of decoded phrases on the target evaluation trials, scored against
    the simulator's regions.

    Parameters
    ----------
    models : ChatModels (:func:`llm4brain.dialogue.load_chat_models`)
    decodes : DataFrame
        The answers to explain (Stage II's ``fmri2text_<run>.tsv`` of the same run).
    n_perm, min_membership : see :func:`concept_table`, :func:`subject_regions`
    **kwargs
        :func:`llm4brain.dialogue.attribution.concept_attributions` settings
        (``method``, ``n_steps``, ``max_trials``, ``batch_size``, ``phrase_types``).
    """

    att = concept_attributions(models, decodes, progress=progress, **kwargs)
    subjects = list(dict.fromkeys(att.trials["subject"].astype(str)))
    regs = subject_regions(models.cfg.data_root, subjects, att.mask, att.affine,
                           min_membership=min_membership)
    table = concept_table(att, regs, n_perm=n_perm, seed=int(models.cfg.run.seed),
                          progress=progress)
    settings = dict(att.settings, n_perm=int(n_perm), min_membership=float(min_membership),
                    subjects=subjects,
                    stage2_domain_adaptation=bool(models.stage2.domain_adaptation))
    return ConceptResult(att, table, regs, settings)


def concepts_results_dir(cfg) -> Path:
    """``<run_dir>/results/dialogue`` (beside the question-answering table)."""
    return Path(cfg.run_dir) / "results" / "dialogue"


def concept_markdown(table: pd.DataFrame, *, expected_only: bool = False) -> str:
    """The concept table as Markdown (all rows, or only each phrase's expected region)."""
    t = table[table["expected"].astype(bool)] if expected_only else table
    head = ("| phrase | region (group) | expected | trials | AUC (chance 0.5) | p perm | "
            "p spatial |\n|---|---|:-:|---:|---:|---:|---:|\n")
    lines = [f"| {r.phrase} | {r.region} ({r.region_group}) | {'yes' if r.expected else ''} | "
             f"{r.n_trials} | {r.auc:.3f} | {r.p_perm:.3f} | {r.p_spatial:.3f} |"
             for r in t.itertuples()]
    return head + "\n".join(lines).replace("nan", "n/a") + "\n"


def write_concepts(result: ConceptResult, cfg, directory=None) -> dict:
    """Write ``concept_table.csv`` / ``.md``, ``concept_trials.tsv``, ``concept_maps.npz``
    (mean |attribution| per phrase type and subject), one ``concept_<type>.nii.gz`` per
    phrase type (all subjects) and ``concept_settings.json`` (+ the config), atomically."""
    import nibabel as nib

    d = Path(directory) if directory is not None else concepts_results_dir(cfg)
    d.mkdir(parents=True, exist_ok=True)
    a = result.attributions
    out = {"concept_table.csv": write_csv(result.table, d / "concept_table.csv", index=False),
           "concept_table.md": write_text(d / "concept_table.md",
                                              concept_markdown(result.table)),
           "concept_trials.tsv": write_csv(a.trials, d / "concept_trials.tsv", sep="\t",
                                           index=False)}
    subjects = list(result.regions)
    arrays = {f"{k}__{s}": a.mean_abs(k, s) for k in a.phrase_types for s in subjects}
    with atomic_path(d / "concept_maps.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, mask=a.mask, affine=a.affine, **arrays)
    out["concept_maps.npz"] = d / "concept_maps.npz"
    for k in a.phrase_types:
        if a.n_trials(k):
            p = d / f"concept_{k}.nii.gz"
            with atomic_path(p) as tmp:
                nib.save(result.volume(k), str(tmp) + ".nii.gz")
                Path(str(tmp) + ".nii.gz").replace(tmp)
            out[p.name] = p
    out["concept_settings.json"] = write_json(d / "concept_settings.json", result.settings,
                                              indent=1, default=str)
    save_config(cfg, d)
    return out


def concept_reading(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """Notebook 07's conclusion on the concept maps, in words, from :func:`concept_table`'s rows:
    for each phrase type, the AUC in its expected region with the spatial permutation p-value,
    and whether that region is the one where the map is strongest."""
    need = {"phrase", "region", "expected", "auc", "p_spatial", "n_trials"}
    if need - set(table.columns):
        raise KeyError(f"concept_reading: the table lacks {sorted(need - set(table.columns))} "
                       f"(07_concept_table.csv)")
    parts, unscored = [], []
    for phrase, g in table.groupby("phrase", sort=False):
        exp = g[g["expected"].astype(bool)]
        if exp.empty:
            continue
        e = exp.iloc[0]
        g = g[g["auc"].notna()]
        if g.empty or pd.isna(e["auc"]):
            # no subject had a finite attribution map for the phrase (concept_table leaves NaN)
            unscored.append(f"{phrase} ({int(e['n_trials'])} trials)")
            continue
        best = g.loc[g["auc"].idxmax()]
        where = ("its expected region is the strongest" if best["region"] == e["region"]
                 else f"strongest in {best['region']} (AUC {best['auc']:.2f})")
        sig = ("p_spatial n/a" if pd.isna(e["p_spatial"]) else "p_spatial < %.2g" % alpha
               if e["p_spatial"] < alpha else f"p_spatial = {e['p_spatial']:.2g}")
        ctrl = g[g["region_group"] == "none"] if "region_group" in g else g.iloc[:0]
        neg = (f", negative controls up to AUC {ctrl['auc'].max():.2f} ({ctrl.loc[ctrl['auc'].idxmax(), 'region']})"
               if len(ctrl) else "")
        parts.append(f"{phrase} ({int(e['n_trials'])} trials): {e['region']} AUC {e['auc']:.2f} "
                     f"({sig}), {where}{neg}")
    none = (" Not scored (no subject has a finite attribution map for the phrase): "
            + ", ".join(unscored) + ".") if unscored else ""
    if not parts:
        return ("**Conclusion (concept maps).** No phrase with an expected region could be scored."
                + none)
    return ("**Conclusion (concept maps; chance AUC 0.5).** " + "; ".join(parts)
            + ". Negative controls are the regions that respond to nothing (M1, A1, dlPFC on the "
              "simulator): an AUC far from 0.5 there is a bias of the attribution, not a concept. "
              "The maps explain the decoder, not the brain." + none)
