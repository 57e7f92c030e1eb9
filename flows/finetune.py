"""CTC finetuning, greedy decoding and WER/CER, beside a from-scratch baseline.

Usage::

    python -m flows.finetune [--params params.yaml]

Finetunes the pretrained model (or ``model.init``) into ``models/finetuned`` and, as the
baseline that shows what pretraining buys, the same model from random init with the same
budget into ``models/scratch`` (its conv encoder always trains: :func:`scratch_recipe`). Writes per-utterance hypotheses
(``data/hyps/<model>_<split>.parquet``), ``metrics/finetune.json`` and the training curves
``plots/finetuned.csv`` and ``plots/scratch.csv``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from prefect import flow, get_run_logger

from flows.cli import main
from flows.plots import write_curve
from s6damon import io
from s6damon.config import load_params
from s6damon.config.model import FinetuneParams
from tasks import train as T
from tasks.caching import run_with_outputs
from tasks.concurrency import effective_jobs, isolate_runs, run_concurrently, threads_per_run

PRETRAINED = Path("models/pretrained")
EVAL_SPLITS = ("dev", "test", "test_open")


def resolve_init(pretrained: Path = PRETRAINED) -> Path | None:
    """The checkpoint finetuning starts from: the pretrain stage's output, ``model.init``, or
    None (random init) when pretraining is disabled."""
    pointer = pretrained / "source.json"
    if pointer.exists():
        init = json.loads(pointer.read_text())["init"]
        return Path(init) if init else None
    if not pretrained.is_dir():
        raise FileNotFoundError(f"{pretrained}: no pretrained model (run the pretrain stage first)")
    return pretrained


def scratch_recipe(p: FinetuneParams) -> FinetuneParams:
    """The from-scratch baseline's recipe: the same budget, but its conv encoder trains to the end.

    A frozen (or cached) encoder is part of the recipe for a pretrained model; frozen at
    random init, or late in finetuning after fewer steps than a pretrained one had
    (``freeze_feature_encoder_from``), it would handicap the baseline rather than show what
    pretraining buys.
    """
    return dataclasses.replace(p, freeze_feature_encoder_steps=0, freeze_feature_encoder_from=None,
                               feature_cache=False)


def _train_and_score(name: str, init: Path | None, params, manifest: Path, splits,
                     recipe: FinetuneParams | None = None) -> dict:
    """Finetune one model, copy it to models/<name>, decode and score the given splits."""
    threads = threads_per_run(params.threads, params.concurrent_runs)
    result = run_with_outputs(T.finetune, init, params.model, recipe or params.finetune, manifest, params.seed,
                              threads, isolate=isolate_runs(params.concurrent_runs), outputs=lambda r: [r["model_dir"]])
    with io.atomic_path(Path("models") / name) as tmp:
        shutil.copytree(result["model_dir"], tmp)
    write_curve(f"plots/{name}.csv", result["history"])
    present = set(io.read_parquet(manifest)["split"])
    scores: dict = {"train": result["metrics"]}
    for split in splits:
        if split not in present:
            continue
        hyps, score = T.evaluate(Path("models") / name, manifest, split, threads)
        io.write_parquet(Path("data/hyps") / f"{name}_{split}.parquet", hyps)
        scores[split] = score
    return scores


@flow(name="finetune")
def finetune(params_path: str = "params.yaml") -> dict:
    """Finetune with CTC and score dev/test/test_open, for the model and its scratch baseline."""
    params = load_params(params_path)
    log = get_run_logger()
    manifest = Path(params.prepare.out_dir) / "manifest.parquet"
    init = resolve_init()
    # The same model and finetuning budget from random init, trained beside it: what pretraining buys.
    finetuned, scratch = run_concurrently([
        lambda: _train_and_score("finetuned", init, params, manifest, EVAL_SPLITS),
        # scored on the same splits: dev too, so the pretraining's gain on seen voices is read
        # from the stage's own hypotheses (a paired bootstrap) rather than a separate decode
        lambda: _train_and_score("scratch", None, params, manifest, EVAL_SPLITS,
                                 recipe=scratch_recipe(params.finetune))], params.concurrent_runs)
    metrics: dict = {**finetuned, "scratch": scratch}
    metrics["concurrent_runs"] = effective_jobs(params.concurrent_runs)
    metrics["seed"] = params.seed
    metrics["init"] = str(init) if init else "random"
    io.write_json("metrics/finetune.json", metrics)
    log.info("finetune: %s", metrics)
    return metrics


if __name__ == "__main__":
    main(finetune)
