"""Run identity: one helper names every trained run, and the names of existing runs stay put."""
from __future__ import annotations

import pytest

from llm4brain.config import NOT_IDENTITY, config_hash, identity, load_config, run_key
from llm4brain.training.mae import mae_run_name
from llm4brain.training.stage1 import stage1_run_name
from llm4brain.training.stage2 import stage2_run_name
from llm4brain.training.vlpretrain import video_llm_id

#: Names of the checkpoints existing runs were saved under (runs/<profile>/checkpoints/).
#: Stage I (and the Stage II runs built on it) were renamed on purpose when the concept
#: projector became the simulated profiles' default.
KNOWN = {
    "default": dict(mae="mae_cnn3d-430a65f48928", video="3fb061205e53",
                    stage1="stage1-b33fb7896970", da="stage2-da-da3f987413a3",
                    noda="stage2-noda-da3f987413a3"),
    "smoke": dict(mae="mae_cnn3d-e1720d639e53", video="c76e03b48c1e",
                  stage1="stage1-0cda19eeff80", da="stage2-da-cca959b74642",
                  noda="stage2-noda-cca959b74642"),
}


@pytest.mark.parametrize("profile", sorted(KNOWN))
def test_run_names_of_the_profiles_are_unchanged(profile):
    cfg = load_config(profile)
    got = dict(mae=mae_run_name(cfg), video=video_llm_id(cfg), stage1=stage1_run_name(cfg),
               da=stage2_run_name(cfg, True), noda=stage2_run_name(cfg, False))
    assert got == KNOWN[profile]


def test_ablation_switches_and_explicit_seed_enter_the_names():
    cfg = load_config("smoke", overrides={"stage1": {"align": False, "projector": "spatial"},
                                          "mae": {"pretrained": False}, "stage2": {"seed": 3}})
    assert mae_run_name(cfg) == KNOWN["smoke"]["mae"]          # MAE does not depend on them
    assert stage1_run_name(cfg) == "stage1-04a71c0cb446"
    assert stage2_run_name(cfg, True) == "stage2-da-55a5e818fdcb"
    s1 = identity(cfg, "stage1")
    assert s1["align"] is False and "projector_token_dim" in s1 and "projector_dropout" in s1
    assert identity(cfg, "stage2")["seed"] == 3 and identity(cfg, "mae")["pretrained"] is False


@pytest.mark.parametrize("section,field,value", [
    ("stage1", "n_candidates", 7), ("stage1", "eval_batch_size", 3), ("stage2", "max_shuffles", 1),
    ("llm", "max_new_tokens", 5), ("llm", "temperature", 0.5), ("video", "encoder_batch_size", 2),
])
def test_settings_outside_the_identity_keep_the_names(section, field, value):
    assert field in NOT_IDENTITY[section]
    base = load_config("smoke")
    cfg = load_config("smoke", overrides={section: {field: value}})
    names = lambda c: (video_llm_id(c), stage1_run_name(c), stage2_run_name(c, True))  # noqa: E731
    assert names(cfg) == names(base)
    assert field not in identity(cfg, section)


@pytest.mark.parametrize("section,field,value", [
    ("stage1", "lr", 0.123), ("stage2", "lam", 0.42), ("llm", "placeholder", "<vid>"),
    ("train", "grad_accum", 3),
])
def test_settings_inside_the_identity_change_the_names(section, field, value):
    base = load_config("smoke")
    cfg = load_config("smoke", overrides={section: {field: value}})
    assert stage2_run_name(cfg, True) != stage2_run_name(base, True)
    assert identity(cfg, section)[field] == value


def test_run_key_is_prefix_and_config_hash():
    key = {"a": 1, "b": [1, 2]}
    assert run_key("stage1", key) == f"stage1-{config_hash(key)}"
    assert run_key("", key) == config_hash(key) == config_hash({"b": [1, 2], "a": 1})
    assert run_key("x", {"a": 2}) != run_key("x", key)
