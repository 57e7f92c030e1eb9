"""Accuracy and speed of the offline aligners against flite's exact timings.

Usage::

    .venv/bin/python tests/align_flite_data.py /tmp/flite_bench 360   # ~12 min of audio
    .venv/bin/python scripts/align_benchmark.py /tmp/flite_bench kaldi pocketsphinx
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s6damon.align.base import AlignItem, get_aligner  # noqa: E402
from s6damon.align.quality import alignment_quality  # noqa: E402
from s6damon.config.align import AlignParams  # noqa: E402


def main(data: Path, backends: list[str]) -> None:
    items = pd.read_parquet(data / "items.parquet")
    tw, tp = pd.read_parquet(data / "truth_words.parquet"), pd.read_parquet(data / "truth_phones.parquet")
    its = [AlignItem(r.utt_id, r.wav_path, r.text) for r in items.itertuples()]
    fam = dict(zip(items.utt_id, items.voice))
    for b in backends:
        t0 = time.time()
        res = get_aligner(b, AlignParams()).align(its, data / f"work_{b}")
        secs = time.time() - t0
        q = alignment_quality(res.words, res.phones, tw, tp, fam, res.failed)
        keys = ["word_boundary_median_ms", "phone_boundary_median_ms", "within_20ms", "within_50ms",
                "phone_within_50ms", "failed", "utterances"]
        print(json.dumps({"backend": b, "audio_min": round(items.duration.sum() / 60, 1),
                          "seconds": round(secs, 1), **{k: q[k] for k in keys},
                          "per_family_word_median_ms": {f: v["word_boundary_median_ms"]
                                                        for f, v in q["per_family"].items()}}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:] or ["kaldi", "pocketsphinx"])
