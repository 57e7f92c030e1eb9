"""The CPU a benchmark ran on, for its JSON."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any


def cpu_info() -> dict[str, Any]:
    """``{"cpu": model name, "cpu_bf16": native bfloat16 dot products (AVX512-BF16 or AMX)}``.

    ``cpu_bf16`` is None where ``/proc/cpuinfo`` does not exist (not Linux).
    """
    path = Path("/proc/cpuinfo")
    info = path.read_text() if path.exists() else ""
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")),
                platform.processor())
    return {"cpu": name, "cpu_bf16": ("avx512_bf16" in info or "amx_bf16" in info) if info else None}
