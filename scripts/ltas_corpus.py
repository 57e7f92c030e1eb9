"""Write a copy of a corpus whose every utterance is equalised to the training set's average
long-term spectrum (LTAS), for the recipe pilot of docs/experiments/recipe.md ("Long-term
spectrum normalisation"): what the prepare stage does with ``prepare.ltas.enabled``
(:func:`s6damon.corpus.ltas.normalise_corpus`), applied to a finished corpus.

``--scope speaker`` corrects each utterance by its speaker's mean envelope instead of its own
(``prepare.ltas.scope``).

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

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s6damon import io  # noqa: E402
from s6damon.config.prepare import LtasParams  # noqa: E402
from s6damon.config.schema import build, to_dict  # noqa: E402
from s6damon.corpus.ltas import normalise_corpus  # noqa: E402


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
                           "max_gain_db": args.max_gain_db, "scope": args.scope}, "prepare.ltas")
    manifest, report = normalise_corpus(io.read_parquet(args.manifest), args.out.resolve(), p, args.sample_rate)
    io.write_parquet(args.out / "manifest.parquet", manifest)
    io.write_json(args.out / "ltas.json", {**to_dict(p), "sample_rate": args.sample_rate,
                                           "manifest": str(args.manifest), **report})
    print("mean |log-LTAS - reference| per voice (dB), before -> after:")
    print(pd.DataFrame({"before": report["distance_db_before"], "after": report["distance_db_after"]})
          .sort_values("before").to_string())


if __name__ == "__main__":
    main()
