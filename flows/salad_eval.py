"""SALAD against its baselines: finetune with dropping, then WER, FLOPs and latency.

Usage::

    python -m flows.salad_eval [--params params.yaml]

At every ratio of ``salad.drop_ratios``, each method of ``salad.methods`` (SALAD with the
alignment- or CTC-label detector; uniform, random and energy dropping) finetunes the
finetuned model with that share of tokens dropped before the transformer, with the same
budget (``salad.finetune``); ``none`` gets the same budget without dropping. With
``salad.shared_adaptation`` each method instead trains one model, dropping at every ratio of
the list in turn, which is then evaluated at each ratio (6 runs instead of 21 by default).
Each model is decoded with its dropping on. Writes ``metrics/salad.json`` (``results`` rows and the
detector metrics), ``reports/salad.md``, ``plots/salad.csv`` (WER vs. GFLOPs),
per-utterance hypotheses under ``data/salad_hyps/`` and, for ``salad.drop_ratio``, the
SALAD models with their detector under ``models/salad/<method>_<ratio>/``.
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import torch
from prefect import flow, get_run_logger

from flows.cli import main
from flows.plots import markdown_table, write_curve
from flows.salad_labels import FINETUNED
from flows.salad_train import detector_path
from s6damon import io
from s6damon.config import load_params
from tasks import salad as T
from tasks.caching import run_with_outputs
from tasks.concurrency import isolate_runs, run_concurrently, threads_per_run

COLUMNS = ("method", "drop_ratio", "achieved_drop_ratio", "test_wer", "test_cer", "encoder_gflops",
           "flop_reduction", "encoder_latency_ms", "latency_p90_ms", "measured_speedup", "fallbacks")


def _export(method: str, ratio: float, model_dir: Path, detector: Path, threshold: float, merge: bool) -> None:
    """models/salad/<method>_<ratio>/: the CTC model plus its detector, threshold and whether
    dropped tokens are merged (``salad.json``)."""
    with io.atomic_path(Path("models/salad") / f"{method}_{ratio:g}") as tmp:
        shutil.copytree(model_dir, tmp)
        shutil.copyfile(detector, tmp / "salad_detector.pt")
        (tmp / "salad.json").write_text(json.dumps({"method": method, "drop_ratio": ratio, "threshold": threshold,
                                                    "merge": merge},
                                                   indent=2))


@flow(name="salad_eval")
def salad_eval(params_path: str = "params.yaml") -> dict:
    """Finetune and score every (method, drop ratio) with the same budget; FLOPs and latency."""
    from s6damon.model.factory import load_ctc_model
    from s6damon.salad.detector import load_detector
    from s6damon.salad.methods import encoder_gflops, is_salad

    params = load_params(params_path)
    s = params.salad
    log = get_run_logger()
    manifest = Path(params.prepare.out_dir) / "manifest.parquet"
    base, _ = load_ctc_model(FINETUNED)
    runs = [("none", 0.0)] + [(m, float(r)) for r in s.drop_ratios for m in s.methods]

    def adapted_on(method: str, ratio: float) -> tuple[float, ...]:
        """The drop ratios the model of a cell trains at: its own, or (shared adaptation) every ratio."""
        return tuple(float(r) for r in s.drop_ratios) if s.shared_adaptation and method != "none" else (ratio,)

    # what is trained: one run per distinct (method, ratios), in the order of the cells
    train_runs = list(dict.fromkeys((method, adapted_on(method, ratio)) for method, ratio in runs))
    rows, lat_runs, detector_metrics = [], [], json.loads(Path("metrics/salad_detector.json").read_text())
    detectors = {}
    for method, _ in runs:
        det_path = detector_path(method.removeprefix("salad_")) if is_salad(method) else None
        if det_path is not None and not det_path.exists():
            raise FileNotFoundError(f"{det_path}: no detector (run the salad_train stage first)")
        detectors[method] = det_path
    threads, isolate = threads_per_run(params.threads, params.concurrent_runs), isolate_runs(params.concurrent_runs)
    # every run adapts the same finetuned model with its conv encoder frozen: one feature cache serves all
    features = (run_with_outputs(T.cache_features, FINETUNED, manifest, s.finetune, params.threads,
                                 outputs=lambda r: [r]) if s.finetune.feature_cache else None)
    results = run_concurrently([
        lambda method=method, ratios=ratios: run_with_outputs(
            T.drop_finetune, method, list(ratios), FINETUNED, detectors[method], params.model, s.finetune, manifest,
            params.seed, s.merge_dropped, threads, isolate=isolate, feature_cache=features,
            outputs=lambda r: [r["model_dir"]])
        for method, ratios in train_runs], params.concurrent_runs)
    trained = dict(zip(train_runs, results, strict=True))
    for method, ratio in runs:
        ratios = adapted_on(method, ratio)
        fin = trained[(method, ratios)]
        det_path = detectors[method]
        name = f"{method}_{ratio:g}"
        scores = {}
        for split in s.eval_splits:
            hyps, scores[split] = T.evaluate_drop(Path(fin["model_dir"]), method, ratio, det_path, manifest, split,
                                                  params.seed, s.merge_dropped, params.threads)
            io.write_parquet(Path("data/salad_hyps") / f"{name}_{split}.parquet", hyps)
        test = scores["test"]
        det, thresholds = (load_detector(det_path)[:2] if det_path else (None, {}))
        cost = encoder_gflops(base, 1.0 - test["achieved_drop_ratio"], s.latency_seconds, det)
        row = {"method": method, "drop_ratio": ratio, "achieved_drop_ratio": test["achieved_drop_ratio"],
               "test_wer": test["wer"], "test_cer": test["cer"], "encoder_gflops": cost["gflops"],
               "flop_reduction": cost["flop_reduction"], "fallbacks": test["fallbacks"],
               "train_seconds": fin["metrics"]["train_seconds"], "adapted_on": list(ratios)}
        row.update({f"{split}_{k}": scores[split][k] for split in s.eval_splits if split != "test" for k in ("wer", "cer")})
        rows.append(row)
        lat_runs.append({"name": name, "model_dir": fin["model_dir"], "method": method, "ratio": ratio,
                         "detector": str(det_path) if det_path else "", "merge": s.merge_dropped})
        if is_salad(method) and abs(ratio - s.drop_ratio) < 1e-9:
            _export(method, ratio, Path(fin["model_dir"]), det_path, thresholds[ratio], s.merge_dropped)
        log.info("%s: WER %.3f CER %.3f drop %.3f", name, test["wer"], test["cer"], test["achieved_drop_ratio"])

    latency = T.measure_latency(lat_runs, manifest, s.latency_seconds, s.latency_repeats, params.seed, params.threads)
    dense_ms = latency["none_0"]["median_ms"]
    for row, run in zip(rows, lat_runs):
        lat = latency[run["name"]]
        row.update(encoder_latency_ms=lat["median_ms"], latency_p90_ms=lat["p90_ms"],
                   measured_speedup=dense_ms / lat["median_ms"])

    source = s.sources[0]
    metrics = {
        "results": rows,
        "detector": {"source": source, **{k: detector_metrics[source][k] for k in
                                          ("precision", "recall", "f1", "drop_ratio", "flops_share")},
                     "per_source": {src: detector_metrics[src] for src in s.sources}},
        "latency": {"input_seconds": s.latency_seconds, "repeats": s.latency_repeats, "threads": params.threads,
                    "torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor()},
        "seed": params.seed,
        "shared_adaptation": s.shared_adaptation,
        "adaptation_steps": s.finetune.steps,
    }
    io.write_json("metrics/salad.json", metrics)
    write_curve("plots/salad.csv", [{c: r[c] for c in ("method", "drop_ratio", "encoder_gflops", "test_wer",
                                                       "encoder_latency_ms")} for r in rows])
    io.write_text("reports/salad.md", "# SALAD vs. token-dropping baselines\n\n" + markdown_table(rows, COLUMNS))
    log.info("salad_eval:\n%s", markdown_table(rows, COLUMNS))
    return metrics


if __name__ == "__main__":
    main(salad_eval)
