"""Loader behaviour on real-shaped inputs: TRs and sidecars, block onsets at odd TRs, brain
masks of raw data, truncated clips, derivatives folders, grid errors, ``llm4brain describe``.

Every fixture is a few tiny NIfTI files (``make_tiny_bids``) in ``tmp_path``.
"""
from __future__ import annotations

import json
import logging
import shutil

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

    # volume i at i * 1.5 s (t0 0), lag 4: 7 / 1.5 = 4.67 -> 5; 14 / 1.5 = 9.33 -> 10;
    # 6 / 1.5 = 4 exactly -> 4
    np.testing.assert_array_equal(block_start_index([3.0, 10.0, 2.0, 17.5], 4.0, 1.5, 0.0),
                                  [5, 10, 4, 15])
    assert block_start_index([0.1 + 0.2], 2.7, 1.5, 0.0)[0] == 2   # 3.0000000000000004 / 1.5
    # volumes at the middle of each TR (t0 0.75): 7 s -> (7 - 0.75) / 1.5 = 4.17 -> 5 (at
    # 8.25 s); 6 s -> 3.5 -> 4 (at 6.75 s, not 6 s); 14 s -> 8.83 -> 9 (at 14.25 s)
    np.testing.assert_array_equal(block_start_index([3.0, 2.0, 10.0], 4.0, 1.5, 0.75),
                                  [5, 4, 9])
    # the first volume's time is never before onset + lag, the previous one's always is
    on = np.random.default_rng(0).uniform(0, 300, 500)
    for tr, t0 in [(2.0, 1.0), (1.5, 0.3), (0.8, 0.0)]:
        i = block_start_index(on, 4.0, tr, t0)
        assert np.all(t0 + i * tr >= on + 4.0 - 1e-6) and np.all(t0 + (i - 1) * tr < on + 4.0)


def test_blocks_at_tr_1p5_start_at_or_after_onset_plus_lag(make_tiny_bids, tmp_path):
    # no slice timing in the sidecars: volume i at 0.75 + 1.5 i s. Planted at volume 10
    # (15.75 s); trial at 10 s + lag 4 s = 14 s -> first volume 9 (14.25 s), the peak second
    make_tiny_bids(tmp_path / "ds", n_subjects=1, tr=1.5, onsets=(3.0, 10.0, 17.5, 25.0),
                   plant={"voxel": (2, 3, 2), "volume": 10, "amplitude": 8.0}, noise=0.05)
    cfg = _cfg(tmp_path, lag_s=4.0, block_trs=3)
    tc = build_trial_cache(cfg, progress=False)
    t = tc.trials
    r1 = t[(t.subject == "01") & (t.run == 1)]
    assert list(r1.vol_index) == [5, 9, 14, 19]
    crop = [a for a, _ in tc.meta["crop"]]
    vox = tuple(np.array((2, 3, 2)) - crop)
    k = int(r1.index[r1.onset == 10.0][0])
    assert int(np.argmax(np.asarray(tc.blocks[k])[(slice(None),) + vox])) == 1


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


# --------------------------------------------------------------------------- 9. HAD quirks
def _events(cfg, sub, run):
    return _raw(cfg, sub, run, "events.tsv")


