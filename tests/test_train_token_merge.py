"""Token merging in finetuning: merged steps read a shortened sequence, later steps and
evaluation the plain model; params and refusals name the key."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
import yaml

from s6damon.config import load_params
from s6damon.config.model import ModelParams
from s6damon.config.schema import ParamsError
from s6damon.model.factory import build_ctc_model, load_ctc_model
from s6damon.salad.backbone import feature_lengths
from s6damon.salad.baselines import n_keep
from s6damon.train.finetune import finetune
from s6damon.train.token_merge import TokenMergeSchedule, merge_steps
from _train_fixtures import ROOT, make_manifest, tiny_params


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_ctc_model(ModelParams(num_layers=2, hidden_size=64, num_heads=2, intermediate_size=128,
                                       conv_dim=[16, 16, 16, 16, 16, 16, 16]))


def _seed(n: int) -> None:
    # dropout draws from torch, SpecAugment's masks from numpy
    torch.manual_seed(n)
    np.random.seed(n)


def _batch():
    x = torch.randn(2, 16000)
    mask = torch.ones(2, 16000, dtype=torch.long)
    mask[1, 11000:] = 0
    x[1, 11000:] = 0
    return x, mask, torch.tensor([[5, 6, 7], [8, 9, -100]])


def test_merged_steps_keep_the_uniform_share_and_later_steps_are_the_plain_model():
    model = _model().train()
    sched = TokenMergeSchedule(model, 0.3, until_step=2)
    x, mask, labels = _batch()
    frames = feature_lengths(model.config, mask, x)
    sched.step = 1
    out = sched(x, attention_mask=mask, labels=labels)
    assert out.lengths.tolist() == [n_keep(int(t), 0.3, 1) for t in frames]
    assert out.lengths[0] < frames[0] and torch.isfinite(out.loss)
    sched.step = 2  # past the merged steps: the plain model, the same call as the model's own
    _seed(1)
    got = sched(x, attention_mask=mask, labels=labels)
    _seed(1)
    want = model(x, attention_mask=mask, labels=labels)
    assert torch.equal(got.logits, want.logits) and got.logits.shape[1] == int(frames.max())
    sched.step = 0
    sched.eval()  # evaluation always reads every token
    assert not sched.merging
    assert sched(x, attention_mask=mask).logits.shape[1] == int(frames.max())
    # the parameters are the model's only
    assert {id(p) for p in sched.parameters()} == {id(p) for p in model.parameters()}


def test_merge_steps_and_ratio_bounds():
    assert merge_steps(4000, 0.75) == 3000 and merge_steps(5, 0.5) == 3 and merge_steps(10, 0.0) == 0
    with pytest.raises(ValueError, match="ratio"):
        TokenMergeSchedule(_model(), 1.0, 1)
    sched = TokenMergeSchedule(_model().train(), 0.3, until_step=5, every=2)
    merged = []
    for step in range(7):
        sched.step = step
        merged.append(sched.merging)
    assert merged == [True, False, True, False, True, False, False]


def test_finetune_merges_for_the_first_steps_then_saves_the_plain_model(tmp_path):
    m, _, p = tiny_params()
    p = dataclasses.replace(p, steps=4, warmup_steps=1, eval_every=1000, log_every=1, checkpoint_every=1000,
                            progress=False, token_merge_ratio=0.3, token_merge_until=0.5, feature_cache=False,
                            freeze_feature_encoder_steps=0)
    train = make_manifest(tmp_path / "wav", n=6)
    res = finetune(None, m, p, train, None, tmp_path / "model", tmp_path / "ckpt", seed=0, threads=1)
    assert [h["token_merge"] for h in res["history"] if "token_merge" in h] == [1.0, 1.0, 0.0, 0.0]
    assert res["metrics"]["token_merge_steps"] == 2 and res["metrics"]["token_merge_ratio"] == 0.3
    model, _ = load_ctc_model(tmp_path / "model")  # a plain CTC checkpoint
    assert type(model).__name__.endswith("ForCTC")
    alt = dataclasses.replace(p, token_merge_until=1.0, token_merge_every=2)
    res = finetune(None, m, alt, train, None, tmp_path / "alt", tmp_path / "ckpt_alt", seed=0, threads=1)
    assert [h["token_merge"] for h in res["history"] if "token_merge" in h] == [1.0, 0.0, 1.0, 0.0]
    assert res["metrics"]["token_merge_steps"] == 2
    # merging and a wrapped model (SALAD's own dropping, SAFARI's masks) do not combine
    with pytest.raises(ValueError, match="token_merge_ratio"):
        finetune(None, m, p, train, None, tmp_path / "m2", tmp_path / "c2", seed=0, threads=1, wrap=lambda net: net)


@pytest.mark.parametrize(("edits", "key"), [
    ({"finetune": {"token_merge_ratio": 0.95}}, "'finetune.token_merge_ratio'"),
    ({"finetune": {"token_merge_until": 1.5}}, "'finetune.token_merge_until'"),
    ({"finetune": {"token_merge_every": 0}}, "'finetune.token_merge_every'"),
    # the merged sequence is not what intermediate CTC or a feature cache read
    ({"finetune": {"token_merge_ratio": 0.3, "interctc_weight": 0.3}}, "'finetune.token_merge_ratio'"),
    # SALAD and SAFARI choose their own tokens and masks
    ({"salad": {"finetune": {"token_merge_ratio": 0.3}}}, "'salad.finetune.token_merge_ratio'"),
    ({"safari": {"finetune": {"token_merge_ratio": 0.3}}}, "'safari.finetune.token_merge_ratio'"),
])
def test_params_name_the_bad_key(tmp_path, edits, key):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())

    def apply(node: dict, change: dict) -> None:
        for k, v in change.items():
            if isinstance(v, dict):
                apply(node[k], v)
            else:
                node[k] = v

    apply(data, edits)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ParamsError, match=key):
        load_params(tmp_path / "p.yaml")
