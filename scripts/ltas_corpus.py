"""Write a copy of a corpus whose every utterance is equalised to the training set's average
long-term spectrum (LTAS), for the recipe pilot of docs/experiments/recipe.md ("Long-term
spectrum normalisation").

Each utterance's LTAS is the mean power spectrum of its speech frames (within ``--floor-db``
of its loudest frames), smoothed in the log domain by keeping the first ``--lifter`` cepstral
coefficients (the envelope, not the harmonics of the voice's pitch). The reference is the mean
smoothed log-LTAS of the ``train`` split; each utterance is filtered once, zero phase, by the
gain that moves its LTAS onto the reference (clipped to ``±--max-gain-db``). Static filtering
changes no phone's timing and no within-utterance contrast: it removes the utterance-level
spectral envelope (the speaker's average formant shape and source tilt, and the channel).

Writes ``<out>/wav/*.wav``, ``<out>/manifest.parquet`` (the input's rows, ``path`` pointing at
the copies) and ``<out>/ltas.json`` (the reference and the parameters).

Usage (in a folder after ``dvc repro prepare``)::

    .venv/bin/python scripts/ltas_corpus.py --out /tmp/corpus_ltas
    .venv/bin/python scripts/finetune_pilot.py --out /tmp/pilot_ltas --threads 1 \\
        --train /tmp/corpus_ltas/manifest.parquet --eval /tmp/corpus_ltas/manifest.parquet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s6damon import io  # noqa: E402
from s6damon.corpus.ltas import normalise, reference_ltas, smoothed_log_ltas  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--manifest", type=Path, default=Path("data/corpus/manifest.parquet"))
    ap.add_argument("--floor-db", type=float, default=30.0)
    ap.add_argument("--lifter", type=int, default=16)
    ap.add_argument("--max-gain-db", type=float, default=12.0)
    args = ap.parse_args()

    manifest = pd.read_parquet(args.manifest)
    waves, envelopes = [], []
    for path in manifest["path"]:
        wave, rate = sf.read(path, dtype="float64")
        if rate != 16000 or wave.ndim != 1:
            raise SystemExit(f"{path}: expected 16 kHz mono (the prepare stage's output)")
        waves.append(wave)
        envelopes.append(smoothed_log_ltas(wave, args.floor_db, args.lifter))
    envelopes = np.stack(envelopes)
    reference = reference_ltas(envelopes[(manifest["split"] == "train").to_numpy()])

    (args.out / "wav").mkdir(parents=True, exist_ok=True)
    paths = []
    for row, wave in zip(manifest.itertuples(), waves):
        out = normalise(wave, reference, args.floor_db, args.lifter, args.max_gain_db)
        path = (args.out / "wav" / Path(row.path).name).resolve()
        sf.write(path, out, 16000, subtype="PCM_16")
        paths.append(str(path))
    io.write_parquet(args.out / "manifest.parquet", manifest.assign(path=paths))
    io.write_json(args.out / "ltas.json", {"floor_db": args.floor_db, "lifter": args.lifter,
                                           "max_gain_db": args.max_gain_db, "manifest": str(args.manifest),
                                           "reference_log_power": reference.round(4).tolist()})
    by_voice = pd.Series(np.abs(envelopes - reference).mean(axis=1) * 10 / np.log(10), index=manifest["voice"])
    print("mean |log-LTAS - reference| per voice (dB):")
    print(by_voice.groupby(level=0).mean().round(2).sort_values().to_string())


if __name__ == "__main__":
    main()
