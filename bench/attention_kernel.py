"""CPU benchmark of one attention layer's kernel: PyTorch's fused scaled-dot-product attention
against the eager form (matmul, softmax, matmul), forward + backward, in float32 and bfloat16.

What ``finetune.attention: auto`` rests on (:func:`s6damon.hardware.training_attention`).

Usage::

    python -m bench.attention_kernel --out bench/attention_kernel.json
    python -m bench.attention_kernel --repeats 1 --warmup 0 --shapes 2x50 --out /tmp/a.json   # smoke

Shapes are ``BxT`` (utterances x tokens); the default model's 4 heads of 64 (``--heads``,
``--head-dim``). The kernels run round-robin in one process, so that drifts of a shared machine
hit both alike.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from bench.machine import timing_record
from bench.shapes import batch_by_tokens
from s6damon import io
from s6damon.timing import round_robin

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v)


def _eager(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return ((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5).softmax(-1) @ v


KERNELS: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {"sdpa": _sdpa, "eager": _eager}


def _call(kernel: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Callable[[], None]:
    """One forward + backward of ``kernel`` on fresh leaf copies of ``q, k, v``."""
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]

    def run() -> None:
        kernel(*leaves).float().sum().backward()

    return run


def measure(batch: int, tokens: int, dtype: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Median forward + backward time of each kernel for one shape and dtype."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(batch, args.heads, tokens, args.head_dim, generator=gen).to(DTYPES[dtype])
               for _ in range(3))
    times, _ = round_robin({name: _call(fn, q, k, v) for name, fn in KERNELS.items()}, args.repeats, args.warmup)
    med = {name: statistics.median(t) for name, t in times.items()}
    return [{"batch": batch, "tokens": tokens, "dtype": dtype, "kernel": name, "median_ms": round(med[name], 2),
             "speedup_over_sdpa": round(med["sdpa"] / med[name], 3)} for name in KERNELS]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", type=batch_by_tokens, default=[(6, 164), (2, 500), (1, 1500)],
                    help="BxT per measurement")
    ap.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/attention_kernel.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [r for b, t in args.shapes for d in args.dtypes for r in measure(b, t, d, args)]
    result = {"results": rows, "heads": args.heads, "head_dim": args.head_dim, **timing_record(args)}
    io.write_json(args.out, result)
    for r in rows:
        print(f"{r['batch']}x{r['tokens']:<5d} {r['dtype']:9s} {r['kernel']:6s} {r['median_ms']:8.2f} ms "
              f"(x{r['speedup_over_sdpa']} vs sdpa)")
    return result


if __name__ == "__main__":
    main()
