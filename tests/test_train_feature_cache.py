"""Finetuning from cached conv features: the cache holds what the frozen encoder computes,
the features forward equals the model's own, and a cached finetune trains all but the encoder."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

from s6damon.config.model import AugmentParams
from s6damon.model.factory import load_ctc_model
from s6damon.model.vocab import build_tokenizer
from s6damon.train.data import AudioSet, collate, perturb_speed
from s6damon.train.feature_cache import FeatureCache, FeatureInputCTC, speed_grid
from s6damon.train.finetune import finetune
from _train_fixtures import make_manifest, tiny_params

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16, 16), conv_kernel=(100, 4), conv_stride=(80, 4), conv_bias=True,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, hidden_dropout=0.0,
            attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0,
            layerdrop=0.0, mask_time_prob=0.0, ctc_zero_infinity=True, ctc_loss_reduction="mean")


def _model(norm: str, tok) -> Wav2Vec2ForCTC:
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(**TINY, vocab_size=len(tok), pad_token_id=tok.pad_token_id, feat_extract_norm=norm,
                         do_stable_layer_norm=norm == "layer")
    return Wav2Vec2ForCTC(cfg).eval()


def test_speed_grid_spans_the_range():
    assert speed_grid([0.85, 1.2], 5) == pytest.approx([0.85, 0.9375, 1.025, 1.1125, 1.2])
    assert speed_grid([1.0, 1.0], 5) == [1.0]
    assert speed_grid([0.9, 1.1], 1) == pytest.approx([1.0])


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_cache_holds_each_utterances_own_features(tmp_path, norm):
    tok = build_tokenizer()
    model = _model(norm, tok)
    data = AudioSet(make_manifest(tmp_path / "wav", 5), tokenizer=tok)
    cache = FeatureCache(model, data, [0.9, 1.1], batch_seconds=3.0)
    base = model.wav2vec2
    for k, speed in enumerate([0.9, 1.1]):
        for i in range(len(data)):
            one = collate([perturb_speed(data.wave(i), speed)]).input_values
            with torch.no_grad():
                want = base.feature_extractor(one).transpose(1, 2)[0]
            torch.testing.assert_close(cache._feats[k][i], want, rtol=1e-5, atol=1e-5)
    # a batch pads the drawn features and carries labels and the audio it stands for
    rng = np.random.default_rng(0)
    b = cache.batch([3, 0, 2], rng=rng)
    assert b.features.shape[0] == 3 and b.labels.shape[0] == 3 and b.index == [3, 0, 2]
    assert b.labels[1, : len(data.labels[0])].tolist() == data.labels[0]
    for j, i in enumerate([3, 0, 2]):
        n = int(b.frame_lengths[j])
        assert any(torch.equal(b.features[j, :n], cache._feats[k][i]) for k in range(2))
        assert not b.features[j, n:].any()
    assert 0.8 * sum(data.durations[[3, 0, 2]]) < b.seconds < 1.2 * sum(data.durations[[3, 0, 2]])


def test_features_forward_equals_the_models_forward(tmp_path):
    tok = build_tokenizer()
    model = _model("layer", tok)
    data = AudioSet(make_manifest(tmp_path / "wav", 4), tokenizer=tok)
    cache = FeatureCache(model, data, [1.0])
    rows = [0, 1, 2, 3]
    feats = cache.batch(rows)
    wave = data.batch(rows)
    with torch.no_grad():
        ref = model(wave.input_values, attention_mask=wave.attention_mask, labels=wave.labels)
        out = FeatureInputCTC(model).eval()(feats)
    lengths = model._get_feat_extract_output_lengths(wave.attention_mask.sum(-1))
    assert torch.equal(out.lengths, lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(out.logits[b, :n], ref.logits[b, :n], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-4, atol=1e-4)


def test_cached_finetune_trains_all_but_the_conv_encoder(tmp_path):
    m, _, p = tiny_params()
    # the cache holds conv features of unaugmented audio, so waveform augmentation is off
    p = dataclasses.replace(p, steps=4, eval_every=4, feature_cache=True, freeze_feature_encoder_steps=4,
                            feature_cache_speeds=3, augment=AugmentParams())
    df = make_manifest(tmp_path / "wav", 8)
    scratch = finetune(None, m, dataclasses.replace(p, steps=0), df, None, tmp_path / "init", tmp_path / "ck0",
                       seed=1, threads=1)
    assert scratch["metrics"]["steps"] == 0
    out = finetune(tmp_path / "init", m, p, df, df.iloc[:2], tmp_path / "model", tmp_path / "ck", seed=1, threads=1)
    assert out["metrics"]["steps"] == 4 and "dev_wer" in out["metrics"]
    assert out["metrics"]["feature_cache"] and len(out["metrics"]["feature_cache_speeds"]) == 3
    assert np.isfinite(out["metrics"]["final_train_loss"])
    before, _ = load_ctc_model(tmp_path / "init")
    after, _ = load_ctc_model(tmp_path / "model")
    a, b = before.state_dict(), after.state_dict()
    conv = [k for k in a if ".feature_extractor." in k]
    assert conv and all(torch.equal(a[k], b[k]) for k in conv)
    assert any(not torch.equal(a[k], b[k]) for k in a if k not in conv and "masked_spec_embed" not in k)
    # the cache needs the encoder frozen for the whole run
    with pytest.raises(ValueError, match="freeze_feature_encoder_steps"):
        finetune(tmp_path / "init", m, dataclasses.replace(p, freeze_feature_encoder_steps=2), df, None,
                 tmp_path / "bad", tmp_path / "ck_bad", seed=1, threads=1)


def test_scratch_baseline_trains_its_conv_encoder():
    from flows.finetune import scratch_recipe

    _, _, p = tiny_params()
    cached = dataclasses.replace(p, feature_cache=True, freeze_feature_encoder_steps=p.steps)
    scratch = scratch_recipe(cached)
    assert not scratch.feature_cache and scratch.freeze_feature_encoder_steps == 0
    assert scratch.freeze_feature_encoder_from is None
    assert dataclasses.replace(scratch, feature_cache=True, freeze_feature_encoder_steps=p.steps,
                               freeze_feature_encoder_from=p.freeze_feature_encoder_from) == cached
    late = scratch_recipe(dataclasses.replace(p, freeze_feature_encoder_from=max(1, p.steps // 2)))
    assert late.freeze_feature_encoder_from is None and late.steps == p.steps


@pytest.mark.parametrize("method", ["salad_ctc", "uniform", "random", "energy", "none"])
def test_cached_dropping_forward_equals_the_waveform_one(tmp_path, method):
    """SALAD's adaptation runs from cached features: every method keeps the same tokens and
    gives the same logits as when it reads the waveform (a layer-norm model, one speed)."""
    from s6damon.salad.detector import SaliencyDetector, save_detector
    from s6damon.salad.methods import DropWrap

    tok = build_tokenizer()
    model = _model("layer", tok)
    torch.manual_seed(1)
    det = SaliencyDetector(in_dim=model.config.conv_dim[-1], hidden=8, kernel_size=3, num_layers=1)
    save_detector(tmp_path / "det.pt", det, {0.4: 0.5}, meta={})
    net = DropWrap(method, (0.4,), tmp_path / "det.pt" if method.startswith("salad_") else None, seed=3,
                   merge=True)(model).eval()
    data = AudioSet(make_manifest(tmp_path / "wav", 4), tokenizer=tok)
    cache = FeatureCache(model, data, [1.0], token_energy=True)
    rows = [0, 1, 2, 3]
    wave, feats = data.batch(rows), cache.batch(rows)
    with torch.no_grad():
        ref = net(wave.input_values, wave.attention_mask, labels=wave.labels)
        out = FeatureInputCTC(net).eval()(feats)
    assert torch.equal(out.frame_lengths, ref.frame_lengths)
    assert torch.equal(out.keep, ref.keep) and torch.equal(out.lengths, ref.lengths)
    if method != "none":
        assert out.drop_ratio > 0.3
    for b, n in enumerate(ref.lengths.tolist()):
        torch.testing.assert_close(out.logits[b, :n], ref.logits[b, :n], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-4, atol=1e-4)


def test_energy_baseline_on_cached_features_needs_their_energy(tmp_path):
    from s6damon.salad.methods import drop_model

    tok = build_tokenizer()
    model = _model("layer", tok)
    data = AudioSet(make_manifest(tmp_path / "wav", 2), tokenizer=tok)
    feats = FeatureCache(model, data, [1.0]).batch([0, 1])  # built without token_energy
    assert feats.token_energy is None
    with pytest.raises(ValueError, match="token_energy"):
        FeatureInputCTC(drop_model(model, "energy", 0.3))(feats)
    # a policy without from_features cannot choose without the waveform
    from s6damon.salad.dropping import TokenDropCTC
    odd = TokenDropCTC(model, policy=lambda x, a, n, T: torch.ones(len(n), T, dtype=torch.bool))
    with pytest.raises(ValueError, match="waveform"):
        FeatureInputCTC(odd)(feats)


@pytest.mark.parametrize("method", ["energy", "salad_ctc"])
def test_cached_finetune_with_dropping(tmp_path, method):
    """A SALAD adaptation run (conv encoder frozen, a dropping wrapper) trains from the cache:
    the encoder stays as it was, the rest moves, the transformer saw shortened sequences."""
    from s6damon.salad.detector import SaliencyDetector, save_detector
    from s6damon.salad.methods import DropWrap

    m, _, p = tiny_params()
    p = dataclasses.replace(p, steps=3, eval_every=3, feature_cache=True, freeze_feature_encoder_steps=10**6,
                            feature_cache_speeds=2, augment=AugmentParams())
    df = make_manifest(tmp_path / "wav", 6)
    finetune(None, m, dataclasses.replace(p, steps=0), df, None, tmp_path / "init", tmp_path / "ck0", seed=1, threads=1)
    before, _ = load_ctc_model(tmp_path / "init")
    det_path = None
    if method.startswith("salad_"):
        torch.manual_seed(1)
        det = SaliencyDetector(in_dim=before.config.conv_dim[-1], hidden=8, kernel_size=3, num_layers=1)
        det_path = tmp_path / "det.pt"
        save_detector(det_path, det, {0.3: 0.5}, meta={})
    wrapped = []

    def wrap(model):
        wrapped.append(DropWrap(method, (0.3,), det_path, seed=0, merge=True)(model))
        return wrapped[-1]

    out = finetune(tmp_path / "init", m, p, df, df.iloc[:2], tmp_path / "model", tmp_path / "ck", seed=1,
                   threads=1, wrap=wrap, tag=f"{method}@0.3")
    assert out["metrics"]["steps"] == 3 and out["metrics"]["feature_cache"]
    assert np.isfinite(out["metrics"]["final_train_loss"]) and "dev_wer" in out["metrics"]
    assert wrapped[0].stats["drop_ratio"] > 0.1  # training and dev decoding dropped tokens
    after, _ = load_ctc_model(tmp_path / "model")
    a, b = before.state_dict(), after.state_dict()
    conv = [k for k in a if ".feature_extractor." in k]
    assert conv and all(torch.equal(a[k], b[k]) for k in conv)
    assert any(not torch.equal(a[k], b[k]) for k in a if k not in conv and "masked_spec_embed" not in k)


def test_saved_cache_loads_for_the_same_training_set_only(tmp_path):
    """The salad stage fills one cache and every adaptation run loads it: the loaded cache
    serves the same batches; a file of other utterances, of another format or a broken file is
    refused by name."""
    tok = build_tokenizer()
    model = _model("group", tok)
    df = make_manifest(tmp_path / "wav", 5)
    data = AudioSet(df, tokenizer=tok)
    cache = FeatureCache(model, data, [0.9, 1.1], token_energy=True)
    path = tmp_path / "features.pt"
    cache.save(path)
    loaded = FeatureCache.load(path, data)
    assert loaded.speeds == cache.speeds and loaded.has_token_energy
    a, b = cache.batch([4, 1, 2], rng=np.random.default_rng(7)), loaded.batch([4, 1, 2], rng=np.random.default_rng(7))
    assert torch.equal(a.features, b.features) and torch.equal(a.frame_lengths, b.frame_lengths)
    assert torch.equal(a.labels, b.labels) and a.samples == b.samples
    assert all(np.array_equal(x, y) for x, y in zip(a.token_energy, b.token_energy))
    with pytest.raises(ValueError, match="features.pt: a feature cache of 5 other utterances"):
        FeatureCache.load(path, AudioSet(df.iloc[:4], tokenizer=tok))
    (tmp_path / "broken.pt").write_bytes(b"not a cache")
    with pytest.raises(ValueError, match="broken.pt: not a readable feature cache"):
        FeatureCache.load(tmp_path / "broken.pt", data)
    blob = torch.load(path, weights_only=False)
    torch.save({**blob, "format": 0}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="old.pt: a feature cache of format 0"):
        FeatureCache.load(tmp_path / "old.pt", data)


def test_salad_task_fills_one_cache_that_finetune_loads(tmp_path, monkeypatch):
    """tasks.salad.cache_features writes the cache the salad stage's runs load through
    finetune(feature_cache_file=...); a cache at other speed factors is refused."""
    from s6damon import io
    from tasks import salad as T

    m, _, p = tiny_params()
    p = dataclasses.replace(p, steps=2, eval_every=2, feature_cache=True, freeze_feature_encoder_steps=10**6,
                            feature_cache_speeds=2, augment=AugmentParams())
    df = make_manifest(tmp_path / "wav", 6).assign(split="train", speaker="s")
    manifest = tmp_path / "manifest.parquet"
    io.write_parquet(manifest, df)
    finetune(None, m, dataclasses.replace(p, steps=0), df, None, tmp_path / "init", tmp_path / "ck0", seed=1, threads=1)
    monkeypatch.chdir(tmp_path)
    path = T.cache_features.fn(tmp_path / "init", manifest, p, threads=1, progress=False)
    assert path.startswith(".work/salad/features_") and (tmp_path / path).exists()

    from s6damon.salad.methods import DropWrap
    out = finetune(tmp_path / "init", m, p, df, None, tmp_path / "model", tmp_path / "ck", seed=1, threads=1,
                   wrap=DropWrap("energy", (0.3,)), feature_cache_file=path)
    assert out["metrics"]["steps"] == 2 and out["metrics"]["feature_cache"]
    with pytest.raises(ValueError, match="speed factors"):
        finetune(tmp_path / "init", m, dataclasses.replace(p, feature_cache_speeds=3), df, None, tmp_path / "m2",
                 tmp_path / "ck2", seed=1, threads=1, wrap=DropWrap("energy", (0.3,)), feature_cache_file=path)
