"""Concept localisation, part 1: which voxels drive a phrase of a decoded answer (NVL's
"concept locating").

For one evaluation trial of a target subject, the quantity explained is the log-probability
of a **phrase** of the decoded answer (the agent noun, the scene, the motion words, ...) under
teacher forcing: the trial's fMRI block -> tokenizer -> SC-MBM encoder -> Stage I projection ->
Stage II bridge -> tokens spliced into the prompt Stage II was trained on -> frozen LLM, the
answer fed after the prompt, and the log-probabilities of the phrase's tokens summed,

    f_p(x) = sum_{t in phrase} log p(y_t | y_<t, prompt, bridge(encoder(x))).

Its attribution to the input voxels is **gradient x input** (default) or **integrated
gradients** (Sundararajan et al. 2017) from the all-zero block:

    GxI_v   = sum_t x_{t,v} * d f / d x_{t,v}
    IG_v    = sum_t x_{t,v} * (1/m) sum_{k=1..m} d f / d x_{t,v} at ((k - 1/2)/m) x

(``t`` the volumes of the block, summed, so a voxel gets one number per trial). Why these:
the blocks are z-scored BOLD, so the zero block is each voxel's mean signal — "no evoked
response" — and both methods measure a voxel's contribution relative to it, in units of the
phrase's log-probability. Gradient x input costs one forward and backward pass per trial (all
phrase types share the forward pass), IG ``m`` of them; on a CPU profile the whole concept
study must take seconds, so notebook 07 uses gradient x input.

**Gradient x input is also the only one of the two that is meaningful for the ``cnn3d``
tokenizer.** Its first convolution is followed by GroupNorm, which divides by the spread of
the feature map: the whole chain is (up to GroupNorm's epsilon) invariant to the scale of the
block, ``f(a x) = f(x)`` for every ``a`` above about 0.01. IG's straight path from the zero
block then spends its whole change ``f(x) - f(0)`` in the first percent of the path, where only
the epsilon decides what happens (``f(0)`` is an artefact, not "no response"), so IG with a few
steps is wrong and with many steps measures the epsilon. Gradient x input of a
scale-invariant ``f`` sums to zero over voxels (Euler's theorem): voxel ``v``'s value is the
first-order change of the phrase's log-probability when *that voxel's* signal alone is
scaled towards zero, positive and negative across the brain — which is why the maps are
scored on |attribution|. :func:`concept_attributions` refuses IG on a GroupNorm tokenizer;
on ``nvl`` (resampling, linear patch embedding, pre-norm ViT) IG is well defined and its
contributions add up to ``f(x) - f(0)`` (tested), the check that the first-order picture of
gradient x input holds. Captum implements both methods but knows nothing of the spliced,
variable-length prompts; the lines here run on the exact Stage II forward pass
(:func:`llm4brain.models.video_llm.splice_prefix`) and need no new dependency.

Phrases are found with the simulator's lexicon (:class:`llm4brain.evaluation.attributes.
AttributeParser`): :data:`PHRASE_TYPES` maps a phrase type onto the attributes whose words
make it; the first such words of the answer are the phrase. An answer without them gives no
attribution for that type (NaN), and is counted as such.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..evaluation.attributes import _WORD, AttributeParser, load_lexicon
from ..models.video_llm import IGNORE_INDEX

__all__ = ["PHRASE_TYPES", "PHRASE_GROUP", "METHODS", "Phrase", "find_phrases",
           "phrase_token_mask", "attribute", "PhraseScorer", "ConceptAttributions",
           "concept_attributions"]

#: Phrase types and the lexicon attributes whose words make them.
PHRASE_TYPES: dict[str, tuple[str, ...]] = {
    "agent": ("agent",), "action": ("action",), "motion": ("direction", "speed"),
    "scene": ("scene",), "colour": ("colour",)}
#: The simulator's feature group (``sim.REGIONS[...].group``) each phrase type names.
PHRASE_GROUP: dict[str, str] = {"agent": "agent", "action": "action", "motion": "motion",
                                "scene": "scene", "colour": "lowlevel"}
#: Attribution methods of :func:`attribute`.
METHODS = ("gradient_x_input", "integrated_gradients")


@dataclass(frozen=True)
class Phrase:
    """Words of an answer naming one attribute value: ``text[start:end]``."""

    kind: str
    attribute: str
    value: str
    start: int
    end: int
    text: str


def find_phrases(text: str, parser: AttributeParser | None = None,
                 phrase_types: Mapping[str, Sequence[str]] = PHRASE_TYPES) -> dict[str, Phrase]:
    """The first phrase of each type in ``text`` (types it lacks are left out).

    Parameters
    ----------
    text : str
    parser : AttributeParser, optional
        Default: the simulator's lexicon, no unmarked values.
    phrase_types : mapping type -> attributes

    Returns
    -------
    dict type -> Phrase (character span in ``text``)
    """
    text = str(text or "")
    parser = parser or AttributeParser(load_lexicon(None), unmarked=False)
    low = text.lower()
    if len(low) != len(text):          # a character whose lower case is longer: no spans
        return {}
    spans = [(m.start(), m.end()) for m in _WORD.finditer(low)]
    kind_of = {a: k for k, attrs in phrase_types.items() for a in attrs}
    out: dict[str, Phrase] = {}
    for i, n, attr, value in parser.matches(text):
        k = kind_of.get(attr)
        if k is None or k in out:
            continue
        s, e = spans[i][0], spans[i + n - 1][1]
        out[k] = Phrase(k, attr, value, s, e, text[s:e])
    return out


def _char_ends(tokenizer, ids: list[int]) -> list[tuple[int, int]]:
    """Character span of each token of ``decode(ids)`` (slow tokenizers)."""
    out, prev = [], 0
    for k in range(len(ids)):
        end = len(tokenizer.decode(ids[:k + 1], clean_up_tokenization_spaces=False))
        out.append((prev, end))
        prev = end
    return out


def phrase_token_mask(tokenizer, answer: str, phrases: Sequence[Phrase],
                      max_tokens: int | None = None) -> tuple[list[int], np.ndarray]:
    """Answer token ids (as :func:`~llm4brain.models.video_llm.splice_prefix` makes them)
    and which of them belong to each phrase.

    Returns
    -------
    ids : list of int (truncated to ``max_tokens``)
    mask : bool array of shape (len(ids), len(phrases)); a phrase cut off by the
        truncation has no tokens.
    """
    ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
        if list(enc["input_ids"]) != ids:
            raise RuntimeError("the tokenizer gives different ids with offsets")
        spans = [tuple(o) for o in enc["offset_mapping"]]
    else:
        spans = _char_ends(tokenizer, ids)
    if max_tokens is not None:
        ids, spans = ids[:max_tokens], spans[:max_tokens]
    mask = np.zeros((len(ids), len(phrases)), bool)
    for j, p in enumerate(phrases):
        for k, (s, e) in enumerate(spans):
            mask[k, j] = s < p.end and e > p.start and e > s
    return ids, mask


def attribute(f: Callable[[torch.Tensor], torch.Tensor], blocks: torch.Tensor, *,
              method: str = "gradient_x_input", n_steps: int = 8,
              outputs: Sequence[int] | None = None, return_outputs: bool = False):
    """Gradient x input or integrated gradients of ``f`` on blocks, summed over volumes.

    Parameters
    ----------
    f : callable ``(B, T, X, Y, Z) -> (B, K)``
        One scalar per sample and output; sample ``b``'s outputs must depend on block ``b``
        only (models in eval mode).
    blocks : tensor of shape (B, T, X, Y, Z)
    method : ``"gradient_x_input"`` or ``"integrated_gradients"`` (zero baseline)
    n_steps : int
        Integrated gradients' midpoint-rule steps ``m``.
    outputs : sequence of int, optional
        The outputs to attribute (default all K); the others give zero maps.

    return_outputs : bool
        Also return ``f`` at the last point of the path (``f(blocks)`` for gradient x input),
        detached, (B, K).

    Returns
    -------
    tensor of shape (B, K, X, Y, Z), float32, on the CPU (and the outputs)
    """
    if method not in METHODS:
        raise ValueError(f"attribution method {method!r}: use one of {METHODS}")
    if method == "integrated_gradients" and int(n_steps) < 1:
        raise ValueError(f"integrated gradients needs n_steps >= 1, got {n_steps}")
    x = blocks.detach().float()
    alphas = ([1.0] if method == "gradient_x_input"
              else [(k + 0.5) / int(n_steps) for k in range(int(n_steps))])
    grads = last = None
    for a in alphas:
        xa = (a * x).requires_grad_(True)
        out = f(xa)
        last = out.detach().float().cpu()
        if out.dim() != 2 or out.shape[0] != x.shape[0]:
            raise ValueError(f"f must return (B, K) = ({x.shape[0]}, K), got {tuple(out.shape)}")
        ks = list(range(out.shape[1])) if outputs is None else list(outputs)
        if grads is None:
            grads = torch.zeros((x.shape[0], out.shape[1]) + tuple(x.shape[2:]))
        for j, k in enumerate(ks):
            if not out[:, k].requires_grad:
                continue
            g, = torch.autograd.grad(out[:, k].sum(), xa, retain_graph=j < len(ks) - 1,
                                     allow_unused=True)
            if g is not None:
                grads[:, k] += (g.detach().float() * x).sum(1).cpu() / len(alphas)
    return (grads, last) if return_outputs else grads


class PhraseScorer:
    """``f(blocks) -> (B, K)``: teacher-forced log-probability of K phrases of each answer.

    Parameters
    ----------
    stage1 : Stage1Model (tokenizer, encoder, projection)
    stage2 : Stage2Model (bridge, frozen LLM, prompt format)
    instructions : list of B str
    answers : list of B str
        The decoded answers, fed after the prompt.
    masks : list of B bool arrays (n_answer_tokens, K)
        :func:`phrase_token_mask` of each answer (the same truncation as Stage II:
        ``llm.max_answer_tokens``).
    """

    def __init__(self, stage1, stage2, instructions: Sequence[str], answers: Sequence[str],
                 masks: Sequence[np.ndarray]):
        self.stage1, self.stage2 = stage1, stage2
        self.instructions, self.answers = list(instructions), list(answers)
        self.masks = [np.asarray(m, bool) for m in masks]
        self.K = self.masks[0].shape[1] if self.masks else 0

    def __call__(self, blocks: torch.Tensor) -> torch.Tensor:
        llm = self.stage2.llm
        dev = next(self.stage2.bridge.parameters()).device
        z = self.stage1.fmri_tokens(blocks.to(dev))
        batch, _ = self.stage2.prompt_batch(z, self.instructions, self.answers)
        B, L = batch.labels.shape
        w = torch.zeros((B, L, self.K), device=dev)
        for b, m in enumerate(self.masks):
            n = int((batch.labels[b] != IGNORE_INDEX).sum())        # answer tokens + end token
            if n - 1 != len(m):
                raise RuntimeError(f"answer {b}: {n - 1} label tokens, {len(m)} in its mask")
            if len(m):
                w[b, L - n:L - 1] = torch.as_tensor(m, dtype=torch.float32, device=dev)
        sel = w[:, 1:].sum(-1) > 0                                   # targets at columns 1..
        out = torch.zeros((B, self.K), device=dev)
        if not bool(sel.any()):
            return out
        model = llm.model
        base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        h = base(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
                 position_ids=batch.position_ids, use_cache=False).last_hidden_state
        logits = model.get_output_embeddings()(h[:, :-1][sel]).float()
        tgt = batch.labels[:, 1:][sel]
        lp = F.log_softmax(logits, -1).gather(1, tgt[:, None])[:, 0]      # (n_sel,)
        rows = torch.nonzero(sel)[:, 0]
        return out.index_add(0, rows, lp[:, None] * w[:, 1:][sel])


@dataclass
class ConceptAttributions:
    """Per-trial attribution maps of phrase types (see :func:`concept_attributions`).

    Attributes
    ----------
    maps : float32 array of shape (n_trials, K, n_voxels)
        Attribution of each phrase type to the mask voxels (NaN where the answer has no
        phrase of that type).
    trials : DataFrame (n_trials rows)
        ``subject``, ``trial_index``, ``stim_file``, ``instruction``, ``answer`` and, per
        type ``k``, ``phrase_<k>`` (the words, "" when absent) and ``logp_<k>``.
    phrase_types : list of K str
    mask : bool array (X, Y, Z); affine : (4, 4) of the trial cache's grid
    settings : dict
    """

    maps: np.ndarray
    trials: pd.DataFrame
    phrase_types: list
    mask: np.ndarray
    affine: np.ndarray
    settings: dict = field(default_factory=dict)

    def mean_abs(self, kind: str, subject: str | None = None) -> np.ndarray:
        """Mean |attribution| (n_voxels,) of a phrase type over the trials that have it
        (of one subject, or all)."""
        k = self.phrase_types.index(kind)
        rows = np.ones(len(self.trials), bool) if subject is None else (
            self.trials["subject"].astype(str).to_numpy() == str(subject))
        m = self.maps[rows, k]
        m = m[np.isfinite(m).all(1)]
        return np.abs(m).mean(0) if len(m) else np.full(self.maps.shape[2], np.nan, np.float32)

    def n_trials(self, kind: str, subject: str | None = None) -> int:
        col = self.trials[f"phrase_{kind}"].astype(str) != ""
        if subject is not None:
            col &= self.trials["subject"].astype(str) == str(subject)
        return int(col.sum())


def concept_attributions(models, decodes: pd.DataFrame, *, phrase_types=PHRASE_TYPES,
                         method: str = "gradient_x_input", n_steps: int = 8,
                         max_trials: int | None = None, batch_size: int = 8,
                         lexicon=None, progress: bool = False) -> ConceptAttributions:
    """Attribution maps of the phrases of decoded answers, on target evaluation trials.

    Parameters
    ----------
    models : ChatModels (:func:`llm4brain.dialogue.load_chat_models`)
    decodes : DataFrame with ``trial_index``, ``instruction``, ``fmri2text``
        The answers to explain, e.g. Stage II's ``fmri2text_<run>.tsv``
        (:func:`llm4brain.evaluation.stage2_results.read_decodes`); only rows of the
        models' target evaluation trials are used.
    phrase_types : mapping type -> attributes (default :data:`PHRASE_TYPES`)
    method, n_steps : see :func:`attribute`
    max_trials : int, optional
        Use at most this many trials per subject (the first ones in trial-cache order: a
        fixed choice, made before any result is seen).
    batch_size : int
    lexicon : lexicon source of the phrase words (default the simulator's)

    Raises
    ------
    ValueError
        No decoded answer matches a target evaluation trial.
    """

    need = {"trial_index", "instruction", "fmri2text"} - set(decodes.columns)
    if need:
        raise ValueError(f"decodes lack columns {sorted(need)}: pass a Stage II decoding table "
                         f"(results/stage2/fmri2text_*.tsv, read_decodes)")
    if method not in METHODS:
        raise ValueError(f"attribution method {method!r}: use one of {METHODS}")
    kinds = list(phrase_types)
    tk = models.stage1.encoder.tokenizer
    if method == "integrated_gradients" and any(isinstance(m, torch.nn.GroupNorm)
                                                for m in tk.modules()):
        raise ValueError(f"integrated gradients from the zero block are not meaningful for the "
                         f"{tk.kind} tokenizer with GroupNorm (tokenizer.norm: group makes the "
                         f"model invariant to the block's scale, so f(0) is an artefact): use "
                         f"method='gradient_x_input'")
    parser = AttributeParser(load_lexicon(lexicon), unmarked=False)
    tr = models.trials.merge(decodes[["trial_index", "instruction", "fmri2text"]]
                             .drop_duplicates("trial_index"), on="trial_index", how="inner")
    if not len(tr):
        raise ValueError("none of the decoded answers is of a target evaluation trial of this "
                         "run: pass the run's own results/stage2/fmri2text_*.tsv")
    tr = tr.sort_values(["subject", "trial_index"], kind="stable")
    if max_trials is not None:
        tr = tr.groupby("subject", sort=False).head(int(max_trials))
    tr = tr.reset_index(drop=True)
    tok = models.llm.tokenizer
    cap = models.cfg.llm.max_answer_tokens
    phrases, masks = [], []
    for text in tr["fmri2text"].fillna("").astype(str):
        ph = find_phrases(text, parser, phrase_types)
        _, m = phrase_token_mask(tok, text, [ph.get(k) or Phrase(k, "", "", 0, 0, "")
                                             for k in kinds], max_tokens=cap)
        phrases.append({k: (ph[k].text if k in ph and m[:, j].any() else "")
                        for j, k in enumerate(kinds)})
        masks.append(m)
    view = models._view
    if models.mask is None or models.affine is None:
        raise ValueError("concept attributions need the trial cache's mask and affine: open "
                         "the run with load_chat_models(cfg)")
    tc_mask = np.asarray(models.mask, bool)
    stage1, stage2 = models.stage1.eval(), models.stage2.eval()
    maps = np.full((len(tr), len(kinds), int(tc_mask.sum())), np.nan, np.float32)
    logp = np.full((len(tr), len(kinds)), np.nan)
    for s in tqdm(range(0, len(tr), batch_size), desc="concept attributions",
                  disable=not progress, unit="batch"):
        e = min(len(tr), s + batch_size)
        rows = tr.iloc[s:e]
        has = np.array([[phrases[i][k] != "" for k in kinds] for i in range(s, e)])
        if not has.any():
            continue
        blocks = torch.as_tensor(np.asarray(view.blocks(rows["position"].to_numpy()),
                                            dtype=np.float32))
        scorer = PhraseScorer(stage1, stage2, rows["instruction"].astype(str).tolist(),
                              rows["fmri2text"].fillna("").astype(str).tolist(), masks[s:e])
        a, lp = attribute(scorer, blocks, method=method, n_steps=n_steps,
                          outputs=[j for j in range(len(kinds)) if has[:, j].any()],
                          return_outputs=True)
        a, lp = a.numpy(), lp.numpy()
        if method != "gradient_x_input":                 # IG's last point is not x itself
            with torch.no_grad():
                lp = scorer(blocks).float().cpu().numpy()
        vox = a[:, :, tc_mask]                                       # (b, K, n_voxels)
        vox[~has] = np.nan
        maps[s:e] = vox
        logp[s:e] = np.where(has, lp, np.nan)
    for j, k in enumerate(kinds):
        tr[f"phrase_{k}"] = [p[k] for p in phrases]
        tr[f"logp_{k}"] = logp[:, j]
    cols = (["subject", "trial", "trial_index", "stim_file", "instruction"]
            + [f"phrase_{k}" for k in kinds] + [f"logp_{k}" for k in kinds])
    out = tr.rename(columns={"fmri2text": "answer"})[cols[:5] + ["answer"] + cols[5:]]
    settings = dict(method=method, n_steps=int(n_steps) if method != "gradient_x_input" else 1,
                    max_trials=max_trials, phrase_types={k: list(v) for k, v in
                                                         phrase_types.items()},
                    n_trials=len(tr), profile=getattr(models.cfg, "profile", ""),
                    tokenizer=str(models.cfg.tokenizer.kind))
    return ConceptAttributions(maps, out, kinds, tc_mask, np.asarray(models.affine, float),
                               settings)
