"""The training loop shared by SSL pretraining and CTC finetuning.

It owns what both have in common: threads and seeds, device and DDP, AdamW with a
warmup + decay LR schedule, gradient clipping, deterministic batches addressable by
step, resumable checkpoints, a history of logged values, a progress bar and throughput.
The objective itself is a ``step_fn`` supplied by the caller.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from s6damon.train import checkpoint as ck
from s6damon.train import distributed as dd
from s6damon.train.data import AudioSet, Batch, BatchSchedule


def lr_factor(step: int, total: int, warmup: int, kind: str, hold_fraction: float = 0.0,
              final_scale: float = 0.0) -> float:
    """Multiplier of the peak learning rate at ``step``.

    Linear warmup over ``warmup`` steps, then ``kind``: ``constant``; ``linear`` or
    ``cosine`` decay to ``final_scale``; ``tri_stage`` holds the peak for ``hold_fraction``
    of all steps, then decays exponentially to ``final_scale``.
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    start = warmup
    if kind == "tri_stage":
        start = min(total, warmup + int(hold_fraction * total))
        if step < start:
            return 1.0
    span = max(1, total - start)
    frac = min(1.0, (step - start) / span)
    if kind == "linear":
        return 1.0 - (1.0 - final_scale) * frac
    if kind == "cosine":
        return final_scale + (1.0 - final_scale) * 0.5 * (1 + math.cos(math.pi * frac))
    if kind == "tri_stage":
        return math.exp(math.log(max(final_scale, 1e-4)) * frac)
    raise ValueError(f"unknown LR schedule {kind!r}")


@dataclass
class LoopConfig:
    """Settings of one run of :func:`run_loop` (taken from Pretrain/FinetuneParams)."""

    steps: int
    learning_rate: float
    warmup_steps: int
    schedule: str
    weight_decay: float
    grad_clip: float
    batch_seconds: float
    log_every: int
    checkpoint_every: int
    progress: bool
    desc: str
    hold_fraction: float = 0.0
    final_lr_scale: float = 0.0
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6


#: step_fn(model, batch, step) -> (loss to backpropagate, values to log)
StepFn = Callable[[torch.nn.Module, Batch, int], tuple[torch.Tensor, dict[str, float]]]
#: hook(model, step, state) -> values to log (or None); called after each optimiser step
Hook = Callable[[torch.nn.Module, int, dict[str, Any]], dict[str, Any] | None]


@dataclass
class LoopResult:
    history: list[dict[str, Any]]
    state: dict[str, Any]
    steps_done: int
    resumed_from: int
    seconds: float
    audio_seconds: float
    stopped_early: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Audio seconds processed per wall-clock second in this process's run."""
        return self.audio_seconds / self.seconds if self.seconds > 0 else 0.0


def run_loop(model: torch.nn.Module, data: AudioSet, cfg: LoopConfig, step_fn: StepFn, env: dd.DistEnv,
             ckpt_dir: str | Path, fp: str, seed: int, batch_fn: Callable[[list[int], int], Batch] | None = None,
             hooks: list[Hook] | None = None, stop_at: int | None = None) -> LoopResult:
    """Train ``model`` for ``cfg.steps`` optimiser steps, resuming from ``ckpt_dir``.

    Args:
        model: the (unwrapped) model; it is moved to ``env.device`` and DDP-wrapped here.
        data: training audio.
        cfg: optimisation and bookkeeping settings.
        step_fn: computes the loss of one batch.
        env: distributed environment.
        ckpt_dir: resumable checkpoints (rank 0 writes).
        fp: fingerprint of the run (params + data) guarding resumption.
        seed: seeds the batch order (and, per rank, the RNGs).
        batch_fn: ``(row positions, step) -> Batch``; default ``data.batch(rows)``.
        hooks: called after each step (evaluation, schedules, freezing).
        stop_at: stop after this step as if killed (tests; time-boxed runs). The last
            checkpoint stays, so the next call resumes.

    Returns:
        History entries (``step``, ``lr``, logged values averaged since the last entry, and
        whatever hooks returned), the loop state and timing.
    """
    ck.seed_everything(seed + env.rank)
    wrapped = dd.wrap(model, env)
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        # no weight decay on norms, biases and the masked-token embedding (standard practice)
        (no_decay if p.ndim < 2 or "norm" in n or "masked_spec_embed" in n else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.learning_rate, betas=cfg.betas, eps=cfg.eps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(
        s, cfg.steps, cfg.warmup_steps, cfg.schedule, cfg.hold_fraction, cfg.final_lr_scale))
    state: dict[str, Any] = {"history": []}
    start = 0
    blob = ck.load_latest(ckpt_dir, fp)
    if blob is not None:
        model.load_state_dict(blob["model"])
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        rngs = blob["rng"]
        ck.set_rng_state(rngs[env.rank] if env.rank < len(rngs) else rngs[0])
        state, start = blob["state"], int(blob["step"])
    hooks = hooks or []
    batch_fn = batch_fn or (lambda rows, step: data.batch(rows))
    schedule = BatchSchedule(data.durations, cfg.batch_seconds, seed, env.rank, env.world_size)
    batches = schedule.iter_from(start)
    acc: dict[str, list[float]] = {}
    t0, audio, step = time.perf_counter(), 0.0, start
    bar = tqdm(total=cfg.steps, initial=start, desc=cfg.desc, disable=not (cfg.progress and env.is_main),
               dynamic_ncols=True)
    stopped = False
    wrapped.train()
    while step < cfg.steps:
        if stop_at is not None and step >= stop_at:
            stopped = True
            break
        _, rows = next(batches)
        batch = batch_fn(rows, step).to(env.device)
        loss, logs = step_fn(wrapped, batch, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        opt.step()
        sched.step()
        step += 1
        audio += batch.seconds
        for k, v in logs.items():
            acc.setdefault(k, []).append(float(v))
        entry: dict[str, Any] = {}
        if step % cfg.log_every == 0 or step == cfg.steps:
            entry = {k: dd.mean(float(np.mean(v)), env) for k, v in acc.items()}
            acc = {}
            bar.set_postfix({k: f"{v:.3g}" for k, v in entry.items() if k in ("loss", "wer")})
        for hook in hooks:
            out = hook(wrapped, step, state)
            if out:
                entry.update(out)
        if entry:
            entry = {"step": step, "lr": sched.get_last_lr()[0], **entry}
            state["history"].append(entry)
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            rngs = dd.gather(ck.rng_state(), env)
            if env.is_main:
                ck.save_checkpoint(ckpt_dir, step, model, opt, sched, rngs, state, fp)
            dd.barrier(env)
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - t0
    audio = dd.mean(audio, env) * env.world_size
    return LoopResult(state["history"], state, step, start, seconds, audio, stopped)
