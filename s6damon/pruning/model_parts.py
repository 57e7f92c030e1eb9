"""Where the prunable units live inside a Hugging Face wav2vec 2.0 / HuBERT model.

Every other module of :mod:`s6damon.pruning` reaches the model only through these helpers,
so that the attribute paths of ``transformers`` (checked against 5.24's
``modeling_wav2vec2.py`` and ``modeling_hubert.py``) are written down once:

- ``<base>.feature_extractor.conv_layers[i].conv`` — ``nn.Conv1d`` of conv layer ``i``,
  followed by an optional ``layer_norm`` (``nn.GroupNorm`` with one group per channel on
  layer 0 in the ``'group'`` variant, ``nn.LayerNorm`` over channels on every layer in the
  ``'layer'`` variant) and an activation;
- ``<base>.encoder.layers[l].attention.{q,k,v,out}_proj`` — the attention heads;
- ``<base>.encoder.layers[l].feed_forward.{intermediate_dense,output_dense}`` — the FFN;

where ``<base>`` is ``model.wav2vec2`` / ``model.hubert`` (``model.base_model_prefix``) or
the bare encoder model itself.
"""

from __future__ import annotations

from torch import nn

#: The unit kinds a :class:`~s6damon.pruning.masks.StructuredMask` covers.
UNIT_KINDS: tuple[str, ...] = ("heads", "neurons", "conv_channels")


def base_model(model: nn.Module) -> nn.Module:
    """The encoder model (``Wav2Vec2Model`` / ``HubertModel``) inside a task model."""
    prefix = getattr(model, "base_model_prefix", None)
    if prefix and hasattr(model, prefix):
        return getattr(model, prefix)
    return model


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer layers, in order."""
    return base_model(model).encoder.layers


def conv_layers(model: nn.Module) -> nn.ModuleList:
    """The conv feature-encoder layers, in order."""
    return base_model(model).feature_extractor.conv_layers


def head_dim(model: nn.Module) -> int:
    """Width of one attention head (``hidden_size // num_attention_heads`` of the config).

    Pruning changes how many heads a layer has, never a head's width, so the config's
    ``num_attention_heads`` keeps defining ``head_dim`` in pruned models too.
    """
    cfg = model.config
    return cfg.hidden_size // cfg.num_attention_heads


def num_heads(layer: nn.Module, dim: int) -> int:
    """Heads a transformer layer has now (0 for an attention with every head removed)."""
    q_proj = getattr(layer.attention, "q_proj", None)
    return 0 if q_proj is None else q_proj.out_features // dim


def num_neurons(layer: nn.Module) -> int:
    """FFN intermediate neurons a transformer layer has now."""
    return layer.feed_forward.intermediate_dense.out_features


def prunable_conv_layers(model: nn.Module) -> int:
    """How many conv layers have prunable output channels: all but the last.

    The last conv layer's output is the encoder's ``extract_features`` interface: it feeds
    the feature projection's LayerNorm, the pretraining quantizer and SALAD's token
    detector (trained on pre-transformer features). Pruning it would change that
    interface's width and the LayerNorm's statistics, so its *output* channels stay; its
    cost still shrinks when the previous layer's channels (its input) are pruned.
    """
    return len(conv_layers(model)) - 1
