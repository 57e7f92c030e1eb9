"""One table of every model the pipeline exported: WER/CER, params, GFLOPs, RTF per runtime.

Usage::

    python -m flows.evaluate [--params params.yaml]

Reads every ``models/export/<name>/`` (the export stage's output: the finetuned model, the
SALAD and SAFARI models, physically pruned, with TorchScript/ONNX/int8 copies), scores
``evaluate.split`` utterance by utterance in each runtime it ships (PyTorch eager, ONNX
Runtime, ONNX Runtime int8) and times one call on ``evaluate.seconds`` of real test speech
with ``threads`` threads, and the folder's LTAS front end (``ltas.json``) when it has one, which
the real-time factor counts. Writes ``metrics/summary.json``, ``reports/summary.md`` and
``plots/summary.csv`` (WER vs. RTF; ``pareto`` marks the rows no other row beats on both).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from flows.cli import main
from flows.plots import markdown_table, write_curve
from s6damon import io
from s6damon.config import load_params

EXPORTS = Path("models/export")
COLUMNS = ("model", "runtime", "test_wer", "test_cer", "params", "gflops", "latency_ms", "front_end_ms", "rtf",
           "pareto")


@flow(name="evaluate")
def evaluate(params_path: str = "params.yaml") -> dict:
    """Score and time every exported model in every runtime; mark the WER-vs-RTF Pareto front."""
    import torch

    from s6damon.export.folder import load_exported, prepare_wave
    from s6damon.export.summary import add_latency, pareto_front, summarise, timing_input

    params = load_params(params_path)
    e = params.evaluate
    torch.set_num_threads(params.threads)
    manifest = io.read_parquet(Path(params.prepare.out_dir) / "manifest.parquet")
    df = manifest[manifest["split"] == e.split].sort_values("utt_id")
    if df.empty:
        raise ValueError(f"evaluate.split: no {e.split!r} utterances in the manifest")
    folders = sorted(p for p in EXPORTS.iterdir() if (p / "export.json").is_file()) if EXPORTS.is_dir() else []
    if not folders:
        raise FileNotFoundError(f"{EXPORTS}: no exported models (run the export stage first)")
    waves = [prepare_wave(p) for p in df["path"]]
    timing = timing_input(list(df["path"]), e.seconds)
    rows, exports, runs = [], {}, {}
    for folder in folders:
        exports[folder.name] = load_exported(folder)
        model_rows, model_runs = summarise(folder.name, exports[folder.name], list(df["text"]), waves, params.threads)
        rows += model_rows
        runs.update({(folder.name, runtime): run for runtime, run in model_runs.items()})
    add_latency(rows, exports, runs, timing, e.repeats)  # round-robin over every model and runtime
    for row, front in zip(rows, pareto_front(rows)):
        row["pareto"] = front
    metrics = {"rows": rows, "split": e.split, "input_seconds": e.seconds, "repeats": e.repeats,
               "threads": params.threads, "seed": params.seed}
    io.write_json("metrics/summary.json", metrics)
    io.write_text("reports/summary.md", "# Every exported model\n\n" + markdown_table(rows, COLUMNS))
    write_curve("plots/summary.csv", [{k: r[k] for k in ("model", "runtime", "rtf", "test_wer")} for r in rows])
    get_run_logger().info("evaluate:\n%s", markdown_table(rows, COLUMNS))
    return metrics


if __name__ == "__main__":
    main(evaluate)
