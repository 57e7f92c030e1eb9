"""Build and validate the corpus manifest.

Usage::

    python -m flows.prepare [--params params.yaml]

Writes ``<prepare.out_dir>/manifest.parquet`` (utt_id, speaker, path, duration, text, split,
...), the synthesiser's ground-truth timings (``truth_phones.parquet``,
``truth_words.parquet``) when the corpus is synthesised, ``skipped.json`` (inputs skipped
under ``on_bad_input: skip``), with ``prepare.ltas.enabled`` the normalised copies
(``wav_ltas/``, which the manifest's ``path`` then names; ``raw_path`` the originals) and
``ltas.json`` (the reference envelope), and ``metrics/prepare.json``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger

from flows.cli import main
from s6damon import io
from s6damon.config import load_params, to_dict
from s6damon.config.prepare import PrepareParams
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


def _normalise_spectra(manifest: pd.DataFrame, out_dir: str, p: PrepareParams) -> tuple[pd.DataFrame, dict]:
    """The normalised copies (``prepare.ltas``), re-written when a cached result's files are gone."""
    result = T.normalise_spectra(manifest, out_dir, p.ltas, p.sample_rate)
    if not all(Path(path).exists() for path in result[0]["path"]):
        result = T.normalise_spectra.with_options(refresh_cache=True)(manifest, out_dir, p.ltas, p.sample_rate)
    return result


def _ltas_metrics(report: dict | None) -> dict:
    """Whether the corpus is LTAS-normalised, and the mean distance of its voices' envelopes
    from the reference (dB) before and after."""
    if report is None:
        return {"enabled": False}
    return {"enabled": True, **{key: round(sum(report[key].values()) / len(report[key]), 2)
                                for key in ("distance_db_before", "distance_db_after")}}


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
    ltas = None
    if p.ltas.enabled:
        manifest, ltas = _normalise_spectra(manifest, str(out), p)
    # Later stages read these only where they exist (export gives a model the front end of the
    # ltas.json beside the manifest; align and pretrain score against the synthesiser's timings):
    # ones an earlier run with other settings left (outside `dvc repro`, which clears the folder
    # first) would describe another corpus, so this run writes its own or none.
    for optional in ("ltas.json", "truth_phones.parquet", "truth_words.parquet"):
        (out / optional).unlink(missing_ok=True)
    if ltas is not None:
        io.write_json(out / "ltas.json", {**to_dict(p.ltas), "sample_rate": p.sample_rate, **ltas})
    io.write_parquet(out / "manifest.parquet", manifest)
    if truth_phones is not None:
        io.write_parquet(out / "truth_phones.parquet", truth_phones)
        io.write_parquet(out / "truth_words.parquet", truth_words)
    io.write_json(out / "skipped.json", skipped)
    metrics = {**summarise(manifest), "skipped": len(skipped), "seed": params.seed, "source": p.source,
               "ltas": _ltas_metrics(ltas)}
    io.write_json("metrics/prepare.json", metrics)
    log.info("corpus: %s", metrics)
    return metrics


if __name__ == "__main__":
    main(prepare)
