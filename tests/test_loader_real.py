"""Loader behaviour on real-shaped inputs: TRs and sidecars, block onsets at odd TRs, brain
masks of raw data, truncated clips, derivatives folders, grid errors, ``llm4brain describe``.

Every fixture is a few tiny NIfTI files (``make_tiny_bids``) in ``tmp_path``.
"""
from __future__ import annotations

import json
import logging

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from llm4brain.cli import main
from llm4brain.config import load_config
from llm4brain.data import (DataError, build_frame_cache, build_trial_cache, describe_dataset,
                            discover_runs, read_frames, write_mp4)
from llm4brain.sim import SPACE, bids_name


def _cfg(tmp_path, **data):
    return load_config("smoke", {"run": {"run_dir": str(tmp_path / "run")},
                                 "data": {"root": str(tmp_path / "ds"), "block_trs": 2, **data}})


def _raw(cfg, sub, run, suffix="bold.nii.gz"):
    return cfg.data_root / f"sub-{sub}/ses-action01/func" / bids_name(sub, run, suffix)


def _edit_nifti(path, fn):
    img = nib.load(str(path))
    d = np.asarray(img.dataobj, dtype=np.float32).copy()
    fn(d)
    out = nib.Nifti1Image(d, img.affine)
    out.header.set_zooms(img.header.get_zooms())
    nib.save(out, str(path))


def _messages(caplog, capsys):
    return caplog.text + capsys.readouterr().err


# --------------------------------------------------------------------------- 1. mixed TRs
def test_mixed_trs_are_refused_naming_both_files(make_tiny_bids, tmp_path):
    make_tiny_bids(tmp_path / "ds", tr=(2.0, 1.5), sidecar="run", write_clips=False)
    cfg = _cfg(tmp_path)
    with pytest.raises(DataError) as e:
        build_trial_cache(cfg, progress=False, check_stimuli=False)
    msg = str(e.value)
    assert "sub-02" in msg and "TR 1.5 s" in msg and "sub-01" in msg and "TR 2 s" in msg
    assert "resample" in msg and "subjects=" in msg
    # one TR group at a time is accepted (the documented way out)
    tc = build_trial_cache(cfg, subjects=["02"], progress=False, check_stimuli=False)
    assert tc.meta["tr"] == 1.5


# --------------------------------------------------------------------------- 2. TR source
def test_derivative_tr_comes_from_the_raw_sidecar_not_the_header(make_tiny_bids, tmp_path):
    # fMRIPrep BOLD without its own JSON; the raw run's sidecar says 1.5, the header 1.0
    make_tiny_bids(tmp_path / "ds", tr=1.5, sidecar="run", header_tr=1.0, write_clips=False)
    runs = discover_runs(tmp_path / "ds", _cfg(tmp_path).data)
    assert {r.tr for r in runs} == {1.5}
    assert all(r.tr_source.endswith(bids_name(r.subject, r.run, "bold.json")) for r in runs)


