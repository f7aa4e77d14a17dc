"""Rendering a simulated clip from its :class:`~llm4brain.sim.ClipSpec`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._catalogue import CLASS_CATALOGUE, ClipSpec, _SIZE_SCALE, _SPEED_SCALE, _check_spec
from ._raster import _Canvas, _rgb, _shade
from ._scenes import _render_background
from ._figures import _make_ball, _make_car, _make_person, _person_colours
from ._animals import _make_bird, _make_dog, _make_fish

__all__ = ["render_clip"]


_RENDERERS: dict[tuple[str, str], Callable] = {}
for _c in CLASS_CATALOGUE:
    _RENDERERS[(_c.agent, _c.action)] = {"person": _make_person, "ball": _make_ball,
                                         "car": _make_car, "bird": _make_bird, "dog": _make_dog,
                                         "fish": _make_fish}[_c.agent](_c.action)

#: classes whose agent translates across the frame (descriptions say "to the left/right")
_MOVES = {("person", "running"), ("person", "walking"), ("person", "cartwheeling"),
          ("ball", "bouncing"), ("ball", "rolling"), ("ball", "falling"), ("car", "driving"),
          ("car", "reversing"), ("car", "turning"), ("bird", "flying"), ("bird", "landing"),
          ("bird", "hopping"), ("dog", "running"), ("dog", "jumping"), ("fish", "swimming"),
          ("fish", "jumping"), ("fish", "turning")}


@dataclass
class _State:
    size: float
    speed: float
    facing: float
    start: float
    x0: float
    phase: float
    ground: float
    horizon: float
    sky_y: float
    col: np.ndarray
    accent: np.ndarray
    person_col: dict


def render_clip(spec: ClipSpec, frame_size: int, n_frames: int) -> np.ndarray:
    """Render a clip; identical specs give identical frames.

    Parameters
    ----------
    spec : ClipSpec
    frame_size : int
        Height and width in pixels (>= 16; even sizes are needed to write mp4).
    n_frames : int
        Frames spread uniformly over the 2 s clip (``t = k / n_frames``), e.g. 16 at 8 fps.

    Returns
    -------
    uint8 array of shape (n_frames, frame_size, frame_size, 3)
    """
    _check_spec(spec)
    S, T = int(frame_size), int(n_frames)
    if S < 16:
        raise ValueError(f"render_clip: frame_size must be >= 16, got {frame_size} "
                         "(sim.frame_size)")
    if T < 1:
        raise ValueError(f"render_clip: n_frames must be >= 1, got {n_frames} "
                         "(sim.fps * sim.clip_duration)")
    rng = np.random.default_rng(int(spec.seed))
    bg, scene = _render_background(spec.scene, S, rng, spec.agent)
    size = _SIZE_SCALE[spec.size] * float(rng.uniform(0.92, 1.08))
    speed = _SPEED_SCALE[spec.speed] * float(rng.uniform(0.92, 1.08))
    facing = 1.0 if spec.direction == "right" else -1.0
    col = _shade(_rgb(spec.colour) * rng.uniform(0.9, 1.1, 3).astype(np.float32), scene.light)
    accent_opts = [(1, 1, 1), (0.1, 0.1, 0.1), (1.0, 0.85, 0.1), (0.15, 0.35, 0.9)]
    accent = _rgb(tuple(int(255 * v) for v in accent_opts[rng.integers(len(accent_opts))]))
    if np.abs(accent - _rgb(spec.colour)).sum() < 0.4:
        accent = np.float32([1, 1, 1]) - accent * 0.8
    st = _State(size=size, speed=speed, facing=facing,
                start=float(rng.uniform(-0.06, 0.06)),
                x0=float(rng.uniform(0.35, 0.65)), phase=float(rng.uniform(0, 2 * math.pi)),
                ground=scene.ground, horizon=scene.horizon, sky_y=scene.sky_y,
                col=col, accent=_shade(accent, scene.light),
                person_col=_person_colours(spec, rng, scene.light))
    draw = _RENDERERS[(spec.agent, spec.action)]
    out = np.empty((T, S, S, 3), np.uint8)
    frame = np.empty_like(bg)
    for k in range(T):
        np.copyto(frame, bg)
        draw(_Canvas(frame), k / T, st)
        np.clip(frame * 255.0 + 0.5, 0, 255, out=frame)
        out[k] = frame
    return out
