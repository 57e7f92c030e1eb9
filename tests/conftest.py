"""Shared fixtures: one Prefect test server per session, and a tiny-profile project folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Results and Prefect's home for the whole test session go to a throwaway folder, never the
# repository's .prefect/ or the user's home. Must happen before tasks/flows import prefect.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="s6damon-tests-"))
os.environ["PREFECT_HOME"] = str(_SESSION_DIR / "prefect")
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(_SESSION_DIR / "prefect" / "storage")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (SQLite) shared by every test that runs flows.

    Yields the API URL so subprocesses (``dvc repro``, killed-and-resumed flows) can use the
    same server instead of starting their own.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


def make_tiny_project(dest: Path) -> Path:
    """A copy of the project's code and DVC config with the tiny profile as ``params.yaml``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("s6damon", "flows", "tasks"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", dest / "dvc.yaml")
    shutil.copy(REPO / "profiles" / "tiny.yaml", dest / "params.yaml")
    return dest


@pytest.fixture
def tiny_project(tmp_path, monkeypatch):
    """A tiny-profile project folder, made the working directory for the test."""
    root = make_tiny_project(tmp_path / "project")
    monkeypatch.chdir(root)
    return root


@pytest.fixture(scope="session")
def session_dir() -> Path:
    """A folder that lives for the whole test session (removed at exit)."""
    yield _SESSION_DIR
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_spine(prefect_server, tmp_path_factory):
    """Run prepare → align → pretrain → finetune once per session on the tiny profile.

    Returns ``(root, results)``. Later stages' tests start from a copy
    (:func:`copy_spine`) so they never change what other tests read.
    """
    from flows.align import align
    from flows.finetune import finetune
    from flows.prepare import prepare
    from flows.pretrain import pretrain

    root = make_tiny_project(tmp_path_factory.mktemp("tiny") / "project")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        results = {
            "prepare": prepare(params_path="params.yaml"),
            "align": align(params_path="params.yaml"),
            "pretrain": pretrain(params_path="params.yaml"),
            "finetune": finetune(params_path="params.yaml"),
        }
    return root, results


def copy_spine(root: Path, dest: Path) -> Path:
    """A copy of a finished tiny-spine project (symlinks kept, so corpus paths still resolve)."""
    shutil.copytree(root, dest, symlinks=True)
    return dest
