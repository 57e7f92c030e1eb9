"""English read by festival's Italian, Catalan, Czech and Finnish voices (s6damon.corpus.crosslingual)."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s6damon.corpus import crosslingual as X
from s6damon.corpus.synth import _parse_cross, render, voice_info

ARPABET = ("aa ae ah ao aw ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th "
           "uh uw v w y z zh").split()


def test_every_arpabet_phone_is_mapped():
    for lang, table in X.PHONE_MAPS.items():
        assert sorted(table) == sorted(ARPABET), lang
        vowels = [p for p in ARPABET if p in X._VOWELS]
        assert all(table[v] for v in vowels), lang  # a vowel never vanishes: one syllable each


def test_syllables_follow_vowels_and_primary_stress():
    # "hello" HH AH0 L OW1: Italian drops h, stresses the second syllable (stressed vowel "o1")
    assert X.syllables(["HH", "AH0", "L", "OW1"], "festival:it-lp") == [(["a"], 0), (["l", "o1", "u"], 1)]
    # Czech keeps h, marks no stressed vowel variant; final consonants close the last syllable
    assert X.syllables(["T", "AY1", "M", "ER0", "Z"], "festival:cs-dita") == [
        (["t", "a", "j"], 1), (["m", "e", "r", "z"], 0)]
    # Catalan's schwa has no stressed form: a stressed AH becomes a1
    assert X.syllables(["K", "AH1", "T"], "festival:ca-ona") == [(["k", "a1", "t"], 1)]
    # no stress digit (a G2P pronunciation): the first vowel takes the stress
    assert X.syllables(["S", "EH", "T"], "festival:fi-mv") == [(["s", "e", "t"], 1)]


def test_lexicon_entry_and_segment_count():
    assert X.lexicon_entry("timer", "festival:it-pc") == \
        '(lex.add.entry \'("timer" nil (((t a1 i) 1) ((m e r) 0))))'
    assert X.expected_segments("set a timer", "festival:it-pc") == 3 + 1 + 6
    with pytest.raises(X.LexiconError):
        X.stressed_pronunciation("")


@pytest.mark.parametrize("voice", sorted(X.VOICES))
def test_mapped_phones_are_in_the_voice_phone_set(voice):
    script = (f"({X.VOICES[voice].function})\n"
              "(format t \"%l\\n\" (mapcar car (cadr (assoc 'phones (PhoneSet.description '(phones))))))\n")
    out = subprocess.run(["festival", "--pipe"], input=script, capture_output=True, text=True, check=True).stdout
    phone_set = set(out.strip().strip("()").split())
    # every phone a pronunciation can produce: each ARPAbet phone unstressed and stressed
    used = set()
    for p in ARPABET:
        for pron in ([p.upper() + "0", "AA1"], [p.upper() + "1"]) if p in X._VOWELS else ([p.upper(), "AA1"],):
            used |= {ph for syl, _ in X.syllables(pron, voice) for ph in syl}
    assert used <= phone_set, sorted(used - phone_set)


@pytest.mark.parametrize("voice", sorted(X.VOICES))
def test_cross_voice_renders_untimed_speech(voice):
    r = render(voice, "set a timer for ten minutes", 16000)
    assert r is not None and not r.timed and r.sample_rate == 16000
    assert 1.0 < r.duration < 5.0 and 0.02 < np.sqrt(np.mean(r.audio ** 2)) and np.abs(r.audio).max() <= 1.0
    info = voice_info(voice)
    assert info.family == "festival" and info.gender == X.VOICES[voice].gender
    assert info.person not in {voice_info(v).person for v in ("flite:slt", "flite:rms", "festival:kal")}


@pytest.mark.parametrize("voice", ["festival:it-lp", "festival:ca-ona"])
def test_words_the_tokeniser_would_spell_or_split_render(voice):
    # from text, Italian and Catalan spell out "my" (no vowel letter) and split "what's"
    assert X.VOICES[voice].from_words
    assert render(voice, "what's on my list", 16000) is not None


def test_rendering_that_left_the_added_entries_is_rejected(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    ok = "S # 0.1\nS p 0.2\nS u1 0.3\nS t 0.4\nS # 0.5\nW put 0.1 0.4\n"
    assert _parse_cross("festival:it-lp", "put", ok, wav) is not None
    # one more segment than the entry holds: the language's own rules read the word
    extra = ok.replace("S t 0.4", "S t 0.35\nS a 0.4")
    assert _parse_cross("festival:it-lp", "put", extra, wav) is None
    split = ok + "W x 0.4 0.4\n"  # a word festival split in two
    assert _parse_cross("festival:it-lp", "put", split, wav) is None


def test_women_and_men():
    genders = [v.gender for v in X.VOICES.values()]
    assert genders.count("f") >= 3 and genders.count("m") >= 3
    assert set(X.PACKAGES) == set(X.VOICES)
    setup = (Path(__file__).resolve().parents[1] / "scripts" / "setup.sh").read_text()
    assert all(pkg in setup for pkg in X.PACKAGES.values())  # the setup command installs them
