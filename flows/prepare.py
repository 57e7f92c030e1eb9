"""Build and validate the corpus manifest.

Usage::

    python -m flows.prepare [--params params.yaml]

Writes ``<prepare.out_dir>/manifest.parquet`` (utt_id, speaker, path, duration, text, split,
...), the synthesiser's ground-truth timings (``truth_phones.parquet``,
``truth_words.parquet``) when the corpus is synthesised, ``skipped.json`` (inputs skipped
under ``on_bad_input: skip``) and ``metrics/prepare.json``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger

from flows.cli import main
from s6damon import io
from s6damon.config import load_params
from tasks import prepare as T


def _render_all(specs: list, out_dir: str, sample_rate: int, shard_size: int) -> list[tuple]:
    """Render every shard (in parallel threads: the work is in synthesiser subprocesses)."""
    shards = [specs[i:i + shard_size] for i in range(0, len(specs), shard_size)]
    results = [f.result() for f in [T.render.submit(s, out_dir, sample_rate) for s in shards]]
    # A cached shard whose wavs were removed (DVC clears outs before a re-run) is re-rendered.
    for i, (manifest, _, _) in enumerate(results):
        if not all(Path(p).exists() for p in manifest["path"]):
            results[i] = T.render.with_options(refresh_cache=True)(shards[i], out_dir, sample_rate)
    return results


@flow(name="prepare")
def prepare(params_path: str = "params.yaml") -> dict:
    """Build the corpus manifest (synthesised default corpus, LibriSpeech folder or manifest)."""
    from s6damon.corpus.build import summarise

    params = load_params(params_path)
    p = params.prepare
    out = Path(p.out_dir)
    log = get_run_logger()
    skipped: list[dict] = []
    truth_phones = truth_words = None
    if p.source == "synth":
        specs = T.plan(p, params.seed)
        log.info("planned %d utterances", len(specs))
        results = _render_all(specs, str(out), p.sample_rate, p.synth.shard_size)
        manifest = pd.concat([r[0] for r in results], ignore_index=True)
        # Utterances whose exact timings could not be established are listed, never dropped silently.
        rendered = set(manifest["utt_id"])
        skipped = [{"utt_id": s.utt_id, "voice": s.voice, "text": s.text,
                    "reason": "synthesiser timings could not be matched to the words"}
                   for s in specs if s.utt_id not in rendered]
        truth_phones = pd.concat([r[1] for r in results], ignore_index=True)
        truth_words = pd.concat([r[2] for r in results], ignore_index=True)
    else:
        if not p.source_path:
            raise FileNotFoundError(f"params: 'prepare.source_path' must name the {p.source} to read")
        manifest, skipped = T.ingest(p, Path(p.source_path), str(out))
    io.write_parquet(out / "manifest.parquet", manifest)
    if truth_phones is not None:
        io.write_parquet(out / "truth_phones.parquet", truth_phones)
        io.write_parquet(out / "truth_words.parquet", truth_words)
    io.write_json(out / "skipped.json", skipped)
    metrics = {**summarise(manifest), "skipped": len(skipped), "seed": params.seed, "source": p.source}
    io.write_json("metrics/prepare.json", metrics)
    log.info("corpus: %s", metrics)
    return metrics


if __name__ == "__main__":
    main(prepare)
