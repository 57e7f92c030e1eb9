"""The contiguous LayerNorm conv layers compute what Hugging Face's layers compute."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import HubertConfig, HubertForCTC, Wav2Vec2Config, Wav2Vec2ForCTC

from s6damon.model.contiguous_conv import (
    ContiguousHubertLayerNormConvLayer,
    ContiguousWav2Vec2LayerNormConvLayer,
    use_contiguous_conv_layers,
)
from s6damon.model.factory import load_ctc_model, save_model
from s6damon.model.vocab import build_tokenizer

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             conv_dim=[8, 16, 16], conv_kernel=[10, 3, 3], conv_stride=[5, 2, 2],
             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=12,
             mask_time_prob=0.0, hidden_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0)


@pytest.mark.parametrize("family", ["wav2vec2", "hubert"])
def test_same_outputs_and_gradients(family: str) -> None:
    torch.manual_seed(0)
    cls, cfg_cls, swapped = ((Wav2Vec2ForCTC, Wav2Vec2Config, ContiguousWav2Vec2LayerNormConvLayer)
                             if family == "wav2vec2" else
                             (HubertForCTC, HubertConfig, ContiguousHubertLayerNormConvLayer))
    ref = cls(cfg_cls(**SMALL, feat_extract_norm="layer", do_stable_layer_norm=True)).train()
    fast = use_contiguous_conv_layers(copy.deepcopy(ref))
    layers = fast.base_model.feature_extractor.conv_layers
    assert all(type(layer) is swapped for layer in layers)
    wave = torch.randn(3, 4000)
    labels = torch.randint(1, 12, (3, 6))
    outs = []
    for model in (ref, fast):
        torch.manual_seed(1)  # same dropout / layerdrop draws in both (train mode)
        out = model(wave, labels=labels)
        out.loss.backward()
        outs.append((out.logits.detach(), model.base_model.feature_extractor.conv_layers[0].conv.weight.grad))
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-5)
    # reductions run in another order over contiguous memory: float32 rounding only
    assert torch.allclose(outs[0][1], outs[1][1], atol=1e-4, rtol=1e-3)
    # the swap leaves parameters and their names alone
    assert list(ref.state_dict()) == list(fast.state_dict())


def test_group_norm_layers_untouched_and_idempotent() -> None:
    model = Wav2Vec2ForCTC(Wav2Vec2Config(**SMALL, feat_extract_norm="group"))
    before = [type(layer) for layer in model.wav2vec2.feature_extractor.conv_layers]
    use_contiguous_conv_layers(use_contiguous_conv_layers(model))
    assert [type(layer) for layer in model.wav2vec2.feature_extractor.conv_layers] == before


def test_saved_folder_is_plain_hugging_face(tmp_path) -> None:
    """A swapped model saves a folder that stock transformers loads, and ours loads swapped."""
    torch.manual_seed(0)
    tok = build_tokenizer()
    model = use_contiguous_conv_layers(Wav2Vec2ForCTC(Wav2Vec2Config(
        **{**SMALL, "vocab_size": len(tok)}, feat_extract_norm="layer", do_stable_layer_norm=True))).eval()
    save_model(model, tok, tmp_path / "m")
    stock = Wav2Vec2ForCTC.from_pretrained(str(tmp_path / "m")).eval()
    ours, _ = load_ctc_model(tmp_path / "m")
    assert type(ours.wav2vec2.feature_extractor.conv_layers[0]) is ContiguousWav2Vec2LayerNormConvLayer
    wave = torch.randn(1, 4000)
    with torch.no_grad():
        assert torch.allclose(stock(wave).logits, ours(wave).logits, atol=1e-5)


def test_swap_back_restores_stock_layers() -> None:
    model = use_contiguous_conv_layers(Wav2Vec2ForCTC(Wav2Vec2Config(**SMALL, feat_extract_norm="layer")))
    use_contiguous_conv_layers(model, enabled=False)
    assert {type(layer).__name__ for layer in model.wav2vec2.feature_extractor.conv_layers} == {
        "Wav2Vec2LayerNormConvLayer"}
