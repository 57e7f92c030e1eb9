"""The attention kernel switch: the same math as the fused kernel, resolved from the precision,
restored after the block, and recorded by a finetune run."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from s6damon.config.model import ModelParams
from s6damon.hardware import training_attention
from s6damon.model.attention import attention_kernel
from s6damon.model.factory import build_ctc_model
from s6damon.train.finetune import finetune
from _train_fixtures import make_manifest, tiny_params

CPU = torch.device("cpu")


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = ModelParams(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                    conv_dim=[16, 16], conv_kernel=[10, 3], conv_stride=[5, 2], conv_pos_kernel=8, conv_pos_groups=4)
    return build_ctc_model(m, mask_time_prob=0.0).eval()


def test_auto_is_eager_only_under_bfloat16_on_a_cpu():
    assert training_attention("auto", "bfloat16", CPU) == "eager"
    assert training_attention("auto", "float32", CPU) == "sdpa"
    assert training_attention("auto", "bfloat16", torch.device("cuda")) == "sdpa"
    for k in ("sdpa", "eager"):  # an explicit choice is kept whatever the precision
        assert training_attention(k, "float32", CPU) == k
        assert training_attention(k, "bfloat16", CPU) == k


def test_eager_and_sdpa_give_the_same_logits_and_gradients_with_padding():
    model = _model()
    wave = torch.randn(3, 4000)
    mask = torch.ones(3, 4000, dtype=torch.long)
    mask[1, 2500:] = 0  # one padded row: both kernels must apply the padding mask
    outs = {}
    for k in ("sdpa", "eager"):
        model.zero_grad()
        with attention_kernel(model, k):
            logits = model(wave, attention_mask=mask).logits
        logits.square().mean().backward()
        outs[k] = (logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(outs["eager"][0], outs["sdpa"][0], rtol=1e-4, atol=1e-5)
    for n, g in outs["sdpa"][1].items():
        torch.testing.assert_close(outs["eager"][1][n], g, rtol=1e-3, atol=1e-5, msg=n)


def test_the_kernel_is_restored_after_the_block_even_on_error():
    model = _model()
    before = model.config._attn_implementation
    with pytest.raises(RuntimeError):
        with attention_kernel(model, "eager" if before != "eager" else "sdpa"):
            assert model.config._attn_implementation != before
            raise RuntimeError("boom")
    assert model.config._attn_implementation == before
    with pytest.raises(ValueError, match="attention kernel"):
        with attention_kernel(model, "flash"):
            pass


def test_finetune_records_the_kernel_it_trained_with(tmp_path):
    m, _, p = tiny_params()
    p = dataclasses.replace(p, steps=2, eval_every=100, precision="bfloat16", attention="auto")
    df = make_manifest(tmp_path / "wav", 4)
    out = finetune(None, m, p, df, None, tmp_path / "model", tmp_path / "ck", seed=1, threads=1)
    assert out["metrics"]["attention"] == "eager" and out["metrics"]["precision"] == "bfloat16"


def test_attention_benchmark_times_both_kernels_per_shape_and_dtype(tmp_path):
    from bench.attention_kernel import main

    out = main(["--shapes", "2x20", "--repeats", "1", "--warmup", "0", "--out", str(tmp_path / "a.json")])
    rows = out["results"]
    assert [(r["dtype"], r["kernel"]) for r in rows] == [("float32", "sdpa"), ("float32", "eager"),
                                                          ("bfloat16", "sdpa"), ("bfloat16", "eager")]
    assert all(r["median_ms"] > 0 for r in rows)
    assert [r["speedup_over_sdpa"] for r in rows if r["kernel"] == "sdpa"] == [1.0, 1.0]
    assert (tmp_path / "a.json").is_file()
