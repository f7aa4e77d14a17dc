"""The one training loop of llm4brain (MAE pretraining, video-LM pretraining, Stage I, Stage II).

>>> res = fit(model, loss_fn, sample_batch, run_dir=cfg.run_dir, name="stage1",
...           steps=cfg.stage1.steps, lr=cfg.stage1.lr, loop_cfg=cfg.train, seed=cfg.run.seed,
...           config=cfg)                                    # doctest: +SKIP
>>> res.log.plot(x="step", y=["clip", "l2l1"])              # doctest: +SKIP

* ``loss_fn(model, batch) -> (loss tensor, {"term": float, ...})``; it should call
  ``model(...)`` (not only sub-modules) when several GPUs are used, so that DDP syncs.
* ``sample_batch(i, rng) -> batch`` (tensor / tuple / dict of tensors) is called once per
  micro-batch, ``i = step * grad_accum + j``, with ``rng = numpy.random.default_rng((seed, i))``
  (plus the process rank on several GPUs): batches depend only on (seed, i), so a resumed run
  sees the same batches as an uninterrupted one.
* Checkpoints (``<run_dir>/checkpoints/<name>/state.pt``, written atomically) hold the
  **trainable parameters and all buffers** (frozen parameters are not saved: the caller rebuilds
  them deterministically, e.g. from the pretrained package), the optimizer, scheduler and
  grad-scaler states, python/numpy/torch RNG states, the step, the resolved config and the git
  revision (also as ``config.yaml`` / ``meta.json`` beside it).
* The final checkpoint marks the run finished: calling ``fit`` again loads it and returns
  without training, unless ``overwrite=True``. Nothing is ever overwritten silently.
* ``fit`` leaves train/eval modes alone: set them before calling (frozen parts in ``eval()``).
* Checkpoints are pickles: load only your own.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm.auto import tqdm

from ..atomic import write_json, write_text
from ..config import TrainLoopConfig, git_revision, to_dict

__all__ = ["fit", "FitResult", "load_checkpoint", "lr_factor", "checkpoint_path"]

_SPEC_KEYS = ("steps", "lr", "seed", "weight_decay", "grad_accum", "schedule", "warmup_fraction",
              "min_lr_ratio", "max_grad_norm", "betas", "num_processes")


@dataclass
class FitResult:
    """What :func:`fit` returns.

    model : the trained (unwrapped) model; log : DataFrame (step, every loss term, lr,
    elapsed); log_path, checkpoint_dir : Paths; step : optimiser steps done; trained : False
    when a finished run was only loaded; resumed_from : step the run resumed from (0: fresh).
    """

    model: torch.nn.Module
    log: pd.DataFrame
    log_path: Path
    checkpoint_dir: Path
    step: int
    trained: bool
    resumed_from: int = 0


def checkpoint_path(run_dir: str | os.PathLike, name: str) -> Path:
    """``<run_dir>/checkpoints/<name>/state.pt``."""
    return Path(run_dir) / "checkpoints" / name / "state.pt"


def lr_factor(step: int, steps: int, schedule: str = "cosine", warmup_fraction: float = 0.0,
              min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based).

    Linear warm-up over ``round(warmup_fraction * steps)`` steps, then ``constant`` (1) or
    ``cosine`` decay from 1 to ``min_lr_ratio`` at the last step.
    """
    warm = int(round(warmup_fraction * steps))
    if step < warm:
        return (step + 1) / (warm + 1)
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"unknown schedule '{schedule}' (setting train.schedule): "
                         f"cosine | constant")
    progress = (step - warm) / max(1, steps - warm - 1)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return min_lr_ratio + (1.0 - min_lr_ratio) * cosine


def _accelerator(loop_cfg: TrainLoopConfig, device: str | None):
    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState
    kw = dict(mixed_precision=loop_cfg.mixed_precision, cpu=(device == "cpu"))
    try:
        return Accelerator(**kw)
    except ValueError:  # a previous fit in this process used another precision
        if PartialState().num_processes > 1:
            raise
        AcceleratorState._reset_state()
        return Accelerator(**kw)


