"""Finetune one recipe variant outside the pipeline and score it on fixed evaluation splits.

For the recipe comparisons of docs/experiments/recipe.md: the same pretrained model, a train
manifest and an evaluation manifest given explicitly, ``finetune`` params overridden on the
command line.
Writes ``<out>/model``, ``<out>/hyps_<split>.parquet`` and ``<out>/summary.json`` (WER/CER per
split and per voice, training metrics) and, with ``--against DIR`` (another pilot's folder),
the paired-bootstrap WER difference on each split.

Usage::

    .venv/bin/python scripts/finetune_pilot.py --out /tmp/pilot_default
    .venv/bin/python scripts/finetune_pilot.py --out /tmp/pilot_180_6400 \\
        --train /tmp/corpus180/manifest.parquet --set steps=6400 --set warmup_steps=640 \\
        --against /tmp/pilot_default
    # two variants side by side on a 2-core machine, one thread each
    .venv/bin/python scripts/finetune_pilot.py --out /tmp/pilot_a --threads 1 &
    .venv/bin/python scripts/finetune_pilot.py --out /tmp/pilot_b --threads 1 --set interctc_weight=0.3 &
    # the finetune stage's from-scratch control under the same recipe
    .venv/bin/python scripts/finetune_pilot.py --out /tmp/pilot_scratch --init scratch
    # no training: score a saved CTC model, also with 30 % of its tokens evenly merged
    .venv/bin/python scripts/finetune_pilot.py --out /tmp/pilot_merged --score /tmp/pilot_a/model \
        --decode-merge 0.3 --against /tmp/pilot_default

``--decode-merge R`` (repeatable) also scores the model with ``R`` of the tokens evenly merged
into their kept neighbours before the transformer (SALAD's uniform baseline with merging; the
input a model trained with ``finetune.token_merge_ratio`` to the end reads), into
``<out>/merge_<R>/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TypeVar

import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.finetune import scratch_recipe  # noqa: E402
from s6damon import io  # noqa: E402
from s6damon.config import load_params  # noqa: E402
from s6damon.config.model import AverageParams, FinetuneParams, ModelParams  # noqa: E402
from s6damon.config.schema import ParamsError, build, to_dict  # noqa: E402
from s6damon.model.factory import load_ctc_model  # noqa: E402
from s6damon.salad.methods import drop_model  # noqa: E402
from s6damon.train.evaluate import paired_bootstrap, score, transcribe  # noqa: E402
from s6damon.train.averaging import WeightAverage  # noqa: E402
from s6damon.train.finetune import finetune  # noqa: E402

SPLITS = ("dev", "test", "test_open")
T = TypeVar("T")


def override(p: T, assignments: list[str], section: str = "finetune") -> T:
    """``key=value`` assignments (YAML values) applied to a params section (the finetune recipe
    by default) and validated like ``params.yaml``: an unknown key or a bad value names
    ``<section>.<key>``. A dotted key sets a key of a nested section (``hubert.clusters=50``)."""
    data = to_dict(p)
    for kv in assignments:
        key, sep, value = kv.partition("=")
        if not sep:
            raise ParamsError(f"--set {kv!r}: expected KEY=VALUE")
        *parents, leaf = key.split(".")
        node = data
        for i, name in enumerate(parents):
            node = node.get(name)
            if not isinstance(node, dict):
                raise ParamsError(f"--set {kv!r}: '{section}.{'.'.join(parents[: i + 1])}' is not a section")
        node[leaf] = yaml.safe_load(value)
    return build(type(p), data, section)


def with_device(model: ModelParams, device: str | None) -> ModelParams:
    """``model`` with the pilots' ``--device`` applied (validated like ``model.device`` in
    ``params.yaml``); unchanged when ``device`` is None."""
    return model if device is None else override(model, [f"device={device}"], "model")


def start(init: str, recipe: FinetuneParams) -> tuple[str | None, FinetuneParams]:
    """The checkpoint to finetune (None: random init) and its recipe; ``init`` 'scratch' is the
    finetune stage's from-scratch control, whose conv encoder always trains."""
    if init == "scratch":
        return None, scratch_recipe(recipe)
    return init, recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--init", default="models/pretrained",
                    help="checkpoint folder to finetune, or 'scratch' for the finetune stage's random-init control")
    ap.add_argument("--train", type=Path, default=Path("data/corpus/manifest.parquet"))
    ap.add_argument("--eval", type=Path, default=Path("data/corpus/manifest.parquet"))
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="finetune.KEY override")
    ap.add_argument("--seed", type=int, default=None, help="default: params seed")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: params threads); 1 to run two pilots side by side")
    ap.add_argument("--against", type=Path, default=None, help="another pilot folder to compare with")
    ap.add_argument("--device", default=None, help="model.device override: cpu, cuda or auto")
    ap.add_argument("--score", type=Path, default=None, metavar="MODEL_DIR",
                    help="no training: score this saved CTC model folder")
    ap.add_argument("--decode-merge", type=float, action="append", default=[], metavar="RATIO",
                    help="also score with this share of the tokens evenly merged (in (0, 1))")
    ap.add_argument("--also-average", action="append", default=[], metavar="KIND:START[:DECAY]",
                    help="also keep this weight average during the run and score it beside the saved model "
                         "(ema:0.5:0.999, uniform:0.75: averaging from half / three quarters of the steps); "
                         "written to <out>/avg_<KIND>_<START>[_<DECAY>]")
    args = ap.parse_args()
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads must be at least 1, got {args.threads}")
    if any(not 0.0 < r < 1.0 for r in args.decode_merge):
        ap.error(f"--decode-merge ratios must lie in (0, 1), got {args.decode_merge}")
    if args.score is not None and (args.set or args.also_average or args.init != "models/pretrained"):
        ap.error("--score trains nothing: not with --set, --also-average or --init")

    params = load_params(args.params)
    init, recipe = start(args.init, override(params.finetune, args.set))
    model_params = with_device(params.model, args.device)
    seed = params.seed if args.seed is None else args.seed
    extra: dict[str, WeightAverage] = {}  # output folder name -> its averager
    for spec in args.also_average:
        name = f"avg_{spec.replace(':', '_')}"
        try:
            extra[name] = average_hook(spec, recipe.steps, name)
        except ValueError as err:
            ap.error(str(err))
    threads = params.threads if args.threads is None else args.threads
    evals = io.read_parquet(args.eval)
    if args.score is None:
        train = io.read_parquet(args.train)
        train = train[train["split"] == "train"]
        res = finetune(init, model_params, recipe, train, evals[evals["split"] == "dev"],
                       args.out / "model", args.out / "ckpt", seed, threads, hooks=list(extra.values()))
        model_dir, trained = args.out / "model", res["metrics"]
    else:
        torch.set_num_threads(threads)
        model_dir, trained = args.score, None
    model, tokenizer = load_ctc_model(model_dir)
    summary: dict = {"init": str(args.score or args.init), "train_manifest": str(args.train), "overrides": args.set,
                     "seed": seed, "device": model_params.device, "train": trained}
    summary.update(score_splits(model, tokenizer, evals, args.out, args.against))
    for ratio in args.decode_merge:
        name = f"merge_{ratio:g}"
        summary[name] = score_splits(merged_reader(model, ratio), tokenizer, evals, args.out / name, args.against,
                                     label=name)
    for name, hook in extra.items():
        # the saved model with this average's weights in (a plain CTC run: the trained module is
        # the saved model, so the names match); its own weights are back for the next average
        with hook.applied(model):
            summary[name] = {"averaged_steps": hook.count,
                             **score_splits(model, tokenizer, evals, args.out / name, label=name)}
    io.write_json(args.out / "summary.json", summary)


