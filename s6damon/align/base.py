"""The forced-aligner interface shared by every backend, and pause extraction.

A backend turns a list of :class:`AlignItem` (a wav file and its normalised transcript)
into phone and word intervals (:class:`AlignResult`). The ``align`` stage picks one with
:func:`get_aligner` from ``params.yaml`` (``align.backend``) and never depends on which.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pandas as pd

from s6damon.errors import InputError

if TYPE_CHECKING:
    from s6damon.config.align import AlignParams

#: Name used for silence in the ``phones`` table of every backend.
SILENCE = "sil"
PHONE_COLUMNS = ["utt_id", "phone", "start", "end"]
WORD_COLUMNS = ["utt_id", "word", "start", "end"]
BACKENDS = ("kaldi", "pocketsphinx", "mfa")


class AlignError(InputError, RuntimeError):
    """A backend cannot run at all (missing tool, bad configuration, nothing aligned)."""


@dataclasses.dataclass(frozen=True)
class AlignItem:
    """One utterance to align.

    Attributes:
        utt_id: unique utterance id.
        wav_path: path of a mono wav file (any sample rate; backends resample).
        text: normalised lower-case words separated by single spaces
            (``s6damon.text.normalise``).
        speaker: optional speaker id; backends that adapt to speakers (kaldi's per-speaker
            CMVN) pool the utterances of one speaker, others ignore it.
    """

    utt_id: str
    wav_path: str
    text: str
    speaker: str | None = None


@dataclasses.dataclass
class AlignResult:
    """Output of a backend.

    Attributes:
        phones: columns utt_id, phone, start, end (seconds); silence labelled ``'sil'``;
            phones are lower-case ARPAbet without stress.
        words: columns utt_id, word, start, end (seconds), in spoken order.
        failed: one ``{"utt_id": ..., "reason": ...}`` per utterance that did not align;
            such utterances have no rows in ``phones`` or ``words``.
    """

    phones: pd.DataFrame
    words: pd.DataFrame
    failed: list[dict]

    @classmethod
    def from_rows(cls, phones: list[tuple], words: list[tuple], failed: list[dict]) -> "AlignResult":
        """Build a result from row tuples (utt_id, label, start, end)."""
        p = pd.DataFrame(phones, columns=PHONE_COLUMNS).astype({"start": float, "end": float})
        w = pd.DataFrame(words, columns=WORD_COLUMNS).astype({"start": float, "end": float})
        return cls(phones=p, words=w, failed=list(failed))


class Aligner(Protocol):
    """A forced-alignment backend."""

    name: str

    def align(self, items: list[AlignItem], workdir: Path) -> AlignResult:
        """Align every item; scratch files go under ``workdir``."""
        ...


def get_aligner(name: str, p: "AlignParams") -> Aligner:
    """Return the backend called ``name`` configured from the ``align`` params.

    Raises:
        ValueError: ``name`` is not one of ``kaldi``, ``pocketsphinx``, ``mfa``.
    """
    # Imports are local so that a backend's heavy dependencies load only when used.
    if name == "kaldi":
        from s6damon.align.kaldi import KaldiAligner

        return KaldiAligner(p)
    if name == "pocketsphinx":
        from s6damon.align.pocketsphinx import PocketsphinxAligner

        return PocketsphinxAligner(p)
    if name == "mfa":
        from s6damon.align.mfa import MfaAligner

        return MfaAligner(p)
    raise ValueError(f"unknown aligner backend {name!r}; choose one of {list(BACKENDS)} "
                     "(params.yaml: align.backend)")


def pauses(words: pd.DataFrame, durations: dict[str, float], min_pause_ms: float) -> pd.DataFrame:
    """Pauses of each utterance: leading and trailing silence and gaps between words.

    Args:
        words: word intervals (utt_id, word, start, end), seconds.
        durations: utterance duration in seconds per utt_id; utterances absent from
            ``words`` (failed ones) are skipped.
        min_pause_ms: shortest silence, in milliseconds, counted as a pause.

    Returns:
        DataFrame with columns utt_id, start, end (seconds), sorted by utterance and time.
    """
    min_s = min_pause_ms / 1000.0
    rows = []
    for utt, g in words.sort_values(["utt_id", "start"]).groupby("utt_id", sort=True):
        if utt not in durations:
            continue
        edges = [0.0] + [x for pair in zip(g["start"], g["end"]) for x in pair] + [durations[utt]]
        # edges = [0, s1, e1, s2, e2, ..., sN, eN, dur]: gaps are (e_k, s_k+1) pairs
        for a, b in zip(edges[0::2], edges[1::2]):
            # 1e-9 absorbs float noise when a gap equals min_pause exactly
            if b - a >= min_s - 1e-9 and b > a:
                rows.append((utt, float(a), float(b)))
    return pd.DataFrame(rows, columns=["utt_id", "start", "end"])
