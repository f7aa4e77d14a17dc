"""Multi-round dialogue about one recording (NVL's "multi-round dialogue", LLaVA's format).

A :class:`Conversation` holds a block of tokens in the LLM's embedding space — a trial's
fMRI tokens after the Stage II bridge, or a clip's video tokens (the reference) — and a
history of turns kept in the LLM's chat template. The tokens are spliced into the **first**
user turn where the placeholder stands (``"<video>\\n<question>"``, the prompt Stage II was
trained on, :func:`llm4brain.models.video_llm.format_prompt`); later turns are text only.

Generation runs from ``inputs_embeds`` with the key/value cache of the frozen LLM kept
across turns: a new question feeds only the tokens the cache lacks (the end of the previous
answer and the new user turn), never the whole history again. Greedy decoding by default,
so the same questions give the same answers.

The token sequence of a conversation is built piece by piece: the rendered prompt of the
first turn (tokenised around the placeholder, exactly as :func:`splice_prefix` does), then
for each answer the token ids the LLM generated, then the tokens of the text the chat
template adds between that answer and the next generation prompt. Its text
(:meth:`Conversation.prompt_text`) is the chat template of :attr:`Conversation.messages`.

>>> conv = Conversation(llm, prefix, placeholder="<video>")           # doctest: +SKIP
>>> conv.ask("What is the main thing happening in the video?")        # doctest: +SKIP
>>> conv.ask("Which way does it move?")                               # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..models.video_llm import _encode as encode

__all__ = ["Conversation", "ContextTooLongError", "render_chat", "Turn"]


class ContextTooLongError(ValueError):
    """The history plus the next answer would not fit in the LLM's context."""


@dataclass
class Turn:
    """One question and its answer.

    question : str
    answer : str (special tokens removed, stripped)
    answer_ids : list of int (the generated ids, without the end-of-turn token)
    n_prompt : int (tokens before the answer: the history and this question's turn)
    n_fed : int (tokens fed to the LLM for this prompt, the cached ones not counted)
    stopped : bool (the LLM ended the answer with its end-of-turn token, rather than
        running into ``max_new_tokens``)
    """

    question: str
    answer: str
    answer_ids: list = field(default_factory=list)
    n_prompt: int = 0
    n_fed: int = 0
    stopped: bool = False


