"""SALAD token labels from the alignment and from the finetuned model's CTC path.

Usage::

    python -m flows.salad_labels [--params params.yaml]

Writes ``data/salad_labels/labels.parquet`` (``utt_id, split, frames`` and one list of
per-token bools per source, True = salient) for the train and dev splits, and
``metrics/salad_labels.json``: the drop ratio each source allows and how far they agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prefect import flow, get_run_logger

from flows.cli import main
from s6damon import io
from s6damon.config import load_params
from tasks import salad as T

FINETUNED = Path("models/finetuned")
LABELS = Path("data/salad_labels/labels.parquet")


def label_metrics(table, sources: list[str], tolerance: int) -> dict:
    """Achievable drop ratio per source and split, and the sources' agreement."""
    from s6damon.salad.labels import agreement

    out: dict = {"sources": {}, "tokens": int(table["frames"].sum())}
    for src in sources:
        out["sources"][src] = {}
        for split, part in table.groupby("split"):
            flat = np.concatenate([np.asarray(v, dtype=bool) for v in part[src]])
            out["sources"][src][split] = {"drop_ratio": float(1.0 - flat.mean()), "tokens": int(flat.size)}
    if {"alignment", "ctc"} <= set(sources):
        a = [np.asarray(v, dtype=bool) for v in table["ctc"]]
        b = [np.asarray(v, dtype=bool) for v in table["alignment"]]
        exact = agreement(a, b)
        near = agreement(a, b, tolerance=tolerance)
        out["agreement"] = {"accuracy": exact["accuracy"], "kappa": exact["kappa"],
                            "ctc_precision": exact["precision"], "ctc_recall": exact["recall"], "f1": exact["f1"],
                            "f1_within_tolerance": near["f1"], "tolerance_tokens": tolerance}
    return out


@flow(name="salad_labels")
def salad_labels(params_path: str = "params.yaml") -> dict:
    """Label every train/dev token salient or redundant from each source in ``salad.sources``."""
    params = load_params(params_path)
    s = params.salad
    manifest = Path(params.prepare.out_dir) / "manifest.parquet"
    align = Path(params.align.out_dir)
    table = T.derive_labels(manifest, align / "phones.parquet", align / "pauses.parquet", FINETUNED,
                            list(s.sources), s.keep_per_phone, s.min_pause_ms, s.ctc_keep_per_run, params.threads)
    io.write_parquet(LABELS, table)
    metrics = label_metrics(table, list(s.sources), s.agreement_tolerance)
    metrics["seed"] = params.seed
    io.write_json("metrics/salad_labels.json", metrics)
    get_run_logger().info("salad_labels: %s", metrics)
    return metrics


if __name__ == "__main__":
    main(salad_labels)
