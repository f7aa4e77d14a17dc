"""Talking to a recording: multi-round dialogue and question answering from fMRI (NVL).

* :class:`Conversation` — a chat with the frozen LLM about one trial's bridged fMRI tokens
  (or a clip's video tokens), the history in the chat template, the key/value cache reused
  across turns;
* :func:`load_chat_models` — a run's trained models, with target subjects' evaluation
  trials to talk about (``llm4brain chat`` on the command line);
* :func:`qa_accuracy` — fixed questions whose answers the simulator knows, answered from
  fMRI, from the video and from shuffled fMRI, scored per question
  (:func:`qa_table`, :func:`plot_qa_accuracy`);
* :func:`concept_localisation` — which voxels drive a phrase of a decoded answer
  (gradient x input or integrated gradients through tokenizer, encoder, bridge and LLM),
  scored against the regions the simulator tuned (:func:`concept_table`,
  :func:`plot_concept_maps`).
"""
from .conversation import ContextTooLongError, Conversation, Turn, render_chat
from .attribution import (METHODS, PHRASE_GROUP, PHRASE_TYPES, ConceptAttributions, Phrase,
                          PhraseScorer, attribute, concept_attributions, find_phrases,
                          phrase_token_mask)
from .concepts import (CONCEPT_TABLE_COLUMNS, ConceptResult, auc_null, concept_localisation,
                       concept_markdown, concept_table, concept_volume, concepts_results_dir,
                       concept_reading, region_labels, roc_auc, subject_regions, write_concepts)
from .plots import plot_concept_auc, plot_concept_maps, plot_qa_accuracy
from .qa import (NONE, QA_ANSWER_COLUMNS, QA_TABLE_COLUMNS, QUESTIONS, AnswerParser,
                 QAResult, Question, ask_all, qa_accuracy, qa_answers, qa_results_dir,
                 qa_reading, qa_table, qa_truth, write_qa)
from .run import (STAGE2_HOW_TO, ChatModels, load_chat_models, load_stage2_model,
                  stage2_checkpoint)

__all__ = ["Conversation", "ContextTooLongError", "Turn", "render_chat", "ChatModels",
           "load_chat_models", "load_stage2_model", "stage2_checkpoint", "STAGE2_HOW_TO",
           "Question", "QUESTIONS", "NONE", "AnswerParser", "ask_all", "qa_truth",
           "qa_answers", "qa_table", "QAResult", "qa_accuracy", "qa_results_dir", "write_qa",
           "QA_TABLE_COLUMNS", "QA_ANSWER_COLUMNS", "plot_qa_accuracy",
           "PHRASE_TYPES", "PHRASE_GROUP", "METHODS", "Phrase", "find_phrases",
           "phrase_token_mask", "attribute", "PhraseScorer", "ConceptAttributions",
           "concept_attributions", "roc_auc", "auc_null", "region_labels", "subject_regions",
           "concept_table", "concept_markdown", "concept_volume", "ConceptResult",
           "concept_localisation",
           "concepts_results_dir", "write_concepts", "CONCEPT_TABLE_COLUMNS",
           "plot_concept_maps", "plot_concept_auc", "qa_reading", "concept_reading"]
