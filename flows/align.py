"""Forced alignment of the corpus: phone, word and pause intervals.

Usage::

    python -m flows.align [--params params.yaml]

Runs ``align.backend`` (written to ``<align.out_dir>/{phones,words,pauses}.parquet``) and
each of ``align.compare_backends`` (tables under ``<align.out_dir>/<backend>/``) so their
accuracy against the synthesiser's ground truth can be compared in ``metrics/align.json``.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from flows.cli import main
from s6damon import io
from s6damon.config import load_params
from s6damon.splits import UNLABELED
from tasks import align as T


@flow(name="align")
def align(params_path: str = "params.yaml") -> dict:
    """Align the corpus with the default backend and the comparison backends."""
    from s6damon.align.base import pauses

    params = load_params(params_path)
    p = params.align
    corpus = Path(params.prepare.out_dir)
    manifest_path = corpus / "manifest.parquet"
    manifest = io.read_parquet(manifest_path)
    out = Path(p.out_dir)
    log = get_run_logger()
    durations = dict(zip(manifest["utt_id"], manifest["duration"]))
    backends = [p.backend] + [b for b in p.compare_backends if b != p.backend]
    metrics: dict = {}
    per_backend: dict = {}
    for backend in backends:
        result = T.align(backend, p, manifest_path, corpus / "wav", ".work/align")
        target = out if backend == p.backend else out / backend
        io.write_parquet(target / "phones.parquet", result.phones)
        io.write_parquet(target / "words.parquet", result.words)
        io.write_parquet(target / "pauses.parquet", pauses(result.words, durations, p.min_pause_ms))
        io.write_json(target / "failed.json", result.failed)
        q = T.quality(result, manifest, corpus)
        summary = q if q is not None else {"failed": len(result.failed),
                                           "utterances": int((manifest["split"] != UNLABELED).sum())}
        per_backend[backend] = summary
        log.info("%s: %s", backend, {k: v for k, v in summary.items() if k != "per_family"})
    metrics.update(per_backend[p.backend])
    metrics["backend"] = p.backend
    metrics["backends"] = per_backend
    io.write_json("metrics/align.json", metrics)
    return metrics


if __name__ == "__main__":
    main(align)