def test_tr_from_header_is_a_warning_naming_the_file(make_tiny_bids, tmp_path, caplog, capsys):
    make_tiny_bids(tmp_path / "ds", n_subjects=1, n_runs=1, sidecar="none", header_tr=2.0,
                   write_clips=False)
    # a sidecar of another task must not be inherited
    (tmp_path / "ds" / "task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 3.0}))
    runs = discover_runs(tmp_path / "ds", _cfg(tmp_path).data)
    assert runs[0].tr == 2.0 and runs[0].tr_source == "NIfTI header"
    out = _messages(caplog, capsys)
    assert "WARNING" in out and runs[0].bold.name in out and "RepetitionTime" in out


def test_unset_header_tr_is_an_error_naming_the_file_and_fix(make_tiny_bids, tmp_path):
    make_tiny_bids(tmp_path / "ds", n_subjects=1, n_runs=1, sidecar="none", header_tr=1.0,
                   write_clips=False)
    with pytest.raises(DataError, match=r"no RepetitionTime for .*desc-preproc_bold.nii.gz.*"
                                        r"unknown units.*RepetitionTime.*sidecar"):
        discover_runs(tmp_path / "ds", _cfg(tmp_path).data)


# --------------------------------------------------------------------------- 3. block onsets
def test_block_start_is_the_first_volume_at_or_after_onset_plus_lag():
    from llm4brain.data._cache import block_start_index

    # TR 1.5, lag 4: 7 / 1.5 = 4.67 -> 5; 14 / 1.5 = 9.33 -> 10; 6 / 1.5 = 4 exactly -> 4
    np.testing.assert_array_equal(block_start_index([3.0, 10.0, 2.0, 17.5], 4.0, 1.5),
                                  [5, 10, 4, 15])
    assert block_start_index([0.1 + 0.2], 2.7, 1.5)[0] == 2        # 3.0000000000000004 / 1.5
    # simulated design (TR 2, even onsets, lag 4 s): identical to the former floor rule
    on = np.arange(0, 400, 2.0)
    np.testing.assert_array_equal(block_start_index(on, 4.0, 2.0),
                                  np.floor((on + 4.0) / 2.0 + 1e-6).astype(int))


def test_blocks_at_tr_1p5_start_at_or_after_onset_plus_lag(make_tiny_bids, tmp_path):
    # planted at volume 10 (15 s); trial at 10 s + lag 4 s = 14 s -> first volume 10 (not 9)
    make_tiny_bids(tmp_path / "ds", n_subjects=1, tr=1.5, onsets=(3.0, 10.0, 17.5, 25.0),
                   plant={"voxel": (2, 3, 2), "volume": 10, "amplitude": 8.0}, noise=0.05)
    cfg = _cfg(tmp_path, lag_s=4.0, block_trs=3)
    tc = build_trial_cache(cfg, progress=False)
    t = tc.trials
    r1 = t[(t.subject == "01") & (t.run == 1)]
    assert list(r1.vol_index) == [5, 10, 15, 20]
    crop = [a for a, _ in tc.meta["crop"]]
    vox = tuple(np.array((2, 3, 2)) - crop)
    k = int(r1.index[r1.onset == 10.0][0])
    assert int(np.argmax(np.asarray(tc.blocks[k])[(slice(None),) + vox])) == 0


# --------------------------------------------------------------------------- 4. truncated clips
def _noise_clip(path, n=96, fps=24, seed=0):
    fr = np.random.default_rng(seed).integers(0, 255, (n, 32, 32, 3)).astype(np.uint8)
    return write_mp4(fr, path, fps=fps)


def test_truncated_clip_is_reported_not_sampled_from_its_first_part(truncate_mp4, tmp_path):
    import decord

    good = _noise_clip(tmp_path / "ds" / "stimuli" / "A" / "good.mp4")
    cut = _noise_clip(tmp_path / "ds" / "stimuli" / "A" / "cut.mp4", seed=1)
    truncate_mp4(cut, 40)
    assert len(decord.VideoReader(str(cut), num_threads=1)) < 96      # decodes, but only part
    with pytest.raises(ValueError, match=r"cut.mp4: only \d+ of the 96 frames.*truncated"):
        read_frames(cut, 8, 32)
    cfg = _cfg(tmp_path)
    with pytest.raises(DataError, match=r"(?s)1 of 2 stimulus clip\(s\) cannot be used.*cut.mp4"
                                        r".*of the 96 frames.*on_bad='skip'"):
        build_frame_cache(cfg, ["A/good.mp4", "A/cut.mp4"], n_frames=4, size=32, progress=False)
    listing = list((cfg.run_dir / "cache").glob("bad_clips-*.tsv"))
    assert len(listing) == 1 and "cut.mp4" in listing[0].read_text()
    fc = build_frame_cache(cfg, ["A/good.mp4", "A/cut.mp4"], n_frames=4, size=32,
                           progress=False, on_bad="skip")
    assert fc.frames.shape == (1, 4, 32, 32, 3) and list(fc.bad.stim_file) == ["A/cut.mp4"]
    np.testing.assert_array_equal(fc.frames[0], read_frames(good, 4, 32))
    trials = pd.DataFrame(dict(stim_file=["A/good.mp4", "A/cut.mp4", "A/cut.mp4"]))
    assert list(fc.keep_trials(trials).stim_file) == ["A/good.mp4"]
    with pytest.raises(KeyError, match="left out"):
        fc.row("A/cut.mp4")


def test_clip_shorter_than_its_events_is_reported(tmp_path):
    _noise_clip(tmp_path / "ds" / "stimuli" / "A" / "short.mp4", n=24, fps=24)     # 1 s
    cfg = _cfg(tmp_path)
    stim = pd.DataFrame(dict(stim_file=["A/short.mp4"], duration=[2.0]))
    with pytest.raises(DataError, match=r"short.mp4.*last 1.00 s.*shown for 2 s"):
        build_frame_cache(cfg, stim, n_frames=4, size=32, progress=False)
    fc = build_frame_cache(cfg, stim.assign(duration=1.0), n_frames=4, size=32, progress=False)
    assert fc.frames.shape[0] == 1 and fc.bad.empty


# --------------------------------------------------------------------------- 5. raw masks
def test_raw_mask_is_the_intersection_over_all_runs(make_tiny_bids, tmp_path, caplog):
    make_tiny_bids(tmp_path / "ds", write_clips=False)
    cfg = _cfg(tmp_path, source="raw")
    # sub-01 run-02 lost voxel (2, 3, 2) (signal dropout): the first run alone would keep it
    _edit_nifti(_raw(cfg, "01", 2), lambda d: d.__setitem__((2, 3, 2), 0.0))
    caplog.set_level(logging.INFO, logger="llm4brain.data")
    tc = build_trial_cache(cfg, progress=False, check_stimuli=False)
    interior = 4 * 5 * 3
    assert tc.meta["subject_mask_voxels"] == {"01": interior - 1, "02": interior}
    assert "sub-01: intersection of the intensity masks of its 2 run(s)" in caplog.text
    crop = [a for a, _ in tc.meta["crop"]]
    vox = tuple(np.array((2, 3, 2)) - crop)
    s1 = np.flatnonzero((tc.trials.subject == "01").to_numpy())
    assert np.all(np.asarray(tc.blocks[s1])[(slice(None), slice(None)) + vox] == 0)


def test_raw_nan_in_background_voxels_does_not_stop_the_build(make_tiny_bids, tmp_path, caplog):
    make_tiny_bids(tmp_path / "ds", write_clips=False)
    cfg = _cfg(tmp_path, source="raw")
    # a NaN in the background of sub-01's first run
    _edit_nifti(_raw(cfg, "01", 1), lambda d: d.__setitem__((0, 0, 0, 3), np.nan))
    # sub-02 lacks voxel (2, 2, 2) (zero in run 1, NaN in run 2) that sub-01's mask has
    _edit_nifti(_raw(cfg, "02", 1), lambda d: d.__setitem__((2, 2, 2), 0.0))
    _edit_nifti(_raw(cfg, "02", 2), lambda d: d.__setitem__((2, 2, 2), np.nan))
    caplog.set_level(logging.INFO, logger="llm4brain.data")
    tc = build_trial_cache(cfg, progress=False, check_stimuli=False)
    assert np.isfinite(np.asarray(tc.blocks)).all()
    assert tc.meta["subject_mask_voxels"]["02"] == 4 * 5 * 3 - 1
    assert "NaN/inf values excluded" in caplog.text


def test_nan_inside_a_mask_file_names_the_file_count_and_a_real_fix(make_tiny_bids, tmp_path):
    make_tiny_bids(tmp_path / "ds", write_clips=False)
    cfg = _cfg(tmp_path)
    p = cfg.data_root / "derivatives/fmriprep/sub-01/ses-action01/func" / bids_name(
        "01", 2, "bold.nii.gz", space=SPACE, desc="preproc")
    _edit_nifti(p, lambda d: d.__setitem__((2, 2, 2, 5), np.nan))
    with pytest.raises(DataError) as e:
        build_trial_cache(cfg, progress=False, check_stimuli=False)
    msg = str(e.value)
    assert p.name in msg and "non-finite values in 1 voxel" in msg and "(2, 2, 2)" in msg
    assert "desc-brain_mask" in msg and "d[~np.isfinite(d)] = 0" in msg


# --------------------------------------------------------------------------- 6. grid advice
def test_grid_error_gives_advice_that_works(make_tiny_bids, tmp_path):
    make_tiny_bids(tmp_path / "ds", write_clips=False)
    cfg = _cfg(tmp_path)
    p = cfg.data_root / "derivatives/fmriprep/sub-02/ses-action01/func" / bids_name(
        "02", 1, "bold.nii.gz", space=SPACE, desc="preproc")
    img = nib.load(str(p))
    aff = img.affine.copy()
    aff[:3, :3] *= 0.5                                   # 2 mm voxels instead of 4 mm
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), aff), str(p))
    with pytest.raises(DataError) as e:
        build_trial_cache(cfg, progress=False, check_stimuli=False)
    msg = str(e.value)
    assert "sub-02" in msg and "different grid" in msg
    assert "nvl" not in msg and "resample_to_img" in msg
    # describe lists both grids and the same problem (plus the mask no longer on its BOLD)
    d = describe_dataset(cfg.data_root, cfg.data)
    assert [(g["voxel_size_mm"], g["n_runs"], g["subjects"]) for g in d["grids"]] == \
        [([4.0, 4.0, 4.0], 3, ["01", "02"]), ([2.0, 2.0, 2.0], 1, ["02"])]
    assert any("different grid" in m and "resample_to_img" in m for m in d["problems"])
    assert any(m.startswith("brain mask") and "sub-02" in m for m in d["problems"])


