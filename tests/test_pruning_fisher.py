"""Fisher importance of structured units: gate gradients, the Fisher mean, Fisher masks."""

from __future__ import annotations

import pytest
import torch
from pruning_models import padded_batch, tiny_model

from s6damon.pruning import UNIT_KINDS, StructuredMask, removed_share
from s6damon.pruning.importance import fisher_importance, gate_gradients
from s6damon.pruning.model_parts import conv_layers, encoder_layers, head_dim
from s6damon.safari.selection import initial_mask

LABELS = torch.tensor([[3, 4, 5, 6], [7, 8, -100, -100]])


def _loss(model, seed: int = 1) -> torch.Tensor:
    audio, attention_mask = padded_batch(seed)
    return model(audio.to(next(model.parameters()).dtype), attention_mask=attention_mask, labels=LABELS).loss


def _loss64(model) -> torch.Tensor:
    """The CTC loss in float64 (the model's own loss casts to float32, too coarse for a finite difference)."""
    audio, attention_mask = padded_batch()
    logits = model(audio.double(), attention_mask=attention_mask).logits
    lengths = model._get_feat_extract_output_lengths(attention_mask.sum(-1))
    targets = LABELS[LABELS >= 0]
    target_lengths = (LABELS >= 0).sum(-1)
    log_probs = torch.log_softmax(logits.double(), -1).transpose(0, 1)
    return torch.nn.functional.ctc_loss(log_probs, targets, lengths, target_lengths, blank=0, zero_infinity=True)


def _outgoing_slice(model, kind: str, layer: int, unit: int) -> tuple[torch.nn.Parameter, tuple]:
    """The weight slice a gate on the unit would scale, as ``(param, index)``."""
    if kind == "heads":
        d = head_dim(model)
        return encoder_layers(model)[layer].attention.out_proj.weight, (slice(None), slice(unit * d, (unit + 1) * d))
    if kind == "neurons":
        return encoder_layers(model)[layer].feed_forward.output_dense.weight, (slice(None), unit)
    return conv_layers(model)[layer + 1].conv.weight, (slice(None), unit)


@pytest.mark.parametrize("kind,layer,unit", [("heads", 1, 2), ("neurons", 2, 5), ("conv_channels", 0, 3)])
def test_gate_gradient_matches_finite_difference_of_a_gate(kind, layer, unit):
    model = tiny_model().double()
    model.zero_grad()
    _loss64(model).backward()
    got = float(gate_gradients(model, kind)[layer][unit])
    param, idx = _outgoing_slice(model, kind, layer, unit)
    eps = 1e-4
    with torch.no_grad():
        base = param[idx].clone()
        param[idx] = base * (1 + eps)
        up = float(_loss64(model))
        param[idx] = base * (1 - eps)
        down = float(_loss64(model))
        param[idx] = base
    want = (up - down) / (2 * eps)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-10)
    assert abs(want) > 1e-6  # the check is not vacuous


def test_fisher_is_mean_of_squared_per_example_gate_gradients_and_restores_state():
    model = tiny_model()
    model.train()
    per_example = []
    for seed in (1, 2):
        model.eval()
        model.zero_grad()
        _loss(model, seed).backward()
        per_example.append({k: gate_gradients(model, k) for k in UNIT_KINDS})
    model.train()
    model.zero_grad(set_to_none=True)
    fisher = fisher_importance(model, [1, 2], lambda net, seed: _loss(net, seed))
    for kind in UNIT_KINDS:
        for l, got in enumerate(fisher[kind]):
            want = (per_example[0][kind][l] ** 2 + per_example[1][kind][l] ** 2) / 2
            torch.testing.assert_close(got, want)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="no examples"):
        fisher_importance(model, [], lambda net, seed: _loss(net, seed))


def test_fisher_mask_reaches_the_target_and_prunes_units_without_information_first():
    model = tiny_model()
    fisher = fisher_importance(model, [1, 2], lambda net, seed: _loss(net, seed))
    fisher["neurons"][1][:10] = 0.0  # ten neurons the loss never notices
    mask = initial_mask(model, 0.1, criterion="fisher", kinds=UNIT_KINDS, scope="global",
                        allow_layer_removal=False, seconds=1.0, fisher=fisher)
    assert removed_share(model, mask, seconds=1.0) >= 0.1
    assert not bool(mask.neurons[1][:10].any())
    assert all(bool(m.any()) for kind in UNIT_KINDS for m in mask.units(kind))
    full = StructuredMask.full(model)
    assert mask.kept("neurons") < full.kept("neurons")
    with pytest.raises(ValueError, match="Fisher scores"):
        initial_mask(model, 0.1, criterion="fisher", kinds=UNIT_KINDS, scope="global",
                     allow_layer_removal=False, seconds=1.0)
