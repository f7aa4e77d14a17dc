"""Procedural action clips for the simulated HAD-layout dataset (numpy only).

The real HAD stimuli are 2 s clips of 180 action classes. The embedded dataset replaces them
with cartoon clips of ``agent x action`` classes ("person waving", "ball bouncing", ...).
A clip is fully described by a :class:`ClipSpec` (class, colour, size, direction, speed,
background scene and a seed); the same spec always renders the same frames. Scenes, colours,
sizes, directions and speeds are drawn independently of the class, so a decoder must read the
agent and its motion, not the background, to name the class.

Rendering draws anti-aliased primitives (ellipses, capsules, rounded boxes, convex polygons)
from signed distance functions, each evaluated on its bounding box only, onto a scene
background rendered once per clip. An action is a trajectory plus an articulation over
normalised time ``t`` in [0, 1) (the 2 s clip): waving oscillates a raised forearm, bouncing
follows parabolic arcs, driving translates a car with turning wheels, flying flaps wings, ...

:func:`describe_clip` writes the clip's ground-truth description and paraphrases (the text
side of the video-language pretraining corpus), :func:`clip_features` the feature groups the
BOLD simulator's encoding model is built on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "ActionClass", "CLASS_CATALOGUE", "SCENES", "COLOURS", "SIZES", "DIRECTIONS", "SPEEDS",
    "AGENT_SYNONYMS", "ACTION_SYNONYMS", "LOWLEVEL_NAMES", "MOTION_NAMES",
    "ClipSpec", "class_index", "sample_clip_specs", "render_clip", "describe_clip",
    "clip_features", "stim_file_name", "SCENE_KEYWORDS", "description_lexicon",
]


# ---------------------------------------------------------------------------------------------
# Catalogue
# ---------------------------------------------------------------------------------------------
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
    if (spec.agent, spec.action) not in _RENDERERS:
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
        if (c.agent, c.action) not in _RENDERERS:
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


# ---------------------------------------------------------------------------------------------
# Rasteriser: anti-aliased signed-distance primitives on a float canvas
# ---------------------------------------------------------------------------------------------
class _Canvas:
    """Float RGB image in [0, 1]; primitives take normalised coordinates (0..1, y down)."""

    def __init__(self, img: np.ndarray):
        self.img = img
        self.S = img.shape[0]
        self.px = np.arange(self.S, dtype=np.float32) + 0.5     # pixel centres

    def _window(self, x0, x1, y0, y1):
        S = self.S
        j0, j1 = max(int(x0 * S) - 1, 0), min(int(math.ceil(x1 * S)) + 1, S)
        i0, i1 = max(int(y0 * S) - 1, 0), min(int(math.ceil(y1 * S)) + 1, S)
        if j0 >= j1 or i0 >= i1:
            return None
        return i0, i1, j0, j1, self.px[i0:i1, None], self.px[None, j0:j1]

    def _blend(self, win, sdf, colour, alpha):
        i0, i1, j0, j1 = win[:4]
        a = np.clip(0.5 - sdf, 0.0, 1.0)
        if alpha != 1.0:
            a = a * alpha
        sub = self.img[i0:i1, j0:j1]
        sub += (np.asarray(colour, np.float32) - sub) * a[..., None]

    def ellipse(self, cx, cy, rx, ry, ang=0.0, colour=(1, 1, 1), alpha=1.0):
        rx, ry = max(rx, 1e-4), max(ry, 1e-4)
        ext = max(rx, ry)
        win = self._window(cx - ext, cx + ext, cy - ext, cy + ext)
        if win is None:
            return
        S = self.S
        Y, X = win[4], win[5]
        dx, dy = X - cx * S, Y - cy * S
        c, s = math.cos(ang), math.sin(ang)
        u, v = dx * c + dy * s, -dx * s + dy * c
        a2, b2 = (rx * S) ** 2, (ry * S) ** 2
        f = u * u / a2 + v * v / b2 - 1.0
        g = 2.0 * np.sqrt((u / a2) ** 2 + (v / b2) ** 2) + 1e-6
        self._blend(win, f / g, colour, alpha)

    def circle(self, cx, cy, r, colour, alpha=1.0):
        win = self._window(cx - r, cx + r, cy - r, cy + r)
        if win is None:
            return
        S = self.S
        Y, X = win[4], win[5]
        d = np.sqrt((X - cx * S) ** 2 + (Y - cy * S) ** 2) - r * S
        self._blend(win, d, colour, alpha)

    def capsule(self, x0, y0, x1, y1, r, colour, alpha=1.0):
        win = self._window(min(x0, x1) - r, max(x0, x1) + r, min(y0, y1) - r, max(y0, y1) + r)
        if win is None:
            return
        S = self.S
        Y, X = win[4], win[5]
        ax, ay, bx, by = x0 * S, y0 * S, x1 * S, y1 * S
        vx, vy = bx - ax, by - ay
        L2 = vx * vx + vy * vy + 1e-9
        h = np.clip(((X - ax) * vx + (Y - ay) * vy) / L2, 0.0, 1.0)
        d = np.sqrt((X - ax - h * vx) ** 2 + (Y - ay - h * vy) ** 2) - r * S
        self._blend(win, d, colour, alpha)

    def rect(self, cx, cy, w, h, colour, ang=0.0, radius=0.0, alpha=1.0):
        ext = 0.5 * math.hypot(w, h)
        win = self._window(cx - ext, cx + ext, cy - ext, cy + ext)
        if win is None:
            return
        S = self.S
        Y, X = win[4], win[5]
        dx, dy = X - cx * S, Y - cy * S
        if ang:
            c, s = math.cos(ang), math.sin(ang)
            dx, dy = dx * c + dy * s, -dx * s + dy * c
        rr = min(radius, 0.5 * w, 0.5 * h) * S
        qx = np.abs(dx) - 0.5 * w * S + rr
        qy = np.abs(dy) - 0.5 * h * S + rr
        d = (np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
             + np.minimum(np.maximum(qx, qy), 0) - rr)
        self._blend(win, d, colour, alpha)

    def poly(self, pts, colour, alpha=1.0):
        """Convex polygon (vertices in either winding order)."""
        pts = [(float(x), float(y)) for x, y in pts]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        win = self._window(min(xs), max(xs), min(ys), max(ys))
        if win is None:
            return
        S = self.S
        Y, X = win[4], win[5]
        area = sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(pts)))
        sgn = -1.0 if area > 0 else 1.0
        d = None
        for i in range(len(pts)):
            ax, ay = pts[i - 1][0] * S, pts[i - 1][1] * S
            bx, by = pts[i][0] * S, pts[i][1] * S
            ex, ey = bx - ax, by - ay
            L = math.hypot(ex, ey) + 1e-9
            e = sgn * ((X - ax) * ey - (Y - ay) * ex) / L
            d = e if d is None else np.maximum(d, e)
        self._blend(win, d, colour, alpha)

    # full-frame helpers for backgrounds
    def vgrad(self, y0, y1, top, bottom):
        S = self.S
        i0, i1 = max(int(round(y0 * S)), 0), min(int(round(y1 * S)), S)
        if i1 <= i0:
            return
        w = np.linspace(0.0, 1.0, i1 - i0, dtype=np.float32)[:, None, None]
        self.img[i0:i1] = (1 - w) * np.asarray(top, np.float32) + w * np.asarray(bottom, np.float32)

    def texture(self, y0, y1, amp, rng, cell=4, colour_amp=(1.0, 1.0, 1.0)):
        S = self.S
        i0, i1 = max(int(round(y0 * S)), 0), min(int(round(y1 * S)), S)
        if i1 <= i0:
            return
        n = _smooth_noise(rng, S, cell)[i0:i1, :, None] + 0.5 * rng.standard_normal(
            (i1 - i0, S, 1)).astype(np.float32)
        self.img[i0:i1] += amp * n * np.asarray(colour_amp, np.float32)


def _smooth_noise(rng: np.random.Generator, S: int, cell: int) -> np.ndarray:
    """Bilinearly upsampled Gaussian noise of shape (S, S), unit-ish variance."""
    n = max(S // cell, 2) + 1
    g = rng.standard_normal((n, n)).astype(np.float32)
    p = (np.arange(S, dtype=np.float32) + 0.5) / S * (n - 1)
    i = np.minimum(p.astype(int), n - 2)
    f = p - i
    rows = g[i] * (1 - f)[:, None] + g[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _rgb(name_or_rgb) -> np.ndarray:
    if isinstance(name_or_rgb, str):
        name_or_rgb = COLOURS[name_or_rgb]
    return np.asarray(name_or_rgb, np.float32) / 255.0


def _shade(c, k):
    return np.clip(np.asarray(c, np.float32) * k, 0, 1)


def _mix(a, b, w):
    return (1 - w) * np.asarray(a, np.float32) + w * np.asarray(b, np.float32)


# ---------------------------------------------------------------------------------------------
# Backgrounds
# ---------------------------------------------------------------------------------------------
@dataclass
class _Scene:
    horizon: float      # y of the horizon / floor line
    ground: float       # y where agents stand
    sky_y: float        # typical y of flying agents
    light: float        # agent brightness multiplier (night is darker)


def _bg_beach(cv: _Canvas, rng, hz):
    cv.vgrad(0, hz, (0.35, 0.62, 0.92), (0.75, 0.88, 0.98))
    sx = rng.uniform(0.15, 0.85)
    cv.circle(sx, rng.uniform(0.1, 0.2), 0.13, (1.0, 0.95, 0.6), alpha=0.35)
    cv.circle(sx, rng.uniform(0.1, 0.2), 0.07, (1.0, 0.93, 0.45))
    sea = hz + rng.uniform(0.08, 0.13)
    cv.vgrad(hz, sea, (0.1, 0.38, 0.65), (0.2, 0.62, 0.75))
    for _ in range(4):
        y = rng.uniform(hz + 0.01, sea - 0.01)
        x = rng.uniform(0, 0.8)
        cv.capsule(x, y, x + rng.uniform(0.1, 0.3), y, 0.004, (0.9, 0.95, 1.0), alpha=0.6)
    cv.vgrad(sea, 1.0, (0.96, 0.88, 0.66), (0.88, 0.76, 0.52))
    cv.capsule(0, sea, 1, sea, 0.008, (0.98, 0.98, 0.95), alpha=0.8)
    cv.texture(sea, 1.0, 0.025, rng, cell=3)
    if rng.random() < 0.7:   # beach umbrella
        ux = rng.choice([rng.uniform(0.05, 0.2), rng.uniform(0.8, 0.95)])
        top = sea + 0.02
        cv.capsule(ux, top, ux, top + 0.2, 0.006, (0.9, 0.9, 0.9))
        col = [(0.9, 0.2, 0.2), (0.2, 0.4, 0.9), (0.95, 0.8, 0.1)][rng.integers(3)]
        cv.poly([(ux - 0.12, top + 0.03), (ux, top - 0.06), (ux + 0.12, top + 0.03)], col)


def _bg_street(cv: _Canvas, rng, hz):
    cv.vgrad(0, hz, (0.55, 0.7, 0.88), (0.85, 0.9, 0.95))
    x = -rng.uniform(0, 0.1)
    S = cv.S
    while x < 1.0:
        w = rng.uniform(0.14, 0.26)
        top = hz - rng.uniform(0.15, 0.42)
        col = [(0.62, 0.36, 0.3), (0.7, 0.68, 0.62), (0.55, 0.57, 0.62), (0.82, 0.74, 0.58),
               (0.45, 0.47, 0.5)][rng.integers(5)]
        cv.rect(x + w / 2, (top + hz) / 2, w - 0.01, hz - top, col)
        # window grid, vectorised inside the building rectangle
        j0, j1 = max(int((x + 0.025) * S), 0), min(int((x + w - 0.03) * S), S)
        i0, i1 = max(int((top + 0.03) * S), 0), int((hz - 0.04) * S)
        if j1 > j0 and i1 > i0:
            jj = np.arange(j0, j1)
            ii = np.arange(i0, i1)
            pj, pi = max(int(0.05 * S), 3), max(int(0.06 * S), 3)
            m = ((jj - j0) % pj < pj * 0.55)[None, :] & ((ii - i0) % pi < pi * 0.5)[:, None]
            win = np.array((0.72, 0.84, 0.95) if rng.random() < 0.7 else (0.3, 0.34, 0.4),
                           np.float32)
            sub = cv.img[i0:i1, j0:j1]
            sub[m] = 0.4 * sub[m] + 0.6 * win
        x += w
    side = hz + 0.07
    cv.vgrad(hz, side, (0.72, 0.72, 0.7), (0.66, 0.66, 0.64))
    cv.capsule(0, side, 1, side, 0.006, (0.85, 0.85, 0.82))
    cv.vgrad(side + 0.006, 1.0, (0.36, 0.36, 0.38), (0.28, 0.28, 0.3))
    cv.texture(hz, 1.0, 0.02, rng, cell=2)
    y = rng.uniform(0.9, 0.95)
    off = rng.uniform(0, 0.2)
    for k in range(6):
        x0 = off + k * 0.2 - 0.1
        cv.capsule(x0, y, x0 + 0.1, y, 0.007, (0.95, 0.95, 0.9))


def _bg_room(cv: _Canvas, rng, hz):
    wall = [(0.93, 0.87, 0.74), (0.78, 0.86, 0.8), (0.8, 0.82, 0.9), (0.92, 0.8, 0.78),
            (0.9, 0.9, 0.88)][rng.integers(5)]
    cv.vgrad(0, hz, _shade(wall, 0.92), wall)
    S = cv.S
    if rng.random() < 0.6:   # wallpaper stripes
        jj = np.arange(S)
        m = (jj // max(int(0.05 * S), 2)) % 2 == 0
        cv.img[: int(hz * S), m] *= 0.96
    wx, wy = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.3)
    cv.rect(wx, wy, 0.3, 0.26, (0.97, 0.97, 0.95), radius=0.01)
    cv.rect(wx, wy, 0.26, 0.22, (0.6, 0.8, 0.96))
    cv.capsule(wx, wy - 0.11, wx, wy + 0.11, 0.008, (0.97, 0.97, 0.95))
    cv.capsule(wx - 0.13, wy, wx + 0.13, wy, 0.008, (0.97, 0.97, 0.95))
    px = wx + (0.35 if wx < 0.5 else -0.35)
    py = rng.uniform(0.22, 0.3)
    cv.rect(px, py, 0.14, 0.11, (0.45, 0.3, 0.15))
    cv.rect(px, py, 0.11, 0.08, [(0.3, 0.55, 0.75), (0.85, 0.6, 0.3), (0.4, 0.6, 0.35)][rng.integers(3)])
    cv.vgrad(hz, 1.0, (0.62, 0.44, 0.26), (0.5, 0.34, 0.18))
    y = hz + 0.05
    while y < 1.0:
        cv.capsule(0, y, 1, y, 0.002, (0.38, 0.25, 0.13), alpha=0.7)
        y += 0.07 + 0.03 * (y - hz)
    cv.texture(hz, 1.0, 0.025, rng, cell=2, colour_amp=(1.0, 0.8, 0.6))
    cv.capsule(0, hz, 1, hz, 0.01, (0.97, 0.97, 0.95))


def _bg_field(cv: _Canvas, rng, hz):
    cv.vgrad(0, hz, (0.38, 0.62, 0.92), (0.78, 0.88, 0.98))
    for _ in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(0, 1), rng.uniform(0.08, hz - 0.15)
        for _ in range(4):
            cv.ellipse(cx + rng.uniform(-0.08, 0.08), cy + rng.uniform(-0.02, 0.02),
                       rng.uniform(0.05, 0.09), rng.uniform(0.03, 0.05), 0.0, (0.98, 0.98, 1.0))
    for _ in range(3):
        cv.ellipse(rng.uniform(0, 1), hz + 0.02, rng.uniform(0.2, 0.4), rng.uniform(0.06, 0.12),
                   0.0, (0.3, 0.52, 0.3))
    cv.vgrad(hz, 1.0, (0.42, 0.7, 0.3), (0.26, 0.55, 0.18))
    cv.texture(hz, 1.0, 0.04, rng, cell=2, colour_amp=(0.6, 1.0, 0.5))
    for _ in range(14):
        col = [(1, 1, 1), (1, 0.9, 0.2), (0.9, 0.3, 0.5)][rng.integers(3)]
        cv.circle(rng.uniform(0, 1), rng.uniform(hz + 0.06, 1.0), 0.008, col, alpha=0.9)


def _bg_forest(cv: _Canvas, rng, hz):
    cv.vgrad(0, hz, (0.62, 0.78, 0.72), (0.78, 0.86, 0.78))
    for layer, (shade, n) in enumerate(((0.7, 7), (1.0, 5))):
        for _ in range(n):
            x = rng.uniform(-0.05, 1.05)
            w = rng.uniform(0.03, 0.06) * (1 + layer)
            cv.rect(x, hz / 2 + 0.1, w, hz + 0.1, _shade((0.4, 0.27, 0.15), shade))
            for _ in range(3):
                cv.circle(x + rng.uniform(-0.1, 0.1), rng.uniform(0.0, hz - 0.15),
                          rng.uniform(0.1, 0.18), _shade((0.15, 0.42, 0.18), shade * rng.uniform(0.8, 1.1)))
    cv.vgrad(hz, 1.0, (0.38, 0.36, 0.2), (0.3, 0.26, 0.14))
    cv.texture(hz, 1.0, 0.05, rng, cell=2, colour_amp=(0.9, 1.0, 0.5))
    cv.texture(0, hz, 0.03, rng, cell=6, colour_amp=(0.5, 1.0, 0.5))
    for _ in range(8):
        cv.ellipse(rng.uniform(0, 1), rng.uniform(hz + 0.03, 1.0), rng.uniform(0.03, 0.07), 0.015,
                   0.0, (0.25, 0.45, 0.15), alpha=0.8)


def _bg_snow(cv: _Canvas, rng, hz):
    cv.vgrad(0, hz, (0.62, 0.72, 0.86), (0.88, 0.92, 0.97))
    for _ in range(3):
        mx, mh, mw = rng.uniform(0, 1), rng.uniform(0.18, 0.32), rng.uniform(0.2, 0.35)
        cv.poly([(mx - mw, hz), (mx, hz - mh), (mx + mw, hz)], (0.55, 0.6, 0.7))
        cv.poly([(mx - mw * 0.3, hz - mh * 0.7), (mx, hz - mh), (mx + mw * 0.3, hz - mh * 0.7)],
                (0.97, 0.98, 1.0))
    cv.vgrad(hz, 1.0, (0.93, 0.95, 0.99), (0.85, 0.89, 0.96))
    cv.texture(hz, 1.0, 0.02, rng, cell=3, colour_amp=(0.8, 0.9, 1.0))
    for _ in range(rng.integers(2, 5)):
        tx, ty = rng.uniform(0, 1), hz + rng.uniform(0.0, 0.06)
        th = rng.uniform(0.14, 0.24)
        cv.rect(tx, ty - 0.02, 0.02, 0.05, (0.35, 0.22, 0.12))
        for k in range(3):
            w = th * (0.45 - 0.1 * k)
            base = ty - 0.03 - k * th * 0.25
            cv.poly([(tx - w, base), (tx, base - th * 0.45), (tx + w, base)], (0.12, 0.35, 0.2))
            cv.poly([(tx - w * 0.3, base - th * 0.3), (tx, base - th * 0.45),
                     (tx + w * 0.3, base - th * 0.3)], (0.95, 0.97, 1.0))
    S = cv.S
    n = int(0.02 * S * S / 10)
    ii, jj = rng.integers(0, int(hz * S), n), rng.integers(0, S, n)
    cv.img[ii, jj] = 0.3 * cv.img[ii, jj] + 0.7


def _bg_desert(cv: _Canvas, rng, hz):
    cv.vgrad(0, hz, (0.98, 0.72, 0.42), (1.0, 0.9, 0.7))
    cv.circle(rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.22), 0.06, (1.0, 0.97, 0.8))
    for _ in range(3):
        cv.ellipse(rng.uniform(0, 1), hz + 0.03, rng.uniform(0.25, 0.45), rng.uniform(0.06, 0.12),
                   0.0, (0.86, 0.6, 0.33))
    cv.vgrad(hz + 0.03, 1.0, (0.94, 0.76, 0.48), (0.88, 0.66, 0.38))
    S = cv.S
    yy = np.arange(int((hz + 0.03) * S), S)
    ripple = 0.03 * np.sin(yy * (0.9 * 96 / S) + rng.uniform(0, 6))[:, None, None]
    cv.img[yy[0]:] += ripple
    cv.texture(hz, 1.0, 0.02, rng, cell=2)
    for _ in range(rng.integers(1, 3)):
        x, y = rng.choice([rng.uniform(0.05, 0.25), rng.uniform(0.75, 0.95)]), hz + rng.uniform(0.03, 0.1)
        h = rng.uniform(0.12, 0.2)
        g = (0.25, 0.55, 0.25)
        cv.capsule(x, y, x, y - h, 0.02, g)
        cv.capsule(x - 0.05, y - h * 0.45, x - 0.05, y - h * 0.75, 0.012, g)
        cv.capsule(x - 0.05, y - h * 0.45, x, y - h * 0.45, 0.012, g)
        cv.capsule(x + 0.05, y - h * 0.55, x + 0.05, y - h * 0.85, 0.012, g)
        cv.capsule(x + 0.05, y - h * 0.55, x, y - h * 0.55, 0.012, g)


def _bg_night(cv: _Canvas, rng, hz):
    cv.vgrad(0, hz, (0.02, 0.03, 0.12), (0.1, 0.12, 0.3))
    S = cv.S
    n = int(S * S * 0.004)
    ii, jj = rng.integers(0, int(hz * S), n), rng.integers(0, S, n)
    cv.img[ii, jj] = np.array((0.95, 0.95, 0.85), np.float32) * rng.uniform(0.5, 1.0, (n, 1)).astype(np.float32)
    mx, my = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.2)
    cv.circle(mx, my, 0.12, (0.9, 0.9, 0.7), alpha=0.12)
    cv.circle(mx, my, 0.055, (0.97, 0.95, 0.8))
    x = -rng.uniform(0, 0.1)
    while x < 1.0:
        w = rng.uniform(0.12, 0.22)
        top = hz - rng.uniform(0.08, 0.3)
        cv.rect(x + w / 2, (top + hz) / 2, w - 0.008, hz - top, (0.06, 0.06, 0.1))
        for _ in range(int(rng.integers(2, 7))):
            cv.rect(rng.uniform(x + 0.02, x + w - 0.03), rng.uniform(top + 0.02, hz - 0.02),
                    0.022, 0.025, (1.0, 0.85, 0.4), alpha=0.9)
        x += w
    cv.vgrad(hz, 1.0, (0.14, 0.14, 0.18), (0.1, 0.1, 0.13))
    cv.texture(hz, 1.0, 0.015, rng, cell=2)
    lx = rng.choice([rng.uniform(0.08, 0.25), rng.uniform(0.75, 0.92)])   # street lamp
    top = hz - rng.uniform(0.12, 0.2)
    cv.ellipse(lx, hz + 0.12, 0.2, 0.07, 0.0, (0.55, 0.5, 0.35), alpha=0.18)
    cv.capsule(lx, hz + 0.1, lx, top, 0.008, (0.25, 0.25, 0.28))
    cv.capsule(lx, top, lx + 0.04, top, 0.008, (0.25, 0.25, 0.28))
    cv.circle(lx + 0.04, top + 0.012, 0.06, (1.0, 0.9, 0.55), alpha=0.2)
    cv.circle(lx + 0.04, top + 0.012, 0.014, (1.0, 0.95, 0.7))


_BACKGROUNDS: dict[str, Callable] = {
    "beach": _bg_beach, "street": _bg_street, "room": _bg_room, "field": _bg_field,
    "forest": _bg_forest, "snow": _bg_snow, "desert": _bg_desert, "night": _bg_night,
}


def _render_background(scene: str, S: int, rng: np.random.Generator, agent: str):
    img = np.zeros((S, S, 3), np.float32)
    cv = _Canvas(img)
    hz = float(rng.uniform(0.5, 0.6))
    _BACKGROUNDS[scene](cv, rng, hz)
    ground = float(rng.uniform(0.86, 0.92))
    if agent == "fish":   # a pond / sea / aquarium tank filling the lower part of the frame
        top = float(rng.uniform(0.32, 0.4))
        i0 = int(top * S)
        water = np.array((0.1, 0.38, 0.62), np.float32)
        w = np.linspace(0.55, 0.8, S - i0, dtype=np.float32)[:, None, None]
        img[i0:] = (1 - w) * img[i0:] + w * water
        cv.texture(top, 1.0, 0.02, rng, cell=4, colour_amp=(0.5, 0.8, 1.0))
        xs = np.linspace(0, 1, 9)
        ph = rng.uniform(0, 6)
        for a, b in zip(xs[:-1], xs[1:]):
            cv.capsule(a, top + 0.008 * math.sin(a * 12 + ph), b, top + 0.008 * math.sin(b * 12 + ph),
                       0.006, (0.75, 0.9, 1.0), alpha=0.8)
        for _ in range(5):
            x = rng.uniform(0, 1)
            h = rng.uniform(0.08, 0.18)
            cv.capsule(x, 1.0, x + rng.uniform(-0.03, 0.03), 1.0 - h, 0.012, (0.15, 0.5, 0.25), alpha=0.85)
        for _ in range(6):
            cv.ellipse(rng.uniform(0, 1), rng.uniform(0.95, 1.0), rng.uniform(0.02, 0.04), 0.015,
                       0.0, (0.5, 0.5, 0.48))
        ground = top
    np.clip(img, 0, 1, out=img)
    return img, _Scene(horizon=hz, ground=ground, sky_y=float(rng.uniform(0.22, 0.36)),
                       light=0.72 if scene == "night" else 1.0)


# ---------------------------------------------------------------------------------------------
# Agents
# ---------------------------------------------------------------------------------------------
class _Pose:
    """Maps agent-local coordinates (u forward, v up, in units of agent size) to the image."""

    def __init__(self, ox, oy, scale, facing, rot=0.0, sx=1.0):
        self.ox, self.oy, self.s, self.f, self.sx = ox, oy, scale, facing, sx
        self.c, self.sn, self.rot = math.cos(rot), math.sin(rot), rot

    def pt(self, u, v):
        uu = u * self.c - v * self.sn
        vv = u * self.sn + v * self.c
        return self.ox + self.f * self.sx * uu * self.s, self.oy - vv * self.s

    def ang(self, a=0.0):
        return -self.f * (a + self.rot)

    def ell(self, cv, u, v, rx, ry, a, col, alpha=1.0):
        x, y = self.pt(u, v)
        cv.ellipse(x, y, rx * self.s * self.sx, ry * self.s, self.ang(a), col, alpha)

    def circ(self, cv, u, v, r, col, alpha=1.0):
        x, y = self.pt(u, v)
        if self.sx == 1.0:
            cv.circle(x, y, r * self.s, col, alpha)
        else:
            cv.ellipse(x, y, r * self.s * self.sx, r * self.s, 0.0, col, alpha)

    def cap(self, cv, u0, v0, u1, v1, r, col, alpha=1.0):
        x0, y0 = self.pt(u0, v0)
        x1, y1 = self.pt(u1, v1)
        cv.capsule(x0, y0, x1, y1, r * self.s, col, alpha)

    def poly(self, cv, pts, col, alpha=1.0):
        cv.poly([self.pt(u, v) for u, v in pts], col, alpha)


def _shadow(cv, x, y, rx, alpha=0.28):
    cv.ellipse(x, y, rx, rx * 0.22, 0.0, (0.05, 0.05, 0.05), alpha)


def _osc(t, freq, phase=0.0):
    return math.sin(2 * math.pi * freq * t + phase)


def _track(t, offset, dist, facing):
    """x position of an agent moving ``dist`` over the clip; the path is centred on
    ``0.5 + offset`` (mirrored for ``facing < 0``)."""
    x = 0.5 + offset + dist * (t - 0.5)
    return x if facing > 0 else 1.0 - x


# ---- person ------------------------------------------------------------------------------------
_LIMB = dict(torso=0.30, neck=0.035, head=0.075, upper_arm=0.16, forearm=0.15, thigh=0.23, shin=0.22)


def _person(cv, x, ground, H, facing, p, col, view="side", rot=0.0):
    """Draw a person whose lowest foot touches ``ground`` (unless lifted).

    ``p`` holds angles in radians: lean, legs [(hip, knee)]*2, arms [(shoulder, elbow)]*2
    (index 0 = far/left limb, 1 = near/right limb), lift (in units of H).
    Side view: angles from straight down, positive = forwards. Front view: positive = outwards.
    """
    L = _LIMB
    lean = p.get("lean", 0.0)
    hips = []
    for k, (a, kn) in enumerate(p["legs"]):
        sg = 1.0 if view == "side" else (-1.0, 1.0)[k]
        hx = 0.0 if view == "side" else sg * 0.045
        kx, ky = hx + sg * L["thigh"] * math.sin(a), -L["thigh"] * math.cos(a)
        fx, fy = kx + sg * L["shin"] * math.sin(a - kn), ky - L["shin"] * math.cos(a - kn)
        hips.append(((hx, 0.0), (kx, ky), (fx, fy)))
    # joint positions relative to the hip (v up); rotate for cartwheels about the body centre
    drop = max(-min(h[2][1] for h in hips), 0.05)
    cy_body = 0.15
    crot = math.cos(rot), math.sin(rot)

    def R(u, v):
        if not rot:
            return u, v
        v0 = v - cy_body
        return u * crot[0] - v0 * crot[1], u * crot[1] + v0 * crot[0] + cy_body

    if rot:
        drop = 0.45
    hip_y = ground - (drop + p.get("lift", 0.0)) * H
    P = _Pose(x, hip_y, H, facing)
    neck = (L["torso"] * math.sin(lean), L["torso"] * math.cos(lean))
    head = (neck[0] + (L["neck"] + L["head"]) * math.sin(lean),
            neck[1] + (L["neck"] + L["head"]) * math.cos(lean))
    sh = (0.93 * neck[0], 0.93 * neck[1])
    arms = []
    for k, (s, e) in enumerate(p["arms"]):
        sg = 1.0 if view == "side" else (-1.0, 1.0)[k]
        sx = sh[0] + (0.0 if view == "side" else sg * 0.075)
        ex, ey = sx + sg * L["upper_arm"] * math.sin(s), sh[1] - L["upper_arm"] * math.cos(s)
        hx, hy = ex + sg * L["forearm"] * math.sin(s + e), ey - L["forearm"] * math.cos(s + e)
        arms.append(((sx, sh[1]), (ex, ey), (hx, hy)))
    shirt, trousers, skin, hair = col["shirt"], col["trousers"], col["skin"], col["hair"]
    rl, ra = 0.045, 0.034

    def leg(k, dark):
        (a, b), (c, d), (e, f) = [R(*q) for q in hips[k]]
        t_col = _shade(trousers, dark)
        P.cap(cv, a, b, c, d, rl, t_col)
        P.cap(cv, c, d, e, f, rl * 0.85, t_col)
        P.cap(cv, e, f, e + 0.05 * (1 if view == "side" else 0), f, 0.028, _shade((0.12, 0.1, 0.1), dark))

    def arm(k, dark):
        (a, b), (c, d), (e, f) = [R(*q) for q in arms[k]]
        P.cap(cv, a, b, c, d, ra, _shade(shirt, dark))
        P.cap(cv, c, d, e, f, ra * 0.8, _shade(skin, dark))
        P.circ(cv, e, f, 0.028, _shade(skin, dark))

    far = 0.72 if view == "side" else 1.0
    leg(0, far)
    arm(0, far)
    if view == "front":
        leg(1, 1.0)
    hip_r, neck_r = R(0.0, 0.0), R(*neck)
    P.cap(cv, hip_r[0], hip_r[1] + 0.02, neck_r[0], neck_r[1] - 0.02, 0.068, shirt)
    hd = R(*head)
    P.circ(cv, hd[0], hd[1] + 0.012, L["head"] * 1.08, hair)
    P.circ(cv, hd[0], hd[1], L["head"], skin)
    if view == "side":
        P.circ(cv, hd[0] + 0.05, hd[1] + 0.01, 0.012, (0.1, 0.1, 0.1))
        leg(1, 1.0)
    else:
        P.circ(cv, hd[0] - 0.025, hd[1] + 0.01, 0.011, (0.1, 0.1, 0.1))
        P.circ(cv, hd[0] + 0.025, hd[1] + 0.01, 0.011, (0.1, 0.1, 0.1))
    arm(1, 1.0)


def _person_colours(spec, rng, light):
    shirt = _rgb(spec.colour)
    trousers = [(0.15, 0.2, 0.4), (0.15, 0.15, 0.17), (0.4, 0.4, 0.42), (0.35, 0.25, 0.15),
                (0.75, 0.7, 0.55)][rng.integers(5)]
    skin = [(0.96, 0.8, 0.66), (0.85, 0.64, 0.48), (0.6, 0.42, 0.3), (0.42, 0.28, 0.2)][rng.integers(4)]
    hair = [(0.1, 0.08, 0.06), (0.35, 0.22, 0.1), (0.85, 0.7, 0.35), (0.5, 0.5, 0.5)][rng.integers(4)]
    return {k: _shade(v, light) for k, v in dict(shirt=shirt, trousers=trousers, skin=skin,
                                                   hair=hair).items()}


def _make_person(action):
    def draw(cv, t, st):
        spd, f, H = st.speed, st.facing, st.size * 0.44
        col = st.person_col
        ph = st.phase
        x = st.x0
        view, rot = "side", 0.0
        if action == "waving":
            view = "front"
            w = _osc(t, 1.6 * spd, ph)
            up = (2.55 + 0.15 * w, -0.35 + 0.45 * w)
            down = (0.12, 0.1)
            arms = [down, up] if f > 0 else [up, down]
            p = dict(legs=[(0.08, 0.0), (0.08, 0.0)], arms=arms)
        elif action == "clapping":
            view = "front"
            c = 0.5 + 0.5 * _osc(t, 2.0 * spd, ph)
            arm = (0.55 + 0.2 * c, -2.0 - 0.55 * c)
            p = dict(legs=[(0.1, 0.0), (0.1, 0.0)], arms=[arm, arm], lift=0.0)
        elif action == "squatting":
            view = "front"
            c = 0.5 - 0.5 * math.cos(2 * math.pi * 1.0 * spd * t + ph)
            p = dict(legs=[(0.15 + 0.7 * c, 1.6 * c), (0.15 + 0.7 * c, 1.6 * c)],
                     arms=[(0.3 + 1.1 * c, 0.0), (0.3 + 1.1 * c, 0.0)])
        elif action == "jumping":
            view = "front"
            hop = abs(math.sin(math.pi * (1.5 * spd * t) + ph * 0.1))
            p = dict(legs=[(0.2 + 0.3 * (1 - hop), 0.7 * (1 - hop)), (0.2 + 0.3 * (1 - hop), 0.7 * (1 - hop))],
                     arms=[(0.4 + 2.3 * hop, 0.2), (0.4 + 2.3 * hop, 0.2)], lift=0.35 * hop)
        elif action == "dancing":
            view = "front"
            a = _osc(t, 1.5 * spd, ph)
            p = dict(legs=[(0.25 + 0.25 * a, 0.2 + 0.3 * max(a, 0)), (0.25 - 0.25 * a, 0.2 + 0.3 * max(-a, 0))],
                     arms=[(1.6 + 0.9 * a, -0.8 * a), (1.6 - 0.9 * a, 0.8 * a)], lean=0.15 * a)
        elif action == "cartwheeling":
            view = "front"
            rot = -f * 2 * math.pi * 0.8 * spd * t
            x = _track(t, st.start, 0.35 * spd, f)
            p = dict(legs=[(0.55, 0.0), (0.55, 0.0)], arms=[(2.5, 0.0), (2.5, 0.0)])
        elif action in ("running", "walking"):
            run = action == "running"
            fr = (1.6 if run else 1.1) * spd
            a = _osc(t, fr, ph)
            amp = 0.75 if run else 0.4
            kn = (1.3 if run else 0.45)
            legs = [(amp * a, kn * max(-a, 0) + 0.15), (-amp * a, kn * max(a, 0) + 0.15)]
            arms = [(-0.8 * amp * a, 1.2 if run else 0.25), (0.8 * amp * a, 1.2 if run else 0.25)]
            x = _track(t, st.start, (0.4 if run else 0.22) * spd, f)
            p = dict(legs=legs, arms=arms, lean=0.2 if run else 0.04,
                     lift=(0.06 * abs(_osc(t, 2 * fr, 2 * ph)) if run else 0.0))
        else:  # pragma: no cover - guarded by _RENDERERS
            raise ValueError(action)
        if view == "side":
            _shadow(cv, x, st.ground + 0.005, 0.08 * st.size)
        else:
            _shadow(cv, x, st.ground + 0.005, 0.1 * st.size, alpha=0.28 * (1 - p.get("lift", 0)))
        _person(cv, x, st.ground, H, f, p, col, view=view, rot=rot)
    return draw


# ---- ball ----------------------------------------------------------------------------------------
def _ball(cv, x, y, r, theta, col, stripe, sq=1.0):
    cv.ellipse(x, y, r * sq, r / sq, 0.0, _shade(col, 0.7))
    cv.ellipse(x - 0.06 * r, y - 0.06 * r, r * sq * 0.9, r / sq * 0.9, 0.0, col)
    c, s = math.cos(theta), math.sin(theta)
    L = 0.72 * r
    cv.capsule(x - c * L * sq, y - s * L / sq, x + c * L * sq, y + s * L / sq, 0.2 * r, stripe)
    cv.circle(x - 0.35 * r, y - 0.4 * r, 0.22 * r, (1, 1, 1), alpha=0.45)


def _make_ball(action):
    def draw(cv, t, st):
        r = 0.095 * st.size
        f, spd = st.facing, st.speed
        col, stripe = st.col, st.accent
        theta0 = st.phase
        if action == "bouncing":
            x = _track(t, st.start, 0.4 * spd, f)
            nb = 2.0 * spd
            h = abs(math.sin(math.pi * nb * t + st.phase * 0.3))
            hgt = 0.42 * h
            sq = 1.0 + (0.25 if h < 0.15 else 0.0)
            y = st.ground - r / sq - hgt
            theta = theta0 - f * 3 * t * spd
        elif action == "rolling":
            dist = 0.42 * spd
            x = _track(t, st.start, dist, f)
            y, sq, hgt = st.ground - r, 1.0, 0.0
            theta = theta0 + f * dist * t / r
        elif action == "spinning":
            x = st.x0
            y, sq, hgt = st.ground - r - 0.01 * abs(_osc(t, 2)), 1.0, 0.0
            theta = theta0 - f * 2 * math.pi * 1.3 * spd * t
        elif action == "falling":
            x = _track(t, st.start, 0.12 * spd, f)
            tf = 0.55 / spd ** 0.5
            if t < tf:
                y = -r + (st.ground - r + r) * (t / tf) ** 2
            else:
                u = (t - tf) / (1 - tf)
                y = st.ground - r - 0.12 * abs(math.sin(math.pi * min(u * 2, 1)))
            hgt = st.ground - r - y
            sq = 1.25 if abs(t - tf) < 0.04 else 1.0
            theta = theta0 - f * 2 * t
        else:  # pragma: no cover
            raise ValueError(action)
        _shadow(cv, x, st.ground, r * max(1.0 - 1.2 * hgt, 0.3), alpha=0.3 * max(1.0 - 1.5 * hgt, 0.2))
        _ball(cv, x, y, r, theta, col, stripe, sq)
    return draw


# ---- car -----------------------------------------------------------------------------------------
def _car(cv, P: _Pose, col, wheel_ang, light_front, light_back, rear=0.0):
    """Side view car; P origin at ground level under the car's centre, unit = car length."""
    win = (0.68, 0.82, 0.92)
    wr = 0.11
    P.poly(cv, [(-0.28, 0.3), (-0.2, 0.46), (0.12, 0.46), (0.26, 0.3)], _shade(col, 0.9))
    P.poly(cv, [(-0.24, 0.31), (-0.18, 0.43), (-0.04, 0.43), (-0.04, 0.31)], win)
    P.poly(cv, [(0.0, 0.31), (0.0, 0.43), (0.1, 0.43), (0.21, 0.31)], win)
    body = P.pt(0.0, 0.2)
    cv.rect(body[0], body[1], 0.98 * P.s * P.sx, 0.2 * P.s, col, radius=0.06 * P.s)
    P.cap(cv, -0.46, 0.22, 0.46, 0.22, 0.006, _shade(col, 0.65))
    P.ell(cv, 0.47, 0.24, 0.025, 0.03, 0.0, light_front)
    P.ell(cv, -0.47, 0.24, 0.02, 0.03, 0.0, light_back)
    for wx in (-0.3, 0.3):
        P.circ(cv, wx, wr, wr, (0.1, 0.1, 0.1))
        P.circ(cv, wx, wr, wr * 0.5, (0.75, 0.75, 0.78))
        c, s = math.cos(wheel_ang), math.sin(wheel_ang)
        P.cap(cv, wx - c * wr * 0.45, wr - s * wr * 0.45, wx + c * wr * 0.45, wr + s * wr * 0.45,
              0.012, (0.3, 0.3, 0.32))
    if rear > 0.02:   # back of the car, seen while it turns away from the camera
        bx, _ = P.pt(-0.5, 0.0)
        w = 0.5 * rear * P.s               # apparent width of the rear face
        cx = bx - P.f * w / 2
        _, y_body = P.pt(0.0, 0.2)
        _, y_roof = P.pt(0.0, 0.46)
        _, y_belt = P.pt(0.0, 0.3)
        _, y_wheel = P.pt(0.0, 0.06)
        for dx in (-0.38, 0.38):
            cv.rect(cx + dx * w, y_wheel, 0.16 * w, 0.12 * P.s, (0.1, 0.1, 0.1), radius=0.02 * P.s)
        cv.poly([(cx - 0.42 * w, y_belt), (cx - 0.32 * w, y_roof), (cx + 0.32 * w, y_roof),
                 (cx + 0.42 * w, y_belt)], _shade(col, 0.8))
        cv.poly([(cx - 0.34 * w, y_belt - 0.01 * P.s), (cx - 0.27 * w, y_roof + 0.03 * P.s),
                 (cx + 0.27 * w, y_roof + 0.03 * P.s), (cx + 0.34 * w, y_belt - 0.01 * P.s)],
                _shade((0.68, 0.82, 0.92), 0.8))
        cv.rect(cx, y_body, w, 0.2 * P.s, _shade(col, 0.85), radius=0.04 * P.s)
        for dx in (-0.36, 0.36):
            cv.rect(cx + dx * w, y_body - 0.03 * P.s, 0.16 * w, 0.05 * P.s, (0.9, 0.1, 0.1))
        cv.rect(cx, y_body + 0.07 * P.s, 0.3 * w, 0.04 * P.s, (0.95, 0.95, 0.9))


