"""The compact trial cache (``data.cache_format: masked16``): the same blocks and volumes as the
dense cache to float16 precision, built in parallel worker processes byte-identically, indexed
like the arrays it replaces, and refused with a clear error when misconfigured."""
from __future__ import annotations

import numpy as np
import pytest

from llm4brain.config import load_config
from llm4brain.data import DataError, build_trial_cache, iter_run_volumes, make_splits
from llm4brain.data._packed import PackedBlocks, PackedVolumes
from llm4brain.training.guard import source_view, target_evaluation_view


def _cfg(tmp_path, **data):
    return load_config("smoke", {"run": {"run_dir": str(tmp_path / "run")},
                                 "data": {"root": str(tmp_path / "ds"), "block_trs": 3, **data}})


@pytest.fixture
def tiny(tmp_path, make_tiny_bids):
    make_tiny_bids(tmp_path / "ds", n_subjects=3, n_runs=2, shape=(7, 8, 6), n_vols=36,
                   plant={"voxel": (3, 3, 2), "volume": 10, "amplitude": 8.0}, noise=0.2,
                   write_clips=False)
    return tmp_path


def test_masked16_reads_back_the_dense_cache(tiny):
    dense = build_trial_cache(_cfg(tiny), progress=False, check_stimuli=False)
    packed = build_trial_cache(_cfg(tiny, cache_format="masked16", cache_workers=1),
                               progress=False, check_stimuli=False)
    assert packed.path != dense.path                       # its own key
    assert isinstance(packed.blocks, PackedBlocks) and isinstance(packed.volumes, PackedVolumes)
    assert packed.blocks.shape == dense.blocks.shape and packed.volumes.shape == dense.volumes.shape
    assert packed.trials.equals(dense.trials)
    d, p = np.asarray(dense.blocks), np.asarray(packed.blocks)
    scale = np.abs(d).max()
    np.testing.assert_allclose(p, d, atol=scale * 2 ** -10)            # float16: 11-bit mantissa
    assert (p[:, :, ~dense.mask] == 0).all()
    np.testing.assert_allclose(packed.trial_vectors([5, 0, 2]), dense.trial_vectors([5, 0, 2]),
                               atol=scale * 2 ** -10)
    for (s1, r1, v1), (s2, r2, v2) in zip(iter_run_volumes(None, tc=dense),
                                          iter_run_volumes(None, tc=packed)):
        assert (s1, r1) == (s2, r2) and v2.shape == v1.shape
        assert isinstance(v2, PackedVolumes)                            # lazy, like a memmap
        np.testing.assert_allclose(np.asarray(v2), np.asarray(v1), atol=scale * 2 ** -10)
    files = sorted(f.name for f in packed.path.iterdir())
    assert "blocks.f32" not in files and [f for f in files if f.endswith(".f16")] == [
        "volumes-sub-01.f16", "volumes-sub-02.f16", "volumes-sub-03.f16"]
    size = lambda tc: sum(f.stat().st_size for f in tc.path.iterdir() if f.suffix in (".f32", ".f16"))
    n_vols, n_vox = dense.volumes.shape[0], int(dense.mask.sum())
    assert size(packed) == n_vols * n_vox * 2                          # every volume once, float16
    assert size(dense) == (d.size + n_vols * dense.mask.size) * 4


def test_parallel_workers_write_the_same_cache(tiny):
    one = build_trial_cache(_cfg(tiny, cache_format="masked16", cache_workers=1),
                            progress=False, check_stimuli=False)
    data_one = {f.name: f.read_bytes() for f in one.path.glob("*.f16")}
    tsv_one = (one.path / "trials.tsv").read_bytes()
    two = build_trial_cache(_cfg(tiny, cache_format="masked16", cache_workers=3),
                            progress=False, check_stimuli=False, rebuild=True)
    assert two.path == one.path
    assert {f.name: f.read_bytes() for f in two.path.glob("*.f16")} == data_one
    assert (two.path / "trials.tsv").read_bytes() == tsv_one


def test_packed_arrays_index_like_numpy(tiny):
    packed = build_trial_cache(_cfg(tiny, cache_format="masked16", cache_workers=1),
                               progress=False, check_stimuli=False)
    b, v = packed.blocks, packed.volumes
    full = np.asarray(b)
    assert np.array_equal(b[3], full[3]) and np.array_equal(b[-1], full[-1])
    assert np.array_equal(b[[4, 1, 4]], full[[4, 1, 4]])
    assert np.array_equal(b[2:5], full[2:5]) and b[:0].shape == (0,) + full.shape[1:]
    sel = np.zeros(len(b), bool)
    sel[[0, 7]] = True
    assert np.array_equal(b[sel], full[sel])
    assert np.array_equal(b[[1, 2], 0], full[[1, 2], 0])
    vf = np.asarray(v)
    assert np.array_equal(np.asarray(v[10:20]), vf[10:20]) and np.array_equal(v[5], vf[5])
    assert np.array_equal(v[10:20][[0, 9]], vf[[10, 19]])
    with pytest.raises(IndexError):
        b[len(b)]
    with pytest.raises(IndexError):
        v[[0, len(v)]]
    # the leakage guard's views read it as they read the dense cache
    splits = make_splits(packed.trials, _cfg(tiny, target_subjects=["03"]), save=False)
    src = source_view(packed, splits, "train")
    assert np.array_equal(src.blocks([2, 0]), full[splits.train_idx[[2, 0]]])
    ev = target_evaluation_view(packed, splits)
    assert np.array_equal(ev.blocks([1]), full[splits.eval_idx[[1]]])


def test_bad_cache_settings_are_named(tiny):
    with pytest.raises(DataError, match="data.cache_format = 'sparse' is not one of dense32, masked16"):
        build_trial_cache(_cfg(tiny, cache_format="sparse"), progress=False)
    with pytest.raises(DataError, match="data.cache_workers must be >= 0"):
        build_trial_cache(_cfg(tiny, cache_format="masked16", cache_workers=-1), progress=False)
