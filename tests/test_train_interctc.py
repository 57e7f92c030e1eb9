"""Intermediate CTC: a middle layer's loss is that of the model cut after that layer, params
are checked, and finetuning with it trains and logs both losses."""

from __future__ import annotations

import copy
import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import yaml

from s6damon.config import load_params
from s6damon.config.model import ModelParams
from s6damon.config.schema import ParamsError
from s6damon.model.factory import build_ctc_model
from s6damon.salad.backbone import feature_lengths
from s6damon.train.finetune import finetune
from s6damon.train.interctc import interctc_loss, layer_logits
from _train_fixtures import ROOT, make_manifest, tiny_params


def _model(stable: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_ctc_model(ModelParams(num_layers=3, hidden_size=64, num_heads=2, intermediate_size=128,
                                       conv_dim=[16, 16, 16, 16, 16, 16, 16], stable_layer_norm=stable)).eval()


def _cut(model: torch.nn.Module, k: int) -> torch.nn.Module:
    """A copy of ``model`` with only its first ``k`` transformer layers."""
    short = copy.deepcopy(model)
    short.wav2vec2.encoder.layers = short.wav2vec2.encoder.layers[:k]
    short.config.num_hidden_layers = k
    return short


@pytest.mark.parametrize("stable", [True, False])
def test_a_middle_layers_loss_is_the_loss_of_the_model_cut_after_that_layer(stable):
    model = _model(stable)
    x = torch.randn(2, 12000)
    mask = torch.ones(2, 12000, dtype=torch.long)
    mask[1, 9000:] = 0
    x[1, 9000:] = 0
    labels = torch.tensor([[5, 6, 7, 8], [9, 10, -100, -100]])
    with torch.no_grad():
        out = model(x, attention_mask=mask, labels=labels, output_hidden_states=True)
        frames = feature_lengths(model.config, mask, x)
        # the last layer through layer_logits is the model's own output
        assert torch.allclose(layer_logits(model, out.hidden_states[3]), out.logits, atol=1e-5)
        for k in (1, 2):
            cut = _cut(model, k)(x, attention_mask=mask, labels=labels)
            assert float(interctc_loss(model, out.hidden_states, labels, frames, [k])) == pytest.approx(
                float(cut.loss), rel=1e-5)
        both = interctc_loss(model, out.hidden_states, labels, frames, [1, 2])
        one, two = (interctc_loss(model, out.hidden_states, labels, frames, [k]) for k in (1, 2))
        assert float(both) == pytest.approx(float(one + two) / 2, rel=1e-6)


def test_layers_must_lie_below_the_last():
    model = _model(True)
    hs = [torch.zeros(1, 5, 64)] * 4
    with pytest.raises(ValueError, match=r"1\.\.2"):
        interctc_loss(model, hs, torch.tensor([[5]]), torch.tensor([5]), [3])


def test_params_name_the_bad_key(tmp_path):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["finetune"].update(interctc_weight=0.3, interctc_layers=[4])
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ParamsError, match="finetune.interctc_layers"):
        load_params(tmp_path / "a.yaml")
    data["finetune"].update(interctc_layers=[2])
    data["salad"]["finetune"]["interctc_weight"] = 0.3
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ParamsError, match="salad.finetune.interctc_weight"):
        load_params(tmp_path / "b.yaml")
    data["salad"]["finetune"]["interctc_weight"] = 0.0
    data["finetune"]["interctc_weight"] = 1.5
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ParamsError, match="finetune.interctc_weight"):
        load_params(tmp_path / "c.yaml")


def test_finetune_with_intermediate_ctc_trains_and_logs_both_losses(tmp_path):
    m, _, p = tiny_params()
    m = dataclasses.replace(m, num_layers=2)
    p = dataclasses.replace(p, steps=4, warmup_steps=1, eval_every=1000, log_every=1, checkpoint_every=1000,
                            progress=False, interctc_weight=0.5, interctc_layers=[1])
    train = make_manifest(tmp_path / "wav", n=6)
    res = finetune(None, m, p, train, None, tmp_path / "model", tmp_path / "ckpt", seed=0, threads=1)
    logged = [h for h in res["history"] if "interctc_loss" in h]
    assert len(logged) == 4
    for h in logged:
        assert h["loss"] == pytest.approx(0.5 * h["ctc_loss"] + 0.5 * h["interctc_loss"], rel=1e-4)
    # a layer the model does not have below its last is an error naming the key
    bad = dataclasses.replace(p, interctc_layers=[2])
    with pytest.raises(ValueError, match="finetune.interctc_layers"):
        finetune(None, m, bad, train, None, tmp_path / "model2", tmp_path / "ckpt2", seed=0, threads=1)
