"""Feature groups of a simulated clip that the BOLD simulator's encoding model is built on.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._catalogue import ActionClass, ClipSpec, SCENES

__all__ = ["LOWLEVEL_NAMES", "MOTION_NAMES", "clip_features"]


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
