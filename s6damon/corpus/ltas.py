"""Long-term average spectrum (LTAS) normalisation: one static, zero-phase filter per utterance
that moves its average spectral envelope onto a reference.

An unseen speaker differs from the training speakers in what a single static filter can
change (the average formant shape, the glottal source's spectral tilt, the recording chain)
as well as in what it cannot (pitch, timing, the phones' own spectra). Equalising every
utterance, in training and at test time, to the training set's average envelope removes the
first kind of difference before the model sees the audio. The filter is static, so no phone
moves in time and no within-utterance spectral contrast changes.

Each utterance's LTAS is the mean power spectrum of its speech frames (those within
``floor_db`` of its loudest frames), smoothed in the log domain by keeping the lowest
``lifter`` cepstral coefficients: the envelope, without the harmonics of the voice's pitch.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

#: STFT size and hop (samples at 16 kHz: 32 ms frames every 10 ms) of the LTAS estimate.
N_FFT = 512
HOP = 160


def smoothed_log_ltas(wave: np.ndarray, floor_db: float = 30.0, lifter: int = 16) -> np.ndarray:
    """The utterance's cepstrally smoothed log power spectrum over its speech frames.

    Args:
        wave: ``(T,)`` samples (any length; shorter than one frame is zero-padded).
        floor_db: frames quieter than the 95th-percentile frame by more than this are left out,
            so pauses and leading silence do not tilt the average.
        lifter: cepstral coefficients kept (1 = a flat spectrum at the mean level).

    Returns:
        ``(N_FFT // 2 + 1,)`` natural-log power per bin.
    """
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    if len(wave) < N_FFT:
        wave = np.pad(wave, (0, N_FFT - len(wave)))
    frames = np.lib.stride_tricks.sliding_window_view(wave, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * np.hanning(N_FFT), axis=1)) ** 2 + 1e-10
    energy_db = 10.0 * np.log10(power.sum(axis=1))
    speech = energy_db >= np.percentile(energy_db, 95) - floor_db
    log_ltas = np.log(power[speech].mean(axis=0))
    # The low quefrencies are the envelope; a pitch harmonic series sits at the quefrency of one
    # period (>= 40 samples for any voice below 400 Hz), far above the default lifter.
    cep = np.fft.irfft(log_ltas)
    cep[lifter:len(cep) - lifter + 1] = 0.0
    return np.fft.rfft(cep).real


def reference_ltas(envelopes: Iterable[np.ndarray]) -> np.ndarray:
    """The reference envelope: the mean of the training utterances' smoothed log-LTAS."""
    stacked = np.stack(list(envelopes))
    if stacked.ndim != 2 or stacked.shape[1] != N_FFT // 2 + 1:
        raise ValueError(f"reference_ltas: expected envelopes of {N_FFT // 2 + 1} bins, got shape {stacked.shape}")
    return stacked.mean(axis=0)


def equalise(wave: np.ndarray, log_gain: np.ndarray) -> np.ndarray:
    """``wave`` filtered zero phase by the power gain ``exp(log_gain)`` (given on the
    ``N_FFT // 2 + 1`` LTAS bins, interpolated onto the whole-signal FFT's); same length."""
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    n = len(wave)
    size = 1 << int(np.ceil(np.log2(n + N_FFT)))  # zero padding keeps the filter's tail off the start
    spec = np.fft.rfft(wave, size)
    bins = np.linspace(0.0, 1.0, N_FFT // 2 + 1)
    gain = np.exp(0.5 * np.interp(np.linspace(0.0, 1.0, len(spec)), bins, log_gain))
    return np.fft.irfft(spec * gain, size)[:n]


def normalise(wave: np.ndarray, reference: np.ndarray, floor_db: float = 30.0, lifter: int = 16,
              max_gain_db: float = 12.0) -> np.ndarray:
    """``wave`` equalised so its smoothed LTAS moves onto ``reference``.

    The gain is clipped to ``±max_gain_db`` per bin (a band the utterance barely has is not
    amplified into noise); the result is scaled down only if it would clip (peak > 0.999),
    since the model normalises loudness itself.

    Returns:
        float32 samples, ``wave``'s length.
    """
    limit = max_gain_db / 10.0 * np.log(10.0)  # dB of power -> natural log of power
    gain = np.clip(reference - smoothed_log_ltas(wave, floor_db, lifter), -limit, limit)
    out = equalise(wave, gain)
    peak = float(np.abs(out).max()) if len(out) else 0.0
    if peak > 0.999:
        out = out * (0.999 / peak)
    return out.astype(np.float32)
