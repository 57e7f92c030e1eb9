"""CPU benchmark: dense vs. compressed models, eager vs. TorchScript vs. ONNX Runtime.

Usage::

    python -m bench.run --out bench/results.json --report bench/report.md
    python -m bench.run --scales tiny --repeats 1 --seconds 2 --out /tmp/r.json --report /tmp/r.md   # smoke

For each scale (``tiny``: the default profile's model; ``base``: the wav2vec2-base
architecture, random weights) every model of :func:`bench.models.build` runs in every
runtime, on 1 and 2 threads, in this one process: per thread count, the repetitions go
round-robin (repetition ``r`` of every model and runtime before ``r+1``) so that drifts of a
shared machine hit all rows alike. Input: ``--seconds`` of noise at 16 kHz, batch 1 (what
the FLOPs are counted for). Writes ``--out`` (JSON, keys in the README) and ``--report``
(Markdown: measured speedup beside the FLOP ratio).
"""

from __future__ import annotations

import argparse
import io as _io
import os
import platform
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.machine import cpu_info
from bench.models import BenchModel, base_model, build, tiny_model
from bench.report import render
from s6damon import io
from s6damon.config import load_params
from s6damon.export.quantize import quantize_onnx, quantize_torch
from s6damon.export.runtimes import OnnxRunner, TorchRunner, to_onnx, trace
from s6damon.model.frames import SAMPLE_RATE
from s6damon.timing import percentile_90, round_robin

RUNTIMES = ("eager", "torchscript", "onnxruntime")


