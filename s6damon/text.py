"""Transcript normalisation to the model's character set.

The acoustic model predicts lower-case letters, the apostrophe and a word separator. Every
transcript entering the pipeline (synthesised, LibriSpeech or user manifest) passes through
``normalise`` so that training targets, alignment words and WER references agree.
"""

from __future__ import annotations

import re
import unicodedata

from s6damon.errors import InputError

#: Characters the CTC model can emit, besides blank and the word delimiter.
LETTERS = "abcdefghijklmnopqrstuvwxyz'"
#: Word delimiter used in CTC targets (Hugging Face convention).
WORD_DELIMITER = "|"

_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class TextError(InputError, ValueError):
    """A transcript is empty or cannot be mapped to the model's character set."""


def normalise(text: str) -> str:
    """Lower-case, strip accents and punctuation, collapse spaces.

    Digits are spelled out one by one (``"42"`` → ``"four two"``) rather than guessed as
    numbers: corpora whose transcripts contain numerals should spell them out upstream.

    Raises:
        TextError: nothing speakable is left.
    """
    if not isinstance(text, str):
        raise TextError(f"transcript is not a string: {text!r}")
    t = unicodedata.normalize("NFKD", text)
    t = "".join(c for c in t if not unicodedata.combining(c)).lower()
    t = t.replace("\u2019", "'").replace("`", "'")
    t = re.sub(r"\d", lambda m: f" {_DIGITS[int(m.group())]} ", t)
    t = re.sub(r"[^a-z' ]+", " ", t)
    # apostrophes only inside words (don't, o'clock), not as quotes
    t = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", t)
    t = " ".join(t.split())
    if not t:
        raise TextError(f"transcript has nothing speakable after normalisation: {text!r}")
    return t
