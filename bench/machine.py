"""The CPU a benchmark ran on, and the settings of its timing loop, for its JSON."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from s6damon.hardware import cpu_model, cpu_native_bf16


def cpu_info() -> dict[str, Any]:
    """``{"cpu": model name, "cpu_bf16": native bfloat16 dot products (AVX512-BF16 or AMX)}``.

    ``cpu_bf16`` is None where ``/proc/cpuinfo`` does not exist (not Linux).
    """
    return {"cpu": cpu_model(), "cpu_bf16": cpu_native_bf16()}


def timing_record(args: argparse.Namespace) -> dict[str, Any]:
    """What a round-robin kernel benchmark records beside its rows: the machine (threads,
    torch, CPU) and its ``repeats`` and ``warmup``."""
    return {"machine": {"threads": args.threads, "torch": torch.__version__, **cpu_info()},
            "repeats": args.repeats, "warmup": args.warmup}
