"""The one latency timer: round-robin order, warmup, and its summary."""

from __future__ import annotations

import pytest

from s6damon.timing import percentile_90, round_robin, summary_ms


def test_round_robin_interleaves_calls_and_keeps_last_results():
    order: list[str] = []

    def call(name: str):
        def run():
            order.append(name)
            return len(order)
        return run

    times, last = round_robin({"a": call("a"), "b": call("b")}, repeats=3, warmup=1)
    assert order == ["a", "b"] * 4  # one warmup round, then three timed rounds, never a-a-a
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert all(t >= 0.0 for v in times.values() for t in v)
    assert last == {"a": 7, "b": 8}
    with pytest.raises(ValueError, match="repeats"):
        round_robin({"a": call("a")}, repeats=0)


def test_percentiles_use_nearest_rank():
    values = [float(v) for v in range(1, 11)]
    assert percentile_90(values) == 9.0
    assert percentile_90([5.0]) == 5.0
    assert summary_ms([3.0, 1.0, 2.0]) == {"median_ms": 2.0, "p90_ms": 3.0}
