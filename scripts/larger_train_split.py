"""Render the train split of a larger corpus plan, keeping the evaluation splits of an existing corpus.

For measuring what more training audio of the same voices buys with the evaluation sets held
fixed (docs/experiments/recipe.md, "More training audio and a longer budget"). The plan is
the one ``prepare`` would make at ``--minutes`` (same seed, voices and augmentation); train
utterances whose text occurs in the existing corpus's dev, test or test_open are left out,
so no evaluation text is trained on. The written manifest holds the new train rows and the
existing corpus's other rows (paths made absolute).

With ``--voices`` only the plan's train utterances of those voices are rendered, and with
``--add`` they join the existing corpus's own train rows instead of replacing them: the same
corpus plus, say, a new family's utterances (recipe.md, "Recorded female voices"). Where the
existing corpus is LTAS-normalised the written rows point at its raw audio (``raw_path``), to
be normalised again with the new train set by ``scripts/ltas_corpus.py``.

Usage::

    .venv/bin/python scripts/larger_train_split.py --minutes 180 \\
        --base data/corpus/manifest.parquet --out /tmp/corpus180
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s6damon import io  # noqa: E402
from s6damon.config import load_params  # noqa: E402
from s6damon.corpus.build import render_shard  # noqa: E402
from s6damon.corpus.plan import plan_corpus  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, required=True, help="prepare.synth.minutes of the larger plan")
    ap.add_argument("--base", type=Path, required=True, help="manifest whose dev/test/test_open are kept")
    ap.add_argument("--out", type=Path, required=True, help="folder for the wavs and manifest.parquet")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--voices", nargs="+", help="render only the plan's train utterances of these voices")
    ap.add_argument("--add", action="store_true", help="keep the existing corpus's train rows as well")
    args = ap.parse_args()

    params = load_params(args.params)
    synth = dataclasses.replace(params.prepare.synth, minutes=args.minutes)
    specs = plan_corpus(dataclasses.replace(params.prepare, synth=synth), params.seed)
    base = io.read_parquet(args.base)
    if "raw_path" in base:  # an LTAS-normalised corpus: its raw audio, normalised again later
        base = base.assign(path=base["raw_path"]).drop(columns="raw_path")
    eval_texts = set(base.loc[base["split"] != "train", "text"])
    planned = [s for s in specs if s.split == "train" and (not args.voices or s.voice in args.voices)]
    train = [s for s in planned if s.text not in eval_texts]
    # the existing rows the new train rows join: every split with --add, else the evaluation splits
    held = (base if args.add else base[base["split"] != "train"]).copy()
    print(f"planned {len(planned)} train utterances{' of ' + ', '.join(args.voices) if args.voices else ''}, "
          f"{len(train)} kept (the rest say an evaluation text)")
    out = args.out.resolve()
    shards = [train[i:i + params.prepare.synth.shard_size] for i in range(0, len(train), params.prepare.synth.shard_size)]
    with ProcessPoolExecutor(args.jobs) as pool:
        rendered = list(pool.map(render_shard, shards, [out] * len(shards),
                                 [params.prepare.sample_rate] * len(shards)))
    # relative manifest paths are relative to the repository root, where this runs
    held["path"] = [str(Path(p).resolve()) for p in held["path"]]
    manifest = pd.concat([*(r[0] for r in rendered), held], ignore_index=True)
    io.write_parquet(out / "manifest.parquet", manifest)
    print(manifest.groupby("split")["duration"].agg(["count", "sum"]))


if __name__ == "__main__":
    main()
