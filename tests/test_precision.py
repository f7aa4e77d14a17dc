"""The ``auto`` value of the bf16 settings: CPU/CUDA decision, caching, config validation."""
from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from llm4brain.config import ConfigError, load_config
from llm4brain.config._train import Stage2Config
from llm4brain.config._video import VideoConfig, VLPretrainConfig
from llm4brain.models import precision
from llm4brain.models.precision import (bf16_decision, bf16_probe, cpu_bf16_flags,
                                        cpu_capability, cpu_has_native_bf16, resolve_bf16)

KEYS = ("video.encoder_bf16", "vlpretrain.bf16", "stage2.bf16")


@pytest.fixture(autouse=True)
def _fresh_cache():
    precision.clear_bf16_cache()
    yield
    precision.clear_bf16_cache()      # no mocked decision leaks into other tests


def _cpu(monkeypatch, native: bool, speedup: float | None = None) -> list:
    """Mock the CPU: native-bf16 flag and probe result; returns the list of probe calls."""
    calls: list = []

    def probe(*a, **kw):
        calls.append(1)
        if speedup is None:
            raise AssertionError("the probe must not run")
        return speedup

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(precision, "cpu_bf16_flags",
                        lambda: ("amx_bf16", "avx512_bf16") if native else ())
    monkeypatch.setattr(precision, "bf16_probe", probe)
    return calls


# ----------------------------------------------------------------------------- decision
def test_native_cpu_stays_float32_without_asking_the_probe(monkeypatch):
    """auto on a CPU never depends on timing: a probe that pays is not even asked."""
    calls = _cpu(monkeypatch, native=True, speedup=1.8)
    use, why = bf16_decision("auto", "cpu", name="stage2.bf16")
    assert use is False and calls == []
    assert "native bfloat16 [amx_bf16, avx512_bf16]" in why and "true" in why


def test_auto_is_the_same_in_every_process_of_one_machine(monkeypatch):
    """The old probe-based auto flipped between processes (cold 0.3x, warm 1.8x): a fresh
    decision after each of three probe outcomes is the same."""
    for speedup in (0.27, 1.79, 3.0):
        precision.clear_bf16_cache()
        _cpu(monkeypatch, native=True, speedup=speedup)
        assert resolve_bf16("auto", "cpu", name="vlpretrain.bf16") is False
    assert resolve_bf16(True, "cpu", name="vlpretrain.bf16") is True


def test_cpu_without_native_bf16_skips_the_probe(monkeypatch):
    calls = _cpu(monkeypatch, native=False)
    assert resolve_bf16("auto", "cpu", name="video.encoder_bf16") is False
    assert resolve_bf16("auto", torch.device("cpu"), name="vlpretrain.bf16") is False
    assert calls == []
    assert "without native bfloat16" in bf16_decision("auto", "cpu")[1]


@pytest.mark.parametrize("value", [True, False])
def test_explicit_values_bypass_everything(monkeypatch, value):
    def boom(*a, **kw):
        raise AssertionError("explicit settings must not inspect the machine")

    for fn in ("cpu_has_native_bf16", "cpu_bf16_flags", "bf16_probe", "cpu_capability"):
        monkeypatch.setattr(precision, fn, boom)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", boom)
    for dev in ("cpu", "cuda", "cuda:1"):
        assert resolve_bf16(value, dev, name="stage2.bf16") is value


def test_decision_is_cached_per_device_type_and_announced_once(monkeypatch, capsys, caplog):
    _cpu(monkeypatch, native=True, speedup=2.0)
    asked = []
    real = precision.cpu_bf16_flags
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: asked.append(1) or real())
    with caplog.at_level(logging.INFO, logger="llm4brain"):
        for _ in range(5):
            assert resolve_bf16("auto", "cpu", name="stage2.bf16") is False
        assert resolve_bf16("auto", "cpu", name="vlpretrain.bf16") is False
    assert asked == [1]                                   # one decision per process
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [f"llm4brain: stage2.bf16=auto -> float32 (CPU {cpu_capability()} with "
                     "native bfloat16 [amx_bf16, avx512_bf16]: auto stays float32 on every CPU "
                     "(the same numbers everywhere); set the key to true for bfloat16)",
                     lines[1]]
    assert lines[1].startswith("llm4brain: vlpretrain.bf16=auto -> float32")
    assert sum("stage2.bf16=auto" in r.getMessage() for r in caplog.records) == 1


def test_cuda_auto_asks_cuda(monkeypatch):
    _cpu(monkeypatch, native=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for supported in (True, False):
        precision.clear_bf16_cache()
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        assert resolve_bf16("auto", "cuda:0", name="stage2.bf16") is supported


def test_other_devices_stay_float32(monkeypatch):
    _cpu(monkeypatch, native=True, speedup=3.0)
    assert resolve_bf16("auto", "meta", name="stage2.bf16") is False


@pytest.mark.parametrize("bad", ["yes", "True", "", 1, None])
def test_resolve_rejects_other_values_naming_the_key(bad):
    with pytest.raises(ValueError, match=r"stage2\.bf16 must be true, false or auto"):
        resolve_bf16(bad, "cpu", name="stage2.bf16")


# ----------------------------------------------------------------------------- CPU flags
def test_proc_cpuinfo_flags(monkeypatch, tmp_path):
    monkeypatch.setattr(precision.sys, "platform", "linux")
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile "
                   "amx_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert precision._proc_flags(str(x86)) == {"avx512_bf16", "amx_bf16"}
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd sve svebf16 bf16 i8mm\n")
    assert precision._proc_flags(str(arm)) == {"bf16", "sve_bf16"}
    avx2 = tmp_path / "avx2"
    avx2.write_text("flags\t\t: fpu sse2 avx avx2 fma\n")
    assert precision._proc_flags(str(avx2)) == set()
    assert precision._proc_flags(str(tmp_path / "missing")) == set()
    monkeypatch.setattr(precision.sys, "platform", "darwin")     # no /proc: torch only
    assert precision._proc_flags(str(x86)) == set()


def test_native_flag_from_torch_capabilities(monkeypatch):
    monkeypatch.setattr(precision, "_proc_flags", lambda *a: set())
    monkeypatch.setattr(precision, "cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(torch.cpu, "get_capabilities",
                        lambda: {"avx512_f": True, "avx512_bf16": True, "amx_bf16": False},
                        raising=False)
    assert cpu_bf16_flags() == ("avx512_bf16",) and cpu_has_native_bf16()
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_f": True},
                        raising=False)
    assert cpu_bf16_flags() == () and not cpu_has_native_bf16()      # plain AVX512: no
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: 1 / 0, raising=False)
    assert not cpu_has_native_bf16()                                 # robust to errors


