"""wav2vec 2.0 SSL pretraining: loss, resumption, and finetuning from its output."""

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

from s6damon.train.data import AudioSet, bucket_batches
from s6damon.train.finetune import finetune
from s6damon.train.pretrain import (
    build_pretraining_model,
    contrastive_objective,
    heldout_loss,
    heldout_sets,
    pretrain,
)
from _train_fixtures import make_manifest, tiny_params


def test_pretrain_then_finetune(tmp_path):
    m, pp, fp = tiny_params()
    df = make_manifest(tmp_path / "wav", 10)
    out = pretrain(m, pp, df, tmp_path / "ssl", tmp_path / "ck", seed=1, threads=1)
    hist = out["history"]
    assert [h["step"] for h in hist] == [2, 4]
    assert all(math.isfinite(h["loss"]) and h["codevector_perplexity"] > 0 for h in hist)
    assert out["metrics"]["steps"] == pp.steps and out["metrics"]["audio_seconds_per_second"] > 0
    assert isinstance(Wav2Vec2ForPreTraining.from_pretrained(tmp_path / "ssl"), Wav2Vec2ForPreTraining)
    ft = finetune(tmp_path / "ssl", m, fp, df, None, tmp_path / "ctc", tmp_path / "ck_ft", seed=1, threads=1)
    assert ft["metrics"]["init"].endswith("ssl") and (tmp_path / "ctc" / "vocab.json").is_file()


def test_resumed_pretrain_equals_uninterrupted(tmp_path):
    m, pp, _ = tiny_params()
    pp = dataclasses.replace(pp, steps=4, checkpoint_every=2)
    df = make_manifest(tmp_path / "wav", 8)
    pretrain(m, pp, df, tmp_path / "full", tmp_path / "ck_full", seed=5, threads=1)
    assert pretrain(m, pp, df, tmp_path / "res", tmp_path / "ck_res", seed=5, threads=1, stop_at=3)["stopped_early"]
    res = pretrain(m, pp, df, tmp_path / "res", tmp_path / "ck_res", seed=5, threads=1)
    assert res["metrics"]["resumed_from"] == 2
    a = Wav2Vec2ForPreTraining.from_pretrained(tmp_path / "full").state_dict()
    b = Wav2Vec2ForPreTraining.from_pretrained(tmp_path / "res").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_bfloat16_pretraining_is_the_float32_objective_to_bf16_precision(tmp_path):
    m, pp, _ = tiny_params()
    pp = dataclasses.replace(pp, steps=2, log_every=1)
    df = make_manifest(tmp_path / "wav", 6)
    runs = {prec: pretrain(m, dataclasses.replace(pp, precision=prec, attention="auto"), df, tmp_path / prec,
                           tmp_path / f"ck_{prec}", seed=4, threads=1)
            for prec in ("float32", "bfloat16")}
    assert runs["float32"]["metrics"]["attention"] == "sdpa"
    assert runs["bfloat16"]["metrics"]["attention"] == "eager"  # auto under bfloat16 on the CPU
    l32, l16 = (runs[k]["history"][0]["loss"] for k in ("float32", "bfloat16"))
    assert l16 != l32  # autocast really ran the forward pass in bfloat16 ...
    assert abs(l16 - l32) < 0.05 * abs(l32)  # ... on the same objective
    saved = Wav2Vec2ForPreTraining.from_pretrained(tmp_path / "bfloat16")
    assert all(p.dtype == torch.float32 for p in saved.parameters())  # weights stay float32


def test_heldout_sets_split_dev_by_voice_in_the_pool():
    pool = pd.DataFrame({"voice": ["a", "a", "b"], "speaker": ["a", "a_p2", "b"]})
    dev = pd.DataFrame({"voice": ["a", "c", "b", "c"], "speaker": ["a_p2", "c", "b", "c"], "utt_id": list("wxyz")})
    sets = heldout_sets(dev, pool)
    assert list(sets["dev_seen"]["utt_id"]) == ["w", "y"] and list(sets["dev_unseen"]["utt_id"]) == ["x", "z"]
    # without a voice column the speaker decides; an empty set is left out
    sets = heldout_sets(dev.drop(columns="voice").iloc[:1], pool.drop(columns="voice"))
    assert list(sets) == ["dev_seen"]


def test_heldout_loss_is_repeatable_and_leaves_training_state_alone(tmp_path):
    m, pp, _ = tiny_params()
    df = make_manifest(tmp_path / "wav", 6)
    model = build_pretraining_model(m, pp)
    objective = contrastive_objective(model, pp)
    audio = AudioSet(df)
    batches = bucket_batches(audio.durations, pp.batch_seconds)
    np.random.seed(123)
    expected_draw = np.random.rand()
    np.random.seed(123)
    a = heldout_loss(objective, audio, batches, 16000, 0, 7, "cpu")
    assert np.random.rand() == expected_draw  # the global NumPy stream training draws from is untouched
    assert model.training  # back in training mode
    b = heldout_loss(objective, audio, batches, 16000, 0, 7, "cpu")
    assert a == b and math.isfinite(a["loss"]) and set(a) >= {"loss", "contrastive_loss", "diversity_loss"}
    # another seed masks other tokens: the value is measured, not fixed
    assert heldout_loss(objective, audio, batches, 16000, 0, 8, "cpu")["loss"] != a["loss"]


def test_pretrain_reports_heldout_losses_without_changing_training(tmp_path):
    m, pp, _ = tiny_params()
    pp = dataclasses.replace(pp, steps=4, log_every=2, eval_every=3)
    df = make_manifest(tmp_path / "wav", 8)
    df["voice"] = ["v1", "v2"] * 4
    train, dev = df.iloc[:6], df.iloc[6:].assign(voice=["v1", "new"])
    plain = pretrain(m, pp, train, tmp_path / "plain", tmp_path / "ck_plain", seed=3, threads=1)
    held = pretrain(m, pp, train, tmp_path / "held", tmp_path / "ck_held", seed=3, threads=1,
                    heldout=heldout_sets(dev, train))
    evals = [h for h in held["history"] if "dev_seen_loss" in h]
    assert [h["step"] for h in evals] == [3, 4] and all("dev_unseen_loss" in h for h in evals)
    assert held["metrics"]["final_dev_unseen_loss"] == evals[-1]["dev_unseen_loss"]
    assert "final_dev_seen_loss" not in plain["metrics"]
    # evaluation draws its masks from its own seed and restores the RNG: the weights are the same
    a = Wav2Vec2ForPreTraining.from_pretrained(tmp_path / "plain").state_dict()
    b = Wav2Vec2ForPreTraining.from_pretrained(tmp_path / "held").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_eval_every_is_validated():
    from s6damon.config.model import PretrainParams
    from s6damon.config.schema import ParamsError, build

    with pytest.raises(ParamsError, match="pretrain.eval_every"):
        build(PretrainParams, {"eval_every": -1}, "pretrain")
