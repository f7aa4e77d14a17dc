"""Dialogue (llm4brain.dialogue): KV-cache reuse, chat-template round trip, ``llm4brain chat``,
question answering from fMRI scored against the truth.

The fast tests use a tiny random Llama (``make_tiny_llm``); the others a smoke run built once
for the module in a temporary ``LLM4BRAIN_HOME`` (``tests/fault_chain.py`` up to the captions,
then Stage II with domain adaptation as notebook 05 trains it).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llm4brain.dialogue import (NONE, QA_TABLE_COLUMNS, QUESTIONS, AnswerParser,
                                ContextTooLongError, Conversation, Question, ask_all,
                                qa_table, render_chat)

ROOT = Path(__file__).resolve().parents[1]
QS = ["What is the main thing happening in the video?", "Which way does it move?",
      "Is it fast or slow?"]


@pytest.fixture(scope="module")
def tiny(make_tiny_llm):
    return make_tiny_llm(["a small red ball bounces to the right", "the dog runs left fast",
                          "which way does it move ? is it fast or slow"], hidden=32, layers=2,
                         heads=4, seed=1)


def _prefix(llm, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, llm.hidden_size, generator=g)


def _no_cache_greedy(llm, ids, prefix, max_new):
    """Reference: greedy tokens of a prompt (ids, -1 = prefix slots), every step a fresh
    forward over the whole sequence without any cache."""
    seq, out = list(ids), []
    start = seq.index(-1)
    eos = llm.tokenizer.eos_token_id
    with torch.no_grad():
        for _ in range(max_new):
            t = torch.tensor(seq)
            emb = llm.embed(t.clamp(min=0)).clone()
            emb[start:start + len(prefix)] = prefix.to(emb.dtype)
            logits = llm.model(inputs_embeds=emb[None], use_cache=False).logits[0, -1]
            tok = int(torch.argmax(logits))
            out.append(tok)
            if tok == eos:
                break
            seq.append(tok)
    return out


def _check_cache_reuse(llm, prefix, questions, max_new, placeholder="<video>",
                       system_prompt=""):
    conv = Conversation(llm, prefix, max_new_tokens=max_new, placeholder=placeholder,
                        system_prompt=system_prompt)
    for q in questions:
        conv.ask(q)
    ids = conv.token_ids()
    eos = llm.tokenizer.eos_token_id
    assert len(conv.turns) == len(questions)
    for k, turn in enumerate(conv.turns):
        ref = _no_cache_greedy(llm, ids[:turn.n_prompt], prefix, max_new)
        got = turn.answer_ids + ([eos] if turn.stopped else [])
        assert got == ref, f"turn {k}: cached {got} != recomputed {ref}"
        if k:  # later turns fed only what the cache lacked
            assert turn.n_fed < turn.n_prompt - len(prefix)
    return conv


# ------------------------------------------------------------------ tiny LLM, no run
def test_kv_cache_reuse_equals_recompute_tiny(tiny):
    conv = _check_cache_reuse(tiny, _prefix(tiny), QS, max_new=7)
    assert conv.n_cached >= conv.turns[-1].n_prompt


def test_first_turn_equals_batched_one_turn_answers(tiny):
    prefixes = torch.stack([_prefix(tiny, seed=s) for s in range(3)])
    batched = ask_all(tiny, prefixes, QS[0], max_new_tokens=6)
    single = [Conversation(tiny, p, max_new_tokens=6).ask(QS[0]) for p in prefixes]
    assert [" ".join(s.split()) for s in single] == batched


def test_context_too_long_names_tokens_and_reset(tiny):
    conv = Conversation(tiny, _prefix(tiny), max_new_tokens=5, max_context=60)
    conv.ask(QS[0])
    n_before, text_before = conv.n_tokens, conv.prompt_text()
    with pytest.raises(ContextTooLongError, match=r"(?s)\d+ tokens.*context of 60.*reset\(\)"):
        for q in QS[1:] * 5:
            conv.ask(q)
            n_before, text_before = conv.n_tokens, conv.prompt_text()
    assert conv.n_tokens == n_before and conv.prompt_text() == text_before  # left as it was
    conv.reset()
    assert conv.turns == [] and conv.n_cached == 0
    assert conv.ask(QS[1]) is not None


def test_prefix_shape_errors(tiny):
    with pytest.raises(ValueError, match="one recording"):
        Conversation(tiny, torch.zeros(2, 4, tiny.hidden_size))
    with pytest.raises(ValueError, match="embedding space"):
        Conversation(tiny, torch.zeros(4, tiny.hidden_size + 1))


# ------------------------------------------------------------------ answer parsing and scoring
Q = {q.name: q for q in QUESTIONS}


@pytest.mark.parametrize("question,text,expected", [
    ("direction", "The ball rolls to the left.", "left"),
    ("direction", "A car drives from left to right along the street.", "right"),
    ("direction", "Left or right?", NONE),                     # two options: no answer
    ("direction", "It jumps up and down.", NONE),
    ("agent", "A puppy jumps in the snow.", "animal"),
    ("agent", "A man is waving.", "person"),
    ("agent", "A beach ball bounces.", "object"),               # not the scene "beach"
    ("agent", "It is an animal.", "animal"),
    ("agent", "The main thing in the video is a person, specifically a", "person"),
    ("colour", "A small red ball on a green field.", "red"),    # "green field" is a scene
    ("colour", "It is red and blue.", NONE),
    ("size", "A big dog.", "large"),
    ("size", "A medium-sized dog.", NONE),                      # not an option
    ("speed", "It moves slowly.", "slow"),
    ("speed", "The bird flies quickly.", "fast"),
    ("scene", "A fish swims among the trees in the woods.", "forest"),
    ("scene", "", NONE),
])
def test_answer_parser(question, text, expected):
    assert AnswerParser().parse(Q[question], text) == expected


def test_questions_cover_the_attributes_with_their_options():
    from llm4brain.sim._catalogue import COLOURS, SCENES

    assert [q.name for q in QUESTIONS] == ["agent", "colour", "size", "direction", "speed",
                                           "scene"]
    assert Q["colour"].k == len(COLOURS) and Q["scene"].k == len(SCENES)
    assert Q["agent"].truth("dog") == "animal" and Q["agent"].truth("car") == "object"
    assert Q["size"].truth("medium") is None and Q["size"].truth("small") == "small"


def _answers(rows):
    cols = ["condition", "shuffle", "question", "trial_index", "answer", "truth"]
    df = pd.DataFrame(rows, columns=cols)
    df["correct"] = [np.nan if pd.isna(t) else float(a == t) for a, t in
                     zip(df["answer"], df["truth"])]
    return df


def test_qa_table_against_hand_counts():
    q = Question("direction", "Which way?", "direction", ("left", "right"))
    truth = ["left", "right", "left", "right"]
    fmri = ["left", "left", "none", "right"]                   # 2 of 4 right
    video = ["left", "right", "left", "left"]                  # 3 of 4
    shuffles = [["right", "right", "left", "left"],            # 2 of 4
                ["left", "right", "left", "right"],            # 4 of 4
                ["right", "left", "right", "left"]]            # 0 of 4
    rows = [("fmri", -1, "direction", i, a, t) for i, (a, t) in enumerate(zip(fmri, truth))]
    rows += [("video", -1, "direction", i, a, t) for i, (a, t) in enumerate(zip(video, truth))]
    semantic = ["right", "right", "left", "none"]              # 2 of 4, 1 names none
    rows += [("semantic", -1, "direction", i, a, t) for i, (a, t) in enumerate(zip(semantic, truth))]
    for k, sh in enumerate(shuffles):
        rows += [("shuffled", k, "direction", i, a, t) for i, (a, t) in enumerate(zip(sh, truth))]
    s = Question("size", "Small or large?", "size", ("small", "large"))
    rows += [("fmri", -1, "size", 0, "small", "small"), ("fmri", -1, "size", 1, "large", None),
             ("fmri", -1, "size", 2, "none", "large")]         # 1 of 2 scored; trial 1 medium
    t = qa_table(_answers(rows), [q, s], n_boot=200).set_index("question")
    assert list(t.reset_index().columns) == list(QA_TABLE_COLUMNS)
    d = t.loc["direction"]
    assert (d.k, d.n, d.fmri, d.video, d.chance) == (2, 4, 50.0, 75.0, 50.0)
    assert d.shuffled_mean == pytest.approx(50.0)             # (50 + 100 + 0) / 3
    # percentiles of (0, 50, 100): 2.5 % -> 0 + 0.05 * 50 = 2.5, 97.5 % -> 50 + 0.95 * 50
    assert (d.shuffled_low, d.shuffled_high) == pytest.approx((2.5, 97.5))
    assert d.n_shuffles == 3 and d.fmri_none == 25.0 and d.video_none == 0.0
    assert (d.semantic, d.semantic_none) == (50.0, 25.0)
    assert d.fmri_ci_low <= d.fmri <= d.fmri_ci_high
    z = t.loc["size"]
    assert (z.n, z.fmri, z.chance, z.n_shuffles) == (2, 50.0, 50.0, 0)
    assert np.isnan(z.video) and np.isnan(z.shuffled_mean) and np.isnan(z.semantic)
    assert z.fmri_none == pytest.approx(100 / 3)


def test_qa_answers_scores_shuffles_against_the_trial_asked_about(tiny):
    from llm4brain.dialogue import qa_answers

    n = 4
    trials = pd.DataFrame(dict(subject=["01"] * n, trial_index=[10, 11, 12, 13],
                               stim_file=[f"c{i}.mp4" for i in range(n)]))
    truth = pd.DataFrame(dict(agent=["dog", "car", "person", "fish"],
                              direction=["left", "right", "left", "right"]))
    qs = [Q["agent"], Q["direction"]]
    brain = torch.stack([_prefix(tiny, seed=s) for s in range(n)])
    a = qa_answers(tiny, brain, trials, truth, video=brain.flip(0), questions=qs, n_shuffles=2,
                   max_new_tokens=4, extra={"semantic": brain})
    assert len(a) == (1 + 1 + 1 + 2) * len(qs) * n
    sem, fm = (a[a["condition"] == c].reset_index(drop=True) for c in ("semantic", "fmri"))
    assert sem["text"].tolist() == fm["text"].tolist()              # the same tokens, the same answers
    with pytest.raises(ValueError, match="extra decoders"):
        qa_answers(tiny, brain, trials, truth, questions=qs, extra={"semantic": brain[:2]})
    sh = a[a["condition"] == "shuffled"]
    assert (sh["source_trial_index"] != sh["trial_index"]).all()     # another trial's fMRI
    f = a[(a["condition"] == "fmri") & (a["question"] == "agent")]
    assert f["truth"].tolist() == ["animal", "object", "person", "animal"]
    assert (f["correct"] == (f["answer"] == f["truth"]).astype(float)).all()
    z = qa_answers(tiny, brain, trials, truth.assign(size=["small", "medium", "large", "small"]),
                   questions=[Q["size"]], n_shuffles=0, max_new_tokens=2)
    assert z["truth"].isna().tolist() == [False, True, False, False]   # medium: not scored
    assert z["correct"].isna().tolist() == [False, True, False, False]


# ------------------------------------------------------------------ a smoke run
@pytest.fixture(scope="module")
def smoke_run(smoke_chain):
    """The session's smoke chain (conftest) plus Stage II with domain adaptation."""
    home = smoke_chain
    old = os.environ.get("LLM4BRAIN_HOME")
    os.environ["LLM4BRAIN_HOME"] = str(home)
    try:
        from llm4brain.captions import load_captions
        from llm4brain.config import load_config
        from llm4brain.data import load_splits, load_trial_cache
        from llm4brain.dialogue import load_chat_models
        from llm4brain.training.stage1 import load_stage1
        from llm4brain.training.stage2 import build_stage2_data, train_stage2
        from llm4brain.training.vlpretrain import load_video_llm

        cfg = load_config("smoke")
        tc = load_trial_cache(cfg)
        splits = load_splits(cfg.run_dir / "splits.json")
        vlm = load_video_llm(cfg)
        stage1 = load_stage1(cfg, tc, vlm=vlm)
        data = build_stage2_data(cfg, stage1, tc, splits, load_captions(cfg))
        train_stage2(cfg, data, vlm.llm, vlm.branch.proj, progress=False)
        yield dict(home=home, cfg=cfg, models=load_chat_models(cfg))
    finally:
        if old is None:
            os.environ.pop("LLM4BRAIN_HOME", None)
        else:
            os.environ["LLM4BRAIN_HOME"] = old


