"""The CPU a benchmark ran on, for its JSON."""

from __future__ import annotations

from typing import Any

from s6damon.hardware import cpu_model, cpu_native_bf16


def cpu_info() -> dict[str, Any]:
    """``{"cpu": model name, "cpu_bf16": native bfloat16 dot products (AVX512-BF16 or AMX)}``.

    ``cpu_bf16`` is None where ``/proc/cpuinfo`` does not exist (not Linux).
    """
    return {"cpu": cpu_model(), "cpu_bf16": cpu_native_bf16()}
