"""SAFARI's adjust-sparsity step: prune-and-grow at constant global sparsity.

Every adjustment, per unit kind and pooled across layers: drop the ``swap_fraction`` of
the kept units with the smallest weight L1, and regrow as many of the previously pruned
units with the largest gradient L1. The kept count of each kind is unchanged, so the
global sparsity is constant while the per-layer sparsity moves to where the gradient says
capacity is needed. Units dropped in this step are not candidates for regrowth in the
same step (as in RigL), and no layer is left without a head / neuron / channel unless
``allow_empty_layers``.

FLOPs: heads and neurons cost the same in every layer, so a constant count means constant
FLOPs; conv channels of different layers differ in cost, so conv swaps can shift FLOPs a
little (re-check with :func:`s6damon.pruning.flops.encoder_flops` if that matters).

Regrown units' weights (:func:`reinit_regrown`): ``'keep'`` (default) revives the unit with
the weights it had when pruned — under the mask they received no gradient, so these are
its pretrained/finetuned values; ``'zero'`` zeroes its *outgoing* slice (``out_proj``
columns, ``output_dense`` columns, next conv's input slice), so regrowth does not change
the model's output at that step (RigL's choice), while its incoming weights stay, so the
unit's activation — and with it the gradient of the outgoing slice — is non-zero.

Typical loop::

    apply_masks(model, mask, dense_grad=True)     # score pass(es): backward only
    loss.backward()
    w = all_importances(model, "l1", kinds); g = all_importances(model, "grad_l1", kinds)
    new = prune_and_grow(mask, w, g, swap_fraction=0.1, kinds=kinds)
    reinit_regrown(model, mask, new, mode="zero")
    apply_masks(model, new); model.zero_grad()
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from s6damon.pruning.masks import StructuredMask
from s6damon.pruning.model_parts import conv_layers, encoder_layers, head_dim

REINIT_MODES: tuple[str, ...] = ("keep", "zero")


def prune_and_grow(
    mask: StructuredMask,
    weight_l1: dict[str, Sequence[Tensor]],
    grad_l1: dict[str, Sequence[Tensor]],
    swap_fraction: float,
    *,
    kinds: Iterable[str] = ("heads", "neurons"),
    allow_empty_layers: bool = False,
) -> StructuredMask:
    """One adjust-sparsity step; returns a new mask with the same kept count per kind.

    Args:
        mask: current mask.
        weight_l1: per kind, per-layer weight-L1 scores ``(units_in_layer,)``.
        grad_l1: per kind, per-layer gradient-L1 scores ``(units_in_layer,)``.
        swap_fraction: share of each kind's kept units to swap, in ``[0, 1]``; the swap count
            is ``floor(swap_fraction * kept)``, capped by the pruned units available.
        kinds: unit kinds to adjust (``'heads'``, ``'neurons'``, ``'conv_channels'``).
        allow_empty_layers: let a layer lose all its units of a kind (never for conv
            channels); dropped layers (``mask.layers``) are left as they are and their
            units take no part.
    """
    if not 0.0 <= swap_fraction <= 1.0:
        raise ValueError(f"swap_fraction must be in [0, 1], not {swap_fraction}")
    new = mask.clone()
    for kind in kinds:
        _swap_kind(new, kind, weight_l1[kind], grad_l1[kind], swap_fraction,
                   0 if allow_empty_layers and kind != "conv_channels" else 1)
    return new


def _active_layers(mask: StructuredMask, kind: str) -> list[int]:
    n = len(mask.units(kind))
    if kind == "conv_channels":
        return list(range(n))
    return [l for l in range(n) if bool(mask.layers[l])]


def _swap_kind(mask: StructuredMask, kind: str, w: Sequence[Tensor], g: Sequence[Tensor],
               fraction: float, min_kept: int) -> None:
    units = mask.units(kind)
    layers = _active_layers(mask, kind)
    kept = [(float(w[l][j]), l, j) for l in layers for j in units[l].nonzero().squeeze(1).tolist()]
    pruned = [(float(g[l][j]), l, j) for l in layers for j in (~units[l]).nonzero().squeeze(1).tolist()]
    n_swap = min(int(fraction * len(kept)), len(pruned))
    if n_swap == 0:
        return
    # Grow first from the pre-step pruned set, largest gradient first, then drop that many of
    # the pre-step kept units, smallest weight first; a layer's count may dip to min_kept
    # counting the units it regrows, so layers that gain can also shed.
    pruned.sort(key=lambda c: -c[0])
    grown = pruned[:n_swap]
    count = {l: int(units[l].sum()) for l in layers}
    for _, l, _j in grown:
        count[l] += 1
    kept.sort(key=lambda c: c[0])
    dropped: list[tuple[int, int]] = []
    for _, l, j in kept:
        if len(dropped) == n_swap:
            break
        if count[l] - 1 < min_kept:
            continue
        count[l] -= 1
        dropped.append((l, j))
    # If the floor kept us from dropping n_swap units, grow only as many (constant count).
    grown = grown[: len(dropped)]
    for _, l, j in grown:
        units[l][j] = True
    for l, j in dropped:
        units[l][j] = False


def regrown_units(old: StructuredMask, new: StructuredMask, kind: str) -> list[Tensor]:
    """Per layer, bool ``(units_in_layer,)``: pruned in ``old`` and kept in ``new``."""
    return [~o & n for o, n in zip(old.units(kind), new.units(kind), strict=True)]


@torch.no_grad()
def reinit_regrown(model: nn.Module, old: StructuredMask, new: StructuredMask, mode: str = "keep") -> None:
    """Set the weights of units regrown between ``old`` and ``new`` (see module docstring).

    Args:
        model: the masked model (weights edited in place).
        old: mask before the adjust step.
        new: mask after it.
        mode: ``'keep'`` (no change) or ``'zero'`` (zero the outgoing weight slice).
    """
    if mode not in REINIT_MODES:
        raise ValueError(f"mode must be one of {REINIT_MODES}, not {mode!r}")
    if mode == "keep":
        return
    dim = head_dim(model)
    for l, (layer, grown) in enumerate(zip(encoder_layers(model), regrown_units(old, new, "heads"))):
        cols = (grown.nonzero().squeeze(1)[:, None] * dim + torch.arange(dim)).reshape(-1)
        if len(cols):
            layer.attention.out_proj.weight[:, cols.to(layer.attention.out_proj.weight.device)] = 0
    for layer, grown in zip(encoder_layers(model), regrown_units(old, new, "neurons")):
        if bool(grown.any()):
            layer.feed_forward.output_dense.weight[:, grown.to(layer.feed_forward.output_dense.weight.device)] = 0
    convs = conv_layers(model)
    for i, grown in enumerate(regrown_units(old, new, "conv_channels")):
        if bool(grown.any()):
            convs[i + 1].conv.weight[:, grown.to(convs[i + 1].conv.weight.device)] = 0
