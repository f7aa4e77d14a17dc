"""Procedural stimulus renderer, descriptions, features and mp4 round trips."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from llm4brain.sim import (
    ACTION_SYNONYMS, AGENT_SYNONYMS, CLASS_CATALOGUE, COLOURS, LOWLEVEL_NAMES, MOTION_NAMES,
    SCENES, ActionClass, ClipSpec, class_index, clip_features, describe_clip, render_clip,
    sample_clip_specs, stim_file_name,
)
from llm4brain.data._video_io import read_frames, uniform_frame_indices, write_mp4, write_mp4_batch


def _spec(**kw) -> ClipSpec:
    base = dict(class_name="Ball_bouncing", agent="ball", action="bouncing", colour="red",
                size="small", direction="right", speed="fast", scene="beach", seed=7,
                clip_id="t00001")
    base.update(kw)
    return ClipSpec(**base)


def _ramp_clip(n=8, size=32):
    """A clip whose brightness increases frame by frame, with some spatial structure."""
    yy, xx = np.mgrid[0:size, 0:size]
    frames = []
    for k in range(n):
        level = 20 + 25 * k
        img = np.stack([np.full((size, size), level), (xx * 2 + level) % 256,
                        np.full((size, size), level // 2)], -1)
        frames.append(img)
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------- catalogue
def test_catalogue_unique_and_first_12_well_separated():
    names = [c.name for c in CLASS_CATALOGUE]
    assert len(CLASS_CATALOGUE) >= 24 and len(set(names)) == len(names)
    for c in CLASS_CATALOGUE:
        assert c.name == f"{c.agent.capitalize()}_{c.action}"
        assert c.agent in AGENT_SYNONYMS and c.action in ACTION_SYNONYMS
    first = CLASS_CATALOGUE[:12]
    assert len({c.agent for c in first}) == 6            # every agent
    assert len({c.action for c in first}) >= 10
    assert len({c.agent for c in CLASS_CATALOGUE[:4]}) == 4   # smoke profile: 4 distinct agents
    assert class_index("Person_waving") == 0
    with pytest.raises(ValueError, match="unknown action class"):
        class_index("Nope_nothing")


def test_sample_clip_specs_balanced_unique_deterministic():
    classes = CLASS_CATALOGUE[:4]
    a = sample_clip_specs(classes, 6, np.random.default_rng(3), "s01r01")
    b = sample_clip_specs(classes, 6, np.random.default_rng(3), "s01r01")
    c = sample_clip_specs(classes, 6, np.random.default_rng(4), "s01r01")
    assert a == b and a != c
    assert len(a) == 24 and len({s.clip_id for s in a}) == 24
    assert all(s.clip_id.startswith("s01r01") for s in a)
    counts = {cl.name: sum(s.class_name == cl.name for s in a) for cl in classes}
    assert set(counts.values()) == {6}
    assert len({s.class_name for s in a[:6]}) > 1          # shuffled, not blocked by class
    for s in a:
        assert s.colour in COLOURS and s.scene in SCENES
        assert (s.agent, s.action) == next((c.agent, c.action) for c in classes if c.name == s.class_name)
    sizes = [s.size for s in a]
    assert all(sizes.count(v) == 8 for v in ("small", "medium", "large"))   # balanced
    with pytest.raises(ValueError, match="n_per_class"):
        sample_clip_specs(classes, 0, np.random.default_rng(0), "x")
    with pytest.raises(ValueError, match="no renderer"):
        sample_clip_specs([ActionClass("Cow_mooing", "cow", "mooing")], 1, np.random.default_rng(0), "x")


def test_stim_file_name_is_had_like():
    s = _spec(class_name="Car_driving", agent="car", action="driving", clip_id="s02r03_00012")
    name = stim_file_name(s)
    assert name == "Car_driving/v_Car_driving_id_s02r03_00012_label_3.mp4"
    m = re.fullmatch(r"(\w+)/v_\1_id_(.+)_label_(\d+)\.mp4", name)
    assert m and int(m.group(3)) == class_index("Car_driving") + 1


# ------------------------------------------------------------------------------- rendering
def test_render_shapes_and_determinism():
    s = _spec()
    a = render_clip(s, 32, 4)
    assert a.shape == (4, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_clip(s, 32, 4))
    b = render_clip(dataclasses.replace(s, seed=8), 32, 4)
    assert np.abs(a.astype(int) - b).mean() > 1.0
    assert np.abs(a[0].astype(int) - a[-1]).mean() > 0.5      # something moves


def test_every_class_renders_and_moves():
    rng = np.random.default_rng(0)
    for spec in sample_clip_specs(CLASS_CATALOGUE, 1, rng, "all"):
        fr = render_clip(spec, 24, 3)
        assert fr.shape == (3, 24, 24, 3)
        assert np.abs(np.diff(fr.astype(np.int16), axis=0)).sum() > 0, spec.class_name


def test_render_rejects_bad_spec():
    with pytest.raises(ValueError, match="scene='moon'"):
        render_clip(_spec(scene="moon"), 32, 2)
    with pytest.raises(ValueError, match="no renderer"):
        render_clip(_spec(agent="cow", action="mooing"), 32, 2)
    with pytest.raises(ValueError, match="n_frames"):
        render_clip(_spec(), 32, 0)


# ------------------------------------------------------------------------------- text
def test_descriptions_name_agent_and_action_and_vary():
    rng = np.random.default_rng(0)
    for cl in CLASS_CATALOGUE:
        spec = _spec(class_name=cl.name, agent=cl.agent, action=cl.action,
                     colour="orange", size="large", direction="left", scene="room")
        desc, para = describe_clip(spec, rng)
        assert len(para) >= 3 and len(set(para)) == len(para) and desc not in para
        for text in [desc, *para]:
            low = text.lower()
            assert any(w in low for w in AGENT_SYNONYMS[cl.agent]), text
            assert any(w in low for w in ACTION_SYNONYMS[cl.action]), text
            assert text[0].isupper() and text.endswith(".") and "  " not in text
        assert "orange" in desc and "left" in desc
    d, _ = describe_clip(_spec(), rng)
    assert d == "A small red ball bounces quickly to the right on a sunny beach."
    assert describe_clip(_spec(), np.random.default_rng(1))[0] == d       # canonical


# ------------------------------------------------------------------------------- features
def test_clip_features_respond_to_frames_and_onehots():
    classes = CLASS_CATALOGUE[:6]
    s = _spec()
    fr = render_clip(s, 32, 4)
    f = clip_features(fr, s, classes)
    assert f["lowlevel"].shape == (len(LOWLEVEL_NAMES),) and f["motion"].shape == (len(MOTION_NAMES),)
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in f.values())
    brighter = np.clip(fr.astype(int) + 60, 0, 255).astype(np.uint8)
    fb = clip_features(brighter, s, classes)
    assert fb["lowlevel"][0] > f["lowlevel"][0] + 0.1                      # mean luminance
    # a static clip has no motion energy, a moving one has
    still = clip_features(np.repeat(fr[:1], 4, 0), s, classes)["motion"]
    assert np.allclose(still, 0) and f["motion"][0] > 0
    # a bar moving right: rightward energy beats leftward energy
    bar = np.zeros((4, 32, 32, 3), np.uint8)
    for k in range(4):
        bar[k, :, 4 + 3 * k: 10 + 3 * k] = 255
    m = clip_features(bar, s, classes)["motion"]
    assert m[MOTION_NAMES.index("motion_right")] > m[MOTION_NAMES.index("motion_left")]
    agents = ["person", "ball", "car", "bird", "dog", "fish"]
    assert f["agent"].tolist() == [float(a == "ball") for a in agents]
    assert f["action"].sum() == 1 and f["action"][1] == 1                  # 'bouncing' 2nd action
    assert f["scene"].tolist() == [float(sc == "beach") for sc in SCENES]
    with pytest.raises(ValueError, match="not among"):
        clip_features(fr, _spec(class_name="Bird_pecking", agent="bird", action="pecking"), classes)


# ------------------------------------------------------------------------------- video io
def test_mp4_round_trip_order_and_values(tmp_path):
    clip = _ramp_clip(8, 32)
    p = write_mp4(clip, tmp_path / "a" / "b" / "clip.mp4", fps=4)
    assert p.is_file()
    back = read_frames(p, 8, 32)
    assert back.shape == (8, 32, 32, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(float) - clip).mean() < 8
    lum = back.mean(axis=(1, 2, 3))
    assert np.all(np.diff(lum) > 0)                                        # order kept
    rendered = render_clip(_spec(), 48, 6)
    back = read_frames(write_mp4(rendered, tmp_path / "r.mp4", fps=3), 6, 48)
    assert np.abs(back.astype(float) - rendered).mean() < 8


def test_read_frames_samples_uniformly_and_resizes(tmp_path):
    clip = _ramp_clip(8, 32)
    p = write_mp4(clip, tmp_path / "clip.mp4", fps=4)
    assert uniform_frame_indices(8, 4).tolist() == [1, 3, 5, 7]
    sub = read_frames(p, 4, 32)
    full = read_frames(p, 8, 32)
    assert np.array_equal(sub, full[[1, 3, 5, 7]])
    big = read_frames(p, 2, 64)
    assert big.shape == (2, 64, 64, 3)
    odd = read_frames(p, 3, 48)          # decord 0.6 fails at 48 px: torch resize fallback
    assert odd.shape == (3, 48, 48, 3)
    assert np.abs(odd.mean(axis=(1, 2)) - clip[[1, 4, 6]].mean(axis=(1, 2))).max() < 8
    # resizing keeps the content: mean colour of each frame matches the source frame's
    assert np.abs(big.mean(axis=(1, 2)) - clip[[2, 6]].mean(axis=(1, 2))).max() < 8


def test_write_mp4_batch_matches_single_writes(tmp_path):
    clips = [render_clip(_spec(seed=k), 32, 4) for k in range(3)]
    clips[1] = _ramp_clip(4, 32)
    paths = [tmp_path / "A" / "x0.mp4", tmp_path / "B" / "x1.mp4", tmp_path / "A" / "x2.mp4"]
    out = write_mp4_batch(iter(clips), paths, fps=2)
    assert out == paths and all(p.is_file() for p in paths)
    assert not list(tmp_path.rglob(".mp4batch_*"))                        # temp folder removed
    for c, p in zip(clips, paths):
        back = read_frames(p, 4, 32)
        assert np.abs(back.astype(float) - c).mean() < 8
    assert np.all(np.diff(read_frames(paths[1], 4, 32).mean(axis=(1, 2, 3))) > 0)
    with pytest.raises(ValueError, match="differs from the first"):
        write_mp4_batch([clips[0], clips[0][:2]], [tmp_path / "c.mp4", tmp_path / "d.mp4"], 2)
    with pytest.raises(ValueError, match="got 1 clips for 2 paths"):
        write_mp4_batch([clips[0]], [tmp_path / "e.mp4", tmp_path / "f.mp4"], 2)


def test_video_io_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.mp4.*not found.*data\.root.*events\.tsv"):
        read_frames(tmp_path / "missing.mp4", 4, 32)
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match=r"garbage\.mp4.*cannot be decoded.*re-encode"):
        read_frames(bad, 4, 32)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.mp4.*no frames"):
        read_frames(empty, 4, 32)
    ok = write_mp4(_ramp_clip(2, 16), tmp_path / "ok.mp4", fps=2)
    with pytest.raises(ValueError, match="n_frames must be >= 1"):
        read_frames(ok, 0, 32)
    with pytest.raises(ValueError, match="must be even"):
        write_mp4(np.zeros((2, 15, 16, 3), np.uint8), tmp_path / "odd.mp4", fps=2)
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(np.zeros((2, 16, 16, 3), np.float32), tmp_path / "f.mp4", fps=2)
    with pytest.raises(ValueError, match="no frames"):
        write_mp4(np.zeros((0, 16, 16, 3), np.uint8), tmp_path / "z.mp4", fps=2)
