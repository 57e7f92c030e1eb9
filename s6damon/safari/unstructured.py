"""Unstructured (per-weight) magnitude masks at a FLOPs target, for PARP.

A zeroed weight saves the multiply-accumulates it takes part in: ``2 * T_i`` FLOPs for a
weight of conv layer ``i`` (``T_i`` its output frames) and ``2 * T`` for a weight of the
feature projection or a transformer linear layer (``T`` encoder frames). This is the same
count as :func:`s6damon.pruning.flops.flops_from_sizes`, read per weight, so "FLOPs
removed" means the same thing for unstructured and structured masks (the sparse kernel
that would realise it is another matter, stated in the README). Weights that cannot be
pruned this way: the attention scores / weighted sums (no weights), the positional conv
(weight-normed; left dense), biases and norms.

Ranking: global over all prunable matrices by ``|w| / mean(|W|)`` of the weight's matrix,
so conv filters and linear layers, whose scales differ by orders of magnitude, compete
fairly; the smallest are zeroed until the FLOPs target is met.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from s6damon.model.frames import layer_frames
from s6damon.pruning.flops import SAMPLE_RATE, encoder_flops, model_sizes
from s6damon.pruning.model_parts import base_model, conv_layers, encoder_layers

#: name → bool keep-mask of that weight's shape
WeightMasks = dict[str, Tensor]


def prunable_weights(model: nn.Module, seconds: float = 10.0,
                     sample_rate: int = SAMPLE_RATE) -> Iterator[tuple[str, nn.Parameter, int]]:
    """``(name, weight, FLOPs per weight)`` of every weight matrix unstructured pruning may zero."""
    names = {id(p): n for n, p in model.named_parameters()}
    sizes = model_sizes(model)
    lengths = layer_frames(round(seconds * sample_rate), sizes.conv_kernel, sizes.conv_stride)
    for conv, t in zip(conv_layers(model), lengths, strict=True):
        yield names[id(conv.conv.weight)], conv.conv.weight, 2 * t
    frames = lengths[-1]
    proj = base_model(model).feature_projection.projection
    yield names[id(proj.weight)], proj.weight, 2 * frames
    for layer in encoder_layers(model):
        attn, ffn = layer.attention, layer.feed_forward
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj,
                    ffn.intermediate_dense, ffn.output_dense):
            yield names[id(lin.weight)], lin.weight, 2 * frames


def magnitude_masks(model: nn.Module, target_removed_share: float, seconds: float = 10.0) -> WeightMasks:
    """Keep-masks that zero the smallest weights until ``target_removed_share`` of the
    dense encoder FLOPs (for a ``seconds`` input) are removed.

    Raises:
        ValueError: the target is beyond what zeroing every prunable weight removes.
    """
    dense = encoder_flops(model, None, seconds)["total"]
    goal = target_removed_share * dense
    entries = list(prunable_weights(model, seconds))
    scores, costs = [], []
    for _, w, cost in entries:
        a = w.detach().abs().flatten().float().cpu()
        scores.append(a / a.mean().clamp_min(1e-12))
        costs.append(torch.full_like(a, float(cost), dtype=torch.float64))
    score, cost = torch.cat(scores), torch.cat(costs)
    if float(cost.sum()) < goal:
        raise ValueError(f"cannot remove {target_removed_share:.3f} of the FLOPs by unstructured pruning: "
                         f"at most {float(cost.sum()) / dense:.3f} (attention scores and the positional conv stay)")
    order = torch.argsort(score, stable=True)
    removed = torch.cumsum(cost[order], 0)
    n = int(torch.searchsorted(removed, torch.tensor([goal], dtype=torch.float64))[0]) + 1 if goal > 0 else 0
    keep = torch.ones(score.numel(), dtype=torch.bool)
    keep[order[:n]] = False
    masks, start = {}, 0
    for name, w, _ in entries:
        masks[name] = keep[start:start + w.numel()].view(w.shape)
        start += w.numel()
    return masks


@torch.no_grad()
def zero_weights(model: nn.Module, masks: WeightMasks) -> None:
    """Zero the pruned weights in place (they may grow back if trained without a mask)."""
    params = dict(model.named_parameters())
    for name, keep in masks.items():
        w = params[name]
        w.mul_(keep.to(device=w.device, dtype=w.dtype))


def removed_flops(model: nn.Module, masks: WeightMasks, seconds: float = 10.0) -> int:
    """Encoder FLOPs the pruned weights of ``masks`` account for."""
    costs = {name: cost for name, _, cost in prunable_weights(model, seconds)}
    return int(sum(int((~keep).sum()) * costs[name] for name, keep in masks.items()))


def zeroed_share(model: nn.Module, seconds: float = 10.0) -> float:
    """Share of the dense encoder FLOPs the model's *currently zero* prunable weights remove."""
    dense = encoder_flops(model, None, seconds)["total"]
    removed = sum(int((w == 0).sum()) * cost for _, w, cost in prunable_weights(model, seconds))
    return removed / dense
