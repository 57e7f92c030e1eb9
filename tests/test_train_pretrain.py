"""wav2vec 2.0 SSL pretraining: loss, resumption, and finetuning from its output."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math

import torch
from transformers import Wav2Vec2ForPreTraining

from s6damon.train.finetune import finetune
from s6damon.train.pretrain import pretrain
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
