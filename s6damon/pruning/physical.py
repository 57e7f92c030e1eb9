"""Physical removal of pruned units: a smaller dense model with per-layer sizes.

:func:`materialise` slices the ``nn.Linear`` / ``nn.Conv1d`` / norm modules of a copy of the
model down to the kept units (``prune_heads``-style, in place on the copy) and drops
removed transformer layers; its eval-mode logits equal the masked model's
(:func:`s6damon.pruning.masks.apply_masks`).

Hugging Face configs hold one ``num_attention_heads`` / ``intermediate_size`` for all layers,
so the per-layer sizes are recorded in the config as::

    config.s6_layer_sizes = {"num_attention_heads": [12, 9, ...], "intermediate_size": [3072, 1500, ...]}

(one entry per *kept* transformer layer; ``num_hidden_layers`` is the kept count).
``num_attention_heads`` keeps its dense value because it defines the head width
``hidden_size // num_attention_heads``. Conv channels need no extra field: ``conv_dim``
already is a per-layer list. :func:`build_from_sizes` rebuilds the shapes from such a
config before a state dict is loaded; :func:`save_pruned` / :func:`load_pruned` round-trip
a folder (``config.json`` + ``model.safetensors``, as ``save_pretrained`` writes it).

A layer whose heads are all removed gets an :class:`EmptyAttention` (its output is
``out_proj``'s bias, as in the masked model); an FFN with no neurons keeps zero-width
linears (output = ``output_dense`` bias).

Usage::

    small = materialise(model, mask)
    save_pruned(small, "models/safari_small")
    same = load_pruned("models/safari_small")
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn
from transformers import AutoConfig, HubertForCTC, PretrainedConfig, PreTrainedModel, Wav2Vec2ForCTC

from s6damon.model.contiguous_conv import use_contiguous_conv_layers
from s6damon.pruning.masks import StructuredMask, remove_masks
from s6damon.pruning.model_parts import (
    base_model,
    conv_layers,
    encoder_layers,
    head_dim,
    num_heads,
    num_neurons,
)

SIZES_KEY = "s6_layer_sizes"

_CTC_CLASSES: dict[str, type[PreTrainedModel]] = {"wav2vec2": Wav2Vec2ForCTC, "hubert": HubertForCTC}


class EmptyAttention(nn.Module):
    """Attention with every head removed: returns ``out_proj``'s bias at every position.

    Keeps an ``out_proj`` (``nn.Linear(0, hidden)``) so that the state dict keys and the
    masked model (whose ``out_proj`` input is all zeros) agree.
    """

    def __init__(self, embed_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.num_heads = 0
        self.embed_dim = embed_dim
        with warnings.catch_warnings():  # "Initializing zero-element tensors is a no-op"
            warnings.simplefilter("ignore", UserWarning)
            self.out_proj = nn.Linear(0, embed_dim, bias=bias)

    def forward(self, hidden_states: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, None]:
        """``(B, T, E)`` → ``((B, T, E), None)``, the bias broadcast (zeros without bias)."""
        out = hidden_states.new_zeros(hidden_states.shape[:-1] + (self.out_proj.out_features,))
        if self.out_proj.bias is not None:
            out = out + self.out_proj.bias
        return out, None


def _index(keep: Tensor) -> Tensor:
    return keep.nonzero().squeeze(1)


def _select(module: nn.Linear | nn.Conv1d, out_idx: Tensor | None,
            in_idx: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """``module``'s weight and bias restricted to output units ``out_idx`` and inputs ``in_idx``."""
    weight = module.weight.detach()
    bias = None if module.bias is None else module.bias.detach()
    if out_idx is not None:
        weight = weight.index_select(0, out_idx)
        bias = None if bias is None else bias.index_select(0, out_idx)
    if in_idx is not None:
        weight = weight.index_select(1, in_idx)
    return weight, bias


def _fill(new: nn.Linear | nn.Conv1d, weight: Tensor, bias: Tensor | None):
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def _slice_linear(lin: nn.Linear, rows: Tensor | None = None, cols: Tensor | None = None) -> nn.Linear:
    """A new ``nn.Linear`` holding ``lin``'s output ``rows`` and input ``cols``."""
    weight, bias = _select(lin, rows, cols)
    return _fill(nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                           device=weight.device, dtype=weight.dtype), weight, bias)


