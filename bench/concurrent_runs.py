"""CPU benchmark of ``concurrent_runs``: the finetune stage's two runs one after the other on
all threads, against both at once, each in its own process on ``threads // 2`` threads.

Usage (in a project folder after ``dvc repro pretrain``)::

    python -m bench.concurrent_runs --steps 300 --out bench/concurrent_runs.json

The two runs are the finetune stage's: the pretrained model (``--init``) and the same model
from random init (``flows.finetune.scratch_recipe``), with the default recipe but ``--steps``
optimiser steps (warmup 10 %) and no dev evaluation. Every run trains in a process of its own
in both modes (:func:`s6damon.parallel.call_in_subprocess`), so both pay the same start-up.
``--order`` runs the modes in that sequence (``sequential concurrent concurrent sequential``
cancels a steady drift of a shared machine); ``speedup`` is the total wall time of the
sequential rounds over that of the concurrent ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.machine import cpu_info
from flows.finetune import scratch_recipe
from s6damon import io
from s6damon.config import load_params
from s6damon.parallel import call_in_subprocess
from tasks.concurrency import run_concurrently


def _train(init: str | None, m, p, train, out: Path, seed: int, threads: int) -> dict[str, Any]:
    """One finetune run (in the child process); its training metrics."""
    from s6damon.train.finetune import finetune

    return finetune(init, m, p, train, None, out / "model", out / "checkpoints", seed=seed, threads=threads)["metrics"]


def _round(mode: str, runs: list[dict[str, Any]], threads: int, work: Path) -> dict[str, Any]:
    """Train ``runs`` one after another on ``threads`` threads, or all at once sharing them."""
    jobs = len(runs) if mode == "concurrent" else 1
    per_run = max(1, threads // jobs)
    calls = [lambda r=r, i=i: call_in_subprocess(_train, r["init"], r["m"], r["p"], r["train"],
                                                 work / f"{mode}-{i}-{time.monotonic_ns()}", r["seed"], per_run)
             for i, r in enumerate(runs)]
    t0 = time.perf_counter()
    metrics = run_concurrently(calls, jobs)
    wall = time.perf_counter() - t0
    return {"mode": mode, "threads_per_run": per_run, "wall_seconds": round(wall, 1),
            "runs": [{"init": r["name"], "train_seconds": x["train_seconds"],
                      "final_train_loss": round(x["final_train_loss"], 4)} for r, x in zip(runs, metrics, strict=True)]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--manifest", default=None, help="default: <prepare.out_dir>/manifest.parquet")
    ap.add_argument("--init", default="models/pretrained")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--order", nargs="+", default=["sequential", "concurrent"], choices=["sequential", "concurrent"])
    ap.add_argument("--out", type=Path, default=Path("bench/concurrent_runs.json"))
    args = ap.parse_args(argv)
    params = load_params(args.params)
    manifest = args.manifest or Path(params.prepare.out_dir) / "manifest.parquet"
    df = io.read_parquet(manifest)
    train = df[df["split"] == "train"].reset_index(drop=True)
    p = dataclasses.replace(params.finetune, steps=args.steps, warmup_steps=max(1, args.steps // 10),
                            checkpoint_every=args.steps, progress=False)
    runs = [{"name": "pretrained", "init": args.init, "p": p},
            {"name": "scratch", "init": None, "p": scratch_recipe(p)}]
    for r in runs:
        r.update(m=params.model, train=train, seed=params.seed)
    work = Path(tempfile.mkdtemp(prefix="concurrent-runs-"))
    try:
        rounds = [_round(mode, runs, params.threads, work) for mode in args.order]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = {mode: sum(r["wall_seconds"] for r in rounds if r["mode"] == mode) for mode in set(args.order)}
    result = {"steps": args.steps, "threads": params.threads, "rounds": rounds,
              "speedup": round(total["sequential"] / total["concurrent"], 3)
              if {"sequential", "concurrent"} <= set(total) else None,
              "machine": {"torch": torch.__version__, **cpu_info()}}
    io.write_json(args.out, result)
    for r in rounds:
        print(f"{r['mode']:10s} {r['wall_seconds']:8.1f} s for {len(r['runs'])} runs of {args.steps} steps "
              f"({r['threads_per_run']} thread(s) each)")
    print(f"speedup of concurrent runs: x{result['speedup']}")
    return result


if __name__ == "__main__":
    main()