def _make_car(action):
    def draw(cv, t, st):
        Lc = 0.36 * st.size
        f, spd = st.facing, st.speed
        wr = 0.11
        if action == "driving":
            dist = 0.38 * spd
            x = _track(t, st.start, dist, f)
            P = _Pose(x, st.ground, Lc, f)
            ang = -f * 2.0 * dist * t / wr
            lf, lb, rear, y = (1.0, 0.95, 0.6), (0.8, 0.1, 0.1), 0.0, st.ground
        elif action == "reversing":
            dist = 0.35 * spd
            x = _track(t, st.start, dist, f)
            P = _Pose(x, st.ground, Lc, -f)
            ang = f * dist * t / wr * 2.0
            lf, lb, rear, y = (0.85, 0.85, 0.75), (1.0, 1.0, 1.0), 0.0, st.ground
        elif action == "turning":
            tt = 0.45 / spd ** 0.5
            dist = 0.35 * spd
            if t < tt:
                x = _track(t, st.start, dist, f)
                k, depth = 0.0, 0.0
            else:
                u = min((t - tt) / (1 - tt) * spd, 1.0)
                x = _track(tt + (1 - tt) * 0.35 * u, st.start, dist, f)
                k, depth = u, u
            psi = 1.2 * k
            y = st.ground - 0.2 * depth * (st.ground - st.horizon)
            sc = 1.0 - 0.35 * depth
            P = _Pose(x, y, Lc * sc, f, sx=max(math.cos(psi), 0.25))
            ang = -f * 12 * t
            lf, lb, rear = (1.0, 0.95, 0.6), (0.8, 0.1, 0.1), math.sin(psi)
        else:  # pragma: no cover
            raise ValueError(action)
        _shadow(cv, P.ox, y + 0.005, 0.55 * P.s * P.sx + 0.1 * P.s * (P.sx < 1), alpha=0.3)
        _car(cv, P, st.col, ang, lf, lb, rear)
    return draw


