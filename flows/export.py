"""Physical export of every model the pipeline produced, with TorchScript, ONNX and int8 copies.

Usage::

    python -m flows.export [--params params.yaml]

For every folder matched by ``export.models`` (default: ``models/finetuned``, the SALAD
models ``models/salad/*`` and, once the SAFARI stage has run, ``models/safari/*``): the
model's ``mask.json`` (if any) is materialised — a physically smaller dense model with
per-layer sizes in its config — and a SALAD folder's detector and threshold are carried
inside. Each export gets ``model.ts``, ``model.onnx`` and ``model.int8.onnx``, and must
transcribe the ``export.split`` utterances exactly like the PyTorch-masked model in every
runtime, or the stage fails naming the utterance. Writes ``models/export/<name>/`` and
``metrics/export.json``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import flow, get_run_logger

from flows.cli import main
from s6damon import io
from s6damon.config import load_params
from s6damon.export.folder import MASK_FILE, SALAD_FILE
from tasks import export as T
from tasks.caching import run_with_outputs

OUT = Path("models/export")


def discover(patterns: list[str], salad_with_masked: str = "") -> list[tuple[str, Path, Path | None]]:
    """``(name, model folder, SALAD folder or None)`` of every model to export.

    A pattern with ``*`` is a glob; folders without ``config.json`` and patterns matching
    nothing are skipped (the SAFARI models appear once their stage has run). Names are the
    folder names; ``salad_with_masked`` adds ``<masked>+<salad>`` for every masked folder.

    Raises:
        ValueError: two folders would get the same name.
    """
    found: list[tuple[str, Path, Path | None]] = []
    for pattern in patterns:
        paths = sorted(Path().glob(pattern)) if any(c in pattern for c in "*?[") else [Path(pattern)]
        for p in paths:
            if (p / "config.json").is_file():
                found.append((p.name, p, p if (p / SALAD_FILE).is_file() else None))
    if salad_with_masked:
        salad = Path(salad_with_masked)
        if not (salad / SALAD_FILE).is_file():
            raise FileNotFoundError(f"{salad / SALAD_FILE}: 'export.salad_with_masked' is not a SALAD model folder")
        found += [(f"{name}+{salad.name}", p, salad) for name, p, _ in list(found) if (p / MASK_FILE).is_file()]
    names = [n for n, _, _ in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"export.models: several folders are named {dupes}; rename one")
    return found


@flow(name="export")
def export(params_path: str = "params.yaml") -> dict:
    """Export every model (pruned, SALAD inside, TorchScript/ONNX/int8) and check parity."""
    params = load_params(params_path)
    e = params.export
    log = get_run_logger()
    manifest = Path(params.prepare.out_dir) / "manifest.parquet"
    models = discover(e.models, e.salad_with_masked)
    if not models:
        raise FileNotFoundError(f"export.models {e.models}: no model folder found (run finetune first)")
    results = {}
    for name, model_dir, salad_dir in models:
        results[name] = run_with_outputs(T.export_one, name, model_dir, salad_dir, manifest, e, params.threads,
                                         outputs=lambda r: [r["folder"]])
        p = results[name]["parity"]
        log.info("%s: %d params, parity on %d utterances, max |logit diff| %s", name, results[name]["meta"]["params"],
                 p["utterances"], p["max_abs_logit_diff"])
    with io.atomic_path(OUT) as tmp:
        tmp.mkdir(parents=True)
        for name, r in results.items():
            shutil.copytree(r["folder"], tmp / name)
    metrics = {
        "split": e.split,
        "utterances": next(iter(results.values()))["parity"]["utterances"],
        "all_identical": all(r["parity"]["transcripts_identical"] for r in results.values()),
        "models": {name: {"source": r["meta"]["source"], "mask": r["meta"]["mask"], "salad": r["meta"]["salad"],
                          "params": r["meta"]["params"], "dense_params": r["meta"]["dense_params"],
                          "param_ratio": r["meta"]["params"] / r["meta"]["dense_params"],
                          "files_mb": r["files"], "parity": r["parity"]} for name, r in results.items()},
        "seed": params.seed,
    }
    io.write_json("metrics/export.json", metrics)
    return metrics


if __name__ == "__main__":
    main(export)
