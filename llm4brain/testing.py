"""Test helpers: a tiny hand-made HAD-layout dataset (no simulator involved), a cut mp4, a tiny
random LLM and a tiny random Stage I / II world. Not part of the public API:
``tests/conftest.py`` exposes them as fixtures."""
from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import CaptionConfig, load_config
from .data import Splits
from .data._video_io import write_mp4
from .models.encoder import build_encoder
from .models.llm import LLMBackend, _finish_tokenizer, freeze
from .models.qformer import build_video_branch
from .models.stage1 import VideoInputs, build_stage1_model
from .sim._simulate import SESSION, SPACE, bids_name
from .training.guard import source_view
from .training.loop import fit
from .training.stage1 import make_stage1_sampler, stage1_loss_fn, stage1_run_name

__all__ = ["make_tiny_bids", "truncate_mp4", "make_tiny_llm", "CHATML_TEMPLATE", "TINY_BLOCK",
           "TINY_FEAT", "TINY_LLM_DIM", "FakeTrialCache", "FakeFeatures", "tiny_stage_config",
           "make_tiny_world", "fit_tiny_stage1", "make_tiny_unclip"]


def make_tiny_bids(root: str | Path, n_subjects: int = 2, n_runs: int = 2,
                   shape=(6, 7, 5), n_vols: int = 40, tr: float | tuple = 2.0,
                   onsets=(4.0, 12.0, 20.0, 28.0), classes=("Ball_bouncing", "Car_driving"),
                   plant: dict | None = None, noise: float = 0.1, seed: int = 0,
                   write_clips: bool = True, sidecar: str = "top",
                   header_tr: float | None = None, derivatives: str = "derivatives/fmriprep",
                   write_masks: bool = True, timing: dict | None = None) -> Path:
    """Write a tiny fMRIPrep-style BIDS dataset with HAD naming.

    Parameters
    ----------
    tr : float or sequence of float
        Repetition time; a sequence gives one TR per subject (then ``sidecar`` must be
        ``"run"`` or ``"none"``).
    plant : dict or list of dict, optional
        ``{"voxel": (i, j, k), "volume": v, "amplitude": a}``: adds ``a`` to that voxel at
        volume ``v`` of every run of every subject (to test block extraction); a list plants
        each.
    sidecar : str
        Where ``RepetitionTime`` is written: ``"top"`` (``task-action_bold.json`` at the
        root), ``"run"`` (one ``*_bold.json`` beside each raw run) or ``"none"``.
    header_tr : float, optional
        ``pixdim[4]`` of the NIfTI headers (default: the subject's TR; units left unset).
    derivatives : str
        Folder (relative to the root) of the fMRIPrep-style derivatives.
    write_masks : bool
        Write ``desc-brain_mask`` files beside the derivatives.
    timing : dict, optional
        Slice-timing fields (``SliceTimingCorrected``, ``StartTime``, ``SliceTiming``) written
        into a ``*_desc-preproc_bold.json`` beside each derivative run (``{"raw": {...}}``:
        into the raw runs' sidecars instead).

    Returns the root. Affine: 4 mm isotropic; mask = all voxels but a 1-voxel border.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    trs = [float(t) for t in tr] if np.ndim(tr) else [float(tr)] * n_subjects
    if len(trs) != n_subjects:
        raise ValueError(f"make_tiny_bids: {len(trs)} TRs for {n_subjects} subjects")
    if sidecar == "top" and len(set(trs)) > 1:
        raise ValueError("make_tiny_bids: one TR per subject needs sidecar='run' or 'none'")
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-10.0, -12.0, -8.0]
    mask = np.zeros(shape, np.uint8)
    mask[1:-1, 1:-1, 1:-1] = 1
    import nibabel as nib

    (root / "stimuli").mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "tiny", "BIDSVersion": "1.8.0"}))
    if sidecar == "top":
        (root / "task-action_bold.json").write_text(json.dumps({"RepetitionTime": trs[0],
                                                                "TaskName": "action"}))
    stim_files = []
    for s in range(n_subjects):
        sub = f"{s + 1:02d}"
        fdir = root / derivatives / f"sub-{sub}" / f"ses-{SESSION}" / "func"
        rdir = root / f"sub-{sub}" / f"ses-{SESSION}" / "func"
        fdir.mkdir(parents=True, exist_ok=True)
        rdir.mkdir(parents=True, exist_ok=True)
        for run in range(1, n_runs + 1):
            data = 100 + noise * rng.standard_normal(shape + (n_vols,)).astype(np.float32)
            for p in ([plant] if isinstance(plant, dict) else plant or []):
                data[tuple(p["voxel"]) + (p["volume"],)] += p["amplitude"]
            data *= mask[..., None]
            img = nib.Nifti1Image(data.astype(np.float32), affine)
            img.header.set_zooms((4.0, 4.0, 4.0, trs[s] if header_tr is None else header_tr))
            nib.save(img, str(fdir / bids_name(sub, run, "bold.nii.gz", space=SPACE, desc="preproc")))
            nib.save(img, str(rdir / bids_name(sub, run, "bold.nii.gz")))
            raw_timing = (timing or {}).get("raw", {})
            if sidecar == "run" or raw_timing:
                (rdir / bids_name(sub, run, "bold.json")).write_text(json.dumps(
                    {**({"RepetitionTime": trs[s]} if sidecar == "run" else {}),
                     "TaskName": "action", **raw_timing}))
            if timing and "raw" not in timing:
                (fdir / bids_name(sub, run, "bold.json", space=SPACE, desc="preproc")).write_text(
                    json.dumps(timing))
            if write_masks:
                nib.save(nib.Nifti1Image(mask, affine),
                         str(fdir / bids_name(sub, run, "mask.nii.gz", space=SPACE, desc="brain")))
            conf = pd.DataFrame(rng.normal(0, 0.01, (n_vols, 6)),
                                columns=["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"])
            conf.to_csv(fdir / bids_name(sub, run, "timeseries.tsv", desc="confounds"), sep="\t",
                        index=False)
            rows = []
            for j, on in enumerate(onsets):
                c = j % len(classes)
                sf = f"{classes[c]}/v_{classes[c]}_id_s{sub}r{run}t{j}_label_{c + 1}.mp4"
                stim_files.append(sf)
                rows.append(dict(onset=on, duration=2.0, trial_type=c + 1, response="n/a",
                                 response_time="n/a", stim_file=sf))
            pd.DataFrame(rows).to_csv(rdir / bids_name(sub, run, "events.tsv"), sep="\t",
                                      index=False)
    if write_clips:
        for j, sf in enumerate(stim_files):
            fr = np.zeros((4, 32, 32, 3), np.uint8)
            fr[:] = (np.arange(4) * 50 + 20)[:, None, None, None]
            fr[..., j % 3] = 200
            write_mp4(fr, root / "stimuli" / sf, fps=2)
    return root


def truncate_mp4(path: str | Path, keep_frames: int) -> Path:
    """Cut an mp4 written by ``write_mp4`` (``moov`` first, one video track) right after its
    first ``keep_frames`` samples: the container still declares every frame, decord opens it
    and indexes only the kept ones (a truncated download). Self-contained: it reads the
    ``stsz`` / ``stco`` tables itself, not with the reader under test."""
    path = Path(path)
    data = path.read_bytes()

    def find(start, end, name):
        pos = start
        while pos + 8 <= end:
            size, typ = struct.unpack(">I4s", data[pos:pos + 8])
            if typ.decode("latin-1") == name:
                return pos + 8, pos + size
            pos += size
        raise ValueError(f"truncate_mp4({path}): no {name} box")

    box = (0, len(data))
    for name in ("moov", "trak", "mdia", "minf", "stbl"):
        box = find(*box, name)
    stsz, _ = find(*box, "stsz")
    n = struct.unpack(">I", data[stsz + 8:stsz + 12])[0]
    sizes = struct.unpack(f">{n}I", data[stsz + 12:stsz + 12 + 4 * n])
    stco, _ = find(*box, "stco")
    first_chunk = struct.unpack(">I", data[stco + 8:stco + 12])[0]
    path.write_bytes(data[:first_chunk + sum(sizes[:keep_frames])])
    return path


#: SmolLM2's ChatML chat template (used by :func:`make_tiny_llm`).
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def make_tiny_llm(texts=("a small red ball bounces to the right",), *, hidden: int = 32,
                  layers: int = 2, heads: int = 4, seed: int = 0,
                  init_std: float = 0.3) -> LLMBackend:
    """A tiny random Llama with a word-level ChatML tokenizer (tests and examples; no files).

    Parameters
    ----------
    texts : iterable of str
        Words (and punctuation) of these texts, plus the words of the default instructions,
        make up the vocabulary; unknown words map to ``[UNK]``.
    hidden, layers, heads : int
        Model size.
    seed : int
        Seeds the random weights.
    init_std : float
        Std of the random weights (larger than Llama's 0.02 so that the tiny model's
        next-token distributions are not flat and a prefix can change them).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[UNK]"]
    corpus = list(texts) + list(CaptionConfig().instructions) + ["system user assistant"]
    words = sorted({w for t in corpus for w in re.findall(r"\w+|[^\w\s]", t)} - set(specials))
    vocab = {t: i for i, t in enumerate(specials + words)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", unk_token="[UNK]",
                                  additional_special_tokens=["<|im_start|>"])
    tok.chat_template = CHATML_TEMPLATE
    conf = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
                       num_hidden_layers=layers, num_attention_heads=heads,
                       num_key_value_heads=max(1, heads // 2), max_position_embeddings=512,
                       tie_word_embeddings=True, pad_token_id=vocab["<|endoftext|>"],
                       eos_token_id=vocab["<|im_end|>"], bos_token_id=None,
                       initializer_range=init_std)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(conf)
    return LLMBackend(freeze(model), _finish_tokenizer(tok), "tiny", "<memory>", 0.0)


