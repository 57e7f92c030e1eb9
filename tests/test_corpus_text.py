from s6damon.corpus import grammar, sentences
from s6damon.text import normalise


def test_grammar_deterministic_and_varied():
    a = grammar.generate_commands(2000, seed=7)
    assert a == grammar.generate_commands(2000, seed=7)
    assert a != grammar.generate_commands(2000, seed=8)
    assert len(set(a)) == 2000
    assert all(normalise(t) == t for t in a)
    assert len({t.split()[0] for t in a}) > 10
    assert 150 <= len(grammar.vocabulary()) <= 1000


def test_number_words():
    assert grammar.number_words(0) == "zero"
    assert grammar.number_words(25) == "twenty five"
    assert grammar.number_words(110) == "one hundred and ten"


def test_sentence_filter():
    assert sentences.keep_sentence("The cat sat on the mat.") == "the cat sat on the mat"
    assert sentences.keep_sentence("Too short.") is None
    assert sentences.keep_sentence("The zxqvw sat on the mat.") is None
    assert sentences.keep_sentence("I have 42 cats at home.") is None
    assert sentences.keep_sentence(" ".join(["word"] * 21)) is None


def test_sentence_sample_deterministic():
    a = sentences.sample_sentences(50, seed=3)
    assert a == sentences.sample_sentences(50, seed=3)
    assert len(set(a)) == 50
    assert all(4 <= len(s.split()) <= 20 for s in a)
