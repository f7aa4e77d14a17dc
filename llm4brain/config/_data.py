"""Settings of the simulator (``sim``) and of the loaders (``data``)."""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SimConfig", "DataConfig"]


@dataclass(frozen=True)
class SimConfig:
    """Simulated HAD-layout dataset (only used by the embedded profiles).

    The defaults reproduce HAD's design (TR 2 s, 2 s clips, 2 s gaps, 60 clips a run,
    blank trials). Noise levels are documented in docs/method.md (*The simulated dataset*).
    """

    n_subjects: int = 6
    n_target_subjects: int = 2
    n_classes: int = 12
    n_runs: int = 4
    clips_per_run: int = 60
    blanks_per_run: int = 12
    lead_in_s: float = 0.0          # HAD versions differ by a 12 s lead-in; see data.onset_offset
    tail_s: float = 16.0             # rest after the last clip so the HRF returns to baseline
    tr: float = 2.0
    clip_duration: float = 2.0
    gap: float = 2.0
    resolution_mm: float = 6.0
    # stimuli
    frame_size: int = 96
    fps: int = 8
    n_pretrain_clips: int = 480      # captioned corpus shown to no subject (video-LM pretraining)
    # signal and noise
    signal_scale: float = 1.0        # percent signal change of a fully tuned voxel
    noise_sd: float = 0.5            # thermal noise sd relative to signal_scale (1.4: nothing decodable, see docs/method.md)
    ar1: float = 0.4
    noise_fwhm_mm: float = 8.0
    drift_sd: float = 1.0
    motion_sd: float = 0.3
    shift_mm: float = 3.0
    shared_tuning: float = 0.7       # share of the tuning common to all subjects
    gain_sd: float = 0.2
    noise_sd_jitter: float = 0.2
    hrf_peak_sd: float = 0.5         # seconds
    baseline: float = 100.0          # mean BOLD, arbitrary units
    write_raw: bool = True           # also write raw BIDS bold (same grid) besides fMRIPrep derivatives


