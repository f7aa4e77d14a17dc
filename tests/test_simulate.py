"""The HAD-layout simulator: layout, determinism, ground truth, CLI."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from llm4brain.cli import main as cli_main
from llm4brain.config import load_config
from llm4brain.data import EVENT_COLUMNS, build_trial_cache, describe_dataset, load_stimuli
from llm4brain.sim import (REGIONS, SPACE, bids_name, canonical_hrf, load_ground_truth,
                           noise_free_bold, region_weights, simulate_dataset, trial_regressors,
                           voxel_coordinates)


def _cfg(base):
    return load_config("smoke", {"run": {"run_dir": str(base / "run")},
                                 "data": {"root": str(base / "ds")}})


@pytest.fixture(scope="module")
def smoke_ds(tmp_path_factory):
    base = tmp_path_factory.mktemp("sim")
    cfg = _cfg(base)
    simulate_dataset(cfg, progress=False)
    return cfg


def test_had_layout_and_design(smoke_ds):
    cfg, root = smoke_ds, smoke_ds.data_root
    sim = cfg.sim
    for s in ("01", "02", "03"):
        for run in (1, 2):
            raw = root / f"sub-{s}/ses-action01/func"
            assert (raw / bids_name(s, run, "bold.nii.gz")).is_file()
            fp = root / f"derivatives/fmriprep/sub-{s}/ses-action01/func"
            assert (fp / bids_name(s, run, "bold.nii.gz", space=SPACE, desc="preproc")).is_file()
            assert (fp / bids_name(s, run, "mask.nii.gz", space=SPACE, desc="brain")).is_file()
            conf = pd.read_csv(fp / bids_name(s, run, "timeseries.tsv", desc="confounds"), sep="\t")
            assert {"trans_x", "rot_z", "framewise_displacement"} <= set(conf.columns)
            ev = pd.read_csv(raw / bids_name(s, run, "events.tsv"), sep="\t")
            assert tuple(ev.columns) == EVENT_COLUMNS
            assert len(ev) == sim.clips_per_run
            soa = np.diff(ev.onset)
            assert np.all(soa % 4.0 == 0) and soa.min() == 4.0 and soa.max() > 4.0  # blanks
            assert (ev.duration == 2.0).all()
    img = nib.load(str(root / "sub-01/ses-action01/func" / bids_name("01", 1, "bold.nii.gz")))
    n_slots = sim.clips_per_run + sim.blanks_per_run
    assert img.shape[3] == int(np.ceil((n_slots * 4 + sim.tail_s) / sim.tr))
    assert img.header.get_zooms()[3] == 2.0
    d = describe_dataset(root)
    assert d["subjects"] == ["01", "02", "03"] and d["n_classes"] == sim.n_classes
    assert d["n_clips"] == 3 * sim.n_runs * sim.clips_per_run  # unique clips per subject
    assert (root / "participants.tsv").read_text().count("target") == sim.n_target_subjects


def test_pretraining_corpus_is_disjoint_from_subject_clips(smoke_ds):
    st = load_stimuli(smoke_ds)
    pre = st[st.corpus == "pretrain"]
    subj = st[st.corpus == "subjects"]
    assert len(pre) > 0 and not set(pre.clip_id) & set(subj.clip_id)
    assert all(p.endswith(".mp4") for p in pre.path)
    assert (subj.description.str.len() > 10).all()


def test_same_seed_same_dataset_other_seed_differs(smoke_ds, tmp_path):
    a = nib.load(str(smoke_ds.data_root / "sub-02/ses-action01/func" /
                     bids_name("02", 2, "bold.nii.gz"))).get_fdata()
    cfg2 = _cfg(tmp_path)
    simulate_dataset(cfg2, progress=False)
    b = nib.load(str(cfg2.data_root / "sub-02/ses-action01/func" /
                     bids_name("02", 2, "bold.nii.gz"))).get_fdata()
    np.testing.assert_array_equal(a, b)
    cfg3 = load_config("smoke", {"run": {"run_dir": str(tmp_path / "r3"), "seed": 1},
                                 "data": {"root": str(tmp_path / "ds3")}})
    simulate_dataset(cfg3, progress=False)
    c = nib.load(str(cfg3.data_root / "sub-02/ses-action01/func" /
                     bids_name("02", 2, "bold.nii.gz"))).get_fdata()
    assert not np.allclose(a, c)


def test_existing_dataset_is_not_overwritten(smoke_ds):
    other = load_config("smoke", {"run": {"run_dir": str(smoke_ds.run_dir)},
                                  "data": {"root": str(smoke_ds.data_root)},
                                  "sim": {"noise_sd": 2.0}})
    with pytest.raises(FileExistsError, match="overwrite"):
        simulate_dataset(other, progress=False)
    assert simulate_dataset(smoke_ds, progress=False) == smoke_ds.data_root  # same: reused


def test_ground_truth_matches_events_and_data(smoke_ds):
    root = smoke_ds.data_root
    gt = load_ground_truth(root, "01")
    gen = json.loads((root / "derivatives/simulation/generator.json").read_text())
    ev = pd.read_csv(root / "sub-01/ses-action01/func" / bids_name("01", 1, "events.tsv"), sep="\t")
    np.testing.assert_allclose(gt["onsets"][0], ev.onset)
    assert list(gt["stim_files"][0]) == list(ev.stim_file)
    h = canonical_hrf(2.0, peak_shift_s=gen["subjects"]["01"]["hrf_shift_s"])
    X = trial_regressors(ev.onset.to_numpy(), 2.0, gt["regressors"].shape[1], 2.0, h)
    np.testing.assert_allclose(X, gt["regressors"][0], atol=1e-5)
    # noise-free signal is in the visual regions only, and the measured data follow it there
    mask = gt["mask"].astype(bool)
    memb = region_weights(voxel_coordinates(mask, gt["affine"])
                          - np.asarray(gen["subjects"]["01"]["shift_mm"]))
    clean = noise_free_bold(root, "01", 1)
    vis = memb[[i for i, r in enumerate(REGIONS) if r.group]].max(0) > 0.5
    off = memb[[i for i, r in enumerate(REGIONS) if not r.group]].max(0) > 0.5
    assert clean[:, vis].std(0).mean() > 0.2 and np.abs(clean[:, off & ~vis]).max() < 1e-6
    bold = nib.load(str(root / "sub-01/ses-action01/func" / bids_name("01", 1, "bold.nii.gz")))
    data = bold.get_fdata()[mask].T
    r = [np.corrcoef(data[:, v], clean[:, v])[0, 1] for v in np.flatnonzero(vis)]
    assert np.mean(r) > 0.15


def test_cli_simulate_and_describe(tmp_path, capsys):
    out = tmp_path / "cli_ds"
    assert cli_main(["simulate", "--profile", "smoke", "--out", str(out), "--quiet"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["root"] == str(out)
    assert cli_main(["describe", str(out), "--compact"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["tr"] == 2.0 and d["runs_per_subject"] == {"01": 2, "02": 2, "03": 2}
    assert d["space"] == SPACE and len(d["volume_shape"]) == 4
    assert cli_main(["describe", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_trial_cache_on_simulated_data(smoke_ds):
    tc = build_trial_cache(smoke_ds, progress=False)
    assert tc.n_trials == 3 * smoke_ds.sim.n_runs * smoke_ds.sim.clips_per_run
    assert tc.volumes is not None and len(tc.volume_table) == tc.volumes.shape[0]
    b = np.asarray(tc.blocks[0])
    assert np.isfinite(b).all() and abs(b[:, tc.mask].mean()) < 1.0
    assert (b[:, ~tc.mask] == 0).all()


def test_noise_free_blocks_follow_the_data(smoke_ds):
    from llm4brain.sim import noise_free_trial_blocks

    tc = build_trial_cache(smoke_ds, progress=False)
    idx = np.array([7, 0, 30, 51])
    oracle = noise_free_trial_blocks(smoke_ds, tc, idx)
    assert oracle.shape == (4,) + tc.block_shape and np.isfinite(oracle).all()
    assert (oracle[:, :, ~tc.mask] == 0).all()
    real = np.stack([np.asarray(tc.blocks[i]) for i in idx])
    r = [np.corrcoef(oracle[i][:, tc.mask].ravel(), real[i][:, tc.mask].ravel())[0, 1]
         for i in range(4)]
    assert np.mean(r) > 0.02  # the data are the noise-free signal plus noise
    shuffled = [np.corrcoef(oracle[i][:, tc.mask].ravel(), real[(i + 1) % 4][:, tc.mask].ravel())[0, 1]
                for i in range(4)]
    assert np.mean(r) > np.mean(shuffled)
