"""SAFARI structured pruning against OMP, PARP (two variants), PARP + masked finetune,
random masks and a small dense model, at equal encoder FLOPs.

Usage::

    python -m flows.safari [--params params.yaml]

For every level of ``safari.sparsities`` (share of the encoder's FLOPs for a 10 s input
removed) and every method of ``safari.methods``, one finetuning run with the same budget
(``safari.finetune``), plus one dense run (the reference and OMP's dense finetune). Each
run's deployed model is decoded on the test split. Writes ``metrics/safari.json``,
``reports/safari.md``, ``plots/safari_wer_flops.csv``, ``plots/safari_layers.csv`` and the
SAFARI models (weights + ``mask.json``) to ``models/safari/safari_<level>/``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.cli import main
from flows.finetune import resolve_init
from flows.plots import write_curve
from s6damon import io
from s6damon.config import load_params
from s6damon.config.safari import METHODS
from s6damon.errors import InputError
from tasks import safari as S
from tasks.caching import run_with_outputs
from tasks.concurrency import isolate_runs, run_concurrently, threads_per_run

MODELS = Path("models/safari")
FINETUNED = Path("models/finetuned")


def start_model(sp) -> Path | None:
    """The model every run of ``safari`` (a ``SafariParams``) starts from.

    From the pretrained model every run needs the whole finetuning budget of the finetune stage
    (4000 steps on the default profile) before its WER means anything; 22 such runs do not fit
    a CPU, so by default every method starts from the finetuned model instead. None: random init.
    """
    init = resolve_init() if sp.start == "pretrained" else FINETUNED
    if init is not None and not Path(init).is_dir():
        raise FileNotFoundError(f"{init}: no starting model for 'safari.start: {sp.start}' (run that stage first)")
    return init


def teacher_model(sp) -> Path | None:
    """The distillation teacher of a run's settings (the finetuned model), or None without distillation."""
    return FINETUNED if sp.finetune.distills else None


def _train(method: str, level: float, init, base, params, manifest: Path) -> dict[str, Any]:
    def outputs(r: dict[str, Any]) -> list[str]:
        return [r["model_dir"]] + ([r["mask_path"]] if r["mask_path"] else [])

    # Only what changes the run goes into its cache key: the other levels and methods, and the
    # settings of other methods, do not, so adding a level or a method, changing a SAFARI-only
    # key, or resuming a killed flow reuses every finished run it can.
    sp = params.safari.for_run(method)
    if base is not None:  # as paths, so the cache key hashes the files' contents
        base = {k: Path(base[k]) for k in ("model_dir", "mask_path") if base.get(k)}
    teacher = teacher_model(sp)
    try:
        return run_with_outputs(S.train_run, method, level, init, base, params.model, sp, manifest, params.seed,
                                threads_per_run(params.threads, params.concurrent_runs), teacher,
                                isolate=isolate_runs(params.concurrent_runs), outputs=outputs)
    except ValueError as err:
        raise InputError(f"params: 'safari.sparsities' level {level} for {method}: {err}") from err


def _row(method: str, level: float, run: dict[str, Any], params, manifest: Path) -> dict[str, Any]:
    _, score = S.evaluate_run(Path(run["model_dir"]), Path(run["mask_path"]) if run["mask_path"] else None,
                              run["unstructured"], manifest, "test", params.threads, params.safari.eval_seconds)
    return {"method": method, "flops_removed": level, "test_wer": score["wer"], "test_cer": score["cer"],
            "params": score["params"], "gflops": round(score["gflops"], 4),
            "flops_removed_actual": round(score["flops_removed_actual"], 4),
            "train_seconds": run["metrics"].get("train_seconds"), "steps": run["metrics"].get("steps")}


Key = tuple[str, float]
Chain = Callable[[], dict[Key, dict[str, Any]]]


def _chains(wanted: list[str], levels: list[float], init, params, manifest: Path) -> list[Chain]:
    """The runs of the stage as independent chains, longest first; a chain runs in order the
    runs that continue from another: ``dense`` then ``omp`` at every level, and per level
    ``parp_structured`` then ``parp_masked_finetune``. Each chain returns its runs by
    ``(method, level)``."""
    def train(method: str, level: float, base: dict[str, Any] | None = None) -> dict[str, Any]:
        return _train(method, level, init, base, params, manifest)

    def dense_then_omp() -> dict[Key, dict[str, Any]]:
        runs = {("dense", 0.0): train("dense", 0.0)}
        for level in levels if "omp" in wanted else []:
            runs["omp", level] = train("omp", level, runs["dense", 0.0])
        return runs

    def parp_then_masked(level: float) -> Chain:
        def chain() -> dict[Key, dict[str, Any]]:
            # parp_masked_finetune needs parp_structured's result even when that row is not reported
            runs = {("parp_structured", level): train("parp_structured", level)}
            if "parp_masked_finetune" in wanted:
                runs["parp_masked_finetune", level] = train("parp_masked_finetune", level, runs["parp_structured", level])
            return runs
        return chain

    def single(method: str, level: float) -> Chain:
        return lambda: {(method, level): train(method, level)}

    chains: list[Chain] = [dense_then_omp]
    for level in levels:
        if "parp_structured" in wanted or "parp_masked_finetune" in wanted:
            chains.append(parp_then_masked(level))
        chains += [single(m, level) for m in wanted if m not in ("omp", "parp_structured", "parp_masked_finetune")]
    return chains


