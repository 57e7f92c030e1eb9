"""Pronunciation lexicon: CMUdict without stress, flite G2P, errors listing all OOVs."""

import pytest

from s6damon.align.lexicon import ARPABET, LexiconError, build_lexicon, g2p_available


def test_cmudict_stress_stripped_lowercase():
    lex = build_lexicon(["the", "kitchen"])
    assert ["dh", "ah"] in lex["the"]
    assert lex["kitchen"][0] == ["k", "ih", "ch", "ah", "n"]


def test_max_pronunciations():
    assert len(build_lexicon(["the"], max_prons=1)["the"]) == 1


@pytest.mark.skipif(not g2p_available(), reason="flite's t2p not installed")
def test_oov_gets_flite_pronunciation_in_arpabet():
    lex = build_lexicon(["zorbleflax"])
    assert lex["zorbleflax"][0] and set(lex["zorbleflax"][0]) <= ARPABET


def test_g2p_disabled_lists_all_missing_words():
    with pytest.raises(LexiconError) as err:
        build_lexicon(["the", "zorbleflax", "quuxbarnik"], use_g2p=False)
    assert err.value.missing == ["quuxbarnik", "zorbleflax"]
    assert "zorbleflax" in str(err.value) and "quuxbarnik" in str(err.value)
