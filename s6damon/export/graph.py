"""The deployable forward pass as one traceable module: detector → dropping → encoder → CTC head.

:class:`DropGraph` holds a (physically pruned) wav2vec 2.0 / HuBERT CTC model's modules and
an optional SALAD detector with its threshold, and computes, for a right-padded batch of
waveforms and their sample counts::

    conv encoder → feature projection → detector P(salient) → keep-mask (threshold, under the
    detector's drop rule) → at least one token per utterance → compaction (or merging)
    → positional conv + transformer → CTC head

returning ``(logits (B, T', V), lengths (B,))``. It is written so that ``torch.jit.trace`` and
the ONNX exporter record *one* graph with dynamic batch and length axes, token dropping
included:

- frame counts are integer arithmetic on the sample counts (no Python ints of data);
- the compaction is a sort, not a loop: every frame gets the key ``t`` when kept and
  ``t + T`` when dropped, so an ascending ``argsort`` (keys are unique: any sort algorithm,
  stable or not, gives the same order — ONNX ``TopK`` is not stable) puts the kept frames
  first in their original order; a ``gather`` then moves them, and the width ``T'`` is
  ``max(kept)`` taken as a tensor (``arange(max)`` → dynamic ``Range`` / ``Slice``);
- the "keep at least one token" guard is an ``argmax`` + ``where`` instead of
  :func:`s6damon.salad.guard.enforce_min_keep`'s per-utterance Python loop (with a floor of
  one token and no labels, both restore the most salient frame, so they agree);
- the encoder is called layer by layer with a precomputed additive attention mask
  instead of through Hugging Face's ``encoder.forward``, whose mask helpers branch on data
  (e.g. skip the mask when nothing is padded).

In eval mode, on a single utterance, its logits equal those of
:func:`s6damon.salad.dropping.drop_forward` (same modules, same order of operations).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize

from s6damon.model.frames import num_frames
from s6damon.pruning.model_parts import base_model
from s6damon.salad.detector import keep_from_probs
from s6damon.salad.dropping import merge_into_kept


def compact_tokens(hidden: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept tokens of each row moved to the front in order, the rest cut or zero-padded.

    Args:
        hidden: ``(B, T, D)``.
        keep: ``(B, T)`` bool (False on padding).

    Returns:
        ``(compacted (B, T', D), counts (B,))`` with ``T' = max(1, max(counts))``.
    """
    T = hidden.shape[1]
    pos = torch.arange(T, device=hidden.device)[None, :]
    key = torch.where(keep, pos, pos + T)  # unique keys: the order does not need a stable sort
    order = torch.argsort(key, dim=1)
    counts = keep.long().sum(1)
    width = torch.arange(counts.max().clamp(min=1), device=hidden.device)
    order = order.index_select(1, width)
    valid = width[None, :] < counts[:, None]
    out = torch.gather(hidden, 1, order.unsqueeze(-1).expand(-1, -1, hidden.shape[2]))
    return out * valid.unsqueeze(-1).to(out.dtype), counts