#: Shapes of the tiny Stage I / II world: fMRI block (T, X, Y, Z), frame features (frames,
#: patches, channels) and the LLM width.
TINY_BLOCK = (2, 8, 8, 8)
TINY_FEAT = (4, 4, 16)
TINY_LLM_DIM = 32


class FakeTrialCache:
    """The two attributes of a TrialCache the guard and Stage I read, plus a mask."""

    def __init__(self, blocks, trials, mask):
        self.blocks, self.trials, self.mask = blocks, trials, mask

    @property
    def block_shape(self):
        return tuple(self.blocks.shape[1:])


class FakeFeatures:
    """A FrameFeatureCache stand-in: deterministic random features per stim file."""

    def __init__(self, files):
        self.index = pd.DataFrame({"stim_file": list(files)})

    def get(self, files):
        out = []
        for f in files:
            seed = int(hashlib.sha1(str(f).encode()).hexdigest()[:8], 16)
            out.append(np.random.default_rng(seed).standard_normal(TINY_FEAT).astype(np.float32))
        return torch.from_numpy(np.stack(out))


def tiny_stage_config(tmp_path, **sections):
    """The smoke profile shrunk to the tiny world (run directory under ``tmp_path``);
    ``sections`` override keys per section, e.g. ``stage1={"pool": "cls"}``."""
    over = {"run": {"run_dir": str(tmp_path / "run"), "seed": 0, "device": "cpu"},
            "train": {"checkpoint_every": 0, "log_every": 1, "warmup_fraction": 0.0},
            # the tiny world's 448 voxels and 6 training trials: the pooled-token projector on
            # every voxel, one-hot targets, no early stopping (the default's concept projector,
            # selective input, class-aware targets and early stopping have tests of their own;
            # the tiny world has no stimulus table, so its concept is the class alone)
            "stage1": {"steps": 2, "batch_size": 4, "n_candidates": 3, "n_permutations": 9,
                       "projector_heads": 2, "eval_batch_size": 5,
                       "ridge_alphas": [1.0, 100.0], "projector": "mlp", "input_voxels": 0,
                       "projector_dropout": 0.0, "class_targets": 0.0,
                       "early_stopping_every": 0, "concepts": ["class"], "concept_voxels": 0},
            "stage2": {"steps": 2, "batch_size": 2, "target_batch_size": 3, "bf16": False,
                       "max_shuffles": 2},
            "llm": {"max_new_tokens": 3, "batch_size": 4, "max_answer_tokens": 6},
            "eval": {"n_shuffles": 5}}
    for sec, vals in sections.items():
        over.setdefault(sec, {}).update(vals)
    return load_config("smoke", over)


