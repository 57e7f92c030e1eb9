"""Pretrain one SSL recipe variant outside the pipeline, on a pool of unlabeled audio.

For the pretraining comparisons of docs/experiments/recipe.md: the train rows of one or more
manifests (their transcripts unused) form the pool; rows whose transcript is an evaluation text of
``--eval`` are left out, and so are the evaluation voices (no test speaker's audio is
pretrained on, labelled or not). ``pretrain`` params are overridden on the command line.
Writes ``<out>/model`` (a checkpoint folder for ``scripts/finetune_pilot.py --init``) and
``<out>/summary.json`` (pool size per voice family, training metrics; with ``--set
objective=hubert`` also how well the k-means targets predict the true phones, on the pool and
on the test voices).

Usage::

    .venv/bin/python scripts/pretrain_pilot.py --out /tmp/pt_pool \\
        --pool data/corpus/manifest.parquet /tmp/corpus180/manifest.parquet --set steps=1800
    .venv/bin/python scripts/pretrain_pilot.py --out /tmp/pt_hubert --pool data/corpus/manifest.parquet \\
        --set objective=hubert --set hubert.clusters=100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finetune_pilot import override, with_device  # noqa: E402  (this folder is on sys.path when run as a script)
from s6damon import io  # noqa: E402
from s6damon.config import load_params  # noqa: E402
from s6damon.ssl.hubert import target_report  # noqa: E402
from s6damon.train.pretrain import heldout_sets, pretrain  # noqa: E402


def split_rows(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    """``manifest``'s rows of ``split`` with absolute paths (prepare's are relative to the repository root)."""
    rows = manifest[manifest["split"] == split].copy()
    rows["path"] = [str(Path(p).resolve()) for p in rows["path"]]
    return rows


def pool_rows(manifests: list[Path], evals: pd.DataFrame) -> pd.DataFrame:
    """Train rows of ``manifests`` (absolute paths), without evaluation texts or the voices
    only the evaluation splits have (the unseen test and dev voices)."""
    held = evals[evals["split"] != "train"]
    eval_texts = set(held["text"])
    eval_voices = set(held["voice"]) - set(evals.loc[evals["split"] == "train", "voice"])
    frames = []
    for m in manifests:
        df = split_rows(io.read_parquet(m), "train")
        missing = [p for p in df["path"] if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"{m}: {len(missing)} audio files missing, e.g. {missing[0]}")
        frames.append(df)
    pool = pd.concat(frames, ignore_index=True).drop_duplicates("path")
    keep = ~pool["text"].isin(eval_texts)
    keep &= ~pool["voice"].isin(eval_voices)
    return pool[keep].reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pool", type=Path, nargs="+", required=True, help="manifests whose train rows are pretrained on")
    ap.add_argument("--eval", type=Path, default=Path("data/corpus/manifest.parquet"),
                    help="manifest whose evaluation texts and voices are kept out of the pool")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="pretrain.KEY override")
    ap.add_argument("--device", default=None, help="model.device override: cpu, cuda or auto")
    args = ap.parse_args()

    params = load_params(args.params)
    recipe = override(params.pretrain, args.set, "pretrain")
    model_params = with_device(params.model, args.device)
    pool = pool_rows(args.pool, io.read_parquet(args.eval))
    hours = (pool.groupby("voice")["duration"].sum() / 3600).round(3).sort_values(ascending=False)
    print(f"pool: {len(pool)} utterances, {pool['duration'].sum() / 3600:.2f} h")
    print(hours.to_string())
    evals = io.read_parquet(args.eval)
    dev = split_rows(evals, "dev")
    res = pretrain(model_params, recipe, pool, args.out / "model", args.out / "ckpt", params.seed, params.threads,
                   heldout=heldout_sets(dev, pool))
    targets = None
    if recipe.objective == "hubert":
        test = split_rows(evals, "test")
        targets = target_report(args.out / "model", {"pool": pool, "test": test},
                                io.read_parquet(args.eval.parent / "truth_phones.parquet"))
    io.write_json(args.out / "summary.json", {
        "pool": [str(p) for p in args.pool], "objective": recipe.objective, "overrides": args.set,
        "device": model_params.device,
        "seed": params.seed,
        "utterances": len(pool), "hours": round(float(pool["duration"].sum()) / 3600, 3),
        "hours_per_voice": hours.to_dict(), "train": res["metrics"], "targets": targets})
    print(res["metrics"])


if __name__ == "__main__":
    main()
