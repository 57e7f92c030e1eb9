"""CPU benchmark of one CTC training step: float32 against bfloat16 autocast.

Usage::

    python -m bench.train_step --out bench/train_step.json
    python -m bench.train_step --repeats 1 --warmup 0 --batch-seconds 2 --out /tmp/t.json   # smoke

One step is what ``finetune`` does per batch (``finetune.precision`` picks the autocast):
forward with the CTC loss, backward, gradient clipping and an AdamW update, on a batch of
``--batch-seconds`` of noise cut into ``--utt-seconds`` utterances with random transcripts.
Models: the default profile's model shape (``params.yaml``'s ``model``, random weights; the
speed of a step does not depend on the weights) and, with ``--scales tiny base``, the
wav2vec2-base architecture. The precisions run round-robin in one process so that drifts of
a shared machine hit both alike; each model gets its own optimiser state per precision.
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
from s6damon.timing import percentile_90, round_robin
from s6damon.train.finetune import autocast

SAMPLE_RATE = 16000
PRECISIONS = ("float32", "bfloat16")


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


def measure(scale: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Median step time per precision for one model scale."""
    model = (tiny_model(args.params) if scale == "tiny" else base_model()).train()
    model.config.apply_spec_augment = False  # same work in every step
    gen = torch.Generator().manual_seed(0)
    n_utts = max(1, round(args.batch_seconds / args.utt_seconds))
    wave = 0.1 * torch.randn(n_utts, int(args.utt_seconds * SAMPLE_RATE), generator=gen)
    vocab = model.config.vocab_size
    labels = torch.randint(1, vocab, (n_utts, int(args.utt_seconds * 8)), generator=gen)  # ~8 chars/s
    calls = {p: _step_fn(model, p, wave, labels) for p in PRECISIONS}
    times, last = round_robin(calls, args.repeats, args.warmup)
    median = {p: statistics.median(times[p]) for p in PRECISIONS}
    seconds = n_utts * args.utt_seconds
    return [{"scale": scale, "precision": p, "batch_seconds": seconds,
             "median_ms": round(median[p], 1), "p90_ms": round(percentile_90(times[p]), 1),
             "speedup": round(median["float32"] / median[p], 3),
             "audio_seconds_per_second": round(seconds / (median[p] / 1000), 1),
             "last_loss": round(last[p], 4)} for p in PRECISIONS]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--scales", nargs="+", default=["tiny"], choices=["tiny", "base"])
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
        print(f"{r['scale']:5s} {r['precision']:8s} {r['median_ms']:8.1f} ms/step "
              f"({r['audio_seconds_per_second']} s of audio/s, x{r['speedup']})")
    return result


if __name__ == "__main__":
    main()
