"""Model building, saving and loading of any local wav2vec2 / HuBERT folder."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from transformers import HubertConfig, HubertForCTC, HubertModel, Wav2Vec2ForPreTraining, Wav2Vec2Model

from s6damon.config.model import ModelParams
from s6damon.model.factory import (
    CheckpointError, build_config, build_ctc_model, load_ctc_model, save_model,
)
from s6damon.model.vocab import build_tokenizer, build_vocab, encode
from s6damon.text import LETTERS

TINY = ModelParams(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, conv_dim=[8] * 7,
                   conv_pos_kernel=16, conv_pos_groups=4, codevector_dim=16, proj_codevector_dim=16,
                   num_codevectors_per_group=8)
WAVE = torch.randn(2, 16000)  # 1 s -> 49 frames with the 320x conv stack


def tiny_hubert_config(**kw) -> HubertConfig:
    return HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        conv_dim=[8] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2],
                        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, **kw)


def test_vocab_blank_is_pad_and_round_trips():
    tok = build_tokenizer()
    vocab = build_vocab()
    assert vocab["<pad>"] == tok.pad_token_id == 0
    assert len(tok) == len(LETTERS) + 3
    ids = encode(tok, "turn on the kitchen light's")
    assert 0 not in ids and 1 not in ids  # no blank, no unknown
    assert tok.decode(ids, group_tokens=False) == "turn on the kitchen light's"


def test_tiny_ctc_model_save_and_load(tmp_path):
    tok = build_tokenizer()
    model = build_ctc_model(TINY, tok).eval()
    save_model(model, tok, tmp_path / "m")
    assert {"config.json", "model.safetensors", "vocab.json", "preprocessor_config.json"} <= {
        p.name for p in (tmp_path / "m").iterdir()}
    loaded, tok2 = load_ctc_model(tmp_path / "m")
    assert tok2.get_vocab() == tok.get_vocab()
    with torch.no_grad():
        a, b = model(WAVE).logits, loaded(WAVE).logits
    assert a.shape == (2, 49, len(tok))
    torch.testing.assert_close(a, b)
    assert not list(tmp_path.glob(".m.*"))  # atomic write left no temp folder


@pytest.mark.parametrize("kind", ["pretraining", "bare"])
def test_wav2vec2_ssl_checkpoints_get_a_fresh_ctc_head(tmp_path, kind):
    cfg = build_config(TINY, vocab_size=32)
    net = Wav2Vec2ForPreTraining(cfg) if kind == "pretraining" else Wav2Vec2Model(cfg)
    net.save_pretrained(tmp_path / kind)
    model, tok = load_ctc_model(tmp_path / kind)
    assert type(model).__name__ == "Wav2Vec2ForCTC"
    with torch.no_grad():
        assert model(WAVE).logits.shape == (2, 49, len(tok))
    # the encoder weights are the checkpoint's
    src = net.wav2vec2 if kind == "pretraining" else net
    torch.testing.assert_close(model.wav2vec2.feature_projection.projection.weight,
                               src.feature_projection.projection.weight)


def test_hubert_checkpoints(tmp_path):
    HubertModel(tiny_hubert_config()).save_pretrained(tmp_path / "hubert")
    model, tok = load_ctc_model(tmp_path / "hubert")
    assert isinstance(model, HubertForCTC)
    with torch.no_grad():
        assert model(WAVE).logits.shape == (2, 49, len(tok))
    # a finetuned HuBERT CTC folder with its own tokenizer keeps its head
    save_model(model, tok, tmp_path / "hubert_ctc")
    again, _ = load_ctc_model(tmp_path / "hubert_ctc")
    with torch.no_grad():
        torch.testing.assert_close(again(WAVE).logits, model(WAVE).logits)


def test_foreign_vocab_replaced_only_when_asked(tmp_path):
    # a CTC checkpoint over another vocabulary (e.g. upper-case letters) without vocab.json
    HubertForCTC(tiny_hubert_config(vocab_size=50)).save_pretrained(tmp_path / "foreign")
    with pytest.raises(CheckpointError, match="vocab"):
        load_ctc_model(tmp_path / "foreign")
    model, tok = load_ctc_model(tmp_path / "foreign", own_vocab=True)
    assert model.lm_head.out_features == len(tok)


def test_missing_or_corrupt_checkpoints_name_the_culprit(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_ctc_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        load_ctc_model(tmp_path / "empty")
    tok = build_tokenizer()
    save_model(build_ctc_model(TINY, tok), tok, tmp_path / "bad")
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="bad"):
        load_ctc_model(tmp_path / "bad")
    (tmp_path / "bad" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights"):
        load_ctc_model(tmp_path / "bad")
    (tmp_path / "bad" / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="config.json"):
        load_ctc_model(tmp_path / "bad")
