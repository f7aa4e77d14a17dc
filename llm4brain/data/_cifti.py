"""CIFTI-2 input (``data.source: ciftify``): HAD's fsLR-32k ``*.dtseries.nii`` as grayordinates.

HAD's ciftify derivative holds one dense time series per run,
``derivatives/ciftify/sub-XX/results/ses-action01_task-action_run-N_Atlas.dtseries.nii``
(156 time points x 91,282 grayordinates: 59,412 cortical vertices first, then subcortical
voxels), read with nibabel's CIFTI-2 API (series axis x brain-model axis). ``data.cifti_structures``
selects ``cortex`` (the two cortical surfaces, what HAD's own analyses use) or ``all``.

The rest of the package sees a run as a 4-D image of shape ``(n_grayordinates, 1, 1, n_vols)``
with an identity affine (:class:`CiftiVolume`): the trial cache, the masks and the leakage
guard work unchanged, blocks are ``(T, n, 1, 1)``, and the ``patch1d`` tokenizer (MinD-Vis's
Conv1d patch embedding) reads them as flat vectors. Grayordinates have no 3-D neighbourhood,
so the ``cnn3d`` and ``nvl`` tokenizers do not apply to them.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

__all__ = ["CIFTI_STRUCTURES", "CiftiVolume", "is_cifti", "load_cifti", "cifti_dir",
           "discover_cifti_runs"]

#: data.cifti_structures -> CIFTI structure names kept (None: every grayordinate)
CIFTI_STRUCTURES = {"cortex": ("CIFTI_STRUCTURE_CORTEX_LEFT", "CIFTI_STRUCTURE_CORTEX_RIGHT"),
                    "all": None}
#: dtseries path -> data.cifti_structures, registered by discover_cifti_runs
_SELECTION: dict[str, str] = {}


def is_cifti(path) -> bool:
    return str(path).endswith((".dtseries.nii", ".dtseries.nii.gz"))


class CiftiVolume:
    """A dense CIFTI-2 time series presented as a ``(n, 1, 1, n_vols)`` image.

    ``shape``, ``affine`` (identity: grayordinate i sits at "voxel" (i, 0, 0)) and
    ``dataobj`` (float32, read on access) are what the volumetric readers use.
    """

    is_cifti = True

    def __init__(self, img, path: Path, structures: str = "cortex"):
        from nibabel.cifti2 import cifti2_axes

        self._img, self.path = img, Path(path)
        series, models = img.header.get_axis(0), img.header.get_axis(1)
        if not isinstance(series, cifti2_axes.SeriesAxis) or \
                not isinstance(models, cifti2_axes.BrainModelAxis):
            raise ValueError(f"{path} is not a dense time series (series x brain models)")
        if structures not in CIFTI_STRUCTURES:
            raise ValueError(f"data.cifti_structures = {structures!r} is not one of "
                             f"{', '.join(CIFTI_STRUCTURES)}")
        keep = CIFTI_STRUCTURES[structures]
        names = np.asarray(models.name)
        self.selection = np.ones(len(names), bool) if keep is None else np.isin(names, keep)
        if not self.selection.any():
            raise ValueError(f"{path} has none of the structures {keep} "
                             f"(data.cifti_structures: {structures}); it holds "
                             f"{sorted(set(names))}")
        self.structures = sorted(set(names[self.selection]))
        self.series = series
        n = int(self.selection.sum())
        self.shape = (n, 1, 1, int(series.size))
        self.affine = np.eye(4)

    @property
    def tr(self) -> float | None:
        """Seconds between time points (the series axis' step), or None when not in seconds."""
        unit = str(getattr(self.series, "unit", "")).upper()
        step = float(self.series.step)
        return step if unit == "SECOND" and step > 0 else None

    @property
    def dataobj(self) -> np.ndarray:
        data = np.asarray(self._img.dataobj, dtype=np.float32)[:, self.selection]
        return np.ascontiguousarray(data.T)[:, None, None, :]


def load_cifti(path, structures: str | None = None) -> CiftiVolume:
    """Open a ``*.dtseries.nii`` as a :class:`CiftiVolume` (``structures``: default the one
    registered for the path by :func:`discover_cifti_runs`, else ``cortex``)."""
    import nibabel as nib

    img = nib.load(str(path))
    if not isinstance(img, nib.Cifti2Image):
        raise ValueError(f"{path} is not a CIFTI-2 file")
    return CiftiVolume(img, Path(path), structures or _SELECTION.get(str(path), "cortex"))


def cifti_dir(root: Path, data_cfg) -> Path:
    """The ciftify derivatives folder: ``data.derivatives`` when set to something else than
    the fMRIPrep default, else ``<root>/derivatives/ciftify``."""
    d = str(getattr(data_cfg, "derivatives", "") or "")
    if not d or d == "derivatives/fmriprep":
        d = "derivatives/ciftify"
    p = Path(d)
    return p if p.is_absolute() else Path(root) / p


def discover_cifti_runs(root: Path, data_cfg, task: str = "action") -> list:
    """Every ``*task-<task>*run-*.dtseries.nii`` under the ciftify folder, with its events.

    The subject comes from the ``sub-XX`` folder the file sits in (HAD's ciftify files carry
    no ``sub-`` entity), session and run from the file name (``run-1`` or ``run-01``); the TR
    from the series axis (seconds), else from a BIDS sidecar.
    """
    from ._bids import DataError, RunFiles, _kv, events_file, repetition_time

    base = cifti_dir(root, data_cfg)
    if not base.is_dir():
        raise DataError(f"ciftify folder {base} not found (data.source: ciftify). Set "
                        f"data.derivatives to the folder holding sub-*/results/*.dtseries.nii")
    structures = getattr(data_cfg, "cifti_structures", "cortex")
    if structures not in CIFTI_STRUCTURES:
        raise DataError(f"data.cifti_structures = {structures!r} is not one of "
                        f"{', '.join(CIFTI_STRUCTURES)}")
    files = sorted(base.glob(f"sub-*/**/*task-{task}*run-*.dtseries.nii"))
    if not files:
        raise DataError(f"no dense time series matching {base}/sub-*/**/*task-{task}*run-*"
                        f".dtseries.nii (data.source: ciftify)")
    runs = []
    for f in files:
        sub_dir = next((p.name for p in f.parents if re.fullmatch(r"sub-[A-Za-z0-9]+", p.name)), None)
        kv = _kv(f.name.split(".")[0])
        if sub_dir is None or "run" not in kv:
            raise DataError(f"cannot tell the subject and run of {f}: expected "
                            f"sub-XX/.../*task-{task}_run-N*.dtseries.nii")
        sub = sub_dir[4:]
        if kv.get("sub", sub) != sub:
            raise DataError(f"{f} names sub-{kv['sub']} but sits in {sub_dir}")
        run = int(kv["run"])
        _, ev = events_file(root, sub, kv.get("ses", ""), kv.get("task", task), str(kv["run"]), run,
                            f.name)
        _SELECTION[str(f)] = structures
        try:
            tr, src = load_cifti(f).tr, f"CIFTI series axis of {f.name}"
        except (ValueError, OSError) as exc:
            raise DataError(f"{f} cannot be read as a CIFTI-2 dense time series: {exc}") from exc
        if tr is None:
            tr, src = repetition_time(f, root)
        from ._timing import volume_reference
        t0, t0_src = volume_reference(f, root, tr)
        runs.append(RunFiles(sub, kv.get("ses", ""), run, f, ev, None, None, tr, src, t0, t0_src))
    runs.sort(key=lambda r: (r.subject, r.session, r.run))
    for a, b in zip(runs, runs[1:]):
        if (a.subject, a.session, a.run) == (b.subject, b.session, b.run):
            raise DataError(f"{a.bold} and {b.bold} are both run {a.run} of sub-{a.subject}: "
                            f"keep one of them")
    return runs
