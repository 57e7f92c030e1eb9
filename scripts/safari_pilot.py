"""Train and score one SAFARI-stage run outside the pipeline, on the stage's recipe.

For pilots of the safari stage (docs/experiments/safari.md): another seed or budget for one
method at one FLOPs level, without rerunning the stage or touching its outputs. The run is the
stage's (``s6damon.safari.methods.run_method`` with the context ``flows.safari`` builds: the same
start model, ``safari.finetune`` recipe, seed and threads from ``--params``); its deployed
(masked) model is decoded greedily on dev and test as ``flows.safari`` decodes test.

Writes ``<out>/model``, ``<out>/mask.json`` (structured methods), ``<out>/hyps_<split>.parquet``
and ``<out>/summary.json`` (WER/CER per split, params, GFLOPs, training metrics) and, with
``--against DIR`` (another pilot's ``--out``), the paired-bootstrap WER difference (this run −
that one) on each split. ``omp`` and ``parp_masked_finetune`` continue from another run: give
its pilot folder as ``--base``.

Usage (in a folder after ``dvc repro finetune``; ``p_s4321.yaml`` a copy of ``params.yaml``)::

    .venv/bin/python scripts/safari_pilot.py --method dense --level 0 --params p_s4321.yaml --out /tmp/saf/dense
    .venv/bin/python scripts/safari_pilot.py --method safari --level 0.5 --params p_s4321.yaml \\
        --out /tmp/saf/safari_0.5 --against /tmp/saf/dense
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.safari import start_model, teacher_model  # noqa: E402
from s6damon import io  # noqa: E402
from s6damon.config import load_params  # noqa: E402
from s6damon.config.safari import METHODS  # noqa: E402
from s6damon.safari.measure import evaluate  # noqa: E402
from s6damon.safari.methods import run_method  # noqa: E402
from s6damon.train.evaluate import paired_bootstrap  # noqa: E402
from tasks.safari import _context  # noqa: E402

SPLITS = ("dev", "test")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", required=True, choices=("dense", *METHODS))
    ap.add_argument("--level", type=float, required=True, help="share of encoder FLOPs removed (0 for dense)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--base", type=Path, default=None, help="omp / parp_masked_finetune: the pilot folder it continues")
    ap.add_argument("--against", type=Path, default=None, help="another pilot's folder to compare with")
    args = ap.parse_args()
    if args.method in ("omp", "parp_masked_finetune") and args.base is None:
        ap.error(f"{args.method} continues from another run: give its pilot folder as --base")
    if (args.method == "dense") != (args.level == 0):
        ap.error("--level 0 is the dense run, and only it")

    params = load_params(args.params)
    sp = params.safari.for_run(args.method)
    init = start_model(sp)
    manifest = Path(params.prepare.out_dir) / "manifest.parquet"
    teacher = teacher_model(sp)
    base = None
    if args.base is not None:
        saved = json.loads((args.base / "summary.json").read_text())["run"]
        base = {k: Path(saved[k]) for k in ("model_dir", "mask_path") if saved.get(k)}

    args.out.mkdir(parents=True, exist_ok=True)
    ctx = _context(params.model, sp, manifest, params.seed, params.threads, teacher)
    result = run_method(ctx, args.method, args.level, init, base, args.out)

    df = io.read_parquet(manifest)
    summary: dict = {"method": args.method, "level": args.level, "seed": params.seed,
                     "steps": sp.finetune.steps, "run": result.to_dict() | {"history": None}}
    for split in SPLITS:
        hyps, score = evaluate(result.model_dir, result.mask_path, result.unstructured,
                               df[df["split"] == split].reset_index(drop=True), params.threads,
                               params.safari.eval_seconds)
        io.write_parquet(args.out / f"hyps_{split}.parquet", hyps)
        summary[split] = score
        if args.against is not None:
            summary[split]["vs_against"] = paired_bootstrap(
                io.read_parquet(args.against / f"hyps_{split}.parquet"), hyps)
        print(f"{split}: WER {score['wer']:.4f} CER {score['cer']:.4f}"
              + (f"  vs {args.against}: {summary[split]['vs_against']}" if args.against else ""))
    io.write_json(args.out / "summary.json", summary)


if __name__ == "__main__":
    main()
