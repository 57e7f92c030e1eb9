"""HuBERT-style masked prediction: frame geometry, targets, loss, and a resumable run."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import Wav2Vec2ForPreTraining

from s6damon.config.model import HubertParams
from s6damon.model.factory import build_config, load_ctc_model
from s6damon.model.vocab import build_tokenizer
from s6damon.ssl.hubert import (
    KMEANS_FILE,
    cluster_targets,
    frame_geometry,
    frame_phones,
    label_frames,
    masked_prediction_loss,
    mfcc_features,
    phones_by_utt,
    target_quality,
    target_report,
)
from s6damon.train.data import collate
from s6damon.train.pretrain import pretrain
from _train_fixtures import make_manifest, tiny_params

H = HubertParams(clusters=8, kmeans_minutes=1.0, kmeans_iters=20, final_dim=16)


def hubert_recipe(**changes):
    """The tiny pretraining recipe with objective hubert and :data:`H`'s settings."""
    m, pp, _ = tiny_params()
    return m, dataclasses.replace(pp, objective="hubert", hubert=H, **changes)


def test_mfcc_frames_are_the_encoder_tokens():
    m, _, _ = tiny_params()
    cfg = build_config(m, len(build_tokenizer()))
    model = Wav2Vec2ForPreTraining(cfg)
    window, hop = frame_geometry(cfg)
    for n in (window - 1, window, 4000, 16000, 16123):
        want = max(0, int(model._get_feat_extract_output_lengths(torch.tensor(n))))
        assert mfcc_features(torch.randn(n), window, hop).shape == (want, 39), n
    default = build_config(dataclasses.replace(m, conv_kernel=[10, 3, 3, 3, 3, 2, 2],
                                               conv_stride=[5, 2, 2, 2, 2, 2, 2],
                                               conv_dim=[8] * 7), 4)
    assert frame_geometry(default) == (400, 320)  # 25 ms window, 20 ms hop


def test_mfcc_features_are_normalised_and_gain_invariant():
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal(16000).astype(np.float32))
    a, b = mfcc_features(wave, 400, 320), mfcc_features(0.1 * wave, 400, 320)
    torch.testing.assert_close(a.mean(0), torch.zeros(39), atol=1e-4, rtol=0)
    torch.testing.assert_close(a, b, atol=1e-3, rtol=0)


def test_cluster_targets_follow_each_utterance_and_pad():
    rng = np.random.default_rng(1)
    waves = [rng.standard_normal(n).astype(np.float32) for n in (16000, 6400)]
    batch = collate(waves)
    centroids = torch.randn(5, 39)
    t = cluster_targets(batch, 49, centroids, 400, 320)
    assert t.shape == (2, 49)
    assert (t[0] >= 0).all()                       # 1 + (16000 - 400) // 320 = 49 frames
    assert (t[1, :19] >= 0).all() and (t[1, 19:] == -100).all()   # 6400 samples: 19 frames
    own = torch.cdist(mfcc_features(batch.input_values[1, :6400], 400, 320), centroids).argmin(1)
    assert torch.equal(t[1, :19], own)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a bfloat16 training step around it
        assert torch.equal(cluster_targets(batch, 49, centroids, 400, 320), t)


def test_masked_prediction_loss_counts_masked_tokens_only():
    targets = torch.tensor([[0, 1, 2, -100]])
    mask = torch.tensor([[True, True, False, False]])
    logits = torch.full((1, 4, 3), -10.0)
    logits[0, 0, 0] = logits[0, 1, 1] = 10.0      # masked tokens right
    logits[0, 2, 0] = 10.0                        # the unmasked token wrong
    loss, logs = masked_prediction_loss(logits, targets, mask, unmasked_weight=0.0)
    assert logs["masked_accuracy"] == 1.0 and logs["unmasked_accuracy"] == 0.0
    assert float(loss) < 1e-6
    loss_w, _ = masked_prediction_loss(logits, targets, mask, unmasked_weight=0.5)
    assert float(loss_w) == pytest.approx(0.5 * logs["unmasked_loss"], rel=1e-5)