def score_splits(model, tokenizer, evals: pd.DataFrame, out: Path, against: Path | None = None,
                 label: str = "") -> dict[str, dict]:
    """:func:`score_split` on each of :data:`SPLITS` that ``evals`` has, printed as it goes
    (prefixed with ``label``); returns the scores by split."""
    scores = {}
    for split in SPLITS:
        rows = evals[evals["split"] == split]
        if rows.empty:
            continue
        scores[split] = score_split(model, tokenizer, rows, split, out, against)[1]
        print(*([label] if label else []), split, json.dumps(scores[split]))
    return scores


def merged_reader(model: torch.nn.Module, ratio: float) -> torch.nn.Module:
    """``model`` reading ``ratio`` of its tokens evenly merged into their kept neighbours."""
    return drop_model(model, "uniform", ratio, merge=True).eval()


def average_hook(spec: str, steps: int, key: str) -> WeightAverage:
    """The averager of an ``--also-average`` spec ``KIND:START[:DECAY]`` over ``steps`` steps."""
    kind, _, rest = spec.partition(":")
    start, _, decay = rest.partition(":")
    try:
        p = AverageParams(kind=kind, start_fraction=float(start or 0.5),
                          ema_decay=float(decay) if decay else AverageParams.ema_decay)
        hook = WeightAverage.from_params(p, steps, key)
    except ValueError as err:
        raise ValueError(f"--also-average {spec!r}: {err}") from err
    if hook is None:
        raise ValueError(f"--also-average {spec!r}: kind must be ema or uniform")
    return hook


def score_split(model, tokenizer, rows: pd.DataFrame, split: str, out: Path,
                against: Path | None = None) -> tuple[pd.DataFrame, dict]:
    """Greedy-decode ``rows`` (one split), write ``<out>/hyps_<split>.parquet``; return the
    hypotheses and their scores: WER/CER, WER per voice and, with ``against`` (another pilot's
    folder), the paired bootstrap against its hypotheses of the split."""
    hyps = transcribe(model, tokenizer, rows)
    io.write_parquet(out / f"hyps_{split}.parquet", hyps)
    # transcribe keeps the row order, so the manifest's voice column lines up with hyps
    voices = rows["voice"].to_numpy() if "voice" in rows else None
    per_voice = {} if voices is None else {v: score(hyps[voices == v])["wer"] for v in sorted(set(voices))}
    scores = {**score(hyps), "wer_per_voice": per_voice}
    if against is not None:
        other = io.read_parquet(against / f"hyps_{split}.parquet")
        scores["against"] = {"folder": str(against), **paired_bootstrap(other, hyps)}
    return hyps, scores


if __name__ == "__main__":
    main()
