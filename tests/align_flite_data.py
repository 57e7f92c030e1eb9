"""Small flite-synthesised corpus with exact phone and word timings, for aligner tests.

The real corpus (``s6damon.corpus``) is built by the prepare stage; the aligner tests and
benchmark synthesise their own few utterances here so they do not depend on that stage.
flite's ``-psdur`` prints every phone with its end time, which is the ground truth; word
boundaries come from splitting that phone string with ``t2p`` run on each word alone.

Usage (benchmark set, ~12 minutes of audio)::

    .venv/bin/python tests/align_flite_data.py /tmp/flite_bench 600
"""

from __future__ import annotations

import functools
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

VOICES = ["awb", "rms", "slt", "kal16"]

_VERBS = ["turn on", "turn off", "open", "close", "play", "stop", "show", "set", "call",
          "start", "find", "check", "move", "lock", "unlock", "dim", "raise", "lower"]
_OBJECTS = ["the kitchen lights", "the front door", "some music", "the radio", "my alarm",
            "the weather report", "the garage", "the heating", "the blue window",
            "a timer for ten minutes", "the living room lamp", "the news", "my calendar",
            "the back garden sprinkler", "the television", "the bedroom fan", "the oven",
            "the morning playlist", "the office printer", "the car engine"]
_TAILS = ["", "", "please", "now", "right away", "for me", "in five minutes",
          "before dinner", "at seven thirty", "when I get home", "quietly", "again"]


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` command-like sentences (deterministic for a seed)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = f"{rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}".strip()
        out.append(s.lower())
    return out


@functools.lru_cache(maxsize=None)
def _word_phone_count(word: str) -> int:
    """Number of flite phones of ``word`` said alone (t2p wraps it in pauses)."""
    out = subprocess.run(["t2p", word], capture_output=True, text=True, check=True).stdout
    return len([p for p in out.split() if p != "pau"])


def _psdur(text: str, voice: str, wav: Path) -> list[tuple[str, float, float]]:
    out = subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(wav), "-psdur"],
                         capture_output=True, text=True, check=True).stdout
    phones, prev = [], 0.0
    for tok in out.split():
        name, end = tok.rsplit(":", 1)
        phones.append((name, prev, float(end)))
        prev = float(end)
    return phones


def synthesise(out_dir: Path, n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Synthesise ``n`` utterances round-robin over the flite voices into ``out_dir``.

    Returns:
        (items, truth_words, truth_phones): items has utt_id, wav_path, text, voice,
        duration; truth tables have utt_id, word/phone, start, end (seconds; 'pau' kept).
        Utterances whose phone string cannot be split into words are left out.
    """
    import torch
    import torchaudio.functional as AF

    out_dir.mkdir(parents=True, exist_ok=True)
    items, words, phones = [], [], []
    for i, text in enumerate(sentences(n, seed)):
        voice = VOICES[i % len(VOICES)]
        utt = f"{voice}_{i:04d}"
        wav = out_dir / f"{utt}.wav"
        ph = _psdur(text, voice, wav)
        audio, sr = sf.read(wav, dtype="float32")
        if sr != 16000:
            audio = AF.resample(torch.from_numpy(audio), sr, 16000).numpy()
            sf.write(wav, audio, 16000)
        speech = [p for p in ph if p[0] != "pau"]
        counts = [_word_phone_count(w) for w in text.split()]
        if sum(counts) != len(speech):
            continue
        k = 0
        for w, c in zip(text.split(), counts):
            words.append((utt, w, speech[k][1], speech[k + c - 1][2]))
            k += c
        phones += [(utt, *p) for p in ph]
        items.append((utt, str(wav), text, voice, len(audio) / 16000))
    return (pd.DataFrame(items, columns=["utt_id", "wav_path", "text", "voice", "duration"]),
            pd.DataFrame(words, columns=["utt_id", "word", "start", "end"]),
            pd.DataFrame(phones, columns=["utt_id", "phone", "start", "end"]))


if __name__ == "__main__":
    dest = Path(sys.argv[1])
    items, tw, tp = synthesise(dest, int(sys.argv[2]) if len(sys.argv) > 2 else 600)
    items.to_parquet(dest / "items.parquet")
    tw.to_parquet(dest / "truth_words.parquet")
    tp.to_parquet(dest / "truth_phones.parquet")
    print(f"{len(items)} utterances, {items.duration.sum() / 60:.1f} min -> {dest}")
