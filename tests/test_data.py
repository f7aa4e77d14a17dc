"""Loaders, caches, splits and bad-input errors on tiny hand-made and simulated datasets."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from llm4brain.config import ConfigError, load_config
from llm4brain.data import (DataError, build_frame_cache, build_trial_cache, describe_dataset,
                            discover_runs, make_splits, read_events, read_frames,
                            write_mp4)
from llm4brain.sim import SPACE, bids_name


def _cfg(tmp_path, **data):
    return load_config("smoke", {"run": {"run_dir": str(tmp_path / "run")},
                                 "data": {"root": str(tmp_path / "ds"), "block_trs": 2, **data}})


@pytest.fixture
def tiny(make_tiny_bids, tmp_path):
    make_tiny_bids(tmp_path / "ds", plant={"voxel": (2, 3, 2), "volume": 10, "amplitude": 8.0},
                   noise=0.05)
    return tmp_path


# --------------------------------------------------------------------------- reading back
def test_loader_reads_back_what_was_written(tiny):
    cfg = _cfg(tiny)
    runs = discover_runs(cfg.data_root, cfg.data)
    assert [(r.subject, r.run) for r in runs] == [("01", 1), ("01", 2), ("02", 1), ("02", 2)]
    assert all(r.tr == 2.0 for r in runs)
    tc = build_trial_cache(cfg, progress=False)
    assert tc.blocks.shape == (16, 2, 4, 5, 3)  # 2 subj x 2 runs x 4 trials; bbox of the mask
    assert list(tc.trials.onset[:4]) == [4.0, 12.0, 20.0, 28.0]
    assert set(tc.trials.class_id) == {0, 1}
    assert (tc.trials.class_name[tc.trials.class_id == 0] == "Ball_bouncing").all()
    d = describe_dataset(cfg.data_root)
    assert d["subjects"] == ["01", "02"] and d["tr"] == 2.0
    assert d["trials_per_subject"] == {"01": 8, "02": 8} and d["volume_shape"] == [6, 7, 5, 40]


def test_planted_response_found_at_right_lag(tiny):
    # planted at volume 10 = 20 s; trial onset 12 s + lag 4 s -> block starts at volume 8
    cfg = _cfg(tiny, lag_s=4.0, block_trs=3)
    tc = build_trial_cache(cfg, progress=False)
    crop = [a for a, _ in tc.meta["crop"]]
    vox = tuple(np.array((2, 3, 2)) - crop)
    t = tc.trials
    k = int(np.flatnonzero(((t.subject == "01") & (t.run == 1) & (t.onset == 12.0)).to_numpy())[0])
    b = np.asarray(tc.blocks[k])
    assert np.argmax(b[:, vox[0], vox[1], vox[2]]) == 2          # volume 8 + 2 = 10
    assert b[2][vox] > 4.0                                      # z-scored spike
    assert b[2][vox] > 4 * np.abs(b[2][tc.mask]).mean()          # stands out of the volume
    # the next trial (onset 20 s) starts at volume 12: the spike is not in its block
    assert np.asarray(tc.blocks[k + 1])[:, vox[0], vox[1], vox[2]].max() < 4.0
    # the previous trial (onset 4 s) covers volumes 4-6: not there either
    assert np.asarray(tc.blocks[k - 1])[:, vox[0], vox[1], vox[2]].max() < 4.0


def test_cache_rebuilds_when_a_setting_changes(tiny):
    cfg = _cfg(tiny)
    a = build_trial_cache(cfg, progress=False)
    mtime = (a.path / "blocks.f32").stat().st_mtime_ns
    again = build_trial_cache(cfg, progress=False)
    assert again.path == a.path and (a.path / "blocks.f32").stat().st_mtime_ns == mtime
    b = build_trial_cache(_cfg(tiny, lag_s=6.0), progress=False)
    assert b.path != a.path
    assert not np.allclose(np.asarray(a.blocks), np.asarray(b.blocks))
    c = build_trial_cache(_cfg(tiny, confounds=["trans_x"]), progress=False)
    assert c.path not in (a.path, b.path)


def test_frames_match_what_was_written(tmp_path, rng):
    frames = rng.integers(0, 255, size=(8, 32, 32, 3)).astype(np.uint8)
    frames = np.repeat(np.repeat(frames[:, ::8, ::8], 8, 1), 8, 2)  # blocky: survives x264
    p = write_mp4(frames, tmp_path / "a" / "clip.mp4", fps=4)
    back = read_frames(p, 8, 32)
    assert back.shape == (8, 32, 32, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(float) - frames).mean() < 12


def test_frame_cache_reads_clips(tiny):
    cfg = _cfg(tiny)
    tc = build_trial_cache(cfg, progress=False)
    fc = build_frame_cache(cfg, tc.trials.stim_file.unique()[:3], n_frames=4, size=32,
                           progress=False)
    assert fc.frames.shape == (3, 4, 32, 32, 3)
    first = read_frames(cfg.data_root / "stimuli" / fc.index.stim_file[0], 4, 32)
    np.testing.assert_array_equal(fc.frames[0], first)


def test_splits_never_mix_subjects(tiny):
    cfg = _cfg(tiny, target_subjects=["02"])
    tc = build_trial_cache(cfg, progress=False)
    sp = make_splits(tc.trials, cfg)
    subj = tc.trials.subject.to_numpy()
    assert set(subj[sp.train_idx]) | set(subj[sp.val_idx]) == {"01"}
    assert set(subj[sp.adapt_idx]) | set(subj[sp.eval_idx]) == {"02"}
    allidx = np.concatenate([sp.train_idx, sp.val_idx, sp.adapt_idx, sp.eval_idx])
    assert len(np.unique(allidx)) == len(allidx) == tc.n_trials
    runs = tc.trials.run.to_numpy()
    assert not set(runs[sp.adapt_idx]) & set(runs[sp.eval_idx])   # split by run
    saved = json.loads((cfg.run_dir / "splits.json").read_text())
    assert saved["target_subjects"] == ["02"]


def test_real_had_events_row_is_parsed(tmp_path):
    p = tmp_path / "sub-01_ses-action01_task-action_run-01_events.tsv"
    p.write_text("onset\tduration\ttrial_type\tresponse\tresponse_time\tstim_file\n"
                 "0.0\t2.0\t1\tn/a\tn/a\tDrum_corps/v_Drum_corps_id_0Qo8FzNJ460_start_28.0_label_1.mp4\n"
                 "4.0\t2.0\t97\t1\t0.83\tSkiing/v_Skiing_id_abc_start_3.0_label_97.mp4\n")
    ev = read_events(p, onset_offset=12.0, n_vols=156, tr=2.0)
    assert list(ev.onset) == [12.0, 16.0]
    assert list(ev.trial_type) == [1, 97]
    assert ev.stim_file[0].startswith("Drum_corps/") and pd.isna(ev.response[0])


# --------------------------------------------------------------------------- bad input
def test_missing_stim_file_is_named(tiny):
    cfg = _cfg(tiny)
    victim = next((cfg.data_root / "stimuli").rglob("*.mp4"))
    victim.unlink()
    with pytest.raises(DataError, match=r"stim file .*not found.*stimuli"):
        build_trial_cache(cfg, progress=False)


def test_events_past_run_end(tiny):
    cfg = _cfg(tiny)
    ev = cfg.data_root / "sub-01/ses-action01/func" / bids_name("01", 1, "events.tsv")
    df = pd.read_csv(ev, sep="\t")
    df.loc[3, "onset"] = 79.0
    df.to_csv(ev, sep="\t", index=False)
    with pytest.raises(DataError, match=r"events.tsv.*past the end of the run.*onset_offset"):
        build_trial_cache(cfg, progress=False)


def _fp(cfg, sub, run, suffix, **ent):
    return cfg.data_root / "derivatives/fmriprep" / f"sub-{sub}/ses-action01/func" / bids_name(
        sub, run, suffix, **ent)


def test_nan_voxels(tiny):
    cfg = _cfg(tiny)
    p = _fp(cfg, "01", 2, "bold.nii.gz", space=SPACE, desc="preproc")
    img = nib.load(str(p))
    d = img.get_fdata().astype(np.float32)
    d[2, 2, 2, 5] = np.nan
    nib.save(nib.Nifti1Image(d, img.affine), str(p))
    with pytest.raises(DataError, match=r"run-02.*non-finite values in 1 voxel"):
        build_trial_cache(cfg, progress=False)


def test_bold_mask_shape_mismatch(tiny):
    cfg = _cfg(tiny)
    m = _fp(cfg, "02", 1, "mask.nii.gz", space=SPACE, desc="brain")
    nib.save(nib.Nifti1Image(np.ones((5, 5, 5), np.uint8), np.diag([4.0, 4, 4, 1])), str(m))
    with pytest.raises(DataError, match=r"brain mask .*sub-02.* does not match BOLD"):
        build_trial_cache(cfg, progress=False)


def test_bold_affine_mismatch(tiny):
    cfg = _cfg(tiny)
    p = _fp(cfg, "02", 2, "bold.nii.gz", space=SPACE, desc="preproc")
    img = nib.load(str(p))
    aff = img.affine.copy()
    aff[0, 3] += 7.0
    nib.save(nib.Nifti1Image(img.get_fdata().astype(np.float32), aff), str(p))
    with pytest.raises(DataError, match=r"sub-02.*run-02.*different grid"):
        build_trial_cache(cfg, progress=False)


def test_unreadable_nifti(tiny):
    cfg = _cfg(tiny)
    p = _fp(cfg, "01", 1, "bold.nii.gz", space=SPACE, desc="preproc")
    p.write_bytes(b"this is not a nifti file")
    with pytest.raises(DataError, match=r"sub-01.*run-01.*(not a readable NIfTI|cannot read)"):
        build_trial_cache(cfg, progress=False)


def test_undecodable_video(tmp_path):
    p = tmp_path / "Ball/v_bad.mp4"
    p.parent.mkdir()
    p.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises((ValueError, RuntimeError), match=r"v_bad.mp4"):
        read_frames(p, 4, 32)


def test_unknown_config_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("inherit: smoke\ndata:\n  lag_sec: 4\n")
    with pytest.raises(ConfigError, match=r"unknown key 'data.lag_sec'.*lag_s"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"'data.block_trs' must be an integer"):
        load_config("smoke", {"data": {"block_trs": "three"}})


def test_missing_root_names_the_setting(tmp_path):
    cfg = _cfg(tmp_path)
    with pytest.raises(DataError, match=r"does not exist: set data.root"):
        build_trial_cache(cfg, progress=False)


def test_urgen_style_stimulus_mapping(tiny):
    """Events without stim_file (Urgen) are completed from data.stimuli_map by trial_type."""
    root = tiny / "ds"
    for ev in root.glob("sub-*/ses-action01/func/*_events.tsv"):
        df = pd.read_csv(ev, sep="\t")
        df.drop(columns="stim_file").to_csv(ev, sep="\t", index=False)
    clips = sorted(p.relative_to(root / "stimuli") for p in (root / "stimuli").rglob("*.mp4"))
    mp = tiny / "stimuli_map.tsv"
    pd.DataFrame(dict(trial_type=[1, 2], stim_file=[str(clips[0]), str(clips[-1])],
                      class_name=["grasp", "wave"])).to_csv(mp, sep="\t", index=False)
    with pytest.raises(DataError, match="data.stimuli_map"):
        build_trial_cache(_cfg(tiny), progress=False)
    tc = build_trial_cache(_cfg(tiny, stimuli_map=str(mp)), progress=False)
    assert set(tc.trials.class_name) == {"grasp", "wave"}
    assert (tc.trials.stim_file[tc.trials.trial_type == 1] == str(clips[0])).all()
    pd.DataFrame(dict(trial_type=[1], stim_file=[str(clips[0])])).to_csv(mp, sep="\t", index=False)
    with pytest.raises(DataError, match=r"trial_type\(s\) \['2'\] are not in data.stimuli_map"):
        build_trial_cache(_cfg(tiny, stimuli_map=str(mp), lag_s=2.0), progress=False)


def test_run_and_figures_dirs_expand_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM4BRAIN_HOME", str(tmp_path))
    prof = tmp_path / "mine.yaml"
    prof.write_text("inherit: smoke\nrun:\n  run_dir: runs/{profile}\n"
                    "  figures_dir: '{run_dir}/figs'\n")
    cfg = load_config(prof)
    assert cfg.run_dir == tmp_path / "runs" / "mine"
    assert cfg.figures_dir == tmp_path / "runs" / "mine" / "figs"
    cfg = load_config(prof, {"run": {"figures_dir": "figures/{profile}"}})
    assert cfg.figures_dir == tmp_path / "figures" / "mine"
