"""Settings of the simulator (``sim``) and of the loaders (``data``)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SimConfig", "DataConfig"]


@dataclass(frozen=True)
class SimConfig:
    """Simulated HAD-layout dataset (only used by the embedded profiles).

    The defaults reproduce HAD's design (TR 2 s, 2 s clips, 2 s gaps, 60 clips a run,
    blank trials). Noise levels are documented in the README (section *Simulation*).
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
    noise_sd: float = 0.5            # thermal noise sd relative to signal_scale (1.4: nothing decodable, see README)
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
        ``fmriprep`` (the derivatives folder below, MNI space) or ``raw`` (sub-XX/.../func).
    derivatives : str
        Folder of the fMRIPrep-style derivatives, relative to ``root`` (or absolute):
        ``derivatives/fmriprep`` (fMRIPrep's layout); nilearn's fake BIDS writes
        ``derivatives``.
    space, desc : str
        fMRIPrep entities of the preprocessed BOLD.
    onset_offset : float
        Seconds added to every events.tsv onset (e.g. 12.0 for HAD versions with a lead-in).
    block_trs : int
        Number of volumes T in a trial block (all runs must share one TR).
    lag_s : float
        HRF delay: the block starts at the first volume at or after ``onset + lag_s``
        (``ceil((onset + lag_s) / TR)``).
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
    onset_offset: float = 0.0
    block_trs: int = 3
    lag_s: float = 4.0
    confounds: tuple[str, ...] = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
    high_pass: float = 0.01
    n_frames: int = 8
    frame_size: int = 128
    target_subjects: tuple[str, ...] = ()
    adapt_fraction: float = 0.5
    val_fraction: float = 0.15
    stimuli_map: str = ""            # Urgen-style: TSV mapping trial_type -> stim_file; "" = none
    cache_format: str = "dense32"
    cache_workers: int = 0
