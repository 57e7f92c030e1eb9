"""Structured masks over a wav2vec 2.0 / HuBERT CTC model, applied with hooks.

A :class:`StructuredMask` says which attention heads, FFN neurons, conv channels and
whole transformer layers are kept. :func:`apply_masks` makes the forward pass behave
exactly like the physically smaller model (:func:`s6damon.pruning.physical.materialise`)
while every weight stays in place, so the same model can be finetuned under the mask,
re-masked by prune-and-grow, and exported.

How a unit is masked: its activation is zeroed at the *input of the module that consumes
it* — a head's slice of the attention output before ``out_proj``, a neuron's activation
before ``output_dense``, a conv channel before the next layer's ``conv``. Masking after the
unit's own norm and activation is what makes the masked model equal the pruned one:

- ``'group'`` variant, conv layer 0: ``GroupNorm`` has one group per channel, so a channel's
  normalisation never sees the others; zeroing it afterwards is exact;
- ``'layer'`` variant: each conv layer's ``LayerNorm`` normalises over channels, so a pruned
  channel would change the statistics of the kept ones. A hook recomputes that LayerNorm
  over the kept channels only — what the pruned model's smaller LayerNorm computes;
- a dropped transformer layer is skipped: its hook returns the layer's input.

Gradients: with the mask on, pruned units get zero gradient (their activations are zeroed),
so finetuning under the mask never moves them. SAFARI's regrowth needs a gradient signal
*for pruned units*; ``apply_masks(..., dense_grad=True)`` adds, to each consumer module's
weight gradient, what it would be if the pruned unit's activation were not zeroed (the
RigL gradient of the masked weight at the current point: ``dL/dW[:, u] = sum_t g_t h_u(t)``),
without changing the forward values or any other gradient. Only the *outgoing* weight
slice of a pruned unit receives it (``out_proj`` columns, ``output_dense`` columns, the next
conv's input slice); use it for scoring, not for optimizer steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s6damon.pruning.model_parts import (
    UNIT_KINDS,
    conv_layers,
    encoder_layers,
    head_dim,
    num_heads,
    num_neurons,
    prunable_conv_layers,
)

_HANDLES_ATTR = "_s6_mask_handles"


@dataclass
class StructuredMask:
    """Which structured units of a model are kept (``True``) or pruned (``False``).

    Attributes:
        heads: per transformer layer, bool ``(num_heads_l,)``.
        neurons: per transformer layer, bool ``(intermediate_size_l,)``.
        conv_channels: per conv layer except the last (see
            :func:`~s6damon.pruning.model_parts.prunable_conv_layers`), bool ``(conv_dim_i,)``.
        layers: bool ``(num_hidden_layers,)``; a ``False`` layer is skipped entirely (its
            heads and neurons then do not matter).
    """

    heads: list[Tensor]
    neurons: list[Tensor]
    conv_channels: list[Tensor]
    layers: Tensor = field(default_factory=lambda: torch.ones(0, dtype=torch.bool))

    @classmethod
    def full(cls, model: nn.Module) -> StructuredMask:
        """The all-kept mask matching the model's current (possibly already pruned) shapes."""
        dim = head_dim(model)
        layers = encoder_layers(model)
        convs = conv_layers(model)
        return cls(
            heads=[torch.ones(num_heads(layer, dim), dtype=torch.bool) for layer in layers],
            neurons=[torch.ones(num_neurons(layer), dtype=torch.bool) for layer in layers],
            conv_channels=[
                torch.ones(convs[i].conv.out_channels, dtype=torch.bool)
                for i in range(prunable_conv_layers(model))
            ],
            layers=torch.ones(len(layers), dtype=torch.bool),
        )

    def units(self, kind: str) -> list[Tensor]:
        """The per-layer masks of one unit kind (``'heads'``, ``'neurons'``, ``'conv_channels'``)."""
        if kind not in UNIT_KINDS:
            raise ValueError(f"unknown unit kind {kind!r}; expected one of {UNIT_KINDS}")
        return getattr(self, kind)

    def clone(self) -> StructuredMask:
        """A deep copy (masks are edited in place by the selection code)."""
        return StructuredMask(
            heads=[m.clone() for m in self.heads],
            neurons=[m.clone() for m in self.neurons],
            conv_channels=[m.clone() for m in self.conv_channels],
            layers=self.layers.clone(),
        )

    def kept(self, kind: str) -> int:
        """Kept units of one kind, over all layers (dropped layers' units included as-is)."""
        return int(sum(int(m.sum()) for m in self.units(kind)))

    def total(self, kind: str) -> int:
        """All units of one kind, kept or not."""
        return int(sum(m.numel() for m in self.units(kind)))

    def sparsity(self, kind: str) -> float:
        """Share of units of one kind that are pruned."""
        total = self.total(kind)
        return 0.0 if total == 0 else 1.0 - self.kept(kind) / total

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (lists of 0/1)."""
        return {
            kind: [m.to(torch.int64).tolist() for m in self.units(kind)] for kind in UNIT_KINDS
        } | {"layers": self.layers.to(torch.int64).tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StructuredMask:
        """Inverse of :meth:`to_dict`."""
        def as_masks(rows: list[list[int]]) -> list[Tensor]:
            return [torch.tensor(r, dtype=torch.bool) for r in rows]

        return cls(
            heads=as_masks(data["heads"]),
            neurons=as_masks(data["neurons"]),
            conv_channels=as_masks(data["conv_channels"]),
            layers=torch.tensor(data["layers"], dtype=torch.bool),
        )

    def check_matches(self, model: nn.Module) -> None:
        """Raise ``ValueError`` unless every mask has the model's unit counts."""
        ref = StructuredMask.full(model)
        for kind in (*UNIT_KINDS, "layers"):
            got = [m.shape for m in self.units(kind)] if kind != "layers" else [self.layers.shape]
            want = [m.shape for m in ref.units(kind)] if kind != "layers" else [ref.layers.shape]
            if got != want:
                raise ValueError(f"mask {kind} shapes {got} do not match the model's {want}")
        for i, m in enumerate(self.conv_channels):
            if not bool(m.any()):
                raise ValueError(f"conv layer {i} would keep no channels")


