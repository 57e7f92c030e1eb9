"""Conv-encoder features computed once, for finetuning with the feature encoder frozen.

wav2vec 2.0's finetuning recipe freezes the conv feature encoder. Frozen, its output for a
given waveform never changes, yet a plain training step still runs it forward on every
batch — on a 2-core CPU that forward is most of a frozen-encoder step (the conv encoder
dominates the model's cost). :class:`FeatureCache` runs the encoder once per training
utterance and speed factor, up front, and serves padded feature batches; the step then runs
only the feature projection, SpecAugment, transformer and CTC head
(:class:`FeatureInputCTC`), the same modules in the same order as the model's own forward.

Speed perturbation is the one thing that changes: instead of a factor drawn from the
continuous ``speed_perturb`` range per utterance and step, the factor is drawn from
``n_speeds`` factors spread evenly over that range, whose features are cached.

SALAD's adaptation runs (``salad.finetune.feature_cache``) train a token-dropping wrapper
around the model with its conv encoder frozen too: their detector reads the cached features,
uniform and random dropping need only the token counts, and the energy baseline reads each
token's receptive-field energy, which the cache then stores beside the features
(``token_energy``), computed from the same normalised waveform the uncached step would see.

Memory: ``conv_dim[-1]`` float32 values per 20 ms token — 25.6 kB per second of audio for
128 channels, so 0.76 h of training audio at 5 speed factors holds about 350 MB.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from s6damon import io
from s6damon.model.frames import conv_layout, frame_energy
from s6damon.salad.backbone import base_model, feature_lengths
from s6damon.salad.dropping import DropOutput, drop_forward
from s6damon.train.data import SAMPLE_RATE, AudioSet, bucket_batches, collate, perturb_speed

log = logging.getLogger(__name__)

# The layout of a saved cache (FeatureCache.save); raise it when the layout changes, so an old
# file is refused by name instead of misread.
CACHE_FORMAT = 1


def speed_grid(speed_perturb: Sequence[float], n_speeds: int) -> list[float]:
    """``n_speeds`` factors spread evenly over ``[low, high]`` (just 1.0 when the range is empty)."""
    low, high = float(speed_perturb[0]), float(speed_perturb[-1])
    if high - low < 1e-6 or n_speeds <= 1:
        return [low if high - low < 1e-6 else (low + high) / 2]
    return [float(v) for v in np.linspace(low, high, n_speeds)]


@dataclass
class FeatureBatch:
    """A padded batch of cached conv features.

    Attributes:
        features: ``(B, T, C)`` conv features, zero past each utterance's length.
        frame_lengths: ``(B,)`` valid tokens per utterance.
        labels: ``(B, L)`` CTC target ids, -100 on padding.
        index: ``(B,)`` row positions in the training set.
        samples: unpadded audio samples the features come from (for throughput).
        token_energy: per utterance, ``(frame_lengths[b],)`` log energy of each token's
            receptive field (for the energy baseline), when the cache holds it.
    """

    features: torch.Tensor
    frame_lengths: torch.Tensor
    labels: torch.Tensor | None
    index: list[int]
    samples: int
    token_energy: list[np.ndarray] | None = None

    @property
    def seconds(self) -> float:
        """Unpadded audio in the batch, in seconds."""
        return self.samples / SAMPLE_RATE

    def to(self, device: torch.device | str) -> "FeatureBatch":
        return FeatureBatch(self.features.to(device), self.frame_lengths.to(device),
                            None if self.labels is None else self.labels.to(device), self.index, self.samples,
                            self.token_energy)


class FeatureCache:
    """The frozen conv encoder's output for every training utterance at every speed factor.

    Args:
        model: the CTC model whose ``feature_extractor`` stays frozen while the cache is used.
        data: training audio with labels.
        speeds: speed factors to cache (see :func:`speed_grid`).
        batch_seconds: padded audio per encoder call while filling the cache.
        progress: show a progress bar.
        token_energy: also hold each token's receptive-field log energy
            (:func:`~s6damon.model.frames.frame_energy`, what the energy baseline ranks).

    Models with ``feat_extract_norm="layer"`` normalise each frame on its own, so features of
    a padded batch equal those of the single utterance on every valid frame; ``"group"``
    models (wav2vec2-base) normalise over time, padding included, so they are run one
    utterance at a time to keep each utterance's features its own.
    """

    def __init__(self, model: nn.Module, data: AudioSet, speeds: Sequence[float], batch_seconds: float = 60.0,
                 progress: bool = False, token_energy: bool = False) -> None:
        if data.labels is None:
            raise ValueError("FeatureCache: the training set needs labels (an AudioSet with a tokenizer)")
        self.data, self.speeds = data, [float(s) for s in speeds]
        base = base_model(model)
        per_utterance = getattr(base.config, "feat_extract_norm", "layer") == "group"
        self._feats: list[list[torch.Tensor]] = [[None] * len(data) for _ in self.speeds]  # type: ignore[list-item]
        self._energy: list[list[np.ndarray]] | None = (
            [[None] * len(data) for _ in self.speeds] if token_energy else None)  # type: ignore[list-item]
        self._samples = np.zeros((len(self.speeds), len(data)), dtype=np.int64)
        kernel, stride = conv_layout(base.config)
        t0 = time.perf_counter()
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        jobs = [(k, speed) for k, speed in enumerate(self.speeds)]
        total = len(jobs) * len(data)
        with torch.no_grad(), tqdm(total=total, desc="feature cache", disable=not progress) as bar:
            for k, speed in jobs:
                waves = [perturb_speed(data.wave(i), speed) for i in range(len(data))]
                self._samples[k] = [len(w) for w in waves]
                groups = ([[i] for i in range(len(waves))] if per_utterance else
                          bucket_batches(self._samples[k] / SAMPLE_RATE, batch_seconds, rng=None))
                for rows in groups:
                    batch = collate([waves[i] for i in rows], index=rows)
                    x = batch.input_values.to(device)
                    feats = base.feature_extractor(x).transpose(1, 2)
                    lengths = feature_lengths(base.config, batch.attention_mask.to(device), x).clamp(max=feats.shape[1])
                    for j, i in enumerate(rows):
                        n = int(lengths[j])
                        self._feats[k][i] = feats[j, :n].contiguous().cpu()
                        if self._energy is not None:  # of the normalised samples the step would see
                            wave = batch.input_values[j, : int(batch.attention_mask[j].sum())]
                            self._energy[k][i] = frame_energy(wave, n, kernel, stride)
                    bar.update(len(rows))
        model.train(was_training)
        self.seconds = time.perf_counter() - t0  # recorded in the finetune metrics
        mb = sum(f.numel() * f.element_size() for row in self._feats for f in row) / 2**20
        log.info("feature cache: %d utterances x %d speed factors %s, %.0f MB", len(data), len(self.speeds),
                 [round(s, 3) for s in self.speeds], mb)

    def save(self, path: str | Path) -> None:
        """Write the cache to ``path`` (atomically), for :meth:`load` by other runs on the same
        training set: the salad stage fills one cache for all its adaptation runs."""
        blob = {"format": CACHE_FORMAT, "paths": [str(p) for p in self.data.df["path"]], "speeds": self.speeds,
                "samples": self._samples, "frames": [[f.shape[0] for f in row] for row in self._feats],
                "features": [torch.cat(row) for row in self._feats],
                "energy": None if self._energy is None else [np.concatenate(row) for row in self._energy],
                "seconds": self.seconds}
        with io.atomic_path(path) as tmp:
            torch.save(blob, tmp)

    @classmethod
    def load(cls, path: str | Path, data: AudioSet) -> "FeatureCache":
        """A cache written by :meth:`save`, for ``data`` — the same utterances in the same order.

        Raises:
            ValueError: the file is unreadable or was made for other utterances (names the file).
        """
        try:
            blob = torch.load(path, map_location="cpu", weights_only=False)
            version, paths, frames = blob.get("format"), blob["paths"], blob["frames"]
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear error
            raise ValueError(f"{path}: not a readable feature cache ({err})") from err
        if version != CACHE_FORMAT:
            raise ValueError(f"{path}: a feature cache of format {version!r}, this code reads format {CACHE_FORMAT}; "
                             "delete it and rerun to refill it")
        if paths != [str(p) for p in data.df["path"]]:
            raise ValueError(f"{path}: a feature cache of {len(paths)} other utterances, not of this training set "
                             f"({len(data)} utterances)")
        if data.labels is None:
            raise ValueError("FeatureCache: the training set needs labels (an AudioSet with a tokenizer)")
        self = cls.__new__(cls)
        self.data, self.speeds, self.seconds = data, [float(v) for v in blob["speeds"]], float(blob["seconds"])
        self._samples = np.asarray(blob["samples"], dtype=np.int64)
        self._feats = [list(torch.split(f, n)) for f, n in zip(blob["features"], frames)]
        self._energy = (None if blob["energy"] is None else
                        [np.split(e, np.cumsum(n)[:-1]) for e, n in zip(blob["energy"], frames)])
        return self

    @property
    def has_token_energy(self) -> bool:
        """Whether each token's energy is held too (the energy baseline needs it)."""
        return self._energy is not None

    def batch(self, index: Sequence[int], rng: np.random.Generator | None = None) -> FeatureBatch:
        """Padded features of rows ``index``, each at a speed factor drawn with ``rng``
        (the middle factor without one)."""
        ks = (rng.integers(0, len(self.speeds), len(index)) if rng is not None and len(self.speeds) > 1
              else np.full(len(index), len(self.speeds) // 2))
        feats = [self._feats[k][i] for k, i in zip(ks, index)]
        T, C = max(f.shape[0] for f in feats), feats[0].shape[1]
        x = torch.zeros(len(feats), T, C, dtype=feats[0].dtype)
        for b, f in enumerate(feats):
            x[b, : f.shape[0]] = f
        lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        labels = [self.data.labels[i] for i in index]
        y = torch.full((len(index), max(1, max(len(l) for l in labels))), -100, dtype=torch.long)
        for b, l in enumerate(labels):
            y[b, : len(l)] = torch.tensor(l, dtype=torch.long)
        samples = int(sum(self._samples[k, i] for k, i in zip(ks, index)))
        energy = None if self._energy is None else [self._energy[k][i] for k, i in zip(ks, index)]
        return FeatureBatch(x, lengths, y, list(index), samples, energy)


class FeatureInputCTC(nn.Module):
    """A CTC model that takes cached conv features: the module the training loop runs (and,
    with several processes, wraps in DDP) when finetuning from a :class:`FeatureCache`.

    ``forward(batch)`` is the model's own forward after its conv encoder — feature
    projection, SpecAugment in training mode, positional conv + transformer with the padding
    mask, dropout, CTC head and the model's CTC loss — through
    :func:`s6damon.salad.dropping.drop_forward`: with nothing dropped around a plain CTC
    model, or with the tokens a dropping wrapper
    (:class:`~s6damon.salad.dropping.TokenDropCTC`, :class:`~s6damon.salad.methods.RatioCycle`)
    keeps. Decoding waveforms stays with the wrapped ``net``.

    Args:
        net: a ``Wav2Vec2ForCTC`` / ``HubertForCTC``, or a dropping wrapper around one whose
            ``forward`` takes ``features``, ``frame_lengths`` and ``token_energy``.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.model = net  # named so checkpoints of a plain cached finetune keep their keys

    @property
    def config(self):
        return self.model.config

    def forward(self, batch: FeatureBatch) -> DropOutput:
        if isinstance(self.model, PreTrainedModel):
            return drop_forward(self.model, None, features=batch.features, frame_lengths=batch.frame_lengths,
                                labels=batch.labels)
        return self.model(None, None, labels=batch.labels, features=batch.features,
                        frame_lengths=batch.frame_lengths, token_energy=batch.token_energy)
