"""Self-supervised pretraining of the default tiny model (``pretrain.objective``: wav2vec 2.0's
contrastive loss, or HuBERT-style masked prediction of MFCC clusters).

Usage::

    python -m flows.pretrain [--params params.yaml]

Writes a Hugging Face checkpoint folder to ``models/pretrained``, ``metrics/pretrain.json``
and the loss curve ``plots/pretrain.csv``. When ``model.init`` names a local checkpoint
folder, pretraining is skipped and ``models/pretrained/source.json`` points at that folder
(with its content hash, so DVC re-runs finetuning when the checkpoint changes); with
``pretrain.enabled: false`` it records that finetuning starts from random init. With the
hubert objective on a synthesised corpus the metrics also say how well its k-means targets
predict the synthesiser's phones (``targets``: PNMI and purity on the pretraining audio and
on the test voices).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from prefect import flow, get_run_logger

from flows.cli import main
from flows.plots import write_curve
from s6damon import io
from s6damon.config import load_params
from tasks import train as T
from tasks.caching import run_with_outputs

OUT = Path("models/pretrained")


@flow(name="pretrain")
def pretrain(params_path: str = "params.yaml") -> dict:
    """Pretrain the tiny model (or point at ``model.init``)."""
    params = load_params(params_path)
    log = get_run_logger()
    if not params.pretrain.enabled:
        with io.atomic_path(OUT) as tmp:
            tmp.mkdir()
            io.write_json(tmp / "source.json", {"init": None})
        metrics = {"skipped": True, "init": None}
        log.info("pretrain.enabled is false: finetuning starts from random init")
    elif params.model.init:
        init = Path(params.model.init)
        if not init.is_dir():
            raise FileNotFoundError(f"params: 'model.init' names {init}, which is not a checkpoint folder")
        with io.atomic_path(OUT) as tmp:
            tmp.mkdir()
            io.write_json(tmp / "source.json", {"init": str(init.resolve()), "content_hash": io.hash_path(init)})
        metrics = {"skipped": True, "init": str(init)}
        log.info("model.init is set: pretraining skipped, finetuning starts from %s", init)
    else:
        manifest = Path(params.prepare.out_dir) / "manifest.parquet"
        result = run_with_outputs(T.pretrain, params.model, params.pretrain, manifest, params.seed,
                                  params.threads, outputs=lambda r: [r["model_dir"]])
        with io.atomic_path(OUT) as tmp:
            shutil.copytree(result["model_dir"], tmp)
        write_curve("plots/pretrain.csv", result["history"])
        metrics = {"skipped": False, "seed": params.seed, **result["metrics"]}
        if params.pretrain.objective == "hubert":
            metrics["targets"] = _hubert_targets(Path(result["model_dir"]), manifest, params.pretrain.splits, log)
    io.write_json("metrics/pretrain.json", metrics)
    return metrics


def _hubert_targets(model_dir: Path, manifest: Path, splits: list[str], log: logging.Logger | logging.LoggerAdapter
                    ) -> dict | None:
    """The hubert targets' phone quality, or None (logged) where the corpus has no timings."""
    truth = manifest.parent / "truth_phones.parquet"
    if not truth.is_file():
        log.info("no %s (not a synthesised corpus): the hubert targets' phone quality is not measured", truth)
        return None
    return T.hubert_targets(model_dir, manifest, splits, truth)


if __name__ == "__main__":
    main(pretrain)
