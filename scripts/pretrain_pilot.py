"""Pretrain one SSL recipe variant outside the pipeline, on a pool of unlabeled audio.

For the README's pretraining comparisons: the train rows of one or more manifests (their
transcripts unused) form the pool; rows whose transcript is an evaluation text of
``--eval`` are left out, and so are the evaluation voices (no test speaker's audio is
pretrained on, labelled or not). ``pretrain`` params are overridden on the command line.
Writes ``<out>/model`` (a checkpoint folder for ``scripts/finetune_pilot.py --init``) and
``<out>/summary.json`` (pool size per voice family, training metrics; with ``--objective
hubert`` also how well the k-means targets predict the true phones, on the pool and on the
test voices).

Usage::

    .venv/bin/python scripts/pretrain_pilot.py --out /tmp/pt_pool \\
        --pool data/corpus/manifest.parquet /tmp/corpus180/manifest.parquet --set steps=1800
    .venv/bin/python scripts/pretrain_pilot.py --out /tmp/pt_hubert --pool data/corpus/manifest.parquet \\
        --objective hubert --hubert clusters=100
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml
from transformers import Wav2Vec2Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finetune_pilot import override  # noqa: E402  (this folder is on sys.path when run as a script)
from s6damon import io  # noqa: E402
from s6damon.config import load_params  # noqa: E402
from s6damon.ssl.hubert import (  # noqa: E402
    HubertParams,
    frame_geometry,
    label_frames,
    pretrain_hubert,
    target_quality,
)
from s6damon.train.pretrain import pretrain  # noqa: E402


def pool_rows(manifests: list[Path], evals: pd.DataFrame) -> pd.DataFrame:
    """Train rows of ``manifests`` (absolute paths), without evaluation texts or the voices
    only the evaluation splits have (the unseen test and dev voices)."""
    held = evals[evals["split"] != "train"]
    eval_texts = set(held["text"])
    eval_voices = set(held["voice"]) - set(evals.loc[evals["split"] == "train", "voice"])
    frames = []
    for m in manifests:
        df = io.read_parquet(m)
        df = df[df["split"] == "train"].copy()
        # prepare's manifests hold paths relative to the repository root, where this runs
        df["path"] = [str(Path(p).resolve()) for p in df["path"]]
        missing = [p for p in df["path"] if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"{m}: {len(missing)} audio files missing, e.g. {missing[0]}")
        frames.append(df)
    pool = pd.concat(frames, ignore_index=True).drop_duplicates("path")
    keep = ~pool["text"].isin(eval_texts)
    keep &= ~pool["voice"].isin(eval_voices)
    return pool[keep].reset_index(drop=True)


def target_report(kmeans: Path, pool: pd.DataFrame, evals: pd.DataFrame, truth: Path, model: Path) -> dict:
    """Phone purity and PNMI of the run's k-means targets against the synthesiser's phone
    timings: on the pool (utterances with timings) and on the test split, per test voice."""
    centroids = torch.load(kmeans, weights_only=True)["centroids"]
    window, hop = frame_geometry(Wav2Vec2Config.from_pretrained(model))
    phones = io.read_parquet(truth)
    out = {}
    test = evals[evals["split"] == "test"].reset_index(drop=True)
    test["path"] = [str(Path(p).resolve()) for p in test["path"]]
    for name, rows in (("pool", pool), ("test", test)):
        c, ph, v = label_frames(rows, phones, centroids, window, hop)
        out[name] = target_quality(c, ph)
        if name == "test":
            frame = pd.DataFrame({"c": c, "ph": ph, "v": v})
            out["test_per_voice"] = {voice: target_quality(g["c"].tolist(), g["ph"].tolist())
                                     for voice, g in frame.groupby("v")}
    return out


def hubert_params(assignments: list[str]) -> HubertParams:
    """``HubertParams`` with ``key=value`` assignments (YAML values) applied; an unknown key or
    a bad value raises an error naming it."""
    fields = {f.name for f in dataclasses.fields(HubertParams)}
    data = {}
    for kv in assignments:
        key, sep, value = kv.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--hubert {kv!r}: expected KEY=VALUE with KEY one of {sorted(fields)}")
        data[key] = yaml.safe_load(value)
    return HubertParams(**data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pool", type=Path, nargs="+", required=True, help="manifests whose train rows are pretrained on")
    ap.add_argument("--eval", type=Path, default=Path("data/corpus/manifest.parquet"),
                    help="manifest whose evaluation texts and voices are kept out of the pool")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="pretrain.KEY override")
    ap.add_argument("--objective", choices=["wav2vec2", "hubert"], default="wav2vec2",
                    help="contrastive (the pretrain stage's) or masked prediction of MFCC clusters")
    ap.add_argument("--hubert", action="append", default=[], metavar="KEY=VALUE",
                    help="HubertParams override (s6damon/ssl/hubert.py), with --objective hubert")
    args = ap.parse_args()

    params = load_params(args.params)
    recipe = override(params.pretrain, args.set, "pretrain")
    pool = pool_rows(args.pool, io.read_parquet(args.eval))
    hours = (pool.groupby("voice")["duration"].sum() / 3600).round(3).sort_values(ascending=False)
    print(f"pool: {len(pool)} utterances, {pool['duration'].sum() / 3600:.2f} h")
    print(hours.to_string())
    targets = None
    if args.objective == "hubert":
        h = hubert_params(args.hubert)
        res = pretrain_hubert(params.model, recipe, h, pool, args.out / "model", args.out / "ckpt", params.seed,
                              params.threads)
        targets = target_report(args.out / "ckpt" / "kmeans.pt", pool, io.read_parquet(args.eval),
                                args.eval.parent / "truth_phones.parquet", args.out / "model")
    else:
        res = pretrain(params.model, recipe, pool, args.out / "model", args.out / "ckpt", params.seed,
                       params.threads)
    io.write_json(args.out / "summary.json", {
        "pool": [str(p) for p in args.pool], "objective": args.objective, "overrides": args.set,
        "hubert_overrides": args.hubert, "seed": params.seed,
        "utterances": len(pool), "hours": round(float(pool["duration"].sum()) / 3600, 3),
        "hours_per_voice": hours.to_dict(), "train": res["metrics"], "targets": targets})
    print(res["metrics"])


if __name__ == "__main__":
    main()
