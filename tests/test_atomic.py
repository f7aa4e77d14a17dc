"""Atomic writes: complete or absent, never a truncated file under the real name."""
from __future__ import annotations

import errno

import numpy as np
import pandas as pd
import pytest

from llm4brain import atomic


def test_writers_round_trip(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    atomic.write_csv(df, tmp_path / "t.csv", index=False)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), df)
    atomic.write_json(tmp_path / "s.json", {"k": [1, 2]})
    assert (tmp_path / "s.json").read_text() == '{"k": [1, 2]}'
    atomic.save_npz(tmp_path / "e.npz", z=np.arange(3), x=np.eye(2))
    with np.load(tmp_path / "e.npz") as f:
        assert np.array_equal(f["z"], np.arange(3)) and np.array_equal(f["x"], np.eye(2))
    atomic.save_npy(tmp_path / "m.npy", np.ones(4, bool))
    assert np.load(tmp_path / "m.npy").all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.npz", "m.npy", "s.json", "t.csv"]


def test_failed_write_keeps_the_old_file_and_no_partial(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_full_disk_names_the_file_and_the_fix(tmp_path):
    target = tmp_path / "sub" / "r.csv"
    with pytest.raises(OSError, match="no space left on the device while writing") as ei:
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("part")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert ei.value.errno == errno.ENOSPC and str(target) in str(ei.value)
    assert "move the run directory" in str(ei.value)
    assert not target.exists() and list(target.parent.iterdir()) == []