# --------------------------------------------------------------------------- 7. derivatives
def test_derivatives_folder_is_a_setting(make_tiny_bids, tmp_path):
    # nilearn's fake BIDS generator writes the derivatives directly under derivatives/
    make_tiny_bids(tmp_path / "ds", derivatives="derivatives", write_clips=False)
    with pytest.raises(DataError, match=r"derivatives/fmriprep \(data.derivatives: "
                                        r"'derivatives/fmriprep'\) not found.*derivatives holds: "
                                        r"sub-01/, sub-02/.*data.derivatives"):
        discover_runs(tmp_path / "ds", _cfg(tmp_path).data)
    cfg = _cfg(tmp_path, derivatives="derivatives")
    runs = discover_runs(cfg.data_root, cfg.data)
    assert len(runs) == 4 and all(r.mask is not None and r.confounds is not None for r in runs)
    tc = build_trial_cache(cfg, progress=False, check_stimuli=False)
    assert tc.n_trials == 16


# --------------------------------------------------------------------------- 8. describe
def test_describe_reports_every_tr_and_grid_and_lists_problems(make_tiny_bids, tmp_path, capsys):
    make_tiny_bids(tmp_path / "ds", n_subjects=3, tr=(2.0, 2.0, 1.5), sidecar="run")
    cfg = _cfg(tmp_path)
    raw = cfg.data_root / "sub-03/ses-action01/func"
    (raw / bids_name("03", 2, "bold.json")).unlink()            # TR from the header (1.5)
    ev = raw / bids_name("03", 1, "events.tsv")
    df = pd.read_csv(ev, sep="\t")
    df.loc[3, "onset"] = 59.0                                   # past the 60 s run
    df.to_csv(ev, sep="\t", index=False)
    d = describe_dataset(cfg.data_root, cfg.data)
    assert d["tr"] is None
    assert [(t["tr"], t["n_runs"], t["subjects"]) for t in d["trs"]] == \
        [(1.5, 2, ["03"]), (2.0, 4, ["01", "02"])]
    assert d["grids"] == [dict(shape=[6, 7, 5], voxel_size_mm=[4.0, 4.0, 4.0], n_runs=6,
                               n_vols=[40], subjects=["01", "02", "03"])]
    probs = "\n".join(d["problems"])
    assert len(d["problems"]) == 3
    assert "sub-03" in probs and "TR 1.5 s" in probs and "TR 2 s" in probs       # mixed TRs
    assert "NIfTI header" in probs and "run-02" in probs                          # no sidecar
    assert "past the end of the run" in probs and "run-01_events.tsv" in probs
    capsys.readouterr()
    # the CLI: root and data settings from a profile
    prof = tmp_path / "mine.yaml"
    prof.write_text(f"inherit: smoke\nrun:\n  run_dir: {tmp_path / 'run'}\n"
                    f"data:\n  root: {tmp_path / 'ds'}\n  block_trs: 2\n")
    assert main(["describe", "--profile", str(prof), "--compact"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["trs"][0]["tr"] == 1.5 and "3 problem(s)" in out.err
    assert main(["describe", "--profile", str(prof), "--strict"]) == 3


def test_describe_on_a_clean_dataset_has_no_problems(make_tiny_bids, tmp_path, capsys):
    make_tiny_bids(tmp_path / "ds")
    d = describe_dataset(tmp_path / "ds")
    assert d["problems"] == [] and d["tr"] == 2.0 and d["trs"][0]["n_runs"] == 4
    assert main(["describe", str(tmp_path / "ds"), "--strict"]) == 0
