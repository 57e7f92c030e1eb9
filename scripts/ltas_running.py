"""Score a model trained on speaker-scope LTAS normalisation the way a device would feed it:
each speaker's evaluation utterances in a random order, each corrected by the running mean of
the envelopes of that speaker's utterances so far (itself included), not by the mean over all
of them (docs/experiments/recipe.md, "Long-term spectrum normalisation").

Reads a corpus written by ``scripts/ltas_corpus.py --scope speaker`` (its ``ltas.json`` for the
reference and settings, its manifest's ``raw_path`` for the audio), writes the causally
normalised copies to ``<out>/wav``, the hypotheses to ``<out>/hyps_<split>.parquet`` and
``<out>/summary.json`` (WER/CER per split and per voice, WER of each speaker's first
``--first`` utterances against the rest and, with ``--against``, the paired bootstrap against
the same model's hypotheses on the speaker-mean copies).

Usage (in a folder after ``dvc repro prepare``)::

    .venv/bin/python scripts/ltas_running.py --model /tmp/spk1234/model --corpus /tmp/corpus_spk \\
        --out /tmp/spk1234_running --against /tmp/spk1234
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s6damon import io  # noqa: E402
from finetune_pilot import score_split  # noqa: E402  (this folder is on sys.path when run as a script)

from s6damon.corpus.ltas import RunningEnvelope, _read, _write, normalise  # noqa: E402
from s6damon.io import atomic_path  # noqa: E402
from s6damon.model.factory import load_ctc_model  # noqa: E402
from s6damon.train.evaluate import score  # noqa: E402

SPLITS = ("dev", "test", "test_open")


def causal_copies(rows: pd.DataFrame, settings: dict, out: Path, seed: int) -> pd.DataFrame:
    """``rows`` (one or more splits) normalised speaker by speaker in a seeded random order, each
    utterance by the running mean envelope of its speaker so far; returns the rows with ``path``
    pointing at the copies and ``position`` (0 = the speaker's first utterance)."""
    reference, rate = np.asarray(settings["reference_log_power"]), settings["sample_rate"]
    order = rows.sample(frac=1.0, random_state=seed)
    out.mkdir(parents=True, exist_ok=True)
    paths, positions = {}, {}
    for _, utts in order.groupby("speaker", sort=True):
        tracker = RunningEnvelope(settings["floor_db"], settings["lifter"])
        for k, (idx, row) in enumerate(utts.iterrows()):
            wave = _read(row["raw_path"], rate)
            copy = normalise(wave, reference, settings["floor_db"], settings["lifter"], settings["max_gain_db"],
                             tracker.update(wave))
            dest = out / f"{row['utt_id']}.wav"
            with atomic_path(dest, suffix=".wav") as tmp:
                _write(tmp, copy, rate)
            paths[idx], positions[idx] = str(dest), k
    return rows.assign(path=pd.Series(paths), position=pd.Series(positions))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--corpus", type=Path, required=True, help="a scripts/ltas_corpus.py --scope speaker folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0, help="the order of each speaker's utterances")
    ap.add_argument("--first", type=int, default=3, help="utterances counted as a speaker's first")
    ap.add_argument("--against", type=Path, default=None, help="the model's pilot folder (speaker-mean copies)")
    args = ap.parse_args()

    settings = json.loads((args.corpus / "ltas.json").read_text())
    if settings.get("scope") != "speaker":
        raise SystemExit(f"{args.corpus / 'ltas.json'}: scope is {settings.get('scope')!r}, not 'speaker'")
    manifest = io.read_parquet(args.corpus / "manifest.parquet")
    rows = causal_copies(manifest[manifest["split"].isin(SPLITS)], settings, args.out / "wav", args.seed)
    model, tokenizer = load_ctc_model(args.model)
    summary: dict = {"model": str(args.model), "corpus": str(args.corpus), "seed": args.seed}
    for split in SPLITS:
        part = rows[rows["split"] == split]
        hyps, scores = score_split(model, tokenizer, part, split, args.out, args.against)
        first = part["position"].to_numpy() < args.first
        summary[split] = {**scores,
                          f"wer_first_{args.first}": score(hyps[first])["wer"] if first.any() else None,
                          "wer_later": score(hyps[~first])["wer"] if (~first).any() else None}
        print(split, json.dumps(summary[split]))
    io.write_json(args.out / "summary.json", summary)


if __name__ == "__main__":
    main()
