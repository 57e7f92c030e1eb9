"""Train the SALAD salience detector of each label source and calibrate its thresholds.

Usage::

    python -m flows.salad_train [--params params.yaml]

For each source in ``salad.sources``, a small conv detector on the finetuned model's conv
features is trained with BCE on the train labels; on dev, a threshold is chosen for every
ratio of ``salad.drop_ratios`` and ``salad.drop_ratio``. Writes
``models/salad_detector/detector_<source>.pt`` and ``metrics/salad_detector.json``
(dev precision/recall/F1 of salient tokens at ``salad.drop_ratio``, the achieved drop
ratio, the detector's FLOPs as a share of the encoder's).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import flow, get_run_logger

from flows.cli import main
from flows.salad_labels import FINETUNED, LABELS
from s6damon import io
from s6damon.config import load_params
from tasks import salad as T
from tasks.caching import run_with_outputs

DETECTORS = Path("models/salad_detector")


def detector_path(source: str) -> Path:
    """Where the salad_train stage puts the detector of ``source``."""
    return DETECTORS / f"detector_{source}.pt"


@flow(name="salad_train")
def salad_train(params_path: str = "params.yaml") -> dict:
    """Fit one detector per label source; thresholds for every drop ratio chosen on dev."""
    params = load_params(params_path)
    s = params.salad
    manifest = Path(params.prepare.out_dir) / "manifest.parquet"
    metrics: dict = {}
    for source in s.sources:
        res = run_with_outputs(T.fit_detector, LABELS, source, manifest, FINETUNED, s.detector,
                               list(s.drop_ratios), s.drop_ratio, params.seed, params.threads,
                               outputs=lambda r: [r["path"]])
        dest = detector_path(source)
        with io.atomic_path(dest) as tmp:
            shutil.copyfile(res["path"], tmp)
        metrics[source] = {**res["metrics"], "thresholds": {f"{k:g}": v for k, v in res["thresholds"].items()}}
    metrics["seed"] = params.seed
    io.write_json("metrics/salad_detector.json", metrics)
    get_run_logger().info("salad_train: %s", metrics)
    return metrics


if __name__ == "__main__":
    main(salad_train)