def test_this_machine_is_consistent():
    assert isinstance(cpu_capability(), str) and cpu_capability()
    flags = cpu_bf16_flags()
    assert isinstance(flags, tuple) and cpu_has_native_bf16() == bool(flags)


def test_probe_is_cheap_and_restores_threads():
    threads = torch.get_num_threads()
    t = time.perf_counter()
    s = bf16_probe()
    assert time.perf_counter() - t < 3.0
    assert s > 0 and torch.get_num_threads() == threads


# ----------------------------------------------------------------------------- config
def test_default_profile_is_auto():
    cfg = load_config("default")
    assert (cfg.video.encoder_bf16, cfg.vlpretrain.bf16, cfg.stage2.bf16) == ("auto",) * 3
    assert load_config("had").vlpretrain.bf16 is False          # explicit value kept
    assert VideoConfig().encoder_bf16 == VLPretrainConfig().bf16 == Stage2Config().bf16 == "auto"


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("value", [True, False, "auto"])
def test_config_accepts_true_false_auto(key, value):
    sec, sub = key.split(".")
    cfg = load_config("default", overrides={sec: {sub: value}})
    assert getattr(getattr(cfg, sec), sub) == value


@pytest.mark.parametrize("key", KEYS)
def test_config_rejects_yes_naming_the_key(key):
    sec, sub = key.split(".")
    with pytest.raises(ConfigError, match=rf"{key} must be true, false or auto, got 'yes'"):
        load_config("default", overrides={sec: {sub: "yes"}})
    with pytest.raises(ValueError, match=rf"{key} must be true, false or auto"):
        load_config("default").replace(**{f"{sec}__{sub}": "on"})
    with pytest.raises(ConfigError, match=sub):
        load_config("default", overrides={sec: {sub: 1}})


# ----------------------------------------------------------------------------- call sites
def test_frame_encoder_auto_on_cpu_without_bf16(monkeypatch, tmp_path):
    from llm4brain.models.frame_encoders import build_frame_encoder, frame_feature_key

    calls = _cpu(monkeypatch, native=False)
    cfg = load_config("smoke", overrides={"run": {"run_dir": str(tmp_path)},
                                          "video": {"image_size": 32}})
    assert cfg.video.encoder_bf16 == "auto"
    enc = build_frame_encoder(cfg)
    assert enc.bf16 is False and calls == []
    assert enc(torch.zeros(2, 32, 32, 3, dtype=torch.uint8)).dtype == torch.float32
    # the cache key hashes the setting as written, not the machine's decision
    key = frame_feature_key(cfg, "frames", [0, 1])
    precision.clear_bf16_cache()
    _cpu(monkeypatch, native=True, speedup=2.0)
    assert build_frame_encoder(cfg).bf16 is False                  # auto: float32 on a CPU
    assert build_frame_encoder(cfg.replace(video__encoder_bf16=True)).bf16 is True
    assert frame_feature_key(cfg, "frames", [0, 1]) == key
    assert build_frame_encoder(cfg.replace(video__encoder_bf16=False)).bf16 is False


class _AutocastSpy(nn.Module):
    """Returns 1.0 when called under CPU autocast, else 0.0."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, *args):
        return torch.tensor(float(torch.is_autocast_enabled("cpu")))


@pytest.mark.parametrize("native", [False, True])
def test_vlpretrain_loss_resolves_auto(monkeypatch, native):
    from llm4brain.training.vlpretrain import vl_loss, vl_loss_fn

    _cpu(monkeypatch, native=native, speedup=2.0)
    batch = {"features": torch.zeros(1), "instructions": ["x"], "answers": ["y"]}
    assert float(vl_loss(_AutocastSpy(), batch, "auto")) == 0.0       # float32 on any CPU
    loss, _ = vl_loss_fn("auto")(_AutocastSpy(), batch)
    assert float(loss) == 0.0
    loss, _ = vl_loss_fn(True)(_AutocastSpy(), batch)
    assert float(loss) == 1.0
    assert float(vl_loss(_AutocastSpy(), batch, True)) == 1.0


@pytest.mark.parametrize("native", [False, True])
def test_stage2_model_resolves_auto(monkeypatch, native):
    from llm4brain.models.stage2 import Stage2Model

    _cpu(monkeypatch, native=native, speedup=2.0)
    fake = SimpleNamespace(cfg=Stage2Config())          # bf16 = "auto"
    assert Stage2Model.use_bf16(fake, torch.device("cpu")) is False         # auto on a CPU
    assert Stage2Model.use_bf16(SimpleNamespace(cfg=Stage2Config(bf16=True)), "cpu") is True
    assert Stage2Model.use_bf16(SimpleNamespace(cfg=Stage2Config(bf16=False)), "cpu") is False
