"""Leakage guard: the training data path for target subjects holds unlabelled fMRI only."""
from __future__ import annotations

import gc
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from llm4brain.training.guard import (FORBIDDEN_TARGET_FIELDS, LeakageError, check_splits,
                                      shared_clips, source_view, target_adaptation_view,
                                      target_evaluation_view)


@pytest.fixture
def cache_and_splits(rng):
    """4 subjects x 2 runs x 5 trials; subjects 03 and 04 are targets (run 1 adapt, 2 eval)."""
    rows = []
    for s in ("01", "02", "03", "04"):
        for run in (1, 2):
            for t in range(5):
                c = int(rng.integers(3))
                rows.append(dict(subject=s, run=run, trial=t, onset=4.0 * t, class_id=c,
                                 class_name=f"class{c}", stim_file=f"c{c}/v_{s}_{run}_{t}.mp4",
                                 clip_id=f"v_{s}_{run}_{t}", vol_index=0))
    trials = pd.DataFrame(rows)
    n = len(trials)
    # each block is filled with its row number: what a view returns can be traced back
    blocks = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None, None],
                             (n, 2, 3, 3, 2)).copy()
    sub, run = trials["subject"].to_numpy(), trials["run"].to_numpy()
    train_s, target_s = np.isin(sub, ["01", "02"]), np.isin(sub, ["03", "04"])
    splits = SimpleNamespace(
        train_subjects=("01", "02"), target_subjects=("03", "04"),
        train_idx=np.flatnonzero(train_s & (run == 1)), val_idx=np.flatnonzero(train_s & (run == 2)),
        adapt_idx=np.flatnonzero(target_s & (run == 1)), eval_idx=np.flatnonzero(target_s & (run == 2)))
    return SimpleNamespace(blocks=blocks, trials=trials), splits


@pytest.mark.parametrize("copy", [True, False])
def test_adaptation_view_gives_fmri_of_adapt_trials_only(cache_and_splits, copy):
    cache, splits = cache_and_splits
    view = target_adaptation_view(cache, splits, max_copy_bytes=10 ** 9 if copy else 0)
    assert len(view) == len(splits.adapt_idx) == 10
    got = view.blocks(view.index)
    assert got.shape == (10, 2, 3, 3, 2) and got.dtype == np.float32
    rows_seen = got[:, 0, 0, 0, 0].astype(int)
    assert sorted(rows_seen) == sorted(splits.adapt_idx)          # every adapt trial, once
    assert not set(rows_seen) & set(splits.eval_idx)              # no evaluation trial
    assert set(view.subjects) == {"03", "04"}
    assert np.array_equal(view.subjects, cache.trials["subject"].to_numpy()[rows_seen])
    assert np.array_equal(view[3], got[3])
    # order is a shuffle: positions do not follow the cache rows
    assert list(rows_seen) != sorted(rows_seen)
    # indices beyond the adaptation trials (where eval trials would be) are refused
    for bad in ([10], [-1], [0, 25]):
        with pytest.raises(LeakageError, match="only this view"):
            view.blocks(bad)


@pytest.mark.parametrize("field", sorted(FORBIDDEN_TARGET_FIELDS))
def test_adaptation_view_refuses_labels_videos_captions(cache_and_splits, field):
    cache, splits = cache_and_splits
    view = target_adaptation_view(cache, splits)
    with pytest.raises(LeakageError, match="not available to training"):
        getattr(view, field)
    with pytest.raises(LeakageError):
        view[field]