# ---- bird ----------------------------------------------------------------------------------------
def _bird(cv, P: _Pose, col, wing, legs=True, head_dip=0.0):
    """Side view bird; origin at body centre, unit = body length. ``wing`` in radians
    (positive = up, negative = down, ``None`` = folded)."""
    dark = _shade(col, 0.7)
    beak = (0.98, 0.65, 0.1)
    if legs:
        for du in (-0.05, 0.06):
            P.cap(cv, du, -0.15, du - 0.03, -0.42, 0.018, (0.85, 0.55, 0.15))
    if wing is not None:   # far wing
        P.ell(cv, -0.05 - 0.07 * math.cos(wing + 0.3), 0.1 + 0.33 * math.sin(wing + 0.3),
              0.36, 0.09, wing + 0.3, _shade(col, 0.55))
    P.poly(cv, [(-0.35, 0.03), (-0.72, 0.16), (-0.72, -0.1)], dark)
    P.ell(cv, 0.0, 0.0, 0.42, 0.23, 0.1, col)
    P.ell(cv, 0.05, -0.08, 0.3, 0.11, 0.1, _shade(_mix(col, (1, 1, 1), 0.5), 1.0))
    hu, hv = 0.38 + 0.08 * head_dip, 0.2 - 0.45 * head_dip
    P.circ(cv, hu, hv, 0.17, col)
    P.poly(cv, [(hu + 0.13, hv + 0.05 - 0.1 * head_dip), (hu + 0.36, hv - 0.03 - 0.25 * head_dip),
                (hu + 0.13, hv - 0.07 - 0.05 * head_dip)], beak)
    P.circ(cv, hu + 0.06, hv + 0.05, 0.04, (1, 1, 1))
    P.circ(cv, hu + 0.075, hv + 0.05, 0.022, (0.05, 0.05, 0.05))
    if wing is None:
        P.ell(cv, -0.12, 0.06, 0.3, 0.11, -0.15, dark)
    else:
        cu, cv_ = -0.02, 0.12
        tip = (cu + 0.55 * math.cos(wing) * -0.25, cv_ + 0.55 * math.sin(wing))
        P.ell(cv, (cu + tip[0]) / 2, (cv_ + tip[1]) / 2, 0.34, 0.1,
              math.atan2(tip[1] - cv_, (tip[0] - cu) + 1e-6), dark)


