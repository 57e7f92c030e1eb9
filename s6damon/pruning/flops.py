"""Analytic FLOPs of a (masked or physically pruned) wav2vec 2.0 / HuBERT encoder, and
mask selection for a FLOPs target.

FLOPs are counted the way ``torch.utils.flop_counter.FlopCounterMode`` counts them — two
per multiply-accumulate of every matmul and convolution (biases, norms, activations and
softmax are not counted) — so the analytic count of a masked model equals the measured
count of its physically pruned copy (tested). Per forward pass of one utterance of
``seconds`` seconds:

- conv feature encoder: ``2 * T_i * C_i * C_{i-1} * k_i`` per conv layer (``T_i`` its output
  frames, ``C_{-1} = 1``);
- feature projection: ``2 * T * C_last * E``;
- positional conv (grouped, ``G`` groups, kernel ``K``): ``2 * (T + 2*(K//2) - K + 1) * E * E/G * K``;
- per kept transformer layer with ``h`` heads of width ``d`` and ``n`` FFN neurons:
  ``8 * T * E * h * d`` (q, k, v, out) ``+ 4 * T^2 * h * d`` (scores and weighted sum)
  ``+ 4 * T * E * n`` (FFN);
- optionally the CTC head: ``2 * T * E * V``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from s6damon.model.attention import attention_kernel
from s6damon.model.frames import SAMPLE_RATE, layer_frames
from s6damon.pruning.masks import StructuredMask
from s6damon.pruning.model_parts import UNIT_KINDS, conv_layers, head_dim


@dataclass(frozen=True)
class ModelSizes:
    """The shape facts FLOPs depend on.

    Attributes:
        conv_dim: output channels of every conv layer.
        conv_kernel: kernel width of every conv layer.
        conv_stride: stride of every conv layer.
        heads: kept heads of every kept transformer layer.
        neurons: kept FFN neurons of every kept transformer layer.
        hidden_size: ``E``.
        head_dim: ``d``.
        pos_conv_kernel: ``K`` of the positional conv.
        pos_conv_groups: ``G`` of the positional conv.
        vocab_size: ``V`` of the CTC head.
    """

    conv_dim: tuple[int, ...]
    conv_kernel: tuple[int, ...]
    conv_stride: tuple[int, ...]
    heads: tuple[int, ...]
    neurons: tuple[int, ...]
    hidden_size: int
    head_dim: int
    pos_conv_kernel: int
    pos_conv_groups: int
    vocab_size: int


def model_sizes(model: nn.Module, mask: StructuredMask | None = None) -> ModelSizes:
    """Sizes of ``model`` (read from its modules, so pruned models work) under ``mask``."""
    full = StructuredMask.full(model)
    mask = mask or full
    mask.check_matches(model)
    cfg = model.config
    convs = conv_layers(model)
    conv_dim = [int(m.sum()) for m in mask.conv_channels] + [convs[-1].conv.out_channels]
    kept = [l for l in range(len(mask.layers)) if bool(mask.layers[l])]
    return ModelSizes(
        conv_dim=tuple(conv_dim),
        conv_kernel=tuple(c.conv.kernel_size[0] for c in convs),
        conv_stride=tuple(c.conv.stride[0] for c in convs),
        heads=tuple(int(mask.heads[l].sum()) for l in kept),
        neurons=tuple(int(mask.neurons[l].sum()) for l in kept),
        hidden_size=cfg.hidden_size,
        head_dim=head_dim(model),
        pos_conv_kernel=cfg.num_conv_pos_embeddings,
        pos_conv_groups=cfg.num_conv_pos_embedding_groups,
        vocab_size=cfg.vocab_size,
    )


def sizes_from_config(config) -> ModelSizes:
    """Sizes of the dense model a Hugging Face wav2vec2/HuBERT config describes.

    Counts FLOPs of a full-size architecture (e.g. wav2vec2-base) without building weights.
    """
    return ModelSizes(
        conv_dim=tuple(int(c) for c in config.conv_dim),
        conv_kernel=tuple(int(k) for k in config.conv_kernel),
        conv_stride=tuple(int(s) for s in config.conv_stride),
        heads=(int(config.num_attention_heads),) * int(config.num_hidden_layers),
        neurons=(int(config.intermediate_size),) * int(config.num_hidden_layers),
        hidden_size=int(config.hidden_size),
        head_dim=int(config.hidden_size) // int(config.num_attention_heads),
        pos_conv_kernel=int(config.num_conv_pos_embeddings),
        pos_conv_groups=int(config.num_conv_pos_embedding_groups),
        vocab_size=int(config.vocab_size),
    )


def flops_from_sizes(
    sizes: ModelSizes,
    seconds: float,
    *,
    sample_rate: int = SAMPLE_RATE,
    include_lm_head: bool = False,
    num_tokens: int | None = None,
) -> dict[str, int]:
    """FLOPs of one forward pass on a ``seconds``-long utterance, by part.

    Args:
        num_tokens: tokens the transformer sees after token dropping (SALAD and its
            baselines); ``None`` = every frame. The conv encoder and the feature projection
            run before dropping, so they always see every frame.

    Returns:
        ``{'conv', 'projection', 'pos_conv', 'attention', 'ffn', 'lm_head', 'total'}``
        (``lm_head`` is 0 unless ``include_lm_head``).
    """
    lengths = layer_frames(round(seconds * sample_rate), sizes.conv_kernel, sizes.conv_stride)
    conv = 0
    c_in = 1
    for t, c, k in zip(lengths, sizes.conv_dim, sizes.conv_kernel, strict=True):
        conv += 2 * t * c * c_in * k
        c_in = c
    frames, e, d = lengths[-1], sizes.hidden_size, sizes.head_dim
    t = frames if num_tokens is None else int(num_tokens)
    kpos = sizes.pos_conv_kernel
    t_pos = t + 2 * (kpos // 2) - kpos + 1
    parts = {
        "conv": conv,
        "projection": 2 * frames * sizes.conv_dim[-1] * e,
        "pos_conv": 2 * t_pos * e * (e // sizes.pos_conv_groups) * kpos,
        "attention": sum(8 * t * e * h * d + 4 * t * t * h * d for h in sizes.heads),
        "ffn": sum(4 * t * e * n for n in sizes.neurons),
        "lm_head": 2 * t * e * sizes.vocab_size if include_lm_head else 0,
    }
    parts["total"] = sum(parts.values())
    return parts


def encoder_flops(
    model: nn.Module,
    mask: StructuredMask | None = None,
    seconds: float = 1.0,
    *,
    sample_rate: int = SAMPLE_RATE,
    include_lm_head: bool = False,
    num_tokens: int | None = None,
) -> dict[str, int]:
    """FLOPs of ``model``'s encoder under ``mask`` (dense if ``None``); see :func:`flops_from_sizes`."""
    return flops_from_sizes(model_sizes(model, mask), seconds, sample_rate=sample_rate,
                            include_lm_head=include_lm_head, num_tokens=num_tokens)


