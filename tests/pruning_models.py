"""Tiny random-weight wav2vec 2.0 / HuBERT CTC models for the pruning tests."""

from __future__ import annotations

import torch
from transformers import HubertConfig, HubertForCTC, Wav2Vec2Config, Wav2Vec2ForCTC

SMALL = dict(
    hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
    conv_dim=(16, 16, 16), conv_kernel=(10, 3, 2), conv_stride=(5, 2, 2),
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=12,
    hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
    layerdrop=0.0, mask_time_prob=0.0,
)

#: name → (config class, model class, extra config)
VARIANTS = {
    "w2v2-group": (Wav2Vec2Config, Wav2Vec2ForCTC, dict(feat_extract_norm="group")),
    "w2v2-layer-stable": (Wav2Vec2Config, Wav2Vec2ForCTC,
                          dict(feat_extract_norm="layer", do_stable_layer_norm=True)),
    "hubert": (HubertConfig, HubertForCTC, dict(feat_extract_norm="group")),
}


def tiny_model(variant: str = "w2v2-group", seed: int = 0):
    """A tiny model in eval mode with random (seeded) weights, biases made non-zero."""
    cfg_cls, model_cls, extra = VARIANTS[variant]
    torch.manual_seed(seed)
    model = model_cls(cfg_cls(**SMALL, **extra)).eval()
    with torch.no_grad():  # non-zero biases and norm affines, so masking them out is visible
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def padded_batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Two utterances (0.4 s and 0.27 s at 16 kHz), right-padded: ``(2, 6400)`` audio and mask."""
    gen = torch.Generator().manual_seed(seed)
    audio = torch.randn(2, 6400, generator=gen)
    attention_mask = torch.ones(2, 6400, dtype=torch.long)
    audio[1, 4300:] = 0
    attention_mask[1, 4300:] = 0
    return audio, attention_mask
