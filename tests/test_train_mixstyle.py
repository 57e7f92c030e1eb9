"""MixStyle in the conv feature encoder: the statistics it mixes, the frames it leaves alone,
when its hooks act, and its params."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from s6damon.config import Params
from s6damon.config.model import FinetuneParams, MixStyleParams
from s6damon.config.schema import ParamsError, build
from s6damon.model.factory import build_ctc_model
from s6damon.model.vocab import build_tokenizer
from s6damon.train.finetune import finetune
from s6damon.train.mixstyle import MixStyle, mix_statistics
from _train_fixtures import make_manifest, tiny_params


def _stats(x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    v = x[:, :n].double()
    return v.mean(-1), v.std(-1, unbiased=False)


def test_mixed_statistics_are_the_convex_mix_over_real_frames_only():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 12, generator=g) * torch.tensor([1.0, 3.0, 0.5])[:, None, None] + 2.0
    lengths = torch.tensor([12, 7, 0])
    partner, lam = torch.tensor([1, 0, 0]), torch.tensor([0.25, 0.0, 0.5])
    y = mix_statistics(x, lengths, partner, lam)
    mu0, sd0 = _stats(x[0], 12)
    mu1, sd1 = _stats(x[1], 7)  # the partner's statistics: its 7 real frames, not its padding
    got_mu, got_sd = _stats(y[0], 12)
    torch.testing.assert_close(got_mu, 0.25 * mu0 + 0.75 * mu1, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got_sd, 0.25 * sd0 + 0.75 * sd1, atol=1e-3, rtol=1e-3)
    # lam 0: utterance 1 takes utterance 0's statistics exactly; its padding is untouched
    torch.testing.assert_close(_stats(y[1], 7)[0], mu0, atol=1e-4, rtol=1e-4)
    assert torch.equal(y[1, :, 7:], x[1, :, 7:])
    assert torch.equal(y[2], x[2])  # no frames: left as it is
    # lam 1 everywhere: the identity (up to the eps in the std)
    torch.testing.assert_close(mix_statistics(x, lengths, partner, torch.ones(3)), x, atol=1e-4, rtol=1e-4)


def test_statistics_carry_no_gradient_but_the_features_do():
    x = torch.randn(2, 3, 8, requires_grad=True)
    y = mix_statistics(x, torch.tensor([8, 8]), torch.tensor([1, 0]), torch.tensor([1.0, 1.0]))
    y.sum().backward()
    # lam 1, detached statistics: y = (x - mu) / sd * sd + mu with mu, sd constants, so d(sum y)/dx = 1;
    # gradients through the statistics would cancel the mean's share and give about 0
    assert torch.allclose(x.grad, torch.ones_like(x), atol=1e-3)


def _encoder_out(model: torch.nn.Module, wave: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.base_model.feature_extractor(wave)


def test_hooks_act_only_inside_a_chosen_training_step():
    m, _, _ = tiny_params()
    model = build_ctc_model(m, build_tokenizer()).train()
    wave = torch.randn(3, 8000, generator=torch.Generator().manual_seed(1))
    samples = torch.tensor([8000, 6000, 4000])
    plain = _encoder_out(model, wave)
    mix = MixStyle.for_model(MixStyleParams(prob=1.0, alpha=0.3, layers=[0, 2]), model)
    assert torch.equal(_encoder_out(model, wave), plain)  # outside a step
    with mix.step(np.random.default_rng(0), samples) as on:
        mixed = _encoder_out(model, wave)
    assert on and not torch.allclose(mixed, plain, atol=1e-3)
    with mix.step(np.random.default_rng(0), samples):
        torch.testing.assert_close(_encoder_out(model, wave), mixed)  # same draws, same features
        model.eval()
        assert torch.equal(_encoder_out(model, wave), plain)  # evaluation: never
        model.train()
    with mix.step(np.random.default_rng(0), samples[:1]) as on:  # one utterance: no partner
        assert not on and torch.equal(_encoder_out(model, wave), plain)
    never = MixStyle(MixStyleParams(prob=0.0), model.base_model.feature_extractor.conv_layers,
                     model.config.conv_kernel, model.config.conv_stride)
    with never.step(np.random.default_rng(0), samples) as on:
        assert not on
    mix.remove()
    never.remove()
    with mix.step(np.random.default_rng(0), samples):
        assert torch.equal(_encoder_out(model, wave), plain)  # hooks removed


def test_partners_are_never_the_utterance_itself():
    m, _, _ = tiny_params()
    model = build_ctc_model(m, build_tokenizer())
    mix = MixStyle.for_model(MixStyleParams(prob=1.0), model)
    for seed in range(20):
        b = 2 + seed % 5
        assert mix.begin_step(np.random.default_rng(seed), torch.full((b,), 4000))
        partner = mix._partner.numpy()
        assert (partner != np.arange(b)).all() and sorted(partner) == list(range(b))


def test_params_name_the_bad_key(tmp_path):
    with pytest.raises(ParamsError, match=r"finetune\.mixstyle\.prob"):
        build(FinetuneParams, {"mixstyle": {"prob": 1.5}}, "finetune")
    with pytest.raises(ParamsError, match=r"mixstyle\.layers"):
        build(FinetuneParams, {"mixstyle": {"layers": []}}, "finetune")
    with pytest.raises(ParamsError, match=r"finetune\.mixstyle\.beta"):
        build(FinetuneParams, {"mixstyle": {"beta": 1}}, "finetune")
    m, _, p = tiny_params()
    df = make_manifest(tmp_path / "wav", 4)
    outside = dataclasses.replace(p, steps=1, mixstyle=MixStyleParams(prob=0.5, layers=[0, 9]))
    with pytest.raises(ValueError, match=r"mixstyle\.layers.*\[9\]"):
        finetune(None, m, outside, df, None, tmp_path / "m", tmp_path / "ck", seed=1, threads=1)
    cached = dataclasses.replace(p, steps=1, mixstyle=MixStyleParams(prob=0.5), feature_cache=True,
                                 freeze_feature_encoder_steps=1)
    with pytest.raises(ValueError, match="feature_cache"):
        finetune(None, m, cached, df, None, tmp_path / "m2", tmp_path / "ck2", seed=1, threads=1)


@pytest.mark.parametrize("section", ["finetune", "salad.finetune", "safari.finetune"])
def test_params_check_mixstyle_against_the_model_in_each_finetune_section(section):
    def params(recipe: dict) -> dict:
        *parents, leaf = section.split(".")
        data: dict = {}
        node = data
        for name in parents:
            node = node.setdefault(name, {})
        # SALAD's conv encoder must stay frozen (its params check); a frozen encoder still runs
        node[leaf] = {"freeze_feature_encoder_steps": 10**6, **recipe}
        return data

    with pytest.raises(ParamsError, match=rf"'{section}\.mixstyle\.layers' \[7\]"):
        build(Params, params({"mixstyle": {"prob": 0.5, "layers": [1, 7]}}))
    build(Params, params({"mixstyle": {"prob": 0.5, "layers": [1, 6]}}))  # the default model's 7 layers
    build(Params, {**params({"mixstyle": {"prob": 0.5, "layers": [7]}}), "model": {"init": "some/checkpoint"}})
    if section != "safari.finetune":  # safari never allows a feature cache
        with pytest.raises(ParamsError, match=rf"'{section}\.feature_cache' false"):
            build(Params, params({"mixstyle": {"prob": 0.5}, "feature_cache": True}))


def test_finetune_with_mixstyle_is_deterministic_and_differs_from_without(tmp_path):
    m, _, p = tiny_params()
    p = dataclasses.replace(p, steps=3, warmup_steps=1, eval_every=1000, log_every=1, checkpoint_every=1000,
                            progress=False)
    df = make_manifest(tmp_path / "wav", 6)
    on = dataclasses.replace(p, mixstyle=MixStyleParams(prob=1.0, alpha=0.5))
    runs = [finetune(None, m, q, df, None, tmp_path / f"m{i}", tmp_path / f"ck{i}", seed=3, threads=1)
            for i, q in enumerate([on, on, p])]
    losses = [[h["loss"] for h in r["history"] if "loss" in h] for r in runs]
    assert losses[0] == losses[1]
    assert losses[0][0] != losses[2][0]