def make_tiny_world(tmp_path, seed=0, **sections):
    """A random Stage I / II world: 3 subjects (01, 02 training; 03 target), 2 runs of 6 trials
    of 3 classes, blocks of :data:`TINY_BLOCK`, a 2-layer encoder and 1-layer Q-Former of the
    smoke profile, fake frame features and one caption per trial.

    Returns
    -------
    dict with ``cfg``, ``tc`` (:class:`FakeTrialCache`), ``splits``, ``encoder``, ``branch``,
    ``features`` (:class:`FakeFeatures`), ``captions``
    """
    cfg = tiny_stage_config(tmp_path, **sections)
    rng = np.random.default_rng(seed)
    rows = []
    for subj in ("01", "02", "03"):
        for run in (1, 2):
            for t in range(6):
                c = (t + run) % 3
                rows.append(dict(subject=subj, run=run, trial=t, onset=4.0 * t, class_id=c,
                                 class_name=f"class{c}",
                                 stim_file=f"class{c}/clip_{subj}_{run}_{t}.mp4",
                                 clip_id=f"clip_{subj}_{run}_{t}"))
    trials = pd.DataFrame(rows)
    sub, run = trials["subject"].to_numpy(), trials["run"].to_numpy()
    idx = {k: np.flatnonzero(m) for k, m in dict(
        train=np.isin(sub, ["01", "02"]) & (run == 1), val=np.isin(sub, ["01", "02"]) & (run == 2),
        adapt=(sub == "03") & (run == 1), eval=(sub == "03") & (run == 2)).items()}
    splits = Splits(("01", "02"), ("03",), idx["train"], idx["val"], idx["adapt"], idx["eval"])
    blocks = rng.standard_normal((len(trials),) + TINY_BLOCK).astype(np.float32)
    mask = np.ones(TINY_BLOCK[1:], bool)
    mask[0] = False
    tc = FakeTrialCache(blocks, trials, mask)
    encoder = build_encoder(cfg, TINY_BLOCK, mask)
    torch.manual_seed(1)
    branch = build_video_branch(cfg, TINY_FEAT[-1], TINY_LLM_DIM).eval()
    features = FakeFeatures(trials["stim_file"])
    captions = pd.DataFrame(dict(
        clip_id=trials["clip_id"], stim_file=trials["stim_file"], subject=trials["subject"],
        instruction=[("Describe the video briefly." if i % 2 else
                      "What is the main thing happening in the video?") for i in range(len(trials))],
        answer=[f"a {n} moves" for n in trials["class_name"]]))
    return dict(cfg=cfg, tc=tc, splits=splits, encoder=encoder, branch=branch,
                features=features, captions=captions)


