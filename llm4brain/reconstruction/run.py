"""Visual reconstruction of a run (notebook 08): VAE, dual-stream heads, metrics, controls.

:func:`reconstruct_run` reads what notebooks 01 and 03 wrote (frame cache, Stage I
embeddings of the training and evaluation trials), trains the embedded VAE on the
pretraining corpus and the dual-stream heads on the training subjects' training trials,
decodes a key frame for every target-subject evaluation trial and scores it
(:mod:`llm4brain.reconstruction.metrics`). Conditions, each scored the same way:

``fMRI``
    VAE decode of the low-level head's latent predicted from the trial's Stage I embedding.
``chance``
    The same with the Stage I embeddings shuffled across the evaluation trials of each target
    subject (``recon.n_shuffles`` shuffles, averaged).
``ridge baseline``
    A ridge regression (alpha by cross-validation from ``stage1.ridge_alphas``) from the
    measured mask voxels (averaged over the block) to the VAE latent, fitted on the training
    trials: the decoder without any deep fMRI encoder (the Stage I/II baseline's family).
``ceiling`` (simulated data only)
    Noise ceiling: a ridge regression (alpha by cross-validation from ``stage1.ridge_alphas``)
    from the simulator's **noise-free** responses (mask voxels averaged over the block, as the
    Stage II ceiling) to the VAE latent, fitted on the training trials and applied to the
    evaluation trials' noise-free responses, then decoded by the VAE.
``VAE round trip``
    The VAE's decode of the seen frame's own latent: the best any latent prediction can reach
    with this decoder (a decoder ceiling, no fMRI involved).

With ``recon.decoder: diffusion`` (GPU profiles) the high-level head is trained on the unCLIP
pipeline's own CLIP image embeddings of the key frames (``recon.diffusion_path``,
:mod:`llm4brain.reconstruction.diffusion`), and ``fMRI`` and ``chance`` are the images unCLIP
generates from the head's predicted embedding (``recon.diffusion_steps``, NVL's beta
``recon.diffusion_strength``), resized to ``recon.image_size`` for scoring; the VAE decode of
the low-level head becomes the extra condition ``fMRI, VAE stream``, and the ridge baseline and
ceiling stay VAE decodes.

Nothing of the target subjects enters training: their evaluation trials' embeddings are only
decoded, their key frames only scored.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import sim
from ..atomic import save_npz, write_csv, write_json
from ..data import build_frame_cache, load_splits, load_stimuli
from ..models.frame_encoders import build_frame_encoder, build_frame_feature_cache
from .vae import key_frames, to_tensor_images, to_uint8_images
from ..training.guard import source_view, target_evaluation_view
from .train import (Standardizer, heads_run_name, train_dual_heads, train_frame_vae,
                              vae_training_frames)
from ..evaluation.baselines import has_ground_truth
from .metrics import (RECON_NOTE, frame_encoder_levels, reconstruction_table,
                             score_reconstructions, two_way_identification)
from ..models.ridge import RidgeCV
from ..evaluation.stage1 import load_stage1_results, stage1_results_dir, voxel_features

__all__ = ["ReconResult", "reconstruct_run", "recon_results_dir"]


def recon_results_dir(cfg) -> Path:
    """``<run_dir>/results/recon``."""
    return Path(cfg.run_dir) / "results" / "recon"


@dataclass
class ReconResult:
    """What :func:`reconstruct_run` returns (also written to :func:`recon_results_dir`).

    per_trial : dict condition -> per-trial metrics; table : NVL's table (subjects + Total);
    images : dict ``seen``/``fMRI``/``chance``/``ceiling``/``VAE round trip`` -> uint8
    (n_eval, S, S, 3); meta : evaluation trials (subject, stim_file); logs : VAE and head
    loss logs; high_id : two-way identification (%) of the high-level head's prediction in
    the frame-encoder feature space (per subject and Total, fMRI and chance); notes : str.
    """

    per_trial: dict
    table: pd.DataFrame
    images: dict
    meta: pd.DataFrame
    logs: dict = field(default_factory=dict)
    high_id: pd.DataFrame | None = None
    notes: str = ""
    timing: dict = field(default_factory=dict)


def _clip_features(features, stim_files, batch: int = 128) -> np.ndarray:
    """High-level target of each trial: the frame encoder's patch tokens of its clip (notebook
    03's frame-feature cache) averaged over frames and patches, (n, C) float32."""
    stim_files = list(stim_files)
    return np.concatenate([features.get(stim_files[b:b + batch]).mean((1, 2)).numpy()
                           for b in range(0, len(stim_files), batch)]).astype(np.float32)


