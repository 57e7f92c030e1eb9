"""The positional convolution through the FFT: the same convolution as PyTorch's, the same
model outputs and gradients, switched only inside its block."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from transformers import HubertConfig, HubertForCTC, Wav2Vec2Config, Wav2Vec2ForCTC

from s6damon.hardware import training_pos_conv
from s6damon.model.fft_pos_conv import POSITIONAL_CONVS, fft_conv1d, fft_size, pos_conv_kernel

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16, 16), conv_kernel=(10, 4), conv_stride=(5, 4), conv_bias=True,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, hidden_dropout=0.0,
            attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0,
            layerdrop=0.0, mask_time_prob=0.0, vocab_size=12, ctc_loss_reduction="mean")


def test_fft_size_has_only_small_prime_factors():
    assert [fft_size(n) for n in (1, 7, 213, 1564)] == [1, 8, 216, 1600]


@pytest.mark.parametrize("B, T, C, groups, K, padding, bias, block",
                         [(3, 37, 16, 4, 8, 4, True, 256), (2, 50, 12, 1, 5, 2, False, 256),
                          (1, 9, 8, 8, 16, 8, True, 256), (2, 120, 32, 16, 64, 32, True, 256),
                          # overlap-save: several blocks, the last one partly padding
                          (2, 600, 32, 16, 64, 32, True, 256), (3, 37, 16, 4, 8, 4, True, 16),
                          (2, 101, 12, 3, 7, 3, False, 18)])
def test_fft_conv1d_equals_conv1d(B, T, C, groups, K, padding, bias, block):
    """Values and gradients (input, weight, bias) of PyTorch's conv1d, in one FFT or in blocks."""
    gen = torch.Generator().manual_seed(B * T + K)
    x = torch.randn(B, T, C, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(C, C // groups, K, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(C, generator=gen, dtype=torch.float64, requires_grad=True) if bias else None
    ref = torch.nn.functional.conv1d(x.transpose(1, 2), w, b, padding=padding, groups=groups).transpose(1, 2)
    # the float64 reference through the same code path: fft_conv1d computes in float32
    out = fft_conv1d(x, w, b, padding, groups, block=block)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)
    probe = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    wrt = [x, w] + ([b] if bias else [])
    g_ref = torch.autograd.grad((ref * probe).sum(), wrt)
    g_out = torch.autograd.grad((out.double() * probe).sum(), wrt)
    for a, e in zip(g_out, g_ref):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-3)


def test_fft_conv1d_rejects_mismatched_channels():
    with pytest.raises(ValueError, match="do not match"):
        fft_conv1d(torch.zeros(1, 10, 12), torch.zeros(16, 4, 5), None, 2, 4)


def test_fft_conv1d_rejects_a_block_shorter_than_twice_the_kernel():
    with pytest.raises(ValueError, match="block 12 is shorter"):
        fft_conv1d(torch.zeros(1, 40, 8), torch.zeros(8, 2, 8), None, 4, 4, block=12)


def _model(cls, cfg_cls, **extra):
    torch.manual_seed(0)
    return cls(cfg_cls(**TINY, **extra)).train()


@pytest.mark.parametrize("cls, cfg_cls, extra", [
    (Wav2Vec2ForCTC, Wav2Vec2Config, {}),
    (Wav2Vec2ForCTC, Wav2Vec2Config, {"do_stable_layer_norm": True, "feat_extract_norm": "layer"}),
    (HubertForCTC, HubertConfig, {"conv_pos_batch_norm": True}),
])
def test_model_with_fft_pos_conv_gives_the_same_logits_and_gradients(cls, cfg_cls, extra):
    model = _model(cls, cfg_cls, **extra)
    x = torch.randn(3, 4000, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 4000, dtype=torch.long)
    mask[2, 2500:] = 0
    labels = torch.tensor([[1, 2, 3, 4], [5, 6, -100, -100], [7, 8, 9, -100]])

    def run(kernel):
        model.zero_grad()
        with pos_conv_kernel(model, kernel):
            out = model(x, attention_mask=mask, labels=labels)
        out.loss.backward()
        return out.logits.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    logits_c, grads_c = run("conv")
    logits_f, grads_f = run("fft")
    frames = model._get_feat_extract_output_lengths(mask.sum(-1)).tolist()
    for b, n in enumerate(frames):  # the real frames (padding carries no meaning)
        torch.testing.assert_close(logits_f[b, :n], logits_c[b, :n], rtol=1e-4, atol=1e-4)
    assert grads_c.keys() == grads_f.keys()
    pos = [k for k in grads_c if "pos_conv_embed" in k]
    assert pos  # the weight-norm parameters of the positional conv get gradients both ways
    # float32 rounding, carried back through every layer: each gradient within 1e-4 of its norm
    # (a floor for gradients that are zero up to rounding, e.g. a conv bias under GroupNorm)
    floor = 1e-4 * float(torch.stack([g.norm() for g in grads_c.values()]).max())
    rel = {k: float((grads_f[k] - grads_c[k]).norm()) / max(float(grads_c[k].norm()), floor) for k in grads_c}
    worst = max(rel, key=rel.get)
    assert rel[worst] < 1e-4, (worst, rel[worst])