def _make_bird(action):
    def draw(cv, t, st):
        B = 0.18 * st.size
        f, spd = st.facing, st.speed
        ph = st.phase
        if action == "flying":
            x = _track(t, st.start, 0.42 * spd, f)
            y = st.sky_y + 0.05 * _osc(t, 1.2, ph)
            wing = 1.0 * _osc(t, 3.1 * spd, ph)
            P = _Pose(x, y, B, f, rot=0.1)
            _bird(cv, P, st.col, wing, legs=False)
        elif action == "landing":
            tl = 0.65
            u = min(t / tl, 1.0)
            x = _track(min(t, tl) * 0.9, st.start, 0.45 * spd, f)
            yg = st.ground - 0.42 * B
            y0 = 0.15
            y = y0 + (yg - y0) * (1 - (1 - u) ** 2)
            if t < tl:
                wing = 1.0 * _osc(t, 2.8 * spd, ph)
                P = _Pose(x, y, B, f, rot=0.35 * (1 - u) - 0.25 * u)
                _bird(cv, P, st.col, wing, legs=u > 0.6)
            else:
                P = _Pose(x, y, B, f)
                _shadow(cv, x, st.ground, 0.3 * B)
                _bird(cv, P, st.col, None if t > tl + 0.12 else 1.2, legs=True)
        elif action == "pecking":
            x = st.x0
            dip = max(_osc(t, 1.6 * spd, ph), 0.0)
            P = _Pose(x, st.ground - 0.42 * B, B, f, rot=-0.45 * dip)
            _shadow(cv, x, st.ground, 0.3 * B)
            _bird(cv, P, st.col, None, legs=True, head_dip=0.6 * dip)
        elif action == "hopping":
            nh = 2.0 * spd
            hop = abs(math.sin(math.pi * nh * t + ph * 0.3))
            x = _track(t, st.start, 0.3 * spd, f)
            y = st.ground - 0.42 * B - 0.1 * hop
            P = _Pose(x, y, B, f, rot=0.15 * hop)
            _shadow(cv, x, st.ground, 0.3 * B)
            _bird(cv, P, st.col, None if hop < 0.5 else 0.5, legs=True)
        else:  # pragma: no cover
            raise ValueError(action)
    return draw


