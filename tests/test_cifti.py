"""CIFTI-2 input (``data.source: ciftify``) on a tiny dense time series built with nibabel, the
``patch1d`` tokenizer (MinD-Vis's Conv1d patch embedding) and a MinD-Vis-style checkpoint that
loads whole, patch embedding included."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from nibabel.cifti2 import cifti2_axes as ax

from llm4brain.config import load_config
from llm4brain.data import DataError, build_trial_cache, discover_runs
from llm4brain.data._cache import preprocess_run
from llm4brain.models.checkpoints import load_mindvis_checkpoint
from llm4brain.models.encoder import FMRIEncoder
from llm4brain.models.tokenizers import Patch1DTokenizer, build_tokenizer

N_LEFT, N_RIGHT, N_VOL, T_VOLS, TR = 10, 12, 3, 30, 2.0
ONSETS = (4.0, 12.0, 20.0, 28.0, 36.0)


def _dtseries(data: np.ndarray) -> nib.Cifti2Image:
    vol_mask = np.zeros((2, 2, 2), bool)
    vol_mask[0, 0, :] = vol_mask[1, 1, 0] = True
    models = (ax.BrainModelAxis.from_mask(np.ones(N_LEFT, bool), name="CortexLeft")
              + ax.BrainModelAxis.from_mask(np.ones(N_RIGHT, bool), name="CortexRight")
              + ax.BrainModelAxis.from_mask(vol_mask, affine=np.eye(4), name="ThalamusLeft"))
    series = ax.SeriesAxis(start=0.0, step=TR, size=data.shape[0], unit="SECOND")
    return nib.Cifti2Image(data.astype(np.float32), header=(series, models))


@pytest.fixture
def ciftify(tmp_path):
    """Two subjects x two runs in HAD's ciftify layout (files named run-1, events run-01)."""
    root = tmp_path / "ds"
    rng = np.random.default_rng(0)
    raw = {}
    for sub in ("01", "02"):
        res = root / "derivatives" / "ciftify" / f"sub-{sub}" / "results"
        func = root / f"sub-{sub}" / "ses-action01" / "func"
        res.mkdir(parents=True)
        func.mkdir(parents=True)
        for run in (1, 2):
            d = 100 + rng.normal(0, 1, (T_VOLS, N_LEFT + N_RIGHT + N_VOL))
            d[10, 3] += 12.0                                  # planted: vertex 3 at volume 10
            raw[(sub, run)] = d
            nib.save(_dtseries(d), res / f"ses-action01_task-action_run-{run}_Atlas.dtseries.nii")
            pd.DataFrame(dict(onset=ONSETS, duration=2.0, trial_type=[1, 2, 1, 2, 1],
                              stim_file=[f"C{c}/v_C{c}_s{sub}r{run}t{j}.mp4"
                                         for j, c in enumerate([1, 2, 1, 2, 1])])).to_csv(
                func / f"sub-{sub}_ses-action01_task-action_run-{run:02d}_events.tsv",
                sep="\t", index=False)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "tiny cifti"}))
    return tmp_path, raw


def _cfg(tmp_path, **data):
    return load_config("smoke", {"run": {"run_dir": str(tmp_path / "run")},
                                 "data": {"root": str(tmp_path / "ds"), "source": "ciftify",
                                          "block_trs": 3, "lag_s": 4.0, **data}})


def test_ciftify_runs_are_found_with_their_events_and_tr(ciftify):
    tmp_path, _ = ciftify
    runs = discover_runs(tmp_path / "ds", _cfg(tmp_path).data)
    assert [(r.subject, r.run) for r in runs] == [("01", 1), ("01", 2), ("02", 1), ("02", 2)]
    assert all(r.tr == TR and "CIFTI series axis" in r.tr_source for r in runs)
    assert runs[0].events.name == "sub-01_ses-action01_task-action_run-01_events.tsv"
    with pytest.raises(DataError, match="ciftify folder .* not found"):
        discover_runs(tmp_path / "ds", _cfg(tmp_path, derivatives="derivatives/none").data)
    with pytest.raises(ValueError, match="cifti_structures = 'brain' is not one of cortex, all"):
        discover_runs(tmp_path / "ds", _cfg(tmp_path, cifti_structures="brain").data)


@pytest.mark.parametrize("structures,n", [("cortex", N_LEFT + N_RIGHT), ("all", N_LEFT + N_RIGHT + N_VOL)])
def test_trial_cache_holds_the_grayordinates(ciftify, structures, n):
    tmp_path, raw = ciftify
    tc = build_trial_cache(_cfg(tmp_path, cifti_structures=structures), progress=False,
                           check_stimuli=False)
    assert tc.block_shape == (3, n, 1, 1) and tc.mask.all() and tc.n_trials == 4 * len(ONSETS)
    # independent reference: the file's values, the same cleaning, the documented block rule
    d = raw[("01", 2)][:, :n].astype(np.float32)
    clean = preprocess_run(d, np.zeros((T_VOLS, 0)), TR, 0.01)
    k = int(np.flatnonzero(((tc.trials.subject == "01") & (tc.trials.run == 2)).to_numpy())[1])
    start = int(np.ceil((ONSETS[1] + 4.0) / TR))                 # volume 8
    np.testing.assert_allclose(np.asarray(tc.blocks[k])[:, :, 0, 0], clean[start:start + 3],
                               rtol=1e-5, atol=1e-5)
    assert np.argmax(np.asarray(tc.blocks[k])[:, 3, 0, 0]) == 10 - start   # the planted vertex
    # the masked16 format reads the same
    p = build_trial_cache(_cfg(tmp_path, cifti_structures=structures, cache_format="masked16",
                               cache_workers=1), progress=False, check_stimuli=False)
    np.testing.assert_allclose(np.asarray(p.blocks), np.asarray(tc.blocks), atol=2e-2)


