"""Tasks of the ``prepare`` stage: plan, render shards, ingest external corpora."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task

from s6damon.config.prepare import LtasParams, PrepareParams
from tasks.caching import content_cache

CORPUS_CODE = ("s6damon/corpus", "s6damon/text.py", "s6damon/io.py")


@task(cache_policy=content_cache(*CORPUS_CODE), persist_result=True)
def plan(p: PrepareParams, seed: int) -> list:
    """The list of utterances to synthesise (deterministic from params and seed)."""
    from s6damon.corpus.plan import plan_corpus

    return plan_corpus(p, seed)


@task(cache_policy=content_cache(*CORPUS_CODE), persist_result=True, retries=0)
def render(specs: list, out_dir: str, sample_rate: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Synthesise one shard of utterances; returns (manifest, truth phones, truth words)."""
    from s6damon.corpus.build import render_shard

    return render_shard(specs, Path(out_dir), sample_rate)


@task(cache_policy=content_cache(*CORPUS_CODE), persist_result=True)
def ingest(p: PrepareParams, source: Path, out_dir: str) -> tuple[pd.DataFrame, list[dict]]:
    """Read and validate a LibriSpeech folder or a user manifest (``source`` is hashed)."""
    from s6damon.corpus.sources import ingest as ingest_corpus

    return ingest_corpus(p, Path(out_dir))


@task(cache_policy=content_cache(*CORPUS_CODE), persist_result=True)
def normalise_spectra(manifest: pd.DataFrame, out_dir: str, p: LtasParams,
                      sample_rate: int) -> tuple[pd.DataFrame, dict]:
    """LTAS-normalised copies of every utterance; returns (manifest pointing at them, report)."""
    from s6damon.corpus.ltas import normalise_corpus

    return normalise_corpus(manifest, Path(out_dir), p, sample_rate)
