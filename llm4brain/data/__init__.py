"""Data: BIDS readers of the HAD layout, trial and frame caches, subject-wise splits.

One code path reads the real HAD dataset (OpenNeuro ds004488) and the embedded simulation
(written by :mod:`llm4brain.sim`).
"""
from ._bids import (EVENT_COLUMNS, DataError, RunFiles, check_same_tr, discover_runs, load_bold,
                    load_mask, load_stimuli, read_confounds, read_events, read_stimuli_map,
                    repetition_time, volume_reference)
from ._checkdata import CheckRow, check_data, format_check_table
from ._cache import (TrialCache, block_start_index, build_trial_cache, cosine_drift,
                     iter_run_volumes, load_trial_cache, preprocess_run, volume_times)
from ._describe import describe_dataset, directory_size_mb, split_half_reliability, trial_responses
from ._frames import FrameCache, build_frame_cache
from ._splits import Splits, load_splits, make_splits
from ._voxels import clip_labels, voxel_features
from ._video_io import BadClipError, declared_video_length, read_frames, write_mp4, write_mp4_batch

__all__ = [
    "EVENT_COLUMNS", "DataError", "RunFiles", "check_same_tr", "discover_runs", "load_bold",
    "load_mask", "load_stimuli", "read_confounds", "read_events", "read_stimuli_map",
    "repetition_time", "TrialCache", "block_start_index", "build_trial_cache", "cosine_drift",
    "iter_run_volumes", "load_trial_cache", "preprocess_run", "describe_dataset",
    "directory_size_mb", "split_half_reliability", "trial_responses", "FrameCache",
    "build_frame_cache", "Splits", "load_splits", "make_splits", "BadClipError",
    "declared_video_length", "read_frames", "write_mp4", "write_mp4_batch",
    "check_data", "format_check_table", "CheckRow", "voxel_features", "clip_labels", "volume_reference",
    "volume_times",
]