def test_onset_offset_auto_is_decided_per_run_and_logged(make_tiny_bids, tmp_path, caplog, capsys):
    # run 1 counts onsets from the end of HAD's 12 s lead-in (first onset 0 s), run 2 from
    # the first volume (first onset 12 s): auto adds 12 s to run 1 only
    make_tiny_bids(tmp_path / "ds", n_subjects=1, onsets=(0.0, 8.0, 16.0, 24.0),
                   write_clips=False)
    cfg = _cfg(tmp_path, onset_offset="auto")
    ev2 = _events(cfg, "01", 2)
    df = pd.read_csv(ev2, sep="\t")
    df["onset"] += 12.0
    df.to_csv(ev2, sep="\t", index=False)
    caplog.set_level(logging.INFO, logger="llm4brain.data")
    tc = build_trial_cache(cfg, progress=False, check_stimuli=False)
    t = tc.trials
    assert list(t[t.run == 1].onset) == [12.0, 20.0, 28.0, 36.0]
    assert list(t[t.run == 2].onset) == [12.0, 20.0, 28.0, 36.0]
    out = _messages(caplog, capsys)
    assert f"run {bids_name('01', 1, 'events.tsv')}: first onset 0.0 s -> offset +12 s" in out
    assert f"run {bids_name('01', 2, 'events.tsv')}: first onset 12.0 s -> offset +0 s" in out
    # a number overrides auto: every run as written plus that number
    tc0 = build_trial_cache(_cfg(tmp_path, onset_offset=0.0), progress=False,
                            check_stimuli=False)
    assert list(tc0.trials[tc0.trials.run == 1].onset) == [0.0, 8.0, 16.0, 24.0]
    assert list(tc0.trials[tc0.trials.run == 2].onset) == [12.0, 20.0, 28.0, 36.0]
    # a first onset that is neither about 0 nor about 12 s: auto refuses, naming the file
    df["onset"] -= 7.0
    df.to_csv(ev2, sep="\t", index=False)
    with pytest.raises(DataError, match=r"run-02_events.tsv: first onset 5.0 s is neither about "
                                        r"0 s nor about 12 s.*Set data.onset_offset"):
        build_trial_cache(cfg, progress=False, check_stimuli=False, rebuild=True)
    from llm4brain.config import ConfigError
    with pytest.raises(ConfigError, match=r"data.onset_offset must be a number of seconds or "
                                          r"'auto', got 'twelve'"):
        _cfg(tmp_path, onset_offset="twelve")
    assert load_config("had").data.onset_offset == "auto"
    assert load_config("smoke").data.onset_offset == 0.0         # the simulation has no lead-in


def test_class_is_trial_type_and_unknown_columns_are_ignored(make_tiny_bids, tmp_path):
    # trial_type 1 is Zumba_dancing: class ids follow trial_type, not the alphabet, and the
    # underscore in the class name survives
    make_tiny_bids(tmp_path / "ds", classes=("Zumba_dancing", "Archery"), write_clips=False)
    cfg = _cfg(tmp_path)
    for sub in ("01", "02"):
        for run in (1, 2):
            p = _events(cfg, sub, run)
            df = pd.read_csv(p, sep="\t")
            df["TODO -- fill in rows and add more tab-separated columns if desired"] = "x"
            df.to_csv(p, sep="\t", index=False)
    tc = build_trial_cache(cfg, progress=False, check_stimuli=False)
    t = tc.trials
    assert tc.meta["classes"] == ["Zumba_dancing", "Archery"]
    assert set(zip(t.trial_type, t.class_name, t.class_id)) == {(1, "Zumba_dancing", 0),
                                                                (2, "Archery", 1)}
    assert not any(c.startswith("TODO") for c in t.columns)
    # a trial_type that names two folders is refused, naming the file
    p = _events(cfg, "02", 1)
    df = pd.read_csv(p, sep="\t")
    df.loc[1, "trial_type"] = 1
    df.to_csv(p, sep="\t", index=False)
    with pytest.raises(DataError, match=r"sub-02.*run-01_events.tsv: trial_type 1 is shown with "
                                        r"clips of folders \['Archery', 'Zumba_dancing'\]"):
        build_trial_cache(cfg, progress=False, check_stimuli=False, rebuild=True)


