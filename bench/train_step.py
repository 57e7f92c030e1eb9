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
attention off PyTorch's fused CPU kernel), and both (the model as built before either change). The variants run round-robin in one process so that
drifts of a shared machine hit all alike; each has its own model (same initial weights) and
optimiser state. ``speedup`` is relative to the first variant listed.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import torch

from bench.machine import cpu_info
from bench.models import base_model, tiny_model
from s6damon import io
from s6damon.model.contiguous_conv import use_contiguous_conv_layers
from s6damon.timing import percentile_90, round_robin
from s6damon.train.finetune import autocast

SAMPLE_RATE = 16000
#: variant name -> (precision, contiguous conv layers, attention dropout or None = the model's)
VARIANTS: dict[str, tuple[str, bool, float | None]] = {
    "float32": ("float32", True, None),
    "bfloat16": ("bfloat16", True, None),
    "float32-stock-conv": ("float32", False, None),
    "float32-attention-dropout": ("float32", True, 0.1),
    "float32-stock-conv-attention-dropout": ("float32", False, 0.1),  # the model before both changes
}


def _step_fn(model: torch.nn.Module, precision: str, wave: torch.Tensor, labels: torch.Tensor):
    """A closure running one optimiser step of ``model`` in ``precision``."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    device = torch.device("cpu")

    def step() -> float:
        with autocast(device, precision):
            out = model(wave, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(out.loss.detach())

    return step


def _model(scale: str, variant: str, params: str) -> torch.nn.Module:
    """The benchmark model of ``scale`` built as ``variant`` says (same seed, same weights)."""
    _, contiguous, attention_dropout = VARIANTS[variant]
    overrides = {} if attention_dropout is None else {"attention_dropout": attention_dropout}
    model = tiny_model(params, **overrides) if scale == "tiny" else base_model(**overrides)
    use_contiguous_conv_layers(model, enabled=contiguous)
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
    calls = {v: _step_fn(models[v], VARIANTS[v][0], wave, labels) for v in args.variants}
    times, last = round_robin(calls, args.repeats, args.warmup)
    median = {v: statistics.median(times[v]) for v in args.variants}
    seconds = n_utts * args.utt_seconds
    first = args.variants[0]
    return [{"scale": scale, "variant": v, "precision": VARIANTS[v][0],
             "contiguous_conv": VARIANTS[v][1],
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
    result = {"results": rows,
              "machine": {"threads": args.threads, "torch": torch.__version__, **cpu_info()},
              "repeats": args.repeats, "warmup": args.warmup}
    io.write_json(args.out, result)
    for r in rows:
        print(f"{r['scale']:5s} {r['variant']:36s} {r['median_ms']:8.1f} ms/step "
              f"({r['audio_seconds_per_second']} s of audio/s, x{r['speedup']})")
    return result


if __name__ == "__main__":
    main()
