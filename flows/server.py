"""Run a command (``dvc repro`` in scripts/run.sh) against one Prefect server for all its stages.

Without ``PREFECT_API_URL`` every flow run starts a temporary local server and stops it when
the flow ends, which costs each stage about 6 s of an idle 2-core machine's time (10 on a busy
one). This starts one server for the whole command instead: its API and UI only (no
background services, which poll the database; nothing here is scheduled), on the project's
database in ``PREFECT_HOME`` like the temporary ones, so the runs are there to browse
afterwards as before, and the UI shows them live while the command runs.

Where ``PREFECT_API_URL`` is already set (a server of the user's own, as the README's "Watching
runs in the Prefect UI" starts), the command runs against that one. A server that does not come
up is no error: the command then runs as without this wrapper and each stage starts its own.

Usage::

    python -m flows.server dvc repro [TARGETS...]
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasks import env as _env  # noqa: F401  (PREFECT_HOME etc. for the server too)

#: How long a first start may take (it creates or migrates the database): the limit the
#: temporary servers get (``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``, set in tasks/env.py).
STARTUP_TIMEOUT_S = float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"])


def server_log() -> Path:
    """Where the server's output goes: ``server.log`` in ``PREFECT_HOME``."""
    return Path(os.environ["PREFECT_HOME"]) / "server.log"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the OS picks it), so a server of the user's own on
    Prefect's default 4200 is never in the way."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def healthy(api_url: str, timeout_s: float = 2.0) -> bool:
    """Whether the Prefect API at ``api_url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def shared_server(timeout_s: float = STARTUP_TIMEOUT_S) -> Iterator[str | None]:
    """A Prefect server for the ``with`` block; yields its API URL, or None where it did not
    come up within ``timeout_s`` (its output, in :func:`server_log`, says why). Stopped on exit."""
    host, port = "127.0.0.1", free_port()
    api_url = f"http://{host}:{port}/api"
    log_path = server_log()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port),
           "--no-services"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        while not healthy(api_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                api_url = None
                break
            time.sleep(0.5)
        yield api_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(command: list[str]) -> int:
    """Run ``command`` with ``PREFECT_API_URL`` pointing at one server for all of it (the
    user's, where set; else one started here); returns its exit status."""
    if os.environ.get("PREFECT_API_URL"):
        return _call(command, dict(os.environ))
    with shared_server() as api_url:
        env = dict(os.environ)
        if api_url is None:
            print(f"flows.server: the Prefect server did not start (its log: {server_log()});"
                  " each stage starts a temporary one", file=sys.stderr)
        else:
            env["PREFECT_API_URL"] = api_url
            print(f"flows.server: Prefect UI for this run at {api_url.removesuffix('/api')}", file=sys.stderr)
        return _call(command, env)


def _call(command: list[str], env: dict[str, str]) -> int:
    """``command``'s exit status. A Ctrl-C reaches the command too (one process group): it is
    left to stop on its own terms (DVC releases its locks), with the server up until it has."""
    proc = subprocess.Popen(command, env=env)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--"]:
        args = args[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if args else 2)
    raise SystemExit(run(args))


if __name__ == "__main__":
    main()
