"""Tasks of the SALAD stages: token labels, detector training, finetuning with dropping.

Every task is cached on the contents of the files it reads, its params and the core source
it runs, so a killed flow resumes at the first unfinished task; each finetuning run also
resumes from its own checkpoints in ``.work/runs/salad/<key>/``, named from the task run's
cache key (:func:`tasks.runs.run_folder`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from s6damon import io
from s6damon.config.model import FinetuneParams, ModelParams
from s6damon.config.salad import DetectorParams
from tasks.caching import content_cache, fingerprint
from tasks.concurrency import call_run
from tasks.runs import run_folder

SALAD_CODE = ("s6damon/salad", "s6damon/model", "s6damon/train", "s6damon/pruning/flops.py", "s6damon/text.py",
              "s6damon/io.py")
RUNS = Path(".work/runs/salad")


def _rows(manifest: Path, splits: tuple[str, ...]) -> pd.DataFrame:
    df = io.read_parquet(manifest)
    return df[df["split"].isin(splits)].reset_index(drop=True)


@task(cache_policy=content_cache(*SALAD_CODE), persist_result=True)
def derive_labels(manifest: Path, phones: Path, pauses: Path, model_dir: Path, sources: list[str],
                  keep_per_phone: int, min_pause_ms: float, ctc_keep_per_run: int, threads: int) -> pd.DataFrame:
    """Per-token labels of every train and dev utterance from each requested source.

    Returns:
        DataFrame ``utt_id, split, frames, <source>...`` (one list of bools per source).
    """
    import torch

    from s6damon.model.factory import load_ctc_model
    from s6damon.salad import corpus as C
    from s6damon.train.data import AudioSet

    torch.set_num_threads(threads)
    df = _rows(manifest, ("train", "dev"))
    model, tok = load_ctc_model(model_dir)
    data = AudioSet(df)
    counts = C.token_counts(data, model.config)
    table = pd.DataFrame({"utt_id": df["utt_id"].astype(str), "split": df["split"],
                          "frames": [counts[str(u)] for u in df["utt_id"]]})
    if "alignment" in sources:
        labels = C.alignment_labels(io.read_parquet(phones), io.read_parquet(pauses), counts,
                                    C.ctc_floor(df, tok), model.config, keep_per_phone, min_pause_ms / 1000.0)
        table["alignment"] = [labels[u].tolist() for u in table["utt_id"]]
    if "ctc" in sources:
        labels = C.ctc_labels(model, data, ctc_keep_per_run)
        table["ctc"] = [labels[u].tolist() for u in table["utt_id"]]
    return table


@task(cache_policy=content_cache(*SALAD_CODE), persist_result=True)
def fit_detector(labels: Path, source: str, manifest: Path, model_dir: Path, p: DetectorParams,
                 ratios: list[float], report_ratio: float, seed: int, threads: int) -> dict[str, Any]:
    """Train the detector of one label source on the frozen finetuned model's conv features.

    Saves ``.work/salad/detector_<source>_<fp>.pt`` and returns its path, dev metrics,
    thresholds and training history.
    """
    import torch

    from s6damon.model.factory import load_ctc_model
    from s6damon.pruning.flops import encoder_flops
    from s6damon.salad import corpus as C
    from s6damon.salad.detector import detector_flops, save_detector
    from s6damon.salad.fit import fit_detector as fit
    from s6damon.model.frames import conv_layout, num_frames
    from s6damon.train.data import AudioSet

    torch.set_num_threads(threads)
    table = io.read_parquet(labels)
    if source not in table.columns:
        raise ValueError(f"{labels}: no {source!r} labels (is it in 'salad.sources'?)")
    df = _rows(manifest, ("train", "dev"))
    model, _ = load_ctc_model(model_dir)
    feats = C.conv_features(model, AudioSet(df))
    by_split = {s: table[table["split"] == s] for s in ("train", "dev")}
    xs = {s: [feats[u] for u in t["utt_id"]] for s, t in by_split.items()}
    ys = {s: [np.asarray(v, dtype=bool) for v in t[source]] for s, t in by_split.items()}
    for s in ("train", "dev"):
        for u, x, y in zip(by_split[s]["utt_id"], xs[s], ys[s]):
            if len(x) != len(y):
                raise ValueError(f"{labels}: {u} has {len(y)} labels but {len(x)} tokens (labels from another model?)")
    res = fit(xs["train"], ys["train"], xs["dev"], ys["dev"], p, ratios, report_ratio, seed)
    frames = num_frames(10 * 16000, *conv_layout(model.config))
    res["metrics"]["flops_share"] = detector_flops(res["detector"], frames) / encoder_flops(model, seconds=10.0)["total"]
    dest = Path(".work/salad") / f"detector_{source}_{fingerprint(labels, source, p, ratios, report_ratio, seed)[:12]}.pt"
    save_detector(dest, res["detector"], res["thresholds"], meta={"source": source, **res["metrics"]})
    return {"path": str(dest), "metrics": res["metrics"], "thresholds": res["thresholds"], "history": res["history"]}


@task(cache_policy=content_cache(*SALAD_CODE, exclude=("progress",)), persist_result=True)
def cache_features(init: Path, manifest: Path, p: FinetuneParams, threads: int, progress: bool = True) -> str:
    """The frozen conv encoder's output for every training utterance at the speed factors of
    ``p`` (``salad.finetune.feature_cache``), with each token's energy, filled once for all
    the adaptation runs (they share ``init``'s encoder) and saved under ``.work/salad/``.

    Returns:
        The file's path, named by a hash of the model, the manifest and the recipe's speeds.
    """
    import torch

    from s6damon.model.factory import load_ctc_model
    from s6damon.train.data import AudioSet
    from s6damon.train.feature_cache import FeatureCache, speed_grid
    from s6damon.train.finetune import training_rows

    torch.set_num_threads(threads)
    model, tok = load_ctc_model(init)
    rows = training_rows(_rows(manifest, ("train",)), p)
    speeds = speed_grid(p.speed_perturb, p.feature_cache_speeds)
    cache = FeatureCache(model, AudioSet(rows, tokenizer=tok), speeds, batch_seconds=p.eval_batch_seconds,
                         progress=progress, token_energy=True)
    dest = Path(".work/salad") / f"features_{fingerprint(init, manifest, speeds, p.max_seconds)[:12]}.pt"
    cache.save(dest)
    return str(dest)


@task(cache_policy=content_cache(*SALAD_CODE, exclude=("progress", "isolate")), persist_result=True)
def drop_finetune(method: str, ratios: list[float], init: Path, detector: Path | None, m: ModelParams,
                  p: FinetuneParams, manifest: Path, seed: int, merge: bool, threads: int, progress: bool = True,
                  isolate: bool = False, feature_cache: str | None = None) -> dict[str, Any]:
    """Finetune ``init`` with ``method`` dropping tokens (CTC on the kept ones; ``merge``:
    dropped tokens averaged into the kept ones) at ``ratios`` — one ratio, or several taken in
    turn step by step (:class:`~s6damon.salad.methods.RatioCycle`); ``isolate``: train in a
    process of its own (:mod:`tasks.concurrency`); ``feature_cache``: the file of
    :func:`cache_features` when ``p.feature_cache`` (a ``str``: its name already carries the
    hash of what it was made from, so the key need not hash its hundreds of MB)."""
    from s6damon.salad.methods import DropWrap
    from s6damon.train.finetune import finetune

    run_dir = run_folder(RUNS)
    wrap = DropWrap(method, tuple(float(r) for r in ratios), detector, seed, merge)
    result = call_run(finetune, init, m, p, _rows(manifest, ("train",)), None, run_dir / "model",
                      run_dir / "checkpoints", seed=seed, threads=threads, wrap=wrap,
                      tag=f"{method}@{'/'.join(f'{r:g}' for r in ratios)}", isolate=isolate,
                      feature_cache_file=feature_cache)
    return {"model_dir": str(run_dir / "model"), "history": result["history"], "metrics": result["metrics"]}


@task(cache_policy=content_cache(*SALAD_CODE), persist_result=True)
def evaluate_drop(model_dir: Path, method: str, ratio: float, detector: Path | None, manifest: Path, split: str,
                  seed: int, merge: bool, threads: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Greedy transcripts of one split with dropping on; WER/CER and the achieved drop ratio."""
    import torch

    from s6damon.model.factory import load_ctc_model
    from s6damon.salad.methods import DropWrap
    from s6damon.train.evaluate import score, transcribe

    torch.set_num_threads(threads)
    model, tok = load_ctc_model(model_dir)
    net = DropWrap(method, (ratio,), detector, seed, merge)(model)
    hyps = transcribe(net, tok, _rows(manifest, (split,)))
    stats = net.stats
    return hyps, {**score(hyps), "achieved_drop_ratio": stats["drop_ratio"], "fallbacks": stats["fallbacks"]}


@task(cache_policy=NO_CACHE)
def measure_latency(runs: list[dict[str, Any]], manifest: Path, seconds: float, repeats: int, seed: int,
                    threads: int) -> dict[str, dict[str, float]]:
    """Encoder latency of every run's model on the same ``seconds`` of test speech, measured
    round-robin in this one process (never cached: it is a measurement of this machine now).

    Args:
        runs: ``{"name", "model_dir", "method", "ratio", "detector", "merge"}`` per model.
    """
    import torch

    from s6damon.model.factory import load_ctc_model
    from s6damon.salad.methods import DropWrap, compare_latency, latency_input
    from s6damon.train.data import load_audio

    torch.set_num_threads(threads)
    test = _rows(manifest, ("test",)).sort_values("utt_id")
    wave = latency_input([load_audio(p) for p in test["path"]], seconds)
    nets = {}
    for r in runs:
        model, _ = load_ctc_model(r["model_dir"])
        det = Path(r["detector"]) if r["detector"] else None
        nets[r["name"]] = DropWrap(r["method"], (r["ratio"],), det, seed, r["merge"])(model)
    return compare_latency(nets, wave, repeats)
