"""Initial structured masks of each method, at a FLOPs target."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from s6damon.pruning import StructuredMask, all_importances, mask_for_flops_target, model_sizes
from s6damon.pruning.flops import SAMPLE_RATE, _Counts
from s6damon.pruning.importance import fisher_importance
from s6damon.pruning.model_parts import encoder_layers, head_dim
from s6damon.train.data import AudioSet
from s6damon.train.evaluate import model_inputs

#: importance criteria an initial mask can use
CRITERIA: tuple[str, ...] = ("l1", "fisher", "random", "leading")


def fisher_scores(model: nn.Module, tokenizer, rows: pd.DataFrame, utterances: int, seed: int,
                  kinds: Sequence[str]) -> dict[str, list[torch.Tensor]]:
    """Fisher importance (:func:`~s6damon.pruning.importance.fisher_importance`) of every unit
    under the CTC loss, from ``utterances`` rows of ``rows`` drawn with ``seed`` (all if fewer),
    one utterance per backward pass."""
    if len(rows) == 0:
        raise ValueError("fisher_scores: no utterances to score with")
    pick = np.random.default_rng(seed).permutation(len(rows))[:utterances]
    data = AudioSet(rows.iloc[np.sort(pick)].reset_index(drop=True), tokenizer=tokenizer, preload=False)

    def loss_of(net: nn.Module, i: int) -> torch.Tensor:
        batch = data.batch([i])
        return net(**model_inputs(net, batch), labels=batch.labels).loss

    return fisher_importance(model, range(len(data)), loss_of, kinds)


def comparable(scores: dict[str, list[torch.Tensor]]) -> dict[str, list[torch.Tensor]]:
    """Scores that can be pooled across layers: conv channels divided by their layer's mean.

    Transformer layers share one shape and init scale, so raw head / neuron L1 pools as
    SAFARI pools it. Conv layers differ in fan-in (10 to hundreds of inputs), and their
    weight scales with it: pooled raw, the widest-fan-in layer would lose all its channels
    first. Relative to its layer's mean, a channel competes on how it stands in its layer.
    """
    out = dict(scores)
    if "conv_channels" in scores:
        out["conv_channels"] = [s / s.mean().clamp_min(1e-12) if len(s) else s for s in scores["conv_channels"]]
    return out


def balanced_importance(model: nn.Module, scores: dict[str, list[torch.Tensor]], mask: StructuredMask,
                        seconds: float) -> dict[str, list[torch.Tensor]]:
    """Turn per-unit scores into importances under which the global FLOPs-greedy selection
    prunes every kind at about the same pace, least important first within each kind.

    :func:`~s6damon.pruning.mask_for_flops_target` ranks units by importance per FLOP. Fed
    raw L1 sums it compares a head, a neuron and a conv channel by the scale of their
    weights over their cost, and on wav2vec2-shaped models it wipes out whole early conv
    layers (one channel there costs as much as thousands of weights elsewhere) before it
    touches an FFN neuron. SAFARI pools units *of a kind* across layers: here each unit's
    score is replaced by its percentile within its kind (pooled over layers, so the
    per-layer distribution follows the scores) times its FLOPs, so importance per FLOP is
    the percentile.
    """
    counts = _Counts(model_sizes(model, mask), mask, seconds, SAMPLE_RATE)
    out: dict[str, list[torch.Tensor]] = {}
    for kind, per_layer in scores.items():
        flat = torch.cat([s.float() for s in per_layer])
        rank = torch.empty_like(flat)
        rank[torch.argsort(flat, stable=True)] = torch.arange(1, len(flat) + 1, dtype=flat.dtype)
        pct = rank / max(len(flat), 1)
        parts, start = [], 0
        for l, s in enumerate(per_layer):
            parts.append(pct[start:start + len(s)] * float(max(counts.cost(kind, l), 1)))
            start += len(s)
        out[kind] = parts
    return out


def initial_mask(model: nn.Module, level: float, *, criterion: str, kinds: Sequence[str], scope: str,
                 allow_layer_removal: bool, seconds: float, seed: int = 0,
                 fisher: dict[str, list[torch.Tensor]] | None = None,
                 base_mask: StructuredMask | None = None) -> StructuredMask:
    """A structured mask removing ``level`` of ``model``'s encoder FLOPs.

    Args:
        criterion: ``'l1'`` (OMP, PARP — weight L1 of each unit, every kind pruned at about
            the same pace, see :func:`balanced_importance`), ``'fisher'`` (SAFARI's default:
            the units' Fisher scores, given as ``fisher`` — see :func:`fisher_scores` — ranked
            over all kinds and layers by estimated loss increase per FLOP saved, so the kinds'
            shares are chosen too), ``'random'`` (the random baseline, paced like ``'l1'``) or
            ``'leading'`` (keep the first units of every layer, the same share everywhere: the
            small dense model sliced from the pretrained weights).
        fisher: for ``'fisher'``: per kind, per-layer scores.
        kinds, scope, allow_layer_removal: see :func:`s6damon.pruning.mask_for_flops_target`
            (``'leading'`` always uses ``scope='per_layer'``).
        seconds: input length FLOPs are counted for.
        seed: of ``'random'``.
        base_mask: units already pruned, which stay pruned (SAFARI's gradual pruning prunes
            further from the mask in force); default none.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown mask criterion {criterion!r}; expected one of {CRITERIA}")
    kinds = tuple(kinds)
    if criterion == "leading":
        full = StructuredMask.full(model)
        # descending scores: the per-layer selection keeps the leading units
        imp = {k: [-torch.arange(len(m), dtype=torch.float32) for m in full.units(k)] for k in kinds}
        scope = "per_layer"
    elif criterion == "fisher":
        if fisher is None:
            raise ValueError("criterion 'fisher' needs the units' Fisher scores (fisher_scores)")
        # Fisher scores are loss units, comparable across kinds and layers: no balancing
        imp = {k: fisher[k] for k in kinds}
    else:
        # per-weight means, so conv channels of layers of different widths compare
        scores = comparable(all_importances(model, criterion, kinds, normalise=True, seed=seed))
        imp = balanced_importance(model, scores, base_mask or StructuredMask.full(model), seconds)
    return mask_for_flops_target(model, imp, level, scope=scope, kinds=kinds, seconds=seconds,
                                 allow_layer_removal=allow_layer_removal, base_mask=base_mask)


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
