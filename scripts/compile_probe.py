"""Probe ``torch.compile`` on the finetune step: step times over batches of varying length.

The finetune loop's batches differ in length from step to step, which a fixed-shape benchmark
(``bench/train_step.py``) cannot show: a compiled graph may recompile for new lengths. This
trains two copies of the default model (same weights) in one process, the step as ``finetune``
runs it on a CPU with native bfloat16 (bfloat16 autocast, eager attention, FFT positional conv),
on random batches of four utterances of 2.5–7.5 s: one copy eager, the other compiled — the
whole model (``compile``) or each conv encoder layer and transformer layer on its own
(``compile-blocks``; the positional convolution stays eager). The two take turns on the same
batch, so drifts of a shared machine hit both alike; compile times show as the compiled copy's
first steps. Prints each step's times, then the medians over the last ``--tail`` steps
(docs/experiments/recipe.md, "torch.compile")::

    .venv/bin/python scripts/compile_probe.py compile
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.models import tiny_model  # noqa: E402
from s6damon.model.frames import SAMPLE_RATE  # noqa: E402
from s6damon.train.precision import training_forward  # noqa: E402


def _stepper(model: torch.nn.Module, net: torch.nn.Module):
    """One optimiser step of ``model`` through ``net`` (the model or its compiled form); returns seconds."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step(wave: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> float:
        t0 = time.perf_counter()
        with training_forward(model, torch.device("cpu"), "bfloat16", "eager", "fft"):
            out = net(wave, attention_mask=mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["compile", "compile-blocks"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--tail", type=int, default=20, help="steps the medians are taken over (the last ones)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    eager = tiny_model(args.params).train()  # the pipeline's model as built (contiguous conv layers)
    eager.config.apply_spec_augment = False  # the same work in every step
    compiled = copy.deepcopy(eager)
    if args.mode == "compile":
        net = torch.compile(compiled, dynamic=True)
    else:
        net = compiled
        base = compiled.base_model
        for block in [*base.feature_extractor.conv_layers, *base.encoder.layers]:
            block.compile(dynamic=True)
    steps = {"eager": _stepper(eager, eager), args.mode: _stepper(compiled, net)}
    times: dict[str, list[float]] = {name: [] for name in steps}
    gen = torch.Generator().manual_seed(0)
    for i in range(args.steps):
        lengths = torch.randint(int(2.5 * SAMPLE_RATE), int(7.5 * SAMPLE_RATE), (4,), generator=gen)
        mask = (torch.arange(int(lengths.max()))[None] < lengths[:, None]).long()
        wave = 0.1 * torch.randn(mask.shape, generator=gen) * mask
        labels = torch.randint(1, eager.config.vocab_size, (4, 40), generator=gen)
        order = list(steps) if i % 2 == 0 else list(reversed(steps))
        for name in order:
            times[name].append(steps[name](wave, mask, labels))
        print(f"step {i}: {wave.shape[1]} samples, " + ", ".join(f"{n} {t[-1]:.3f} s" for n, t in times.items()),
              flush=True)
    print(", ".join(f"{n}: median of the last {args.tail} steps {statistics.median(t[-args.tail:]):.4f} s, "
                    f"all {sum(t):.1f} s" for n, t in times.items()))


if __name__ == "__main__":
    main()
