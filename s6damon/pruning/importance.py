"""Importance scores of structured units (heads, FFN neurons, conv channels).

One API, :func:`unit_importance`, with three methods:

- ``'l1'``: L1 norm of the unit's weights — SAFARI's sparsify criterion and the
  prune-and-grow drop criterion;
- ``'grad_l1'``: L1 norm of the same weights' ``.grad`` (accumulated over however many
  backward passes the caller ran) — the regrow criterion. Pruned units have zero gradient
  under a plain mask; call ``apply_masks(model, mask, dense_grad=True)`` before the
  backward passes to score them (their outgoing slice then holds the dense gradient);
- ``'random'``: seeded uniform scores, for the random-mask baseline.

And, scored from data rather than weights, :func:`fisher_importance`: the empirical Fisher
information of a multiplicative gate on each unit (Theis et al. 2018; Kwon et al. 2022),
i.e. the mean over examples of ``(dL/dgate)^2`` — a second-order estimate of how much the
loss rises when the unit is removed.

A unit's weights ("slices"):

- head ``h`` of layer ``l``: rows ``h*d:(h+1)*d`` of ``q_proj``, ``k_proj``, ``v_proj`` and
  the same columns of ``out_proj``;
- neuron ``j``: row ``j`` of ``intermediate_dense`` (fc1) and column ``j`` of ``output_dense`` (fc2);
- channel ``c`` of conv layer ``i``: output filter ``c`` of conv ``i`` and input slice ``c`` of
  conv ``i + 1``.

Biases and norm parameters are left out (they are per-unit scalars, not evidence of use).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from s6damon.pruning.model_parts import (
    UNIT_KINDS,
    conv_layers,
    encoder_layers,
    head_dim,
    prunable_conv_layers,
)

METHODS: tuple[str, ...] = ("l1", "grad_l1", "random")


def _abs_of(param: nn.Parameter, use_grad: bool) -> Tensor:
    if not use_grad:
        return param.detach().abs()
    if param.grad is None:
        return torch.zeros_like(param, memory_format=torch.contiguous_format).detach()
    return param.grad.detach().abs()


def _heads_scores(model: nn.Module, use_grad: bool) -> tuple[list[Tensor], list[int]]:
    dim = head_dim(model)
    scores, sizes = [], []
    for layer in encoder_layers(model):
        attn = layer.attention
        if not hasattr(attn, "q_proj"):  # physically emptied attention
            scores.append(torch.zeros(0))
            sizes.append(0)
            continue
        rows = sum(_abs_of(p.weight, use_grad).sum(1) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
        cols = _abs_of(attn.out_proj.weight, use_grad).sum(0)
        scores.append((rows + cols).view(-1, dim).sum(1))
        sizes.append(4 * dim * attn.out_proj.out_features)
    return scores, sizes


def _neuron_scores(model: nn.Module, use_grad: bool) -> tuple[list[Tensor], list[int]]:
    scores, sizes = [], []
    for layer in encoder_layers(model):
        ffn = layer.feed_forward
        fc1 = _abs_of(ffn.intermediate_dense.weight, use_grad).sum(1)
        fc2 = _abs_of(ffn.output_dense.weight, use_grad).sum(0)
        scores.append(fc1 + fc2)
        sizes.append(ffn.intermediate_dense.in_features + ffn.output_dense.out_features)
    return scores, sizes


def _conv_scores(model: nn.Module, use_grad: bool) -> tuple[list[Tensor], list[int]]:
    convs = conv_layers(model)
    scores, sizes = [], []
    for i in range(prunable_conv_layers(model)):
        own = _abs_of(convs[i].conv.weight, use_grad)  # (C_out, C_in, k)
        nxt = _abs_of(convs[i + 1].conv.weight, use_grad)  # (C_next, C_out, k_next)
        scores.append(own.sum((1, 2)) + nxt.sum((0, 2)))
        sizes.append(own[0].numel() + nxt[:, 0].numel())
    return scores, sizes


_SCORERS: dict[str, Callable[[nn.Module, bool], tuple[list[Tensor], list[int]]]] = {
    "heads": _heads_scores,
    "neurons": _neuron_scores,
    "conv_channels": _conv_scores,
}


def unit_importance(
    model: nn.Module,
    kind: str,
    method: str = "l1",
    *,
    normalise: bool = False,
    seed: int = 0,
) -> list[Tensor]:
    """Per-layer importance of every unit of one kind.

    Args:
        model: ``Wav2Vec2ForCTC`` / ``HubertForCTC`` (dense or already materialised).
        kind: ``'heads'``, ``'neurons'`` or ``'conv_channels'``.
        method: ``'l1'``, ``'grad_l1'`` or ``'random'``.
        normalise: divide each unit's sum by its number of weights (mean instead of sum),
            so units of layers of different widths (conv layers) compare fairly when pooled.
        seed: seed of ``'random'`` (one generator for all layers, in layer order).

    Returns:
        One float32 CPU tensor per layer, shape ``(units_in_layer,)``; higher = more important.
    """
    if kind not in UNIT_KINDS:
        raise ValueError(f"unknown unit kind {kind!r}; expected one of {UNIT_KINDS}")
    if method not in METHODS:
        raise ValueError(f"unknown importance method {method!r}; expected one of {METHODS}")
    scores, sizes = _SCORERS[kind](model, method == "grad_l1")
    if method == "random":
        gen = torch.Generator().manual_seed(seed)
        return [torch.rand(s.shape[0], generator=gen) for s in scores]
    out = [s.float().cpu() for s in scores]
    if normalise:
        out = [s / max(n, 1) for s, n in zip(out, sizes, strict=True)]
    return out


def all_importances(
    model: nn.Module,
    method: str = "l1",
    kinds: Iterable[str] = UNIT_KINDS,
    *,
    normalise: bool = False,
    seed: int = 0,
) -> dict[str, list[Tensor]]:
    """:func:`unit_importance` for several kinds at once, keyed by kind."""
    return {k: unit_importance(model, k, method, normalise=normalise, seed=seed + i)
            for i, k in enumerate(kinds)}


def gate_gradients(model: nn.Module, kind: str) -> list[Tensor]:
    """``dL/dgate`` of every unit of ``kind``, per layer, from the parameters' current ``.grad``.

    A gate multiplying a unit's activation scales exactly the unit's *outgoing* weight slice,
    so ``dL/dgate = sum(w * dL/dw)`` over that slice (``out_proj`` columns of a head,
    ``output_dense`` column of a neuron, the next conv's input slice of a channel): no hooks
    and no extra forward pass. Units whose slice has no gradient score 0.
    """
    if kind not in UNIT_KINDS:
        raise ValueError(f"unknown unit kind {kind!r}; expected one of {UNIT_KINDS}")

    def wg(param: nn.Parameter) -> Tensor:
        g = param.grad if param.grad is not None else torch.zeros_like(param)
        return (param.detach() * g.detach()).float()

    out: list[Tensor] = []
    if kind == "heads":
        dim = head_dim(model)
        for layer in encoder_layers(model):
            attn = layer.attention
            if not hasattr(attn, "q_proj"):
                out.append(torch.zeros(0))
                continue
            out.append(wg(attn.out_proj.weight).sum(0).view(-1, dim).sum(1).cpu())
    elif kind == "neurons":
        out = [wg(layer.feed_forward.output_dense.weight).sum(0).cpu() for layer in encoder_layers(model)]
    else:
        convs = conv_layers(model)
        out = [wg(convs[i + 1].conv.weight).sum((0, 2)).cpu() for i in range(prunable_conv_layers(model))]
    return out


def fisher_importance(model: nn.Module, examples: Iterable[Any], loss_of: Callable[[nn.Module, Any], Tensor],
                      kinds: Iterable[str] = UNIT_KINDS) -> dict[str, list[Tensor]]:
    """Empirical Fisher information of a gate on every unit: mean over ``examples`` of
    ``(dL/dgate)^2``, with ``L = loss_of(model, example)``.

    One backward pass per example (pass single utterances: squaring per-example gradients is
    what makes it the Fisher rather than the square of a batch mean). Runs in eval mode (no
    dropout or SpecAugment) and leaves ``.grad`` cleared and the train/eval mode as found.
    Scores are loss units, so units of different kinds and layers compare directly.
    """
    kinds = tuple(kinds)
    was_training = model.training
    model.eval()
    total: dict[str, list[Tensor]] | None = None
    n = 0
    try:
        for ex in examples:
            model.zero_grad(set_to_none=True)
            loss_of(model, ex).backward()
            sq = {k: [g.square() for g in gate_gradients(model, k)] for k in kinds}
            total = sq if total is None else {k: [a + b for a, b in zip(total[k], sq[k], strict=True)] for k in kinds}
            n += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if total is None:
        raise ValueError("fisher_importance: no examples to score with")
    return {k: [t / n for t in total[k]] for k in kinds}