# ---- dog -----------------------------------------------------------------------------------------
def _dog(cv, P: _Pose, col, legs, tail, sit=0.0, mouth=0.0):
    """Side view dog; P origin at the body centre, unit = body length.

    legs: 4 angles (far hind, far front, near hind, near front), radians from straight down,
    positive = forwards. ``sit`` in [0, 1] lowers the hindquarters."""
    dark = _shade(col, 0.68)
    ear = _shade(col, 0.55)
    leg_len, r = 0.36, 0.055
    hips = [(-0.3, -0.05 - 0.1 * sit), (0.3, -0.06)] * 2
    shades = [dark, dark, col, col]
    tu, tv = -0.46, 0.06 - 0.1 * sit
    P.cap(cv, tu, tv, tu - 0.22 * math.cos(tail), tv + 0.22 * math.sin(tail), 0.035, col)
    for k in (0, 1):
        hu, hv = hips[k]
        a = legs[k] - (1.3 * sit if k == 0 else 0)
        P.cap(cv, hu, hv, hu + leg_len * math.sin(a) * (1 - 0.4 * sit * (k == 0)),
              hv - leg_len * math.cos(a) * (1 - 0.5 * sit * (k == 0)), r, shades[k])
    P.ell(cv, 0.0, -0.05 * sit, 0.5, 0.2, 0.35 * sit, col)
    for k in (2, 3):
        hu, hv = hips[k]
        a = legs[k] - (1.3 * sit if k == 2 else 0)
        P.cap(cv, hu, hv, hu + leg_len * math.sin(a) * (1 - 0.4 * sit * (k == 2)),
              hv - leg_len * math.cos(a) * (1 - 0.5 * sit * (k == 2)), r, shades[k])
    P.cap(cv, 0.32, 0.05, 0.46, 0.25, 0.1, col)       # neck
    P.circ(cv, 0.5, 0.3, 0.15, col)                  # head
    P.ell(cv, 0.67, 0.25 - 0.02 * mouth, 0.12, 0.07, -0.1 - 0.2 * mouth, col)   # snout
    P.circ(cv, 0.78, 0.27, 0.035, (0.05, 0.05, 0.05))
    P.ell(cv, 0.42, 0.26, 0.05, 0.13, -0.3, ear)
    P.circ(cv, 0.56, 0.35, 0.03, (0.05, 0.05, 0.05))
    return leg_len


