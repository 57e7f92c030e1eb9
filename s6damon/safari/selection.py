"""Initial structured masks of each method, at a FLOPs target."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from s6damon.pruning import StructuredMask, all_importances, mask_for_flops_target
from s6damon.pruning.model_parts import encoder_layers, head_dim

#: importance criteria an initial mask can use
CRITERIA: tuple[str, ...] = ("l1", "random", "leading")


def initial_mask(model: nn.Module, level: float, *, criterion: str, kinds: Sequence[str], scope: str,
                 allow_layer_removal: bool, seconds: float, seed: int = 0) -> StructuredMask:
    """A structured mask removing ``level`` of ``model``'s encoder FLOPs.

    Args:
        criterion: ``'l1'`` (SAFARI, OMP, PARP — weight L1 of each unit), ``'random'`` (the
            random baseline) or ``'leading'`` (keep the first units of every layer, the same
            share everywhere: the small dense model sliced from the pretrained weights).
        kinds, scope, allow_layer_removal: see :func:`s6damon.pruning.mask_for_flops_target`
            (``'leading'`` always uses ``scope='per_layer'``).
        seconds: input length FLOPs are counted for.
        seed: of ``'random'``.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown mask criterion {criterion!r}; expected one of {CRITERIA}")
    kinds = tuple(kinds)
    if criterion == "leading":
        full = StructuredMask.full(model)
        # descending scores: the per-layer selection keeps the leading units
        imp = {k: [-torch.arange(len(m), dtype=torch.float32) for m in full.units(k)] for k in kinds}
        scope = "per_layer"
    else:
        # Raw sums (not per-weight means): the global ranking divides by each unit's FLOPs.
        imp = all_importances(model, criterion, kinds, seed=seed)
    return mask_for_flops_target(model, imp, level, scope=scope, kinds=kinds, seconds=seconds,
                                 allow_layer_removal=allow_layer_removal)


@torch.no_grad()
def zero_units(model: nn.Module, mask: StructuredMask) -> None:
    """Zero the incoming and outgoing weights (and biases) of every pruned unit, in place.

    PARP's structured variant prunes this way: nothing stops the zeroed weights from
    growing back in training. (Conv channels followed by a LayerNorm over channels are not
    exactly silenced by zeroing — the final evaluation applies the mask with hooks, which is
    exact.)
    """
    from s6damon.pruning.model_parts import conv_layers

    dim = head_dim(model)
    for l, layer in enumerate(encoder_layers(model)):
        attn, ffn = layer.attention, layer.feed_forward
        pruned_h = (~mask.heads[l]).nonzero().squeeze(1)
        if not bool(mask.layers[l]):
            pruned_h = torch.arange(len(mask.heads[l]))
        idx = (pruned_h[:, None] * dim + torch.arange(dim)).reshape(-1)
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj):
            lin.weight[idx] = 0
            if lin.bias is not None:
                lin.bias[idx] = 0
        attn.out_proj.weight[:, idx] = 0
        pruned_n = ~mask.neurons[l] if bool(mask.layers[l]) else torch.ones_like(mask.neurons[l])
        ffn.intermediate_dense.weight[pruned_n] = 0
        if ffn.intermediate_dense.bias is not None:
            ffn.intermediate_dense.bias[pruned_n] = 0
        ffn.output_dense.weight[:, pruned_n] = 0
    convs = conv_layers(model)
    for i, keep in enumerate(mask.conv_channels):
        convs[i].conv.weight[~keep] = 0
        if convs[i].conv.bias is not None:
            convs[i].conv.bias[~keep] = 0
        convs[i + 1].conv.weight[:, ~keep] = 0


def kept_per_layer(mask: StructuredMask) -> dict[str, list[int]]:
    """Kept heads / neurons per transformer layer (0 for a dropped layer) and kept channels per conv layer."""
    alive = [bool(x) for x in mask.layers]
    return {
        "heads": [int(m.sum()) if a else 0 for m, a in zip(mask.heads, alive, strict=True)],
        "neurons": [int(m.sum()) if a else 0 for m, a in zip(mask.neurons, alive, strict=True)],
        "conv_channels": [int(m.sum()) for m in mask.conv_channels],
    }
