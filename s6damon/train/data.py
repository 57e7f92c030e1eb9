"""Audio batches for training and decoding.

Batches are buckets of utterances of similar duration whose *padded* size (longest
utterance x batch size) stays under a budget in seconds of audio, so every step costs
about the same whatever the utterance lengths. The order is a pure function of
``(seed, step)``: a resumed run sees exactly the batches an uninterrupted one would.

Waveforms are normalised per utterance to zero mean and unit variance over their
unpadded samples — the Hugging Face ``Wav2Vec2FeatureExtractor(do_normalize=True)``
convention — identically in training and decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from s6damon.model.frames import SAMPLE_RATE


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a mono waveform as float32, resampling if needed.

    Returns:
        ``(T,)`` float32 samples in [-1, 1].

    Raises:
        ValueError: the file cannot be read (message names it).
    """
    import soundfile as sf  # imported here: decoding-only users need no libsndfile

    try:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:
        raise ValueError(f"{path}: cannot read audio ({err})") from err
    wave = wave.mean(axis=1)
    if sr != sample_rate:
        import torchaudio

        wave = torchaudio.functional.resample(torch.from_numpy(wave), sr, sample_rate).numpy()
    return np.ascontiguousarray(wave, dtype=np.float32)


def perturb_speed(wave: np.ndarray, factor: float) -> np.ndarray:
    """Resample so the audio plays ``factor`` times faster (pitch and formants shift with it).

    Shifting formants is what makes a model trained on a few voices generalise to unseen
    (e.g. higher-pitched) ones; linear interpolation keeps it cheap on CPU.

    Args:
        wave: ``(T,)`` samples.
        factor: > 1 shorter and higher, < 1 longer and lower.

    Returns:
        ``(round(T / factor),)`` samples.
    """
    if abs(factor - 1.0) < 1e-6:
        return wave
    n = max(1, int(round(len(wave) / factor)))
    x = torch.from_numpy(wave)[None, None]
    return torch.nn.functional.interpolate(x, size=n, mode="linear", align_corners=False)[0, 0].numpy()


def normalise_wave(wave: np.ndarray) -> np.ndarray:
    """Zero-mean unit-variance waveform (HF feature-extractor convention, eps 1e-7)."""
    return (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)


@dataclass
class Batch:
    """A padded batch.

    Attributes:
        input_values: ``(B, T)`` normalised waveforms, zero-padded.
        attention_mask: ``(B, T)`` 1 on real samples, 0 on padding.
        labels: ``(B, L)`` CTC target ids, -100 on padding (None without transcripts).
        index: ``(B,)`` row positions in the source DataFrame.
    """

    input_values: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None
    index: list[int]

    @property
    def seconds(self) -> float:
        """Unpadded audio in the batch, in seconds."""
        return float(self.attention_mask.sum()) / SAMPLE_RATE

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.input_values.to(device), self.attention_mask.to(device),
                     None if self.labels is None else self.labels.to(device), self.index)


def collate(waves: Sequence[np.ndarray], labels: Sequence[Sequence[int]] | None = None,
            index: Sequence[int] | None = None) -> Batch:
    """Normalise and pad waveforms (and label sequences) into a :class:`Batch`."""
    n, t = len(waves), max(len(w) for w in waves)
    x = torch.zeros(n, t)
    mask = torch.zeros(n, t, dtype=torch.long)
    for i, w in enumerate(waves):
        x[i, : len(w)] = torch.from_numpy(normalise_wave(w))
        mask[i, : len(w)] = 1
    y = None
    if labels is not None:
        y = torch.full((n, max(1, max(len(l) for l in labels))), -100, dtype=torch.long)
        for i, l in enumerate(labels):
            y[i, : len(l)] = torch.tensor(l, dtype=torch.long)
    return Batch(x, mask, y, list(index if index is not None else range(n)))


def bucket_batches(durations: np.ndarray, batch_seconds: float, rng: np.random.Generator | None = None,
                   jitter: float = 0.1) -> list[list[int]]:
    """Group utterances of similar duration into batches of padded size <= ``batch_seconds``.

    Args:
        durations: ``(N,)`` seconds per utterance.
        batch_seconds: cap on ``len(batch) * max(duration in batch)``; a single longer
            utterance forms its own batch.
        rng: when given, durations are jittered before sorting (so batch composition varies
            between epochs) and the batch order is shuffled; without it the order is
            deterministic, longest first (decoding).
        jitter: relative duration noise used for the sort key.

    Returns:
        Lists of row positions.
    """
    durations = np.asarray(durations, dtype=float)
    key = durations if rng is None else durations * (1 + jitter * rng.uniform(-1, 1, len(durations)))
    order = np.argsort(-key, kind="stable")
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = 0.0
    for i in order:
        d = max(longest, durations[i])
        if cur and d * (len(cur) + 1) > batch_seconds:
            batches.append(cur)
            cur, d = [], durations[i]
        cur.append(int(i))
        longest = d
    if cur:
        batches.append(cur)
    if rng is not None:
        rng.shuffle(batches)
    return batches


