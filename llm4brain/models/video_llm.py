"""The video-LLM: frame features -> Q-Formers -> projection -> tokens spliced into the prompt
-> frozen LLM (Video-LLaMA's vision-language branch; paper 3.1 and Fig. 1).

The splicing is generic: :func:`splice_prefix` puts *any* (B, N, D) token block (video tokens
here, fMRI tokens in Stage II) where the placeholder stands in a chat-templated prompt, and
:func:`generate_from_prefix` / :func:`caption_loss` work on what it returns.

>>> vlm = VideoLLM(branch, llm, cfg.llm)                              # doctest: +SKIP
>>> batch = vlm.build_prompt_embeds(features, instructions, answers)  # training
>>> loss = caption_loss(llm, batch)                                   # paper eq. (3)
>>> texts = vlm.generate(features, instructions, seed=0)              # surrogate answers
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .llm import LLMBackend

__all__ = ["PromptBatch", "format_prompt", "splice_prefix", "caption_loss",
           "generate_from_prefix", "VideoLLM", "IGNORE_INDEX"]

IGNORE_INDEX = -100


@dataclass
class PromptBatch:
    """Inputs of the frozen LLM for a batch of prompts with a spliced token block.

    Attributes
    ----------
    inputs_embeds : tensor of shape (B, L, D)
        Left-padded; pad rows are the embedding of the pad token.
    attention_mask : long tensor of shape (B, L)
        0 on padding.
    position_ids : long tensor of shape (B, L)
        ``cumsum(attention_mask) - 1`` (0 on padding), as ``generate`` computes them.
    labels : long tensor of shape (B, L) or None
        Answer tokens (and the end-of-turn token) where the LLM must predict them,
        :data:`IGNORE_INDEX` elsewhere. ``labels[b, t]`` is predicted from position ``t - 1``.
    prefix_start : long tensor of shape (B,)
        Column of the first spliced token in each row (they occupy
        ``prefix_start[b] : prefix_start[b] + n_prefix``).
    n_prefix : int
        Tokens in the spliced block.
    input_ids : long tensor of shape (B, L)
        Token ids of the text positions (pad id at padding, -1 at spliced positions).
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None
    prefix_start: torch.Tensor
    n_prefix: int
    input_ids: torch.Tensor


