"""Token-dropping baselines: exact ratios, determinism, energy ordering."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from s6damon.salad.baselines import (BASELINES, baseline_keep, energy_keep, energy_keep_from_energy, none_keep,
                                     random_keep, uniform_keep)


@pytest.mark.parametrize("T", [1, 2, 7, 10, 49, 50, 333])
@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.7, 0.9])
def test_exact_ratio(T, ratio):
    expected = max(T - math.floor(ratio * T + 0.5), 1)
    rng = np.random.default_rng(0)
    e = rng.random(T)
    for keep in (uniform_keep(T, ratio), random_keep(T, ratio, 0), energy_keep_from_energy(e, ratio)):
        assert keep.shape == (T,) and keep.dtype == bool and int(keep.sum()) == expected
    assert none_keep(T).all()


def test_uniform_keeps_every_kth():
    assert np.flatnonzero(uniform_keep(8, 0.5)).tolist() == [1, 3, 5, 7]
    assert np.flatnonzero(uniform_keep(12, 0.75)).tolist() == [2, 6, 10]


def test_random_is_seeded():
    assert np.array_equal(random_keep(40, 0.5, 3), random_keep(40, 0.5, 3))
    assert not np.array_equal(random_keep(40, 0.5, 3), random_keep(40, 0.5, 4))


def test_energy_drops_quiet_frames():
    kernel, stride = (100, 4), (80, 4)  # 20 ms hop, 21.25 ms receptive field at 16 kHz
    T = 20
    wave = np.zeros(T * 320 + 20)
    wave[: 10 * 320] = np.random.default_rng(0).standard_normal(10 * 320)  # loud first half
    keep = energy_keep(wave, T, 0.5, kernel, stride)
    assert np.flatnonzero(keep).tolist() == list(range(10))


def test_batched_masks():
    lengths = torch.tensor([10, 4, 7])
    waves = [np.random.default_rng(b).standard_normal(int(n) * 320 + 20) for b, n in enumerate(lengths)]
    for method in BASELINES:
        keep = baseline_keep(method, lengths, 0.5, waves=waves, conv_kernel=(100, 4), conv_stride=(80, 4), T=12)
        assert keep.shape == (3, 12) and keep.dtype == torch.bool
        assert not keep[1, 4:].any()
        want = [10, 4, 7] if method == "none" else [5, 2, 3]
        assert keep.sum(-1).tolist() == want
    with pytest.raises(ValueError):
        baseline_keep("energy", lengths, 0.5)
    with pytest.raises(ValueError):
        baseline_keep("bogus", lengths, 0.5)
    with pytest.raises(ValueError):
        uniform_keep(5, 1.5)
