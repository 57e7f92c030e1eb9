"""How phonetic each transformer layer of a model is, measured as HuBERT measures its targets.

For choosing HuBERT's next-iteration targets (the k-means clusters of one layer's output of
the previous model replace the MFCC clusters): for every hidden state of ``--model`` (the
input of the first transformer layer, then each layer's output) and for the MFCC frames of
the first iteration, fit k-means on frames of train utterances and report the PNMI and
purity (:func:`s6damon.ssl.hubert.target_quality`) of the clusters against the synthesiser's
phone timings, on those utterances and on the unseen test voices. Writes ``--out`` (JSON).

Usage (in a folder after ``dvc repro prepare``)::

    .venv/bin/python scripts/layer_pnmi.py --model models/pretrained --out /tmp/layers.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import Wav2Vec2Model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s6damon import io  # noqa: E402
from s6damon.ssl.hubert import (  # noqa: E402
    frame_geometry,
    frame_phones,
    mfcc_features,
    phones_by_utt,
    target_quality,
    target_quality_per_voice,
)
from s6damon.train.data import AudioSet, normalise_wave  # noqa: E402


def timed_rows(manifest: pd.DataFrame, timed: set[str], split: str, minutes: float, seed: int) -> pd.DataFrame:
    """Utterances of ``split`` with phone timings, in a seeded random order, up to ``minutes``."""
    rows = manifest[(manifest["split"] == split) & manifest["utt_id"].isin(timed)].sample(frac=1, random_state=seed)
    return rows[rows["duration"].cumsum() <= minutes * 60].reset_index(drop=True)


def frame_table(model: Wav2Vec2Model, rows: pd.DataFrame, phones: dict[str, pd.DataFrame]
                ) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """Per representation (``layer0`` … ``layerN``, ``mfcc``) the ``(frames, dim)`` features of
    every token of ``rows`` that lies inside a timed phone, with its phone and voice."""
    window, hop = frame_geometry(model.config)
    feats: dict[str, list[np.ndarray]] = {}
    phone_of: list[str] = []
    voice_of: list[str] = []
    data = AudioSet(rows, preload=False)
    for i, (utt, voice) in enumerate(zip(rows["utt_id"], rows["voice"])):
        wave = normalise_wave(data.wave(i))
        with torch.no_grad():
            hidden = model(torch.from_numpy(wave).float()[None], output_hidden_states=True).hidden_states
        mfcc = mfcc_features(wave, window, hop)
        n = min(hidden[0].shape[1], len(mfcc))
        labels = frame_phones(phones[utt], n, window, hop)
        keep = [j for j, ph in enumerate(labels) if ph is not None]
        for name, x in [*((f"layer{k}", h[0]) for k, h in enumerate(hidden)), ("mfcc", mfcc)]:
            feats.setdefault(name, []).append(x[keep].numpy())
        phone_of += [labels[j] for j in keep]
        voice_of += [voice] * len(keep)
    return {k: np.concatenate(v).astype(np.float64) for k, v in feats.items()}, phone_of, voice_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="checkpoint folder (pretraining or CTC)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus"), help="folder with manifest.parquet and truth_phones.parquet")
    ap.add_argument("--train-minutes", type=float, default=15.0, help="train audio the clusters are fitted and scored on")
    ap.add_argument("--test-minutes", type=float, default=6.0, help="test audio the clusters are scored on")
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--iters", type=int, default=50, help="most Lloyd iterations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from sklearn.cluster import KMeans

    torch.set_num_threads(args.threads)
    model = Wav2Vec2Model.from_pretrained(args.model).eval()
    manifest = io.read_parquet(args.corpus / "manifest.parquet")
    phones = phones_by_utt(io.read_parquet(args.corpus / "truth_phones.parquet"))
    train, train_ph, _ = frame_table(model, timed_rows(manifest, set(phones), "train", args.train_minutes, args.seed),
                                     phones)
    test, test_ph, test_voice = frame_table(model, timed_rows(manifest, set(phones), "test", args.test_minutes,
                                                              args.seed), phones)
    report: dict = {"model": str(args.model), "train_frames": len(train_ph), "test_frames": len(test_ph),
                    "clusters": args.clusters, "seed": args.seed, "representations": {}}
    for name in train:
        km = KMeans(args.clusters, n_init=1, max_iter=args.iters, random_state=args.seed).fit(train[name])
        test_ids = km.predict(test[name]).tolist()
        per_voice = target_quality_per_voice(test_ids, test_ph, test_voice)
        report["representations"][name] = {
            "train": target_quality(km.labels_.tolist(), train_ph), "test": target_quality(test_ids, test_ph),
            "test_pnmi_per_voice": {v: q["pnmi"] for v, q in per_voice.items()}}
        r = report["representations"][name]
        print(f"{name}: PNMI train {r['train']['pnmi']:.3f}, test {r['test']['pnmi']:.3f}", flush=True)
    io.write_json(args.out, report)


if __name__ == "__main__":
    main()
