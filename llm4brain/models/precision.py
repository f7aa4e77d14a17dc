"""When to run under bfloat16 autocast: the ``auto`` value of the ``*bf16`` settings.

``video.encoder_bf16``, ``vlpretrain.bf16`` and ``stage2.bf16`` accept ``true``, ``false`` or
``auto`` (the default). bfloat16 autocast is 1.5-2.5x faster on CPUs with native bfloat16
arithmetic (AVX512-BF16 or AMX), but 20-50x *slower* on CPUs without it (e.g. AVX2 only),
where every bfloat16 op is emulated; and a bfloat16 run trains other models than a float32
one. ``auto`` therefore means:

* CUDA: ``torch.cuda.is_bf16_supported()``;
* CPU: float32, on every CPU, so that a run's numbers depend neither on the CPU's bfloat16
  support nor on timing (an earlier ``auto`` asked a short timing probe, whose verdict
  flipped between processes on one machine: one notebook trained in bfloat16, the next read
  its results in float32). ``true`` uses bfloat16 on a CPU with native bfloat16
  (:func:`cpu_has_native_bf16`; :func:`bf16_probe` measures what it gains);
* anything else (MPS, ...): float32.

The decision is made once per process and device type (:func:`resolve_bf16` caches it) and
announced once per setting, on the ``llm4brain`` logger (INFO) and as one printed line.
"""
from __future__ import annotations

import functools
import logging
import sys
import time
from pathlib import Path

import torch

from ..config._video import check_bf16_setting

__all__ = ["BF16_MIN_SPEEDUP", "cpu_capability", "cpu_bf16_flags", "cpu_has_native_bf16",
           "bf16_probe", "bf16_decision", "resolve_bf16", "clear_bf16_cache",
           "check_bf16_setting"]

log = logging.getLogger("llm4brain")

#: Speedup (float32 time / bfloat16 time of :func:`bf16_probe`) below which bfloat16 does not
#: pay on a CPU: ``bench/bench_precision.py`` reports it; ``auto`` no longer asks the probe.
BF16_MIN_SPEEDUP = 1.1

#: Capability flags (``torch.cpu.get_capabilities()`` / ``/proc/cpuinfo`` names) that mean
#: native bfloat16 arithmetic: x86 AVX512-BF16 / AMX-BF16, ARM BF16 / SVE-BF16.
_TORCH_FLAGS = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")
_PROC_FLAGS = {"avx512_bf16": "avx512_bf16", "amx_bf16": "amx_bf16",   # x86 "flags"
               "bf16": "bf16", "svebf16": "sve_bf16"}                  # ARM "Features"

_announced: set[tuple[str, str]] = set()


def cpu_capability() -> str:
    """``torch.backends.cpu.get_cpu_capability()`` (the ATen kernel level: ``AVX2``,
    ``AVX512``, ``DEFAULT``, ``SVE256``, ...), or ``unknown``. It does not tell AVX512-BF16
    apart from plain AVX512, hence :func:`cpu_bf16_flags`."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - old torch / exotic platform
        return "unknown"


def _torch_flags() -> set[str]:
    get = getattr(getattr(torch, "cpu", None), "get_capabilities", None)   # torch >= 2.9
    if get is None:
        return set()
    try:
        caps = get()
    except Exception:  # noqa: BLE001
        return set()
    return {f for f in _TORCH_FLAGS if caps.get(f) is True}


def _proc_flags(path: str = "/proc/cpuinfo") -> set[str]:
    if not sys.platform.startswith("linux"):
        return set()
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):        # the first CPU is enough
            words = set(value.split())
            return {name for word, name in _PROC_FLAGS.items() if word in words}
    return set()


def cpu_bf16_flags() -> tuple[str, ...]:
    """Native-bfloat16 flags of this CPU (sorted; empty without any): from
    ``torch.cpu.get_capabilities()`` and, on Linux, ``/proc/cpuinfo``."""
    flags = _torch_flags() | _proc_flags()
    cap = cpu_capability().upper()
    if "BF16" in cap or "AMX" in cap:          # a future capability level naming it
        flags.add(cap.lower())
    return tuple(sorted(flags))


def cpu_has_native_bf16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (AVX512-BF16, AMX-BF16, ARM BF16)."""
    return bool(cpu_bf16_flags())


