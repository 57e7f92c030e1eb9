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

The envelope a filter corrects is either the utterance's own (scope ``utterance``) or the mean
of its speaker's utterances (scope ``speaker``). A short command's own envelope is tilted by
its phones (an utterance full of fricatives has more high-frequency energy than one of
vowels), and correcting it flattens that too; the speaker's mean keeps it and takes away
only what the speaker's utterances share. On a device the speaker's mean is a running mean
over the user's utterances (:class:`RunningEnvelope`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s6damon.config.prepare import LtasParams
from s6damon.io import atomic_path

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


def speaker_means(envelopes: np.ndarray, speakers: Iterable[str]) -> np.ndarray:
    """Each row's speaker's mean envelope: ``envelopes`` ``(N, bins)`` averaged over the rows of
    the same speaker (``speakers``, one per row), returned row by row."""
    envelopes = np.asarray(envelopes)
    return pd.DataFrame(envelopes).groupby(np.asarray(list(speakers))).transform("mean").to_numpy()


class RunningEnvelope:
    """A speaker's mean envelope over the utterances heard so far: the speaker-scope front end
    on a device, where the speaker's other utterances are the ones that came before.

    ``update(wave)`` adds an utterance and returns the mean including it, the envelope to
    correct that utterance by; the first utterance is corrected by its own.
    """

    def __init__(self, floor_db: float = 30.0, lifter: int = 16) -> None:
        self.floor_db, self.lifter = floor_db, lifter
        self.total = np.zeros(N_FFT // 2 + 1)
        self.count = 0

    def update(self, wave: np.ndarray) -> np.ndarray:
        """Add ``wave``'s envelope; return the mean over every utterance so far."""
        self.total = self.total + smoothed_log_ltas(wave, self.floor_db, self.lifter)
        self.count += 1
        return self.total / self.count


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
              max_gain_db: float = 12.0, envelope: np.ndarray | None = None) -> np.ndarray:
    """``wave`` equalised so its smoothed LTAS moves onto ``reference``.

    ``envelope``: ``wave``'s :func:`smoothed_log_ltas` with the same settings, when the caller
    has it already (it is estimated here otherwise).

    The gain is clipped to ``±max_gain_db`` per bin (a band the utterance barely has is not
    amplified into noise); the result is scaled down only if it would clip (peak > 0.999),
    since the model normalises loudness itself.

    Returns:
        float32 samples, ``wave``'s length.
    """
    limit = max_gain_db / 10.0 * np.log(10.0)  # dB of power -> natural log of power
    if envelope is None:
        envelope = smoothed_log_ltas(wave, floor_db, lifter)
    gain = np.clip(reference - envelope, -limit, limit)
    out = equalise(wave, gain)
    peak = float(np.abs(out).max()) if len(out) else 0.0
    if peak > 0.999:
        out = out * (0.999 / peak)
    return out.astype(np.float32)


def _read(path: str | Path, sample_rate: int) -> np.ndarray:
    import soundfile as sf

    try:
        wave, rate = sf.read(str(path), dtype="float64", always_2d=True)
    except Exception as err:
        raise ValueError(f"{path}: cannot read audio ({err})") from err
    if rate != sample_rate or wave.shape[1] != 1:
        raise ValueError(f"{path}: expected {sample_rate} Hz mono (what prepare writes), got {rate} Hz, "
                         f"{wave.shape[1]} channel(s)")
    return wave[:, 0]


def normalise_corpus(manifest: pd.DataFrame, out_dir: str | Path, p: LtasParams,
                     sample_rate: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Normalised copies of every utterance of ``manifest`` under ``<out_dir>/wav_ltas``.

    The reference is the mean envelope of the ``train`` rows. Each utterance is corrected by its
    own envelope or, with ``p.scope == "speaker"``, by the mean of its ``speaker``'s (every split's
    utterances of that speaker: the audio only, no transcript). Each copy is written atomically
    and named by ``utt_id``.

    Returns:
        ``(manifest, report)``: the manifest with ``path`` pointing at the copies and
        ``raw_path`` at the originals; the report holds the reference (natural-log power per
        bin, for ``ltas.json``) and each voice's mean distance from it in dB before and after
        (each utterance's own envelope against the reference: with the speaker scope what
        remains after is the spread of a speaker's utterances about their mean).

    Raises:
        ValueError: no train rows, or an unreadable / wrong-rate file (named).
    """
    train = (manifest["split"] == "train").to_numpy()
    if not train.any():
        raise ValueError("prepare.ltas: the manifest has no train rows to take the reference from")
    waves = [_read(path, sample_rate) for path in manifest["path"]]
    envelopes = np.stack([smoothed_log_ltas(w, p.floor_db, p.lifter) for w in waves])
    reference = reference_ltas(envelopes[train])
    corrected = envelopes if p.scope == "utterance" else speaker_means(envelopes, manifest["speaker"])
    dest = Path(out_dir) / "wav_ltas"
    dest.mkdir(parents=True, exist_ok=True)
    paths, after = [], []
    for utt, wave, envelope in zip(manifest["utt_id"], waves, corrected):
        out = normalise(wave, reference, p.floor_db, p.lifter, p.max_gain_db, envelope)
        after.append(smoothed_log_ltas(out, p.floor_db, p.lifter))
        path = dest / f"{utt}.wav"
        with atomic_path(path, suffix=".wav") as tmp:
            _write(tmp, out, sample_rate)
        paths.append(str(path))
    voice = manifest["voice"] if "voice" in manifest else manifest["speaker"]
    db = 10.0 / np.log(10.0)

    def distance(env: np.ndarray) -> dict[str, float]:
        d = pd.Series(np.abs(env - reference).mean(axis=1) * db, index=voice.to_numpy())
        return {str(k): round(float(v), 2) for k, v in d.groupby(level=0).mean().items()}

    report = {"reference_log_power": [round(float(v), 4) for v in reference],
              "distance_db_before": distance(envelopes), "distance_db_after": distance(np.stack(after))}
    return manifest.assign(raw_path=manifest["path"].to_numpy(), path=paths), report


def _write(path: Path, wave: np.ndarray, sample_rate: int) -> None:
    import soundfile as sf

    sf.write(str(path), wave, sample_rate, subtype="PCM_16", format="WAV")
