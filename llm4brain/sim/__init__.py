"""The simulator of the embedded dataset: procedural action clips and the BOLD they evoke.

It writes a dataset in the exact layout of HAD (OpenNeuro ds004488), which
:mod:`llm4brain.data` then reads like the real one.

========================  ===================================================================
module                    what it holds
========================  ===================================================================
``_catalogue``            action classes, clip attributes, :class:`ClipSpec` and its sampling
``_raster``               anti-aliased signed-distance primitives on a float canvas
``_scenes``               scene backgrounds
``_figures``              pose helpers and the person, ball and car agents
``_animals``              the bird, dog and fish agents
``_render``               :func:`render_clip`
``_text``                 ground-truth descriptions (:func:`describe_clip`) and their lexicon
``_features``             feature groups of a clip for the encoding model (:func:`clip_features`)
``_anatomy``              brain mask, regions and their smooth tuning fields
``_simulate``             the BOLD model and :func:`simulate_dataset` (BIDS files on disk)
``_oracle``               noise-free trial blocks (the noise ceiling's input), lag profile
========================  ===================================================================
"""
from ._anatomy import REGIONS, Region, load_brain_mask, region_weights, voxel_coordinates
from ._catalogue import (CLASS_CATALOGUE, COLOURS, DIRECTIONS, SCENES, SIZES, SPEEDS, ActionClass,
                         ClipSpec, class_index, sample_clip_specs, stim_file_name)
from ._features import LOWLEVEL_NAMES, MOTION_NAMES, clip_features
from ._oracle import block_times, lag_profile, noise_free_trial_blocks, trial_t0
from ._render import render_clip
from ._simulate import (FEATURE_GROUPS, SESSION, SIM_T0_FRACTION, SPACE, bids_name,
                        canonical_hrf, load_ground_truth, noise_free_bold, sim_slice_timing,
                        simulate_dataset, trial_regressors)
from ._text import (ACTION_SYNONYMS, AGENT_SYNONYMS, SCENE_KEYWORDS, describe_clip,
                    description_lexicon)

__all__ = [
    "REGIONS", "Region", "load_brain_mask", "region_weights", "voxel_coordinates",
    "CLASS_CATALOGUE", "COLOURS", "DIRECTIONS", "SCENES", "SIZES", "SPEEDS", "ActionClass",
    "ClipSpec", "class_index", "sample_clip_specs", "stim_file_name",
    "LOWLEVEL_NAMES", "MOTION_NAMES", "clip_features", "lag_profile", "noise_free_trial_blocks",
    "block_times", "trial_t0", "SIM_T0_FRACTION", "sim_slice_timing",
    "render_clip", "FEATURE_GROUPS", "SESSION", "SPACE", "bids_name", "canonical_hrf",
    "load_ground_truth", "noise_free_bold", "simulate_dataset", "trial_regressors",
    "ACTION_SYNONYMS", "AGENT_SYNONYMS", "SCENE_KEYWORDS", "describe_clip", "description_lexicon",
]
