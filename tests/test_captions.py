"""Pretraining corpus, video-language pretraining, surrogate captions and their cache."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from llm4brain.captions import (caption_agreement, caption_path, draw_instructions,
                                generate_captions, load_captions, random_other)
from llm4brain.config import load_config
from llm4brain.training.vlpretrain import (align_loss_fn, answer_choices, build_video_llm,
                                           check_corpus_disjoint, load_video_llm,
                                           make_align_sampler, make_vl_sampler, pretrain_rows,
                                           pretrain_video_llm, text_embeddings, video_features,
                                           vl_loss)

TINY_SIM = dict(n_subjects=2, n_target_subjects=1, n_classes=2, n_runs=1, clips_per_run=4,
                blanks_per_run=1, n_pretrain_clips=4, frame_size=32, resolution_mm=12.0)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """A tiny simulated dataset (2 subjects x 4 clips + 4 pretraining clips), ~5 s."""
    from llm4brain.data import load_stimuli
    from llm4brain.sim import simulate_dataset
    run = tmp_path_factory.mktemp("run")
    cfg = load_config("smoke", overrides={
        "run": {"run_dir": str(run)}, "sim": TINY_SIM,
        "data": {"n_frames": 4, "frame_size": 32},
        "video": {"image_size": 32, "encoder_bf16": False},
        "vlpretrain": {"steps": 3, "batch_size": 2, "bf16": False, "align_steps": 2,
                       "align_batch_size": 4},
        "llm": {"max_new_tokens": 4, "batch_size": 3}})
    simulate_dataset(cfg, progress=False)
    stim = load_stimuli(cfg)
    return cfg, stim


@pytest.fixture(scope="module")
def tiny(make_tiny_llm, sim):
    cfg, stim = sim
    texts = stim["description"].tolist() + [p for s in stim["paraphrases"] for p in s.split("|")]
    return make_tiny_llm(texts, hidden=32, layers=1, seed=0)


@pytest.fixture(scope="module")
def feats(sim):
    cfg, stim = sim
    return video_features(cfg, stim, progress=False)


# ----------------------------------------------------------------------------- corpus
def test_no_subject_clip_in_pretraining_corpus(sim):
    cfg, stim = sim
    check_corpus_disjoint(stim)                              # the library's own check
    sub, pre = stim[stim.corpus == "subjects"], stim[stim.corpus == "pretrain"]
    assert len(sub) == 8 and len(pre) == 4
    assert not set(sub.clip_id) & set(pre.clip_id)
    assert not set(sub.stim_file) & set(pre.stim_file)
    digest = lambda p: hash(open(p, "rb").read())           # noqa: E731
    assert not {digest(p) for p in sub.path} & {digest(p) for p in pre.path}
    assert len(pretrain_rows(stim)) == 4


def test_disjoint_check_catches_overlap(sim, tmp_path):
    cfg, stim = sim
    bad = stim.copy()
    k = bad.index[bad.corpus == "pretrain"][0]
    bad.loc[k, "clip_id"] = bad.loc[bad.corpus == "subjects", "clip_id"].iloc[0]
    with pytest.raises(ValueError, match=bad.loc[k, "clip_id"]):
        check_corpus_disjoint(bad)
    # same video under another name: caught by content
    copy = tmp_path / "renamed.mp4"
    shutil.copy(stim.loc[stim.corpus == "subjects", "path"].iloc[0], copy)
    bad = stim.copy()
    bad.loc[k, "path"] = str(copy)
    with pytest.raises(ValueError, match="renamed.mp4"):
        check_corpus_disjoint(bad)


def test_missing_pretrain_corpus_is_clear(sim):
    _, stim = sim
    with pytest.raises(ValueError, match="video.checkpoint"):
        pretrain_rows(stim[stim.corpus == "subjects"])


# ----------------------------------------------------------------------------- draws
def test_draw_instructions_seeded():
    ins = ("a?", "b?", "c?")
    d = draw_instructions(300, ins, seed=0)
    assert d == draw_instructions(300, ins, seed=0) and d != draw_instructions(300, ins, seed=1)
    counts = pd.Series(d).value_counts()
    assert set(counts.index) == set(ins) and counts.min() > 60
    with pytest.raises(ValueError, match="captions.instructions"):
        draw_instructions(3, (), 0)


def test_random_other_is_a_derangement():
    o = random_other(50, seed=0)
    assert (o != np.arange(50)).all() and o.min() >= 0 and o.max() < 50
    groups = np.repeat(np.arange(10), 5)
    g = random_other(50, seed=1, groups=groups)
    assert (groups[g] != groups).all()
    with pytest.raises(ValueError):
        random_other(1, 0)


# ----------------------------------------------------------------------------- pretraining
def test_vl_loss_decreases_on_a_fixed_batch(sim, tiny, feats):
    cfg, stim = sim
    pre = pretrain_rows(stim)
    x = np.asarray(feats.features[feats.rows(pre.stim_file)])
    sampler = make_vl_sampler(x, answer_choices(pre), list(cfg.captions.instructions), 4)
    batch = sampler(0, np.random.default_rng(0))
    assert batch["features"].shape == (4,) + x.shape[1:] and len(batch["answers"]) == 4
    assert all(a in sum(answer_choices(pre), []) for a in batch["answers"])
    torch.manual_seed(0)
    vlm = build_video_llm(cfg, tiny, encoder_dim=x.shape[-1])
    opt = torch.optim.Adam(vlm.branch.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = vl_loss(vlm, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]
    assert all(p.grad is None for p in tiny.model.parameters())     # the LLM stays frozen


def _fit_fixed_batch(vlm, loss_fn, batch, steps: int, term: str) -> list[float]:
    """Adam on one fixed batch; the loss term logged at each step."""
    opt = torch.optim.Adam(vlm.branch.parameters(), lr=3e-3)
    out = []
    for _ in range(steps):
        loss, terms = loss_fn(vlm, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(terms[term])
    return out


def test_alignment_stage(sim, tiny, feats):
    cfg, stim = sim
    pre = pretrain_rows(stim)
    targets = answer_choices(pre)
    emb = text_embeddings(tiny, targets)
    assert len(emb) == 4 and emb[0].shape == (len(targets[0]), tiny.hidden_size)
    ids = tiny.tokenizer(targets[0][0], add_special_tokens=False)["input_ids"]
    W = tiny.model.get_input_embeddings().weight
    torch.testing.assert_close(emb[0][0], W[ids].mean(0))          # mean token embedding
    x = np.asarray(feats.features[feats.rows(pre.stim_file)])
    batch = make_align_sampler(x, emb, 4)(0, np.random.default_rng(0))
    assert batch["features"].shape[0] == 4 and batch["text"].shape == (4, tiny.hidden_size)
    torch.manual_seed(0)
    vlm = build_video_llm(cfg, tiny, encoder_dim=x.shape[-1])
    losses = _fit_fixed_batch(vlm, align_loss_fn(0.07), batch, 10, "itc")
    assert losses[-1] < 0.5 * losses[0]


def test_word_grounding_stage(sim, tiny, feats):
    from llm4brain.training.vlpretrain import (caption_vocabulary, ground_loss_fn,
                                               make_ground_sampler)
    cfg, stim = sim
    texts = stim["description"].tolist()
    vocab, bags = caption_vocabulary(tiny.tokenizer, texts, max_df=0.5)
    ids = [set(tiny.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    df = {i: sum(i in row for row in ids) for row in ids for i in row}
    assert vocab == sorted(i for i, c in df.items() if c < 0.5 * len(texts))   # no frequent token
    tok = lambda w: tiny.tokenizer(w, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    assert tok("a") not in vocab and vocab                          # "a" starts every text
    for row, bag in zip(ids, bags):
        assert {vocab[k] for k in bag} == row & set(vocab)
    bags = bags[:4]
    pre = pretrain_rows(stim)
    x = np.asarray(feats.features[feats.rows(pre.stim_file)])
    sampler = make_ground_sampler(x, [[b] for b in bags], 4)
    batch = sampler(0, np.random.default_rng(0))
    assert batch["target"].shape == (4, len(vocab))
    torch.testing.assert_close(batch["target"].sum(1), torch.ones(4))   # normalised bags
    torch.manual_seed(0)
    vlm = build_video_llm(cfg, tiny, encoder_dim=x.shape[-1])
    emb = tiny.embed(torch.tensor(vocab)).float()
    losses = _fit_fixed_batch(vlm, ground_loss_fn(emb, 0.1), batch, 30, "bow")
    # floor: the entropy of the uniform target over a bag's content words
    floor = float(np.mean([np.log(max(len(b), 1)) for b in bags]))
    assert losses[-1] < losses[0] and losses[-1] < floor + 0.3 * (losses[0] - floor)


def test_pretrain_runs_logs_and_reloads(sim, tiny, feats):
    cfg, stim = sim
    res = pretrain_video_llm(cfg, llm=tiny, stim=stim, features=feats, progress=False,
                             device="cpu")
    assert res.trained and {"step", "loss", "ce", "itc", "stage"} <= set(res.log.columns)
    assert set(res.log["stage"]) == {"align", "caption"}
    assert res.log["step"].iloc[-1] == cfg.vlpretrain.steps
    again = pretrain_video_llm(cfg, llm=tiny, stim=stim, features=feats, progress=False,
                               device="cpu")
    assert not again.trained
    loaded = load_video_llm(cfg, llm=tiny)
    for k, v in res.model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    with pytest.raises(FileNotFoundError, match="notebook 04"):
        load_video_llm(cfg.replace(vlpretrain__lr=0.5), llm=tiny)


def test_missing_videollama_checkpoint_names_file_and_key(sim, tiny, tmp_path):
    cfg, _ = sim
    missing = tmp_path / "VL_LLaMA_2_7B_Finetuned.pth"
    with pytest.raises(FileNotFoundError) as exc:
        pretrain_video_llm(cfg.replace(video__checkpoint=str(missing)), llm=tiny)
    assert str(missing) in str(exc.value) and "video.checkpoint" in str(exc.value)


# ----------------------------------------------------------------------------- captions
def test_caption_cache_reused_and_rebuilt(sim, tiny, feats):
    cfg, stim = sim
    torch.manual_seed(0)
    vlm = build_video_llm(cfg, tiny, encoder_dim=feats.features.shape[-1])
    vlm.branch.eval()
    calls = []
    real = vlm.generate
    vlm.generate = lambda *a, **k: calls.append(1) or real(*a, **k)

    caps = generate_captions(cfg, vlm=vlm, features=feats, stim=stim, progress=False)
    assert list(caps.columns[:5]) == ["clip_id", "stim_file", "subject", "instruction", "answer"]
    assert len(caps) == 8 and set(caps.subject) == {"01", "02"} and len(calls) == 1
    assert set(caps.instruction) <= set(cfg.captions.instructions)
    assert (caps.description != "").all()
    path = next((cfg.run_dir / "captions").glob("captions_*.tsv"))
    mtime = path.stat().st_mtime_ns

    again = generate_captions(cfg, vlm=vlm, features=feats, stim=stim, progress=False)
    assert len(calls) == 1 and path.stat().st_mtime_ns == mtime          # reused
    pd.testing.assert_frame_equal(again, caps)
    pd.testing.assert_frame_equal(load_captions(cfg, stim), caps)

    new = ("Describe the video briefly.", "What color is it?")
    cfg2 = cfg.replace(captions__instructions=new)
    caps2 = generate_captions(cfg2, vlm=vlm, features=feats, stim=stim, progress=False)
    assert len(calls) == 2 and set(caps2.instruction) <= set(new)       # rebuilt
    assert len(list((cfg.run_dir / "captions").glob("captions_*.tsv"))) == 2
    with pytest.raises(FileNotFoundError, match="notebook 04"):
        load_captions(cfg.replace(captions__seed=99), stim)
    generate_captions(cfg, vlm=vlm, features=feats, stim=stim, progress=False, rebuild=True)
    assert len(calls) == 3


def test_caption_agreement_beats_random_clip(sim):
    from llm4brain.evaluation.metrics import TextScorer
    cfg, stim = sim
    sub = stim[stim.corpus == "subjects"].reset_index(drop=True)
    caps = pd.DataFrame(dict(subject=["01"] * len(sub), stim_file=sub.stim_file,
                             answer=sub.description, description=sub.description))
    out = caption_agreement(caps, cfg, scorer=TextScorer(cfg.eval, bertscore=False))
    s = out["summary"].set_index("condition")
    assert s.loc["video-LLM answer", "sacrebleu1"] == pytest.approx(100.0)
    assert s.loc["random other clip", "sacrebleu1"] < 90.0
    assert len(out["per_clip"]) == 2 * len(sub)
    with pytest.raises(ValueError, match="no true descriptions"):
        caption_agreement(caps.assign(description=""), cfg)


def test_caption_path_layout(sim):
    cfg, _ = sim
    assert caption_path(cfg, "abc") == cfg.run_dir / "captions" / "captions_abc.tsv"
