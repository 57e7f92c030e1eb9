"""Token merging as a training regime of CTC finetuning (``finetune.token_merge_ratio``).

For the first ``token_merge_until`` of the steps the transformer reads a sequence in which
``token_merge_ratio`` of the tokens are evenly merged into their kept neighbours (averaged;
SALAD's uniform baseline with merging, as :func:`~s6damon.salad.methods.drop_model` builds it); for the
rest it reads every token, so the model that is saved, exported and decoded is the plain CTC
model. Pilots at 30 % (docs/experiments/salad.md, "Training with dropping from the start of
finetuning") found a model merged to the end read the unseen voices better *with* merging,
and much worse without it: the closing plain steps are what make it a drop-in model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from s6damon.salad.baselines import BaselinePolicy
from s6damon.salad.dropping import TokenDropCTC


def merge_steps(steps: int, until: float) -> int:
    """First step of the unmerged rest: ``ceil(until * steps)``."""
    return math.ceil(until * steps)


class TokenMergeSchedule(nn.Module):
    """A CTC model that merges tokens on every ``every``-th step while :attr:`step` is below
    ``until_step``.

    The loop sets :attr:`step` before each forward; evaluation (``eval()`` mode) always reads
    every token, as the saved model will. The parameters are the CTC model's only.

    Args:
        model: ``Wav2Vec2ForCTC`` / ``HubertForCTC``.
        ratio: share of tokens merged, in (0, 1).
        until_step: first step of the unmerged rest.
        every: merge on steps ``0, every, 2 * every, ...`` before ``until_step``; 2 alternates
            merged and plain steps, so the model learns to read both.
    """

    def __init__(self, model: nn.Module, ratio: float, until_step: int, every: int = 1) -> None:
        super().__init__()
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"token merging: ratio must be in (0, 1), got {ratio}")
        if every < 1:
            raise ValueError(f"token merging: every must be at least 1, got {every}")
        self.merger = TokenDropCTC(model, policy=BaselinePolicy.for_model("uniform", ratio, model.config), merge=True)
        self.until_step, self.every = until_step, every
        self.step = 0

    @property
    def model(self) -> nn.Module:
        """The wrapped CTC model (what is saved)."""
        return self.merger.model

    @property
    def config(self):
        """The CTC model's config (what the loop's input helpers read)."""
        return self.model.config

    def merges_at(self, step: int) -> bool:
        """Whether training step ``step`` (0-based) merges tokens."""
        return step < self.until_step and step % self.every == 0

    def merged_steps(self, steps: int) -> int:
        """How many of ``steps`` training steps merge tokens."""
        return len(range(0, min(self.until_step, steps), self.every))

    @property
    def merging(self) -> bool:
        """Whether the next forward merges tokens."""
        return self.training and self.merges_at(self.step)

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs):
        if self.merging:
            return self.merger(input_values, attention_mask, labels=labels, **kwargs)
        return self.model(input_values, attention_mask=attention_mask, labels=labels, **kwargs)