@dataclass(frozen=True)
class DataConfig:
    """Where the dataset is and how trials are cut from it (same code for HAD and simulation).

    root : str
        BIDS root. ``{run_dir}`` expands to the run directory (the embedded dataset lives there).
    source : str
        ``fmriprep`` (the derivatives folder below, MNI space), ``raw`` (sub-XX/.../func) or
        ``ciftify`` (fsLR-32k ``*.dtseries.nii`` under ``derivatives/ciftify``, read as
        grayordinates; see :mod:`llm4brain.data._cifti`).
    derivatives : str
        Folder of the fMRIPrep-style derivatives, relative to ``root`` (or absolute):
        ``derivatives/fmriprep`` (fMRIPrep's layout); nilearn's fake BIDS writes
        ``derivatives``.
    space, desc : str
        fMRIPrep entities of the preprocessed BOLD.
    onset_offset : float or "auto"
        Seconds added to every events.tsv onset. A number is applied to every run as given
        (0.0, the default, for the embedded simulation and datasets whose onsets count from
        the first volume). ``"auto"`` (the HAD profile) decides per run from its first onset,
        as HAD's official GLMs do (they add ``begin_dur = 12`` s): first onset within 2 s of
        0 -> +12 s (onsets count from the end of the 12 s lead-in); within 2 s of 12 s -> +0
        (the lead-in is already counted); anything else is an error asking for a number.
        The choice is logged once per run.
    invalid_videos : list of str or str
        Clips whose trials are dropped: a list of names, or the path of a text file with one
        name per line (``#`` comments and blank lines skipped), or of a ``.csv`` / ``.tsv``
        table with a header and a ``stim_file``, ``video``, ``video_name``, ``clip``, ``file``
        or ``name`` column (a table without one is an error). A name
        matches a clip by its stim_file (``Drum_corps/v_..._label_1.mp4``), its file name or
        its file name without extension. The count dropped is logged per subject; names that
        match no clip are warned about. Filtered copies of the affected events files are
        written under ``work_dir``.
    resample_to : str
        ``""`` (no resampling), the path of a reference NIfTI, or ``mni152_<mm>`` (nilearn's
        MNI152 template at that resolution, e.g. ``mni152_2``): every BOLD run (continuous
        interpolation) and brain mask (nearest neighbour) is resampled onto that grid before
        blocks are cut. This aligns voxel grids, not anatomy: subjects in their own T1w space
        stay anatomically unaligned (use MNI-space derivatives for that).
    work_dir : str
        Folder for the files the loader derives from the dataset (filtered events files,
        links to resampled runs). ``""``: ``<data.root>/derivatives/llm4brain``; set a writable
        folder when the dataset is read-only.
    block_trs : int
        Number of volumes T in a trial block (all runs must share one TR).
    response : str
        What a trial block holds. ``block`` (default): the T volumes from ``onset + lag_s``;
        with HAD's 4 s between onsets they also hold the tails and rises of the neighbouring
        trials' responses. ``beta``: the trial's single-trial response map, fitted per run
        by least squares with one Glover-HRF regressor per trial (all trials at once, LSA;
        event durations from the events files) and z-scored per voxel across the run's
        trials, repeated in each of the T volumes so every model reading T-volume blocks runs
        unchanged. ``dense32`` caches only.
    lag_s : float
        HRF delay: the block starts at the first volume *acquired* at or after
        ``onset + lag_s``, ``ceil((onset + lag_s - t0) / TR)``, where volume ``i`` is acquired
        at ``t0 + i * TR`` and ``t0`` comes from the run's sidecars
        (:func:`llm4brain.data.volume_reference`: fMRIPrep's ``StartTime`` when
        ``SliceTimingCorrected``, the mean ``SliceTiming`` of raw data, else half a TR). With
        TR 2 s and ``t0`` 1 s, lag 4 s and 2 volumes read +5 and +7 s after onsets on the
        TR grid (the lag profile of notebook 01 shows why).
    confounds : list of str
        Columns of the confounds TSV regressed out of each run.
    high_pass : float
        Cosine drift regressors cutoff in Hz (0 disables).
    n_frames, frame_size : int
        Frames sampled uniformly from each clip and their size (pixels).
    target_subjects : list of str
        Subject labels (without ``sub-``) held out as target/validation subjects. Empty: the
        last ``sim.n_target_subjects`` subjects.
    adapt_fraction : float
        Share of each target subject's trials that domain adaptation may see (unlabelled);
        the rest are evaluation trials, never seen in training.
    val_fraction : float
        Share of each training subject's trials held out for validation.
    cifti_structures : str
        ``data.source: ciftify`` only: which grayordinates are read, ``cortex`` (both
        cortical surfaces; 59,412 of HAD's 91,282) or ``all``.
    cache_format : str
        How the trial cache stores the data: ``dense32`` (float32 blocks and volumes on the
        mask's bounding box; the embedded profiles) or ``masked16`` (every volume once, as
        float16 mask voxels, one file per subject; blocks read from the volumes; HAD scale,
        0.88 GB instead of 8.3 GB a subject at 2 mm, bench/results/trial_cache_had.md).
    cache_workers : int
        Worker processes building ``masked16`` subjects in parallel (0: one per CPU core).
    """

    root: str = "{run_dir}/dataset"
    source: str = "fmriprep"
    derivatives: str = "derivatives/fmriprep"
    space: str = "MNI152NLin2009cAsym"
    desc: str = "preproc"
    onset_offset: float | str = 0.0  # a number of seconds, or "auto" (see above)
    block_trs: int = 3
    response: str = "block"           # or "beta": single-trial LSA response maps (see above)
    lag_s: float = 4.0
    confounds: tuple[str, ...] = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
    high_pass: float = 0.01
    n_frames: int = 8
    frame_size: int = 128
    target_subjects: tuple[str, ...] = ()
    adapt_fraction: float = 0.5
    val_fraction: float = 0.15
    stimuli_map: str = ""            # Urgen-style: TSV mapping trial_type -> stim_file; "" = none
    cifti_structures: str = "cortex"
    cache_format: str = "dense32"
    cache_workers: int = 0
    invalid_videos: tuple[str, ...] | str = ()
    resample_to: str = ""
    work_dir: str = ""

    def __post_init__(self):
        if self.response not in ("block", "beta"):
            raise ValueError(f"data.response must be 'block' (volumes after the onset) or "
                             f"'beta' (single-trial response maps), got {self.response!r}")
        if self.response == "beta" and self.cache_format != "dense32":
            raise ValueError(f"data.response: beta needs data.cache_format: dense32 (got "
                             f"{self.cache_format!r}: masked16 reads its blocks from the stored "
                             f"volumes); set one or the other")
        off = self.onset_offset
        if isinstance(off, str):
            if off.strip().lower() != "auto":
                raise ValueError(f"data.onset_offset must be a number of seconds or 'auto', got "
                                 f"{off!r}; write e.g. 12.0 (no quotes) or auto")
            object.__setattr__(self, "onset_offset", "auto")
        r = self.resample_to.strip()
        if r.lower().startswith("mni152"):
            if not re.fullmatch(r"mni152_\d+", r.lower()):
                raise ValueError(f"data.resample_to {r!r}: the template form is mni152_<mm> "
                                 f"with a whole number of mm, e.g. mni152_2 (2 mm); or give the "
                                 f"path of a reference NIfTI")