def format_prompt(tokenizer, instruction: str, *, placeholder: str = "<video>",
                  system_prompt: str = "", template: str = "") -> str:
    """A generation prompt for ``instruction`` with ``placeholder`` where the tokens go.

    Parameters
    ----------
    tokenizer : transformers tokenizer
    instruction : str
        E.g. "What is the main thing happening in the video?".
    placeholder : str
        Marker replaced later by :func:`splice_prefix`.
    system_prompt : str
        System message (included when the chat template accepts a system role).
    template : str
        "" = the tokenizer's chat template (with ``add_generation_prompt``); otherwise a format
        string with ``{system}`` and ``{prompt}``.

    Returns
    -------
    str : the prompt text, ending where the answer starts.
    """
    content = f"{placeholder}\n{instruction}"
    if template:
        out = template.format(system=system_prompt, prompt=content)
    elif getattr(tokenizer, "chat_template", None):
        msgs = [{"role": "user", "content": content}]
        try:
            out = tokenizer.apply_chat_template([{"role": "system", "content": system_prompt}]
                                                + msgs, tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - templates without a system role raise
            out = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    else:
        out = (f"{system_prompt}\n" if system_prompt else "") + f"USER: {content}\nASSISTANT: "
    if out.count(placeholder) != 1:
        raise ValueError(f"the prompt must hold the placeholder {placeholder!r} exactly once "
                         f"(llm.placeholder / llm.prompt_template); got {out!r}")
    return out


def _encode(tokenizer, text: str, first: bool) -> list[int]:
    add = bool(first and tokenizer.bos_token and not text.startswith(tokenizer.bos_token))
    ids = tokenizer(text, add_special_tokens=add)["input_ids"]
    return list(ids)


def splice_prefix(llm: LLMBackend, prompts: Sequence[str], prefix: torch.Tensor, *,
                  placeholder: str = "<video>", answers: Sequence[str] | None = None,
                  max_answer_tokens: int | None = None) -> PromptBatch:
    """Embed prompts and put a block of tokens where the placeholder stands.

    Generic: ``prefix`` may be video tokens (Video-LLaMA) or fMRI tokens (Stage II).

    Parameters
    ----------
    llm : LLMBackend
        Its tokenizer and input embeddings are used (frozen).
    prompts : list of B str
        Each holds ``placeholder`` exactly once (see :func:`format_prompt`).
    prefix : tensor of shape (B, N, D)
        Tokens in the LLM's embedding space; gradients flow into it.
    placeholder : str
    answers : list of B str, optional
        Training targets appended after the prompt, followed by the tokenizer's end token
        (``eos_token``, ``<|im_end|>`` for SmolLM2); they get labels.
    max_answer_tokens : int, optional
        Answers are truncated to this many tokens (before the end token).

    Returns
    -------
    PromptBatch (left-padded)
    """
    tok = llm.tokenizer
    B, N, D = prefix.shape
    if len(prompts) != B:
        raise ValueError(f"{len(prompts)} prompts for a prefix batch of {B}")
    if answers is not None and len(answers) != B:
        raise ValueError(f"{len(answers)} answers for {B} prompts")
    if D != llm.hidden_size:
        raise ValueError(f"prefix width {D} != LLM embedding width {llm.hidden_size}")
    rows, labs, starts = [], [], []
    cache: dict[str, tuple[list[int], list[int]]] = {}
    for b, p in enumerate(prompts):
        if p not in cache:
            parts = p.split(placeholder)
            if len(parts) != 2:
                raise ValueError(f"prompt {b} must hold the placeholder {placeholder!r} exactly "
                                 f"once: {p!r}")
            cache[p] = (_encode(tok, parts[0], True), _encode(tok, parts[1], False))
        before, after = cache[p]
        ids = before + [-1] * N + after
        lab = [IGNORE_INDEX] * len(ids)
        if answers is not None:
            a = list(tok(answers[b], add_special_tokens=False)["input_ids"])
            if max_answer_tokens is not None:
                a = a[:max_answer_tokens]
            a = a + [tok.eos_token_id]
            ids, lab = ids + a, lab + a
        rows.append(ids)
        labs.append(lab)
        starts.append(len(before))
    L = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    dev = llm.device
    input_ids = torch.full((B, L), pad, dtype=torch.long)
    labels = torch.full((B, L), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((B, L), dtype=torch.long)
    pstart = torch.zeros(B, dtype=torch.long)
    for b, (ids, lab) in enumerate(zip(rows, labs)):
        off = L - len(ids)
        input_ids[b, off:] = torch.tensor(ids)
        labels[b, off:] = torch.tensor(lab)
        mask[b, off:] = 1
        pstart[b] = off + starts[b]
    is_prefix = input_ids < 0
    with torch.no_grad():
        text = llm.embed(input_ids.clamp(min=0).to(dev))
    embeds = text.masked_scatter(is_prefix.to(dev)[..., None],
                                 prefix.to(device=dev, dtype=text.dtype))
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return PromptBatch(embeds, mask.to(dev), position_ids.to(dev),
                       labels.to(dev) if answers is not None else None, pstart.to(dev), N,
                       input_ids.to(dev))


def caption_loss(llm: LLMBackend, batch: PromptBatch, reduction: str = "token",
                 token_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the answer tokens given the prompt and spliced tokens (paper eq. 3).

    ``L_CE = -1/B sum_j sum_t log p(y_{j,t} | y_{j,<t}, theta)``. Only the answer positions
    go through the LM head (its 49k-way softmax is the costliest layer of a small LLM).

    Parameters
    ----------
    llm : LLMBackend (frozen; gradients flow to ``batch.inputs_embeds``)
    batch : PromptBatch with labels
    reduction : ``"token"`` (mean over answer tokens, as Video-LLaMA trains; default) or
        ``"sequence"`` (sum over tokens, mean over sequences: eq. 3 literally).
    token_weights : float tensor (vocab_size,), optional
        Weight of each target token id (``"token"`` reduction: weighted mean); e.g. content
        words of the captions weighted above the template words every answer shares.

    Returns
    -------
    scalar tensor
    """
    if batch.labels is None:
        raise ValueError("caption_loss needs a PromptBatch built with answers")
    base = llm.model.get_decoder() if hasattr(llm.model, "get_decoder") else llm.model.model
    h = base(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
             position_ids=batch.position_ids, use_cache=False).last_hidden_state
    tgt = batch.labels[:, 1:]
    sel = tgt != IGNORE_INDEX
    logits = llm.model.get_output_embeddings()(h[:, :-1][sel])
    ce = F.cross_entropy(logits.float(), tgt[sel], reduction="none")
    if reduction == "token":
        if token_weights is not None:
            w = token_weights.to(ce.device)[tgt[sel]]
            return (w * ce).sum() / w.sum().clamp(min=1e-8)
        return ce.mean()
    if reduction == "sequence":
        return ce.sum() / batch.labels.shape[0]
    raise ValueError(f"reduction must be 'token' or 'sequence', got {reduction!r}")


@torch.no_grad()
def generate_from_prefix(llm: LLMBackend, batch: PromptBatch, *, max_new_tokens: int = 20,
                         do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                         seed: int = 0) -> list[str]:
    """Answers of the frozen LLM for a :class:`PromptBatch` (KV cache, left padding).

    Parameters
    ----------
    llm : LLMBackend
    batch : PromptBatch (from :func:`splice_prefix` without answers)
    max_new_tokens : int
    do_sample, temperature, top_p : greedy decoding unless ``do_sample``.
    seed : int
        Seeds the sampler (the global torch RNG is restored afterwards).

    Returns
    -------
    list of B str (special tokens removed, stripped)
    """
    tok = llm.tokenizer
    kw = dict(max_new_tokens=max_new_tokens, do_sample=do_sample,
              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    if do_sample:
        kw.update(temperature=temperature, top_p=top_p, top_k=0)
    else:
        kw.update(temperature=None, top_p=None, top_k=None)
    devices = [llm.device] if llm.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        out = llm.model.generate(inputs_embeds=batch.inputs_embeds,
                                 attention_mask=batch.attention_mask, **kw)
    # with inputs_embeds only, decoder-only models return the new tokens only
    return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]


class VideoLLM(nn.Module):
    """Video branch (trainable) + frozen LLM (held outside the module's parameters).

    Parameters
    ----------
    branch : VideoBranch
        Frame features (B, F, P, C) -> video tokens (B, Nv, D).
    llm : LLMBackend
        Not registered as a sub-module: ``state_dict()`` / ``parameters()`` hold only the
        branch, so checkpoints stay small and optimisers see only trainable weights.
    llm_cfg : LLMConfig
        Prompt format (placeholder, system prompt, template) and generation settings.
    """

    def __init__(self, branch: nn.Module, llm: LLMBackend, llm_cfg):
        super().__init__()
        self.branch = branch
        self.llm = llm           # plain attribute (LLMBackend is not an nn.Module)
        self.llm_cfg = llm_cfg
        self._prompts: dict[str, str] = {}

    def prompt(self, instruction: str) -> str:
        """The chat-templated prompt of ``instruction`` (cached)."""
        if instruction not in self._prompts:
            c = self.llm_cfg
            self._prompts[instruction] = format_prompt(self.llm.tokenizer, instruction,
                                                       placeholder=c.placeholder,
                                                       system_prompt=c.system_prompt,
                                                       template=c.prompt_template)
        return self._prompts[instruction]

    def encode_video(self, features: torch.Tensor) -> torch.Tensor:
        """Video tokens X (B, Nv, D) of frame features (B, F, P, C)."""
        dev = next(self.branch.parameters()).device
        return self.branch(features.to(dev))

    def build_prompt_embeds(self, features: torch.Tensor, instructions: Sequence[str],
                            answers: Sequence[str] | None = None,
                            video_tokens: torch.Tensor | None = None) -> PromptBatch:
        """LLM inputs for training (``answers`` given) or generation (``answers=None``).

        Parameters
        ----------
        features : tensor of shape (B, F, P, C) (ignored when ``video_tokens`` is given)
        instructions : list of B str
        answers : list of B str, optional
        video_tokens : tensor of shape (B, Nv, D), optional
            Precomputed video tokens.
        """
        x = self.encode_video(features) if video_tokens is None else video_tokens
        return splice_prefix(self.llm, [self.prompt(i) for i in instructions], x,
                             placeholder=self.llm_cfg.placeholder, answers=answers,
                             max_answer_tokens=self.llm_cfg.max_answer_tokens)

    def forward(self, features: torch.Tensor, instructions: Sequence[str],
                answers: Sequence[str], token_weights: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Caption cross-entropy (paper eq. 3) of ``answers`` (see :func:`caption_loss`)."""
        return caption_loss(self.llm, self.build_prompt_embeds(features, instructions, answers),
                            token_weights=token_weights)

    @torch.no_grad()
    def generate(self, features, instructions: Sequence[str], *, batch_size: int | None = None,
                 max_new_tokens: int | None = None, do_sample: bool | None = None,
                 temperature: float | None = None, top_p: float | None = None, seed: int = 0,
                 progress: bool = False) -> list[str]:
        """Answers for many clips, in batches (settings default to ``llm_cfg``).

        Parameters
        ----------
        features : tensor or array of shape (n, F, P, C), or a callable ``rows -> tensor``
            (e.g. reading a memory-mapped feature cache batch by batch).
        instructions : list of n str
        seed : int
            Batch ``k`` is sampled with seed ``seed + k``.
        progress : bool
            tqdm bar over batches.

        Returns
        -------
        list of n str
        """

        c = self.llm_cfg
        bs = batch_size or c.batch_size
        n = len(instructions)
        get = features if callable(features) else (
            lambda rows: torch.as_tensor(np.array(features[rows[0]:rows[-1] + 1],
                                                  dtype=np.float32)))
        was = self.branch.training
        self.branch.eval()
        out: list[str] = []
        try:
            for k, s in enumerate(tqdm(range(0, n, bs), desc="captions", disable=not progress,
                                       total=(n + bs - 1) // bs, unit="batch")):
                rows = list(range(s, min(n, s + bs)))
                batch = self.build_prompt_embeds(get(rows), [instructions[i] for i in rows])
                out += generate_from_prefix(
                    self.llm, batch,
                    max_new_tokens=max_new_tokens or c.max_new_tokens,
                    do_sample=c.do_sample if do_sample is None else do_sample,
                    temperature=c.temperature if temperature is None else temperature,
                    top_p=c.top_p if top_p is None else top_p, seed=seed + k)
        finally:
            self.branch.train(was)
        return out