def _chat(argv, capsys):
    from llm4brain import cli

    rc = cli.main(["chat", "--profile", "smoke", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.slow
def test_kv_cache_reuse_equals_recompute_on_smoke_brain_tokens(smoke_run):
    m = smoke_run["models"]
    s = m.subjects[0]
    c = smoke_run["cfg"].llm
    _check_cache_reuse(m.llm, m.brain_tokens(s, 0), QS, max_new=10,
                       placeholder=c.placeholder, system_prompt=c.system_prompt)


@pytest.mark.slow
def test_history_round_trips_through_the_chat_template(smoke_run):
    m = smoke_run["models"]
    c = smoke_run["cfg"].llm
    conv = m.conversation(m.subjects[0], 1, max_new_tokens=8)
    for q in QS:
        conv.ask(q)
    tok = m.llm.tokenizer
    msgs = conv.messages
    assert msgs[0]["content"] == f"{c.placeholder}\n{QS[0]}"
    assert [x["role"] for x in msgs] == ["user", "assistant"] * 3
    expected = tok.apply_chat_template([{"role": "system", "content": c.system_prompt}]
                                       + msgs[:-1], tokenize=False, add_generation_prompt=True)
    assert conv.prompt_text() == expected
    assert render_chat(tok, msgs[:-1], system_prompt=c.system_prompt) == expected
    ids = conv.token_ids()[:conv.turns[-1].n_prompt]
    a = ids.index(-1)
    b = a + ids.count(-1)
    assert ids[a:b] == [-1] * (b - a) and b - a == len(conv.prefix)     # one contiguous block
    decoded = (tok.decode(ids[:a], skip_special_tokens=False) + c.placeholder
               + tok.decode(ids[b:], skip_special_tokens=False))
    assert decoded == expected
    # the first turn is exactly the prompt Stage II was trained on
    from llm4brain.models.video_llm import format_prompt

    first = format_prompt(tok, QS[0], placeholder=c.placeholder, system_prompt=c.system_prompt)
    assert expected.startswith(first)


@pytest.mark.slow
def test_cli_chat_scripted_prints_each_question_and_answer(smoke_run, capsys):
    m = smoke_run["models"]
    s = m.subjects[0]
    rc, out, err = _chat(["--subject", s, "--trial", "0", "--ask", QS[0], "--ask", QS[1]],
                         capsys)
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith(f"# sub-{s}, evaluation trial 0") and "fMRI tokens" in lines[0]
    assert lines[1] == f"Q: {QS[0]}" and lines[3] == f"Q: {QS[1]}"
    conv = m.conversation(s, 0)
    assert lines[2] == f"A: {conv.ask(QS[0])}" and lines[4] == f"A: {conv.ask(QS[1])}"
    rc, out_v, err = _chat(["--subject", f"sub-{s}", "--trial", "0", "--video", "--ask", QS[0]],
                           capsys)
    assert rc == 0, err
    v = out_v.strip().splitlines()
    assert "video tokens" in v[0]
    assert v[2] == f"A: {m.conversation(s, 0, video=True).ask(QS[0])}"


@pytest.mark.slow
def test_cli_chat_reads_questions_from_stdin(smoke_run, capsys, monkeypatch):
    import io

    m = smoke_run["models"]
    s = m.subjects[0]
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{QS[0]}\n{QS[1]}\n\nnever asked\n"))
    rc, out, err = _chat(["--subject", s, "--trial", "1"], capsys)
    assert rc == 0, err
    assert out.count("Q: ") == 2 and "never asked" not in out     # an empty line ends


@pytest.mark.slow
def test_cli_chat_errors_name_the_valid_range(smoke_run, capsys):
    m = smoke_run["models"]
    s = m.subjects[0]
    n = int((m.trials["subject"] == s).sum())
    rc, _, err = _chat(["--subject", "99", "--trial", "0", "--ask", "hi"], capsys)
    assert rc == 2 and "not a target subject" in err and f"sub-{s}" in err
    rc, _, err = _chat(["--subject", s, "--trial", str(n), "--ask", "hi"], capsys)
    assert rc == 2 and f"numbered 0..{n - 1}" in err and f"{n} evaluation trials" in err
    rc, _, err = _chat(["--subject", s, "--trial", "-1", "--ask", "hi"], capsys)
    assert rc == 2 and "out of range" in err


def test_cli_chat_without_a_trained_model_says_what_makes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LLM4BRAIN_HOME", str(tmp_path))
    rc, _, err = _chat(["--subject", "01", "--trial", "0", "--ask", "hi"], capsys)
    assert rc == 2
    assert "no trained Stage II model" in err and "05_stage2_domain_adaptation" in err
    assert "make smoke" in err and str(tmp_path) in err


@pytest.mark.slow
def test_qa_accuracy_on_the_smoke_run(smoke_run):
    from llm4brain.dialogue import plot_qa_accuracy, qa_accuracy, qa_results_dir, write_qa

    cfg, m = smoke_run["cfg"], smoke_run["models"]
    res = qa_accuracy(m, n_shuffles=1, max_new_tokens=8)
    files = write_qa(res, cfg)
    t = pd.read_csv(files["qa_table.csv"])
    assert files["qa_table.csv"].parent == qa_results_dir(cfg)
    assert list(t.columns) == list(QA_TABLE_COLUMNS)
    assert t["question"].tolist() == [q.name for q in QUESTIONS]
    assert np.allclose(t["chance"], [100 / q.k for q in QUESTIONS])
    n = len(m.trials)
    assert (t["n"] <= n).all() and (t.loc[t.question != "size", "n"] == n).all()
    cols = ("fmri", "video", "shuffled_mean", "fmri_none", "video_none")
    if cfg.eval.semantic_readout:
        cols += ("semantic", "semantic_none")
    for col in cols:
        assert t[col].between(0, 100).all(), col
    assert (t["shuffled_low"] <= t["shuffled_mean"] + 1e-9).all()
    assert (t["shuffled_mean"] <= t["shuffled_high"] + 1e-9).all()
    assert (t["n_shuffles"] == 1).all()
    a = res.answers
    assert len(a) == (1 + 1 + 1 + int(cfg.eval.semantic_readout)) * len(QUESTIONS) * n
    # fMRI answers are those of one-turn conversations with the same trial
    s = m.subjects[0]
    row = m.trial(s, 0)
    got = a[(a.condition == "fmri") & (a.question == "direction")
            & (a.trial_index == int(row["trial_index"]))]["text"].item()
    conv = m.conversation(s, 0, max_new_tokens=8)
    assert got == " ".join(conv.ask(Q["direction"].text).split())
    fig = plot_qa_accuracy(res.table, title="smoke")
    assert len(fig.axes[0].patches) >= 2 * len(QUESTIONS)
    print(res.table.round(1).to_string(index=False))


@pytest.mark.slow
def test_concept_table_on_the_smoke_run(smoke_run, tmp_path):
    import nibabel as nib

    from llm4brain.dialogue import (CONCEPT_TABLE_COLUMNS, concept_localisation,
                                    plot_concept_auc, plot_concept_maps, write_concepts)
    from llm4brain.sim import REGIONS

    cfg, m = smoke_run["cfg"], smoke_run["models"]
    tr = m.trials.head(4)
    # hand-made answers: the smoke decoder's own rarely name an agent or a scene
    answers = ["A red ball rolls left on the beach.",      # each within max_answer_tokens
               "A dog runs through the snowy forest.", "Nothing to see.",
               "A person walks slowly in the room."]
    dec = pd.DataFrame(dict(trial_index=tr["trial_index"], fmri2text=answers,
                            instruction=QS[0]))
    res = concept_localisation(m, dec, n_perm=50, batch_size=2)
    t = res.table
    assert list(t.columns) == list(CONCEPT_TABLE_COLUMNS)
    kinds = res.attributions.phrase_types
    assert len(t) == len(kinds) * len(REGIONS)
    n = t.drop_duplicates("phrase").set_index("phrase")["n_trials"]
    assert dict(n) == dict(agent=3, action=3, motion=2, scene=3, colour=1)
    assert t.groupby("phrase")["expected"].sum().eq(1).all()
    ok = t["auc"].notna()
    assert ok.all() or (t.loc[~ok, "n_region_voxels"] == 0).all()
    assert t.loc[ok, "auc"].between(0, 1).all()
    assert t.loc[ok, "p_perm"].between(1 / 51, 1).all()
    assert t.loc[ok, "p_spatial"].dropna().between(1 / 51, 1).all()
    maps = res.attributions.maps
    assert maps.shape[:2] == (4, len(kinds)) and maps.shape[2] == int(m.mask.sum())
    assert np.isnan(maps[2]).all() and np.isfinite(maps[0]).all()
    assert (np.abs(maps[0]).sum(1) > 0).all()
    files = write_concepts(res, cfg, tmp_path)
    back = pd.read_csv(files["concept_table.csv"])
    assert np.allclose(back["auc"], t["auc"], equal_nan=True)
    img = nib.load(str(files["concept_agent.nii.gz"]))
    assert img.shape == m.mask.shape and np.allclose(img.affine, m.affine)
    assert np.allclose(np.asarray(img.dataobj)[m.mask], res.attributions.mean_abs("agent"))
    assert "| agent | LOC (agent) | yes |" in files["concept_table.md"].read_text()
    assert len(plot_concept_maps(res).axes) >= 4
    assert plot_concept_auc(t).axes
    print(t[t["expected"]].round(3).to_string(index=False))


# ------------------------------------------------------------------ dialogue training data
def test_dialogue_instructions_follow_the_turns_and_their_sets():
    from llm4brain.config import DialogueConfig
    from llm4brain.dialogue.data import draw_dialogue_instructions

    d = DialogueConfig(turns=("brief", "reasoning", "detailed"), seed=3)
    files = ["c/x.mp4", "a/y.mp4", "b/z.mp4"]
    plan = draw_dialogue_instructions(files, d)
    assert len(plan) == 9
    assert list(dict.fromkeys(plan["stim_file"])) == files           # clips in the given order
    for f, g in plan.groupby("stim_file"):
        assert g["turn"].tolist() == [0, 1, 2]
        assert g["task"].tolist() == ["brief", "reasoning", "detailed"]
        for t, ins in zip(g["task"], g["instruction"]):
            assert ins in d.instructions(t)
    assert plan.equals(draw_dialogue_instructions(files, d))         # seeded
    with pytest.raises(ValueError, match="dialogue.turns names 'caption'"):
        DialogueConfig(turns=("brief", "caption"))
    with pytest.raises(ValueError, match="dialogue.reasoning is empty"):
        DialogueConfig(reasoning=())


def test_dialogue_prompt_holds_the_history_and_starts_as_stage_two(tiny):
    from llm4brain.config import LLMConfig
    from llm4brain.dialogue.data import dialogue_messages, dialogue_prompt
    from llm4brain.models.video_llm import format_prompt

    c = LLMConfig()
    tok = tiny.tokenizer
    one = dialogue_prompt(tok, c, ["Describe the video briefly."], [])
    assert one == format_prompt(tok, "Describe the video briefly.", placeholder=c.placeholder)
    three = dialogue_prompt(tok, c, ["q one", "q two", "q three"], ["a one", "a two"])
    assert three.count(c.placeholder) == 1 and three.index(c.placeholder) < three.index("q one")
    order = [three.index(x) for x in ("q one", "a one", "q two", "a two", "q three")]
    assert order == sorted(order)
    assert three.startswith(format_prompt(tok, "q one", placeholder=c.placeholder))
    with pytest.raises(ValueError, match="one answer per question"):
        dialogue_messages(["q"], ["a", "b"])
    with pytest.raises(ValueError, match="single-turn format"):
        dialogue_prompt(tok, LLMConfig(prompt_template="{system} Q: {prompt} A:"), ["q"], [])


@pytest.fixture(scope="module")
def dialogue_run(smoke_run):
    from llm4brain.data import load_splits, load_trial_cache
    from llm4brain.dialogue.data import dialogue_clips, generate_dialogues
    from llm4brain.training.tuning import with_overrides

    cfg = with_overrides(smoke_run["cfg"], {"dialogue.max_clips": 2,
                                            "dialogue.max_new_tokens": 4, "dialogue.steps": 1})
    m = smoke_run["models"]
    tc = load_trial_cache(cfg)
    splits = load_splits(cfg.run_dir / "splits.json")
    clips = dialogue_clips(cfg, tc, splits)
    d = generate_dialogues(cfg, clips, splits, vlm=m.vlm, features=m.features(), progress=False)
    return dict(cfg=cfg, tc=tc, splits=splits, clips=clips, dialogues=d, models=m)


@pytest.mark.slow
def test_surrogate_dialogues_are_cached_and_refuse_target_clips(dialogue_run):
    from llm4brain.captions import clip_records
    from llm4brain.dialogue.data import dialogue_path, dialogue_key, generate_dialogues
    from llm4brain.training.guard import LeakageError

    r = dialogue_run
    cfg, d, clips = r["cfg"], r["dialogues"], r["clips"]
    assert len(clips) == 2 and len(d) == 2 * len(cfg.dialogue.turns)
    assert set(d["stim_file"]) == set(clips)
    assert d["answer"].str.len().gt(0).all()
    assert dialogue_path(cfg, dialogue_key(cfg, clips)).is_file()
    # the second call reads the cache: the video-LLM is not touched
    again = generate_dialogues(cfg, clips, r["splits"], vlm=object(), features=object(),
                               progress=False)
    pd.testing.assert_frame_equal(again, d)
    train = set(clip_records(cfg, subjects=list(r["splits"].train_subjects))["stim_file"])
    target = set(clip_records(cfg, subjects=list(r["splits"].target_subjects))["stim_file"])
    outside = sorted(target - train) or ["Nowhere/never_shown.mp4"]
    with pytest.raises(LeakageError, match="not shown to a training subject"):
        generate_dialogues(cfg, [clips[0], outside[0]], r["splits"], vlm=object(),
                           features=object(), progress=False)


@pytest.mark.slow
def test_dialogue_examples_and_the_continuation_start_from_stage_two(dialogue_run):
    from llm4brain.captions import load_captions
    from llm4brain.dialogue.data import (dialogue_run_name, dialogue_stage2_data,
                                         train_dialogue_stage2)
    from llm4brain.training.stage2 import build_stage2_data, stage2_run_name
    from llm4brain.training.tuning import with_overrides

    r = dialogue_run
    cfg, m, d = r["cfg"], r["models"], r["dialogues"]
    data = build_stage2_data(cfg, m.stage1, r["tc"], r["splits"], load_captions(cfg))
    with pytest.raises(KeyError, match="no surrogate dialogue"):
        dialogue_stage2_data(data, d, m.llm.tokenizer, cfg.llm)
    dd = dialogue_stage2_data(data, d, m.llm.tokenizer, cfg.llm, clips_with_dialogue_only=True)
    n_trials = int(data.source_meta["stim_file"].isin(r["clips"]).sum())
    n_turns = len(cfg.dialogue.turns)
    assert n_trials >= 2 and len(dd.answers) == len(dd.prompts) == n_trials * n_turns
    assert dd.source_z.shape[0] == len(dd.answers) and len(dd.source_labels) == len(dd.answers)
    assert sorted(dd.source_meta["turn"].unique()) == list(range(n_turns))
    last = dd.source_meta.index[dd.source_meta["turn"] == n_turns - 1][0]
    f = dd.source_meta.loc[last, "stim_file"]
    g = d[d["stim_file"] == f].sort_values("turn")
    for a in g["answer"].iloc[:-1]:                    # earlier answers are in the history
        assert a in dd.prompts[last]
    assert dd.answers[last] == g["answer"].iloc[-1]
    # the continuation loads the trained Stage II model: with lr 0 its bridge stays that one
    c0 = with_overrides(cfg, {"stage2.lr": 0.0})
    res = train_dialogue_stage2(c0, data, d, m.stage2, m.llm, m.vlm.branch.proj,
                                overwrite=True, progress=False)
    assert res.run_name == dialogue_run_name(c0) != stage2_run_name(c0)
    for (k, a), b in zip(res.model.bridge.state_dict().items(),
                         m.stage2.bridge.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu()), k
    with pytest.raises(ValueError, match="dialogue.steps is 0"):
        train_dialogue_stage2(with_overrides(cfg, {"dialogue.steps": 0}), data, d, m.stage2,
                              m.llm, m.vlm.branch.proj)
