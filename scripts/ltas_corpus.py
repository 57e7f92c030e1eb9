"""Write a copy of a corpus whose every utterance is equalised to the training set's average
long-term spectrum (LTAS), for the recipe pilot of docs/experiments/recipe.md ("Long-term
spectrum normalisation"): what the prepare stage does with ``prepare.ltas.enabled``
(:func:`s6damon.corpus.ltas.normalise_corpus`), applied to a finished corpus.

``--scope speaker`` (a pilot of this script only, not yet in the prepare stage) corrects each
utterance by its speaker's mean envelope instead of its own: the speaker's average vocal tract
and channel are taken away while the phone content of a short utterance, which tilts its own
average spectrum, is left in (on a device, a running mean over the user's utterances).

Writes ``<out>/wav_ltas/<utt_id>.wav``, ``<out>/manifest.parquet`` (the input's rows, ``path``
pointing at the copies, ``raw_path`` at the originals) and ``<out>/ltas.json`` (the settings,
the reference and each voice's distance from it before and after), and prints the distances.

Usage (in a folder after ``dvc repro prepare``)::

    .venv/bin/python scripts/ltas_corpus.py --out /tmp/corpus_ltas
    .venv/bin/python scripts/finetune_pilot.py --out /tmp/pilot_ltas --threads 1 \\
        --train /tmp/corpus_ltas/manifest.parquet --eval /tmp/corpus_ltas/manifest.parquet
    .venv/bin/python scripts/ltas_corpus.py --out /tmp/corpus_ltas_spk --scope speaker
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import soundfile as sf  # noqa: E402

from s6damon import io  # noqa: E402
from s6damon.config.prepare import LtasParams  # noqa: E402
from s6damon.config.schema import build, to_dict  # noqa: E402
from s6damon.corpus.ltas import _read, normalise, normalise_corpus, smoothed_log_ltas  # noqa: E402
from s6damon.io import atomic_path  # noqa: E402


def normalise_by_speaker(manifest: pd.DataFrame, out: Path, p: LtasParams,
                         sample_rate: int) -> tuple[pd.DataFrame, dict]:
    """:func:`normalise_corpus` with each utterance corrected by its speaker's mean envelope.

    The reference and the copies' names are ``normalise_corpus``'s (it writes the per-utterance
    copies first; they are overwritten here), and the report's distances are recomputed on the
    speaker-normalised copies.
    """
    normalised, report = normalise_corpus(manifest, out, p, sample_rate)
    reference = np.asarray(report["reference_log_power"])
    own = np.stack([smoothed_log_ltas(_read(path, sample_rate), p.floor_db, p.lifter) for path in manifest["path"]])
    by_speaker = pd.DataFrame(own).groupby(manifest["speaker"].to_numpy()).transform("mean").to_numpy()
    after = []
    for raw, dest, env in zip(manifest["path"], normalised["path"], by_speaker):
        wave = normalise(_read(raw, sample_rate), reference, p.floor_db, p.lifter, p.max_gain_db, env)
        after.append(smoothed_log_ltas(wave, p.floor_db, p.lifter))
        with atomic_path(dest, suffix=".wav") as tmp:
            sf.write(str(tmp), wave, sample_rate, subtype="PCM_16", format="WAV")
    voice = (manifest["voice"] if "voice" in manifest else manifest["speaker"]).to_numpy()
    distance = pd.Series(np.abs(np.stack(after) - reference).mean(axis=1) * 10.0 / np.log(10.0), index=voice)
    report["distance_db_after"] = {str(k): round(float(v), 2) for k, v in distance.groupby(level=0).mean().items()}
    return normalised, {**report, "scope": "speaker"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--manifest", type=Path, default=Path("data/corpus/manifest.parquet"))
    ap.add_argument("--floor-db", type=float, default=30.0)
    ap.add_argument("--lifter", type=int, default=16)
    ap.add_argument("--max-gain-db", type=float, default=12.0)
    ap.add_argument("--sample-rate", type=int, default=16000)
    ap.add_argument("--scope", choices=("utterance", "speaker"), default="utterance",
                    help="correct each utterance by its own envelope or its speaker's mean")
    args = ap.parse_args()

    p = build(LtasParams, {"enabled": True, "floor_db": args.floor_db, "lifter": args.lifter,
                           "max_gain_db": args.max_gain_db}, "prepare.ltas")
    run = normalise_by_speaker if args.scope == "speaker" else normalise_corpus
    manifest, report = run(io.read_parquet(args.manifest), args.out.resolve(), p, args.sample_rate)
    io.write_parquet(args.out / "manifest.parquet", manifest)
    io.write_json(args.out / "ltas.json", {**to_dict(p), "sample_rate": args.sample_rate,
                                           "manifest": str(args.manifest), **report})
    print("mean |log-LTAS - reference| per voice (dB), before -> after:")
    print(pd.DataFrame({"before": report["distance_db_before"], "after": report["distance_db_after"]})
          .sort_values("before").to_string())


if __name__ == "__main__":
    main()