def test_patch1d_tokenizer_is_a_conv1d_over_the_flat_block():
    torch.manual_seed(0)
    tok = Patch1DTokenizer((3, 22, 1, 1), embed_dim=8, patch_size=16)
    assert tok.n_tokens == 2 and tok.grid_shape == (2, 1, 1) and tok.patch_dim == 48
    x = torch.randn(4, 3, 22, 1, 1)
    ref = F.conv1d(F.pad(x.reshape(4, 3, 22), (0, 10)), tok.proj.weight, tok.proj.bias, stride=16)
    torch.testing.assert_close(tok(x), ref.transpose(1, 2))
    torch.testing.assert_close(tok.unpatchify(tok.patchify(x)), x)
    assert tok.patch_weights()[1].reshape(3, 16)[:, 6:].sum() == 0        # padding weighs 0
    one = Patch1DTokenizer((3, 22, 1, 1), embed_dim=8, patch_size=16, in_chans=1)
    ref1 = F.conv1d(F.pad(x.reshape(4, 3, 22).mean(1, keepdim=True), (0, 10)), one.proj.weight,
                    one.proj.bias, stride=16)
    torch.testing.assert_close(one(x), ref1.transpose(1, 2))
    mask = np.zeros((40, 1, 1), bool)
    mask[:5] = True
    assert Patch1DTokenizer((3, 40, 1, 1), mask, embed_dim=8).n_tokens == 1   # patches 2, 3 empty
    with pytest.raises(ValueError, match="in_chans must be 0"):
        Patch1DTokenizer((3, 22, 1, 1), embed_dim=8, in_chans=2)
    cfg = load_config("smoke", {"tokenizer": {"kind": "patch1d", "embed_dim": 8, "in_chans": 1}})
    assert isinstance(build_tokenizer(cfg, (3, 22, 1, 1)), Patch1DTokenizer)


def test_mindvis_checkpoint_loads_whole_with_patch1d(tmp_path):
    D, n_vox, p = 12, 40, 16
    tok = Patch1DTokenizer((1, n_vox, 1, 1), embed_dim=D, patch_size=p, in_chans=1)
    enc = FMRIEncoder(tok, embed_dim=D, depth=1, num_heads=2, mlp_ratio=1.0)
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g)
    n_patch = -(-n_vox // p)
    sd = {"patch_embed.proj.weight": r(D, 1, p), "patch_embed.proj.bias": r(D),
          "pos_embed": r(1, n_patch + 1, D), "cls_token": r(1, 1, D),
          "norm.weight": r(D), "norm.bias": r(D),
          "blocks.0.norm1.weight": r(D), "blocks.0.norm1.bias": r(D),
          "blocks.0.attn.qkv.weight": r(3 * D, D), "blocks.0.attn.qkv.bias": r(3 * D),
          "blocks.0.attn.proj.weight": r(D, D), "blocks.0.attn.proj.bias": r(D),
          "blocks.0.norm2.weight": r(D), "blocks.0.norm2.bias": r(D),
          "blocks.0.mlp.fc1.weight": r(D, D), "blocks.0.mlp.fc1.bias": r(D),
          "blocks.0.mlp.fc2.weight": r(D, D), "blocks.0.mlp.fc2.bias": r(D)}
    path = tmp_path / "fmri_encoder.pth"
    torch.save({"model": sd, "config": {}}, path)
    rep = load_mindvis_checkpoint(enc, path)
    torch.testing.assert_close(enc.tokenizer.proj.weight, sd["patch_embed.proj.weight"])
    torch.testing.assert_close(enc.pos_embed, sd["pos_embed"][:, 1:])
    torch.testing.assert_close(enc.blocks[0].attn.q_proj.weight, sd["blocks.0.attn.qkv.weight"][:D])
    assert {"tokenizer.proj.weight", "tokenizer.proj.bias", "pos_embed"} <= set(rep.loaded)
    assert not rep.missing and not any(k.startswith(("patch_embed", "pos_embed")) for k in rep.skipped)
    # the encoder's first token is the checkpoint's patch embedding of the first 16 values
    x = torch.randn(2, 1, n_vox, 1, 1)
    emb = F.conv1d(F.pad(x.reshape(2, 1, n_vox), (0, n_patch * p - n_vox)),
                   sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=p)
    torch.testing.assert_close(enc.embed(x), emb.transpose(1, 2) + sd["pos_embed"][:, 1:])
    # a checkpoint made for another voxel count is refused with the reason
    bad = FMRIEncoder(Patch1DTokenizer((1, 80, 1, 1), embed_dim=D, patch_size=p, in_chans=1),
                      embed_dim=D, depth=1, num_heads=2)
    with pytest.raises(ValueError, match="another number of voxels"):
        load_mindvis_checkpoint(bad, path)
