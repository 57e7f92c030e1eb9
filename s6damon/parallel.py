"""Process pools for the data stages (feature extraction, alignment), and training runs in
processes of their own so that independent runs of one stage can share the machine."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any, TypeVar

R = TypeVar("R")


def _reset_signals() -> None:
    # Forked workers inherit the parent's signal handlers; an orchestrator's SIGTERM handler
    # (Prefect installs one) would turn the pool's normal shutdown into tracebacks.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def fork_pool(jobs: int) -> Pool:
    """A pool of ``jobs`` forked workers (they see the parent's memory without pickling)."""
    return mp.get_context("fork").Pool(jobs, initializer=_reset_signals)


#: Imported once by the fork server, so a training subprocess starts in milliseconds instead of
#: importing torch and transformers anew (~5 s of CPU each; a stage may start dozens of runs).
PRELOAD = ("__main__", "torch", "transformers", "s6damon.train.finetune", "s6damon.salad.methods",
           "s6damon.safari.methods")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a killed process not yet reaped, a zombie, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no procfs: trust kill()
    return state not in ("Z", "X")


def _die_with_parent(parent: int, poll_seconds: float = 0.5) -> None:
    """Initializer of a training subprocess: it must not outlive the flow that started it.

    A flow killed with SIGKILL cannot stop its children, and an orphaned training run would go
    on writing checkpoints into the folder the re-run resumes from. The child's parent
    process is the fork server, not the flow (and the server stays up while a child holds its
    liveness pipe), so a daemon thread watches the flow's pid and ends the child when it is gone.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides

    def watch() -> None:
        while process_alive(parent):
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def _context() -> mp.context.BaseContext:
    """Fork-server processes: forked from a clean single-threaded server that has imported
    :data:`PRELOAD` (forking the flow itself would copy its threads' locks mid-use);
    spawned interpreters where there is no fork server."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))  # takes effect when the server starts (first call)
    return ctx


def call_in_subprocess(fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
    """Run ``fn(*args, **kwargs)`` in a process of its own and return its result.

    Two training runs of a small model, each in its own process on one thread, get more done
    on a 2-core CPU than the same runs one after the other on two threads (PyTorch's
    intra-op parallelism pays little on small matrices, and data loading runs on one core);
    threads of one process would share the global RNG and the GIL. ``fn``, its arguments
    and its result must pickle; an exception raised by ``fn`` is raised here (with the
    child's traceback as its cause). The child dies with this process (:func:`_die_with_parent`).

    Raises:
        RuntimeError: the child died without a result (killed, out of memory).
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=_context(), initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        try:
            return pool.submit(fn, *args, **kwargs).result()
        except BrokenProcessPool as err:
            name = getattr(fn, "__qualname__", repr(fn))
            raise RuntimeError(f"{name}: its process died before returning (killed, or out of memory)") from err