def test_pretrain_hubert_saves_a_loadable_model_and_resumes_exactly(tmp_path):
    m, pp = hubert_recipe(steps=4, checkpoint_every=2)
    df = make_manifest(tmp_path / "wav", 8)
    full = pretrain(m, pp, df, tmp_path / "full", tmp_path / "ck_full", seed=3, threads=1)
    assert [h["step"] for h in full["history"]] == [2, 4]
    assert all(math.isfinite(h["loss"]) and 0 <= h["masked_accuracy"] <= 1 for h in full["history"])
    assert full["metrics"]["objective"] == "hubert" and full["metrics"]["kmeans_frames"] >= H.clusters
    assert full["metrics"]["final_masked_accuracy"] == full["history"][-1]["masked_accuracy"]
    assert (tmp_path / "ck_full" / "kmeans.pt").is_file()
    saved = torch.load(tmp_path / "full" / KMEANS_FILE, weights_only=True)   # the targets travel with the model
    assert saved["centroids"].shape == (H.clusters, 39) and (saved["window"], saved["hop"]) == (400, 320)
    ctc, _ = load_ctc_model(tmp_path / "full")    # what the finetune stage loads
    assert ctc.config.model_type == "wav2vec2"

    assert pretrain(m, pp, df, tmp_path / "res", tmp_path / "ck_res", seed=3, threads=1, stop_at=3)["stopped_early"]
    assert not (tmp_path / "res").exists()
    res = pretrain(m, pp, df, tmp_path / "res", tmp_path / "ck_res", seed=3, threads=1)
    assert res["metrics"]["resumed_from"] == 2
    a = Wav2Vec2ForPreTraining.from_pretrained(tmp_path / "full").state_dict()
    b = Wav2Vec2ForPreTraining.from_pretrained(tmp_path / "res").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_the_objective_changes_the_training_not_the_model(tmp_path):
    m, pp = hubert_recipe(steps=2, checkpoint_every=2)
    df = make_manifest(tmp_path / "wav", 4)
    hub = pretrain(m, pp, df, tmp_path / "hub", tmp_path / "ck_hub", seed=3, threads=1)
    assert hub["metrics"]["objective"] == "hubert" and "final_contrastive_loss" not in hub["metrics"]
    w2v = pretrain(m, dataclasses.replace(pp, objective="wav2vec2"), df, tmp_path / "w2v", tmp_path / "ck_w2v",
                   seed=3, threads=1)
    assert w2v["metrics"]["objective"] == "wav2vec2" and "final_contrastive_loss" in w2v["metrics"]
    assert "final_masked_accuracy" not in w2v["metrics"] and not (tmp_path / "w2v" / KMEANS_FILE).exists()
    a = Wav2Vec2ForPreTraining.from_pretrained(tmp_path / "hub").state_dict()
    b = Wav2Vec2ForPreTraining.from_pretrained(tmp_path / "w2v").state_dict()
    assert a.keys() == b.keys()
    w = "wav2vec2.encoder.layers.0.attention.q_proj.weight"
    assert not torch.equal(a[w], b[w])


def test_pretrain_hubert_rejects_too_little_audio_for_the_clusters(tmp_path):
    m, pp = hubert_recipe()
    pp = dataclasses.replace(pp, hubert=dataclasses.replace(H, clusters=500))
    df = make_manifest(tmp_path / "wav", 1)
    with pytest.raises(ValueError, match="kmeans_minutes"):
        pretrain(m, pp, df, tmp_path / "o", tmp_path / "ck", seed=1, threads=1)


def test_frame_phones_take_the_phone_under_each_token_centre():
    phones = pd.DataFrame({"phone": ["sil", "a", "b"], "start": [0.0, 0.05, 0.1], "end": [0.05, 0.1, 0.12]})
    # centres at 12.5, 32.5, 52.5, 72.5, 92.5, 112.5, 132.5 ms
    assert frame_phones(phones, 7, 400, 320) == ["sil", "sil", "a", "a", "a", "b", None]


def test_target_quality_of_perfect_and_uninformative_clusters():
    phones = ["a", "a", "b", "b", "c", "c"]
    perfect = target_quality([0, 0, 1, 1, 2, 2], phones)
    assert perfect["pnmi"] == pytest.approx(1.0) and perfect["phone_purity"] == pytest.approx(1.0)
    same = target_quality([0] * 6, phones)
    assert same["pnmi"] == pytest.approx(0.0) and same["phone_purity"] == pytest.approx(1 / 3)
    assert same["cluster_purity"] == pytest.approx(1.0)
    split = target_quality([0, 1, 2, 3, 4, 5], phones)   # every frame its own cluster: pure but spread
    assert split["phone_purity"] == pytest.approx(1.0) and split["cluster_purity"] == pytest.approx(0.5)


def test_label_frames_pairs_clusters_with_true_phones(tmp_path):
    df = make_manifest(tmp_path / "wav", 3).assign(voice=["v1", "v2", "v1"])
    # timings for the first two utterances only (the third has none, like an untimed voice)
    truth = pd.DataFrame({"utt_id": [df.utt_id[0], df.utt_id[0], df.utt_id[1]], "phone": ["a", "b", "a"],
                          "start": [0.0, 0.1, 0.0], "end": [0.1, 0.3, 0.2]})
    clusters, phones, voices = label_frames(df, phones_by_utt(truth), torch.randn(4, 39), 400, 320)
    # token centres at 12.5 + 20 k ms: 15 inside 0-0.3 s, 10 inside 0-0.2 s
    assert len(clusters) == len(phones) == len(voices) == 25
    assert phones[:15] == ["a"] * 5 + ["b"] * 10 and voices == ["v1"] * 15 + ["v2"] * 10
    assert all(0 <= c < 4 for c in clusters)


def test_target_report_per_set_and_voice_from_the_model_folder(tmp_path):
    df = make_manifest(tmp_path / "wav", 3).assign(voice=["v1", "v2", "v1"])
    truth = pd.DataFrame({"utt_id": [df.utt_id[0], df.utt_id[1]], "phone": ["a", "b"],
                          "start": [0.0, 0.0], "end": [0.3, 0.2]})
    folder = tmp_path / "model"
    with pytest.raises(FileNotFoundError, match="objective hubert"):
        target_report(folder, {"all": df}, truth)
    folder.mkdir()
    torch.save({"centroids": torch.randn(4, 39), "stats": {}, "window": 400, "hop": 320}, folder / KMEANS_FILE)
    report = target_report(folder, {"all": df, "untimed": df.iloc[[2]]}, truth)
    assert set(report) == {"all"}                       # a set without timed utterances is left out
    assert report["all"]["frames"] == 25
    assert set(report["all"]["per_voice"]) == {"v1", "v2"}
    assert report["all"]["per_voice"]["v1"]["frames"] == 15
    # one phone per voice: knowing the cluster adds nothing there
    assert report["all"]["per_voice"]["v1"]["pnmi"] == 0.0
