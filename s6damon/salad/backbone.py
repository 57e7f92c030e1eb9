"""Access to the parts of a Hugging Face ``Wav2Vec2ForCTC`` / ``HubertForCTC`` that SALAD wraps.

Both families share the layout (transformers 5.24): ``model.<base>.feature_extractor``
(conv feature encoder), ``.feature_projection`` (LayerNorm + Linear; wav2vec2 returns
``(hidden, normed_features)``, HuBERT only ``hidden``), ``.encoder`` (positional conv
embedding + transformer, ``encoder(hidden, attention_mask=(B, T) bool)``), and
``model.dropout`` + ``model.lm_head`` on top. The modules are called, never copied, so a
pruned or otherwise modified model keeps working.
"""

from __future__ import annotations

import torch
from torch import nn

from s6damon.model.frames import conv_layout, num_frames
from s6damon.pruning.model_parts import base_model


def feature_lengths(config, attention_mask: torch.Tensor | None, input_values: torch.Tensor) -> torch.Tensor:
    """``(B,)`` token counts from a ``(B, N)`` sample-level attention mask (all valid if None)."""
    k, s = conv_layout(config)
    if attention_mask is None:
        n = torch.full((input_values.shape[0],), input_values.shape[-1], dtype=torch.long,
                       device=input_values.device)
    else:
        n = attention_mask.long().sum(-1)
    return num_frames(n, k, s).long()


def length_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """``(B, T)`` bool, True on the first ``lengths[b]`` positions."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def extract_features(model: nn.Module, input_values: torch.Tensor,
                     attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run only the conv feature encoder: the input of the SALAD detector.

    Args:
        model: a wav2vec2/HuBERT (CTC) model.
        input_values: ``(B, N)`` waveforms, right-padded.
        attention_mask: ``(B, N)`` 1 on real samples.

    With ``feat_extract_norm="group"`` (wav2vec2-base) the first conv's GroupNorm
    normalises over time including padding, so padded-batch features differ slightly from
    single-utterance ones, exactly as in the unmodified model; ``"layer"`` models are exact.

    Returns:
        ``(features, lengths)``: ``(B, T, C)`` conv features (``C = conv_dim[-1]``, padded
        positions zeroed) and ``(B,)`` valid token counts.
    """
    base = base_model(model)
    feats = base.feature_extractor(input_values).transpose(1, 2)
    lengths = feature_lengths(base.config, attention_mask, input_values).clamp(max=feats.shape[1])
    feats = feats * length_mask(lengths, feats.shape[1])[..., None].to(feats.dtype)
    return feats, lengths