def _slice_conv(conv: nn.Conv1d, out_idx: Tensor | None = None, in_idx: Tensor | None = None) -> nn.Conv1d:
    """A new ``nn.Conv1d`` holding ``conv``'s output channels ``out_idx`` and inputs ``in_idx``."""
    weight, bias = _select(conv, out_idx, in_idx)
    return _fill(nn.Conv1d(weight.shape[1], weight.shape[0], kernel_size=conv.kernel_size, stride=conv.stride,
                           padding=conv.padding, dilation=conv.dilation, bias=bias is not None,
                           device=weight.device, dtype=weight.dtype), weight, bias)


def _slice_norm(norm: nn.Module, idx: Tensor) -> nn.Module:
    """A channel norm (per-channel ``GroupNorm`` or ``LayerNorm``) over channels ``idx``."""
    n = len(idx)
    if isinstance(norm, nn.GroupNorm):
        new: nn.Module = nn.GroupNorm(n, n, eps=norm.eps, affine=norm.affine)
    elif isinstance(norm, nn.LayerNorm):
        new = nn.LayerNorm(n, eps=norm.eps, elementwise_affine=norm.elementwise_affine,
                           bias=norm.bias is not None)
    else:
        raise TypeError(f"cannot slice {type(norm).__name__}")
    new.to(device=idx.device)
    with torch.no_grad():
        for name in ("weight", "bias"):
            src = getattr(norm, name, None)
            if src is not None:
                getattr(new, name).copy_(src.detach().index_select(0, idx.to(src.device)))
    return new


def _prune_attention(layer: nn.Module, keep: Tensor, dim: int) -> None:
    attn = layer.attention
    if not bool(keep.any()):
        empty = EmptyAttention(attn.out_proj.out_features, bias=attn.out_proj.bias is not None)
        with torch.no_grad():
            if attn.out_proj.bias is not None:
                empty.out_proj.bias.copy_(attn.out_proj.bias)
        layer.attention = empty.to(attn.out_proj.weight.device, attn.out_proj.weight.dtype)
        return
    heads = _index(keep)
    rows = (heads[:, None] * dim + torch.arange(dim)).reshape(-1).to(attn.q_proj.weight.device)
    attn.q_proj = _slice_linear(attn.q_proj, rows=rows)
    attn.k_proj = _slice_linear(attn.k_proj, rows=rows)
    attn.v_proj = _slice_linear(attn.v_proj, rows=rows)
    attn.out_proj = _slice_linear(attn.out_proj, cols=rows)
    attn.num_heads = len(heads)  # bookkeeping only: forward reshapes with head_dim and -1


def _prune_ffn(layer: nn.Module, keep: Tensor) -> None:
    ffn = layer.feed_forward
    idx = _index(keep).to(ffn.intermediate_dense.weight.device)
    ffn.intermediate_dense = _slice_linear(ffn.intermediate_dense, rows=idx)
    ffn.output_dense = _slice_linear(ffn.output_dense, cols=idx)


def _prune_conv_channels(model: nn.Module, i: int, keep: Tensor) -> None:
    convs = conv_layers(model)
    layer, nxt = convs[i], convs[i + 1]
    idx = _index(keep).to(layer.conv.weight.device)
    layer.conv = _slice_conv(layer.conv, out_idx=idx)
    if getattr(layer, "layer_norm", None) is not None:
        layer.layer_norm = _slice_norm(layer.layer_norm, idx)
    layer.out_conv_dim = len(idx)
    nxt.conv = _slice_conv(nxt.conv, in_idx=idx)
    nxt.in_conv_dim = len(idx)


def layer_sizes(model: nn.Module) -> dict[str, list[int]]:
    """Per-layer head and FFN sizes of a (dense or pruned) model, as stored in the config."""
    dim = head_dim(model)
    layers = encoder_layers(model)
    return {
        "num_attention_heads": [num_heads(layer, dim) for layer in layers],
        "intermediate_size": [num_neurons(layer) for layer in layers],
    }


