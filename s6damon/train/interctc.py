"""Intermediate CTC: an auxiliary CTC loss on the output of middle transformer layers.

Lee & Watanabe (2021), "Intermediate loss regularization for CTC-based speech recognition"
(ESPnet's ``interctc_weight``): the output of a middle layer goes through the encoder's own
final LayerNorm and the model's own CTC head, and its CTC loss is mixed into the training
loss, ``(1 - w) * CTC(last) + w * mean_k CTC(layer k)``. No parameters are added, so the saved
model, decoding and every later stage are unchanged; it only changes what training asks of
the lower layers (to be decodable already), which regularises a small model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from s6damon.pruning.model_parts import base_model
from s6damon.model.ctc import ctc_loss


def check_layers(layers: Sequence[int], num_layers: int) -> None:
    """Intermediate layers are 1-based and strictly below the last one (its loss is the main one)."""
    bad = [k for k in layers if not 1 <= k < num_layers]
    if bad or not layers:
        raise ValueError(f"intermediate CTC: layers must be in 1..{num_layers - 1} for a {num_layers}-layer "
                         f"model, got {list(layers)}")


def layer_logits(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """CTC logits of one middle layer's output through the model's own final norm and head.

    With the pre-LN ("stable layer norm") encoder the residual stream is normalised only after
    the last layer, so a middle layer's output gets that LayerNorm too; the post-LN encoder's
    layer outputs are already normalised (its ``encoder.layer_norm`` runs before the layers).
    """
    if model.config.do_stable_layer_norm:
        hidden = base_model(model).encoder.layer_norm(hidden)
    return model.lm_head(model.dropout(hidden))


def interctc_loss(model: nn.Module, hidden_states: Sequence[torch.Tensor], labels: torch.Tensor,
                  frame_lengths: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
    """Mean CTC loss of the given 1-based layers' outputs.

    Args:
        model: the ``*ForCTC`` model whose forward produced ``hidden_states``.
        hidden_states: the forward's ``output_hidden_states`` tuple: entry ``k`` is the output of
            layer ``k`` (entry 0 is the transformer's input).
        labels: ``(B, L)`` padded with -100, as for the model's own loss.
        frame_lengths: ``(B,)`` valid frames of each utterance.
        layers: 1-based layer numbers, each below the last layer.
    """
    check_layers(layers, model.config.num_hidden_layers)
    losses = [ctc_loss(model, layer_logits(model, hidden_states[k]), labels, frame_lengths) for k in layers]
    return torch.stack(losses).mean()
