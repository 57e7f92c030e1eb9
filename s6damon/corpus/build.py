"""Rendering a shard of the corpus plan to wavs, manifest rows and ground-truth timings.

``render_shard`` is safe to run concurrently in separate processes on disjoint shards: it
writes only ``out_dir/wav/<utt_id>.wav`` for its own utterances (atomically), uses
private temporary folders for synthesiser I/O, and returns its tables instead of writing
shared files. Utterances whose exact word timings cannot be established are left out
(logged), never given guessed timings. Voices without a timing interface (Pico) give
manifest rows but no ground-truth rows.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from s6damon.corpus.augment import augment
from s6damon.corpus.plan import UttSpec
from s6damon.splits import SPLITS
from s6damon.corpus.synth import resample, synthesize
from s6damon.io import atomic_path

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["utt_id", "speaker", "path", "duration", "text", "split",
                    "voice", "voice_family", "gender", "domain"]
PHONE_COLUMNS = ["utt_id", "phone", "start", "end"]
WORD_COLUMNS = ["utt_id", "word", "start", "end"]


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM mono wav atomically."""
    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(tmp, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")


def render_shard(specs: list[UttSpec], out_dir: Path, sample_rate: int
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Synthesise, augment, resample and write every utterance of a shard.

    Args:
        specs: utterances to render (from ``plan_corpus``; one shard of it).
        out_dir: corpus folder; wavs go to ``out_dir/wav``. Manifest paths are
            ``str(out_dir / "wav" / f"{utt_id}.wav")``, relative if ``out_dir`` is.
        sample_rate: target sample rate of the wavs.

    Returns:
        (manifest, phones, words) DataFrames with columns :data:`MANIFEST_COLUMNS`,
        :data:`PHONE_COLUMNS`, :data:`WORD_COLUMNS`, in the order of ``specs``; untimed
        renderings (:attr:`~s6damon.corpus.synth.Rendered.timed`) have no phone/word rows.
    """
    out_dir = Path(out_dir)
    by_voice: dict[str, list[int]] = defaultdict(list)
    for i, u in enumerate(specs):
        by_voice[u.voice].append(i)
    rendered: dict[int, object] = {}
    for voice, idx in by_voice.items():  # one festival process per voice per shard
        for i, r in zip(idx, synthesize(voice, [specs[i].text for i in idx])):
            rendered[i] = r
    man, phones, words = [], [], []
    for i, u in enumerate(specs):
        r = rendered.get(i)
        if r is None:
            log.warning("corpus: %s (%s, %r) left out: no audio or no exact word timings",
                        u.utt_id, u.voice, u.text)
            continue
        r = resample(augment(r, u.stretch, u.pitch_semitones, u.speed), sample_rate)
        path = out_dir / "wav" / f"{u.utt_id}.wav"
        write_wav(path, r.audio, sample_rate)
        man.append((u.utt_id, u.speaker, str(path), len(r.audio) / sample_rate, u.text, u.split,
                    u.voice, u.voice_family, u.gender, u.domain))
        phones.extend((u.utt_id, lab, s, e) for lab, s, e in r.phones)
        words.extend((u.utt_id, w, s, e) for w, s, e in r.words)
    return (pd.DataFrame(man, columns=MANIFEST_COLUMNS),
            pd.DataFrame(phones, columns=PHONE_COLUMNS),
            pd.DataFrame(words, columns=WORD_COLUMNS))


def summarise(manifest: pd.DataFrame) -> dict:
    """Corpus summary for ``metrics/prepare.json``.

    Returns:
        ``{"hours": total, "utterances": total, "splits": {split: {"hours", "utterances",
        "speakers"}}}`` with every split that occurs (the four synth splits always listed).
    """
    splits = list(dict.fromkeys([s for s in SPLITS] + sorted(set(manifest["split"]) - set(SPLITS))))
    out: dict = {"hours": round(float(manifest["duration"].sum()) / 3600.0, 4),
                 "utterances": int(len(manifest)),
                 "speakers": int(manifest["speaker"].nunique()),
                 "splits": {}}
    for s in splits:
        m = manifest[manifest["split"] == s]
        if len(m) == 0 and s not in set(manifest["split"]):
            out["splits"][s] = {"hours": 0.0, "utterances": 0, "speakers": 0}
            continue
        out["splits"][s] = {"hours": round(float(m["duration"].sum()) / 3600.0, 4),
                            "utterances": int(len(m)), "speakers": int(m["speaker"].nunique())}
    return out
