"""flows.server: one Prefect server for a whole command (scripts/run.sh's ``dvc repro``)."""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager

import pytest

from flows import server

# prints the API URL the command sees and whether that server answers while the command runs
PROBE = ("import os, sys; from flows.server import healthy; url = os.environ.get('PREFECT_API_URL'); "
         "print(url, healthy(url) if url else None); sys.exit(int(sys.argv[1]))")


@pytest.fixture
def own_home(tmp_path, monkeypatch):
    """No user server, and a Prefect home of the test's own (the server's database and log)."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    return tmp_path / "prefect"


def test_command_runs_against_one_server_stopped_afterwards(own_home, capfd):
    assert server.run([sys.executable, "-c", PROBE, "3"]) == 3  # the command's exit status
    url, up = capfd.readouterr().out.split()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/api")
    assert up == "True"
    assert not server.healthy(url)  # stopped with the command
    assert (own_home / "server.log").is_file()


def test_users_server_is_used_as_it_is(own_home, monkeypatch, capfd):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # nothing listens there
    assert server.run([sys.executable, "-c", PROBE, "0"]) == 0
    assert capfd.readouterr().out.split() == ["http://127.0.0.1:9/api", "False"]
    assert not own_home.exists()  # no server of ours was started


def test_server_that_does_not_come_up_leaves_the_stages_their_own(own_home, monkeypatch, capfd):
    @contextmanager
    def no_server():
        yield None

    monkeypatch.setattr(server, "shared_server", no_server)
    assert server.run([sys.executable, "-c", PROBE, "0"]) == 0
    out, err = capfd.readouterr()
    assert out.split() == ["None", "None"]
    assert "did not start" in err and "server.log" in err


def test_startup_deadline_yields_none_and_stops_the_process(own_home, monkeypatch):
    started = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(server.subprocess, "Popen", popen)
    with server.shared_server(timeout_s=0.0) as url:
        assert url is None  # not up within no time at all
        assert started[0].poll() is None
    assert started[0].poll() is not None
