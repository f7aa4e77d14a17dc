"""Agents of the simulated clips, part one: shared pose helpers, person, ball and car.

Each ``_make_<agent>(action)`` returns ``draw(canvas, t, state)`` for normalised time ``t``.
"""
from __future__ import annotations

import math

from ._raster import _rgb, _shade

__all__ = []


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