class AudioSet:
    """Waveforms and (optionally) label ids of a manifest, kept in memory.

    Args:
        df: manifest rows with at least ``path`` and ``duration`` (``text`` for CTC).
        tokenizer: when given, ``text`` is encoded into CTC label ids.
        preload: read every waveform once up front (a 1 h corpus is ~230 MB of float32);
            otherwise read on demand.
    """

    def __init__(self, df: pd.DataFrame, tokenizer=None, preload: bool = True) -> None:
        missing = {"path", "duration"} - set(df.columns)
        if missing:
            raise ValueError(f"manifest lacks columns {sorted(missing)}")
        self.df = df.reset_index(drop=True)
        self.durations = self.df["duration"].to_numpy(dtype=float)
        self.labels = None
        if tokenizer is not None:
            self.labels = [tokenizer(t).input_ids for t in self.df["text"]]
        self._cache: dict[int, np.ndarray] = {}
        if preload:
            for i in range(len(self.df)):
                self.wave(i)

    def __len__(self) -> int:
        return len(self.df)

    def wave(self, i: int) -> np.ndarray:
        """``(T,)`` raw waveform of row ``i``."""
        if i not in self._cache:
            self._cache[i] = load_audio(self.df.at[i, "path"])
        return self._cache[i]

    def batch(self, index: Sequence[int], max_samples: int | None = None,
              rng: np.random.Generator | None = None, speed: Sequence[float] | None = None,
              augment: Callable[[np.ndarray], np.ndarray] | None = None) -> Batch:
        """Collate rows.

        Args:
            index: row positions.
            max_samples: longer waveforms get a random (with ``rng``) or leading crop.
            rng: randomness of crops and speed factors.
            speed: ``[low, high]`` range of random speed-perturbation factors (needs ``rng``).
            augment: applied to each waveform after speed perturbation, drawing from its own
                generator so speed factors and crops stay those of an unaugmented batch
                (:meth:`s6damon.train.augment.WaveAugmenter.bind`).
        """
        waves = []
        for i in index:
            w = self.wave(i)
            if speed is not None and rng is not None and speed[-1] - speed[0] > 1e-6:
                w = perturb_speed(w, float(rng.uniform(speed[0], speed[-1])))
            if augment is not None:
                w = augment(w)
            if max_samples is not None and len(w) > max_samples:
                start = int(rng.integers(0, len(w) - max_samples + 1)) if rng is not None else 0
                w = w[start: start + max_samples]
            waves.append(w)
        labels = [self.labels[i] for i in index] if self.labels is not None else None
        return collate(waves, labels, index)


class BatchSchedule:
    """The deterministic, endless sequence of training batches, addressable by step.

    Epoch ``e`` uses batches from :func:`bucket_batches` with ``rng = default_rng([seed, e])``;
    steps run through epochs back to back. Under DDP every rank computes the same global
    batch and keeps its share (``batch[rank::world_size]``), so ``batch_seconds`` is the
    global batch size.
    """

    def __init__(self, durations: np.ndarray, batch_seconds: float, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if len(durations) == 0:
            raise ValueError("no training utterances")
        self.durations, self.batch_seconds, self.seed = np.asarray(durations), batch_seconds, seed
        self.rank, self.world_size = rank, world_size

    def epoch(self, e: int) -> list[list[int]]:
        return bucket_batches(self.durations, self.batch_seconds, np.random.default_rng([self.seed, e]))

    def iter_from(self, step: int) -> Iterator[tuple[int, list[int]]]:
        """Yield ``(step, this rank's row positions)`` from ``step`` on, forever."""
        e, s = 0, 0
        while True:
            batches = self.epoch(e)
            for b in batches:
                if s >= step:
                    share = b[self.rank:: self.world_size]
                    # a rank left without rows (batch smaller than world size) reuses one,
                    # so every rank takes part in the gradient all-reduce
                    yield s, share or b[:1]
                s += 1
            e += 1
