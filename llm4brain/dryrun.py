"""The ``had`` profile's code path on a CPU, before a multi-hour GPU run (``make had-dryrun``).

:func:`prepare` writes what a GPU box would hold, at HAD's scale but with nothing to download:

* **a dataset as real HAD looks**: the simulator's HAD-scale dataset (2 mm MNI grid, 12 runs of
  156 volumes, 60 clips a run, the 12 s lead-in of HAD's published events) with everything the
  simulator adds and HAD lacks moved out of the BIDS tree (``stimuli/descriptions.tsv``,
  ``derivatives/simulation`` ground truth, the captioned pretraining corpus): the notebooks then
  take the real-data branches (no text, no noise ceiling); sub-01's events count onsets from
  the end of the lead-in, the others' from the first volume, as HAD's releases differ, so
  ``data.onset_offset: auto`` adds +12 s to one subject's runs and +0 s to the others';
* **randomly initialised weights of the real architectures, at reduced width, in the real file
  layouts** under ``$LLM4BRAIN_MODELS`` as ``configs/had.yaml`` names them: a LLaMA HF folder
  (``LlamaForCausalLM`` + a LLaMA tokenizer without a chat template, as Video-LLaMA's
  ``llama-2-7b-chat-hf`` ships), a BLIP-2 folder (``Blip2ForConditionalGeneration`` with a
  T5 language model, saved by ``transformers``), the Video-LLaMA ``.pth`` (LAVIS key names:
  ``video_Qformer.bert.*``, ``video_query_tokens``, ``llama_proj.*`` under ``"model"``), the
  MinD-Vis SC-MBM ``.pth`` (timm ViT key names, Conv1d patch embedding, MAE decoder) and a
  RoBERTa folder with 24 layers (BERTScore reads layer 17, as for roberta-large).

``configs/had_dryrun.yaml`` inherits ``had`` and changes only widths, step counts and the number
of shuffles, so that every notebook runs to its tables in minutes. What a dry run cannot tell
(real weights' quality, GPU speed and memory) is listed in docs/gpu.md.

Command line::

    python -m llm4brain.dryrun prepare --out DIR [--profile had_dryrun] [--overwrite]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch
import pandas as pd

from .atomic import write_json
from .config import load_config
from .models.qformer import build_video_branch
from .sim import CLASS_CATALOGUE, simulate_dataset

__all__ = ["DRYRUN_WIDTHS", "prepare", "write_models", "hide_simulation",
           "count_onsets_after_lead_in", "lavis_key", "write_tiny_roberta",
           "model_paths", "main"]

#: Widths of the stand-in models that the config does not hold (the LLM, the frame encoder,
#: RoBERTa); the Q-Formers', the encoder's and the tokenizer's come from the profile.
DRYRUN_WIDTHS = dict(llm_hidden=64, llm_layers=2, llm_heads=4, vision_hidden=32,
                     vision_layers=2, vision_heads=4, vision_patch=28, t5_d_model=32,
                     roberta_hidden=16, roberta_layers=24, roberta_heads=2)

#: What the simulator writes that real HAD does not have (moved out by :func:`hide_simulation`).
SIMULATOR_ONLY = ("stimuli/descriptions.tsv", "derivatives/simulation")


def model_paths(cfg) -> dict[str, Path]:
    """Where the profile reads each model (``$LLM4BRAIN_MODELS`` expanded)."""
    keys = {"llm": cfg.llm.path, "blip2": cfg.video.frame_encoder_path,
            "videollama": cfg.video.checkpoint, "mindvis": cfg.encoder.checkpoint,
            "roberta": cfg.eval.bertscore_model}
    return {k: Path(os.path.expanduser(os.path.expandvars(v))) for k, v in keys.items()}


def _vocabulary_corpus(cfg) -> list[str]:
    return [cfg.llm.system_prompt, *cfg.captions.instructions,
            *(f"{c.name} {c.agent} {c.action}" for c in CLASS_CATALOGUE),
            "a person an animal an object moves walks runs jumps to the left right slowly fast "
            "indoors outdoors in on at of with and the is it"]


def _write_llama(folder: Path, cfg, seed: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizerFast

    w = DRYRUN_WIDTHS
    tk = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=False))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    tk.train_from_iterator(_vocabulary_corpus(cfg), trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False,
        initial_alphabet=list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                              ".,;:!?'\"()[]<>/-_=+*&%$#@\n")))
    # LLaMA-2's tokenizer folders from Video-LLaMA carry no chat template: the profile's
    # llm.prompt_template formats the prompt (LLaMA-2-chat's [INST] <<SYS>> format)
    tok = LlamaTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                             unk_token="<unk>", add_bos_token=True, add_eos_token=False)
    tok.chat_template = None
    conf = LlamaConfig(vocab_size=len(tok), hidden_size=w["llm_hidden"],
                       intermediate_size=2 * w["llm_hidden"], num_hidden_layers=w["llm_layers"],
                       num_attention_heads=w["llm_heads"], num_key_value_heads=w["llm_heads"],
                       max_position_embeddings=1024, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=None,
                       tie_word_embeddings=False, initializer_range=0.2)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(conf)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)


def _write_blip2(folder: Path, cfg, seed: int) -> None:
    from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2QFormerConfig,
                              Blip2VisionConfig, T5Config)

    w, v = DRYRUN_WIDTHS, cfg.video
    vision = Blip2VisionConfig(hidden_size=w["vision_hidden"],
                               intermediate_size=2 * w["vision_hidden"],
                               num_hidden_layers=w["vision_layers"],
                               num_attention_heads=w["vision_heads"], image_size=v.image_size,
                               patch_size=w["vision_patch"])
    qformer = Blip2QFormerConfig(hidden_size=v.qformer_hidden, num_hidden_layers=v.qformer_layers,
                                 num_attention_heads=v.qformer_heads,
                                 intermediate_size=v.qformer_intermediate,
                                 cross_attention_frequency=v.qformer_cross_attention_freq,
                                 encoder_hidden_size=w["vision_hidden"], vocab_size=128)
    text = T5Config(vocab_size=128, d_model=w["t5_d_model"], d_kv=8, d_ff=2 * w["t5_d_model"],
                    num_layers=1, num_decoder_layers=1, num_heads=4,
                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    conf = Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(),
                       text_config=text.to_dict(), num_query_tokens=v.num_query_tokens)
    torch.manual_seed(seed + 1)
    model = Blip2ForConditionalGeneration(conf)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)


def lavis_key(key: str) -> str:
    """Our video-branch key -> its name in a Video-LLaMA (LAVIS) checkpoint."""
    fixed = {"video_qformer.query_tokens": "video_query_tokens",
             "video_qformer.frame_position.weight": "video_frame_position_embedding.weight",
             "frame_qformer.query_tokens": "query_tokens",
             "proj.weight": "llama_proj.weight", "proj.bias": "llama_proj.bias",
             "ln_vision.weight": "ln_vision.weight", "ln_vision.bias": "ln_vision.bias"}
    if key in fixed:
        return fixed[key]
    head = "video_Qformer.bert." if key.startswith("video_qformer.") else "Qformer.bert."
    rest = key.split(".qformer.", 1)[1]
    rest = rest.replace("layernorm.", "embeddings.LayerNorm.")
    rest = rest.replace("attention.attention.", "attention.self.")
    return head + rest


def _write_videollama(path: Path, cfg, seed: int) -> None:
    """The video Q-Former, its queries and frame positions, and ``llama_proj`` (what
    ``VL_LLaMA_2_7B_Finetuned.pth`` holds), under ``"model"`` with LAVIS names."""
    torch.manual_seed(seed + 2)
    branch = build_video_branch(cfg, DRYRUN_WIDTHS["vision_hidden"], DRYRUN_WIDTHS["llm_hidden"])
    sd = {lavis_key(k): v.detach().clone() for k, v in branch.state_dict().items()
          if k.startswith(("video_qformer.", "proj."))}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": sd}, path)


def _write_mindvis(path: Path, cfg, seed: int, num_voxels: int = 4656, patch: int = 16) -> None:
    """An SC-MBM checkpoint as MinD-Vis saves it: ``{"model": ..., "config": ...}`` with the
    encoder (cls token, Conv1d patch embedding, 1-D positions, timm blocks) and the MAE decoder."""
    e = cfg.encoder
    g = torch.Generator().manual_seed(seed + 3)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.02

    def block(prefix: str, d: int) -> dict:
        h = max(1, int(round(d * e.mlp_ratio)))
        return {f"{prefix}.norm1.weight": torch.ones(d), f"{prefix}.norm1.bias": torch.zeros(d),
                f"{prefix}.attn.qkv.weight": r(3 * d, d), f"{prefix}.attn.qkv.bias": torch.zeros(3 * d),
                f"{prefix}.attn.proj.weight": r(d, d), f"{prefix}.attn.proj.bias": torch.zeros(d),
                f"{prefix}.norm2.weight": torch.ones(d), f"{prefix}.norm2.bias": torch.zeros(d),
                f"{prefix}.mlp.fc1.weight": r(h, d), f"{prefix}.mlp.fc1.bias": torch.zeros(h),
                f"{prefix}.mlp.fc2.weight": r(d, h), f"{prefix}.mlp.fc2.bias": torch.zeros(d)}

    d, dd, n = e.embed_dim, e.decoder_embed_dim, num_voxels // patch
    sd = {"cls_token": r(1, 1, d), "pos_embed": r(1, n + 1, d),
          "patch_embed.proj.weight": r(d, 1, patch), "patch_embed.proj.bias": torch.zeros(d),
          "norm.weight": torch.ones(d), "norm.bias": torch.zeros(d),
          "mask_token": r(1, 1, dd), "decoder_embed.weight": r(dd, d),
          "decoder_embed.bias": torch.zeros(dd), "decoder_pos_embed": r(1, n + 1, dd),
          "decoder_norm.weight": torch.ones(dd), "decoder_norm.bias": torch.zeros(dd),
          "decoder_pred.weight": r(patch, dd), "decoder_pred.bias": torch.zeros(patch)}
    for i in range(e.depth):
        sd.update(block(f"blocks.{i}", d))
    for i in range(e.decoder_depth):
        sd.update(block(f"decoder_blocks.{i}", dd))
    config = dict(num_voxels=num_voxels, patch_size=patch, embed_dim=d, depth=e.depth,
                  num_heads=e.num_heads, decoder_embed_dim=dd, decoder_depth=e.decoder_depth,
                  decoder_num_heads=e.decoder_num_heads, mlp_ratio=e.mlp_ratio)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": sd, "config": config}, path)


def write_tiny_roberta(folder: str | Path, *, layers: int = DRYRUN_WIDTHS["roberta_layers"],
                       hidden: int = DRYRUN_WIDTHS["roberta_hidden"],
                       heads: int = DRYRUN_WIDTHS["roberta_heads"],
                       model_max_length: int | None = 512, max_positions: int = 514,
                       seed: int = 0) -> Path:
    """A random RoBERTa folder with a character BPE vocabulary, as ``roberta-large`` ships
    (config.json, model.safetensors, vocab.json, merges.txt, tokenizer_config.json)."""
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for c in [*"abcdefghijklmnopqrstuvwxyz.,", *("\u0120" + c for c in "abcdefghijklmnopqrstuvwxyz")]:
        vocab.setdefault(c, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    kw = {} if model_max_length is None else {"model_max_length": model_max_length}
    RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), **kw).save_pretrained(folder)
    torch.manual_seed(seed)
    RobertaModel(RobertaConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                               num_attention_heads=heads, intermediate_size=2 * hidden,
                               max_position_embeddings=max_positions)).save_pretrained(folder)
    return folder


def write_models(cfg, *, seed: int = 0, overwrite: bool = False) -> dict[str, Path]:
    """Write every model the profile reads, at the paths it names (see module docstring).

    Returns the paths by role (``llm``, ``blip2``, ``videollama``, ``mindvis``, ``roberta``).
    Existing files are kept unless ``overwrite``.
    """
    paths = model_paths(cfg)
    unresolved = [f"{k}: {p}" for k, p in paths.items() if "${" in str(p)]
    if unresolved:
        raise ValueError("model paths still hold an unset environment variable ("
                         + "; ".join(unresolved) + "): export LLM4BRAIN_MODELS=<folder>")
    writers = {"llm": lambda p: _write_llama(p, cfg, seed),
               "blip2": lambda p: _write_blip2(p, cfg, seed),
               "videollama": lambda p: _write_videollama(p, cfg, seed),
               "mindvis": lambda p: _write_mindvis(p, cfg, seed),
               "roberta": lambda p: write_tiny_roberta(p, seed=seed + 4)}
    for role, p in paths.items():
        if p.exists() and not overwrite:
            continue
        if p.exists():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        writers[role](p)
    return paths


def count_onsets_after_lead_in(root: Path, subject: str, lead_in_s: float) -> int:
    """Rewrite a subject's events.tsv files with onsets counted from the end of the lead-in.

    HAD's releases differ: some events count onsets from the first volume (the simulator's
    convention, first onset ~12 s), others from the end of the 12 s lead-in (first onset ~0 s,
    to which HAD's official GLMs add ``begin_dur = 12``). A dry run with both conventions
    exercises ``data.onset_offset: auto`` on each. Returns the number of files rewritten.
    """

    files = sorted((root / f"sub-{subject}").glob("ses-*/func/*_events.tsv"))
    for f in files:
        ev = pd.read_csv(f, sep="\t", keep_default_na=False)
        ev["onset"] = ev["onset"].astype(float) - lead_in_s
        ev.to_csv(f, sep="\t", index=False, float_format="%.1f")
    return len(files)


def hide_simulation(root: Path, keep: Path) -> list[str]:
    """Move what only the simulator writes out of the BIDS tree at ``root`` into ``keep``.

    Returns the moved paths (relative to the dataset's parent). The captioned pretraining corpus
    (``<root>/../pretrain_corpus``) goes too: real HAD comes without one, and the ``had``
    profile loads Video-LLaMA's video branch instead of pretraining it.
    """
    keep.mkdir(parents=True, exist_ok=True)
    moved = []
    for rel in SIMULATOR_ONLY:
        src = root / rel
        if src.exists():
            dst = keep / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(dst))
            moved.append(f"{root.name}/{rel}")
    corpus = root.parent / "pretrain_corpus"
    if corpus.exists():
        shutil.move(str(corpus), str(keep / "pretrain_corpus"))
        moved.append("pretrain_corpus")
    return moved


def prepare(out: str | Path, profile: str = "had_dryrun", *, overwrite: bool = False,
            progress: bool = True) -> dict:
    """Write the dataset (``<out>/HAD``) and the models (``<out>/models``) of a dry run.

    The simulator's extras go to ``<out>/simulator`` (see :func:`hide_simulation`). A finished
    preparation (``<out>/prepared.json``) is kept unless ``overwrite``.

    Returns a summary (paths, sizes) also written to ``<out>/prepared.json``.
    """
    out = Path(out).resolve()
    done = out / "prepared.json"
    if done.is_file() and not overwrite:
        return json.loads(done.read_text())
    if overwrite and out.exists():
        shutil.rmtree(out)
    os.environ["HAD_ROOT"] = str(out / "HAD")
    os.environ["LLM4BRAIN_MODELS"] = str(out / "models")
    cfg = load_config(profile)
    root = simulate_dataset(cfg, out / "HAD", overwrite=True, progress=progress)
    moved = hide_simulation(root, out / "simulator")
    shifted = count_onsets_after_lead_in(root, "01", cfg.sim.lead_in_s)
    paths = write_models(cfg, seed=cfg.run.seed, overwrite=True)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    summary = dict(profile=profile, HAD_ROOT=str(root), LLM4BRAIN_MODELS=str(out / "models"),
                   moved_out_of_the_dataset=moved,
                   events_counting_from_the_lead_in_end=f"sub-01 ({shifted} runs)",
                   models={k: str(v) for k, v in paths.items()},
                   subjects=cfg.sim.n_subjects, runs=cfg.sim.n_runs,
                   resolution_mm=cfg.sim.resolution_mm, size_gb=round(size / 1e9, 2))
    write_json(done, summary)
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llm4brain.dryrun",
                                 description="prepare a dry run of the had profile on a CPU")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="write a HAD-scale dataset and stand-in models")
    p.add_argument("--out", required=True, help="folder for HAD/, models/ and simulator/")
    p.add_argument("--profile", default="had_dryrun")
    p.add_argument("--overwrite", action="store_true", help="write everything again")
    p.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    summary = prepare(args.out, args.profile, overwrite=args.overwrite, progress=not args.quiet)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
