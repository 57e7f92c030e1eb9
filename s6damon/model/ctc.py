"""The CTC loss of a Hugging Face CTC model, on logits its own forward did not compute."""
from __future__ import annotations

import torch
from torch import nn


def ctc_loss(model: nn.Module, logits: torch.Tensor, labels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The model's own CTC loss (same reduction/zero_infinity as its forward) on ``lengths`` frames.

    For logits the model's forward did not compute itself: a shortened sequence (SALAD) or a
    middle layer's output (intermediate CTC).
    """
    cfg = model.config
    kw = dict(logits=logits, labels=labels, logit_lengths=lengths, blank_token_id=cfg.pad_token_id,
              reduction=cfg.ctc_loss_reduction, zero_infinity=cfg.ctc_zero_infinity)
    fn = getattr(model, "loss_function", None)
    if fn is None:  # pragma: no cover - older transformers
        from transformers.loss.loss_ctc import ForCTCLoss as fn
    return fn(**kw)