def _workload():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(128, 256, generator=g)
    w = torch.randn(256, 256, generator=g)
    x = torch.randn(2, 32, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    k = torch.randn(32, 32, 3, 3, generator=g)

    def run():
        a @ w
        torch.nn.functional.conv2d(x, k, padding=1)
    return run


@torch.no_grad()
def bf16_probe(seconds_budget: float = 1.0) -> float:
    """Speedup of bfloat16 autocast over float32 on the CPU (``t_fp32 / t_bf16``).

    The workload is a (128, 256) x (256, 256) matmul and a 3x3 conv of a (2, 32, 32, 32)
    channels-last tensor, on one thread (a fair per-core comparison that other processes
    on a shared machine disturb least; the thread count is restored). About 1 ms a run in
    float32; with native bfloat16 the probe takes a few ms, and on a CPU that emulates
    bfloat16 it stops as soon as one bfloat16 run is 2x slower than float32 (~20-50 ms).
    Otherwise it repeats (best time of each) until ``seconds_budget`` is spent or 5 rounds
    are done.
    """
    run = _workload()

    def timed(bf16: bool) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            t = time.perf_counter()
            run()
            return time.perf_counter() - t

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        timed(False)                               # warm-up (allocations, kernel selection)
        t32 = timed(False)
        t16 = timed(True)                          # bfloat16 warm-up doubles as the bail-out
        if t16 > 2.0 * t32:
            return t32 / t16
        t16 = min(t16, timed(True))
        for _ in range(4):
            if time.perf_counter() - start > seconds_budget:
                break
            t32 = min(t32, timed(False))
            t16 = min(t16, timed(True))
        return t32 / max(t16, 1e-9)
    finally:
        torch.set_num_threads(threads)


@functools.lru_cache(maxsize=None)
def _auto_decision(device_type: str) -> tuple[bool, str]:
    if device_type == "cuda":
        ok = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        return ok, f"CUDA {'supports' if ok else 'does not support'} bfloat16"
    if device_type != "cpu":
        return False, f"auto uses bfloat16 only on CUDA, not on {device_type}"
    cap = cpu_capability()
    flags = cpu_bf16_flags()
    if not flags:
        return False, f"CPU without native bfloat16: {cap}"
    return False, (f"CPU {cap} with native bfloat16 [{', '.join(flags)}]: auto stays float32 on "
                   f"every CPU (the same numbers everywhere); set the key to true for bfloat16")


def bf16_decision(setting, device="cpu", *, name: str = "bf16") -> tuple[bool, str]:
    """``(use_bf16, reason)`` of a ``*bf16`` setting on ``device`` (see :func:`resolve_bf16`)."""
    check_bf16_setting(name, setting)
    if isinstance(setting, bool):
        return setting, f"{name} = {str(setting).lower()} in the config"
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return _auto_decision(dev.type)


def resolve_bf16(setting, device="cpu", *, name: str = "bf16") -> bool:
    """Whether to run under bfloat16 autocast for a ``*bf16`` setting on ``device``.

    Parameters
    ----------
    setting : bool or ``"auto"``
        ``True`` / ``False`` are returned as they are; ``"auto"`` decides by the device
        (module docstring), once per process and device type.
    device : str or torch.device
        Where the autocast region runs (``cpu``, ``cuda``, ``cuda:1``, ...).
    name : str
        The config key (``video.encoder_bf16``, ``vlpretrain.bf16``, ``stage2.bf16``), for
        the error message and the one-time announcement of an ``auto`` decision.

    Raises
    ------
    ValueError
        ``setting`` is neither a bool nor ``"auto"`` (the message names ``name``).
    """
    use, why = bf16_decision(setting, device, name=name)
    if not isinstance(setting, bool):
        dev_type = torch.device(device).type if device is not None else "cpu"
        if (name, dev_type) not in _announced:
            _announced.add((name, dev_type))
            msg = f"llm4brain: {name}=auto -> {'bfloat16' if use else 'float32'} ({why})"
            log.info(msg)
            print(msg, flush=True)
    return use


def clear_bf16_cache() -> None:
    """Forget the cached ``auto`` decisions and announcements (tests, changed threads)."""
    _auto_decision.cache_clear()
    _announced.clear()
