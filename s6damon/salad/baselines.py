"""Token-dropping baselines at a given drop ratio: uniform, random, energy (VAD-like), none.

Each one answers the same question as the SALAD detector, "which tokens does the
transformer see?", at exactly the same drop ratio per utterance
(``floor(drop_ratio * T + 0.5)`` tokens dropped, at least ``min_keep`` kept), so that WER
differences come from *which* tokens are dropped, not how many.

Usage::

    keep = baseline_keep("energy", lengths, 0.5, waves=waves, conv_kernel=k, conv_stride=s)
    out = drop_forward(model, input_values, attention_mask, keep=keep)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from s6damon.model.frames import conv_layout, frame_energy

BASELINES = ("none", "uniform", "random", "energy")


def n_keep(T: int, drop_ratio: float, min_keep: int) -> int:
    """How many of ``T`` tokens a ``drop_ratio`` keeps: ``T - round(drop_ratio * T)`` (half up),
    never fewer than ``min_keep`` nor more than ``T``; every method drops exactly this many."""
    if not 0.0 <= drop_ratio <= 1.0:
        raise ValueError(f"drop_ratio must be in [0, 1], got {drop_ratio}")
    # round half up (not to even) so the count is predictable: 4.5 dropped -> 5
    return min(T, max(T - int(math.floor(drop_ratio * T + 0.5)), min_keep))


def none_keep(T: int) -> np.ndarray:
    """Keep every token: ``(T,)`` all True."""
    return np.ones(T, dtype=bool)


def uniform_keep(T: int, drop_ratio: float, min_keep: int = 1) -> np.ndarray:
    """Evenly spaced kept tokens (drop 0.5 keeps every 2nd frame, 0.75 every 4th).

    Kept index ``i`` is ``floor((i + 0.5) * T / n_keep)``, centred in its stretch.

    Returns:
        ``(T,)`` bool with ``T - floor(drop_ratio * T + 0.5)`` (>= ``min_keep``) True.
    """
    n = n_keep(T, drop_ratio, min_keep)
    keep = np.zeros(T, dtype=bool)
    if n:
        keep[np.floor((np.arange(n) + 0.5) * T / n).astype(int)] = True
    return keep


def random_keep(T: int, drop_ratio: float, rng: np.random.Generator | int | None = 0, min_keep: int = 1) -> np.ndarray:
    """Uniformly random kept tokens (seeded: pass a Generator or a seed).

    Returns:
        ``(T,)`` bool with ``T - floor(drop_ratio * T + 0.5)`` (>= ``min_keep``) True.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    n = n_keep(T, drop_ratio, min_keep)
    keep = np.zeros(T, dtype=bool)
    keep[rng.choice(T, size=n, replace=False)] = True
    return keep


def energy_keep_from_energy(energy: np.ndarray, drop_ratio: float, min_keep: int = 1) -> np.ndarray:
    """Drop the lowest-energy tokens (ties broken towards dropping earlier tokens).

    Args:
        energy: ``(T,)`` per-token energy (any monotone scale).
    """
    e = np.asarray(energy, dtype=np.float64)
    T = e.size
    n = n_keep(T, drop_ratio, min_keep)
    keep = np.zeros(T, dtype=bool)
    keep[np.argsort(e, kind="stable")[T - n:]] = True
    return keep


def energy_keep(wave: np.ndarray | torch.Tensor, T: int, drop_ratio: float, conv_kernel: Sequence[int],
                conv_stride: Sequence[int], min_keep: int = 1) -> np.ndarray:
    """VAD-like baseline: drop the tokens whose receptive field has the least energy.

    Args:
        wave: ``(N,)`` unpadded waveform of the utterance.
        T: its token count.
        conv_kernel, conv_stride: the model's conv layout (token ``t`` covers
            ``wave[t*hop : t*hop + receptive_field]``).
    """
    return energy_keep_from_energy(frame_energy(wave, T, conv_kernel, conv_stride), drop_ratio, min_keep)


