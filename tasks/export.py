"""Task of the ``export`` stage: export one model and check its parity.

Each export is built in ``.work/runs/export/<fingerprint>/<name>/`` (the fingerprint covers
the source folders' contents, the params and the code), so an unchanged model is taken from
the task cache when the flow is re-run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from s6damon.config.export import ExportParams
from tasks.caching import content_cache, fingerprint

EXPORT_CODE = ("s6damon/export", "s6damon/pruning", "s6damon/salad", "s6damon/model", "s6damon/train/data.py",
               "s6damon/io.py")
RUNS = Path(".work/runs/export")


def parity_waves(manifest: Path, split: str, max_utterances: int) -> dict[str, Any]:
    """Utterance id → raw waveform of the parity split (the first ``max_utterances``; 0 = all)."""
    from s6damon import io
    from s6damon.train.data import load_audio

    df = io.read_parquet(manifest)
    df = df[df["split"] == split]
    if df.empty:
        raise FileNotFoundError(f"{manifest}: no utterances in split {split!r} for the parity check")
    if max_utterances:
        df = df.head(max_utterances)
    return {str(u): load_audio(p) for u, p in zip(df["utt_id"], df["path"])}


@task(cache_policy=content_cache(*EXPORT_CODE), persist_result=True)
def export_one(name: str, model_dir: Path, salad_dir: Path | None, manifest: Path, e: ExportParams,
               threads: int) -> dict[str, Any]:
    """Export ``model_dir`` (its ``mask.json`` applied, ``salad_dir``'s detector folded in), write
    the TorchScript/ONNX/int8 files and check parity on the split.

    Returns:
        ``{"folder", "meta", "files": {kind: MB}, "parity"}``.

    Raises:
        ParityError: an export transcribes an utterance differently (named).
    """
    import json

    import torch

    from s6damon.export import (
        OnnxRunner,
        TorchRunner,
        check_parity,
        export_model,
        load_exported,
        load_reference,
        load_torchscript,
        quantize_torch,
        to_onnx,
        to_torchscript,
    )
    from s6damon.export.quantize import quantize_onnx
    from s6damon.export.runtimes import ONNX_FILE, ONNX_INT8_FILE, TORCHSCRIPT_FILE

    torch.set_num_threads(threads)
    run_dir = RUNS / fingerprint(name, model_dir, salad_dir, manifest, e)[:16]
    ref = load_reference(model_dir, salad_dir=salad_dir)
    ltas = manifest.parent / "ltas.json"  # written by prepare when the corpus is LTAS-normalised
    folder = export_model(model_dir, run_dir / name, salad_dir=salad_dir, reference=ref,
                          ltas=ltas if ltas.exists() else None)
    exported = load_exported(folder)
    runners: dict[str, Any] = {"pytorch_exported": TorchRunner(exported.graph)}
    loose: dict[str, Any] = {}
    if e.torchscript:
        runners["torchscript"] = load_torchscript(to_torchscript(exported.graph, folder / TORCHSCRIPT_FILE))
    if e.onnx:
        runners["onnxruntime"] = OnnxRunner(to_onnx(exported.graph, folder / ONNX_FILE), threads)
    if e.quantize:
        loose["pytorch_int8"] = TorchRunner(quantize_torch(exported.graph))
        loose["onnxruntime_int8"] = OnnxRunner(quantize_onnx(folder / ONNX_FILE, folder / ONNX_INT8_FILE), threads)
    parity = check_parity(ref, runners, parity_waves(manifest, e.split, e.max_utterances),
                          max_logit_diff=e.max_logit_diff, report_only=loose)
    (folder / "parity.json").write_text(json.dumps(parity, indent=2))
    files = {f.name: round(f.stat().st_size / 2**20, 3) for f in sorted(folder.iterdir())
             if f.name in ("model.safetensors", TORCHSCRIPT_FILE, ONNX_FILE, ONNX_INT8_FILE)}
    return {"folder": str(folder), "meta": exported.meta, "files": files, "parity": parity}
