"""`dvc repro` on the tiny profile: every stage runs a flow; DVC re-runs exactly what changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_tiny_project


def _env(api_url: str) -> dict[str, str]:
    env = dict(os.environ)
    # Subprocess flows report to the session's Prefect server instead of starting their own.
    env["PREFECT_API_URL"] = api_url
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str], stdout_only: bool = False, timeout: float = 900) -> str:
    """The command's output (stdout and stderr, or stdout alone); fails the test on a non-zero exit."""
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return proc.stdout if stdout_only else out


def _ran(out: str) -> set[str]:
    return {s for s in ("prepare", "align", "pretrain", "finetune") if f"Running stage '{s}'" in out}


@pytest.fixture(scope="module")
def dvc_project(prefect_server, tmp_path_factory):
    root = make_tiny_project(tmp_path_factory.mktemp("dvc") / "project")
    env = _env(prefect_server)
    _run(["git", "init", "-q"], root, env)
    _run([sys.executable, "-m", "dvc", "init", "-q"], root, env)
    _run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], root, env)
    return root, env


def test_repro_runs_every_stage_then_nothing_then_only_what_changed(dvc_project):
    root, env = dvc_project
    dvc = [sys.executable, "-m", "dvc"]
    first = _run(dvc + ["repro"], root, env)
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    assert [s for s in stages if f"Running stage '{s}'" not in first] == []
    assert (root / "dvc.lock").exists()
    shown = _run(dvc + ["metrics", "show"], root, env)
    assert "metrics/finetune.json" in shown and "metrics/align.json" in shown

    second = _run(dvc + ["repro"], root, env)
    assert "Running stage" not in second, second[-4000:]

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["finetune"]["learning_rate"] = params["finetune"]["learning_rate"] * 0.5
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # Only the edited stage is out of date; the ones downstream go out of date when it reruns,
    # and running them again here would only repeat the first repro's checks.
    status = _run(dvc + ["status", "--json"], root, env, stdout_only=True, timeout=300)
    assert set(json.loads(status)) == {"finetune"}, status
    third = _run(dvc + ["repro", "finetune"], root, env)
    assert _ran(third) == {"finetune"}