def removed_share(model: nn.Module, mask: StructuredMask, seconds: float = 10.0, **kwargs) -> float:
    """Share of the unmasked model's FLOPs that ``mask`` removes."""
    dense = encoder_flops(model, None, seconds, **kwargs)["total"]
    return 1.0 - encoder_flops(model, mask, seconds, **kwargs)["total"] / dense


class _Counts:
    """Kept-unit counts and exact marginal FLOPs of removing one unit, for greedy selection."""

    def __init__(self, sizes: ModelSizes, mask: StructuredMask, seconds: float, sample_rate: int):
        self.lengths = layer_frames(round(seconds * sample_rate), sizes.conv_kernel, sizes.conv_stride)
        self.sizes = sizes
        self.kept = {k: [int(m.sum()) for m in mask.units(k)] for k in UNIT_KINDS}
        self.last_conv = sizes.conv_dim[-1]

    def cost(self, kind: str, layer: int) -> int:
        s, t = self.sizes, self.lengths[-1]
        if kind == "heads":
            return 8 * t * s.hidden_size * s.head_dim + 4 * t * t * s.head_dim
        if kind == "neurons":
            return 4 * t * s.hidden_size
        kept = self.kept["conv_channels"]
        c_in = 1 if layer == 0 else kept[layer - 1]
        c_next = kept[layer + 1] if layer + 1 < len(kept) else self.last_conv
        own = 2 * self.lengths[layer] * c_in * s.conv_kernel[layer]
        nxt = 2 * self.lengths[layer + 1] * c_next * s.conv_kernel[layer + 1]
        return own + nxt


def _check_importance(mask: StructuredMask, importance: dict[str, Sequence[Tensor]], kinds: Sequence[str]) -> None:
    for kind in kinds:
        if kind not in importance:
            raise ValueError(f"no importance scores for {kind!r}")
        got = [tuple(s.shape) for s in importance[kind]]
        want = [tuple(m.shape) for m in mask.units(kind)]
        if got != want:
            raise ValueError(f"importance of {kind} has shapes {got}, mask has {want}")


def _min_kept(kind: str, allow_layer_removal: bool) -> int:
    # Conv channels can never all go (the next conv would have no input); heads and neurons
    # may only when whole-layer removal is on.
    return 0 if allow_layer_removal and kind != "conv_channels" else 1


def _drop_empty_layers(mask: StructuredMask) -> None:
    for l in range(len(mask.layers)):
        if not bool(mask.heads[l].any()) and not bool(mask.neurons[l].any()):
            mask.layers[l] = False


