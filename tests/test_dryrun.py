"""The had dry run (``make had-dryrun``): its profile is the had profile's code path, its
stand-in models load through the same readers as the real weights, and its dataset looks as
real HAD does (no text, no ground truth, no pretraining corpus)."""
from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from llm4brain.config import load_config
from llm4brain.dryrun import (DRYRUN_WIDTHS, count_onsets_after_lead_in, hide_simulation,
                             model_paths, write_models)

#: Sections / keys the dry run may change from configs/had.yaml: sizes, step counts, counts of
#: shuffles and permutations, and where figures go. Anything else (sources, formats, model
#: kinds and paths, precision of the LLM, prompt format) must stay the had profile's.
ALLOWED = {
    "profile", "run.figures_dir", "sim", "data.target_subjects",
    "tokenizer.embed_dim", "tokenizer.channels",
    "encoder.embed_dim", "encoder.depth", "encoder.num_heads", "encoder.decoder_embed_dim",
    "encoder.decoder_depth", "encoder.decoder_num_heads",
    "mae.steps", "mae.batch_size", "train.mixed_precision", "train.checkpoint_every",
    "train.log_every", "stage1.steps", "stage1.batch_size", "stage1.n_permutations",
    "stage2.steps", "stage2.batch_size", "stage2.target_batch_size", "stage2.max_shuffles",
    "video.qformer_hidden", "video.qformer_layers", "video.qformer_heads",
    "video.qformer_intermediate", "video.num_query_tokens", "video.num_video_query_tokens",
    "video.encoder_batch_size", "llm.max_new_tokens", "llm.max_answer_tokens",
    "eval.n_shuffles", "eval.n_permutations", "eval.n_bootstrap",
}


@pytest.fixture(scope="module")
def env(tmp_path_factory, monkeypatch_module):
    home = tmp_path_factory.mktemp("dry")
    monkeypatch_module.setenv("HAD_ROOT", str(home / "HAD"))
    monkeypatch_module.setenv("LLM4BRAIN_MODELS", str(home / "models"))
    return home


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def cfg(env):
    return load_config("had_dryrun")


@pytest.fixture(scope="module")
def models(cfg):
    return write_models(cfg, seed=0)


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_dryrun_profile_keeps_the_had_code_path(env):
    had, dry = _flat(asdict(load_config("had"))), _flat(asdict(load_config("had_dryrun")))
    changed = {k for k in had if had[k] != dry[k]}
    outside = sorted(k for k in changed if k not in ALLOWED and k.split(".")[0] not in ALLOWED)
    assert not outside, f"had_dryrun changes keys that choose code paths: {outside}"
    # the keys that make it the had path, spelled out
    for key in ("data.source", "data.cache_format", "data.onset_offset", "video.frame_encoder",
                "llm.backend", "llm.dtype", "llm.prompt_template", "tokenizer.kind",
                "video.checkpoint", "encoder.checkpoint", "eval.bertscore_layers"):
        assert dry[key] == had[key], key
    assert dry["sim.resolution_mm"] == 2.0 and dry["sim.n_runs"] == 12
    # 12 s lead-in + 72 trials x 4 s + 12 s tail = 156 volumes of 2 s, as in HAD
    s = load_config("had_dryrun").sim
    trials = s.clips_per_run + s.blanks_per_run
    assert (s.lead_in_s + trials * (s.clip_duration + s.gap) + s.tail_s) / s.tr == 156


