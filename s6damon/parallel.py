"""Process pools for the data stages (feature extraction, alignment)."""

from __future__ import annotations

import multiprocessing as mp
import signal
from multiprocessing.pool import Pool


def _reset_signals() -> None:
    # Forked workers inherit the parent's signal handlers; an orchestrator's SIGTERM handler
    # (Prefect installs one) would turn the pool's normal shutdown into tracebacks.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def fork_pool(jobs: int) -> Pool:
    """A pool of ``jobs`` forked workers (they see the parent's memory without pickling)."""
    return mp.get_context("fork").Pool(jobs, initializer=_reset_signals)