def test_the_switch_lives_only_inside_its_block():
    model = _model(Wav2Vec2ForCTC, Wav2Vec2Config)
    mods = [m for m in model.modules() if isinstance(m, POSITIONAL_CONVS)]
    assert len(mods) == 1
    keys = set(model.state_dict())
    with pos_conv_kernel(model, "fft"):
        assert "forward" in vars(mods[0])
    assert "forward" not in vars(mods[0]) and set(model.state_dict()) == keys
    with pytest.raises(RuntimeError, match="boom"), pos_conv_kernel(model, "fft"):
        raise RuntimeError("boom")
    assert "forward" not in vars(mods[0])  # restored on error too
    with pytest.raises(ValueError, match="positional conv kernel"), pos_conv_kernel(model, "direct"):
        pass


def test_fft_pos_conv_under_bfloat16_autocast_stays_float32():
    """Autocast would run the frequency-domain matmul in bfloat16; it is off inside."""
    model = _model(Wav2Vec2ForCTC, Wav2Vec2Config).eval()
    pe = model.wav2vec2.encoder.pos_conv_embed
    h = torch.randn(2, 40, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = pe(h)
        with torch.autocast("cpu", dtype=torch.bfloat16), pos_conv_kernel(model, "fft"):
            out = pe(h.bfloat16())
    assert out.dtype == torch.float32
    # only the input's rounding to bfloat16 separates the two
    torch.testing.assert_close(out, ref, rtol=0.05, atol=0.03)


def test_training_pos_conv_resolution():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert training_pos_conv("auto", cpu) == "fft" and training_pos_conv("auto", cuda) == "conv"
    assert training_pos_conv("conv", cpu) == "conv" and training_pos_conv("fft", cuda) == "fft"


def test_finetune_and_pretrain_record_their_positional_conv(tmp_path):
    from _train_fixtures import make_manifest, tiny_params

    from s6damon.train.finetune import finetune
    from s6damon.train.pretrain import pretrain

    m, pp, p = tiny_params()
    df = make_manifest(tmp_path / "wav", 6)
    out = finetune(None, m, dataclasses.replace(p, steps=2, pos_conv="fft"), df, None, tmp_path / "ft",
                   tmp_path / "ck", seed=1, threads=1)
    assert out["metrics"]["pos_conv"] == "fft" and np.isfinite(out["metrics"]["final_train_loss"])
    res = pretrain(m, dataclasses.replace(pp, steps=2, pos_conv="auto"), df, tmp_path / "pt", tmp_path / "ck2",
                   seed=1, threads=1)
    assert res["metrics"]["pos_conv"] == "fft"  # auto on a CPU


def test_pos_conv_benchmark_smoke(tmp_path):
    from bench.pos_conv import main

    out = main(["--shapes", "2x30", "--repeats", "1", "--warmup", "0", "--out", str(tmp_path / "p.json")])
    assert {(r["dtype"], r["kernel"]) for r in out["results"]} == {(d, k) for d in ("float32", "bfloat16")
                                                                    for k in ("conv", "fft")}
    assert all(r["median_ms"] > 0 for r in out["results"]) and (tmp_path / "p.json").exists()
