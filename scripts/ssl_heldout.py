"""Score saved wav2vec 2.0 pretraining checkpoints with their contrastive loss on held-out audio.

Usage::

    .venv/bin/python scripts/ssl_heldout.py --models models/pretrained /tmp/pt2400/model \
        --out /tmp/ssl_heldout.json

For each checkpoint folder (a ``Wav2Vec2ForPreTraining`` folder, as the pretrain stage and
``scripts/pretrain_pilot.py`` save them) the loss of
:func:`s6damon.train.pretrain.heldout_loss` on four sets of the manifest: a fixed sample of
the train split (what pretraining fitted), the dev split's utterances of voices in the train
split and of voices not in it, and the test split (voices never trained on). Every model
scores the same masks and negatives, so the rows compare: how far a lower training loss
carries to held-out texts and to new voices. A diagnostic: nothing here selects a model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s6damon import io  # noqa: E402
from s6damon.config import load_params  # noqa: E402
from s6damon.train.data import SAMPLE_RATE  # noqa: E402
from s6damon.train.pretrain import (  # noqa: E402
    build_pretraining_model,
    contrastive_objective,
    heldout_audio,
    heldout_loss,
    heldout_sets,
)


def eval_sets(manifest: pd.DataFrame, train_sample: int, seed: int) -> dict[str, pd.DataFrame]:
    """The four held-out sets of ``manifest`` (rows with absolute paths)."""
    train = manifest[manifest["split"] == "train"]
    sample = train.sample(n=min(train_sample, len(train)), random_state=seed)
    sets = {"train_sample": sample, **heldout_sets(manifest[manifest["split"] == "dev"], train),
            "test": manifest[manifest["split"] == "test"]}
    return {name: rows.reset_index(drop=True) for name, rows in sets.items() if len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, nargs="+", required=True, help="pretraining checkpoint folders")
    ap.add_argument("--manifest", type=Path, default=Path("data/corpus/manifest.parquet"))
    ap.add_argument("--params", default="params.yaml", help="pretrain.* recipe (masking, negatives, crop length)")
    ap.add_argument("--train-sample", type=int, default=200, help="train utterances scored")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True, help="JSON of {model: {set: values}}")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    p = params.pretrain
    manifest = io.read_parquet(args.manifest)
    manifest["path"] = [str(Path(x).resolve()) for x in manifest["path"]]
    sets = {name: heldout_audio(rows, p) for name, rows in eval_sets(manifest, args.train_sample, params.seed).items()}
    max_samples = int(p.max_seconds * SAMPLE_RATE)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for folder in args.models:
        model = build_pretraining_model(params.model, p, folder)  # the recipe's masking and negatives
        objective = contrastive_objective(model, p)
        results[str(folder)] = {name: heldout_loss(objective, audio, batches, max_samples, p.steps, params.seed, "cpu")
                                for name, (audio, batches) in sets.items()}
        print(folder, {name: round(v["loss"], 3) for name, v in results[str(folder)].items()}, flush=True)
    io.write_json(args.out, {"manifest": str(args.manifest), "seed": params.seed,
                             "utterances": {name: len(a.df) for name, (a, _) in sets.items()}, "models": results})


if __name__ == "__main__":
    main()