def fold_weight_norm(model: nn.Module) -> nn.Module:
    """Replace weight-normed convs (the positional conv) by plain ones holding the same weight.

    The exported graph then holds one constant instead of recomputing ``g * v / ||v||`` on
    every call. The module is *replaced*, not un-parametrised in place:
    ``remove_parametrizations`` deletes the weight property from the dynamically created
    ``Parametrized*`` class, which a deep copy shares with the original model.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv1d) and parametrize.is_parametrized(child):
                plain = nn.Conv1d(child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                                  padding=child.padding, dilation=child.dilation, groups=child.groups,
                                  bias=child.bias is not None, padding_mode=child.padding_mode)
                with torch.no_grad():
                    plain.weight.copy_(child.weight)
                    if child.bias is not None:
                        plain.bias.copy_(child.bias)
                setattr(parent, name, plain.to(child.bias.device if child.bias is not None else "cpu"))
    return model


class DropGraph(nn.Module):
    """Traceable inference module (see the module docstring).

    Args:
        model: a ``Wav2Vec2ForCTC`` / ``HubertForCTC`` (dense or physically pruned); it is
            deep-copied, put in eval mode and its weight norms folded.
        detector: a :class:`~s6damon.salad.detector.SaliencyDetector` or None (keep every frame).
        threshold: the detector's threshold, applied under its drop rule (a threshold, or
            never two neighbours dropped: cumulative sum, scatter, gather — no loop).
        merge: average each dropped token into the kept token before it (two scatter-adds)
            instead of discarding it, as the model was finetuned.
    """

    def __init__(self, model: nn.Module, detector: nn.Module | None = None, threshold: float = 0.5,
                 merge: bool = False) -> None:
        super().__init__()
        model = fold_weight_norm(copy.deepcopy(model)).eval()
        base = base_model(model)
        if getattr(base, "adapter", None) is not None:
            raise NotImplementedError("export of a wav2vec2 model with an adapter is not supported")
        cfg = model.config
        # sdpa: fastest eager kernel; the ONNX exporter decomposes it into MatMul/Softmax
        cfg._attn_implementation = "sdpa"
        self.config = cfg
        self.kernels = [int(k) for k in cfg.conv_kernel]
        self.strides = [int(s) for s in cfg.conv_stride]
        self.stable = bool(getattr(cfg, "do_stable_layer_norm", False))
        self.feature_extractor = base.feature_extractor
        self.feature_projection = base.feature_projection
        self.pos_conv_embed = base.encoder.pos_conv_embed
        self.encoder_norm = base.encoder.layer_norm
        self.layers = base.encoder.layers
        self.lm_head = model.lm_head
        self.detector = None if detector is None else copy.deepcopy(detector).eval()
        self.drop_rule = getattr(detector, "drop_rule", "threshold")
        self.merge = bool(merge) and detector is not None
        self.register_buffer("threshold", torch.tensor(float(threshold)), persistent=False)
        self.eval()

    def forward(self, input_values: torch.Tensor, num_samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC logits on the kept tokens.

        Args:
            input_values: ``(B, N)`` normalised waveforms, right-padded with zeros.
            num_samples: ``(B,)`` int64 real samples per row.

        Returns:
            ``(logits (B, T', V), lengths (B,))``; row ``b`` is valid up to ``lengths[b]``.
        """
        feats = self.feature_extractor(input_values).transpose(1, 2)  # (B, T, C)
        T = feats.shape[1]
        frames = num_frames(num_samples.long(), self.kernels, self.strides).clamp(max=T)
        frame_mask = torch.arange(T, device=feats.device)[None, :] < frames[:, None]
        proj = self.feature_projection(feats)
        hidden = proj[0] if isinstance(proj, tuple) else proj

        if self.detector is not None:
            scores = torch.sigmoid(self.detector(feats, frames))
            keep = keep_from_probs(scores, frames, self.threshold, rule=self.drop_rule) & frame_mask
            # an utterance must keep one token (attention needs one): its most salient frame
            best = torch.argmax(torch.where(frame_mask, scores, torch.full_like(scores, -1.0)), dim=1)
            rescue = (torch.arange(T, device=feats.device)[None, :] == best[:, None]) & (keep.sum(1) == 0)[:, None]
            keep = keep | (rescue & frame_mask)
        else:
            keep = frame_mask
        compacted, lengths = compact_tokens(hidden, keep)
        hidden = merge_into_kept(hidden, keep, frame_mask, compacted) if self.merge else compacted
        return self.lm_head(self._encode(hidden, lengths)), lengths

    def _encode(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Positional conv + transformer layers on compacted, zero-padded tokens."""
        width = hidden.shape[1]
        valid = torch.arange(width, device=hidden.device)[None, :] < lengths[:, None]
        # additive mask over keys, (B, 1, 1, T'): 0 on real tokens, a large negative on padding
        neg = torch.finfo(hidden.dtype).min
        mask = torch.where(valid, torch.zeros((), dtype=hidden.dtype), torch.full((), neg, dtype=hidden.dtype))
        mask = mask[:, None, None, :]
        hidden = hidden + self.pos_conv_embed(hidden)
        if not self.stable:
            hidden = self.encoder_norm(hidden)
        for layer in self.layers:
            hidden = layer(hidden, attention_mask=mask)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        if self.stable:
            hidden = self.encoder_norm(hidden)
        return hidden
