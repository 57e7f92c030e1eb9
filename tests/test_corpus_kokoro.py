"""Kokoro's English voices (s6damon.corpus.kokoro): fetched, checked and rendered reproducibly."""

import io

import numpy as np
import pytest

from s6damon.corpus import kokoro
from s6damon.corpus.synth import VoiceInfo, render, synthesize, voice_info

TEXTS = ["set a timer for the apple at five", "call mum on her mobile"]


@pytest.mark.parametrize("voice", ["kokoro:af_heart", "kokoro:bm_george"])
def test_kokoro_renders_untimed_speech_reproducibly(voice):
    """The model samples noise in its graph; the same texts give the same samples on every
    call, at a level with headroom, and the corpus's resampling reads them."""
    first = synthesize(voice, TEXTS)
    again = synthesize(voice, TEXTS)
    for a, b in zip(first, again):
        assert a is not None and not a.timed and a.phones == [] and a.words == []
        assert a.sample_rate == kokoro.SAMPLE_RATE and a.audio.dtype == np.float32 and 1.0 < a.duration < 6.0
        assert np.array_equal(a.audio, b.audio)
        assert np.abs(a.audio).max() == pytest.approx(kokoro.PEAK, abs=1e-3)
        assert np.sqrt(np.mean(a.audio ** 2)) > 0.03
    r = render(voice, TEXTS[0], 16000)
    assert r is not None and r.sample_rate == 16000 and r.duration == pytest.approx(first[0].duration, abs=0.01)


def test_kokoro_voice_info():
    assert voice_info("kokoro:bf_emma") == VoiceInfo("kokoro", "kokoro-bf_emma", "f")
    assert voice_info("kokoro:am_adam").gender == "m"
    assert kokoro.language("bf_emma") == "en-gb" and kokoro.language("af_heart") == "en-us"
    with pytest.raises(ValueError, match="kokoro:af_heart"):  # the error lists the known voices
        voice_info("kokoro:zz_nobody")
    with pytest.raises(ValueError, match="zz_nobody"):
        kokoro.synthesize("zz_nobody", TEXTS)


def test_kokoro_model_parts_are_hash_checked(tmp_path, monkeypatch):
    """Parts that join to the wrong file are refused and nothing is left in the cache."""
    monkeypatch.setenv("S6DAMON_KOKORO_DIR", str(tmp_path))
    monkeypatch.setattr(kokoro, "MODEL_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="SHA-256"):
        kokoro.model_path()
    assert list(tmp_path.iterdir()) == []


def test_kokoro_voices_download_is_hash_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("S6DAMON_KOKORO_DIR", str(tmp_path))
    monkeypatch.setattr(kokoro.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"not a tarball"))
    with pytest.raises(RuntimeError, match="wrong SHA-256"):
        kokoro.voices_path()
    assert list(tmp_path.iterdir()) == []