def test_invalid_videos_drop_their_trials_with_a_count_per_subject(make_tiny_bids, tmp_path, caplog, capsys):
    make_tiny_bids(tmp_path / "ds", write_clips=False)
    names = ["Ball_bouncing/v_Ball_bouncing_id_s01r1t0_label_1.mp4",   # stim_file
             "v_Car_driving_id_s02r2t1_label_2.mp4",                   # file name
             "v_Ball_bouncing_id_s01r2t2_label_1",                     # without extension
             "v_not_in_the_dataset.mp4"]
    cfg = _cfg(tmp_path, invalid_videos=names, work_dir=str(tmp_path / "work"))
    before = _events(cfg, "01", 1).read_text()
    caplog.set_level(logging.INFO, logger="llm4brain.data")
    tc = build_trial_cache(cfg, progress=False, check_stimuli=False)
    assert tc.n_trials == 16 - 3
    assert tc.trials.groupby("subject").size().to_dict() == {"01": 6, "02": 7}
    assert not set(tc.trials.stim_file) & {names[0], "Car_driving/" + names[1]}
    out = _messages(caplog, capsys)
    assert "trials dropped per subject: sub-01: 2, sub-02: 1" in out
    assert "1 of 4 name(s) match no clip" in out and "v_not_in_the_dataset.mp4" in out
    assert _events(cfg, "01", 1).read_text() == before              # the dataset is untouched
    assert list((tmp_path / "work").glob("events-invalid-*/sub-01/ses-action01/func/*run-01*"))
    # the same names from a text file (comments, blank lines), and in the stimulus table
    lst = tmp_path / "invalid.txt"
    lst.write_text("# HAD invalid videos\n" + "\n".join(names[:3]) + "\n\n")
    cfg2 = _cfg(tmp_path, invalid_videos=str(lst), work_dir=str(tmp_path / "work"))
    assert build_trial_cache(cfg2, progress=False, check_stimuli=False).n_trials == 13
    from llm4brain.data import load_stimuli
    assert names[0] not in set(load_stimuli(cfg2).stim_file)
    assert len(load_stimuli(cfg2)) == 16 - 3
    # a table: its clip column; a table of counts per class is refused, naming the file
    tab = tmp_path / "invalid.csv"
    pd.DataFrame(dict(subject=["01", "02"], video_name=[names[0], names[1]])).to_csv(tab,
                                                                                   index=False)
    cfg3 = _cfg(tmp_path, invalid_videos=str(tab), work_dir=str(tmp_path / "work"))
    assert build_trial_cache(cfg3, progress=False, check_stimuli=False).n_trials == 14
    pd.DataFrame(dict(class_name=["Ball_bouncing"], num=[3])).to_csv(tab, index=False)
    with pytest.raises(DataError, match=r"invalid.csv \(data.invalid_videos\) has columns "
                                        r"\['class_name', 'num'\] but none of"):
        discover_runs(cfg.data_root, cfg3.data)
    with pytest.raises(DataError, match=r"data.invalid_videos: file 'nope.txt' not found"):
        discover_runs(cfg.data_root, _cfg(tmp_path, invalid_videos="nope.txt").data)


def test_run_entities_with_and_without_zero_padding(make_tiny_bids, tmp_path):
    make_tiny_bids(tmp_path / "ds", n_subjects=1, n_runs=10, n_vols=30, write_clips=False)
    root = tmp_path / "ds"
    # odd runs written run-1, run-3, ... (ciftify style); run 4: only the BOLD and its
    # derivatives renamed, its events stay run-04
    for f in sorted(root.rglob("*_run-0*")):
        run = int(f.name.split("_run-")[1][:2])
        if run % 2 or (run == 4 and "events" not in f.name):
            f.rename(f.with_name(f.name.replace(f"_run-{run:02d}", f"_run-{run}")))
    cfg = _cfg(tmp_path)
    runs = discover_runs(root, cfg.data)
    assert [r.run for r in runs] == list(range(1, 11))
    assert runs[0].bold.name.startswith("sub-01_ses-action01_task-action_run-1_")
    assert runs[3].events.name.endswith("run-04_events.tsv") and "_run-4_" in runs[3].bold.name
    assert all(r.events.is_file() and r.mask is not None and r.confounds is not None
               for r in runs)
    assert [("_run-1_" in r.mask.name) for r in runs[:2]] == [True, False]
    tc = build_trial_cache(cfg, progress=False, check_stimuli=False)
    assert list(tc.trials.drop_duplicates("run").run) == list(range(1, 11))
    # run-1 and run-01 of the same subject: refused
    f = runs[0].bold
    shutil.copy(f, f.with_name(f.name.replace("_run-1_", "_run-01_")))
    with pytest.raises(DataError, match=r"are both run 1 of sub-01.*keep one of them"):
        discover_runs(root, cfg.data)


# --------------------------------------------------------------------------- 10. check-data
def _profile(tmp_path, **data):
    prof = tmp_path / "mine.yaml"
    extra = "".join(f"  {k}: {v}\n" for k, v in data.items())
    prof.write_text(f"inherit: smoke\nrun:\n  run_dir: {tmp_path / 'run'}\n"
                    f"data:\n  root: {tmp_path / 'ds'}\n  block_trs: 2\n{extra}")
    return str(prof)


