"""Waveform augmentation of training utterances: a random equaliser and coloured noise.

The unseen test voices differ from the training voices in the vocoder and the recording
chain as much as in the speaker: a random parametric equaliser reshapes the spectral envelope
(peaks and dips of up to ``eq_gain_db`` at random frequencies), and additive noise with a
random spectral slope (white, pink, brown) at a random SNR hides the fine spectral and
excitation detail a raw-waveform front end can otherwise latch onto. Both are drawn per
utterance from a generator seeded by (seed, step, rank) apart from the batch's own, so a
resumed run sees the same audio as an uninterrupted one and the speed factors are those of an
unaugmented run; with both probabilities 0 the augmenter draws nothing and training is
unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torchaudio

from s6damon.config.model import AugmentParams
from s6damon.train.data import SAMPLE_RATE


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as ``1 / f ** exponent``, unit variance.

    Args:
        n: samples.
        exponent: 0 white, 1 pink, 2 brown (red).
        rng: source of the white noise.

    Returns:
        ``(n,)`` float32 samples with zero mean and unit variance.
    """
    white = rng.standard_normal(n)
    if exponent != 0.0 and n > 1:
        spec = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(n)
        scale = np.zeros_like(freqs)
        scale[1:] = freqs[1:] ** (-exponent / 2.0)  # amplitude slope: half the power slope
        white = np.fft.irfft(spec * scale, n)
    white = white - white.mean()
    return (white / max(float(white.std()), 1e-12)).astype(np.float32)


def random_equaliser(wave: np.ndarray, p: AugmentParams, rng: np.random.Generator,
                     sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``p.eq_bands`` peaking filters in series, each at a log-uniform centre frequency in
    ``p.eq_freq_hz``, a uniform gain in ``±p.eq_gain_db`` and a uniform Q in ``p.eq_q``.

    The input is scaled into the filters' headroom first: torchaudio's ``lfilter`` clamps its
    output to [-1, 1], and a boost would otherwise clip. The level does not matter downstream
    (every utterance is normalised to unit variance in :func:`s6damon.train.data.collate`).
    """
    low_f, high_f = min(p.eq_freq_hz), min(max(p.eq_freq_hz), 0.49 * sample_rate)
    low_q, high_q = min(p.eq_q), max(p.eq_q)
    peak = float(np.abs(wave).max()) if len(wave) else 0.0
    if peak == 0.0:
        return wave
    headroom = 10.0 ** (-(p.eq_bands * p.eq_gain_db) / 20.0)
    x = torch.from_numpy(wave * (0.5 * headroom / peak))
    for _ in range(p.eq_bands):
        centre = math.exp(rng.uniform(math.log(low_f), math.log(high_f)))
        gain = float(rng.uniform(-p.eq_gain_db, p.eq_gain_db))
        q = float(rng.uniform(low_q, high_q))
        x = torchaudio.functional.equalizer_biquad(x, sample_rate, centre, gain, q)
    return x.numpy().astype(np.float32, copy=False)


def add_coloured_noise(wave: np.ndarray, p: AugmentParams, rng: np.random.Generator) -> np.ndarray:
    """Noise of a slope drawn from ``p.noise_exponents`` at an SNR uniform in ``p.noise_snr_db``."""
    if len(wave) == 0:
        return wave
    exponent = float(p.noise_exponents[int(rng.integers(len(p.noise_exponents)))])
    snr = float(rng.uniform(min(p.noise_snr_db), max(p.noise_snr_db)))
    noise = coloured_noise(len(wave), exponent, rng)
    out = torchaudio.functional.add_noise(torch.from_numpy(wave)[None], torch.from_numpy(noise)[None],
                                          torch.tensor([snr], dtype=torch.float32))
    return out[0].numpy()


class WaveAugmenter:
    """Callable ``(wave, rng) -> wave`` applying :class:`AugmentParams` to one utterance.

    Draw order per utterance: the equaliser's coin, its bands, the noise's coin, its slope,
    SNR and samples. A probability of 0 skips its coin too, so turning one part off does not
    shift the other's random stream.
    """

    def __init__(self, p: AugmentParams, sample_rate: int = SAMPLE_RATE) -> None:
        self.p, self.sample_rate = p, sample_rate

    @property
    def active(self) -> bool:
        """Whether any augmentation can happen."""
        return self.p.eq_prob > 0 or self.p.noise_prob > 0

    def bind(self, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
        """The augmenter drawing from ``rng``: ``wave -> wave`` (what :meth:`AudioSet.batch
        <s6damon.train.data.AudioSet.batch>` takes)."""
        return lambda wave: self(wave, rng)

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = self.p
        if p.eq_prob > 0 and rng.uniform() < p.eq_prob:
            wave = random_equaliser(wave, p, rng, self.sample_rate)
        if p.noise_prob > 0 and rng.uniform() < p.noise_prob:
            wave = add_coloured_noise(wave, p, rng)
        return wave
