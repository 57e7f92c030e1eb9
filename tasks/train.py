"""Tasks of the ``pretrain`` and ``finetune`` stages.

Each training run lives in ``.work/runs/<stage>/<key>/``: its periodic checkpoints (a
killed run resumes from the latest) and its final model folder. ``<key>`` is the task run's
cache key (:func:`tasks.runs.run_folder`) — the task's source, the training code, params,
seed and the contents of every input — so a changed input or changed code starts afresh
while an unchanged run resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from s6damon import io
from s6damon.config.model import FinetuneParams, ModelParams, PretrainParams
from tasks.caching import content_cache
from tasks.concurrency import call_run
from tasks.runs import run_folder

TRAIN_CODE = ("s6damon/model", "s6damon/train", "s6damon/text.py", "s6damon/io.py")
# the hubert objective's targets and head (read by pretraining only)
SSL_CODE = (*TRAIN_CODE, "s6damon/ssl")
RUNS = Path(".work/runs")


def _split(manifest: Path, *splits: str):
    df = io.read_parquet(manifest)
    return df[df["split"].isin(splits)].reset_index(drop=True)


@task(cache_policy=content_cache(*SSL_CODE, exclude=("progress",)), persist_result=True)
def pretrain(m: ModelParams, p: PretrainParams, manifest: Path, seed: int, threads: int,
             progress: bool = True) -> dict[str, Any]:
    """SSL pretraining (``p.objective``) on the audio of ``p.splits``, with the loss on the dev
    split's audio (voices seen and unseen in the pool, apart); returns the model folder and history."""
    from s6damon.train.pretrain import heldout_sets, pretrain as run

    run_dir = run_folder(RUNS / "pretrain")
    audio = _split(manifest, *p.splits)
    heldout = heldout_sets(_split(manifest, "dev"), audio)
    result = run(m, p, audio, run_dir / "model", run_dir / "checkpoints", seed=seed, threads=threads, heldout=heldout)
    hours = {s: round(float(audio.loc[audio["split"] == s, "duration"].sum()) / 3600, 4) for s in p.splits}
    return {"model_dir": str(run_dir / "model"), "history": result["history"],
            "metrics": {**result["metrics"], "audio_hours_per_split": hours}}


@task(cache_policy=content_cache(*SSL_CODE), persist_result=True)
def hubert_targets(model_dir: Path, manifest: Path, splits: list[str], truth_phones: Path) -> dict[str, Any]:
    """How phonetic a hubert-pretrained model's targets are (PNMI, purity; per voice) on its
    pretraining audio (``splits``) and on the unseen test voices, against the synthesiser's
    phone timings."""
    from s6damon.ssl.hubert import target_report

    return target_report(model_dir, {"pretrain_audio": _split(manifest, *splits), "test": _split(manifest, "test")},
                         io.read_parquet(truth_phones))


@task(cache_policy=content_cache(*TRAIN_CODE, exclude=("progress", "isolate")), persist_result=True)
def finetune(init: Path | None, m: ModelParams, p: FinetuneParams, manifest: Path, seed: int,
             threads: int, progress: bool = True, isolate: bool = False) -> dict[str, Any]:
    """CTC finetuning from ``init`` (a checkpoint folder) or from random init (``None``);
    ``isolate``: train in a process of its own (:mod:`tasks.concurrency`)."""
    from s6damon.train.finetune import finetune as run

    run_dir = run_folder(RUNS / "finetune")
    result = call_run(run, init, m, p, _split(manifest, "train"), _split(manifest, "dev"), run_dir / "model",
                      run_dir / "checkpoints", seed=seed, threads=threads, isolate=isolate)
    return {"model_dir": str(run_dir / "model"), "history": result["history"], "metrics": result["metrics"]}


@task(cache_policy=content_cache(*TRAIN_CODE), persist_result=True)
def evaluate(model_dir: Path, manifest: Path, split: str, threads: int):
    """Greedy transcripts of one split and their WER/CER."""
    import torch

    from s6damon.model.factory import load_ctc_model
    from s6damon.train.evaluate import score, transcribe

    torch.set_num_threads(threads)
    model, tokenizer = load_ctc_model(model_dir)
    hyps = transcribe(model, tokenizer, _split(manifest, split), progress=False)
    return hyps, score(hyps)