def rss_mb() -> float:
    """Resident memory of this process in MiB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_during(fn) -> float:
    """Peak RSS increase (MiB) while ``fn()`` runs, sampled every 0.5 ms by a thread."""
    before = rss_mb()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.0005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        fn()
    finally:
        done.set()
        t.join()
    return max(peak[0], rss_mb()) - before


@dataclass
class Cell:
    """One (model, runtime) pair: how to run it per thread count and its weight size."""

    model: BenchModel
    runtime: str
    make: Any  # threads -> runner
    weights_mb: float
    runners: dict[int, Any]
    cold_mb: dict[int, float]


def _torch_weights_mb(module: torch.nn.Module) -> float:
    buf = _io.BytesIO()
    torch.jit.save(module, buf)
    return buf.tell() / 2**20


def make_cells(models: list[BenchModel], tmp: Path) -> list[Cell]:
    """Build every (model, runtime) runner: trace, export and quantise."""
    cells = []
    for m in models:
        eager = quantize_torch(m.graph) if m.int8 else m.graph
        ts = trace(eager)
        onnx_path = to_onnx(m.graph, tmp / f"{m.name}.onnx".replace("+", "_"))
        if m.int8:
            onnx_path = quantize_onnx(onnx_path, onnx_path.with_suffix(".int8.onnx"))
        ts_mb = _torch_weights_mb(ts)
        cells += [
            Cell(m, "eager", lambda t, e=eager: TorchRunner(e), ts_mb, {}, {}),
            Cell(m, "torchscript", lambda t, s=ts: TorchRunner(s), ts_mb, {}, {}),
            Cell(m, "onnxruntime", lambda t, p=onnx_path: OnnxRunner(p, threads=t),
                 onnx_path.stat().st_size / 2**20, {}, {}),
        ]
    return cells


def measure(cells: list[Cell], wave: np.ndarray, threads: int, repeats: int, warmup: int) -> dict[tuple[str, str], list[float]]:
    """Per (model, runtime): ``repeats`` wall times in ms on ``threads`` threads, round-robin."""
    torch.set_num_threads(threads)
    x, n = wave[None].astype(np.float32), np.array([len(wave)], dtype=np.int64)
    for c in cells:
        # torch modules serve every thread count; ONNX Runtime fixes threads per session
        key = threads if c.runtime == "onnxruntime" else 0
        if key not in c.runners:
            c.runners[key] = c.make(threads)
            c.cold_mb[key] = peak_during(lambda r=c.runners[key]: r(x, n))
        c.runners[threads] = c.runners[key]
        c.cold_mb[threads] = c.cold_mb[key]
    times, _ = round_robin({(c.model.name, c.runtime): (lambda r=c.runners[threads]: r(x, n)) for c in cells},
                           repeats, warmup)
    return times


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    """Where and how the benchmark ran."""
    import onnxruntime

    return {"cpu": cpu_info()["cpu"], "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "load_average_at_start": list(os.getloadavg()), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "input_seconds": args.seconds, "repeats": args.repeats, "warmup": args.warmup, "batch": 1}


def run_scale(scale: str, args: argparse.Namespace, notes: list[str]) -> tuple[list[dict], list[BenchModel]]:
    """Rows of one scale."""
    model = base_model(args.seed) if scale == "base" else tiny_model(args.params, args.tiny_model, args.seed)
    rng = np.random.default_rng(args.seed)
    wave = rng.standard_normal(round(args.seconds * SAMPLE_RATE)).astype(np.float32)
    wave = (wave - wave.mean()) / wave.std()
    dists = dict(d.split("=", 1) for d in args.distribution)
    scale_notes: list[str] = []
    salad = load_params(args.params).salad
    models = build(model, torch.from_numpy(wave)[None], args.seconds, distributions=dists, seed=args.seed,
                   notes=scale_notes, drop_rule=salad.detector.drop_rule, merge=salad.merge_dropped)
    notes += [f"{scale}: {n}" for n in scale_notes]
    rows = []
    with tempfile.TemporaryDirectory(prefix="s6bench-") as tmp:
        cells = make_cells(models, Path(tmp))
        for threads in args.threads:
            times = measure(cells, wave, threads, args.repeats, args.warmup)
            for c in cells:
                t = times[(c.model.name, c.runtime)]
                med = statistics.median(t)
                rows.append({"model": c.model.name, "scale": scale, "runtime": c.runtime, "threads": threads,
                             "params": c.model.params, "gflops": round(c.model.gflops, 4),
                             "latency_ms_median": round(med, 3), "latency_ms_p90": round(percentile_90(t), 3),
                             "rtf": round(med / 1000.0 / args.seconds, 5),
                             "peak_mem_mb": round(c.weights_mb + c.cold_mb[threads], 1)})
            print(f"[bench] {scale} threads={threads}: {len(cells)} cells x {args.repeats} repeats done", flush=True)
    return rows, models


def main(argv: list[str] | None = None) -> None:
    """Command-line entry."""
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.strip().splitlines()[0])
    ap.add_argument("--out", default="bench/results.json")
    ap.add_argument("--report", default="bench/report.md")
    ap.add_argument("--scales", nargs="+", default=["tiny", "base"], choices=["tiny", "base"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0, help="input length (FLOPs are counted for it)")
    ap.add_argument("--params", default="params.yaml",
                    help="params file giving the tiny model's shape and SALAD's drop rule and merging")
    ap.add_argument("--tiny-model", default="", help="a trained tiny model folder (default: random weights)")
    ap.add_argument("--distribution", action="append", default=[],
                    help="NAME=PATH: per-layer kept shares (or a SAFARI mask.json) for safari50/safari70")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for d in args.distribution:
        if "=" not in d or d.split("=", 1)[0] not in ("safari50", "safari70"):
            ap.error(f"--distribution {d!r}: expected safari50=PATH or safari70=PATH")
    torch.manual_seed(args.seed)
    notes: list[str] = []
    rows, extras = [], {}
    for scale in args.scales:
        scale_rows, models = run_scale(scale, args, notes)
        rows += scale_rows
        extras[scale] = {m.name: {"keep_ratio": m.keep_ratio, "conv_share": m.conv_share} for m in models}
    salad = load_params(args.params).salad
    results = {"machine": machine_info(args), "rows": rows,
               "salad": {"drop_rule": salad.detector.drop_rule, "merge_dropped": salad.merge_dropped}}
    io.write_json(args.out, results)
    io.write_text(args.report, render(results, extras, notes))
    print(f"[bench] wrote {args.out} and {args.report}")


if __name__ == "__main__":
    main()
