"""Wall-time measurement of several models side by side.

Every latency this project reports (SALAD's encoder latency, the evaluate stage's RTF, the
benchmark) comes from :func:`round_robin`: repetition ``r`` of every call runs before
repetition ``r+1`` of any, in one process, so slow drifts of the machine (other load, CPU
frequency) hit all the compared models alike instead of whichever was timed last.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any


def percentile_90(values: list[float]) -> float:
    """90th percentile (nearest rank) of a non-empty list."""
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(0.9 * len(v)) - 1))]


def round_robin(calls: Mapping[Hashable, Callable[[], Any]], repeats: int,
                warmup: int = 2) -> tuple[dict[Hashable, list[float]], dict[Hashable, Any]]:
    """Time zero-argument calls round-robin.

    Args:
        calls: name -> the call to time (the caller fixes inputs and thread counts).
        repeats: timed rounds; each round calls every entry once.
        warmup: untimed rounds first (allocations, lazy initialisation).

    Returns:
        ``(times, last)``: name -> the ``repeats`` wall times in ms, and name -> the result of
        its last call (e.g. to read how many tokens were kept).

    Raises:
        ValueError: ``repeats`` < 1.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    last: dict[Hashable, Any] = {}
    for _ in range(warmup):
        for name, call in calls.items():
            last[name] = call()
    times: dict[Hashable, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            t0 = time.perf_counter()
            last[name] = call()
            times[name].append((time.perf_counter() - t0) * 1000.0)
    return times, last


def summary_ms(times: list[float]) -> dict[str, float]:
    """``{"median_ms", "p90_ms"}`` of a list of wall times."""
    return {"median_ms": statistics.median(times), "p90_ms": percentile_90(times)}
