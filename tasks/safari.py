"""Tasks of the ``safari`` stage: one cached, persisted task per (method, level) run.

Each run lives in ``.work/runs/safari/<method>-<level>/<key>/`` (model, mask(s), resumable
checkpoints). The cache key covers the method, level, params, seed, the contents of the
starting model and manifest, and the source of the task and the core code; the folder is
named from it (:func:`tasks.runs.run_folder`), so a killed flow re-runs only the unfinished
runs — and those resume from their last checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from s6damon import io
from s6damon.config.model import ModelParams
from s6damon.config.safari import SafariParams
from tasks.caching import content_cache
from tasks.concurrency import call_run
from tasks.runs import run_folder
from tasks.train import TRAIN_CODE

SAFARI_CODE = (*TRAIN_CODE, "s6damon/pruning", "s6damon/safari", "s6damon/config/safari.py")
RUNS = Path(".work/runs/safari")


def _context(m: ModelParams, sp: SafariParams, manifest: Path, seed: int, threads: int, teacher: Path | None = None):
    from s6damon.safari.methods import RunContext

    df = io.read_parquet(manifest)
    split = lambda name: df[df["split"] == name].reset_index(drop=True)  # noqa: E731
    return RunContext(m=m, sp=sp, train=split("train"), dev=split("dev"), seed=seed, threads=threads,
                      teacher=teacher)


@task(cache_policy=content_cache(*SAFARI_CODE, exclude=("isolate",)), persist_result=True)
def train_run(method: str, level: float, init: Path | None, base: dict[str, Path] | None, m: ModelParams,
              sp: SafariParams, manifest: Path, seed: int, threads: int, teacher: Path | None = None,
              isolate: bool = False) -> dict[str, Any]:
    """Train one method at one FLOPs level; returns :meth:`MethodResult.to_dict`.

    Args:
        method: ``dense`` or one of :data:`s6damon.config.safari.METHODS`.
        level: share of encoder FLOPs removed (0 for ``dense``).
        init: the pretrained model (None = random init).
        base: the run this one continues from — the ``dense`` result for ``omp``, the
            ``parp_structured`` result for ``parp_masked_finetune``: ``{"model_dir": Path,
            "mask_path": Path}`` (file contents are part of the cache key).
        teacher: the model every run distils from (``safari.finetune.distills``):
            the finetuned dense model, whatever the run starts from.
        isolate: train in a process of its own (:mod:`tasks.concurrency`).
    """
    from s6damon.safari.methods import run_method

    folder = run_folder(RUNS / f"{method}-{level:g}")  # the method and level for people, the key for content
    ctx = _context(m, sp, manifest, seed, threads, teacher)
    return call_run(run_method, ctx, method, level, init, base, folder, isolate=isolate).to_dict()


@task(cache_policy=content_cache(*SAFARI_CODE), persist_result=True)
def evaluate_run(model_dir: Path, mask_path: Path | None, unstructured: bool, manifest: Path, split: str,
                 threads: int, seconds: float) -> tuple[Any, dict[str, Any]]:
    """Transcripts of one split by a run's deployed (masked) model, WER/CER, params and GFLOPs."""
    from s6damon.safari.measure import evaluate

    df = io.read_parquet(manifest)
    return evaluate(model_dir, mask_path, unstructured, df[df["split"] == split].reset_index(drop=True),
                    threads, seconds)
