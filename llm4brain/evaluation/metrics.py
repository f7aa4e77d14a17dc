"""Text metrics of fMRI2Text against Video2Text (paper section 4.2, Tables 1-2).

Every score is in percent, like the paper's tables. For paired lists ``candidates``
(fMRI2Text, the decoder's answers) and ``references`` (Video2Text, the video-LLM's
surrogate answers to the same instruction) :class:`TextScorer` computes, per trial:

``bertscore`` (F1), ``bertscore_p``, ``bertscore_r``
    BERTScore (Zhang et al. 2020) with bert-score's functions: greedy cosine matching of
    the token embeddings of layer ``eval.bertscore_layers`` of ``eval.bertscore_model``;
    no baseline rescaling (none exists for MiniLM, so numbers are raw cosines). With
    ``eval.bertscore_idf`` the idf weights come from the references of the call.
``sacrebleu1``, ``sacrebleu2``, ``sacrebleu4``
    *Sentence-level* BLEU-n of sacrebleu: ``BLEU(max_ngram_order=n, effective_order=True)``,
    uniform weights over orders 1..n, ``exp`` smoothing, tokeniser ``eval.bleu_tokenize``
    (``13a`` by default, case-sensitive unless ``eval.bleu_lowercase``). Use these for
    per-trial distributions only.
``rougeL_f``, ``rougeL_p``, ``rougeL_r``
    ROUGE-L (longest common subsequence) of ``rouge-score`` with the Porter stemmer; P is
    relative to the candidate's length, R to the reference's.
``cider``
    CIDEr-D x100 of pycocoevalcap (:mod:`llm4brain.evaluation.cider`): idf from the references
    of the call (of each list in :meth:`TextScorer.score_many`), our own
    lower-case + punctuation-stripping tokenisation (COCO's PTB tokenizer needs Java).
    METEOR is left out (pycocoevalcap's needs Java, nltk's a WordNet download).

The aggregate of a set of trials (:func:`llm4brain.evaluation.scores.aggregate_scores`, used
by every table) is the mean over trials for BERTScore, ROUGE-L and CIDEr-D and the **corpus-level** BLEU
of sacrebleu
(n-gram statistics summed over trials, then one BLEU: what ``BLEU(max_ngram_order=n)
.corpus_score(candidates, [references])`` returns). To make that possible from a saved
per-trial table, the per-trial frame carries sacrebleu's sufficient statistics
(``bleu_sys_len``, ``bleu_ref_len``, ``bleu_correct_k``, ``bleu_total_k``).

Examples
--------
>>> scorer = TextScorer(cfg.eval)                       # doctest: +SKIP
>>> res = scorer.score(fmri2text, video2text, meta=trials[["subject"]])  # doctest: +SKIP
>>> res.aggregate["bertscore"], res.aggregate["sacrebleu1"]             # doctest: +SKIP
"""
from __future__ import annotations

from collections import defaultdict
from importlib.metadata import version
from collections.abc import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..config import EvalConfig
from ._bert import BERTSCORE_MODELS, _load_bert, _resolve_device, resolve_bertscore_model
from .cider import cider_d
from .scores import _MAXN, _STAT_COLS, BLEU_ORDERS, TextScores, _with_meta, bleu_from_stats

__all__ = ["METRICS", "METRIC_LABELS", "TextScorer", "metric_key", "BERTSCORE_MODELS",
           "resolve_bertscore_model"]


#: Metrics of the paper's tables, then NVL's BLEU-4 and CIDEr-D, in table order (keys of every per-trial frame / aggregate).
METRICS = ("bertscore", "sacrebleu1", "sacrebleu2", "rougeL_f", "rougeL_p", "rougeL_r",
           "sacrebleu4", "cider")


