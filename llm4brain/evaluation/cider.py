"""CIDEr-D of fMRI2Text against Video2Text, with pycocoevalcap's scorer (NVL's caption table).

CIDEr-D (Vedantam et al. 2015) compares the tf-idf weighted 1-4-gram vectors of a candidate
and its references (cosine, with clipping of the candidate's counts and a Gaussian length
penalty, sigma = 6; x10), the document frequencies coming from the references of *every*
trial scored together. The numbers here are pycocoevalcap's ``CiderScorer`` (the COCO caption
code, pure Python) times 100, the scale of COCO and NVL tables (``1.17`` -> ``117``).

Tokenisation: COCO tokenises with the Stanford PTB tokenizer, which needs Java; we tokenise
ourselves instead (lower case, every character that is neither a letter, digit nor space
replaced by a space, split on white space), which drops punctuation as COCO's does. A number
here can therefore differ slightly from a Java-tokenised COCO number on the same texts (e.g.
``don't`` is ``don t`` here, ``do n't`` there).

One reference per trial (the Video2Text answer); the document frequencies are those of the
references of the call, so the per-trial scores of one call share one idf, and the mean over
every trial of the call is pycocoevalcap's corpus CIDEr-D. Tables average per-trial scores
over the trials of a subject (the idf staying that of all evaluation trials).

METEOR is not reported: pycocoevalcap's METEOR runs a Java jar and nltk's needs the WordNet
corpus downloaded at run time; neither runs offline here.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

__all__ = ["coco_tokenize", "cider_d", "CIDER_NOTE"]


#: One-line note for table footers.
CIDER_NOTE = ("CIDEr-D: pycocoevalcap's CiderScorer x100 (COCO scale), one reference per trial "
              "(Video2Text), idf from the references of all evaluation trials; our own "
              "tokenisation (lower case, punctuation removed) instead of COCO's Java PTB "
              "tokenizer. METEOR left out: pycocoevalcap's needs Java, nltk's a WordNet "
              "download; neither runs offline.")

_PUNCT = re.compile(r"[^\w\s]|_")


def coco_tokenize(text: str) -> str:
    """Lower-case ``text``, replace punctuation by spaces, and join its words by one space.

    >>> coco_tokenize("A man, on a RED bike!")
    'a man on a red bike'
    """
    if not isinstance(text, str):
        raise TypeError(f"expected a string, got {type(text).__name__} ({text!r})")
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def cider_d(candidates: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], *,
            n: int = 4, sigma: float = 6.0, tokenize: bool = True) -> np.ndarray:
    """Per-trial CIDEr-D (x100) of each candidate against its reference(s).

    Parameters
    ----------
    candidates : list of str of length n_trials
    references : list of length n_trials of str (one reference) or of lists of str
    n : int
        Highest n-gram order (4 in CIDEr-D).
    sigma : float
        Width of the Gaussian length penalty (6 in CIDEr-D).
    tokenize : bool
        Apply :func:`coco_tokenize` first (False: texts are already tokenised, words split on
        white space).

    Returns
    -------
    ndarray of shape (n_trials,)
        CIDEr-D per trial, x100; its mean is the corpus CIDEr-D of pycocoevalcap (x100).
        A trial whose candidate is empty scores 0; all references empty -> all 0.
    """
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    cands = list(candidates)
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    if len(cands) != len(refs):
        raise ValueError(f"{len(cands)} candidates but {len(refs)} references: one reference "
                         f"(list) per candidate, in trial order")
    if not cands:
        raise ValueError("no trials to score (empty candidate list)")
    if any(len(r) == 0 for r in refs):
        raise ValueError("every trial needs at least one reference")
    tok = coco_tokenize if tokenize else (lambda s: " ".join(str(s).split()))
    cands = [tok(c) for c in cands]
    refs = [[tok(x) for x in r] for r in refs]
    if not any(x for r in refs for x in r):
        return np.zeros(len(cands))
    scorer = CiderScorer(n=n, sigma=sigma)
    for c, r in zip(cands, refs):
        scorer += (c, r)
    _, scores = scorer.compute_score()
    return 100.0 * np.asarray(scores, dtype=float)