def _make_dog(action):
    def draw(cv, t, st):
        D = 0.3 * st.size
        f, spd, ph = st.facing, st.speed, st.phase
        stand = 0.36 + 0.2        # body centre height above ground (units of D)
        sit, mouth, rot = 0.0, 0.0, 0.0
        tail = 0.8
        if action == "running":
            fr = 2.2 * spd
            a = _osc(t, fr, ph)
            b = _osc(t, fr, ph + 0.6)
            legs = [-0.7 * a, 0.7 * b, -0.7 * a + 0.3, 0.7 * b - 0.3]
            x = _track(t, st.start, 0.38 * spd, f)
            y = st.ground - stand * D + 0.04 * D * abs(_osc(t, fr, ph)) - 0.04 * D
            rot = 0.08 * a
            mouth = 0.5
        elif action == "jumping":
            t0, t1 = 0.2, 0.8
            u = min(max((t - t0) / (t1 - t0), 0.0), 1.0)
            x = _track(t, st.start, 0.4 * spd, f)
            hgt = (0.3 + 0.08 * (spd - 1)) * 4 * u * (1 - u)
            y = st.ground - stand * D - hgt
            air = 1.0 if 0 < u < 1 else 0.0
            legs = [-0.6 * air, 1.0 * air, -0.8 * air - 0.1, 1.2 * air + 0.1]
            if not air:
                legs = [0.1, -0.1, -0.1, 0.15]
            rot = 0.5 * (1 - 2 * u) * air
            tail = 0.3
        elif action == "wagging":
            x = st.x0
            legs = [0.1, -0.05, -0.05, 0.1]
            y = st.ground - stand * D
            tail = 0.9 + 0.7 * _osc(t, 3.0 * spd, ph)
            mouth = 0.4
        elif action == "sitting":
            x = st.x0
            u = min(t / (0.6 / spd ** 0.5), 1.0)
            sit = 0.5 - 0.5 * math.cos(math.pi * u)
            legs = [0.1, -0.15 * sit, -0.05, 0.05 - 0.15 * sit]
            rot = 0.45 * sit
            y = st.ground - stand * D + 0.12 * D * sit
            tail = 0.6 - 0.9 * sit
        else:  # pragma: no cover
            raise ValueError(action)
        _shadow(cv, x, st.ground, 0.45 * D, alpha=0.3 * (1.0 if y > st.ground - 0.7 * D else 0.5))
        P = _Pose(x, y, D, f, rot=rot)
        _dog(cv, P, st.col, legs, tail, sit=sit, mouth=mouth)
    return draw


# ---- fish ----------------------------------------------------------------------------------------
def _fish(cv, P: _Pose, col, tail):
    dark = _shade(col, 0.65)
    P.poly(cv, [(-0.38, 0.0), (-0.7, 0.22 + 0.15 * tail), (-0.62, 0.0), (-0.7, -0.22 + 0.15 * tail)], dark)
    P.poly(cv, [(-0.2, 0.15), (0.05, 0.33), (0.15, 0.17)], dark)
    P.poly(cv, [(-0.05, -0.15), (0.08, -0.28), (0.15, -0.14)], dark)
    P.ell(cv, 0.0, 0.0, 0.5, 0.21, 0.0, col)
    P.ell(cv, 0.05, -0.08, 0.35, 0.08, 0.0, _mix(col, (1, 1, 1), 0.4))
    P.cap(cv, -0.1, 0.12, -0.1, -0.12, 0.025, dark, alpha=0.7)
    P.circ(cv, 0.3, 0.05, 0.06, (1, 1, 1))
    P.circ(cv, 0.32, 0.05, 0.033, (0.05, 0.05, 0.05))


def _make_fish(action):
    def draw(cv, t, st):
        F = 0.24 * st.size
        f, spd, ph = st.facing, st.speed, st.phase
        top = st.ground           # water surface
        depth = top + 0.5 * (1 - top)
        rot = 0.0
        facing = f
        sx = 1.0
        if action == "swimming":
            x = _track(t, st.start, 0.42 * spd, f)
            y = depth + 0.04 * _osc(t, 1.0, ph)
            tail = _osc(t, 2.5 * spd, ph)
            rot = 0.15 * _osc(t, 1.0, ph + 1.5)
        elif action == "turning":
            tt = 0.45
            dist = 0.3 * spd
            if t < tt:
                x = _track(t, st.start, dist, f)
                sx = 1.0
            else:
                u = min((t - tt) / 0.3, 1.0)
                sx = math.cos(math.pi * u)
                x = _track(tt, st.start, dist, f) - f * (t - tt) * dist * (1 if u >= 1 else u)
                facing = f if sx >= 0 else -f
                sx = max(abs(sx), 0.15)
            y = depth + 0.03 * _osc(t, 1.0, ph)
            tail = _osc(t, 2.5 * spd, ph)
        elif action == "jumping":
            t0, t1 = 0.15, 0.85
            u = min(max((t - t0) / (t1 - t0), 0.0), 1.0)
            x = _track(t, st.start, 0.45 * spd, f)
            y = depth - (depth - 0.12) * 4 * u * (1 - u) * (0.85 + 0.1 * (spd - 1))
            rot = 1.0 * (1 - 2 * u) if 0 < u < 1 else 0.0
            tail = _osc(t, 3.0 * spd, ph)
            for tc in (t0 + 0.1, t1 - 0.1):   # splash where the fish crosses the surface
                if abs(t - tc) < 0.12:
                    xs = _track(tc, st.start, 0.45 * spd, f)
                    for k in range(5):
                        a = math.pi * (0.15 + 0.7 * k / 4)
                        rr = 0.05 + 0.3 * abs(t - tc)
                        cv.circle(xs + rr * math.cos(a) * 0.8, top - rr * math.sin(a) * 0.6, 0.012,
                                  (0.9, 0.96, 1.0), alpha=0.9)
        else:  # pragma: no cover
            raise ValueError(action)
        P = _Pose(x, y, F, facing, rot=rot, sx=sx)
        _fish(cv, P, st.col, tail)
        for k in range(3):   # bubbles rising from the fish's mouth
            age = (t * 1.3 + k / 3.0 + st.phase) % 1.0
            bx, by = P.pt(0.55, 0.1)
            yy = by - 0.25 * age
            if yy > top + 0.02:
                cv.circle(bx + 0.02 * math.sin(9 * age + k), yy, 0.008 + 0.008 * age, (0.85, 0.95, 1.0), alpha=0.7)
    return draw


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


