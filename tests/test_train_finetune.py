"""CTC finetuning, decoding, scoring, and resumption that gives identical weights."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd
import torch

from s6damon.model.factory import load_ctc_model
from s6damon.train.checkpoint import list_checkpoints
from s6damon.train.evaluate import score, transcribe
from s6damon.train.finetune import encoder_frozen_at, finetune
from _train_fixtures import make_manifest, tiny_params


def _weights(folder):
    model, _ = load_ctc_model(folder)
    return model.state_dict()


def test_finetune_from_scratch_saves_decodes_and_scores(tmp_path):
    m, _, p = tiny_params()
    df = make_manifest(tmp_path / "wav", 10)
    out = finetune(None, m, p, df, df.iloc[:4], tmp_path / "model", tmp_path / "ck", seed=1, threads=1,
                   best_dir=tmp_path / "best")
    assert out["metrics"]["steps"] == p.steps and out["metrics"]["init"] == "scratch"
    assert out["metrics"]["audio_seconds_per_second"] > 0
    assert [h["step"] for h in out["history"] if "dev_wer" in h] == [2, 4]
    assert all("loss" in h and "lr" in h for h in out["history"])
    model, tok = load_ctc_model(tmp_path / "model")
    assert (tmp_path / "best" / "config.json").is_file()
    res = transcribe(model, tok, df.iloc[:5], batch_seconds=2.0)
    assert list(res.columns) == ["utt_id", "ref", "hyp"] and list(res["utt_id"]) == list(df["utt_id"][:5])
    s = score(res)
    assert 0 <= s["cer"] and s["wer"] >= 0 and s["utterances"] == 5


def test_score_counts_errors():
    df = pd.DataFrame({"utt_id": ["a", "b"], "ref": ["turn on the light", "stop"], "hyp": ["turn of the light", ""]})
    s = score(df)
    assert abs(s["wer"] - 2 / 5) < 1e-9 and s["cer"] > 0


def test_resumed_finetune_equals_uninterrupted(tmp_path):
    m, _, p = tiny_params()
    p = dataclasses.replace(p, steps=6, checkpoint_every=2, eval_every=3)
    df = make_manifest(tmp_path / "wav", 8)
    full = finetune(None, m, p, df, df.iloc[:2], tmp_path / "full", tmp_path / "ck_full", seed=3, threads=1)
    killed = finetune(None, m, p, df, df.iloc[:2], tmp_path / "res", tmp_path / "ck_res", seed=3, threads=1, stop_at=3)
    assert killed["stopped_early"] and not (tmp_path / "res").exists()
    assert [c.name for c in list_checkpoints(tmp_path / "ck_res")] == ["step_00000002.pt"]
    resumed = finetune(None, m, p, df, df.iloc[:2], tmp_path / "res", tmp_path / "ck_res", seed=3, threads=1)
    assert resumed["metrics"]["resumed_from"] == 2
    assert len(list_checkpoints(tmp_path / "ck_res")) == 2  # only the last two are kept
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "res")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert full["history"] == resumed["history"]
    # a different configuration does not pick up these checkpoints
    other = finetune(None, m, dataclasses.replace(p, learning_rate=1e-4), df, None, tmp_path / "o",
                     tmp_path / "ck_res", seed=3, threads=1)
    assert other["metrics"]["resumed_from"] == 0


def test_bfloat16_autocast_trains_float32_weights_close_to_float32(tmp_path):
    m, _, p = tiny_params()
    p = dataclasses.replace(p, steps=3, eval_every=100)
    df = make_manifest(tmp_path / "wav", 6)
    runs = {prec: finetune(None, m, dataclasses.replace(p, precision=prec), df, None, tmp_path / prec,
                           tmp_path / f"ck_{prec}", seed=2, threads=1)
            for prec in ("float32", "bfloat16")}
    l32 = [h["loss"] for h in runs["float32"]["history"] if "loss" in h]
    l16 = [h["loss"] for h in runs["bfloat16"]["history"] if "loss" in h]
    assert l16[0] != l32[0]  # autocast really ran the forward pass in bfloat16 ...
    assert abs(l16[0] - l32[0]) < 0.05 * abs(l32[0])  # ... and the loss is the same to bf16 precision
    a, b = _weights(tmp_path / "float32"), _weights(tmp_path / "bfloat16")
    assert all(v.dtype == torch.float32 for v in b.values() if v.is_floating_point())
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_encoder_frozen_at_counts_early_and_late_freezing():
    _, _, p = tiny_params()
    p = dataclasses.replace(p, steps=10, freeze_feature_encoder_steps=2, freeze_feature_encoder_from=7)
    assert [encoder_frozen_at(p, s) for s in range(10)] == [True, True] + [False] * 5 + [True] * 3
    never = dataclasses.replace(p, freeze_feature_encoder_steps=0, freeze_feature_encoder_from=None)
    assert not any(encoder_frozen_at(never, s) for s in range(10))


def test_late_freezing_keeps_the_conv_encoder_of_the_step_it_froze(tmp_path):
    m, _, p = tiny_params()
    p = dataclasses.replace(p, steps=4, checkpoint_every=2, eval_every=100, freeze_feature_encoder_steps=0,
                            freeze_feature_encoder_from=2)
    df = make_manifest(tmp_path / "wav", 8)
    finetune(None, m, p, df, None, tmp_path / "model", tmp_path / "ck", seed=5, threads=1)
    at_freeze = torch.load(list_checkpoints(tmp_path / "ck")[0], weights_only=False)["model"]
    final = _weights(tmp_path / "model")
    encoder = [k for k in final if ".feature_extractor." in k]
    rest = [k for k in final if k.endswith(".weight") and ".feature_extractor." not in k and k in at_freeze]
    assert encoder and rest
    for k in encoder:  # steps 2 and 3 left it alone (no gradient, no weight decay)
        torch.testing.assert_close(final[k], at_freeze[k], rtol=0, atol=0, msg=k)
    assert any(not torch.equal(final[k], at_freeze[k]) for k in rest)
