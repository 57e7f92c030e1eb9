"""Resumable training checkpoints.

Every ``checkpoint_every`` steps rank 0 writes ``step_XXXXXXXX.pt`` (atomically) holding the
model, optimiser and LR-scheduler states, the Python/NumPy/torch RNG states of every rank,
the step, and the loop's own state (history, best dev WER …). Only the newest ``keep``
files stay. On start the newest checkpoint whose *fingerprint* (hash of the run's params
and data) matches is resumed, so that a stale checkpoint of a different configuration is
never picked up. Restoring the RNG states makes a resumed run bit-identical to an
uninterrupted one on CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s6damon.io import atomic_path

log = logging.getLogger(__name__)
_NAME = re.compile(r"^step_(\d{8})\.pt$")


def fingerprint(*parts: Any) -> str:
    """Stable hash of JSON-serialisable run descriptions."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    """This process's random states (Python, NumPy global, torch CPU and CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's global generator (used by HF mask sampling) and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def list_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Checkpoint files, oldest first."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if _NAME.match(p.name))


def save_checkpoint(ckpt_dir: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, rng_states: list[dict[str, Any]], state: dict[str, Any],
                    fp: str, keep: int = 2) -> Path:
    """Write one checkpoint atomically and prune older ones (call on rank 0 only).

    Args:
        rng_states: one entry per rank (see :func:`rng_state`).
        state: the loop's own resumable state (history, best metric …).
        fp: fingerprint of the run; a checkpoint is only resumed by a run with the same one.
        keep: how many checkpoints to keep.
    """
    d = Path(ckpt_dir)
    d.mkdir(parents=True, exist_ok=True)
    dest = d / f"step_{step:08d}.pt"
    blob = {"step": step, "fingerprint": fp, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": rng_states, "state": state}
    with atomic_path(dest, suffix=".pt") as tmp:
        torch.save(blob, tmp)
    for old in list_checkpoints(d)[:-keep]:
        old.unlink(missing_ok=True)
    return dest


def load_latest(ckpt_dir: str | Path, fp: str) -> dict[str, Any] | None:
    """The newest readable checkpoint with fingerprint ``fp``, or None.

    Unreadable files (e.g. a disk-full truncation) and other fingerprints are skipped with
    a warning, falling back to the previous checkpoint.
    """
    for path in reversed(list_checkpoints(ckpt_dir)):
        try:
            blob = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:
            log.warning("%s: unreadable checkpoint skipped (%s)", path, err)
            continue
        if blob.get("fingerprint") != fp:
            log.warning("%s: checkpoint of a different configuration, not resumed", path)
            continue
        log.info("resuming from %s", path)
        return blob
    return None