def mask_for_flops_target(
    model: nn.Module,
    importance: dict[str, Sequence[Tensor]],
    target_removed_share: float,
    *,
    scope: str = "global",
    kinds: Iterable[str] = ("heads", "neurons"),
    seconds: float = 10.0,
    sample_rate: int = SAMPLE_RATE,
    allow_layer_removal: bool = False,
    base_mask: StructuredMask | None = None,
) -> StructuredMask:
    """Prune the least important units until ``target_removed_share`` of the FLOPs are gone.

    Args:
        model: the model the mask is for (dense or already pruned).
        importance: per kind, per-layer scores ``(units_in_layer,)`` (see
            :func:`s6damon.pruning.importance.unit_importance`); higher = keep.
        target_removed_share: share of the encoder FLOPs of ``model`` (``base_mask`` not
            applied) to remove, in ``[0, 1)``.
        scope: ``'global'`` — one greedy ranking over all layers and kinds by importance
            per FLOP (the unit's marginal FLOPs, recomputed for conv channels as their
            neighbours shrink), so per-layer sparsity follows importance; ``'per_layer'`` —
            the same share of units pruned in every layer of every kind (lowest importance
            within the layer), the smallest share that reaches the target.
        kinds: unit kinds that may be pruned.
        seconds: utterance length the FLOPs are counted for (attention grows as ``T^2``).
        sample_rate: of the input audio.
        allow_layer_removal: let a layer lose all its heads or neurons; a layer left with
            neither is dropped. Off: every layer keeps at least one head and one neuron.
        base_mask: units already pruned (stay pruned); default all kept.

    Returns:
        A new :class:`StructuredMask`.

    Raises:
        ValueError: the target cannot be reached under the constraints.
    """
    kinds = tuple(kinds)
    mask = (base_mask or StructuredMask.full(model)).clone()
    _check_importance(mask, importance, kinds)
    dense = encoder_flops(model, None, seconds, sample_rate=sample_rate)["total"]
    goal = target_removed_share * dense
    if scope == "global":
        mask = _greedy_global(model, mask, importance, kinds, goal, dense, seconds, sample_rate,
                              allow_layer_removal)
    elif scope == "per_layer":
        mask = _uniform_per_layer(model, mask, importance, kinds, goal, dense, seconds, sample_rate,
                                  allow_layer_removal)
    else:
        raise ValueError(f"scope must be 'global' or 'per_layer', not {scope!r}")
    if allow_layer_removal:
        _drop_empty_layers(mask)
    removed = dense - encoder_flops(model, mask, seconds, sample_rate=sample_rate)["total"]
    if removed + 1e-9 * dense < goal:
        raise ValueError(f"cannot remove {target_removed_share:.3f} of the FLOPs by pruning {kinds}: "
                         f"at most {removed / dense:.3f} under the constraints")
    return mask


def _greedy_global(model, mask, importance, kinds, goal, dense, seconds, sample_rate, allow_removal):
    sizes = model_sizes(model, mask)
    counts = _Counts(sizes, mask, seconds, sample_rate)
    removed = dense - flops_from_sizes(sizes, seconds, sample_rate=sample_rate)["total"]
    candidates: list[tuple[float, str, int, int]] = []
    for kind in kinds:
        for l, (scores, keep) in enumerate(zip(importance[kind], mask.units(kind), strict=True)):
            cost = max(counts.cost(kind, l), 1)
            for j in keep.nonzero().squeeze(1).tolist():
                candidates.append((float(scores[j]) / cost, kind, l, j))
    candidates.sort(key=lambda c: c[0])
    for _, kind, l, j in candidates:
        if removed >= goal:
            break
        if counts.kept[kind][l] - 1 < _min_kept(kind, allow_removal):
            continue
        removed += counts.cost(kind, l)
        counts.kept[kind][l] -= 1
        mask.units(kind)[l][j] = False
    return mask


def _prune_share(mask, importance, kinds, share, allow_removal):
    out = mask.clone()
    for kind in kinds:
        for l, (scores, keep) in enumerate(zip(importance[kind], out.units(kind), strict=True)):
            alive = keep.nonzero().squeeze(1)
            n_drop = min(int(share * len(alive)), len(alive) - _min_kept(kind, allow_removal))
            if n_drop <= 0:
                continue
            order = alive[torch.argsort(scores[alive].float(), stable=True)]
            keep[order[:n_drop]] = False
    return out


def _uniform_per_layer(model, mask, importance, kinds, goal, dense, seconds, sample_rate, allow_removal):
    def removed(share: float) -> float:
        m = _prune_share(mask, importance, kinds, share, allow_removal)
        return dense - encoder_flops(model, m, seconds, sample_rate=sample_rate)["total"]

    lo, hi = 0.0, 1.0
    if removed(hi) < goal:
        return _prune_share(mask, importance, kinds, hi, allow_removal)  # caller reports failure
    for _ in range(40):  # removed(share) is a non-decreasing step function of share
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if removed(mid) >= goal else (mid, hi)
    return _prune_share(mask, importance, kinds, hi, allow_removal)


def measured_flops(model: nn.Module, seconds: float = 1.0, *, sample_rate: int = SAMPLE_RATE) -> int:
    """FLOPs of one forward pass measured with ``FlopCounterMode`` (batch 1, random audio).

    Attention runs in the ``'eager'`` implementation while counting: ``FlopCounterMode`` has
    no formula for PyTorch's CPU SDPA kernel and would miss the attention matmuls. Includes
    the CTC head if ``model`` has one.
    """
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters())
    audio = torch.randn(1, round(seconds * sample_rate), device=param.device, dtype=param.dtype)
    with attention_kernel(model, "eager"), FlopCounterMode(display=False) as counter, torch.no_grad():
        model(audio)
    return counter.get_total_flops()