class _DenseWeightGrad(torch.autograd.Function):
    """Identity on ``output``; adds the pruned inputs' share to the weight's gradient.

    Forward returns ``output`` unchanged. Backward passes ``grad_output`` through and gives
    ``weight`` the gradient it would get from the zeroed (pruned) part of its input,
    ``weight_grad_fn(x_pruned, grad_output)``.
    """

    @staticmethod
    def forward(ctx, output: Tensor, x_pruned: Tensor, weight: Tensor, weight_grad_fn: Callable):
        ctx.save_for_backward(x_pruned)
        ctx.weight_grad_fn = weight_grad_fn
        ctx.weight_dtype = weight.dtype
        return output.clone()

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (x_pruned,) = ctx.saved_tensors
        # under autocast the activations and grad_output are bfloat16 while the weight is
        # float32: the weight's gradient is computed, and returned, in the weight's dtype
        dt = ctx.weight_dtype
        return grad_output, None, ctx.weight_grad_fn(x_pruned.to(dt), grad_output.to(dt)), None


def _linear_weight_grad(x: Tensor, g: Tensor) -> Tensor:
    """``dL/dW`` of ``y = x W^T`` for ``x: (..., in)``, ``g: (..., out)`` → ``(out, in)``."""
    return g.reshape(-1, g.shape[-1]).transpose(0, 1) @ x.reshape(-1, x.shape[-1])


def _conv_weight_grad(conv: nn.Conv1d) -> Callable[[Tensor, Tensor], Tensor]:
    def grad(x: Tensor, g: Tensor) -> Tensor:
        return torch.nn.grad.conv1d_weight(
            x, conv.weight.shape, g, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups,
        )
    return grad


def _mask_consumer_input(
    module: nn.Module,
    gate: Tensor,
    channel_dim: int,
    dense_grad: bool,
    weight_grad_fn: Callable[[Tensor, Tensor], Tensor],
) -> list[torch.utils.hooks.RemovableHandle]:
    """Zero the pruned units' activations at ``module``'s input.

    Args:
        module: the consumer (``nn.Linear`` with input ``(B, T, C)`` or ``nn.Conv1d`` with
            input ``(B, C, T)``).
        gate: float ``(C,)``, 1 for kept input features, 0 for pruned.
        channel_dim: where ``C`` sits in the input (-1 for linear, 1 for conv).
    """
    shape = [1] * 3
    shape[channel_dim] = -1
    stash: dict[str, Tensor] = {}

    def pre_hook(_mod: nn.Module, args: tuple) -> tuple:
        x = args[0]
        g = gate.to(device=x.device, dtype=x.dtype).view(shape)
        if dense_grad and torch.is_grad_enabled():
            stash["x_pruned"] = (x * (1 - g)).detach()
        return (x * g, *args[1:])

    def post_hook(mod: nn.Module, _args: tuple, output: Tensor) -> Tensor:
        x_pruned = stash.pop("x_pruned", None)
        if x_pruned is None or not mod.weight.requires_grad:
            return output
        return _DenseWeightGrad.apply(output, x_pruned, mod.weight, weight_grad_fn)

    handles = [module.register_forward_pre_hook(pre_hook)]
    if dense_grad:
        handles.append(module.register_forward_hook(post_hook))
    return handles


