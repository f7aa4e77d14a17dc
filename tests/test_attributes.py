"""Attribute scorer: hand-written sentences, the simulator's own paraphrases, accuracy, chance."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from llm4brain.sim import CLASS_CATALOGUE, describe_clip, sample_clip_specs
from llm4brain.evaluation.attributes import (ATTRIBUTES, AttributeParser, attribute_accuracy,
                                             attribute_chance, attribute_correct,
                                             attribute_summary, distinct_share, load_lexicon,
                                             sign_flip_pvalue, truth_frame)


@pytest.fixture(scope="module")
def parser():
    return AttributeParser()


@pytest.mark.parametrize("text, expected", [
    # synonyms of the paraphrase lexicon
    ("A big green automobile cruises along from right to left among the trees in the woods.",
     dict(agent="car", action="driving", colour="green", size="large", direction="left",
          scene="forest", speed=None)),
    ("a tiny brown puppy leaps towards the right at the seaside, rapidly",
     dict(agent="dog", action="jumping", colour="brown", size="small", direction="right",
          scene="beach", speed="fast")),
    ("A tall man dressed in purple strolls unhurriedly from left to right in the dark of night.",
     dict(agent="person", action="walking", colour="purple", size="large", direction="right",
          speed="slow", scene="night")),
    # casing and punctuation
    ("IN A SNOWY LANDSCAPE, THERE IS A RED BIRD -- FLAPPING ITS WINGS!!! (quickly)",
     dict(agent="bird", action="flying", colour="red", scene="snow", speed="fast")),
    # "beach ball" is an agent, "green field" a scene, "turns cartwheels" not "turns"
    ("A red beach ball rolls in a green field.",
     dict(agent="ball", action="rolling", colour="red", scene="field")),
    ("A person turns cartwheels on a city street.",
     dict(agent="person", action="cartwheeling", scene="street")),
    ("A white car turns around on a city street.", dict(agent="car", action="turning")),
    # fish: the water is not the scene, "in the sea" is the beach, an aquarium a room
    ("A pond fish glides through the water in a pond in the desert.",
     dict(agent="fish", action="swimming", scene="desert")),
    ("A black fish swims in an aquarium inside a cosy room.", dict(scene="room", colour="black")),
])
def test_parse_hand_written(parser, text, expected):
    got = parser.parse(text)
    for k, v in expected.items():
        assert got[k] == v, (k, text, got)


def test_two_agents_subject_counts(parser):
    got = parser.parse("A small dog runs after a big yellow ball on the beach.")
    assert got["agent"] == "dog" and got["action"] == "running"
    assert got["size"] == "small" and got["colour"] == "yellow"   # first colour named
    got = parser.parse("A ball rolls past a dog.")
    assert got["agent"] == "ball"


def test_absent_attributes(parser):
    got = parser.parse("Something happens in the video.")
    assert {k for k, v in got.items() if v is not None} == {"size"}   # medium is unmarked
    assert got["size"] == "medium"
    strict = AttributeParser(unmarked=False).parse("Something happens in the video.")
    assert all(v is None for v in strict.values())
    assert AttributeParser().parse("")["agent"] is None
    # a word inside another word is no match: "woman" is a person, "manual" is nothing
    assert parser.parse("A manual is shown.")["agent"] is None
    assert parser.parse("A woman waves hello.")["agent"] == "person"


def test_every_simulator_paraphrase_round_trips(parser):
    rng = np.random.default_rng(3)
    specs = sample_clip_specs(CLASS_CATALOGUE, 12, rng, id_prefix="t")
    n = 0
    for sp in specs:
        desc, para = describe_clip(sp, rng, 7)
        for t in [desc] + para:
            got = parser.parse(t)
            assert got == {a: getattr(sp, a) for a in ATTRIBUTES}, t
            n += 1
    assert n == len(specs) * 8


def test_lexicon_from_file_and_errors(tmp_path):
    lex = load_lexicon()
    (tmp_path / "stimuli").mkdir()
    (tmp_path / "stimuli" / "lexicon.json").write_text(json.dumps(lex))
    p = AttributeParser(tmp_path)
    assert p.parse("A hound sprints.")["agent"] == "dog"
    with pytest.raises(FileNotFoundError, match="lexicon.json"):
        AttributeParser(tmp_path / "nothing")
    with pytest.raises(ValueError, match="names both"):
        AttributeParser({"attributes": {"agent": {"dog": ["hound"], "cat": ["hound"]}}})
    with pytest.raises(ValueError, match="'attributes'"):
        AttributeParser({"words": {}})


def test_accuracy_chance_and_distinct():
    truth = pd.DataFrame(dict(agent=["dog", "dog", "car", "car"], action=["running"] * 2 + ["driving"] * 2,
                              colour=["red", "blue", "red", "blue"], size=["small", "medium", "large", "small"],
                              direction=["left", "right", "left", "right"], speed=["fast"] * 4,
                              scene=["beach", "room", "snow", "night"]))
    texts = ["A small red dog runs quickly to the left on a sunny beach.",
             "A red dog runs quickly to the left on a sunny beach.",
             "A large red car drives quickly to the left in the snow.",
             "A car."]
    p = AttributeParser()
    pred = p.frame(texts)
    ok = attribute_correct(pred, truth)
    assert ok["agent"].tolist() == [1, 1, 1, 1]
    assert ok["colour"].tolist() == [1, 0, 1, 0]
    assert ok["size"].tolist() == [1, 1, 1, 0]          # text 2 unsaid = medium = right
    assert ok["all"].tolist() == [1, 0, 1, 0]
    assert ok["agent+action"].tolist() == [1, 1, 1, 0]
    acc = attribute_accuracy(pred, truth)
    assert acc["colour"] == 0.5 and acc["all"] == 0.5
    ch = attribute_chance(pred, truth)
    # predicted agents: dog 2, car 2; truth dog 2, car 2 -> 0.5*0.5 + 0.5*0.5
    assert ch["agent"] == pytest.approx(0.5)
    # the exact mean over all 24 pairings of the 4 texts with the 4 clips is the same
    sims = [attribute_accuracy(pred.iloc[list(perm)].reset_index(drop=True), truth)["agent"]
            for perm in itertools.permutations(range(4))]
    assert np.mean(sims) == pytest.approx(ch["agent"], abs=1e-9)
    assert distinct_share(texts) == 1.0
    assert distinct_share(["a", "A", "b", "a "]) == 0.5


def test_sign_flip_pvalue():
    rng = np.random.default_rng(0)
    assert sign_flip_pvalue(np.ones(50), 2000, rng) < 0.001
    p_null = sign_flip_pvalue(rng.normal(size=200), 2000, rng)
    assert 0.01 < p_null < 0.99
    assert sign_flip_pvalue(-np.ones(50), 2000, rng) > 0.99


def test_summary_and_truth_frame():
    stim = pd.DataFrame(dict(stim_file=["a.mp4", "b.mp4"], agent=["dog", "car"],
                             action=["running", "driving"], colour=["red", "blue"],
                             size=["small", "large"], direction=["left", "right"],
                             speed=["fast", "slow"], scene=["beach", "room"]))
    truth = truth_frame(stim, ["b.mp4", "a.mp4", "b.mp4"])
    assert truth["agent"].tolist() == ["car", "dog", "car"]
    with pytest.raises(ValueError, match="not in the stimulus table"):
        truth_frame(stim, ["c.mp4"])
    with pytest.raises(ValueError, match="real data has no truth"):
        truth_frame(stim.drop(columns="scene"))
    texts = {"model": ["A big blue car drives slowly to the right in a room."] * 3}
    shuffles = {"model": [["A small red dog runs."] * 3]}
    s = attribute_summary(texts, truth, chance=shuffles, n_boot=200, n_perm=500)
    row = s.set_index("attribute").loc["agent"]
    assert row["accuracy"] == pytest.approx(200 / 3)
    assert row["shuffle_chance"] == pytest.approx(100 / 3)
    assert row["distinct"] == pytest.approx(100 / 3)
    assert 0 <= row["ci_low"] <= row["accuracy"] <= row["ci_high"] <= 100
    assert set(s["attribute"]) == set(ATTRIBUTES) | {"agent+action", "all"}


def test_stage2_attribute_tables_and_report(tmp_path):
    from types import SimpleNamespace

    import matplotlib
    matplotlib.use("Agg")
    from llm4brain.evaluation.attributes import ATTRIBUTE_CONDITIONS, stage2_attribute_tables
    from llm4brain.plotting import plot_attribute_bars

    stim = pd.DataFrame(dict(stim_file=["a", "b", "c", "d"], agent=["dog", "car", "dog", "car"],
                             action=["running", "driving"] * 2, colour=["red"] * 4,
                             size=["medium"] * 4, direction=["left"] * 4, speed=["fast"] * 4,
                             scene=["beach"] * 4))
    truth_txt = {"a": "A red dog runs quickly to the left on a sunny beach.",
                 "b": "A red car drives quickly to the left on a sunny beach.",
                 "c": "A red dog runs quickly to the left on a sunny beach.",
                 "d": "A red car drives quickly to the left on a sunny beach."}
    files = list(stim_files := ["a", "b", "c", "d"])
    base = pd.DataFrame(dict(subject=["27", "27", "28", "28"], trial_index=[0, 1, 0, 1],
                             stim_file=files, video2text=[truth_txt[f] for f in files]))
    model = base.assign(fmri2text=[truth_txt[f] for f in files])               # perfect
    swapped = base.assign(fmri2text=[truth_txt[f] for f in ["b", "a", "d", "c"]])  # always wrong agent
    baseline = model.iloc[::-1].reset_index(drop=True)                          # other row order
    res = SimpleNamespace(model=model, noda=None, baseline=baseline, ceiling=None,
                          chance=[swapped, swapped])
    t = stage2_attribute_tables(res, stim, n_boot=100, n_perm=200)
    tr = t["truth"].set_index(["condition", "attribute"])
    assert tr.loc[(ATTRIBUTE_CONDITIONS["model"], "agent"), "accuracy"] == 100
    assert tr.loc[(ATTRIBUTE_CONDITIONS["baseline"], "agent"), "accuracy"] == 100   # aligned by trial
    assert tr.loc[(ATTRIBUTE_CONDITIONS["chance"], "agent"), "accuracy"] == 0
    assert tr.loc[(ATTRIBUTE_CONDITIONS["model"], "agent"), "shuffle_chance"] == 0
    assert tr.loc[(ATTRIBUTE_CONDITIONS["model"], "agent"), "p_vs_shuffle"] < 0.1
    assert tr.loc[(ATTRIBUTE_CONDITIONS["model"], "scene"), "p_vs_shuffle"] == 1.0  # no difference
    v = t["video2text"].set_index(["condition", "attribute"])
    assert v.loc[(ATTRIBUTE_CONDITIONS["model"], "all"), "accuracy"] == 100
    fig = plot_attribute_bars(t["truth"])
    assert len(fig.axes[0].patches) == 4 * 9        # 4 conditions x 9 attribute scores
    # missing trials are an error naming the fix
    res.baseline = baseline.iloc[:2]
    with pytest.raises(ValueError, match="re-run notebook 05"):
        stage2_attribute_tables(res, stim, n_boot=10, n_perm=10)