def test_check_data_on_a_good_dataset_exits_0_with_every_row(make_tiny_bids, tmp_path, capsys):
    make_tiny_bids(tmp_path / "ds", onsets=(0.0, 8.0, 16.0, 24.0))
    prof = _profile(tmp_path, onset_offset="auto", work_dir=str(tmp_path / "work"),
                    invalid_videos='["v_Car_driving_id_s02r1t1_label_2", "v_typo"]')
    assert main(["check-data", "--profile", prof]) == 0
    out = capsys.readouterr().out
    assert "WARN   invalid videos 2 name(s)" in out
    assert "trials dropped: sub-01: 0, sub-02: 1; 1 name(s) match no clip: ['v_typo']" in out
    prof = _profile(tmp_path, onset_offset="auto")
    assert main(["check-data", "--profile", prof]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1].split() == ["STATUS", "CHECK", "ITEM", "DETAIL"]
    assert lines[-1] == f"{len(lines) - 3} OK, 0 WARN, 0 ERROR"
    for check, item in [("runs", str(tmp_path / "ds")), ("files", "sub-01"), ("files", "sub-02"),
                        ("tr", "all runs"), ("run", "sub-02 run-02"), ("grid", "all runs"),
                        ("stimuli", "all clips"), ("disk", "trial cache")]:
        assert any(ln.split()[:2] == ["OK", check] and f" {item} " in ln for ln in lines), \
            (check, item)
    assert "onsets +12 s (auto: first onset 0.0 s is about 0 s)" in out
    assert "+12 s on 4 run(s)" in out and "data.onset_offset: auto" in out
    assert "16 clip(s) decodable, not truncated" in out
    # 16 trials x 2 volumes x (4 x 5 x 3 = 60) voxels x 4 B + 160 volumes x 60 x 4 B
    assert "16 trial(s) x 2 volume(s) x 60 voxels of the brain masks' bounding box (4, 5, 3)" in out
    assert f"= {16 * 2 * 60 * 4 / 1024:.1f} KiB, plus 160 volumes = {160 * 60 * 4 / 1024:.1f} KiB" \
        in out
    assert main(["describe", "--profile", prof, "--strict"]) == 0      # describe still works


def test_check_data_names_a_missing_clip_and_an_onset_past_the_run(make_tiny_bids, tmp_path, capsys):
    make_tiny_bids(tmp_path / "ds")
    cfg = _cfg(tmp_path)
    gone = sorted((cfg.data_root / "stimuli").rglob("*.mp4"))[0]
    gone.unlink()
    ev = _events(cfg, "02", 2)
    df = pd.read_csv(ev, sep="\t")
    df.loc[3, "onset"] = 79.0                                     # the run lasts 80 s
    df.to_csv(ev, sep="\t", index=False)
    assert main(["check-data", "--profile", _profile(tmp_path)]) == 1
    out = capsys.readouterr().out
    err_lines = [ln for ln in out.splitlines() if ln.startswith("ERROR")]
    assert len(err_lines) == 3 and out.splitlines()[-1].endswith("3 ERROR")
    run_row = next(ln for ln in err_lines if "sub-02 run-02" in ln)
    assert str(ev) in run_row and "onset 79.0 s ends past the end of the run" in run_row
    clip_row = next(ln for ln in err_lines if gone.name in ln and "not found" in ln)
    assert str(gone) in clip_row
    assert any("1 of 16 clip(s) unusable" in ln for ln in err_lines)
    # an undecodable clip is found without building anything; --no-decode checks presence
    gone.write_bytes(b"not an mp4")
    assert main(["check-data", "--profile", _profile(tmp_path)]) == 1
    assert gone.name in [ln for ln in capsys.readouterr().out.splitlines()
                         if ln.startswith("ERROR") and "stimuli" in ln][0]
    df.loc[3, "onset"] = 28.0
    df.to_csv(ev, sep="\t", index=False)
    assert main(["check-data", "--profile", _profile(tmp_path), "--no-decode"]) == 0
    assert "present, declared durations cover the events (not decoded" in capsys.readouterr().out


