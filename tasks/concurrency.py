"""Independent training runs of one stage, several at once.

A stage's runs (the finetuned model and its from-scratch control; SALAD's methods and
ratios; SAFARI's methods and levels) do not depend on each other's results, and each runs
its training in a process of its own (:func:`s6damon.parallel.call_in_subprocess`). Here
the flow starts up to ``concurrent_runs`` of them at once, each from a thread of the flow's
process, so every Prefect call (cache lookup, result persistence, run states) stays in the
flow with its context, and a run's cached result is reused exactly as before.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from typing import Any, TypeVar

from s6damon.parallel import call_in_subprocess

R = TypeVar("R")


def effective_jobs(concurrent_runs: int) -> int:
    """Runs at once: ``concurrent_runs``, but one under ``torchrun``.

    Every rank of a distributed job already takes part in one run; two runs per rank would
    each try to join the same process group.
    """
    return 1 if int(os.environ.get("WORLD_SIZE", "1")) > 1 else max(1, concurrent_runs)


def isolate_runs(concurrent_runs: int) -> bool:
    """Whether each run trains in a process of its own: only when runs share the machine (one
    run at a time gains nothing from it, and a fresh process pays its start-up and its
    kernels' warm-up again)."""
    return effective_jobs(concurrent_runs) > 1


def call_run(fn: Callable[..., R], /, *args: Any, isolate: bool, **kwargs: Any) -> R:
    """``fn(*args, **kwargs)``: in a process of its own when ``isolate``, else in this one."""
    return call_in_subprocess(fn, *args, **kwargs) if isolate else fn(*args, **kwargs)


def threads_per_run(threads: int, concurrent_runs: int) -> int:
    """Torch threads each run gets so that the runs together use ``threads``."""
    return max(1, threads // effective_jobs(concurrent_runs))


def run_concurrently(calls: Sequence[Callable[[], R]], concurrent_runs: int) -> list[R]:
    """Call every function of ``calls`` (each runs Prefect tasks), at most ``concurrent_runs``
    at once; return their results in order.

    A call that fails re-raises here once the calls already running have finished (their
    results are cached tasks, so a re-run does not repeat them); calls not yet started
    are cancelled.
    """
    jobs = effective_jobs(concurrent_runs)
    if jobs == 1 or len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=min(jobs, len(calls)), thread_name_prefix="run") as pool:
        # copy_context: the task calls in each thread must see the flow run's context
        futures = [pool.submit(copy_context().run, call) for call in calls]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
