"""CPU benchmark of the transformer's positional convolution: the direct grouped convolution
(oneDNN) against the same convolution through the FFT, forward + backward, in float32 and
under bfloat16 autocast.

What ``finetune.pos_conv: auto`` rests on (:func:`s6damon.hardware.training_pos_conv`,
:mod:`s6damon.model.fft_pos_conv`).

Usage::

    python -m bench.pos_conv --out bench/pos_conv.json
    python -m bench.pos_conv --repeats 1 --warmup 0 --shapes 2x50 --out /tmp/p.json   # smoke

Shapes are ``BxT`` (utterances x tokens). The module is the default model's positional conv
embedding (``params.yaml``'s ``model``: hidden size, kernel, groups; weight-normalised, then
the same-padding trim and GELU, as Hugging Face builds it). The two kernels run round-robin in
one process, so that drifts of a shared machine hit both alike.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import Wav2Vec2Config
from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2PositionalConvEmbedding

from bench.machine import timing_record
from bench.shapes import batch_by_tokens
from s6damon import io
from s6damon.config import load_params
from s6damon.model.fft_pos_conv import KERNELS, pos_conv_kernel
from s6damon.timing import round_robin


def _call(module: torch.nn.Module, x: torch.Tensor, kernel: str, dtype: str) -> Callable[[], None]:
    """One forward + backward of ``module`` with its convolution as ``kernel``."""
    leaf = x.detach().clone().requires_grad_()

    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"), pos_conv_kernel(module, kernel):
            out = module(leaf)
        out.float().sum().backward()

    return run


def measure(module: torch.nn.Module, batch: int, tokens: int, dtype: str, args: argparse.Namespace
            ) -> list[dict[str, Any]]:
    """Median forward + backward time of each kernel for one shape and dtype."""
    x = torch.randn(batch, tokens, module.conv.in_channels, generator=torch.Generator().manual_seed(0))
    times, _ = round_robin({k: _call(module, x, k, dtype) for k in KERNELS}, args.repeats, args.warmup)
    med = {k: statistics.median(t) for k, t in times.items()}
    return [{"batch": batch, "tokens": tokens, "dtype": dtype, "kernel": k, "median_ms": round(med[k], 2),
             "speedup_over_conv": round(med["conv"] / med[k], 3)} for k in KERNELS]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--shapes", nargs="+", type=batch_by_tokens, default=[(7, 149), (2, 500), (1, 1500)],
                    help="BxT per measurement")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/pos_conv.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    m = load_params(args.params).model
    torch.manual_seed(0)
    module = Wav2Vec2PositionalConvEmbedding(Wav2Vec2Config(
        hidden_size=m.hidden_size, num_conv_pos_embeddings=m.conv_pos_kernel,
        num_conv_pos_embedding_groups=m.conv_pos_groups)).train()
    rows = [r for b, t in args.shapes for d in args.dtypes for r in measure(module, b, t, d, args)]
    result = {"results": rows, "hidden_size": m.hidden_size, "kernel_size": m.conv_pos_kernel,
              "groups": m.conv_pos_groups, **timing_record(args)}
    io.write_json(args.out, result)
    for r in rows:
        print(f"{r['batch']}x{r['tokens']:<5d} {r['dtype']:9s} {r['kernel']:5s} {r['median_ms']:8.2f} ms "
              f"(x{r['speedup_over_conv']} vs conv)")
    return result


if __name__ == "__main__":
    main()
