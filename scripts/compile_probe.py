"""Probe ``torch.compile`` on the finetune step: step times over batches of varying length.

The finetune loop's batches differ in length from step to step, which a fixed-shape benchmark
(``bench/train_step.py``) cannot show: a compiled graph may recompile for new lengths. This
runs the default model's training step (bfloat16 autocast, eager attention, FFT positional
conv, as ``finetune`` runs it on a CPU with native bfloat16) on random batches of four
utterances of 2.5–7.5 s and prints each step's time, then the median of the last ``--tail``.
Run it once per mode, side by side, so both see the same machine (docs/experiments/recipe.md,
"torch.compile")::

    .venv/bin/python scripts/compile_probe.py eager & .venv/bin/python scripts/compile_probe.py compile
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.models import tiny_model  # noqa: E402
from s6damon.model.frames import SAMPLE_RATE  # noqa: E402
from s6damon.train.precision import training_forward  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["eager", "compile"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--tail", type=int, default=20, help="steps the median is taken over (the last ones)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = tiny_model(args.params).train()  # the pipeline's model as built (contiguous conv layers)
    model.config.apply_spec_augment = False  # the same work in every step
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    net = torch.compile(model, dynamic=True) if args.mode == "compile" else model
    gen = torch.Generator().manual_seed(0)
    times = []
    for i in range(args.steps):
        lengths = torch.randint(int(2.5 * SAMPLE_RATE), int(7.5 * SAMPLE_RATE), (4,), generator=gen)
        mask = (torch.arange(int(lengths.max()))[None] < lengths[:, None]).long()
        wave = 0.1 * torch.randn(mask.shape, generator=gen) * mask
        labels = torch.randint(1, model.config.vocab_size, (4, 40), generator=gen)
        t0 = time.perf_counter()
        with training_forward(model, torch.device("cpu"), "bfloat16", "eager", "fft"):
            out = net(wave, attention_mask=mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        print(f"step {i}: {times[-1]:.3f} s, {wave.shape[1]} samples", flush=True)
    print(f"{args.mode}: median of the last {args.tail} steps {statistics.median(times[-args.tail:]):.4f} s")


if __name__ == "__main__":
    main()
