"""Tasks of the ``align`` stage."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task

from s6damon.config.align import AlignParams
from tasks.caching import content_cache

ALIGN_CODE = ("s6damon/align", "s6damon/parallel.py", "s6damon/text.py", "s6damon/io.py")


@task(cache_policy=content_cache(*ALIGN_CODE, exclude=("workdir",)), persist_result=True)
def align(backend: str, p: AlignParams, manifest: Path, audio_dir: Path, workdir: str):
    """Align every labeled utterance of the manifest with one backend (result cached on contents)."""
    from s6damon import io
    from s6damon.align.base import AlignItem, get_aligner

    from s6damon.splits import UNLABELED

    rows = io.read_parquet(manifest)
    rows = rows[rows["split"] != UNLABELED]  # audio for pretraining only: nothing reads its alignment
    # the speaker lets the Kaldi backend pool feature normalisation per speaker, as MFA does
    items = [AlignItem(r.utt_id, r.path, r.text, getattr(r, "speaker", None)) for r in rows.itertuples()]
    work = Path(workdir) / backend
    work.mkdir(parents=True, exist_ok=True)
    return get_aligner(backend, p).align(items, work)


@task
def quality(result, manifest: pd.DataFrame, truth_dir: Path) -> dict | None:
    """Alignment accuracy against the synthesiser's timings, or None without ground truth."""
    from s6damon import io
    from s6damon.align.quality import alignment_quality

    tw, tp = truth_dir / "truth_words.parquet", truth_dir / "truth_phones.parquet"
    if not (tw.exists() and tp.exists()):
        return None
    family = dict(zip(manifest["utt_id"], manifest.get("voice_family", manifest["speaker"])))
    return alignment_quality(result.words, result.phones, io.read_parquet(tw), io.read_parquet(tp),
                             family, result.failed)