def test_adaptation_view_holds_no_table_and_is_read_only(cache_and_splits):
    cache, splits = cache_and_splits
    view = target_adaptation_view(cache, splits)
    with pytest.raises(AttributeError, match="read-only"):
        view.labels = np.zeros(3)
    with pytest.raises(AttributeError):
        view.__dict__                                            # no hidden attribute store
    # nothing reachable from the view is a DataFrame/Series or the cache's arrays
    seen, stack = set(), [view]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        assert not isinstance(obj, (pd.DataFrame, pd.Series, pd.Index))
        assert obj is not cache.blocks and obj is not cache.trials
        if isinstance(obj, np.ndarray):
            assert obj.base is None or obj.base is not cache.blocks
            assert obj.dtype.kind != "O" or set(obj.tolist()) <= {"03", "04"}   # only subjects
            continue
        stack.extend(r for r in gc.get_referents(obj) if not isinstance(r, (type, str, int)))
    # and the copied view stays valid when the cache goes away
    view2 = target_adaptation_view(cache, splits)
    before = view2.blocks(view2.index)
    cache.blocks[:] = -1
    assert np.array_equal(view2.blocks(view2.index), before)


def test_source_view_has_no_target_subject(cache_and_splits):
    cache, splits = cache_and_splits
    for part in ("train", "val"):
        sv = source_view(cache, splits, part)
        assert set(sv.subject) <= {"01", "02"} and len(sv) == 10
        rows = sv.blocks(np.arange(len(sv)))[:, 0, 0, 0, 0].astype(int)
        assert np.array_equal(rows, sv.rows)
        assert not set(rows) & (set(splits.adapt_idx) | set(splits.eval_idx))
        assert np.array_equal(sv.class_id, cache.trials["class_id"].to_numpy()[sv.rows])
        with pytest.raises(LeakageError):
            sv.blocks([len(sv)])                                  # cannot step into other rows
    with pytest.raises(ValueError, match="target_adaptation_view"):
        source_view(cache, splits, "adapt")


def test_evaluation_view_and_disjoint_indices(cache_and_splits):
    cache, splits = cache_and_splits
    ev = target_evaluation_view(cache, splits)
    assert set(ev.subject) == {"03", "04"} and len(ev) == 10
    assert list(ev.trials["run"].unique()) == [2]
    assert np.array_equal(ev.trials["clip_id"].to_numpy(), ev.clip_id)
    assert not set(splits.adapt_idx) & set(splits.eval_idx)
    av = target_adaptation_view(cache, splits)
    assert not set(av.blocks(av.index)[:, 0, 0, 0, 0].astype(int)) & set(ev.rows)
    assert shared_clips(cache.trials, splits) == set()


def test_check_splits_catches_leaks(cache_and_splits):
    cache, splits = cache_and_splits
    check_splits(cache.trials, splits)
    overlap = SimpleNamespace(**{**vars(splits), "adapt_idx": np.r_[splits.adapt_idx,
                                                                     splits.eval_idx[:1]]})
    with pytest.raises(LeakageError, match="adapt_idx and splits.eval_idx share 1"):
        target_adaptation_view(cache, overlap)
    wrong = SimpleNamespace(**{**vars(splits), "train_idx": np.r_[splits.train_idx,
                                                                   splits.adapt_idx[:1]]})
    with pytest.raises(LeakageError, match="not training subjects"):
        source_view(cache, wrong)
    both = SimpleNamespace(**{**vars(splits), "train_subjects": ("01", "02", "03")})
    with pytest.raises(LeakageError, match="both training and target"):
        check_splits(cache.trials, both)
    out = SimpleNamespace(**{**vars(splits), "eval_idx": np.r_[splits.eval_idx, 999]})
    with pytest.raises(LeakageError, match="outside"):
        target_evaluation_view(cache, out)


def test_with_real_make_splits(tmp_path):
    """The guard accepts what llm4brain.data.make_splits produces."""
    import llm4brain.data as data
    from llm4brain.config import load_config
    cfg = load_config("smoke")
    trials = pd.DataFrame([dict(subject=s, run=r, class_id=0, class_name="a", stim_file="x",
                                clip_id=f"{s}{r}{t}") for s in ("01", "02", "03")
                           for r in (1, 2) for t in range(3)])
    sp = data.make_splits(trials, cfg, save=False)
    check_splits(trials, sp)
    cache = SimpleNamespace(blocks=np.zeros((len(trials), 1, 2, 2, 2), np.float32), trials=trials)
    assert len(target_adaptation_view(cache, sp)) == len(sp.adapt_idx) > 0