def _per_layer(run: dict[str, Any]) -> dict[str, Any]:
    """Learned kept units per layer of a SAFARI run, and the initial distribution (`safari.criterion`)."""
    from s6damon.pruning.masks import load_mask
    from s6damon.safari.selection import kept_per_layer

    folder = Path(run["model_dir"]).parent
    final = kept_per_layer(load_mask(run["mask_path"]))
    return final | {"initial": kept_per_layer(load_mask(folder / "initial_mask.json")),
                    "adjustments": len(list((folder / "masks").glob("step_*.json"))) - 1}


def _layer_rows(per_layer: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for level, dist in per_layer.items():
        for kind in ("heads", "neurons", "conv_channels"):
            for i, (kept, first) in enumerate(zip(dist[kind], dist["initial"][kind], strict=True)):
                rows.append({"level": float(level), "kind": kind, "layer": i, "kept": kept, "initial_kept": first})
    return rows


def _report(rows: list[dict[str, Any]], per_layer: dict[str, Any]) -> str:
    lines = ["# SAFARI and baselines at equal encoder FLOPs (test split)", "",
             "| method | FLOPs removed (target) | removed (actual) | GFLOPs (10 s) | params | test WER | test CER |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['flops_removed']:.2f} | {r['flops_removed_actual']:.3f} | "
                     f"{r['gflops']:.3f} | {r['params']:,} | {r['test_wer']:.4f} | {r['test_cer']:.4f} |")
    lines += ["", "## SAFARI: kept units per layer (learned; initial mask in brackets)", ""]
    for level, dist in per_layer.items():
        for kind in ("heads", "neurons", "conv_channels"):
            pairs = ", ".join(f"{k} ({i})" for k, i in zip(dist[kind], dist["initial"][kind], strict=True))
            lines.append(f"- {level} {kind}: {pairs}")
    return "\n".join(lines) + "\n"


def _export(level: float, run: dict[str, Any]) -> None:
    # Named like the SALAD folders (method_level), so export and evaluate tables say what each model is.
    with io.atomic_path(MODELS / f"safari_{level:g}") as tmp:
        shutil.copytree(run["model_dir"], tmp)
        shutil.copy(run["mask_path"], Path(tmp) / "mask.json")


@flow(name="safari")
def safari(params_path: str = "params.yaml") -> dict[str, Any]:
    """Train and score SAFARI and its baselines at every FLOPs level."""
    params = load_params(params_path)
    sp = params.safari
    log = get_run_logger()
    manifest = Path(params.prepare.out_dir) / "manifest.parquet"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest}: no corpus manifest (run the prepare stage first)")
    init = start_model(sp)
    wanted = [m for m in METHODS if m in sp.methods]
    levels = [float(level) for level in sp.sparsities]
    runs: dict[Key, dict[str, Any]] = {}
    for done in run_concurrently(_chains(wanted, levels, init, params, manifest), params.concurrent_runs):
        runs.update(done)
    order = [("dense", 0.0)] + [(m, level) for level in levels for m in wanted]
    rows = [_row(*key, runs[key], params, manifest) for key in order]  # after training: all threads are free
    per_layer: dict[str, Any] = {}
    for level in levels if "safari" in wanted else []:
        per_layer[f"{level:g}"] = _per_layer(runs["safari", level])
        _export(level, runs["safari", level])
    metrics = {"results": rows, "per_layer": per_layer, "seed": params.seed,
               "budget": {"steps": sp.finetune.steps, "batch_seconds": sp.finetune.batch_seconds},
               "init": str(init) if init else "random"}
    io.write_json("metrics/safari.json", metrics)
    io.write_text("reports/safari.md", _report(rows, per_layer))
    write_curve("plots/safari_wer_flops.csv", [{k: r[k] for k in ("method", "flops_removed", "gflops", "test_wer",
                                                                 "test_cer", "params")} for r in rows])
    write_curve("plots/safari_layers.csv", _layer_rows(per_layer))
    log.info("safari: %s", json.dumps(rows))
    return metrics


if __name__ == "__main__":
    main(safari)
