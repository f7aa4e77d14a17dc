"""Data: the HAD-layout simulator, BIDS loaders, trial and frame caches, subject-wise splits.

One code path reads the real HAD dataset (OpenNeuro ds004488) and the embedded simulation.
"""
from ._anatomy import REGIONS, Region, load_brain_mask
from ._bids import (EVENT_COLUMNS, DataError, RunFiles, check_same_tr, discover_runs, load_bold,
                    load_mask, load_stimuli, read_confounds, read_events, read_stimuli_map,
                    repetition_time)
from ._checkdata import CheckRow, check_data, format_check_table
from ._cache import (TrialCache, block_start_index, build_trial_cache, cosine_drift,
                     iter_run_volumes, load_trial_cache, preprocess_run)
from ._describe import (describe_dataset, directory_size_mb, lag_profile, split_half_reliability,
                        trial_responses)
from ._frames import FrameCache, build_frame_cache
from ._simulate import (FEATURE_GROUPS, bids_name, canonical_hrf, load_ground_truth,
                        noise_free_bold, simulate_dataset, trial_regressors)
from ._oracle import noise_free_trial_blocks
from ._splits import Splits, load_splits, make_splits
from ._testing import make_tiny_bids
from ._video_io import BadClipError, declared_video_length, read_frames, write_mp4, write_mp4_batch

__all__ = [
    "REGIONS", "Region", "load_brain_mask", "EVENT_COLUMNS", "DataError", "RunFiles",
    "discover_runs", "load_bold", "load_mask", "load_stimuli", "read_confounds", "read_events", "read_stimuli_map",
    "TrialCache", "build_trial_cache", "cosine_drift", "iter_run_volumes", "load_trial_cache",
    "preprocess_run", "describe_dataset", "lag_profile", "directory_size_mb", "trial_responses", "split_half_reliability", "FrameCache",
    "build_frame_cache", "FEATURE_GROUPS", "bids_name", "canonical_hrf", "load_ground_truth",
    "noise_free_bold", "simulate_dataset", "trial_regressors", "Splits", "load_splits",
    "make_splits", "noise_free_trial_blocks", "read_frames", "write_mp4", "write_mp4_batch", "make_tiny_bids",
    "check_same_tr", "repetition_time", "block_start_index", "BadClipError", "declared_video_length",
    "check_data", "format_check_table", "CheckRow",
]
