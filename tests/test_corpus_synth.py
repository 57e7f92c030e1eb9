import numpy as np
import pytest

from s6damon.corpus.augment import augment
from s6damon.corpus.synth import mbrola_installed, render, synthesize, voice_info

TEXT = "set a timer for the apple at five"
VOICES = ["flite:awb", "flite:kal16", "festival:ked", "festival:slt-hts", "espeak:en-us+f3"]


@pytest.fixture(scope="module")
def renders():
    return {v: render(v, TEXT, 16000) for v in VOICES}


def _check_timings(r):
    assert r.sample_rate == 16000 and r.audio.dtype == np.float32 and r.audio.ndim == 1
    ph = r.phones
    assert ph[0][1] == 0.0 and ph[-1][2] == pytest.approx(r.duration, abs=1e-5)
    for (_, s, e), (_, s2, _) in zip(ph, ph[1:]):
        assert s < e and e == pytest.approx(s2)
    bounds = {round(s, 5) for _, s, _ in ph} | {round(ph[-1][2], 5)}
    assert [w for w, _, _ in r.words] == TEXT.split()
    for w, s, e in r.words:
        assert s < e and round(s, 5) in bounds and round(e, 5) in bounds
        inside = [p for p in ph if p[1] >= s - 1e-6 and p[2] <= e + 1e-6]
        assert inside and all(p[0] != "sil" for p in inside)
    assert all(w2[1] >= w1[2] - 1e-9 for w1, w2 in zip(r.words, r.words[1:]))


@pytest.mark.parametrize("voice", VOICES)
def test_synthesis_timings(renders, voice):
    r = renders[voice]
    assert r is not None
    _check_timings(r)
    speech = [lab for lab, _, _ in r.phones if lab != "sil"]
    assert sum(lab.startswith("x:") for lab in speech) <= 0.1 * len(speech)  # documented non-1:1 only


@pytest.mark.parametrize("voice", ["flite:awb", "festival:ked"])
def test_leading_silence_is_quiet(renders, voice):
    """The audio before the first word is (near) silent, the first word is loud."""
    r = renders[voice]
    s0 = int(r.words[0][1] * r.sample_rate)
    rms_pre = np.sqrt(np.mean(r.audio[: max(s0 - 160, 1)] ** 2))
    e0 = int(r.words[0][2] * r.sample_rate)
    rms_word = np.sqrt(np.mean(r.audio[s0:e0] ** 2))
    assert s0 > 1600 and rms_pre < 0.1 * rms_word


@pytest.mark.parametrize("voice", ["pico:en-US", "pico:en-GB"])
def test_pico_renders_untimed_female_speech(voice):
    r = render(voice, TEXT, 16000)
    assert r is not None and not r.timed and r.phones == [] and r.words == []
    assert r.sample_rate == 16000 and r.audio.dtype == np.float32 and 1.0 < r.duration < 6.0
    assert 0.05 < np.sqrt(np.mean(r.audio ** 2)) and np.abs(r.audio).max() < 0.99  # loud, not clipped
    info = voice_info(voice)
    assert info.family == "pico" and info.gender == "f"
    slow = augment(r, stretch=1.3)
    assert not slow.timed and slow.duration == pytest.approx(1.3 * r.duration, rel=0.02)


def test_piper_renders_untimed_male_speech_reproducibly():
    """Piper's VITS model samples noise inside the graph; the same texts render the same
    samples on every call (the corpus is reproducible), and the level leaves headroom."""
    texts = [TEXT, "call mum on her mobile"]
    first = synthesize("piper:joe", texts)
    again = synthesize("piper:joe", texts)
    for a, b in zip(first, again):
        assert a is not None and not a.timed and a.phones == [] and a.words == []
        assert a.sample_rate == 22050 and a.audio.dtype == np.float32 and 1.0 < a.duration < 6.0
        assert np.array_equal(a.audio, b.audio)
        assert np.abs(a.audio).max() == pytest.approx(0.9, abs=0.01) and np.sqrt(np.mean(a.audio ** 2)) > 0.05
    info = voice_info("piper:joe")
    assert info.family == "piper" and info.gender == "m" and info.person == "joe"
    r = render("piper:joe", TEXT, 16000)
    assert r is not None and r.sample_rate == 16000 and not r.timed


