"""CPU benchmark of one CTC training step, in variants: precision and model implementation.

Usage::

    python -m bench.train_step --out bench/train_step.json
    python -m bench.train_step --variants float32 float32-stock-conv float32-attention-dropout \
        float32-stock-conv-attention-dropout bfloat16
    python -m bench.train_step --repeats 1 --warmup 0 --batch-seconds 2 --out /tmp/t.json   # smoke

One step is what ``finetune`` does per batch (``finetune.precision`` picks the autocast):
forward with the CTC loss, backward, gradient clipping and an AdamW update, on a batch of
``--batch-seconds`` of noise cut into ``--utt-seconds`` utterances with random transcripts.
Models: the default profile's model shape (``params.yaml``'s ``model``, random weights; the
speed of a step does not depend on the weights) and, with ``--scales tiny base``, the
wav2vec2-base architecture. Variants (:data:`VARIANTS`): the precision, and two ablations of
the model as the pipeline builds it: Hugging Face's own (strided) LayerNorm conv layers
instead of :mod:`s6damon.model.contiguous_conv`, attention dropout 0.1 (which moves the
attention off PyTorch's fused CPU kernel), both (the model as built before either change), and
the conv feature encoder frozen (no backward through it, as ``finetune.freeze_feature_encoder_steps``
does), and frozen with its output computed beforehand (``finetune.feature_cache``: the step starts
at the feature projection), and the eager attention kernel instead of PyTorch's fused one
(``finetune.attention``), and the positional convolution through the FFT (``finetune.pos_conv``).
The variants run round-robin in one process so that drifts of a shared machine hit all alike; each has its own model (same initial weights) and
optimiser state. ``speedup`` is relative to the first variant listed.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any, NamedTuple

import torch

from bench.machine import timing_record
from bench.models import base_model, tiny_model
from s6damon import io
from s6damon.model.contiguous_conv import use_contiguous_conv_layers
from s6damon.model.frames import SAMPLE_RATE
from s6damon.timing import percentile_90, round_robin
from s6damon.train.feature_cache import FeatureBatch, FeatureInputCTC
from s6damon.train.finetune import set_encoder_frozen
from s6damon.train.precision import training_forward

class Variant(NamedTuple):
    """How one benchmark variant builds and trains the model."""

    precision: str
    contiguous_conv: bool = True
    attention_dropout: float | None = None  # None: the model's own
    frozen_encoder: bool = False  # conv feature encoder without gradients (finetune.freeze_feature_encoder_steps)
    feature_cache: bool = False  # frozen encoder run once beforehand; steps start from its output (finetune.feature_cache)
    attention: str = "sdpa"  # attention kernel of the training forward pass (finetune.attention)
    pos_conv: str = "conv"  # positional convolution of the training forward pass (finetune.pos_conv)


VARIANTS: dict[str, Variant] = {
    "float32": Variant("float32"),
    "bfloat16": Variant("bfloat16"),
    "float32-stock-conv": Variant("float32", contiguous_conv=False),
    "float32-attention-dropout": Variant("float32", attention_dropout=0.1),
    "float32-stock-conv-attention-dropout": Variant("float32", False, 0.1),  # the model before both changes
    "float32-frozen-encoder": Variant("float32", frozen_encoder=True),
    "float32-feature-cache": Variant("float32", frozen_encoder=True, feature_cache=True),
    "bfloat16-frozen-encoder": Variant("bfloat16", frozen_encoder=True),
    "bfloat16-feature-cache": Variant("bfloat16", frozen_encoder=True, feature_cache=True),
    "float32-eager-attention": Variant("float32", attention="eager"),
    "bfloat16-eager-attention": Variant("bfloat16", attention="eager"),
    # the SALAD adaptation runs' step: conv encoder frozen, eager attention under bfloat16
    "bfloat16-eager-frozen-encoder": Variant("bfloat16", frozen_encoder=True, attention="eager"),
    "bfloat16-eager-feature-cache": Variant("bfloat16", frozen_encoder=True, feature_cache=True, attention="eager"),
    "float32-fft-pos-conv": Variant("float32", pos_conv="fft"),
    "bfloat16-eager-fft-pos-conv": Variant("bfloat16", attention="eager", pos_conv="fft"),
}


def _step_fn(model: torch.nn.Module, spec: Variant, wave: torch.Tensor, labels: torch.Tensor):
    """A closure running one optimiser step of ``model`` as ``spec`` says."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    device = torch.device("cpu")
    forward = lambda: model(wave, labels=labels)  # noqa: E731
    if spec.feature_cache:
        with torch.no_grad():  # what FeatureCache holds for these utterances
            feats = model.base_model.feature_extractor(wave).transpose(1, 2).contiguous()
        n = torch.full((feats.shape[0],), feats.shape[1], dtype=torch.long)
        batch = FeatureBatch(feats, n, labels, list(range(feats.shape[0])), wave.numel())
        net = FeatureInputCTC(model).train()
        forward = lambda: net(batch)  # noqa: E731

    def step() -> float:
        with training_forward(model, device, spec.precision, spec.attention, spec.pos_conv):
            out = forward()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(out.loss.detach())

    return step