def test_models_in_the_real_layouts_load_through_the_real_readers(cfg, models):
    from safetensors import safe_open

    from llm4brain.models.checkpoints import load_mindvis_checkpoint
    from llm4brain.models.encoder import build_mae
    from llm4brain.models.frame_encoders import build_frame_encoder
    from llm4brain.models.llm import load_llm
    from llm4brain.models.qformer import build_video_branch, load_branch_checkpoint
    from llm4brain.models.video_llm import format_prompt

    assert set(models) == {"llm", "blip2", "videollama", "mindvis", "roberta"}
    assert models == model_paths(cfg)
    # BLIP-2 folder as transformers saves it: vision, Q-Former and the T5 language model
    conf = json.loads((models["blip2"] / "config.json").read_text())
    assert conf["model_type"] == "blip-2" and conf["text_config"]["model_type"] == "t5"
    with safe_open(str(models["blip2"] / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert {"query_tokens", "vision_model.post_layernorm.weight"} <= keys
    assert any(k.startswith("qformer.encoder.layer.0.crossattention.") for k in keys)
    assert any(k.startswith("language_model.") for k in keys)
    enc = build_frame_encoder(cfg)
    assert enc.feature_dim == DRYRUN_WIDTHS["vision_hidden"]
    out = enc(torch.zeros(1, 96, 96, 3, dtype=torch.uint8))
    n = (cfg.video.image_size // DRYRUN_WIDTHS["vision_patch"]) ** 2
    assert out.shape == (1, n + 1, DRYRUN_WIDTHS["vision_hidden"])
    # Video-LLaMA .pth: LAVIS names under "model", loaded with the BLIP-2 frame Q-Former
    sd = torch.load(models["videollama"], weights_only=True)["model"]
    assert {"video_query_tokens", "video_frame_position_embedding.weight", "llama_proj.weight"} <= set(sd)
    assert any(k.startswith("video_Qformer.bert.encoder.layer.1.attention.self.") for k in sd)
    branch = build_video_branch(cfg, enc.feature_dim, DRYRUN_WIDTHS["llm_hidden"])
    vl = load_branch_checkpoint(branch, cfg.video.checkpoint, "video.checkpoint",
                                required=("video_qformer.", "proj."))
    fq = load_branch_checkpoint(branch, cfg.video.qformer_checkpoint, "video.qformer_checkpoint",
                                required=("frame_qformer.",))
    assert torch.equal(branch.state_dict()["proj.weight"], sd["llama_proj.weight"])
    assert set(vl) | set(fq) >= {k for k in branch.state_dict() if k.startswith(("video_qformer.", "proj."))}
    # MinD-Vis SC-MBM: every encoder block and the MAE decoder load; the Conv1d patch
    # embedding and 1-D positions are skipped with a reason (the 3-D tokenizer replaces them)
    mae = build_mae(cfg, (3, 12, 12, 12))
    rep = load_mindvis_checkpoint(mae, cfg.encoder.checkpoint)   # ${LLM4BRAIN_MODELS} expands
    assert not rep.missing and any(k.startswith("decoder_blocks.0.") for k in rep.loaded)
    assert "patch_embed.proj.weight" in rep.skipped
    # LLaMA folder without a chat template: the profile's LLaMA-2-chat format is used
    llm = load_llm(cfg)
    assert type(llm.model).__name__ == "LlamaForCausalLM" and llm.model.dtype == torch.float16
    assert not getattr(llm.tokenizer, "chat_template", None)
    p = format_prompt(llm.tokenizer, "Describe the video briefly.", system_prompt="S",
                      template=cfg.llm.prompt_template)
    assert p == "[INST] <<SYS>>\nS\n<</SYS>>\n\n<video>\nDescribe the video briefly. [/INST] "


def test_roberta_folder_gives_bertscore_at_layer_17(cfg, models):
    from llm4brain.evaluation.metrics import TextScorer

    conf = json.loads((models["roberta"] / "config.json").read_text())
    assert conf["num_hidden_layers"] == 24 and cfg.eval.bertscore_layers == 17
    scorer = TextScorer(cfg.eval, device="cpu")
    same = scorer.bertscore(["a red ball rolls"], ["a red ball rolls"])   # (n, P/R/F1)
    diff = scorer.bertscore(["a red ball rolls"], ["zzz qqq"])
    assert same[0, 2] == pytest.approx(100.0, abs=1e-3) and diff[0, 2] < same[0, 2]


def test_hide_simulation_leaves_what_real_had_has(tmp_path, monkeypatch):
    from llm4brain.data import load_stimuli
    from llm4brain.sim import simulate_dataset

    monkeypatch.setenv("LLM4BRAIN_HOME", str(tmp_path))
    cfg = load_config("smoke").replace(sim__n_subjects=2, sim__n_runs=1, sim__clips_per_run=4,
                                       sim__blanks_per_run=0, sim__n_classes=2,
                                       sim__n_pretrain_clips=2, sim__lead_in_s=12.0)
    root = simulate_dataset(cfg, tmp_path / "HAD", progress=False)
    before = load_stimuli(cfg.replace(data__root=str(root)))
    assert (before.corpus == "pretrain").any() and (before.description != "").all()
    moved = hide_simulation(root, tmp_path / "simulator")
    assert sorted(moved) == sorted(["HAD/stimuli/descriptions.tsv", "HAD/derivatives/simulation",
                                    "pretrain_corpus"])
    assert (tmp_path / "simulator" / "derivatives" / "simulation").is_dir()
    after = load_stimuli(cfg.replace(data__root=str(root)))
    assert set(after.corpus) == {"subjects"} and (after.description == "").all()
    assert sorted(after.stim_file) == sorted(before[before.corpus == "subjects"].stim_file)
    assert not cfg.replace(data__root=str(root)).simulated_data and cfg.simulated_data
    # sub-01's events as HAD releases that count from the end of the lead-in: auto adds 12 s
    # there and nothing to sub-02, so both subjects' trials start at the same volumes
    from llm4brain.data import read_events

    f1 = next((root / "sub-01").glob("ses-*/func/*_events.tsv"))
    f2 = next((root / "sub-02").glob("ses-*/func/*_events.tsv"))
    before = read_events(f1).onset.to_numpy()
    assert before[0] == pytest.approx(12.0)
    assert count_onsets_after_lead_in(root, "01", 12.0) == 1
    np.testing.assert_allclose(read_events(f1).onset.to_numpy(), before - 12.0)
    np.testing.assert_allclose(read_events(f1, "auto").onset.to_numpy(), before)
    np.testing.assert_allclose(read_events(f2, "auto").onset.to_numpy(),
                               read_events(f2).onset.to_numpy())