def _saved_names(model: torch.nn.Module, opt_params: set[int]) -> set[str]:
    names = {n for n, p in model.named_parameters(remove_duplicate=False)
             if p.requires_grad or id(p) in opt_params}
    return names | {n for n, _ in model.named_buffers(remove_duplicate=False)}


def _model_state(model: torch.nn.Module, names: set[str]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in names}


def _load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    unexpected = sorted(set(state) - set(model.state_dict()))
    if unexpected:
        raise ValueError(f"checkpoint {where} holds parameters the model lacks ({unexpected[:5]}"
                         f"...): the model was built with other settings than the run's config")
    model.load_state_dict(state, strict=False)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The saved dict of a checkpoint directory (``<run_dir>/checkpoints/<name>``) or its
    ``state.pt``: ``model`` (trainable + buffer tensors), ``step``, ``finished``, ..."""
    path = Path(path)
    file = path / "state.pt" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no checkpoint at {file}: train first (fit(..., name=...)) or "
                                f"check the run directory (setting run.run_dir)")
    return torch.load(file, map_location="cpu", weights_only=False)


def load_checkpoint(model: torch.nn.Module, path: str | os.PathLike,
                    state: dict | None = None) -> dict:
    """Load the saved (trainable + buffer) tensors of a checkpoint into ``model``.

    Parameters
    ----------
    model : nn.Module
        Built like the trained one (its frozen parts are not in the checkpoint).
    path : path
        A checkpoint directory (``<run_dir>/checkpoints/<name>``) or its ``state.pt``.
    state : dict, optional
        What :func:`read_checkpoint` returned for ``path`` (read once by a caller that needed
        it to build the model).

    Returns
    -------
    dict
        ``step``, ``finished``, ``config`` (resolved config dict or None), ``git_revision``,
        ``spec`` (steps, lr, seed, ...).
    """
    state = read_checkpoint(path) if state is None else state
    _load_model_state(model, state["model"], str(path))
    return {k: state.get(k) for k in ("step", "finished", "config", "git_revision", "spec")}


def _rng_state() -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(),
          "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state()
    return st


def _set_rng_state(st: dict) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state(st["cuda"])


def _atomic_save(obj: Any, file: Path) -> None:
    tmp = file.with_name(file.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, file)


def _write_log(rows: list[dict], log_path: Path) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    tmp = log_path.with_name(log_path.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, log_path)
    return df


def fit(model: torch.nn.Module, loss_fn: Callable, sample_batch: Callable, *,
        run_dir: str | os.PathLike, name: str, steps: int, lr: float,
        loop_cfg: TrainLoopConfig | None = None, seed: int = 0, weight_decay: float = 0.0,
        params=None, resume: bool = True, overwrite: bool = False, progress: bool = True,
        config=None, device: str | None = None,
        on_step_end: Callable[[torch.nn.Module, int], None] | None = None) -> FitResult:
    """Train ``model`` for ``steps`` optimiser steps with AdamW; checkpoint, log and resume.

    Parameters
    ----------
    model : nn.Module
    loss_fn : callable ``(model, batch) -> (loss, terms)``
        ``loss`` a scalar tensor, ``terms`` a dict of floats logged to CSV.
    sample_batch : callable ``(i, rng) -> batch``
        See the module docstring (``i`` counts micro-batches).
    run_dir : path
        Checkpoints go to ``<run_dir>/checkpoints/<name>/``, the log to
        ``<run_dir>/logs/<name>.csv``.
    name : str
        Name of this training run (letters, digits, ``_-.``).
    steps : int
        Optimiser steps.
    lr : float
        Peak learning rate.
    loop_cfg : TrainLoopConfig
        ``cfg.train`` (grad_accum, mixed_precision, checkpoint_every, log_every, schedule, ...).
    seed : int
        Seeds batches (with the micro-batch index) and the global RNGs at the start.
    weight_decay : float
        AdamW weight decay, applied to tensors with >= 2 dimensions when ``params`` is None.
    params : iterable of tensors or param-group dicts, optional
        What to optimise (default: every parameter with ``requires_grad``).
    resume : bool
        Continue from the last checkpoint if one exists (else raise rather than overwrite).
    overwrite : bool
        Delete this run's checkpoint and log and train from scratch.
    progress : bool
        Show a tqdm bar.
    config : Config or dict, optional
        Resolved configuration saved in every checkpoint.
    device : str, optional
        ``cpu`` forces the CPU; otherwise accelerate picks (GPU if present).
    on_step_end : callable ``(model, step)``, optional
        Called after each optimiser step (e.g. memory-bank refresh, validation).

    Returns
    -------
    FitResult
    """
    loop_cfg = loop_cfg if loop_cfg is not None else TrainLoopConfig()
    if not name or not all(c.isalnum() or c in "_-." for c in name):
        raise ValueError(f"fit: name {name!r} must be non-empty letters, digits, '_', '-', '.'")
    if steps < 1:
        raise ValueError(f"fit: steps must be >= 1, got {steps}")
    run_dir = Path(run_dir)
    ckpt_dir, log_path = run_dir / "checkpoints" / name, run_dir / "logs" / f"{name}.csv"
    state_file = ckpt_dir / "state.pt"
    acc = _accelerator(loop_cfg, device)
    k = loop_cfg.grad_accum
    spec = dict(steps=steps, lr=lr, seed=seed, weight_decay=weight_decay, grad_accum=k,
                schedule=loop_cfg.schedule, warmup_fraction=loop_cfg.warmup_fraction,
                min_lr_ratio=loop_cfg.min_lr_ratio, max_grad_norm=loop_cfg.max_grad_norm,
                betas=list(loop_cfg.betas), num_processes=acc.num_processes)

    state = None
    if overwrite:
        if acc.is_main_process:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
            log_path.unlink(missing_ok=True)
        acc.wait_for_everyone()
    elif state_file.is_file():
        state = torch.load(state_file, map_location="cpu", weights_only=False)
        keys = [x for x in _SPEC_KEYS if not (state["finished"] and x == "num_processes")]
        diff = {key: (state["spec"].get(key), spec[key]) for key in keys
                if state["spec"].get(key) != spec[key]}
        if diff:
            raise ValueError(f"checkpoint {state_file} was made with other settings "
                             f"(saved, requested): {diff}. Restore them, or pass overwrite=True "
                             f"to train '{name}' again from scratch.")
        if state["finished"]:
            _load_model_state(model, state["model"], str(state_file))
            log = pd.read_csv(log_path) if log_path.is_file() else pd.DataFrame()
            return FitResult(model, log, log_path, ckpt_dir, state["step"], False, state["step"])
        if not resume:
            raise FileExistsError(f"an unfinished checkpoint of '{name}' exists at {state_file}; "
                                  f"pass resume=True to continue it or overwrite=True to restart")

    if params is None:
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not trainable:
            raise ValueError(f"fit('{name}'): the model has no parameter with requires_grad")
        params = [{"params": [p for _, p in trainable if p.ndim >= 2],
                   "weight_decay": weight_decay},
                  {"params": [p for _, p in trainable if p.ndim < 2], "weight_decay": 0.0}]
        params = [g for g in params if g["params"]]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(loop_cfg.betas))
    opt_ids = {id(p) for g in opt.param_groups for p in g["params"]}
    names = _saved_names(model, opt_ids)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(
        s, steps, loop_cfg.schedule, loop_cfg.warmup_fraction, loop_cfg.min_lr_ratio))
    prepared, opt = acc.prepare(model, opt)
    clip_params = [p for g in opt.param_groups for p in g["params"]]

    rows: list[dict] = []
    window: list[dict] = []
    start, elapsed0 = 0, 0.0
    if state is not None:  # resume
        _load_model_state(model, state["model"], str(state_file))
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if acc.scaler is not None and state.get("scaler"):
            acc.scaler.load_state_dict(state["scaler"])
        rng_st = state["rng"]
        rank_file = ckpt_dir / f"rng_{acc.process_index}.pt"
        if acc.process_index > 0 and rank_file.is_file():
            rng_st = torch.load(rank_file, weights_only=False)
        _set_rng_state(rng_st)
        start, elapsed0, window = state["step"], state["elapsed"], state["window"]
        if log_path.is_file():
            rows = [r for r in pd.read_csv(log_path).to_dict("records") if r["step"] <= start]
    else:
        from accelerate.utils import set_seed
        set_seed(seed)
    if acc.is_main_process:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        log_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_dict = to_dict(config) if hasattr(config, "__dataclass_fields__") else config
    rev = git_revision()

    def save(step: int, finished: bool, elapsed: float) -> None:
        if acc.process_index > 0:
            torch.save(_rng_state(), ckpt_dir / f"rng_{acc.process_index}.pt")
        acc.wait_for_everyone()
        if not acc.is_main_process:
            return
        st = dict(format=1, name=name, step=step, finished=finished, spec=spec, elapsed=elapsed,
                  window=window, model=_model_state(acc.unwrap_model(prepared), names),
                  optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                  scaler=acc.scaler.state_dict() if acc.scaler is not None else None,
                  rng=_rng_state(), config=cfg_dict, git_revision=rev)
        _atomic_save(st, state_file)
        meta = {k: st[k] for k in ("name", "step", "finished", "spec", "elapsed", "git_revision")}
        write_json(ckpt_dir / "meta.json", meta, indent=1)
        if cfg_dict is not None:
            write_text(ckpt_dir / "config.yaml", yaml.safe_dump(cfg_dict, sort_keys=False))

    from accelerate.utils import send_to_device
    t0 = time.time()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=name,
               disable=not (progress and acc.is_main_process))
    for step in bar:
        terms: dict[str, float] = {"lr": sched.get_last_lr()[0]}
        for j in range(k):
            i = step * k + j
            key = (seed, i) if acc.num_processes == 1 else (seed, i, acc.process_index)
            batch = sample_batch(i, np.random.default_rng(key))
            batch = send_to_device(batch, acc.device)
            sync = contextlib.nullcontext() if j == k - 1 else acc.no_sync(prepared)
            with sync:
                with acc.autocast():
                    loss, parts = loss_fn(prepared, batch)
                if not torch.isfinite(loss.detach()):
                    raise FloatingPointError(f"fit('{name}'): loss is {float(loss.detach())} "
                                             f"at step {step + 1} (terms {parts}); lower the "
                                             f"learning rate or check the inputs for NaNs")
                acc.backward(loss / k)
            terms["loss"] = terms.get("loss", 0.0) + float(loss.detach()) / k
            for key_, v in parts.items():
                terms[key_] = terms.get(key_, 0.0) + float(v) / k
        if loop_cfg.max_grad_norm > 0:
            terms["grad_norm"] = float(acc.clip_grad_norm_(clip_params, loop_cfg.max_grad_norm))
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        done = step + 1
        if on_step_end is not None:  # before the checkpoint, so that resume sees its effect
            on_step_end(prepared, done)
        window.append(terms)
        elapsed = elapsed0 + time.time() - t0
        if done % loop_cfg.log_every == 0 or done == steps:
            row = {"step": done, **pd.DataFrame(window).mean().to_dict(), "elapsed": elapsed}
            rows.append(row)
            window = []
            if acc.is_main_process:
                _write_log(rows, log_path)
            bar.set_postfix(loss=f"{row['loss']:.4g}")
        if done == steps or (loop_cfg.checkpoint_every and done % loop_cfg.checkpoint_every == 0):
            save(done, done == steps, elapsed)
    bar.close()
    acc.wait_for_everyone()
    return FitResult(acc.unwrap_model(prepared), pd.DataFrame(rows), log_path, ckpt_dir, steps,
                     True, start)
