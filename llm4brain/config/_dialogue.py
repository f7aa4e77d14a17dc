"""Settings of the surrogate dialogues and the dialogue continuation of Stage II (notebook 07)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DialogueConfig", "DIALOGUE_TASKS"]

DIALOGUE_TASKS = ("brief", "detailed", "reasoning")


@dataclass(frozen=True)
class DialogueConfig:
    """NVL's three instruction sets and the multi-turn surrogate dialogues built from them.

    A surrogate dialogue is the video-LLM's answers, with the clip's video tokens, to one
    instruction of each task in ``turns`` order, every answer kept in the chat history of
    the next turn. Only training subjects' clips get dialogues
    (:func:`llm4brain.dialogue.data.generate_dialogues` refuses target subjects).

    brief, detailed, reasoning : tuple of str
        NVL's task types: brief caption, detailed description, complex reasoning. One
        instruction of a task is drawn per clip and turn, with ``seed``.
    turns : tuple of str
        The task of each turn, in order (names among ``brief``, ``detailed``, ``reasoning``).
    seed : int
        Seed of the instruction draws.
    max_new_tokens : int
        Longest surrogate answer of a turn (tokens; greedy decoding).
    max_clips : int
        Dialogues for at most this many of the training trials' clips, drawn with ``seed``
        (0 = every clip); the continuation then trains on the trials of those clips only.
    steps : int
        Steps of the Stage II continuation on the dialogues (the bridge of the trained Stage II
        run goes on learning with every turn of every training trial's dialogue as an
        example, same loss, batch sizes and learning rate as Stage II). 0 = no continuation.
    """

    brief: tuple[str, ...] = (
        "Describe the video briefly.",
        "What is the main thing happening in the video?",
        "Give a one-sentence caption of the video.",
    )
    detailed: tuple[str, ...] = (
        "Describe the video in detail.",
        "Describe what is in the video, what it does, where and how fast.",
    )
    reasoning: tuple[str, ...] = (
        "Is the scene indoors or outdoors, and what tells you?",
        "Is it an animal, a person or an object, and how can you tell?",
        "What will probably happen next in the video?",
    )
    turns: tuple[str, ...] = ("brief", "detailed", "reasoning")
    seed: int = 0
    max_new_tokens: int = 32
    max_clips: int = 0
    steps: int = 0

    def __post_init__(self):
        if not self.turns:
            raise ValueError("dialogue.turns is empty: give at least one task, e.g. [brief]")
        for t in self.turns:
            if t not in DIALOGUE_TASKS:
                raise ValueError(f"dialogue.turns names {t!r}; use tasks among {DIALOGUE_TASKS}")
            if not getattr(self, t):
                raise ValueError(f"dialogue.{t} is empty but dialogue.turns uses it: give at "
                                 f"least one instruction")
        if self.max_new_tokens < 1:
            raise ValueError(f"dialogue.max_new_tokens = {self.max_new_tokens} must be >= 1")
        if self.max_clips < 0:
            raise ValueError(f"dialogue.max_clips = {self.max_clips} must be >= 0 (0 = all)")
        if self.steps < 0:
            raise ValueError(f"dialogue.steps = {self.steps} must be >= 0")

    def instructions(self, task: str) -> tuple[str, ...]:
        """The instruction set of ``task``."""
        if task not in DIALOGUE_TASKS:
            raise ValueError(f"unknown dialogue task {task!r}; use one of {DIALOGUE_TASKS}")
        return tuple(getattr(self, task))