#: Column labels used in tables and plots.
METRIC_LABELS = {
    "bertscore": "BERTScore", "sacrebleu1": "SacreBLEU-1", "sacrebleu2": "SacreBLEU-2",
    "rougeL_f": "ROUGE-L F", "rougeL_p": "ROUGE-L P", "rougeL_r": "ROUGE-L R",
    "bertscore_p": "BERTScore P", "bertscore_r": "BERTScore R",
    "sacrebleu4": "SacreBLEU-4", "cider": "CIDEr-D",
}


_EMB_CACHE = 5000  # sentences whose BERTScore token embeddings a scorer keeps


def metric_key(metric: str) -> str:
    """Canonical key (``"bertscore"``) of a metric given as key or label (``"BERTScore"``)."""
    if metric in METRIC_LABELS:
        return metric
    for k, v in METRIC_LABELS.items():
        if v.lower() == str(metric).lower():
            return k
    raise KeyError(f"unknown metric {metric!r}; use one of {list(METRIC_LABELS)} "
                   f"or their labels {list(METRIC_LABELS.values())}")


def _check_texts(cands: Sequence[str], refs: Sequence[str]) -> tuple[list[str], list[str]]:
    if isinstance(cands, str) or isinstance(refs, str):
        raise TypeError("candidates and references must be lists of strings, not one string")
    cands, refs = list(cands), list(refs)
    if len(cands) != len(refs):
        raise ValueError(f"{len(cands)} candidates but {len(refs)} references: pass one "
                         f"fMRI2Text answer per Video2Text answer, in the same trial order")
    if not cands:
        raise ValueError("no trials to score (empty candidate list)")
    for name, texts in (("candidate", cands), ("reference", refs)):
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"{name} {i} is {type(t).__name__} ({t!r}), not a string; "
                                f"replace missing answers by '' before scoring")
    return cands, refs


class _CachedTokenizer:
    """rouge-score's default tokenizer with a memo: identical texts are stemmed once."""

    def __init__(self, use_stemmer: bool):
        from rouge_score import tokenizers
        self._tok = tokenizers.DefaultTokenizer(use_stemmer)
        self._cache: dict[str, list[str]] = {}

    def tokenize(self, text: str) -> list[str]:
        out = self._cache.get(text)
        if out is None:
            if len(self._cache) > 200_000:
                self._cache.clear()
            out = self._cache[text] = self._tok.tokenize(text)
        return out


