"""Phone label mapping from each synthesiser's phone set to lower-case ARPAbet.

flite and festival already use the CMU/radio phone set (ARPAbet without stress, plus
``pau`` for silence), so their labels only need ``pau`` → ``sil``. espeak-ng uses its own
ASCII mnemonics; :data:`ESPEAK_TO_ARPABET` maps the English ones. Where espeak-ng has no
one-phone ARPAbet equivalent (e.g. ``@L`` syllabic l = ``ah l``, ``aI@`` = ``ay er``, the
glottal stop ``?``), the label is kept as espeak-ng wrote it, prefixed ``x:`` so such
phones are easy to find and cannot collide with ARPAbet labels.
"""

from __future__ import annotations

SILENCE = "sil"

#: espeak-ng English mnemonic → ARPAbet (lower-case, no stress).
ESPEAK_TO_ARPABET: dict[str, str] = {
    # consonants
    "p": "p", "b": "b", "t": "t", "d": "d", "k": "k", "g": "g", "f": "f", "v": "v",
    "T": "th", "D": "dh", "s": "s", "z": "z", "S": "sh", "Z": "zh", "h": "hh", "m": "m",
    "n": "n", "N": "ng", "l": "l", "r": "r", "w": "w", "j": "y", "tS": "ch", "dZ": "jh",
    "t#": "t", "d#": "d", "z#": "z", "l/": "l", "r-": "r", "n-": "n", "m-": "m", "x": "hh",
    "W": "w",
    # vowels
    "a": "ae", "a#": "ah", "aa": "ae", "A:": "aa", "A": "aa", "A@": "aa", "aI": "ay",
    "aU": "aw", "@": "ah", "@-": "ah", "@2": "ah", "@5": "ah", "3": "er", "3:": "er",
    "E": "eh", "E2": "eh", "E@": "eh", "e@": "eh", "eI": "ey", "i": "iy", "i:": "iy",
    "I": "ih", "I#": "ih", "I2": "ih", "I@": "ih", "i@": "ih", "0": "aa", "02": "aa",
    "0#": "aa", "O": "ao", "O:": "ao", "O@": "ao", "o@": "ao", "oU": "ow", "oU#": "ow",
    "U": "uh", "U@": "uh", "u:": "uw", "u": "uw", "V": "ah", "OI": "oy", "@r": "er",
    "3r": "er", "a@": "aa",
}

#: espeak-ng pause mnemonics.
ESPEAK_PAUSES = {"_", "_:", "_!", "_^_", "_|", "__"}


def from_radio(label: str) -> str:
    """Map a flite/festival phone label to the corpus label (``pau`` → ``sil``)."""
    label = label.lower()
    return SILENCE if label in ("pau", "h#", "sil", "brth") else label


def from_espeak(label: str) -> str:
    """Map an espeak-ng mnemonic to ARPAbet, or ``x:<label>`` where there is no 1:1 match."""
    if label in ESPEAK_PAUSES or label.startswith("_"):
        return SILENCE
    if label in ESPEAK_TO_ARPABET:
        return ESPEAK_TO_ARPABET[label]
    return f"x:{label}"
