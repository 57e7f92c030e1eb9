"""Test-time warping: average a CTC model's posteriors over a few resampled copies of the input.

An unseen voice sits somewhere between the training voices in formants and pitch.
Finetuning perturbs speed (resampling, which moves formants and pitch together; ``finetune.
speed_perturb``), so the model reads slightly warped copies of a voice about as well as the
original; where it misreads one copy, the others often read it right. Decoding the
frame-wise mean of the posteriors of a few copies (warp factors near 1) is an ensemble that
costs one forward pass per factor and needs no transcript and no speaker label.

Each copy has its own frame count (a factor ``f`` gives ``≈ T / f`` frames); its posteriors
are linearly resampled in time onto the unwarped copy's ``T`` frames before averaging, in
probability space. The result is a ``(T, vocab)`` log-probability matrix that greedy or
beam-search decoding reads like any other emission.

Choosing one factor per utterance (or speaker) by the model's confidence instead, as
vocal-tract length normalisation chooses a warp by likelihood, was measured and gave
nothing (``scripts/warp_pilot.py``; docs/experiments/recipe.md, "Test-time warping").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from s6damon.config.decode import check_factors


def average(logps: Sequence[torch.Tensor], frames: int) -> torch.Tensor:
    """Log of the mean posterior of several copies of one utterance, on ``frames`` frames.

    Args:
        logps: ``(T_k, vocab)`` log-probabilities of each copy.
        frames: the output's frame count (the unwarped copy's ``T``).

    Returns:
        ``(frames, vocab)`` log-probabilities (each row sums to 1 in probability).
    """
    if not logps:
        raise ValueError("nothing to average")
    acc = torch.zeros(frames, logps[0].shape[-1])
    for lp in logps:
        p = lp.float().exp()
        if p.shape[0] != frames:
            if p.shape[0] == 0 or frames == 0:
                raise ValueError(f"cannot resample {p.shape[0]} frames onto {frames}")
            p = torch.nn.functional.interpolate(p.T[None], size=frames, mode="linear", align_corners=False)[0].T
        acc += p
    acc /= len(logps)
    return torch.log(acc / acc.sum(-1, keepdim=True)).contiguous()


def averaged(per_factor: Sequence[Sequence[torch.Tensor]], factors: Sequence[float]) -> list[torch.Tensor]:
    """:func:`average` of every utterance, from ``per_factor[k][i]`` (factor ``k``, row ``i``)."""
    factors = check_factors(factors)
    if len(per_factor) != len(factors):
        raise ValueError(f"{len(per_factor)} emission sets for {len(factors)} warp factors")
    ref = per_factor[factors.index(1.0)]
    return [average([per[i] for per in per_factor], ref[i].shape[0]) for i in range(len(ref))]


def warped_emissions(model: torch.nn.Module, df: pd.DataFrame, factors: Sequence[float],
                     batch_seconds: float = 120.0, progress: bool = False) -> list[list[torch.Tensor]]:
    """Log-probabilities of every row of ``df`` at every factor: ``out[k][i]`` for factor ``k``, row ``i``."""
    from s6damon.decode.beam import emissions

    return [emissions(model, df, batch_seconds, progress=progress, warp=float(f)) for f in factors]


def warp_augment(warp: float) -> Callable[[np.ndarray], np.ndarray] | None:
    """The waveform transform that resamples by ``warp`` (:func:`s6damon.train.data.perturb_speed`:
    > 1 shorter and higher, < 1 longer and lower), or None for the unwarped input."""
    from s6damon.train.data import perturb_speed

    return None if abs(warp - 1.0) < 1e-9 else (lambda w: perturb_speed(w, warp))


def greedy_text(logp: torch.Tensor, tokenizer) -> str:
    """Greedy CTC reading of one utterance's log-probabilities (repeats merged, blanks removed)."""
    return tokenizer.decode(logp.argmax(-1).tolist()).strip()
