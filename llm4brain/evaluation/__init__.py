"""Evaluation: Stage I retrieval (+ ridge baseline), Stage II decoding, baselines and ceiling,
text metrics (CIDEr-D in :mod:`.cider`), controls (chance), the Stage II results format,
scoring, tables and the report (:func:`.evaluate.evaluate_run`). Visual reconstruction lives in
:mod:`llm4brain.reconstruction`; the ridge solver in :mod:`llm4brain.models.ridge`."""
from .controls import (bootstrap_ci, chance_scores, permutation_pairing_chance,
                       summary_table)
from .metrics import TextScorer
from .scores import TextScores
from .retrieval import permutation_test, retrieval_accuracy, similarity_matrix
from ..models.ridge import RidgeCV, ridge_fit
from .tables import subject_table, write_table

__all__ = ["bootstrap_ci", "chance_scores", "permutation_pairing_chance", "summary_table",
           "TextScorer", "TextScores", "permutation_test", "retrieval_accuracy",
           "similarity_matrix", "RidgeCV", "ridge_fit", "subject_table", "write_table"]
