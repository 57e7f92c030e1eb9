"""SALAD token dropping inside a Hugging Face ``Wav2Vec2ForCTC`` / ``HubertForCTC``.

The redundant tokens are removed between the feature projection and the transformer
encoder, so the positional conv embedding, every transformer layer and the CTC head run on
the shorter, *compacted* sequence (kept tokens in their original order, right-padded per
batch). This wraps the model's own modules (see :mod:`s6damon.salad.backbone`) rather than
copying them; with every token kept the logits equal the unmodified model's.

The conv feature encoder and the feature projection still run on every frame: the
detector needs their output, and they are per-frame operations anyway.

CTC guard: an utterance must keep at least ``ctc_required_length(target)`` tokens
(target length plus its adjacent repeats), or its CTC loss is infinite. When a keep-mask
violates this (or the plain ``min_keep`` / ``min_keep_ratio`` floors) tokens are
restored: most-salient first when detector probabilities are available, else spread
uniformly over the dropped tokens; each such utterance counts as a *fallback*
(:attr:`DropOutput.fallbacks`, :attr:`TokenDropCTC.stats`).

Usage::

    drop = TokenDropCTC(model, detector=det, threshold=thr)
    out = drop(batch.input_values, batch.attention_mask, labels=batch.labels)
    out.loss.backward()                            # CTC over out.lengths, not the full lengths
    ids = out.logits.argmax(-1)                    # decode ids[b, :out.lengths[b]]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from s6damon.model.ctc import ctc_loss
from s6damon.salad.backbone import base_model, feature_lengths, length_mask
from s6damon.salad.detector import keep_from_probs
from s6damon.salad.guard import ctc_required_lengths, enforce_min_keep

#: keep-mask policy: ``(input_values, attention_mask, frame_lengths, T) -> (B, T) bool``; how
#: the baselines (uniform, random, energy) choose tokens without a detector. A policy that can
#: also choose from cached features (no waveform) has ``from_features(frame_lengths, T,
#: token_energy)`` (:class:`~s6damon.salad.baselines.BaselinePolicy`).
KeepPolicy = Callable[[torch.Tensor, "torch.Tensor | None", torch.Tensor, int], torch.Tensor]


@dataclasses.dataclass
class DropOutput:
    """Result of a token-dropped forward pass.

    Attributes:
        logits: ``(B, T', V)`` CTC logits on the compacted sequence; positions at or after
            ``lengths[b]`` are padding.
        lengths: ``(B,)`` kept token counts (the CTC input lengths).
        keep: ``(B, T)`` final keep-mask over the full frames (after the guard).
        index: ``(B, T')`` frame index of each compacted position (padding: arbitrary).
        frame_lengths: ``(B,)`` valid frame counts before dropping.
        loss: CTC loss when labels were given, else None.
        fallbacks: number of utterances whose keep-mask the guard had to extend.
        fell_back: ``(B,)`` bool, which utterances those were.
        hidden_states: ``(B, T', H)`` the encoder's last hidden state on the kept tokens.
    """

    logits: torch.Tensor
    lengths: torch.Tensor
    keep: torch.Tensor
    index: torch.Tensor
    frame_lengths: torch.Tensor
    loss: torch.Tensor | None = None
    fallbacks: int = 0
    fell_back: torch.Tensor | None = None
    hidden_states: torch.Tensor | None = None

    @property
    def drop_ratio(self) -> float:
        """Share of valid frames dropped in this batch."""
        total = int(self.frame_lengths.sum())
        return 1.0 - int(self.lengths.sum()) / total if total else 0.0


def compact(hidden: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gather the kept tokens of each sequence to the front, in order, and pad the rest.

    Differentiable with respect to ``hidden`` (a gather), so training works through it.

    Args:
        hidden: ``(B, T, D)`` token vectors.
        keep: ``(B, T)`` bool; must already be False on padding.

    Returns:
        ``(compacted, mask, index)``: ``(B, T', D)`` with ``T' = max(1, max kept)``,
        padded positions zeroed; ``(B, T')`` bool mask of real positions; ``(B, T')``
        long source frame index per position.
    """
    B, T, D = hidden.shape
    counts = keep.sum(-1)
    width = max(1, int(counts.max())) if B else 1
    # a stable sort on "dropped?" moves kept frames to the front without reordering them
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :width]
    mask = length_mask(counts, width)
    out = torch.gather(hidden, 1, order[..., None].expand(B, width, D))
    return out * mask[..., None].to(out.dtype), mask, order


def frame_owners(keep: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` compacted position that owns each frame: the last kept token at or before it
    (frames before an utterance's first kept token belong to that one). A cumulative sum, so
    the exported graph can call it (no loop, no shape taken from data)."""
    return (torch.cumsum(keep.long(), dim=1) - 1).clamp(min=0)


def merge_into_kept(hidden: torch.Tensor, keep: torch.Tensor, valid: torch.Tensor,
                    compacted: torch.Tensor) -> torch.Tensor:
    """Compact by merging: each kept token becomes the mean of itself and the dropped tokens
    that follow it (dropped tokens before an utterance's first kept token join that one).

    A dropped token's content is averaged into its kept neighbour instead of lost, so the
    transformer still sees, e.g., the tail of a long phone. The owner of each frame is the
    running count of kept tokens (a cumulative sum), so this is two scatter-adds — no loop,
    no shape taken from data: the exported graph (:mod:`s6damon.export.graph`) calls it too.

    Args:
        hidden: ``(B, T, D)`` token vectors.
        keep: ``(B, T)`` bool, False on padding; valid: ``(B, T)`` bool real frames.
        compacted: ``(B, T', D)``, the same tokens compacted by dropping (:func:`compact`):
            gives the output's shape; its positions line up with the result's.

    Returns:
        ``(B, T', D)`` merged tokens, zero past each utterance's kept count.
    """
    owner = frame_owners(keep)
    weight = valid.to(hidden.dtype)
    sums = torch.zeros_like(compacted).scatter_add(1, owner.unsqueeze(-1).expand_as(hidden),
                                                  hidden * weight.unsqueeze(-1))
    counts = torch.zeros_like(compacted[..., 0]).scatter_add(1, owner, weight)
    # positions past the kept count own no frame: 0 / 1 = 0, as compaction pads
    return sums / counts.clamp(min=1.0).unsqueeze(-1)


def token_spans(keep: torch.Tensor, valid: torch.Tensor, width: int) -> torch.Tensor:
    """How many frames each compacted token stands for: itself and the dropped frames after
    it up to the next kept one (the frames :func:`merge_into_kept` averages into it).

    Args:
        keep: ``(B, T)`` bool, False on padding; valid: ``(B, T)`` bool real frames.
        width: ``T'``, the compacted length.

    Returns:
        ``(B, T')`` long, 0 past each utterance's kept count.
    """
    spans = torch.zeros(keep.shape[0], width, dtype=torch.long, device=keep.device)
    return spans.scatter_add(1, frame_owners(keep), valid.long())


class SpanEmbedding(nn.Module):
    """A learned vector per token span (1, 2, ..., ``max_span`` frames and more), added to
    each compacted token before the positional conv: the transformer is told how much time
    each kept token covers, which dropping otherwise hides from it. Zero at start, so an
    untrained one leaves the model's output unchanged."""

    def __init__(self, max_span: int, hidden_size: int) -> None:
        super().__init__()
        self.max_span = int(max_span)
        self.table = nn.Embedding(self.max_span, hidden_size)
        nn.init.zeros_(self.table.weight)

    def forward(self, hidden: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
        index = (spans.clamp(1, self.max_span) - 1)
        return hidden + self.table(index).to(hidden.dtype) * (spans > 0).unsqueeze(-1).to(hidden.dtype)


def expand(values: torch.Tensor, index: torch.Tensor, mask: torch.Tensor, T: int, fill: float = 0.0) -> torch.Tensor:
    """Inverse of :func:`compact`: put compacted values back on the full frame grid.

    Args:
        values: ``(B, T', ...)`` per compacted position (e.g. logits).
        index: ``(B, T')`` from :func:`compact`.
        mask: ``(B, T')`` real positions.
        T: full number of frames.

    Returns:
        ``(B, T, ...)`` with dropped frames set to ``fill``.
    """
    B = values.shape[0]
    out = values.new_full((B, T, *values.shape[2:]), fill)
    b, j = torch.nonzero(mask, as_tuple=True)
    out[b, index[b, j]] = values[b, j]
    return out


def drop_forward(model: nn.Module, input_values: torch.Tensor | None, attention_mask: torch.Tensor | None = None,
                 keep: torch.Tensor | None = None, labels: torch.Tensor | None = None, *,
                 detector: nn.Module | None = None, threshold: float = 0.5, min_keep: int = 1,
                 min_keep_ratio: float = 0.0, apply_spec_augment: bool = True,
                 policy: KeepPolicy | None = None, features: torch.Tensor | None = None,
                 frame_lengths: torch.Tensor | None = None, merge: bool = False,
                 token_energy: Sequence[np.ndarray] | None = None,
                 span_embedding: SpanEmbedding | None = None) -> DropOutput:
    """Forward a wav2vec2/HuBERT CTC model with the transformer on the kept tokens only.

    Steps: conv feature encoder -> feature projection -> (SpecAugment, training only, on
    the full sequence as in the unmodified model) -> keep-mask (given, or from the detector
    on the conv features) -> CTC guard -> :func:`compact` -> ``encoder`` (positional conv
    embedding + transformer) with the compacted padding mask -> dropout -> ``lm_head``.

    Args:
        model: ``Wav2Vec2ForCTC`` or ``HubertForCTC`` (train or eval mode).
        input_values: ``(B, N)`` right-padded waveforms.
        attention_mask: ``(B, N)`` 1 on real samples (None: no padding).
        keep: ``(B, T)`` bool, True = keep (``T`` = conv frames; a narrower mask is padded
            with False, a wider one cut). Overrides the detector. Keep all when both are None.
        labels: ``(B, L)`` CTC targets, ``-100`` on padding; enables the loss and the
            transcript part of the guard.
        detector: a :class:`~s6damon.salad.detector.SaliencyDetector` run (without
            gradients) on the conv features when ``keep`` is None.
        threshold: the detector's threshold, applied under its drop rule
            (:func:`~s6damon.salad.detector.keep_from_probs`).
        policy: computes the keep-mask when neither ``keep`` nor ``detector`` is given
            (the baselines of :mod:`s6damon.salad.baselines`).
        min_keep: fewest tokens any utterance keeps (>= 1: attention needs a token).
        min_keep_ratio: also keep at least ``ceil(ratio * frames)`` tokens per utterance.
        apply_spec_augment: apply the model's SpecAugment in training mode.
        features: ``(B, T, C)`` conv features computed earlier (with ``frame_lengths``, their
            valid counts): the conv encoder is skipped and ``input_values`` may be None. The
            finetuning feature cache (:mod:`s6damon.train.feature_cache`) calls it so; with
            nothing dropped this is the model's own forward after its conv encoder. A
            ``policy`` then chooses through its ``from_features``.
        merge: average each dropped token into the kept token before it
            (:func:`merge_into_kept`) instead of discarding it.
        token_energy: with ``features``, each utterance's per-token log energy (cached
            beside the features), for a policy that ranks tokens by energy.
        span_embedding: adds to each kept token a learned vector for the number of frames
            it stands for (:class:`SpanEmbedding`).

    Returns:
        A :class:`DropOutput`; ``lengths`` are the CTC input lengths.
    """
    base = base_model(model)
    if getattr(base, "adapter", None) is not None:
        raise NotImplementedError("token dropping with a wav2vec2 adapter (add_adapter=True) is not supported")
    config = base.config
    if features is None:
        feats = base.feature_extractor(input_values).transpose(1, 2)  # (B, T, C)
        frame_len = feature_lengths(config, attention_mask, input_values)
    else:
        if frame_lengths is None:
            raise ValueError("drop_forward: features need their frame_lengths")
        feats, frame_len = features, frame_lengths.to(features.device).long()
    B, T, _ = feats.shape
    frame_len = frame_len.clamp(0, T)
    frame_mask = length_mask(frame_len, T)

    proj = base.feature_projection(feats)
    hidden = proj[0] if isinstance(proj, tuple) else proj  # wav2vec2 returns (hidden, normed)
    if apply_spec_augment and model.training:
        hidden = base._mask_hidden_states(hidden, attention_mask=frame_mask)

    scores = None
    if keep is None and detector is not None:
        with torch.no_grad():
            scores = torch.sigmoid(detector(feats.detach(), frame_len))
        keep = keep_from_probs(scores, frame_len, threshold, rule=getattr(detector, "drop_rule", "threshold"))
    if keep is None and policy is not None:
        if input_values is not None:
            keep = policy(input_values, attention_mask, frame_len, T)
        elif hasattr(policy, "from_features"):
            keep = policy.from_features(frame_len, T, token_energy)
        else:
            raise ValueError("drop_forward: this keep policy reads the waveform (input_values), "
                             "which cached features do not carry")
    if keep is None:
        keep = frame_mask
    keep = keep.to(feats.device).bool()
    if keep.shape[1] != T:
        # masks built from token lengths are max(lengths) wide; the batch may be padded wider
        keep = keep[:, :T] if keep.shape[1] > T else torch.nn.functional.pad(keep, (0, T - keep.shape[1]))
    keep = keep & frame_mask

    need = torch.full((B,), max(1, int(min_keep)), dtype=torch.long, device=feats.device)
    if min_keep_ratio > 0:
        need = torch.maximum(need, torch.ceil(frame_len.double() * min_keep_ratio).long())
    if labels is not None:
        need = torch.maximum(need, ctc_required_lengths(labels.to(feats.device), blank_id=config.pad_token_id))
    keep, fell_back = enforce_min_keep(keep, need, frame_len, scores)

    compacted, mask, index = compact(hidden, keep)
    hidden = merge_into_kept(hidden, keep, frame_mask, compacted) if merge else compacted
    if span_embedding is not None:
        hidden = span_embedding(hidden, token_spans(keep, frame_mask, hidden.shape[1]))
    lengths = mask.sum(-1)
    # no padding -> no mask, exactly as the unmodified model is called on unpadded input
    enc = base.encoder(hidden, attention_mask=None if bool(mask.all()) else mask)
    hs = enc.last_hidden_state if hasattr(enc, "last_hidden_state") else enc[0]
    logits = model.lm_head(model.dropout(hs))

    loss = None
    if labels is not None:
        loss = ctc_loss(model, logits, labels, lengths)
    return DropOutput(logits=logits, lengths=lengths, keep=keep, index=index, frame_lengths=frame_len,
                      loss=loss, fallbacks=int(fell_back.sum()), fell_back=fell_back,
                      hidden_states=hs)


class TokenDropCTC(nn.Module):
    """A CTC model whose transformer sees only the tokens SALAD keeps.

    Holds the wrapped model (its parameters are this module's, so optimisers, ``state_dict``
    and DDP see them), an optional frozen detector and threshold, and running statistics
    of kept tokens and guard fallbacks. Under DDP wrap this module, not the inner model:
    the inner model's ``forward`` is never called, only its submodules.

    Args:
        model: ``Wav2Vec2ForCTC`` / ``HubertForCTC``.
        detector: salience detector (frozen: excluded from gradients); None = keep-masks
            must be passed to :meth:`forward`, or everything is kept.
        threshold: detector threshold (see :func:`~s6damon.salad.detector.choose_threshold`).
        min_keep, min_keep_ratio, apply_spec_augment, policy, merge: see :func:`drop_forward`.
    """

    def __init__(self, model: nn.Module, detector: nn.Module | None = None, threshold: float = 0.5,
                 min_keep: int = 1, min_keep_ratio: float = 0.0, apply_spec_augment: bool = True,
                 policy: KeepPolicy | None = None, merge: bool = False,
                 span_embedding: SpanEmbedding | None = None) -> None:
        super().__init__()
        self.merge = bool(merge)
        self.span_embedding = span_embedding
        self.model = model
        self.detector = detector
        if detector is not None:
            detector.requires_grad_(False).eval()
        self.threshold = float(threshold)
        self.min_keep = int(min_keep)
        self.min_keep_ratio = float(min_keep_ratio)
        self.apply_spec_augment = apply_spec_augment
        self.policy = policy
        self.reset_stats()

    @property
    def config(self):
        """The wrapped model's config."""
        return self.model.config

    def train(self, mode: bool = True) -> "TokenDropCTC":
        super().train(mode)
        if hasattr(self.policy, "training"):
            self.policy.training = mode  # e.g. random masks: fresh per step, fixed in evaluation
        if self.detector is not None:
            self.detector.eval()  # the detector is never trained here (no dropout noise)
        return self

    def reset_stats(self) -> None:
        """Zero the running counters."""
        self.utterances = 0
        self.fallbacks = 0
        self.frames = 0
        self.kept = 0

    @property
    def stats(self) -> dict[str, float]:
        """Running ``utterances``, ``fallbacks``, ``fallback_rate`` and achieved ``drop_ratio``."""
        return {"utterances": self.utterances, "fallbacks": self.fallbacks,
                "fallback_rate": self.fallbacks / self.utterances if self.utterances else math.nan,
                "drop_ratio": 1.0 - self.kept / self.frames if self.frames else math.nan}

    def forward(self, input_values: torch.Tensor | None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, keep: torch.Tensor | None = None, *,
                features: torch.Tensor | None = None, frame_lengths: torch.Tensor | None = None,
                token_energy: Sequence[np.ndarray] | None = None) -> DropOutput:
        """See :func:`drop_forward`; ``keep`` overrides the detector for this call, and
        ``features`` (with ``frame_lengths``, ``token_energy``) stand in for the conv encoder's
        output (:class:`~s6damon.train.feature_cache.FeatureInputCTC`)."""
        out = drop_forward(self.model, input_values, attention_mask, keep=keep, labels=labels,
                           detector=self.detector, threshold=self.threshold, min_keep=self.min_keep,
                           min_keep_ratio=self.min_keep_ratio, apply_spec_augment=self.apply_spec_augment,
                           policy=self.policy, merge=self.merge, features=features, frame_lengths=frame_lengths,
                           token_energy=token_energy, span_embedding=self.span_embedding)
        self.utterances += int(out.lengths.numel())
        self.fallbacks += out.fallbacks
        self.frames += int(out.frame_lengths.sum())
        self.kept += int(out.lengths.sum())
        return out