# ---------------------------------------------------------------------------------------------
# Descriptions
# ---------------------------------------------------------------------------------------------
#: Nouns used for each agent in descriptions (the first is the canonical one).
AGENT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": ("person", "figure", "man"), "ball": ("ball", "rubber ball", "beach ball"),
    "car": ("car", "vehicle", "automobile"), "bird": ("bird", "songbird", "feathered bird"),
    "dog": ("dog", "puppy", "hound"), "fish": ("fish", "tropical fish", "pond fish"),
}

# (3rd person verbs, gerunds); {pos} is the possessive pronoun
_ACTION_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "waving": (("waves {pos} hand", "waves hello", "waves an arm in the air"),
               ("waving {pos} hand", "waving hello", "waving an arm in the air")),
    "bouncing": (("bounces", "bounds along", "bounces up and down"),
                 ("bouncing", "bounding along", "bouncing up and down")),
    "driving": (("drives", "drives along", "cruises along"), ("driving", "driving along", "cruising along")),
    "flying": (("flies", "flaps {pos} wings and flies", "soars through the air"),
               ("flying", "flapping {pos} wings", "soaring through the air")),
    "jumping": (("jumps", "leaps", "jumps up high"), ("jumping", "leaping", "jumping up high")),
    "swimming": (("swims", "glides through the water", "swims along"),
                 ("swimming", "gliding through the water", "swimming along")),
    "running": (("runs", "sprints", "dashes"), ("running", "sprinting", "dashing")),
    "rolling": (("rolls", "rolls along the ground", "rolls along"),
                ("rolling", "rolling along the ground", "rolling along")),
    "turning": (("turns", "makes a turn", "turns around"), ("turning", "making a turn", "turning around")),
    "landing": (("lands", "comes down to land", "touches down"),
                ("landing", "coming down to land", "touching down")),
    "pecking": (("pecks at the ground", "pecks for food", "pecks at seeds"),
                ("pecking at the ground", "pecking for food", "pecking at seeds")),
    "wagging": (("wags {pos} tail", "wags {pos} tail happily", "wags {pos} tail back and forth"),
                ("wagging {pos} tail", "happily wagging {pos} tail", "wagging {pos} tail back and forth")),
    "reversing": (("reverses", "backs up", "reverses backwards"),
                  ("reversing", "backing up", "reversing backwards")),
    "spinning": (("spins", "spins around", "spins in place"), ("spinning", "spinning around", "spinning in place")),
    "walking": (("walks", "strolls", "walks along"), ("walking", "strolling", "walking along")),
    "clapping": (("claps {pos} hands", "claps", "claps along"), ("clapping {pos} hands", "clapping", "clapping along")),
    "hopping": (("hops", "hops along", "hops forward"), ("hopping", "hopping along", "hopping forward")),
    "sitting": (("sits down", "sits down on {pos} haunches", "settles down to sit"),
                ("sitting down", "sitting down on {pos} haunches", "settling down to sit")),
    "squatting": (("squats", "does squats", "squats down and stands up"),
                  ("squatting", "doing squats", "squatting down and standing up")),
    "falling": (("falls", "drops down", "falls to the ground"), ("falling", "dropping down", "falling to the ground")),
    "dancing": (("dances", "dances around", "dances energetically"),
                ("dancing", "dancing around", "dancing energetically")),
    "cartwheeling": (("does cartwheels", "turns cartwheels", "cartwheels"),
                     ("doing cartwheels", "turning cartwheels", "cartwheeling")),
}

#: Words (stems) of which at least one appears in every description of an action.
ACTION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "waving": ("wav",), "bouncing": ("bounc", "bound"), "driving": ("driv", "cruis"),
    "flying": ("fl", "soar"), "jumping": ("jump", "leap"), "swimming": ("swim", "glid"),
    "running": ("run", "sprint", "dash"), "rolling": ("roll",), "turning": ("turn",),
    "landing": ("land", "touch"), "pecking": ("peck",), "wagging": ("wag",),
    "reversing": ("revers", "back"), "spinning": ("spin",), "walking": ("walk", "stroll"),
    "clapping": ("clap",), "hopping": ("hop",), "sitting": ("sit",), "squatting": ("squat",),
    "falling": ("fall", "drop"), "dancing": ("danc",), "cartwheeling": ("cartwheel",),
}

_SIZE_WORDS = {"small": ("small", "little", "tiny"), "medium": ("", "medium-sized", "mid-sized"),
               "large": ("large", "big", "huge")}
_PERSON_SIZE = {"small": ("short", "small", "little"), "medium": ("", "medium-height", "average-sized"),
                "large": ("tall", "big", "large")}
_SPEED_WORDS = {"slow": ("slowly", "gently", "at a leisurely pace", "unhurriedly"),
                "fast": ("quickly", "rapidly", "fast", "briskly")}
_SPEED_ADJ = {"slow": ("slow", "gentle", "leisurely"), "fast": ("fast", "quick", "rapid")}
_DIR_MOVE = {"right": ("to the right", "towards the right", "from left to right"),
             "left": ("to the left", "towards the left", "from right to left")}
_DIR_STILL = {"right": ("facing right", "turned towards the right", "facing to the right"),
              "left": ("facing left", "turned towards the left", "facing to the left")}
_SCENE_WORDS = {
    "beach": ("on a sunny beach", "at the seaside", "on the sand by the sea"),
    "street": ("on a city street", "along a busy street", "in a street in town"),
    "room": ("in a living room", "inside a cosy room", "indoors in a room"),
    "field": ("in a green field", "on a grassy meadow", "in an open field"),
    "forest": ("in a forest", "among the trees in the woods", "in a leafy forest"),
    "snow": ("in the snow", "in a snowy landscape", "on a snowy winter day"),
    "desert": ("in the desert", "among desert sand dunes", "in a dry, sandy desert"),
    "night": ("at night", "under a starry night sky", "in the dark of night"),
}
_FISH_WATER = {"beach": "in the sea", "room": "in an aquarium"}

_TEMPLATES = (
    "{A_np} {verb} {speed} {dirp} {scene}.",
    "In this video, {a_np} is {gerund} {dirp} {scene}, moving {speed}.",
    "{Scene}, {a_np} {verb} {speed} {dirp}.",
    "The clip shows {a_np} {gerund} {speed} {dirp} {scene}.",
    "{Scene}, there is {a_np} {gerund} {speed} {dirp}.",
    "{A_np} can be seen {gerund} {speed} {dirp} {scene}.",
    "A video of {a_np} {gerund} {dirp} {scene}; the motion is {speed_adj}.",
    "{A_np} is {gerund} {scene}. {tail}",
)


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _agent_np(spec: ClipSpec, i_noun: int, i_size: int, i_form: int) -> str:
    noun = AGENT_SYNONYMS[spec.agent][i_noun]
    if spec.agent == "person":
        size = _PERSON_SIZE[spec.size][i_size]
        form = ("{n} in a {c} shirt", "{n} wearing {c}", "{n} dressed in {c}")[i_form]
        return " ".join(w for w in (size, form.format(n=noun, c=spec.colour)) if w)
    size = _SIZE_WORDS[spec.size][i_size]
    return " ".join(w for w in (size, spec.colour, noun) if w)


def _render_text(spec: ClipSpec, template: str, ch: dict) -> str:
    pos = "their" if spec.agent == "person" else "its"
    verbs, gerunds = _ACTION_WORDS[spec.action]
    moves = (spec.agent, spec.action) in _MOVES
    scene = _SCENE_WORDS[spec.scene][ch["scene"]]
    if spec.agent == "fish":
        scene = f"{_FISH_WATER.get(spec.scene, 'in a pond')} {scene}"
    np_ = _agent_np(spec, ch["noun"], ch["size"], ch["form"])
    fields = dict(
        A_np=_article(np_).capitalize(), a_np=_article(np_),
        verb=verbs[ch["verb"]].format(pos=pos), gerund=gerunds[ch["verb"]].format(pos=pos),
        speed=_SPEED_WORDS[spec.speed][ch["speed"]], speed_adj=_SPEED_ADJ[spec.speed][ch["speed"] % 3],
        dirp=(_DIR_MOVE if moves else _DIR_STILL)[spec.direction][ch["dir"]],
        scene=scene, Scene=scene[0].upper() + scene[1:])
    pron, be, move = ("They", "are", "move") if spec.agent == "person" else ("It", "is", "moves")
    fields["tail"] = (f"{pron} {move} {fields['speed']} {fields['dirp']}." if moves else
                      f"{pron} {be} {fields['dirp']} and {move} {fields['speed']}.")
    return " ".join(template.format(**fields).split())


