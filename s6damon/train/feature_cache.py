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

Memory: ``conv_dim[-1]`` float32 values per 20 ms token — 25.6 kB per second of audio for
128 channels, so 0.76 h of training audio at 5 speed factors holds about 350 MB.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from s6damon.salad.backbone import base_model, feature_lengths
from s6damon.salad.dropping import DropOutput, drop_forward
from s6damon.train.data import SAMPLE_RATE, AudioSet, bucket_batches, collate, perturb_speed

log = logging.getLogger(__name__)


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
    """

    features: torch.Tensor
    frame_lengths: torch.Tensor
    labels: torch.Tensor | None
    index: list[int]
    samples: int

    @property
    def seconds(self) -> float:
        """Unpadded audio in the batch, in seconds."""
        return self.samples / SAMPLE_RATE

    def to(self, device: torch.device | str) -> "FeatureBatch":
        return FeatureBatch(self.features.to(device), self.frame_lengths.to(device),
                            None if self.labels is None else self.labels.to(device), self.index, self.samples)


class FeatureCache:
    """The frozen conv encoder's output for every training utterance at every speed factor.

    Args:
        model: the CTC model whose ``feature_extractor`` stays frozen while the cache is used.
        data: training audio with labels.
        speeds: speed factors to cache (see :func:`speed_grid`).
        batch_seconds: padded audio per encoder call while filling the cache.
        progress: show a progress bar.

    Models with ``feat_extract_norm="layer"`` normalise each frame on its own, so features of
    a padded batch equal those of the single utterance on every valid frame; ``"group"``
    models (wav2vec2-base) normalise over time, padding included, so they are run one
    utterance at a time to keep each utterance's features its own.
    """

    def __init__(self, model: nn.Module, data: AudioSet, speeds: Sequence[float], batch_seconds: float = 60.0,
                 progress: bool = False) -> None:
        if data.labels is None:
            raise ValueError("FeatureCache: the training set needs labels (an AudioSet with a tokenizer)")
        self.data, self.speeds = data, [float(s) for s in speeds]
        base = base_model(model)
        per_utterance = getattr(base.config, "feat_extract_norm", "layer") == "group"
        self._feats: list[list[torch.Tensor]] = [[None] * len(data) for _ in self.speeds]  # type: ignore[list-item]
        self._samples = np.zeros((len(self.speeds), len(data)), dtype=np.int64)
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
                        self._feats[k][i] = feats[j, : int(lengths[j])].contiguous().cpu()
                    bar.update(len(rows))
        model.train(was_training)
        self.seconds = time.perf_counter() - t0  # recorded in the finetune metrics
        mb = sum(f.numel() * f.element_size() for row in self._feats for f in row) / 2**20
        log.info("feature cache: %d utterances x %d speed factors %s, %.0f MB", len(data), len(self.speeds),
                 [round(s, 3) for s in self.speeds], mb)

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
        return FeatureBatch(x, lengths, y, list(index), samples)


class FeatureInputCTC(nn.Module):
    """A CTC model that takes cached conv features: the module the training loop runs (and,
    with several processes, wraps in DDP) when finetuning from a :class:`FeatureCache`.

    ``forward(batch)`` is the model's own forward after its conv encoder — feature
    projection, SpecAugment in training mode, positional conv + transformer with the padding
    mask, dropout, CTC head and the model's CTC loss — through
    :func:`s6damon.salad.dropping.drop_forward` with nothing dropped. Decoding waveforms
    stays with the wrapped ``model``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def config(self):
        return self.model.config

    def forward(self, batch: FeatureBatch) -> DropOutput:
        return drop_forward(self.model, None, features=batch.features, frame_lengths=batch.frame_lengths,
                            labels=batch.labels)