def _kept_channel_layer_norm(norm: nn.LayerNorm, keep: Tensor) -> Callable:
    """Forward hook: recompute a channel LayerNorm over the kept channels only.

    Kept channels get exactly what the pruned model's smaller LayerNorm computes; pruned
    channels get the same formula with the kept channels' statistics (their values are
    zeroed downstream, but stay informative for ``dense_grad``).
    """
    idx = keep.nonzero().squeeze(1)

    def hook(_mod: nn.Module, args: tuple, _output: Tensor) -> Tensor:
        x = args[0]  # (B, T, C)
        i = idx.to(x.device)
        weight = norm.weight if norm.weight is not None else torch.ones_like(x[0, 0])
        bias = norm.bias if norm.bias is not None else torch.zeros_like(x[0, 0])
        xk = x.index_select(-1, i)
        mean = xk.mean(-1, keepdim=True)
        var = xk.var(-1, unbiased=False, keepdim=True)
        full = (x - mean) * torch.rsqrt(var + norm.eps) * weight + bias
        kept = F.layer_norm(xk, (len(idx),), weight[i], bias[i], norm.eps)
        return full.index_copy(-1, i, kept)

    return hook


def _skip_layer(_mod: nn.Module, args: tuple, kwargs: dict, _output: Any) -> Any:
    """Forward hook of a dropped transformer layer: return its input unchanged."""
    hidden = args[0] if args else kwargs["hidden_states"]
    return hidden if isinstance(_output, Tensor) else (hidden, *_output[1:])


def apply_masks(model: nn.Module, mask: StructuredMask, *, dense_grad: bool = False) -> nn.Module:
    """Make ``model``'s forward pass use ``mask``; weights are not modified.

    Replaces masks applied earlier. In eval mode the masked model's logits equal those of
    ``materialise(model, mask)``.

    Args:
        model: ``Wav2Vec2ForCTC`` / ``HubertForCTC`` (or their encoder models).
        mask: matching :meth:`StructuredMask.full` of the model in shapes.
        dense_grad: also give pruned units' outgoing weights the gradient they would have
            if the unit were active (see the module docstring); for importance scoring.

    Returns:
        ``model`` itself, with hooks registered.
    """
    mask.check_matches(model)
    remove_masks(model)
    handles: list[torch.utils.hooks.RemovableHandle] = []
    dim = head_dim(model)
    for l, layer in enumerate(encoder_layers(model)):
        if not bool(mask.layers[l]):
            handles.append(layer.register_forward_hook(_skip_layer, with_kwargs=True))
            continue
        if not bool(mask.heads[l].all()):
            gate = mask.heads[l].float().repeat_interleave(dim)
            handles += _mask_consumer_input(
                layer.attention.out_proj, gate, -1, dense_grad, _linear_weight_grad)
        if not bool(mask.neurons[l].all()):
            handles += _mask_consumer_input(
                layer.feed_forward.output_dense, mask.neurons[l].float(), -1, dense_grad,
                _linear_weight_grad)
    convs = conv_layers(model)
    for i, keep in enumerate(mask.conv_channels):
        if bool(keep.all()):
            continue
        norm = getattr(convs[i], "layer_norm", None)
        if isinstance(norm, nn.LayerNorm):
            handles.append(norm.register_forward_hook(_kept_channel_layer_norm(norm, keep)))
        elif isinstance(norm, nn.GroupNorm) and norm.num_groups != norm.num_channels:
            raise NotImplementedError("conv channel masks need one GroupNorm group per channel")
        consumer = convs[i + 1].conv
        handles += _mask_consumer_input(
            consumer, keep.float(), 1, dense_grad, _conv_weight_grad(consumer))
    setattr(model, _HANDLES_ATTR, handles)
    return model


def remove_masks(model: nn.Module) -> nn.Module:
    """Remove the hooks of :func:`apply_masks` (no-op if none); returns ``model``."""
    for handle in getattr(model, _HANDLES_ATTR, []):
        handle.remove()
    if hasattr(model, _HANDLES_ATTR):
        delattr(model, _HANDLES_ATTR)
    return model


def has_masks(model: nn.Module) -> bool:
    """Whether :func:`apply_masks` hooks are active on ``model``."""
    return bool(getattr(model, _HANDLES_ATTR, []))


def save_mask(mask: StructuredMask, path: str | Path) -> Path:
    """Write a mask as the JSON of :meth:`StructuredMask.to_dict`, atomically."""
    from s6damon import io

    io.write_json(path, mask.to_dict())
    return Path(path)


def load_mask(path: str | Path) -> StructuredMask:
    """A :class:`StructuredMask` from a file written by :func:`save_mask`.

    Raises:
        CheckpointError: the file is missing, not JSON or lacks a mask key (named).
    """
    from s6damon.model.factory import CheckpointError, read_checkpoint_json

    path = Path(path)
    data = read_checkpoint_json(path, "mask file not found")
    missing = [k for k in ("heads", "neurons", "conv_channels", "layers") if k not in data]
    if missing:
        raise CheckpointError(f"{path}: not a StructuredMask file, missing keys {missing}")
    return StructuredMask.from_dict(data)