# --------------------------------------------------------------------------- 11. resample_to
def _regrid(path, affine, shape, interpolation):
    from nilearn.image import resample_img

    img = nib.load(str(path))
    out = resample_img(img, target_affine=affine, target_shape=shape,
                       interpolation=interpolation, force_resample=True, copy_header=True)
    nib.save(nib.Nifti1Image(np.asarray(out.dataobj).astype(img.get_data_dtype()), affine,
                             img.header), str(path))


def test_subjects_on_different_grids_are_resampled_with_data_resample_to(make_tiny_bids, tmp_path, caplog,
                                                                         capsys):
    # sub-02 on a 2 mm grid nested in the 4 mm one (same origin): resampled back onto sub-01's
    # 4 mm grid it must give the blocks of an untouched copy of the same dataset
    for name in ("ds", "ref"):
        make_tiny_bids(tmp_path / name, write_clips=name == "ds", noise=1.0)
    fine = np.diag([2.0, 2.0, 2.0, 1.0])
    fine[:3, 3] = [-10.0, -12.0, -8.0]
    d = tmp_path / "ds/derivatives/fmriprep/sub-02/ses-action01/func"
    for f in sorted(d.glob("*.nii.gz")):
        _regrid(f, fine, (11, 13, 9), "nearest" if "mask" in f.name else "continuous")
    cfg = _cfg(tmp_path)
    with pytest.raises(DataError, match=r"sub-02.*different grid.*data.resample_to.*mni152_2.*"
                                        r"aligns grids, not anatomy"):
        build_trial_cache(cfg, progress=False, check_stimuli=False)
    assert main(["check-data", "--profile", _profile(tmp_path)]) == 1
    assert "data.resample_to" in [ln for ln in capsys.readouterr().out.splitlines()
                                  if ln.startswith("ERROR") and " grid " in ln][0]
    ref_nii = cfg.data_root / "derivatives/fmriprep/sub-01/ses-action01/func" / bids_name(
        "01", 1, "bold.nii.gz", space=SPACE, desc="preproc")
    caplog.set_level(logging.INFO, logger="llm4brain.data")
    cfg_r = _cfg(tmp_path, resample_to=str(ref_nii), work_dir=str(tmp_path / "work"))
    tc = build_trial_cache(cfg_r, progress=False, check_stimuli=False)
    assert "aligns voxel grids, not anatomy" in _messages(caplog, capsys)
    good = build_trial_cache(load_config("smoke", {
        "run": {"run_dir": str(tmp_path / "run_ref")},
        "data": {"root": str(tmp_path / "ref"), "block_trs": 2}}),
        progress=False, check_stimuli=False)
    assert tc.meta["full_shape"] == [6, 7, 5] and tc.meta["subject_mask_voxels"] == \
        good.meta["subject_mask_voxels"]
    np.testing.assert_allclose(np.asarray(tc.blocks), np.asarray(good.blocks), atol=1e-3)
    # the source files are untouched (links, resampled when read)
    assert nib.load(str(d / bids_name("02", 1, "bold.nii.gz", space=SPACE,
                                      desc="preproc"))).shape[:3] == (11, 13, 9)
    assert main(["check-data", "--profile",
                 _profile(tmp_path, resample_to=str(ref_nii), work_dir=str(tmp_path / "work"))]) == 0
    assert "2 grid(s) in the data, every run resampled onto" in capsys.readouterr().out
    d = describe_dataset(cfg.data_root, cfg_r.data)
    assert len(d["grids"]) == 2 and d["problems"] == [] and d["resample_to"] == str(ref_nii)
    # the MNI152 template (bundled with nilearn, offline), and a bad template name
    tc4 = build_trial_cache(_cfg(tmp_path, resample_to="mni152_4",
                                 work_dir=str(tmp_path / "work")),
                            progress=False, check_stimuli=False)
    assert tc4.meta["full_shape"] == [50, 59, 48] and tc4.n_trials == 16
    assert np.isfinite(np.asarray(tc4.blocks)).all()
    from llm4brain.config import ConfigError
    with pytest.raises(ConfigError, match=r"data.resample_to 'mni152_two'.*mni152_2"):
        _cfg(tmp_path, resample_to="mni152_two")