def baseline_keep(method: str, lengths: torch.Tensor | Sequence[int], drop_ratio: float, *,
                  waves: Sequence[np.ndarray | torch.Tensor] | None = None,
                  conv_kernel: Sequence[int] | None = None, conv_stride: Sequence[int] | None = None,
                  seed: int = 0, min_keep: int = 1, T: int | None = None,
                  energies: Sequence[np.ndarray] | None = None) -> torch.Tensor:
    """Batched keep-mask of one baseline.

    Args:
        method: one of :data:`BASELINES`.
        lengths: ``(B,)`` valid token count per utterance.
        drop_ratio: share of each utterance's tokens to drop.
        waves: unpadded waveforms (``energy`` only; or ``energies``).
        conv_kernel, conv_stride: conv layout (``energy`` only).
        seed: ``random`` only; row ``b`` uses ``default_rng([seed, b])`` (reproducible
            for a fixed batch order; pass a per-utterance seed with batch size 1 otherwise).
        min_keep: fewest tokens kept per (non-empty) utterance.
        T: padded width; ``max(lengths)`` when None.
        energies: ``energy`` only, instead of ``waves``: each utterance's per-token log energy
            (:func:`~s6damon.model.frames.frame_energy`), as a feature cache holds it.

    Returns:
        ``(B, T)`` bool, False on padding.
    """
    lens = [int(x) for x in (lengths.tolist() if isinstance(lengths, torch.Tensor) else lengths)]
    width = T if T is not None else max(lens, default=0)
    out = torch.zeros(len(lens), width, dtype=torch.bool)
    for b, n in enumerate(lens):
        if method == "none":
            row = none_keep(n)
        elif method == "uniform":
            row = uniform_keep(n, drop_ratio, min_keep)
        elif method == "random":
            row = random_keep(n, drop_ratio, np.random.default_rng([seed, b]), min_keep)
        elif method == "energy" and energies is not None:
            if len(energies[b]) != n:
                raise ValueError(f"energy baseline: utterance {b} has {n} tokens but {len(energies[b])} energies")
            row = energy_keep_from_energy(energies[b], drop_ratio, min_keep)
        elif method == "energy":
            if waves is None or conv_kernel is None or conv_stride is None:
                raise ValueError("the energy baseline needs waves (or energies), conv_kernel and conv_stride")
            row = energy_keep(waves[b], n, drop_ratio, conv_kernel, conv_stride, min_keep)
        else:
            raise ValueError(f"unknown baseline {method!r}; choose one of {list(BASELINES)}")
        out[b, :n] = torch.from_numpy(row)
    return out


class BaselinePolicy:
    """A baseline as a keep-mask policy for :func:`s6damon.salad.dropping.drop_forward`.

    Computes :func:`baseline_keep` from the padded waveforms and the frame counts the model
    derived, so a baseline runs inside the same token-dropping model as SALAD's detector.
    ``random`` draws a fresh mask on every call in training (seeded by ``seed`` and a call
    counter, so a resumed run replays the same masks only if the counter is restored — a
    minor effect) and the same mask per batch position in evaluation.

    Args:
        method: one of :data:`BASELINES`.
        drop_ratio: share of each utterance's tokens to drop.
        conv_kernel, conv_stride: the model's conv layout (for ``energy``).
        seed: base seed of ``random``.
        min_keep: fewest tokens kept per utterance.
    """

    def __init__(self, method: str, drop_ratio: float, conv_kernel: Sequence[int], conv_stride: Sequence[int],
                 seed: int = 0, min_keep: int = 1) -> None:
        if method not in BASELINES:
            raise ValueError(f"unknown baseline {method!r}; choose one of {list(BASELINES)}")
        self.method, self.drop_ratio, self.seed, self.min_keep = method, float(drop_ratio), int(seed), int(min_keep)
        self.conv_kernel, self.conv_stride = list(conv_kernel), list(conv_stride)
        self.calls = 0
        self.training = True

    @classmethod
    def for_model(cls, method: str, drop_ratio: float, config, seed: int = 0) -> "BaselinePolicy":
        """The policy for a model with this HF ``config`` (its conv layout read from it)."""
        kernel, stride = conv_layout(config)
        return cls(method, drop_ratio, kernel, stride, seed=seed)

    def __call__(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None,
                 frame_lengths: torch.Tensor, T: int) -> torch.Tensor:
        waves = None
        if self.method == "energy":
            n = (attention_mask.long().sum(-1) if attention_mask is not None
                 else torch.full((input_values.shape[0],), input_values.shape[-1]))
            waves = [input_values[b, : int(n[b])].detach().cpu() for b in range(input_values.shape[0])]
        return self._keep(frame_lengths, T, waves=waves).to(input_values.device)

    def from_features(self, frame_lengths: torch.Tensor, T: int,
                      token_energy: Sequence[np.ndarray] | None = None) -> torch.Tensor:
        """The keep-mask when the step starts from cached conv features (no waveform):
        ``energy`` ranks the cached ``token_energy`` instead of recomputing it."""
        if self.method == "energy" and token_energy is None:
            raise ValueError("the energy baseline on cached features needs their token_energy "
                             "(a FeatureCache built with token_energy=True)")
        return self._keep(frame_lengths, T, energies=token_energy).to(frame_lengths.device)

    def _keep(self, frame_lengths: torch.Tensor, T: int, waves: list[torch.Tensor] | None = None,
              energies: Sequence[np.ndarray] | None = None) -> torch.Tensor:
        seed = self.seed + self.calls if self.training else self.seed
        self.calls += 1
        return baseline_keep(self.method, frame_lengths.cpu(), self.drop_ratio, waves=waves,
                             conv_kernel=self.conv_kernel, conv_stride=self.conv_stride, seed=seed,
                             min_keep=self.min_keep, T=T, energies=energies)
