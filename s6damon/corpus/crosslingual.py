"""English through festival's non-English voices: more recorded speakers, women among them.

flite and festival have five recorded English speakers, and the only woman, SLT, is a test
speaker. Debian also packages festival voices built from recordings of Italian, Catalan,
Czech and Finnish speakers — four women and four men. Given English words with
pronunciations written in the voice's own phone set, they read English with that
speaker's voice and a foreign accent: new timbres, pitch ranges and vocal tracts for
training, the thing the unseen test voices differ in.

This module holds the phone maps and the festival lexicon entries; :mod:`s6damon.corpus.synth`
renders them (``festival:<lang>-<speaker>``, e.g. ``festival:it-lp``). Each CMUdict phone
(ARPAbet) maps to one or two phones of the target set, the nearest a native speaker of
that language would say (English diphthongs become two vowels or vowel + glide, sounds the
language lacks its usual substitute: ``th`` → ``t`` in Italian, ``w`` → ``v`` in Czech),
chosen also so that the voice has the diphones (a missing one is a gap of silence). Syllables
follow the vowels (each consonant run goes to the next vowel's onset, word-final
consonants to the last syllable) and CMUdict's primary stress marks the stressed one.

The renderings are *untimed*, like Pico's: a mapped phone sequence has no exact ARPAbet
segmentation (a diphthong is two target segments, an Italian speaker drops ``h``), so they
add training audio and transcripts, not ground truth for the alignment metrics.
"""

from __future__ import annotations

import dataclasses
import re

# the aligner's cached CMUdict: one copy per process, whichever module asks first
from s6damon.align.lexicon import LexiconError, cmudict_prons, flite_g2p, g2p_available


@dataclasses.dataclass(frozen=True)
class CrossVoice:
    """A festival voice of another language reading English."""

    function: str  # festival's voice-selection function
    language: str
    person: str
    gender: str
    stressed_vowel_suffix: str  # the phone set marks stressed vowels (Italian, Catalan: "1")
    # synthesise from a word list, not text: the Italian and Catalan tokenisers spell out
    # words they find no vowel in ("my" -> "m", "y") and split "what's"
    from_words: bool = False


# ARPAbet (no stress) -> phones of each target set. Vowels first, then consonants.
_ITALIAN = {
    "aa": ["a"], "ae": ["E"], "ah": ["a"], "ao": ["O"], "aw": ["a", "u"], "ay": ["a", "i"],
    "eh": ["E"], "er": ["e", "r"], "ey": ["e", "i"], "ih": ["i"], "iy": ["i"], "ow": ["o", "u"],
    "oy": ["O", "i"], "uh": ["u"], "uw": ["u"],
    "b": ["b"], "ch": ["tS"], "d": ["d"], "dh": ["d"], "f": ["f"], "g": ["g"], "hh": [],
    "jh": ["dZ"], "k": ["k"], "l": ["l"], "m": ["m"], "n": ["n"], "ng": ["n", "g"], "p": ["p"],
    "r": ["r"], "s": ["s"], "sh": ["S"], "t": ["t"], "th": ["t"], "v": ["v"], "w": ["w"],
    "y": ["j"], "z": ["z"], "zh": ["Z"],
}
_CATALAN = {
    "aa": ["a"], "ae": ["E"], "ah": ["ax"], "ao": ["O"], "aw": ["a", "w"], "ay": ["a", "j"],
    "eh": ["E"], "er": ["ax", "r"], "ey": ["e", "j"], "ih": ["i"], "iy": ["i"], "ow": ["o", "w"],
    "oy": ["O", "j"], "uh": ["u"], "uw": ["u"],
    "b": ["b"], "ch": ["t", "S"], "d": ["d"], "dh": ["d"], "f": ["f"], "g": ["g"], "hh": [],
    "jh": ["d", "Z"], "k": ["k"], "l": ["l"], "m": ["m"], "n": ["n"], "ng": ["n", "g"], "p": ["p"],
    "r": ["r"], "s": ["s"], "sh": ["S"], "t": ["t"], "th": ["t"], "v": ["b"], "w": ["w"],
    "y": ["j"], "z": ["z"], "zh": ["Z"],
}
_CZECH = {
    "aa": ["a:"], "ae": ["e"], "ah": ["a"], "ao": ["o:"], "aw": ["a", "u"], "ay": ["a", "j"],
    "eh": ["e"], "er": ["e", "r"], "ey": ["e", "j"], "ih": ["i"], "iy": ["i:"], "ow": ["o", "u"],
    "oy": ["o", "j"], "uh": ["u"], "uw": ["u:"],
    "b": ["b"], "ch": ["c~"], "d": ["d"], "dh": ["d"], "f": ["f"], "g": ["g"], "hh": ["h"],
    "jh": ["dz~"], "k": ["k"], "l": ["l"], "m": ["m"], "n": ["n"], "ng": ["n", "g"], "p": ["p"],
    "r": ["r"], "s": ["s"], "sh": ["s~"], "t": ["t"], "th": ["t"], "v": ["v"], "w": ["v"],
    "y": ["j"], "z": ["z"], "zh": ["z~"],
}
# suopuhe: @ is the front open vowel (ä), 7 the front rounded mid one (ö). Its voices lack
# diphones with S and w, so those become s and v, as Finnish speakers say them.
_FINNISH = {
    "aa": ["a:"], "ae": ["@"], "ah": ["a"], "ao": ["o:"], "aw": ["a", "u"], "ay": ["a", "i"],
    "eh": ["e"], "er": ["7", "r"], "ey": ["e", "i"], "ih": ["i"], "iy": ["i:"], "ow": ["o", "u"],
    "oy": ["o", "i"], "uh": ["u"], "uw": ["u:"],
    "b": ["b"], "ch": ["t", "s"], "d": ["d"], "dh": ["d"], "f": ["f"], "g": ["g"], "hh": ["h"],
    "jh": ["d", "j"], "k": ["k"], "l": ["l"], "m": ["m"], "n": ["n"], "ng": ["N"], "p": ["p"],
    "r": ["r"], "s": ["s"], "sh": ["s"], "t": ["t"], "th": ["T"], "v": ["v"], "w": ["v"],
    "y": ["j"], "z": ["s"], "zh": ["s"],
}
# a stressed vowel whose plain map has no stressed form in the phone set (Catalan's schwa)
_STRESSED = {"ca": {"ah": ["a"], "er": ["E", "r"]}}
PHONE_MAPS: dict[str, dict[str, list[str]]] = {
    "it": _ITALIAN, "ca": _CATALAN, "cs": _CZECH, "fi": _FINNISH,
}
_VOWELS = frozenset({"aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw"})

