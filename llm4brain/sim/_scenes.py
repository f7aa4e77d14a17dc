"""Scene backgrounds of the simulated clips (rendered once per clip).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._raster import _Canvas, _shade

__all__ = []


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