def materialise(model: PreTrainedModel, mask: StructuredMask) -> PreTrainedModel:
    """A physically smaller copy of ``model`` holding only the units ``mask`` keeps.

    Args:
        model: ``Wav2Vec2ForCTC`` / ``HubertForCTC`` (masked with hooks or not; the copy has
            no mask hooks).
        mask: :class:`StructuredMask` matching the model's shapes.

    Returns:
        A new model of the same class, in ``model``'s train/eval mode, whose config records
        the per-layer sizes (``config.s6_layer_sizes``, ``config.conv_dim``,
        ``config.num_hidden_layers``).
    """
    mask.check_matches(model)
    small = copy.deepcopy(model)
    remove_masks(small)
    dim = head_dim(small)
    layers = encoder_layers(small)
    for l, layer in enumerate(layers):
        if bool(mask.layers[l]):
            if not bool(mask.heads[l].all()):
                _prune_attention(layer, mask.heads[l], dim)
            if not bool(mask.neurons[l].all()):
                _prune_ffn(layer, mask.neurons[l])
    for i, keep in enumerate(mask.conv_channels):
        if not bool(keep.all()):
            _prune_conv_channels(small, i, keep)
    kept_layers = [layer for l, layer in enumerate(layers) if bool(mask.layers[l])]
    base_model(small).encoder.layers = nn.ModuleList(kept_layers)

    cfg = small.config
    cfg.num_hidden_layers = len(kept_layers)
    cfg.conv_dim = [c.conv.out_channels for c in conv_layers(small)]
    setattr(cfg, SIZES_KEY, layer_sizes(small))
    return small


def build_from_sizes(config: PretrainedConfig, model_cls: type[PreTrainedModel] | None = None) -> PreTrainedModel:
    """An (untrained) model with the per-layer shapes ``config`` records, ready for a state dict.

    Args:
        config: a config written by :func:`materialise` (or a plain dense one).
        model_cls: defaults to the CTC class of ``config.model_type``.
    """
    cls = model_cls or _CTC_CLASSES[config.model_type]
    model = use_contiguous_conv_layers(cls(config))
    sizes = getattr(config, SIZES_KEY, None)
    if not sizes:
        return model
    dim = head_dim(model)
    layers = encoder_layers(model)
    if len(sizes["num_attention_heads"]) != len(layers):
        raise ValueError(f"{SIZES_KEY} lists {len(sizes['num_attention_heads'])} layers, "
                         f"config has {len(layers)}")
    for layer, h, n in zip(layers, sizes["num_attention_heads"], sizes["intermediate_size"], strict=True):
        full_heads = layer.attention.q_proj.out_features // dim
        if h != full_heads:
            _prune_attention(layer, torch.arange(full_heads) < h, dim)
        full_n = layer.feed_forward.intermediate_dense.out_features
        if n != full_n:
            _prune_ffn(layer, torch.arange(full_n) < n)
    return model


def save_pruned(model: PreTrainedModel, folder: str | Path) -> Path:
    """Save a (pruned) model as a Hugging Face folder; :func:`load_pruned` reads it back."""
    folder = Path(folder)
    model.save_pretrained(folder)
    return folder


def load_pruned(folder: str | Path, model_cls: type[PreTrainedModel] | None = None) -> PreTrainedModel:
    """Load a folder written by :func:`save_pruned` (dense folders load too), in eval mode.

    Shapes come from the config (:func:`build_from_sizes`), then the state dict is loaded
    strictly, so a shape or key mismatch fails loudly.
    """
    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder)
    model = build_from_sizes(config, model_cls)
    state = load_file(str(folder / "model.safetensors"))
    model.load_state_dict(_match_keys(state, model), strict=True)
    return model.eval()


def _match_keys(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Map the positional conv's weight-norm keys between the saved and in-memory names.

    ``save_pretrained`` may write the weight-norm parametrisation as ``weight_g``/``weight_v``
    while the module holds ``parametrizations.weight.original0``/``original1`` (or the
    reverse, depending on the transformers version).
    """
    want = set(model.state_dict())
    aliases = {".weight_g": ".parametrizations.weight.original0",
               ".weight_v": ".parametrizations.weight.original1"}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key not in want:
            for a, b in list(aliases.items()) + [(b, a) for a, b in aliases.items()]:
                if key.endswith(a) and key[: -len(a)] + b in want:
                    key = key[: -len(a)] + b
                    break
        out[key] = value
    return out
