"""Agents of the simulated clips, part two: bird, dog and fish.

Each ``_make_<agent>(action)`` returns ``draw(canvas, t, state)`` for normalised time ``t``.
"""
from __future__ import annotations

import math

from ._raster import _mix, _shade
from ._figures import _Pose, _osc, _shadow, _track

__all__ = []


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
