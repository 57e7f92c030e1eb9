"""Training runs in processes of their own, several at once (s6damon.parallel, tasks.concurrency)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from prefect import flow, task

from s6damon.errors import InputError
from s6damon.parallel import call_in_subprocess, process_alive
from tasks.caching import content_cache
from tasks.concurrency import effective_jobs, run_concurrently, threads_per_run

REPO = Path(__file__).resolve().parent.parent


def _pid_and_double(x: int) -> tuple[int, int]:
    return os.getpid(), 2 * x


def _bad_file(path: str) -> None:
    raise InputError(f"{path}: unreadable audio")


def test_call_in_subprocess_returns_the_childs_result():
    pid, value = call_in_subprocess(_pid_and_double, 21)
    assert value == 42 and pid != os.getpid()


def test_call_in_subprocess_raises_the_childs_error_with_its_message():
    with pytest.raises(InputError, match="a.wav: unreadable audio"):
        call_in_subprocess(_bad_file, "a.wav")


def test_training_subprocess_dies_with_a_killed_flow(tmp_path):
    """SIGKILL the parent: its child must go too, or it would keep writing checkpoints."""
    pidfile = tmp_path / "child.pid"
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(REPO)!r})
        from s6damon.parallel import call_in_subprocess
        from tests.test_concurrency import _write_pid_and_sleep
        if __name__ == "__main__":
            call_in_subprocess(_write_pid_and_sleep, {str(pidfile)!r})
    """)
    (tmp_path / "parent.py").write_text(script)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")])
    deadline = time.time() + 120
    while not pidfile.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert pidfile.exists(), "the child never started"
    child = int(pidfile.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        if not process_alive(child):
            break
        time.sleep(0.1)
    assert not process_alive(child), "the training subprocess outlived its killed parent"


def _write_pid_and_sleep(path: str) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)


def test_run_concurrently_keeps_order_and_the_limit():
    lock, running, peak = threading.Lock(), [0], [0]

    def call(i: int):
        def run() -> int:
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1
            return i
        return run

    assert run_concurrently([call(i) for i in range(6)], 2) == list(range(6))
    assert peak[0] == 2
    peak[0] = 0
    assert run_concurrently([call(i) for i in range(3)], 1) == [0, 1, 2]
    assert peak[0] == 1


def test_a_failing_run_is_raised_and_later_runs_do_not_start():
    started: list[int] = []

    def call(i: int):
        def run() -> int:
            started.append(i)
            if i == 0:
                raise ValueError("run 0 failed")
            time.sleep(0.2)
            return i
        return run

    with pytest.raises(ValueError, match="run 0 failed"):
        run_concurrently([call(i) for i in range(6)], 2)
    assert len(started) < 6


def test_one_run_at_a_time_under_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert effective_jobs(2) == 1 and threads_per_run(2, 2) == 2
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert effective_jobs(2) == 2 and threads_per_run(2, 2) == 1 and threads_per_run(3, 2) == 1


CALLS: list[int] = []


@task(cache_policy=content_cache("tasks/concurrency.py"), persist_result=True)
def _square_in_child(x: int, salt: str) -> tuple[int, int]:
    CALLS.append(x)
    pid, double = call_in_subprocess(_pid_and_double, x)
    return pid, double * x // 2


@flow
def _squares(n: int, salt: str) -> list[tuple[int, int]]:
    return run_concurrently([lambda i=i: _square_in_child(i, salt) for i in range(n)], 2)


def test_runs_inside_a_flow_are_cached_task_runs(prefect_server):
    salt = str(time.time())
    first = _squares(4, salt)
    assert [v for _, v in first] == [0, 1, 4, 9]
    assert len({pid for pid, _ in first}) == 4 and os.getpid() not in {pid for pid, _ in first}
    CALLS.clear()
    assert _squares(4, salt) == first  # every run comes from the task cache
    assert CALLS == []


def test_concurrent_runs_benchmark_writes_both_modes(tiny_spine, tmp_path, monkeypatch):
    """bench.concurrent_runs on the tiny spine: both modes, both runs, a speedup."""
    import json

    from bench.concurrent_runs import main

    root, _ = tiny_spine
    monkeypatch.chdir(root)
    out = tmp_path / "concurrent_runs.json"
    main(["--steps", "2", "--out", str(out)])
    result = json.loads(out.read_text())
    assert [r["mode"] for r in result["rounds"]] == ["sequential", "concurrent"]
    assert [r["threads_per_run"] for r in result["rounds"]] == [2, 1]
    assert all([x["init"] for x in r["runs"]] == ["pretrained", "scratch"] for r in result["rounds"])
    assert result["speedup"] > 0