#: ``festival:<lang>-<speaker>`` -> the voice. All are built from recordings of one person.
VOICES: dict[str, CrossVoice] = {
    "festival:it-lp": CrossVoice("voice_lp_diphone", "it", "lp", "f", "1", True),
    "festival:it-pc": CrossVoice("voice_pc_diphone", "it", "pc", "m", "1", True),
    "festival:ca-ona": CrossVoice("voice_upc_ca_ona_hts", "ca", "ona", "f", "1", True),
    "festival:cs-dita": CrossVoice("voice_czech_dita", "cs", "dita", "f", ""),
    "festival:cs-machac": CrossVoice("voice_czech_machac", "cs", "machac", "m", ""),
    "festival:fi-lj": CrossVoice("voice_suo_fi_lj_diphone", "fi", "lj", "f", ""),
    "festival:fi-mv": CrossVoice("voice_hy_fi_mv_diphone", "fi", "mv", "m", ""),
}
#: the Debian package each voice comes from (scripts/setup.sh installs them)
PACKAGES: dict[str, str] = {
    "festival:it-lp": "festvox-italp16k", "festival:it-pc": "festvox-itapc16k",
    "festival:ca-ona": "festvox-ca-ona-hts", "festival:cs-dita": "festvox-czech-dita",
    "festival:cs-machac": "festvox-czech-machac", "festival:fi-lj": "festvox-suopuhe-lj",
    "festival:fi-mv": "festvox-suopuhe-mv",
}

Syllable = tuple[list[str], int]


def stressed_pronunciation(word: str) -> list[str]:
    """CMUdict's first pronunciation of ``word`` with its stress digits (``["HH", "AH0", "L",
    "OW1"]``); a word CMUdict lacks gets flite's G2P one, without stress.

    Raises:
        LexiconError: neither has the word.
    """
    prons = cmudict_prons().get(word.lower())
    if prons:
        return list(prons[0])
    g2p = flite_g2p(word.lower()) if g2p_available() else ()
    if not g2p:
        raise LexiconError([word], "not in CMUdict and no G2P pronunciation")
    return [p.upper() for p in g2p]


def syllables(arpabet: list[str], voice: str) -> list[Syllable]:
    """A CMUdict pronunciation (with stress digits) as the voice's syllables.

    Args:
        arpabet: e.g. ``["HH", "AH0", "L", "OW1"]``.
        voice: a key of :data:`VOICES`.

    Returns:
        ``[(phones, stress), ...]``: one syllable per vowel, stress 1 on CMUdict's primary
        stress (the first vowel when the pronunciation carries none), phones in the voice's set.

    Raises:
        KeyError: a phone outside ARPAbet.
    """
    v = VOICES[voice]
    table = PHONE_MAPS[v.language]
    stresses = [int(m.group(1)) for p in arpabet if (m := re.search(r"(\d)$", p))]
    primary = stresses.index(1) if 1 in stresses else 0
    out: list[Syllable] = []
    onset: list[str] = []
    nucleus = 0
    for p in arpabet:
        base = re.sub(r"\d", "", p).lower()
        mapped = list(table[base])
        if base not in _VOWELS:
            onset += mapped
            continue
        stress = 1 if nucleus == primary else 0
        if stress:
            mapped = list(_STRESSED.get(v.language, {}).get(base, mapped))
        if stress and v.stressed_vowel_suffix:
            mapped[0] += v.stressed_vowel_suffix
        out.append((onset + mapped, stress))
        onset = []
        nucleus += 1
    if onset:  # word-final consonants close the last syllable
        if out:
            out[-1] = (out[-1][0] + onset, out[-1][1])
        else:
            out.append((onset, 1))
    return out


def lexicon_entry(word: str, voice: str) -> str:
    """The Scheme form that adds ``word`` to the voice's lexicon (``lex.add.entry``).

    Raises:
        LexiconError: the word has no CMUdict or G2P pronunciation.
    """
    syls = syllables(stressed_pronunciation(word), voice)
    body = " ".join(f"(({' '.join(ph)}) {stress})" for ph, stress in syls)
    quoted = word.replace("\\", "\\\\").replace('"', '\\"')
    return f'(lex.add.entry \'("{quoted}" nil ({body})))'


def expected_segments(text: str, voice: str) -> int:
    """How many non-silence segments the voice must produce for ``text`` (a rendering whose
    count differs used the language's own letter-to-sound rules for some word)."""
    return sum(len(ph) for w in text.split() for ph, _ in syllables(stressed_pronunciation(w), voice))
