"""Rasteriser of the simulated clips: anti-aliased signed-distance primitives on a float canvas.
"""
from __future__ import annotations

import math

import numpy as np

from ._catalogue import COLOURS

__all__ = []


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
