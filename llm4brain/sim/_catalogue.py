"""The clip catalogue: action classes, clip attributes, :class:`ClipSpec` and its sampling.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["ActionClass", "CLASS_CATALOGUE", "SCENES", "COLOURS", "SIZES", "DIRECTIONS", "SPEEDS", "ClipSpec", "class_index", "sample_clip_specs", "stim_file_name"]


@dataclass(frozen=True)
class ActionClass:
    """One action class: an agent performing an action.

    Attributes
    ----------
    name : str
        HAD-style class folder name, e.g. ``"Person_waving"``.
    agent : str
        One of ``person, ball, car, bird, dog, fish``.
    action : str
        Gerund, e.g. ``"waving"``.
    """

    name: str
    agent: str
    action: str


def _ac(agent: str, action: str) -> ActionClass:
    return ActionClass(name=f"{agent.capitalize()}_{action}", agent=agent, action=action)


#: All classes the renderer can draw. The first 12 cover all six agents and eleven actions
#: (``n_classes`` takes the first n, so small profiles stay well separated).
CLASS_CATALOGUE: tuple[ActionClass, ...] = (
    _ac("person", "waving"), _ac("ball", "bouncing"), _ac("car", "driving"),
    _ac("bird", "flying"), _ac("dog", "jumping"), _ac("fish", "swimming"),
    _ac("person", "running"), _ac("ball", "rolling"), _ac("car", "turning"),
    _ac("bird", "landing"), _ac("dog", "running"), _ac("person", "jumping"),
    _ac("fish", "jumping"), _ac("bird", "pecking"), _ac("dog", "wagging"),
    _ac("car", "reversing"), _ac("ball", "spinning"), _ac("person", "walking"),
    _ac("person", "clapping"), _ac("fish", "turning"), _ac("bird", "hopping"),
    _ac("dog", "sitting"), _ac("person", "squatting"), _ac("ball", "falling"),
    _ac("person", "dancing"), _ac("person", "cartwheeling"),
)
#: (agent, action) pairs the renderer draws (every class of the catalogue)
_DRAWN = frozenset((c.agent, c.action) for c in CLASS_CATALOGUE)

#: Background scenes, drawn independently of the class.
SCENES: tuple[str, ...] = ("beach", "street", "room", "field", "forest", "snow", "desert", "night")

#: Agent colours (RGB, 0-255), drawn independently of the class.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 40, 40), "blue": (40, 90, 220), "green": (40, 160, 60),
    "yellow": (245, 205, 30), "orange": (245, 130, 20), "purple": (130, 60, 180),
    "pink": (240, 120, 180), "white": (245, 245, 240), "black": (35, 35, 40),
    "brown": (130, 80, 40),
}
SIZES: tuple[str, ...] = ("small", "medium", "large")
DIRECTIONS: tuple[str, ...] = ("left", "right")
SPEEDS: tuple[str, ...] = ("slow", "fast")

_SIZE_SCALE = {"small": 0.75, "medium": 1.0, "large": 1.25}
_SPEED_SCALE = {"slow": 1.0, "fast": 1.7}


def class_index(class_name: str) -> int:
    """0-based position of ``class_name`` in :data:`CLASS_CATALOGUE` (the HAD label is +1).

    Raises
    ------
    ValueError
        Unknown class name.
    """
    for k, c in enumerate(CLASS_CATALOGUE):
        if c.name == class_name:
            return k
    raise ValueError(f"unknown action class {class_name!r}; known: "
                     f"{[c.name for c in CLASS_CATALOGUE]}")


@dataclass(frozen=True)
class ClipSpec:
    """Everything that determines one rendered clip.

    Attributes
    ----------
    class_name, agent, action : str
        The :class:`ActionClass` fields.
    colour : str
        Key of :data:`COLOURS` (the agent's colour; a person's shirt).
    size : {'small', 'medium', 'large'}
    direction : {'left', 'right'}
        Direction of motion (or facing, for actions in place).
    speed : {'slow', 'fast'}
        Translation speed and articulation frequency.
    scene : str
        One of :data:`SCENES`.
    seed : int
        Seeds the remaining jitter (positions, shades, background layout, phases).
    clip_id : str
        Unique id used in the stimulus file name.
    """

    class_name: str
    agent: str
    action: str
    colour: str
    size: str
    direction: str
    speed: str
    scene: str
    seed: int
    clip_id: str


def _check_spec(spec: ClipSpec) -> None:
    for field, allowed in (("colour", tuple(COLOURS)), ("size", SIZES),
                           ("direction", DIRECTIONS), ("speed", SPEEDS), ("scene", SCENES)):
        if getattr(spec, field) not in allowed:
            raise ValueError(f"ClipSpec {spec.clip_id!r}: {field}={getattr(spec, field)!r} "
                             f"is not one of {allowed}")
    if (spec.agent, spec.action) not in _DRAWN:
        raise ValueError(f"ClipSpec {spec.clip_id!r}: no renderer for agent={spec.agent!r} "
                         f"action={spec.action!r}; use a class from CLASS_CATALOGUE")


def sample_clip_specs(classes: Sequence[ActionClass], n_per_class: int,
                      rng: np.random.Generator, id_prefix: str) -> list[ClipSpec]:
    """Draw ``n_per_class`` clip specs for every class, in a shuffled order.

    Colour, size, direction, speed and scene are each balanced over the whole list (tiled and
    permuted) and drawn independently of the class, so they carry no class information.

    Parameters
    ----------
    classes : sequence of ActionClass
        Classes to sample (e.g. ``CLASS_CATALOGUE[:n_classes]``); names must be unique.
    n_per_class : int
        Clips per class (>= 1).
    rng : numpy.random.Generator
        Source of all randomness; the same generator state gives the same list.
    id_prefix : str
        Prefix of the clip ids ``f"{id_prefix}{i:05d}"`` (unique within the list; use a
        different prefix for each call, e.g. ``"s01r02"`` or ``"pre"``).

    Returns
    -------
    list of ClipSpec
        ``len(classes) * n_per_class`` specs.
    """
    classes = list(classes)
    if not classes:
        raise ValueError("sample_clip_specs: empty class list; check sim.n_classes >= 1")
    if int(n_per_class) < 1:
        raise ValueError(f"sample_clip_specs: n_per_class must be >= 1, got {n_per_class}")
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise ValueError(f"sample_clip_specs: duplicate class names in {names}")
    for c in classes:
        if (c.agent, c.action) not in _DRAWN:
            raise ValueError(f"sample_clip_specs: no renderer for {c}; use CLASS_CATALOGUE")
    n = len(classes) * int(n_per_class)
    order = rng.permutation(np.repeat(np.arange(len(classes)), int(n_per_class)))

    def balanced(values: Sequence[str]) -> list[str]:
        tiled = np.tile(np.arange(len(values)), -(-n // len(values)))[:n]
        return [values[i] for i in rng.permutation(tiled)]

    colours, sizes = balanced(tuple(COLOURS)), balanced(SIZES)
    directions, speeds, scenes = balanced(DIRECTIONS), balanced(SPEEDS), balanced(SCENES)
    seeds = rng.integers(0, 2**31 - 1, size=n)
    specs = []
    for i in range(n):
        c = classes[order[i]]
        specs.append(ClipSpec(class_name=c.name, agent=c.agent, action=c.action,
                              colour=colours[i], size=sizes[i], direction=directions[i],
                              speed=speeds[i], scene=scenes[i], seed=int(seeds[i]),
                              clip_id=f"{id_prefix}{i:05d}"))
    return specs


def stim_file_name(spec: ClipSpec) -> str:
    """HAD-style stimulus path relative to ``<root>/stimuli``.

    ``f"{class_name}/v_{class_name}_id_{clip_id}_label_{k}.mp4"`` with ``k`` the 1-based
    index of the class in :data:`CLASS_CATALOGUE`.
    """
    k = class_index(spec.class_name) + 1
    return f"{spec.class_name}/v_{spec.class_name}_id_{spec.clip_id}_label_{k}.mp4"