def fit_tiny_stage1(w, steps=2):
    """Stage I trained for ``steps`` steps on a :func:`make_tiny_world`: ``(model, video, fit result)``."""
    cfg = w["cfg"]
    model = build_stage1_model(cfg, w["encoder"], w["branch"])
    video = VideoInputs(model, w["features"], w["tc"].trials["stim_file"])
    view = source_view(w["tc"], w["splits"], "train")
    model.train()
    res = fit(model, stage1_loss_fn(cfg.stage1),
              make_stage1_sampler(view, video, cfg.stage1.batch_size), run_dir=cfg.run_dir,
              name=stage1_run_name(cfg), steps=steps, lr=1e-2, loop_cfg=cfg.train,
              seed=cfg.run.seed, progress=False, device="cpu")
    return res.model.eval(), video, res


def make_tiny_unclip(path, *, embed_dim: int = 8, seed: int = 0) -> Path:
    """A tiny randomly initialised Stable unCLIP pipeline (no tokenizer/text encoder) saved
    to ``path`` (diffusers layout, ~1 MB), built from configs: nothing downloads."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler,
                           StableUnCLIPImg2ImgPipeline, UNet2DConditionModel)
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import \
        StableUnCLIPImageNormalizer
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        enc = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=16, projection_dim=embed_dim, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=16, image_size=32, patch_size=8))
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(8, 16),
            cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
            class_embed_type="projection", projection_class_embeddings_input_dim=2 * embed_dim)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
                            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
                            block_out_channels=(8, 16), sample_size=16)
        pipe = StableUnCLIPImg2ImgPipeline(
            feature_extractor=CLIPImageProcessor(crop_size=32, size=32), image_encoder=enc,
            image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=embed_dim),
            image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
            tokenizer=None, text_encoder=None, unet=unet, scheduler=DDIMScheduler(), vae=vae)
    pipe.save_pretrained(str(path))
    return Path(path)
