"""Volume acquisition times: one rule, read from the run's sidecars, behind every trial block.

A planted response that peaks 5 s after each onset must lie inside the trial block whatever
slice-timing reference the sidecars declare; the simulator writes what it assumes and the
loader reads it back."""
from __future__ import annotations

import json

import numpy as np
import pytest

from llm4brain.config import load_config
from llm4brain.data import (DataError, block_start_index, build_trial_cache, check_data,
                            discover_runs, volume_reference, volume_times)
from llm4brain.sim import SIM_T0_FRACTION, block_times, lag_profile, simulate_dataset

TR, ONSETS, VOX, PEAK_S = 1.5, (3.0, 10.0, 17.5, 25.0), (2, 3, 2), 5.2


def _cfg(tmp_path, **data):
    return load_config("smoke", {"run": {"run_dir": str(tmp_path / "run")},
                                 "data": {"root": str(tmp_path / "ds"), "block_trs": 2,
                                          "lag_s": 4.0, **data}})


def _planted(t0):
    """An impulse at VOX in the volume acquired nearest PEAK_S after each onset (volume i at
    t0 + i TR): where a response peaking PEAK_S after the onset is largest."""
    t = volume_times(40, TR, t0)
    return [dict(voxel=VOX, volume=int(np.argmin(np.abs(t - on - PEAK_S))), amplitude=8.0)
            for on in ONSETS]


@pytest.mark.parametrize("timing, t0, rule", [
    ({"SliceTimingCorrected": True, "StartTime": 1.4}, 1.4, "StartTime 1.4 s"),
    ({"SliceTimingCorrected": True, "StartTime": 0.0}, 0.0, "StartTime 0 s"),
    ({"SliceTimingCorrected": True}, 0.75, "fMRIPrep's default reference"),
    (None, 0.75, "documented default"),
])
def test_block_holds_the_planted_peak_under_each_timing_rule(make_tiny_bids, tmp_path, timing,
                                                             t0, rule, capsys):
    make_tiny_bids(tmp_path / "ds", n_subjects=1, n_runs=1, tr=TR, onsets=ONSETS,
                   plant=_planted(t0), noise=0.01, timing=timing)
    cfg = _cfg(tmp_path)
    (rf,) = discover_runs(cfg.data_root, cfg.data)
    assert rf.t0_s == pytest.approx(t0) and rule in rf.timing_source
    tc = build_trial_cache(cfg, progress=False)
    assert rule in capsys.readouterr().err                  # the build says which rule applied
    assert tc.meta["volume_t0"] == {"01:1": pytest.approx(t0)}
    crop = [a for a, _ in tc.meta["crop"]]
    v = tuple(np.array(VOX) - crop)
    t = volume_times(40, TR, t0)
    for k, on in enumerate(tc.trials["onset"]):
        peak_vol = int(np.argmin(np.abs(t - on - PEAK_S)))
        first = int(tc.trials["vol_index"].iloc[k])
        assert first <= peak_vol < first + 2, (on, first, peak_vol)
        block = np.asarray(tc.blocks[k])[(slice(None),) + v]
        assert int(np.argmax(block)) == peak_vol - first
        assert t[first] >= on + 4.0 - 1e-6                   # never before onset + lag
    # the times the lag-profile figure shades are the block's acquisition times
    assert np.all(np.abs(block_times(cfg, tc) - (np.median(
        t[tc.trials["vol_index"]] - tc.trials["onset"]) + np.arange(2) * TR)) < 1e-9)


def test_ignoring_the_reference_misses_the_peak():
    # what the rule prevents: taking volume i at i * TR when the sidecar says t0 = 1.4 s
    t = volume_times(40, TR, 1.4)
    on = np.asarray(ONSETS)
    peak = np.argmin(np.abs(t[None] - (on[:, None] + PEAK_S)), 1)
    naive = block_start_index(on, 4.0, TR, 0.0)
    right = block_start_index(on, 4.0, TR, 1.4)
    assert np.all((right <= peak) & (peak < right + 2))
    assert np.any(peak < naive)


def test_raw_slice_timing_gives_the_mean_slice_time(make_tiny_bids, tmp_path):
    st = [0.0, 0.5, 1.0, 0.25, 0.75, 1.25]
    make_tiny_bids(tmp_path / "ds", n_subjects=1, n_runs=1, tr=TR, onsets=ONSETS,
                   timing={"raw": {"SliceTiming": st}})
    cfg = _cfg(tmp_path, source="raw")
    (rf,) = discover_runs(cfg.data_root, cfg.data)
    assert rf.t0_s == pytest.approx(np.mean(st)) and "SliceTiming" in rf.timing_source
    rows = check_data(cfg.data_root, cfg.data, decode=False)
    timing = [r for r in rows if r.check == "timing"]
    assert len(timing) == 1 and "SliceTiming" in timing[0].detail


@pytest.mark.parametrize("fields, msg", [
    ({"SliceTimingCorrected": True, "StartTime": 2.0}, "StartTime 2 s lies outside the TR"),
    ({"SliceTimingCorrected": True, "StartTime": "mid"}, "StartTime 'mid' is not a number"),
    ({"SliceTiming": [0.0, 3.0]}, "SliceTiming must list times in"),
])
def test_bad_slice_timing_names_the_sidecar(make_tiny_bids, tmp_path, fields, msg):
    make_tiny_bids(tmp_path / "ds", n_subjects=1, n_runs=1, tr=TR, onsets=ONSETS, timing=fields)
    cfg = _cfg(tmp_path)
    with pytest.raises(DataError, match=msg) as e:
        discover_runs(cfg.data_root, cfg.data)
    assert "desc-preproc_bold.json" in str(e.value)


def test_simulator_writes_its_timing_and_the_loader_reads_it_back(tmp_path):
    cfg = load_config("smoke", {"run": {"run_dir": str(tmp_path / "run")},
                                "data": {"root": str(tmp_path / "ds")}})
    simulate_dataset(cfg, progress=False)
    tr = cfg.sim.tr
    for source in ("fmriprep", "raw"):
        runs = discover_runs(cfg.data_root, load_config("smoke", {
            "run": {"run_dir": str(tmp_path / "run")},
            "data": {"root": str(tmp_path / "ds"), "source": source}}).data)
        assert {round(r.t0_s, 6) for r in runs} == {SIM_T0_FRACTION * tr}
        assert all(("StartTime" if source == "fmriprep" else "SliceTiming") in r.timing_source
                   for r in runs)
    side = json.loads(next((cfg.data_root / "derivatives/fmriprep").rglob(
        "*desc-preproc_bold.json")).read_text())
    assert side["SliceTimingCorrected"] is True and side["StartTime"] == SIM_T0_FRACTION * tr
    # and the lag profile's times are the simulator's acquisition times after each onset
    tc = build_trial_cache(cfg, progress=False)
    prof = lag_profile(cfg, tc, str(tc.trials["subject"].iloc[0]), lags_s=(0, 4))
    assert sorted(prof["time_s"].unique()) == [SIM_T0_FRACTION * tr, 4.0 + SIM_T0_FRACTION * tr]


def test_volume_reference_without_sidecars_is_the_documented_default(tmp_path):
    bold = tmp_path / "sub-01_task-action_run-01_bold.nii.gz"
    t0, rule = volume_reference(bold, tmp_path, 2.0)
    assert t0 == 1.0 and "documented default" in rule
