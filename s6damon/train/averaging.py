"""Weight averaging over the last part of training: an exponential moving average (EMA) of the
weights, or their uniform mean over every ``every``-th step (stochastic weight averaging, SWA).

Averaged weights tend to sit in flatter regions of the loss than the last step's, which can carry
over better to data the run never saw (here: the test split's unseen voices); on this project's
finetune recipe it measured no consistent gain (docs/experiments/recipe.md, "Weight averaging"). The average
is kept as a loop hook whose tensors live in the training loop's ``state``, so they go into
every resumable checkpoint and a killed run resumes its average too. The update rules are
PyTorch's own (``torch.optim.swa_utils``). Only the module's parameters are averaged; the models
trained here have no batch-norm statistics to re-estimate.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn, get_swa_multi_avg_fn

from s6damon.config.model import AverageParams
from s6damon.model.factory import unwrap

KINDS = ("ema", "uniform")


def _parameters(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    # parameters only: buffers are statistics or masks (a structured pruning mask averaged
    # over prune-and-grow rounds would no longer be a mask)
    return {k: v for k, v in unwrap(net).named_parameters() if torch.is_floating_point(v)}


class WeightAverage:
    """A :data:`~s6damon.train.loop.Hook` that averages the trained module's weights.

    Args:
        kind: ``ema`` (exponential moving average with ``decay``) or ``uniform`` (the mean of
            every averaged step's weights).
        start_step: the first optimiser step (1-based, as the loop counts) whose weights are
            averaged; the EMA starts from that step's weights.
        decay: EMA decay per averaged step.
        every: average every this many steps from ``start_step`` on.
        key: the slot of the loop's state the average lives in (one per averager).
    """

    def __init__(self, kind: str, start_step: int, decay: float = 0.999, every: int = 1,
                 key: str = "weight_average") -> None:
        if kind not in KINDS:
            raise ValueError(f"weight average: kind must be one of {KINDS}, got {kind!r}")
        if every < 1:
            raise ValueError(f"weight average: every must be at least 1, got {every}")
        self.kind, self.start, self.every, self.key = kind, max(1, start_step), every, key
        self._update = get_ema_multi_avg_fn(decay) if kind == "ema" else get_swa_multi_avg_fn()
        self._slot: dict[str, Any] | None = None  # the loop state's entry, once there is one

    @classmethod
    def from_params(cls, p: AverageParams, steps: int, key: str = "weight_average") -> WeightAverage | None:
        """The averager ``p`` asks for over a run of ``steps`` steps (None for ``kind: none``)."""
        if p.kind == "none":
            return None
        return cls(p.kind, min(steps, int(round(p.start_fraction * steps)) + 1), p.ema_decay, p.every, key)

    def __call__(self, net: torch.nn.Module, step: int, state: dict[str, Any]) -> None:
        slot = state.get(self.key)  # after a resumption: the average the checkpoint held
        if step >= self.start and (step - self.start) % self.every == 0:
            current = _parameters(net)
            if slot is None:
                slot = state[self.key] = {"kind": self.kind, "count": 0,
                                          "weights": {k: v.detach().clone() for k, v in current.items()}}
            else:
                self._average(slot, current)
            slot["count"] += 1
        self._slot = slot
        return None

    def _average(self, slot: dict[str, Any], current: dict[str, torch.Tensor]) -> None:
        avg = slot["weights"]
        if avg.keys() != current.keys():
            raise ValueError(f"weight average {self.key!r}: the module's tensors changed during training")
        names = list(current)
        for k in names:  # a resumed checkpoint is loaded on the CPU: keep the average beside the weights
            if avg[k].device != current[k].device:
                avg[k] = avg[k].to(current[k].device)
        with torch.no_grad():
            self._update([avg[k] for k in names], [current[k].detach() for k in names], slot["count"])

    @property
    def count(self) -> int:
        """How many steps' weights the average holds (0: none yet)."""
        return 0 if self._slot is None else int(self._slot["count"])

    @contextmanager
    def applied(self, net: torch.nn.Module) -> Iterator[bool]:
        """Inside the block ``net`` holds the averaged weights (yields True), or its own
        weights while nothing is averaged yet (yields False); its own are restored on exit."""
        if self._slot is None:
            yield False
            return
        own = {k: v.detach().clone() for k, v in _parameters(net).items()}
        load_weights(net, self._slot["weights"])
        try:
            yield True
        finally:
            load_weights(net, own)

    def apply(self, net: torch.nn.Module) -> bool:
        """Copy the average into ``net`` for good (True), or leave ``net`` unchanged while
        nothing is averaged (False)."""
        if self._slot is None:
            return False
        load_weights(net, self._slot["weights"])
        return True


def load_weights(net: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy ``weights`` (name -> tensor, a subset of the module's parameters) into ``net``."""
    target = dict(unwrap(net).named_parameters())
    missing = [k for k in weights if k not in target]
    if missing:
        raise ValueError(f"weight average: the module has no tensors named {missing[:3]}")
    with torch.no_grad():
        for k, v in weights.items():
            target[k].copy_(v)