def test_espeak_renders_the_same_samples_every_call():
    """libespeak-ng keeps state between utterances (in one process a second rendering of the
    same texts differs); each call renders in a fresh process, so a call's samples do not
    depend on what the process rendered before, and the corpus is reproducible."""
    texts = ["call mum on her mobile", TEXT]
    first = synthesize("espeak:en-us+f2", texts)
    synthesize("espeak:en+m1", ["what is the weather in paris"])
    again = synthesize("espeak:en-us+f2", texts)
    for a, b in zip(first, again):
        assert a is not None and b is not None
        assert np.array_equal(a.audio, b.audio) and a.phones == b.phones and a.words == b.words


def test_espeak_unknown_voice_is_named():
    with pytest.raises(ValueError, match="zz-nosuch"):
        synthesize("espeak:zz-nosuch", ["hello"])


def test_voice_info_same_person():
    assert voice_info("flite:kal16").person == voice_info("festival:kal").person
    assert voice_info("flite:slt").person == voice_info("festival:slt-hts").person
    assert voice_info("espeak:en+f2").person == voice_info("espeak:en-us+f2").person
    assert voice_info("espeak:en+f2").gender == "f" and voice_info("espeak:en+m2").gender == "m"
    with pytest.raises(ValueError):
        voice_info("nope:x")


def _gap(r):
    """Start and end of the longest internal silence, from the audio energy (10 ms frames)."""
    hop = r.sample_rate // 100
    e = np.array([np.sqrt(np.mean(r.audio[i:i + hop] ** 2)) for i in range(0, len(r.audio) - hop, hop)])
    quiet = e < 0.02 * e.max()
    best, cur, start = (0, 0, 0), 0, 0
    first, last = np.argmax(~quiet), len(quiet) - np.argmax(~quiet[::-1])
    for i in range(first, last):
        if quiet[i]:
            cur, start = (cur + 1, start) if cur else (1, i)
            if cur > best[0]:
                best = (cur, start, i + 1)
        else:
            cur = 0
    return best[1] / 100, best[2] / 100


@pytest.mark.parametrize("kw,factor", [({"stretch": 1.3}, 1.3), ({"speed": 1.25}, 0.8),
                                       ({"pitch_semitones": 4.0}, 1.0)])
def test_augment_scales_timings(kw, factor):
    r = render("festival:ked", "turn off the lights, then call anna", 16000)
    a = augment(r, **kw)
    assert a.duration == pytest.approx(r.duration * factor, abs=0.03)
    for (w, s, e), (w2, s2, e2) in zip(r.words, a.words):
        assert w == w2 and s2 == pytest.approx(min(s * factor, a.duration), abs=1e-3)
    # the pause at the comma moves where the factor predicts
    g0, g1 = _gap(r)
    h0, h1 = _gap(a)
    assert h0 == pytest.approx(g0 * factor, abs=0.03) and h1 == pytest.approx(g1 * factor, abs=0.03)
    sil = [p for p in a.phones if p[0] == "sil" and 0 < p[1] and p[2] < a.duration]
    assert sil and any(abs(p[1] - h0) < 0.05 for p in sil)


MBROLA_VOICES = ["mbrola:us1", "mbrola:us2", "mbrola:us3"]
HAVE_MBROLA = all(mbrola_installed(v) for v in MBROLA_VOICES)
MBROLA_HINT = "MBROLA voices not installed (opt-in: S6DAMON_MBROLA=1 bash scripts/setup.sh)"


@pytest.mark.skipif(not HAVE_MBROLA, reason=MBROLA_HINT)
@pytest.mark.parametrize("voice", MBROLA_VOICES)
def test_mbrola_timings_are_exact(voice):
    """festival plans the segments and MBROLA renders them at those durations: the words are
    timed, and the pause festival put at the comma is where the audio is silent."""
    r = render(voice, TEXT, 16000)
    assert r is not None and r.timed
    _check_timings(r)
    assert all(not lab.startswith("x:") for lab, _, _ in r.phones)  # CMU phone set, no mapping gaps
    paused = render(voice, "turn off the lights, then call anna", 16000)
    g0, g1 = _gap(paused)
    sil = [p for p in paused.phones if p[0] == "sil" and 0 < p[1] and p[2] < paused.duration]
    assert sil and any(abs(s - g0) < 0.05 and abs(e - g1) < 0.05 for _, s, e in sil)
    info = voice_info(voice)
    assert info.family == "mbrola" and info.gender == ("f" if voice == "mbrola:us1" else "m")


def test_mbrola_missing_voice_names_the_package(monkeypatch):
    from s6damon.corpus import synth

    monkeypatch.setitem(synth._FESTIVAL_VOICE_FN, "mbrola:us2", "voice_no_such_mbrola")
    with pytest.raises(RuntimeError, match="festvox-us2.*S6DAMON_MBROLA=1"):
        synthesize("mbrola:us2", [TEXT])