def _model(scale: str, variant: str, params: str) -> torch.nn.Module:
    """The benchmark model of ``scale`` built as ``variant`` says (same seed, same weights)."""
    spec = VARIANTS[variant]
    overrides = {} if spec.attention_dropout is None else {"attention_dropout": spec.attention_dropout}
    model = tiny_model(params, **overrides) if scale == "tiny" else base_model(**overrides)
    use_contiguous_conv_layers(model, enabled=spec.contiguous_conv)
    if spec.frozen_encoder:
        set_encoder_frozen(model, True)
    model.config.apply_spec_augment = False  # same work in every step
    return model.train()


def measure(scale: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Median step time per variant for one model scale."""
    models = {v: _model(scale, v, args.params) for v in args.variants}
    gen = torch.Generator().manual_seed(0)
    n_utts = max(1, round(args.batch_seconds / args.utt_seconds))
    wave = 0.1 * torch.randn(n_utts, int(args.utt_seconds * SAMPLE_RATE), generator=gen)
    vocab = models[args.variants[0]].config.vocab_size
    labels = torch.randint(1, vocab, (n_utts, int(args.utt_seconds * 8)), generator=gen)  # ~8 chars/s
    calls = {v: _step_fn(models[v], VARIANTS[v], wave, labels) for v in args.variants}
    times, last = round_robin(calls, args.repeats, args.warmup)
    median = {v: statistics.median(times[v]) for v in args.variants}
    seconds = n_utts * args.utt_seconds
    first = args.variants[0]
    return [{"scale": scale, "variant": v, "precision": VARIANTS[v].precision,
             "contiguous_conv": VARIANTS[v].contiguous_conv, "frozen_encoder": VARIANTS[v].frozen_encoder,
             "feature_cache": VARIANTS[v].feature_cache, "attention": VARIANTS[v].attention,
             "pos_conv": VARIANTS[v].pos_conv,
             "attention_dropout": float(models[v].config.attention_dropout), "batch_seconds": seconds,
             "median_ms": round(median[v], 1), "p90_ms": round(percentile_90(times[v]), 1),
             "speedup": round(median[first] / median[v], 3),
             "audio_seconds_per_second": round(seconds / (median[v] / 1000), 1),
             "last_loss": round(last[v], 4)} for v in args.variants]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--scales", nargs="+", default=["tiny"], choices=["tiny", "base"])
    ap.add_argument("--variants", nargs="+", default=["float32", "bfloat16"], choices=list(VARIANTS))
    ap.add_argument("--batch-seconds", type=float, default=20.0)
    ap.add_argument("--utt-seconds", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench/train_step.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = [r for scale in args.scales for r in measure(scale, args)]
    result = {"results": rows, **timing_record(args)}
    io.write_json(args.out, result)
    for r in rows:
        print(f"{r['scale']:5s} {r['variant']:36s} {r['median_ms']:8.1f} ms/step "
              f"({r['audio_seconds_per_second']} s of audio/s, x{r['speedup']})")
    return result


if __name__ == "__main__":
    main()
