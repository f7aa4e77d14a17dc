"""Decoders of fMRI as first-class objects, and the one index of every decoder of the package.

On your own arrays (scikit-learn shape)
---------------------------------------
Hyper-parameters in ``__init__``, ``fit`` on training trials, ``predict`` / ``decode`` /
``score`` on new ones; rows are trials (voxels averaged over each trial's volumes, e.g.
:func:`llm4brain.data.voxel_features`); no Config or run directory. Each is built on the
pipeline's own functions, so it computes what the pipeline computes:

:class:`RidgeDecoder` ``(alphas, cv, n_voxels)``
    voxels -> embedding: :class:`llm4brain.models.ridge.RidgeCV` (alpha by leave-one-out from
    ``stage1.ridge_alphas``: the ridge baseline of
    :func:`llm4brain.evaluation.stage1.evaluate_stage1`), optional ANOVA voxel selection
    (:func:`llm4brain.training.stage1.selective_voxels`); ``identify`` / ``similarity`` by the
    cosine centred on the **training** embeddings' mean (``centre_``), ``retrieval`` /
    ``score`` / ``permutation_p`` through :func:`llm4brain.evaluation.retrieval.retrieval_accuracy`
    and :func:`~llm4brain.evaluation.retrieval.permutation_test`.
:class:`NearestNeighbourText` ``(decoder, same_instruction)``
    the ridge + nearest-neighbour caption baseline of Stage II
    (:func:`llm4brain.evaluation.baselines.nn_baseline`): ``decode`` returns the caption of
    the nearest training trial, chosen by
    :func:`llm4brain.evaluation.baselines.nearest_training_answers`.
:class:`SemanticReadout` ``(n_voxels, C, n_pca)``
    class (and scene, ...) logistic read-outs from the most selective voxels
    (:func:`llm4brain.evaluation.semantic.fit_label_readout`,
    :class:`~llm4brain.evaluation.semantic.LabelReadout`): ``predict``, ``predict_proba``.
:func:`shuffled` -> :class:`ChanceLevel`
    any of their scores beside its chance level: test rows deranged
    (:func:`llm4brain.evaluation.controls.derangements`, the fMRI-shuffle chance's shuffles).
:func:`permutation_p`
    identification p-value (:func:`llm4brain.evaluation.retrieval.permutation_test`,
    re-exported with :func:`~llm4brain.evaluation.retrieval.retrieval_accuracy`,
    :func:`~llm4brain.evaluation.controls.derangements` and
    :func:`~llm4brain.evaluation.stage1.paired_top1_test`).

>>> dec = RidgeDecoder().fit(X_train, Y_train)                        # doctest: +SKIP
>>> print(shuffled(dec, X_test, Y_test))   # top-1 with its chance     # doctest: +SKIP
>>> NearestNeighbourText().fit(X_train, Y_train, captions).decode(X_test)   # doctest: +SKIP

Decoders that need a run (a Config, trained models, the trial cache)
--------------------------------------------------------------------
These stay where they are; here is what builds or loads each.

The paper's chain (Stage I + Stage II, a trained torch model)
    Stage I: :func:`llm4brain.training.stage1.train_stage1` (trains or loads;
    :func:`~llm4brain.training.stage1.load_stage1` loads the finished one), scored by
    :func:`llm4brain.evaluation.stage1.evaluate_stage1` (identification, beside the ridge;
    saved arrays: :func:`~llm4brain.evaluation.stage1.load_stage1_results`); its closed-form
    voxel read-out and input selection: :func:`~llm4brain.training.stage1.fit_voxel_readout`,
    :func:`~llm4brain.training.stage1.fit_input_mask`,
    :func:`~llm4brain.training.stage1.encoding_voxels`. Stage II:
    :func:`llm4brain.training.stage2.build_stage2_data` and
    :func:`~llm4brain.training.stage2.train_stage2` (trains or loads), or
    :func:`llm4brain.dialogue.load_stage2_model` (loads; with the video-LLM of
    :func:`llm4brain.training.vlpretrain.load_video_llm`); fMRI2Text:
    :func:`llm4brain.evaluation.decoding.build_eval_set`,
    :func:`~llm4brain.evaluation.decoding.decode_eval_set` /
    :func:`~llm4brain.evaluation.decoding.decode`; all of a run's decodes and controls:
    :func:`llm4brain.evaluation.stage2_outputs.write_stage2_outputs`, scored by
    :func:`llm4brain.evaluation.scoring.score_run`.
Ridge + nearest-neighbour baseline of a run
    :func:`llm4brain.evaluation.baselines.nn_baseline` (reads the Stage I results' ridge).
Noise ceilings (simulated data)
    captions: :func:`llm4brain.evaluation.baselines.ceiling_decodes`; identification:
    :func:`llm4brain.evaluation.stage1.ceiling_features` (rows ``ceiling`` of
    :func:`~llm4brain.evaluation.stage1.evaluate_stage1`); reconstruction: condition
    ``ceiling`` of :func:`llm4brain.reconstruction.run.reconstruct_run`.
Semantic read-out decoder (read-outs -> prototype video tokens -> the frozen LLM)
    :func:`llm4brain.evaluation.semantic.fit_semantic_readout`,
    :func:`~llm4brain.evaluation.semantic.semantic_decodes` (with its chance decodes);
    as a Stage I retrieval: :func:`~llm4brain.evaluation.semantic.fit_semantic_retrieval`;
    as Stage II inputs: :func:`~llm4brain.evaluation.semantic.semantic_stage2_data`,
    :func:`~llm4brain.evaluation.semantic.cross_fitted_predictions`.
Visual reconstruction (VAE + dual-stream heads; ridge-to-latent baseline)
    :func:`llm4brain.reconstruction.run.reconstruct_run` (trains
    :func:`llm4brain.reconstruction.train.train_frame_vae`,
    :func:`~llm4brain.reconstruction.train.train_dual_heads`).
Dialogue and question answering from fMRI
    :func:`llm4brain.dialogue.load_chat_models`, :class:`llm4brain.dialogue.Conversation`,
    :func:`llm4brain.dialogue.qa_accuracy`.
Controls that need a run
    fMRI-shuffle chance decodes :func:`llm4brain.evaluation.decoding.chance_decodes`
    (scored by :func:`llm4brain.evaluation.controls.chance_scores`), re-pairing chance
    :func:`~llm4brain.evaluation.controls.permutation_pairing_chance`, the LLM without brain
    tokens :func:`~llm4brain.evaluation.decoding.no_brain_decodes`, the constant answer
    :func:`~llm4brain.evaluation.decoding.constant_decodes`; N-way caption identification
    :func:`llm4brain.evaluation.identification.nway_identification`; two-way identification of
    reconstructions :func:`llm4brain.reconstruction.metrics.two_way_identification`.
Research variants (scripts in ``experiments/``, built from the functions above)
    ``zero_shot.py`` (Stage I's closed-form voxel read-out into the video-LLM's own
    projection, no Stage II training), ``semantic_stage2.py`` (Stage II trained on the
    semantic read-out's tokens), ``semantic_readout.py`` / ``semantic_retrieval.py``.
"""
from ..evaluation.controls import derangements
from ..evaluation.retrieval import permutation_test, retrieval_accuracy
from ..evaluation.stage1 import paired_top1_test
from ._chance import ChanceLevel, permutation_p, shuffled
from ._checks import NotFittedError
from ._ridge import Identification, NearestNeighbourText, RidgeDecoder
from ._semantic import SemanticReadout

__all__ = ["RidgeDecoder", "Identification", "NearestNeighbourText", "SemanticReadout",
           "ChanceLevel", "shuffled", "permutation_p", "permutation_test", "retrieval_accuracy",
           "derangements", "paired_top1_test", "NotFittedError"]
