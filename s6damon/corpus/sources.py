"""External corpora: a LibriSpeech-layout folder or a CSV/Parquet manifest.

Every file is validated (:mod:`s6damon.corpus.validate`) and written as 16-bit mono wav at
the target rate under ``out_dir/wav``, so later stages read one format. LibriSpeech
splits are by speaker (test and dev speakers never appear in train): listed explicitly in
``dev_speakers``/``test_speakers`` or drawn by seed with ``dev_speaker_share`` /
``test_speaker_share``. A manifest may carry its own ``split`` column (``train``, ``dev``,
``test``, ``test_open`` or ``unlabeled``; another value is an error naming the row); rows
without one go to ``train``. ``unlabeled`` rows are audio for SSL pretraining: their
transcript may be empty.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pandas as pd

from s6damon.config.prepare import PrepareParams
from s6damon.corpus.build import MANIFEST_COLUMNS, write_wav
from s6damon.corpus.validate import BadInputError, check_transcript, load_audio
from s6damon.splits import SPLITS, UNLABELED

_SPLITS = {*SPLITS, UNLABELED}


def _librispeech_items(root: Path) -> list[dict]:
    """(path, text, speaker) for every transcript line of a LibriSpeech-layout folder."""
    items = []
    trans = sorted(root.rglob("*.trans.txt"))
    if not trans:
        raise BadInputError(root, "no <speaker>/<chapter>/<speaker>-<chapter>.trans.txt files found")
    for t in trans:
        for line in t.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            uid, _, text = line.strip().partition(" ")
            audio = next((t.parent / f"{uid}{ext}" for ext in (".flac", ".wav")
                          if (t.parent / f"{uid}{ext}").exists()), t.parent / f"{uid}.flac")
            items.append({"utt_id": uid, "path": audio, "text": text, "speaker": uid.split("-")[0]})
    return items


def _speaker_splits(speakers: list[str], p: PrepareParams, seed: int) -> dict[str, str]:
    speakers = sorted(set(speakers))
    dev, test = set(p.dev_speakers), set(p.test_speakers)
    if not dev and not test and len(speakers) >= 3:
        order = speakers[:]
        random.Random(seed).shuffle(order)
        n_test = max(1, round(len(order) * p.test_speaker_share))
        n_dev = max(1, round(len(order) * p.dev_speaker_share))
        test, dev = set(order[:n_test]), set(order[n_test:n_test + n_dev])
    return {s: "test" if s in test else "dev" if s in dev else "train" for s in speakers}


def _manifest_items(path: Path) -> list[dict]:
    if not path.is_file():
        raise BadInputError(path, "manifest file not found")
    try:
        df = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    except Exception as err:
        raise BadInputError(path, f"unreadable manifest ({err})") from err
    missing = {"path", "text"} - set(df.columns)
    if missing:
        raise BadInputError(path, f"manifest lacks column(s) {sorted(missing)} (needs path, text)")
    items = []
    for k, row in enumerate(df.to_dict("records")):
        audio = Path(str(row["path"]))
        if not audio.is_absolute():
            audio = path.parent / audio  # relative paths are relative to the manifest
        spk = row.get("speaker")
        spk = str(spk) if spk is not None and str(spk) not in ("", "nan") else audio.stem
        split = row.get("split")
        split = "train" if split is None or str(split) in ("", "nan") else str(split)
        if split not in _SPLITS:
            # a typo such as 'tset' must not put evaluation audio into training
            raise BadInputError(path, f"row {k} ({audio.name}): split {split!r} is not one of {sorted(_SPLITS)}")
        items.append({"utt_id": f"{k:06d}-{audio.stem}", "path": audio, "text": row["text"],
                      "speaker": spk, "split": split})
    return items


def ingest(p: PrepareParams, out_dir: str | Path, seed: int = 0) -> tuple[pd.DataFrame, list[dict]]:
    """Validate and convert an external corpus.

    Args:
        p: ``prepare`` params (``source`` is ``librispeech`` or ``manifest``).
        out_dir: corpus folder; wavs go to ``out_dir/wav/<utt_id>.wav``.
        seed: chooses LibriSpeech dev/test speakers when not listed.

    Returns:
        (manifest with :data:`MANIFEST_COLUMNS`, skipped items as ``{"path", "reason"}``).

    Raises:
        BadInputError: with ``on_bad_input: error``, the first bad file or transcript.
    """
    out_dir = Path(out_dir)
    src = Path(p.source_path)
    if p.source == "librispeech":
        if not src.is_dir():
            raise BadInputError(src, "LibriSpeech folder not found")
        items = _librispeech_items(src)
        splits = _speaker_splits([i["speaker"] for i in items], p, seed)
        for it in items:
            it["split"] = splits[it["speaker"]]
    elif p.source == "manifest":
        items = _manifest_items(src)
    else:
        raise ValueError(f"ingest: source {p.source!r} is not external (use plan_corpus for synth)")
    rows, skipped = [], []
    for it in items:
        try:
            raw = it["text"]
            empty = raw is None or (isinstance(raw, float) and raw != raw) or not str(raw).strip()
            text = "" if it["split"] == UNLABELED and empty else check_transcript(it["path"], raw)
            audio, info = load_audio(it["path"], p.sample_rate)
            if info["duration"] > p.max_seconds:
                raise BadInputError(it["path"], f"{info['duration']:.1f} s long; max_seconds is {p.max_seconds}")
        except BadInputError as err:
            if p.on_bad_input == "error":
                raise
            skipped.append({"path": err.path, "reason": err.reason})
            continue
        uid = re.sub(r"[^A-Za-z0-9_.-]+", "_", it["utt_id"])
        dest = out_dir / "wav" / f"{uid}.wav"
        write_wav(dest, audio, p.sample_rate)
        rows.append((uid, it["speaker"], str(dest), info["duration"], text, it["split"],
                     p.source, p.source, "", "external"))
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS), skipped