def describe_clip(spec: ClipSpec, rng: np.random.Generator, n_paraphrases: int = 4
                  ) -> tuple[str, list[str]]:
    """Ground-truth description of a clip and paraphrases with varied wording.

    Parameters
    ----------
    spec : ClipSpec
    rng : numpy.random.Generator
        Chooses the paraphrase templates and synonyms (the description itself is canonical:
        it depends on ``spec`` only).
    n_paraphrases : int, default 4
        Number of paraphrases (>= 3 recommended; at most 7), all different from each other
        and from the description.

    Returns
    -------
    description : str
        e.g. "A small red ball bounces slowly to the right on a sunny beach."
    paraphrases : list of str
    """
    _check_spec(spec)
    n_paraphrases = int(n_paraphrases)
    if not 0 <= n_paraphrases <= len(_TEMPLATES) - 1:
        raise ValueError(f"describe_clip: n_paraphrases must be in [0, {len(_TEMPLATES) - 1}]")
    canon = dict(noun=0, size=0, form=0, verb=0, speed=0, dir=0, scene=0)
    desc = _render_text(spec, _TEMPLATES[0], canon)
    out: list[str] = []
    templates = 1 + rng.permutation(len(_TEMPLATES) - 1)
    for ti in templates[:n_paraphrases]:
        for _ in range(20):
            ch = dict(noun=int(rng.integers(3)), size=int(rng.integers(3)), form=int(rng.integers(3)),
                      verb=int(rng.integers(3)), speed=int(rng.integers(4)), dir=int(rng.integers(3)),
                      scene=int(rng.integers(3)))
            text = _render_text(spec, _TEMPLATES[ti], ch)
            if text != desc and text not in out:
                break
        out.append(text)
    return desc, out


#: Scene keywords: words or phrases of which one names the scene in any description (the
#: phrases of ``_SCENE_WORDS`` and ``_FISH_WATER`` all contain one of them).
SCENE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "beach": ("beach", "seaside", "sea", "by the sea", "shore", "coast"),
    "street": ("street", "city", "town", "road"),
    "room": ("room", "indoors", "aquarium", "living room", "inside"),
    "field": ("field", "meadow", "green field", "grassy meadow", "grass"),
    "forest": ("forest", "woods", "trees", "leafy forest"),
    "snow": ("snow", "snowy", "winter", "snowy landscape"),
    "desert": ("desert", "dunes", "sand dunes", "sandy desert"),
    "night": ("night", "dark", "starry night", "night sky"),
}


def description_lexicon() -> dict:
    """Every word or phrase the descriptions use for each attribute value (JSON-ready).

    Written by the simulator to ``stimuli/lexicon.json`` and read by
    :class:`llm4brain.evaluation.attributes.AttributeParser`, so a text can be mapped back
    onto the clip's agent, action, colour, size, direction, speed and scene whatever
    paraphrase it uses ("automobile", "puppy", "among the trees in the woods", "from right
    to left").

    Returns
    -------
    dict
        ``{"attributes": {attribute: {value: [phrase, ...]}}, "unmarked": {attribute: value}}``.
        ``unmarked`` names the value a description leaves unsaid (a medium-sized agent has no
        size word in the canonical description).
    """
    def words(phrases):
        out = []
        for ph in phrases:
            ph = ph.replace("{pos}", "").strip()
            ph = " ".join(ph.split())
            if ph and ph not in out:
                out.append(ph)
        return out

    agent = {a: words(list(n) + [n[0] + "s"]) for a, n in AGENT_SYNONYMS.items()}
    agent["person"] += ["woman", "boy", "girl", "child", "people", "persons"]
    action: dict[str, list[str]] = {}
    for a, (verbs, gerunds) in _ACTION_WORDS.items():
        # the whole phrase, and its first word (a verb on its own names the action too,
        # except where the first word is too generic: "makes a turn", "does squats")
        phrases = list(verbs) + list(gerunds)
        firsts = [p.split()[0] for p in phrases if p.split()[0] not in _GENERIC_VERBS]
        action[a] = words(phrases + firsts)
    size = {"small": words(_SIZE_WORDS["small"] + _PERSON_SIZE["small"]),
            "medium": words(_SIZE_WORDS["medium"] + _PERSON_SIZE["medium"] + ("medium",)),
            "large": words(_SIZE_WORDS["large"] + _PERSON_SIZE["large"])}
    speed = {k: words(_SPEED_WORDS[k] + _SPEED_ADJ[k]) for k in SPEEDS}
    direction = {k: words(_DIR_MOVE[k] + _DIR_STILL[k] + (k,)) for k in DIRECTIONS}
    scene = {k: words(_SCENE_WORDS[k] + SCENE_KEYWORDS[k]) for k in SCENES}
    colour = {c: [c] for c in COLOURS}
    colour["grey"] = ["grey", "gray"]
    return {"attributes": dict(agent=agent, action=action, colour=colour, size=size,
                               direction=direction, speed=speed, scene=scene),
            "unmarked": {"size": "medium"}}


_GENERIC_VERBS = frozenset({"makes", "making", "does", "doing", "comes", "coming", "settles",
                            "settling", "happily", "turns", "turning"})


# ---------------------------------------------------------------------------------------------
# Features for the BOLD simulator
# ---------------------------------------------------------------------------------------------
LOWLEVEL_NAMES: tuple[str, ...] = (
    "luminance", "contrast", "red", "green", "blue", "edges_fine", "edges_mid", "edges_coarse",
    "colourfulness", "saturation", "top_bottom", "left_right",
)
MOTION_NAMES: tuple[str, ...] = (
    "frame_diff", "motion_right", "motion_left", "motion_up", "motion_down", "flicker",
    "moving_area",
)


def _pool2(x: np.ndarray) -> np.ndarray:
    h, w = (x.shape[-2] // 2) * 2, (x.shape[-1] // 2) * 2
    x = x[..., :h, :w]
    return 0.25 * (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2])


def _edge_energy(lum: np.ndarray) -> float:
    gx = np.diff(lum, axis=-1)[..., :-1, :]
    gy = np.diff(lum, axis=-2)[..., :, :-1]
    return float(np.sqrt(gx ** 2 + gy ** 2).mean())


def clip_features(frames: np.ndarray, spec: ClipSpec, classes: Sequence[ActionClass]
                  ) -> dict[str, np.ndarray]:
    """Feature groups of a clip for the simulator's encoding model.

    Parameters
    ----------
    frames : uint8 array of shape (T, H, W, 3)
        The rendered (or decoded) clip.
    spec : ClipSpec
        Its spec (for the semantic one-hots).
    classes : sequence of ActionClass
        The classes of the dataset; the agent/action one-hots run over their unique agents
        and actions, in order of first appearance.

    Returns
    -------
    dict of str -> float32 array
        ``lowlevel`` (12,) image statistics (names in :data:`LOWLEVEL_NAMES`), ``motion`` (7,)
        frame-difference statistics (:data:`MOTION_NAMES`; needs T >= 2, zeros otherwise),
        ``agent`` (n_agents,), ``action`` (n_actions,), ``scene`` (len(SCENES),) one-hots.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"clip_features({spec.clip_id}): frames must be (T, H, W, 3), got {frames.shape}")
    x = frames.astype(np.float32) / 255.0
    R, G, B = x[..., 0], x[..., 1], x[..., 2]
    lum = 0.299 * R + 0.587 * G + 0.114 * B                     # (T, H, W)
    rg, yb = R - G, 0.5 * (R + G) - B
    colourful = float(np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))
    mx, mn = np.maximum(np.maximum(R, G), B), np.minimum(np.minimum(R, G), B)
    sat = float(((mx - mn) / (mx + 1e-3)).mean())
    H, W = lum.shape[1:]
    l2 = _pool2(lum)
    lowlevel = [float(lum.mean()), float(lum.std(axis=(1, 2)).mean()), float(R.mean()),
                float(G.mean()), float(B.mean()), _edge_energy(lum), _edge_energy(l2),
                _edge_energy(_pool2(l2)), colourful, sat,
                float(lum[:, : H // 2].mean() - lum[:, H // 2:].mean()),
                float(lum[:, :, : W // 2].mean() - lum[:, :, W // 2:].mean())]
    motion = np.zeros(len(MOTION_NAMES), np.float32)
    if lum.shape[0] >= 2:
        a, b = lum[:-1], lum[1:]
        m = max(H // 24, 1)                                      # shift of about 4 px at 96 px
        core = (slice(None), slice(m, H - m), slice(m, W - m))
        d0 = np.abs(b - a)[core]
        e0 = float(d0.mean())

        def energy(dy, dx):
            """Mean per-pixel reduction of the frame difference when frame t is shifted by
            (dy, dx) pixels: a local (Reichardt-like) detector, zero for static pixels."""
            sa = np.roll(a, (dy, dx), axis=(1, 2))
            return float(np.maximum(d0 - np.abs(b - sa)[core], 0.0).mean())

        motion[:] = [e0, energy(0, m), energy(0, -m), energy(-m, 0), energy(m, 0),
                     float(lum.mean(axis=(1, 2)).std()), float((d0 > 0.05).mean())]
        motion[1:5] *= 10.0
    agents = list(dict.fromkeys(c.agent for c in classes))
    actions = list(dict.fromkeys(c.action for c in classes))
    if spec.agent not in agents or spec.action not in actions:
        raise ValueError(f"clip_features({spec.clip_id}): {spec.agent}/{spec.action} is not among "
                         f"the dataset classes {[c.name for c in classes]}")
    if spec.scene not in SCENES:
        raise ValueError(f"clip_features({spec.clip_id}): unknown scene {spec.scene!r}")

    def onehot(items, item):
        v = np.zeros(len(items), np.float32)
        v[items.index(item)] = 1.0
        return v

    return {"lowlevel": np.asarray(lowlevel, np.float32), "motion": motion,
            "agent": onehot(agents, spec.agent), "action": onehot(actions, spec.action),
            "scene": onehot(list(SCENES), spec.scene)}