def _decode(vae, lat: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return to_uint8_images(vae.decode(torch.as_tensor(lat, dtype=torch.float32)))


def _shuffles(subjects: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng((seed, 8))
    out = []
    for _ in range(n):
        perm = np.arange(len(subjects))
        for s in pd.unique(subjects):
            idx = np.flatnonzero(subjects == s)
            perm[idx] = idx[rng.permutation(len(idx))]
        out.append(perm)
    return out


def _ridge_latents(cfg, tc, tr_rows, ev_rows, low_tr: np.ndarray) -> np.ndarray:
    """Ridge from measured voxels (through the leakage guard's views) to the latent."""
    splits = load_splits(Path(cfg.run_dir) / "splits.json")
    tr_view, ev_view = source_view(tc, splits, "train"), target_evaluation_view(tc, splits)
    for view, rows, what in ((tr_view, tr_rows, "training"), (ev_view, ev_rows, "evaluation")):
        if not np.array_equal(view.rows, rows):
            raise ValueError(f"the Stage I results' {what} trials differ from the splits' "
                             f"({len(rows)} vs {len(view.rows)}): re-run notebook 03")
    X = {k: voxel_features(v.blocks, len(v), tc.mask) for k, v in (("train", tr_view),
                                                                    ("eval", ev_view))}
    ridge = RidgeCV(alphas=cfg.stage1.ridge_alphas, cv=cfg.stage1.ridge_cv).fit(X["train"], low_tr)
    return np.asarray(ridge.predict(X["eval"]), np.float32)


def _noise_free_latents(cfg, tc, tr_rows, ev_rows, low_tr: np.ndarray) -> np.ndarray:
    def feats(rows):
        blocks = sim.noise_free_trial_blocks(cfg, tc, rows)
        return voxel_features(lambda pos: blocks[pos], len(rows), tc.mask)
    ridge = RidgeCV(alphas=cfg.stage1.ridge_alphas, cv=cfg.stage1.ridge_cv).fit(
        feats(tr_rows), low_tr)
    return np.asarray(ridge.predict(feats(ev_rows)), np.float32)


def reconstruct_run(cfg, tc=None, *, progress: bool = True, save: bool = True) -> ReconResult:
    """Train the VAE and the heads, reconstruct every evaluation trial's key frame, score.

    Parameters
    ----------
    cfg : Config (``recon`` section; ``stage1.ridge_*`` for the noise ceiling)
    tc : TrialCache, optional
        Needed for the ridge baseline and, on simulated data, the noise ceiling (both skipped
        without it).

    Returns
    -------
    ReconResult
    """
    t0, timing = time.time(), {}
    r = cfg.recon
    pipe = None
    if r.decoder == "diffusion":      # GPU profiles: unCLIP from recon.diffusion_path
        from .diffusion import load_diffusion_decoder
        pipe = load_diffusion_decoder(cfg, device=cfg.run.device)
    stim = load_stimuli(cfg)
    fc = build_frame_cache(cfg, stim, progress=progress)
    vae, vae_log, vae_trained = train_frame_vae(cfg, vae_training_frames(stim, fc),
                                                progress=progress)
    timing["vae_s"] = time.time() - t0
    arrays, meta = load_stage1_results(cfg)
    tr = meta[meta["split"] == "train"].reset_index(drop=True)
    ev = meta[meta["split"] == "eval"].reset_index(drop=True)
    kf = {k: key_frames(fc.frames[[fc.row(s) for s in m["stim_file"]]]) for k, m in
          (("train", tr), ("eval", ev))}
    small = {k: to_tensor_images(v, r.image_size) for k, v in kf.items()}
    with torch.no_grad():
        low = {k: vae.encode(v)[0].numpy() for k, v in small.items()}
    if pipe is None:    # high-level targets: the frame encoder's late features
        features = build_frame_feature_cache(cfg, stim, frame_cache=fc, progress=progress)
        high_tr = _clip_features(features, tr["stim_file"])
        high_ev = _clip_features(features, ev["stim_file"])
    else:               # the unCLIP pipeline's own CLIP image embeddings of the key frames
        from .diffusion import encode_images
        high_tr, high_ev = encode_images(pipe, kf["train"]), encode_images(pipe, kf["eval"])
    zs, hs, ls = Standardizer(arrays["train_z"]), Standardizer(high_tr), Standardizer(low["train"])
    s1_name = _stage1_name(cfg)
    heads, head_log, heads_trained = train_dual_heads(
        cfg, zs(arrays["train_z"]), hs(high_tr), ls(low["train"]),
        tr["stim_file"].to_numpy(), name=heads_run_name(cfg, s1_name), progress=progress)
    timing["heads_s"] = time.time() - t0 - timing["vae_s"]
    subj = ev["subject"].astype(str).to_numpy()
    z_ev = torch.from_numpy(zs(arrays["eval_z"]))
    perms = _shuffles(subj, r.n_shuffles, cfg.run.seed)
    with torch.no_grad():
        h_pred, l_pred = (t.numpy() for t in heads(z_ev))
        shuf = [heads(z_ev[torch.from_numpy(p)]) for p in perms]
    unl = ls.inverse
    seen = to_uint8_images(small["eval"])
    if pipe is None:
        images = {"seen": seen, "fMRI": _decode(vae, unl(l_pred))}
        chance_imgs = [_decode(vae, unl(s[1].numpy())) for s in shuf]
    else:               # the high head's embedding through unCLIP (NVL's beta), scored at
        from .diffusion import decode_image_embeddings   # recon.image_size

        def gen(h):
            im = decode_image_embeddings(pipe, hs.inverse(h), steps=r.diffusion_steps,
                                         strength=r.diffusion_strength, seed=cfg.run.seed)
            return to_uint8_images(to_tensor_images(im, r.image_size))

        images = {"seen": seen, "fMRI": gen(h_pred),
                  "fMRI, VAE stream": _decode(vae, unl(l_pred))}
        chance_imgs = [gen(s[0].numpy()) for s in tqdm(shuf, desc="chance (unCLIP)",
                                                        disable=not progress)]
    images["chance"] = chance_imgs[0]
    images["VAE round trip"] = _decode(vae, low["eval"])
    notes = [RECON_NOTE]
    if pipe is not None:
        notes.append(f"Decoder: unCLIP ({r.diffusion_path}, {r.diffusion_steps} steps, beta "
                     f"{r.diffusion_strength}) from the high-level head for fMRI and chance; "
                     f"'fMRI, VAE stream', ridge baseline and ceiling decode VAE latents.")
    tr_rows, ev_rows = (np.asarray(arrays[f"{k}_rows"], int) for k in ("train", "eval"))
    if tc is not None:
        images["ridge baseline"] = _decode(vae, _ridge_latents(cfg, tc, tr_rows, ev_rows,
                                                               low["train"]))
    if tc is not None and has_ground_truth(cfg):
        images["ceiling"] = _decode(vae, _noise_free_latents(cfg, tc, tr_rows, ev_rows,
                                                             low["train"]))
    else:
        notes.append("No noise ceiling: " + ("the trial cache was not given." if tc is None
                                             else "real data has no noise-free responses."))
    timing["decode_s"] = time.time() - t0 - timing["vae_s"] - timing["heads_s"]
    enc = build_frame_encoder(cfg, "cpu")
    feats_true = frame_encoder_levels(enc, seen)
    mm = ev[["subject", "stim_file"]]
    per_trial = {}
    for cond in ("fMRI", "fMRI, VAE stream", "ridge baseline", "ceiling", "VAE round trip"):
        if cond in images:
            per_trial[cond] = score_reconstructions(images[cond], seen,
                                                    frame_encoder_levels(enc, images[cond]),
                                                    feats_true, mm)
    per_trial["chance"] = pd.concat(
        [score_reconstructions(im, seen, frame_encoder_levels(enc, im), feats_true, mm)
         .assign(draw=k) for k, im in enumerate(tqdm(chance_imgs, desc="chance reconstructions",
                                                     disable=not progress))], ignore_index=True)
    order = [c for c in ("fMRI", "chance", "fMRI, VAE stream", "ridge baseline", "ceiling",
                         "VAE round trip")
             if c in per_trial]
    table = reconstruction_table({c: per_trial[c] for c in order})
    h_true = hs(high_ev)
    hid = {"fMRI": two_way_identification(h_pred, h_true, subj)}
    hid["chance"] = np.mean([two_way_identification(s[0].numpy(), h_true, subj) for s in shuf], 0)
    high_id = pd.DataFrame(hid).assign(subject=[f"sub-{s}" for s in subj]).groupby("subject").mean()
    high_id.loc["Total"] = high_id.mean()
    high_id.index.name = "Subject"
    timing["score_s"] = time.time() - t0 - sum(timing.values())
    res = ReconResult(per_trial, table, images, mm, {"vae": vae_log, "heads": head_log}, high_id,
                      "\n".join(notes), timing)
    res.timing.update(vae_trained_here=bool(vae_trained), heads_trained_here=bool(heads_trained))
    if save:
        _save(cfg, res)
    return res


def _stage1_name(cfg) -> str:
    p = stage1_results_dir(cfg) / "summary.json"
    return json.loads(p.read_text()).get("run_name", "") if p.is_file() else ""


def _save(cfg, res: ReconResult) -> None:
    d = recon_results_dir(cfg)
    d.mkdir(parents=True, exist_ok=True)
    for cond, df in res.per_trial.items():
        write_csv(df, d / f"per_trial_{cond.replace(' ', '_')}.csv", index=False)
    write_csv(res.table, d / "table.csv")
    write_csv(res.high_id, d / "high_level_identification.csv")
    save_npz(d / "images.npz", **{k.replace(" ", "_"): v for k, v in res.images.items()})
    write_json(d / "summary.json", dict(notes=res.notes, timing=res.timing,
                                        total=res.table.loc["Total"].to_dict()),
               indent=1, default=float)