def render_chat(tokenizer, messages: list[dict], *, system_prompt: str = "",
                add_generation_prompt: bool = True) -> str:
    """The chat-template text of ``messages`` with the system message as Stage II had it.

    Mirrors :func:`llm4brain.models.video_llm.format_prompt`: a system message (possibly
    empty) first when the template accepts a system role, none otherwise.

    Parameters
    ----------
    tokenizer : transformers tokenizer with a ``chat_template``
    messages : list of {"role": "user" | "assistant", "content": str}
    system_prompt : str
    add_generation_prompt : bool

    Raises
    ------
    ValueError
        The tokenizer has no chat template.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("multi-round dialogue needs the LLM tokenizer's chat template, and "
                         "this tokenizer has none: use an instruction-tuned LLM (llm.backend / "
                         "llm.path) whose tokenizer_config.json carries a chat_template")
    try:
        return tokenizer.apply_chat_template(
            [{"role": "system", "content": system_prompt}] + list(messages), tokenize=False,
            add_generation_prompt=add_generation_prompt)
    except Exception:  # noqa: BLE001 - templates without a system role raise
        return tokenizer.apply_chat_template(list(messages), tokenize=False,
                                             add_generation_prompt=add_generation_prompt)


def _encode(tokenizer, text: str, first: bool) -> list[int]:

    return encode(tokenizer, text, first)


class Conversation:
    """A dialogue with the frozen LLM about one block of spliced tokens.

    Parameters
    ----------
    llm : LLMBackend
        Frozen LLM and its tokenizer (``llm4brain.models.llm``).
    prefix : tensor of shape (N, D) or (1, N, D)
        Tokens in the LLM's embedding space: a trial's bridged fMRI tokens
        (``Stage2Model.bridge(z)``) or a clip's video tokens (``VideoLLM.encode_video``).
    placeholder : str
        Marker of the prefix in the first user turn (``llm.placeholder``).
    system_prompt : str
        ``llm.system_prompt``.
    max_new_tokens : int
        Longest answer (tokens).
    do_sample : bool
        False (default): greedy decoding, deterministic. True: sampling with ``temperature``
        and ``top_p`` from a generator seeded with ``seed`` + the turn's index.
    temperature, top_p, seed : sampling settings.
    max_context : int, optional
        Tokens the LLM attends to (default ``config.max_position_embeddings`` of the model).
    source : dict, optional
        What the prefix is (subject, trial, clip, kind), for display.

    Attributes
    ----------
    turns : list of Turn
    messages : list of dict (the history as chat messages, the placeholder in the first)
    """

    def __init__(self, llm, prefix: torch.Tensor, *, placeholder: str = "<video>",
                 system_prompt: str = "", max_new_tokens: int = 40, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
                 max_context: int | None = None, source: dict | None = None):
        if prefix.dim() == 3:
            if prefix.shape[0] != 1:
                raise ValueError(f"a Conversation holds one recording: prefix of shape "
                                 f"{tuple(prefix.shape)} has {prefix.shape[0]} rows, give one")
            prefix = prefix[0]
        if prefix.dim() != 2 or prefix.shape[1] != llm.hidden_size:
            raise ValueError(f"prefix must be (N, {llm.hidden_size}) tokens in the LLM's "
                             f"embedding space, got {tuple(prefix.shape)}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.llm = llm
        self.tokenizer = llm.tokenizer
        self.prefix = prefix.detach().to(device=llm.device, dtype=llm.dtype)
        self.placeholder = placeholder
        self.system_prompt = system_prompt
        self.max_new_tokens = int(max_new_tokens)
        self.do_sample = bool(do_sample)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.seed = int(seed)
        ctx = max_context or getattr(llm.model.config, "max_position_embeddings", None)
        self.max_context = int(ctx) if ctx else None
        self.source = dict(source or {})
        eos = self.tokenizer.eos_token_id
        self._stop = {int(eos)} if eos is not None else set()
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget the history and the cache (the recording stays)."""
        self.turns: list[Turn] = []
        self._ids: list[int] = []        # the conversation's tokens; -1 = a prefix slot
        self._text = ""                  # their text (placeholder for the prefix)
        self._cache = None               # key/value cache of the first _n_cached tokens
        self._n_cached = 0

    @property
    def messages(self) -> list[dict]:
        """The history as chat messages (the placeholder opens the first user message)."""
        out = []
        for k, t in enumerate(self.turns):
            q = f"{self.placeholder}\n{t.question}" if k == 0 else t.question
            out += [{"role": "user", "content": q},
                    {"role": "assistant", "content": self._raw(t.answer_ids)}]
        return out

    @property
    def n_tokens(self) -> int:
        """Tokens of the history so far (prefix and the last answer included)."""
        return len(self._ids) + (len(self.turns[-1].answer_ids) if self.turns else 0)

    def token_ids(self) -> list[int]:
        """The conversation's token ids so far, the last answer included (-1 marks the
        prefix's positions); turn ``k``'s prompt is the first ``turns[k].n_prompt``."""
        return list(self._ids) + (list(self.turns[-1].answer_ids) if self.turns else [])

    @property
    def n_cached(self) -> int:
        """Tokens whose keys and values the cache holds."""
        return self._n_cached

    def prompt_text(self) -> str:
        """The text of the last prompt's tokens: the chat template of :attr:`messages` up to
        the last question (its answer left out), with the generation prompt, the
        placeholder where the prefix is."""
        return self._text

    def _raw(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False,
                                     clean_up_tokenization_spaces=False)

    # ------------------------------------------------------------------ tokens
    def _render(self, messages) -> str:
        return render_chat(self.tokenizer, messages, system_prompt=self.system_prompt,
                           add_generation_prompt=True)

    def _next_tokens(self, question: str) -> tuple[list[int], str, bool]:
        """(token ids, text, reuse) of the conversation after adding ``question``."""
        if not self.turns:
            text = self._render([{"role": "user", "content": f"{self.placeholder}\n{question}"}])
            parts = text.split(self.placeholder)
            if len(parts) != 2:
                raise ValueError(f"the first prompt must hold the placeholder "
                                 f"{self.placeholder!r} exactly once (llm.placeholder): "
                                 f"{text!r}")
            ids = (_encode(self.tokenizer, parts[0], True) + [-1] * len(self.prefix)
                   + _encode(self.tokenizer, parts[1], False))
            return ids, text, False
        msgs = self.messages + [{"role": "user", "content": question}]
        text = self._render(msgs)
        last = self.turns[-1]
        done = self._text + self._raw(last.answer_ids)
        if text.startswith(done):       # the template only appends: extend the tokens
            delta = text[len(done):]
            return (self._ids + list(last.answer_ids) + _encode(self.tokenizer, delta, False),
                    text, True)
        # a template that rewrites earlier turns (e.g. strips answers): tokenise it all again
        parts = text.split(self.placeholder)
        ids = (_encode(self.tokenizer, parts[0], True) + [-1] * len(self.prefix)
               + _encode(self.tokenizer, self.placeholder.join(parts[1:]), False))
        return ids, text, False

    def _embed(self, ids: list[int], offset: int) -> torch.Tensor:
        """Embeddings (1, len(ids), D) of tokens starting at position ``offset``."""
        t = torch.tensor(ids, dtype=torch.long, device=self.llm.device)
        emb = self.llm.embed(t.clamp(min=0))
        slots = (t < 0).nonzero().flatten()
        if len(slots):
            start = int(self._ids.index(-1)) if -1 in self._ids else 0
            emb[slots] = self.prefix[slots + offset - start].to(emb.dtype)
        return emb[None]

    @torch.no_grad()
    def _forward(self, ids: list[int], offset: int) -> torch.Tensor:
        """Feed ``ids`` at positions ``offset..``; returns the last position's logits."""
        emb = self._embed(ids, offset)
        n = offset + len(ids)
        pos = torch.arange(offset, n, device=self.llm.device)[None]
        out = self.llm.model(inputs_embeds=emb, position_ids=pos,
                             attention_mask=torch.ones(1, n, dtype=torch.long,
                                                       device=self.llm.device),
                             cache=self._cache, use_cache=True, logits_to_keep=1)
        self._cache = out.cache
        self._n_cached = n
        return out.logits[0, -1].float()

    def _pick(self, logits: torch.Tensor, gen: torch.Generator | None) -> int:
        if not self.do_sample:
            return int(torch.argmax(logits))
        p = torch.softmax(logits / max(self.temperature, 1e-6), -1)
        if self.top_p < 1.0:
            sp, si = torch.sort(p, descending=True)
            keep = sp.cumsum(0) - sp < self.top_p
            p = torch.zeros_like(p).scatter(0, si[keep], sp[keep])
        return int(torch.multinomial(p.cpu(), 1, generator=gen))

    # ------------------------------------------------------------------ dialogue
    def ask(self, question: str, *, max_new_tokens: int | None = None) -> str:
        """The LLM's answer to ``question`` given the recording and the history.

        Raises
        ------
        ContextTooLongError
            When the history, the question and ``max_new_tokens`` exceed the context;
            the conversation is left as it was.
        """
        question = str(question).strip()
        if not question:
            raise ValueError("the question is empty")
        max_new = int(max_new_tokens or self.max_new_tokens)
        ids, text, reuse = self._next_tokens(question)
        if self.max_context is not None and len(ids) + max_new > self.max_context:
            raise ContextTooLongError(
                f"the conversation would need {len(ids)} tokens plus up to {max_new} for the "
                f"answer, more than the LLM's context of {self.max_context} tokens "
                f"({len(self.turns)} turns so far): call reset() to start again, or ask fewer "
                f"or shorter questions (or lower max_new_tokens)")
        if not reuse:
            self._cache, self._n_cached = None, 0
        start = self._n_cached
        self._ids, self._text = ids, text
        gen = None
        if self.do_sample:
            gen = torch.Generator().manual_seed(self.seed + len(self.turns))
        logits = self._forward(ids[start:], start)
        new: list[int] = []
        while True:
            tok = self._pick(logits, gen)
            new.append(tok)
            if tok in self._stop or len(new) >= max_new:
                break
            logits = self._forward([tok], self._n_cached)
        stopped = new[-1] in self._stop
        answer_ids = new[:-1] if stopped else new
        answer = self.tokenizer.decode(answer_ids, skip_special_tokens=True).strip()
        self.turns.append(Turn(question, answer, answer_ids, len(ids), len(ids) - start,
                               stopped))
        return answer

    def chat(self, questions) -> list[tuple[str, str]]:
        """Ask several questions in turn; ``[(question, answer), ...]``."""
        return [(q, self.ask(q)) for q in questions]

    def __repr__(self) -> str:
        what = ", ".join(f"{k}={v}" for k, v in self.source.items())
        return (f"Conversation({what or 'prefix of ' + str(len(self.prefix)) + ' tokens'}; "
                f"{len(self.turns)} turns, {self.n_tokens} tokens)")