class TextScorer:
    """BERTScore, SacreBLEU-1/2/4, ROUGE-L (percent) and CIDEr-D (x100) of candidates.

    Parameters
    ----------
    eval_cfg : EvalConfig, optional
        ``cfg.eval`` (model, layer, idf, BLEU tokeniser, stemmer). Defaults to the CPU profile.
    device : str, optional
        ``cpu``, ``cuda`` or ``auto``/None (CUDA when available) for the BERTScore model.
    bertscore : bool
        False skips BERTScore (its columns become NaN): quick BLEU/ROUGE-only scoring.

    Notes
    -----
    The BERTScore model is loaded on first use and shared by every scorer with the same
    settings; each scorer embeds each distinct sentence once and keeps the embeddings, so
    re-pairings and shuffles of the same texts (:meth:`score_many`) cost only the matching.
    """

    def __init__(self, eval_cfg: EvalConfig | None = None, *, device: str | None = None,
                 bertscore: bool = True):
        from rouge_score import rouge_scorer
        from sacrebleu.metrics import BLEU

        self.cfg = eval_cfg if eval_cfg is not None else EvalConfig()
        self.device = _resolve_device(device)
        self.use_bertscore = bool(bertscore)
        self._bleu = BLEU(max_ngram_order=_MAXN, effective_order=True,
                          tokenize=self.cfg.bleu_tokenize, lowercase=self.cfg.bleu_lowercase)
        self._rouge = rouge_scorer.RougeScorer(
            ["rougeL"], tokenizer=_CachedTokenizer(self.cfg.rouge_stemmer))
        self._pair_cache: dict[tuple[str, str], tuple] = {}
        self._emb: dict[str, tuple] = {}
        self._model_dir = resolve_bertscore_model(self.cfg.bertscore_model) if bertscore else None

    # ------------------------------------------------------------------ metadata
    @property
    def metadata(self) -> dict:
        """Settings behind the numbers (saved beside every result)."""

        import sacrebleu
        from sacrebleu.metrics import BLEU
        sigs = {}
        for n in BLEU_ORDERS:
            b = BLEU(max_ngram_order=n, tokenize=self.cfg.bleu_tokenize,
                     lowercase=self.cfg.bleu_lowercase)
            b.corpus_score(["a"], [["a"]])  # fixes the number of references in the signature
            sigs[f"sacrebleu{n}"] = str(b.get_signature())
        return {
            "scale": "percent",
            "bertscore_model": self.cfg.bertscore_model,
            "bertscore_model_dir": str(self._model_dir) if self._model_dir else None,
            "bertscore_layers": self.cfg.bertscore_layers,
            "bertscore_idf": self.cfg.bertscore_idf,
            "bertscore_idf_sentences": "references of the call" if self.cfg.bertscore_idf else None,
            "bertscore_rescale_with_baseline": False,
            "bertscore_enabled": self.use_bertscore,
            "bert_score_version": version("bert-score"),
            "rouge_score_version": version("rouge-score"),
            "bertscore_aggregate": "mean over trials of the per-trial F1 (P, R)",
            "sacrebleu_version": sacrebleu.__version__,
            "bleu_table_level": ("corpus (n-gram statistics summed over trials), "
                                 "effective_order off"),
            "bleu_per_trial_level": "sentence, effective_order on",
            "bleu_weights": "uniform over orders 1..n (max_ngram_order=n)",
            "bleu_signature": sigs,
            "rouge": "rouge-score rougeL, mean over trials of per-trial F/P/R",
            "rouge_stemmer": self.cfg.rouge_stemmer,
            "cider": ("pycocoevalcap CiderScorer (CIDEr-D, n=4, sigma=6) x100, idf from the "
                      "references of the call, mean over trials; tokenised by lower-casing "
                      "and removing punctuation (not COCO's Java PTB tokenizer)"),
            "pycocoevalcap_version": version("pycocoevalcap"),
            "meteor": "not computed: pycocoevalcap's METEOR needs Java, nltk's a WordNet download",
            "device": self.device,
        }

    # ------------------------------------------------------------------ pieces
    def bertscore(self, cands: Sequence[str], refs: Sequence[str],
                  idf_sents: Sequence[str] | None = None) -> np.ndarray:
        """BERTScore P, R, F1 per pair (bert-score's own embedding and matching functions).

        Token embeddings of each distinct sentence are computed once and kept (up to
        ``_EMB_CACHE`` sentences), so the references, scored against the model, the baseline,
        the ceiling and the chance draws, are embedded once.

        Parameters
        ----------
        cands, refs : list of str of length n
        idf_sents : list of str, optional
            Sentences for the idf weights when ``eval.bertscore_idf`` (default: ``refs``),
            ``log((M + 1) / (df + 1))`` as ``bert_score.score(idf=True)``.

        Returns
        -------
        ndarray of shape (n, 3)
            Precision, recall, F1 in percent. A pair with an empty text scores 0
            (bert-score's convention; bert-score 0.3.13 itself fails on "" with transformers 5).
        """
        import torch
        from bert_score.utils import get_idf_dict, greedy_cos_idf

        cands, refs = _check_texts(cands, refs)
        if not self.use_bertscore:
            return np.full((len(cands), 3), np.nan)
        model, tok = _load_bert(self._model_dir, self.cfg.bertscore_layers, self.device)
        if self.cfg.bertscore_idf:
            sents = [t for t in (idf_sents if idf_sents is not None else refs) if t.strip()]
            idf = get_idf_dict(sents or ["."], tok, nthreads=0)
        else:
            idf = defaultdict(lambda: 1.0)
            idf[tok.sep_token_id] = 0
            idf[tok.cls_token_id] = 0
        out = np.zeros((len(cands), 3))
        keep = np.array([bool(c.strip()) and bool(r.strip()) for c, r in zip(cands, refs)])
        if not keep.any():
            return out
        kc = [c for c, k in zip(cands, keep) if k]
        kr = [r for r, k in zip(refs, keep) if k]
        stats = self._embed(kc + kr, model, tok)
        bs = self.cfg.bertscore_batch_size
        dev = next(model.parameters()).device

        def pad(batch):
            emb = [stats[s][0].to(dev) for s in batch]
            w = [torch.tensor([idf[i] for i in stats[s][1]], dtype=torch.float, device=dev)
                 for s in batch]
            lens = torch.tensor([e.shape[0] for e in emb])
            mask = (torch.arange(int(lens.max()))[None, :] < lens[:, None]).to(dev)
            return (torch.nn.utils.rnn.pad_sequence(emb, batch_first=True, padding_value=2.0),
                    mask, torch.nn.utils.rnn.pad_sequence(w, batch_first=True))

        res = []
        with torch.no_grad():
            for b in range(0, len(kc), bs):
                P, R, F = greedy_cos_idf(*pad(kr[b:b + bs]), *pad(kc[b:b + bs]), False)
                res.append(torch.stack([P, R, F], dim=1).cpu())
        out[keep] = torch.cat(res).numpy().astype(float) * 100.0
        return np.nan_to_num(out, nan=0.0)

    def bertscore_matrix(self, cands: Sequence[str], refs: Sequence[str]) -> np.ndarray:
        """BERTScore F1 (percent) of every candidate against every reference, (n_c, n_r).

        The same token embeddings and greedy matching as :meth:`bertscore` (cosine of
        layer-``eval.bertscore_layers`` token embeddings, CLS/SEP excluded, no idf unless
        ``eval.bertscore_idf``), for all pairs at once: the diagonal of
        ``bertscore_matrix(c, r)`` equals ``bertscore(c, r)[:, 2]``. Used for N-way caption
        identification. An empty text scores 0 against everything.
        """
        import torch
        from bert_score.utils import get_idf_dict

        cands, refs = [str(c) for c in cands], [str(r) for r in refs]
        out = np.zeros((len(cands), len(refs)))
        if not self.use_bertscore:
            return np.full_like(out, np.nan)
        model, tok = _load_bert(self._model_dir, self.cfg.bertscore_layers, self.device)
        if self.cfg.bertscore_idf:
            idf = get_idf_dict([t for t in refs if t.strip()] or ["."], tok, nthreads=0)
        else:
            idf = defaultdict(lambda: 1.0)
            idf[tok.sep_token_id] = 0
            idf[tok.cls_token_id] = 0
        kc = [i for i, c in enumerate(cands) if c.strip()]
        kr = [j for j, r in enumerate(refs) if r.strip()]
        if not kc or not kr:
            return out
        stats = self._embed([cands[i] for i in kc] + [refs[j] for j in kr], model, tok)

        def padded(texts):
            emb = [torch.nn.functional.normalize(stats[t][0].float(), dim=-1) for t in texts]
            w = [torch.tensor([idf[i] for i in stats[t][1]], dtype=torch.float) for t in texts]
            E = torch.nn.utils.rnn.pad_sequence(emb, batch_first=True)
            W = torch.nn.utils.rnn.pad_sequence(w, batch_first=True)
            lens = torch.tensor([e.shape[0] for e in emb])
            M = torch.arange(E.shape[1])[None, :] < lens[:, None]
            return E, W, M

        R, Wr, Mr = padded([refs[j] for j in kr])                 # (nr, Lr, d)
        with torch.no_grad():
            for a in range(0, len(kc), 32):
                C, Wc, Mc = padded([cands[i] for i in kc[a:a + 32]])   # (nc, Lc, d)
                S = torch.einsum("icd,jrd->ijcr", C, R)                # (nc, nr, Lc, Lr)
                S = S.masked_fill(~Mr[None, :, None, :], -2.0).masked_fill(~Mc[:, None, :, None], -2.0)
                P = (S.max(-1).values * Wc[:, None]).sum(-1) / Wc.sum(-1)[:, None]
                Rc = (S.max(-2).values * Wr[None]).sum(-1) / Wr.sum(-1)[None]
                F = 2 * P * Rc / (P + Rc)
                out[np.ix_(kc[a:a + 32], kr)] = 100 * F.nan_to_num(0.0).numpy()
        return out

    def _embed(self, sents: Sequence[str], model, tok) -> dict:
        """{sentence: (token embeddings (L, d) on CPU, token ids)} for every sentence given."""

        from bert_score.utils import get_bert_embedding, sent_encode
        need = {s: self._emb[s] for s in dict.fromkeys(sents) if s in self._emb}
        todo = sorted((s for s in dict.fromkeys(sents) if s not in need),
                      key=lambda x: len(x.split(" ")), reverse=True)  # as bert-score batches
        dummy = defaultdict(lambda: 1.0)
        bs = self.cfg.bertscore_batch_size
        for b in tqdm(range(0, len(todo), bs), desc="BERTScore embeddings", leave=False,
                      disable=len(todo) < 20 * bs):
            batch = todo[b:b + bs]
            emb, mask, _ = get_bert_embedding(batch, model, tok, dummy, device=self.device)
            emb, mask = emb.cpu(), mask.cpu()
            for k, sen in enumerate(batch):
                n = int(mask[k].sum())
                need[sen] = (emb[k, :n].clone(), sent_encode(tok, sen))
        for sen in todo:  # keep for later calls, oldest evicted first
            self._emb[sen] = need[sen]
        while len(self._emb) > _EMB_CACHE:
            self._emb.pop(next(iter(self._emb)))
        return need

    def _pair(self, cand: str, ref: str) -> tuple:
        key = (cand, ref)
        hit = self._pair_cache.get(key)
        if hit is None:
            s = self._bleu.sentence_score(cand, [ref])
            stats = [s.sys_len, s.ref_len, *s.counts[:_MAXN], *s.totals[:_MAXN]]
            sent = [bleu_from_stats(s.counts, s.totals, s.sys_len, s.ref_len, n,
                                    effective_order=True) for n in BLEU_ORDERS]
            r = self._rouge.score(ref, cand)["rougeL"]  # score(target, prediction)
            hit = (stats, sent, (100 * r.fmeasure, 100 * r.precision, 100 * r.recall))
            if len(self._pair_cache) > 500_000:
                self._pair_cache.clear()
            self._pair_cache[key] = hit
        return hit

    # ------------------------------------------------------------------ main API
    def score_pairs(self, cands: Sequence[str], refs: Sequence[str], *,
                    idf_sents: Sequence[str] | None = None, n_blocks: int = 1) -> pd.DataFrame:
        """Per-pair metrics (no aggregate): the core used by :meth:`score`/:meth:`score_many`.

        ``n_blocks`` > 1: the pairs are that many equal consecutive blocks (e.g. K shuffles of
        the same trials) and CIDEr-D's idf is computed within each block, so each block scores
        as it would alone.

        Returns
        -------
        DataFrame of shape (n, ...)
            ``candidate``, ``reference``, metrics in percent, BLEU statistics.
        """
        cands, refs = _check_texts(cands, refs)
        bs = self.bertscore(cands, refs, idf_sents=idf_sents)
        rows = [self._pair(c, r) for c, r in zip(cands, refs)]
        df = pd.DataFrame({"candidate": cands, "reference": refs})
        df["bertscore"], df["bertscore_p"], df["bertscore_r"] = bs[:, 2], bs[:, 0], bs[:, 1]
        sent = np.array([r[1] for r in rows], dtype=float).reshape(len(rows), len(BLEU_ORDERS))
        for j, n in enumerate(BLEU_ORDERS):
            df[f"sacrebleu{n}"] = sent[:, j]
        rouge = np.array([r[2] for r in rows], dtype=float).reshape(len(rows), 3)
        df["rougeL_f"], df["rougeL_p"], df["rougeL_r"] = rouge[:, 0], rouge[:, 1], rouge[:, 2]
        stats = np.array([r[0] for r in rows], dtype=float).reshape(len(rows), len(_STAT_COLS))
        for j, c in enumerate(_STAT_COLS):
            df[c] = stats[:, j].astype(int)
        n = len(cands) // n_blocks
        if n_blocks < 1 or n * n_blocks != len(cands):
            raise ValueError(f"{len(cands)} pairs do not split into {n_blocks} equal blocks")
        df["cider"] = np.concatenate([cider_d(cands[k * n:(k + 1) * n], refs[k * n:(k + 1) * n])
                                      for k in range(n_blocks)])
        return df

    def score(self, cands: Sequence[str], refs: Sequence[str], *,
              meta: pd.DataFrame | None = None) -> TextScores:
        """Score fMRI2Text ``cands`` against Video2Text ``refs``, trial by trial.

        Parameters
        ----------
        cands, refs : list of str of length n_trials
        meta : DataFrame of length n_trials, optional
            Trial information (e.g. ``subject``, ``class_name``) put in front of the
            per-trial columns, in the same order (its index is dropped).

        Returns
        -------
        TextScores
            ``.per_trial`` (n_trials rows), ``.aggregate`` (table values), ``.metadata``.
        """
        df = self.score_pairs(cands, refs)
        return TextScores(_with_meta(df, meta), {}, self.metadata)

    def score_many(self, cand_lists: Sequence[Sequence[str]], refs: Sequence[str], *,
                   meta: pd.DataFrame | None = None,
                   ref_lists: Sequence[Sequence[str]] | None = None) -> list[TextScores]:
        """Score several candidate lists against the same references in one BERTScore call.

        Parameters
        ----------
        cand_lists : list of K lists of str, each of length n_trials
            E.g. the decoder's answers under K shuffles of the fMRI across trials.
        refs : list of str of length n_trials
        meta : DataFrame, optional
            As in :meth:`score`.
        ref_lists : list of K lists of str, optional
            Re-paired references per list (permutation chance); idf still uses ``refs``.

        Returns
        -------
        list of K TextScores
        """
        refs = list(refs)
        cand_lists = [list(c) for c in cand_lists]
        if not cand_lists:
            raise ValueError("score_many needs at least one candidate list")
        ref_lists = [refs] * len(cand_lists) if ref_lists is None else [list(r) for r in ref_lists]
        if len(ref_lists) != len(cand_lists):
            raise ValueError(f"{len(cand_lists)} candidate lists but {len(ref_lists)} "
                             f"reference lists")
        for k, (c, r) in enumerate(zip(cand_lists, ref_lists)):
            if len(c) != len(refs) or len(r) != len(refs):
                raise ValueError(f"list {k} has {len(c)} candidates / {len(r)} references; "
                                 f"each must have one per trial ({len(refs)})")
        flat_c = [t for c in cand_lists for t in c]
        flat_r = [t for r in ref_lists for t in r]
        df = self.score_pairs(flat_c, flat_r, idf_sents=refs, n_blocks=len(cand_lists))
        md = self.metadata
        n = len(refs)
        return [TextScores(_with_meta(df.iloc[k * n:(k + 1) * n].reset_index(drop=True), meta),
                           {}, md) for k in range(len(cand_lists))]
