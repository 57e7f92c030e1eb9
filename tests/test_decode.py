"""The decode stage's core: Kneser-Ney ARPA LM, lexicon, beam search and its dev tuning."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from s6damon.decode import (BeamDecoder, BeamSettings, estimate, lm_sentences, oov_rate, read_arpa, tune,
                            write_arpa, write_lexicon)
from s6damon.model.vocab import build_tokenizer

TEXT = ["set a timer for ten minutes", "set an alarm for seven", "call mom", "call the office",
        "set a timer for five minutes", "play some music", "turn off the lights", "call mom now"]
SENTS = [t.split() for t in TEXT]


def _tokens() -> list[str]:
    tok = build_tokenizer()
    return tok.convert_ids_to_tokens(list(range(len(tok))))


def _emission(spelling: list[str | tuple[str, str]], tokens: list[str], confidence: float = 4.0) -> torch.Tensor:
    """Log-probs spelling ``spelling`` one character per 3 frames (two blanks between).

    A ``(a, b)`` pair makes ``a`` and ``b`` almost equally likely on that frame, ``a`` slightly ahead.
    """
    frames = []
    for ch in spelling:
        row = torch.zeros(len(tokens))
        if isinstance(ch, tuple):
            row[tokens.index(ch[0])] = confidence
            row[tokens.index(ch[1])] = confidence - 0.2
        else:
            row[tokens.index(ch)] = confidence
        blank = torch.zeros(len(tokens))
        blank[0] = confidence
        frames += [row, blank, blank]
    return torch.log_softmax(torch.stack(frames), dim=-1)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_context_distribution_sums_to_one(order):
    model = estimate(SENTS, order)
    words = [w for w in model.vocab if w != "<s>"]
    for ctx in [(), ("<s>",), ("set",), ("set", "a"), ("call", "mom"), ("unseen", "words"), ("timer", "for", "ten")]:
        assert math.isclose(sum(10 ** model.logprob(w, ctx) for w in words), 1.0, abs_tol=1e-6), ctx


def test_seen_continuations_beat_unseen_and_unknown_words_get_unk():
    model = estimate(SENTS, 3)
    assert model.logprob("timer", ("set", "a")) > model.logprob("alarm", ("set", "a"))
    assert model.logprob("zebra") == model.logprob("<unk>") < model.logprob("call")
    assert 0.0 < min(model.discounts) and max(model.discounts) < 1.0


def test_arpa_round_trip_and_kenlm_reads_it(tmp_path):
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import create_word_dict, Dictionary

    model = estimate(SENTS, 3)
    path = write_arpa(model, tmp_path / "lm.arpa")
    again = read_arpa(path)
    assert again.order == 3 and [len(p) for p in again.probs] == [len(p) for p in model.probs]
    for ctx in [(), ("call",), ("set", "a")]:
        for w in ("timer", "mom", "</s>", "zebra"):
            assert again.logprob(w, ctx) == pytest.approx(model.logprob(w, ctx), abs=1e-5)
    words = Dictionary()
    for w in model.vocab:
        words.add_entry(w)
    lm = KenLM(str(path), words)  # raises on a malformed file
    state = lm.start(False)
    _, score = lm.score(state, words.get_index("call"))
    assert score == pytest.approx(model.logprob("call", ("<s>",)), abs=1e-4)  # KenLM scores in log10


def test_read_arpa_names_a_file_that_is_not_arpa(tmp_path):
    bad = tmp_path / "lm.arpa"
    bad.write_text("-1.0\thello\n")
    with pytest.raises(ValueError, match="lm.arpa"):
        read_arpa(bad)


def test_lm_text_leaves_out_held_out_sentences_and_counts_them():
    manifest = pd.DataFrame({"text": ["call mom", "play some music", "call mom", "turn off the lights"],
                             "split": ["train", "train", "test", "dev"]})
    sents, excluded = lm_sentences(manifest, ["dev", "test"])
    assert sents == [["play", "some", "music"]] and excluded == 1
    sents, excluded = lm_sentences(manifest, ["dev", "test"], exclude_held_out=False)
    assert len(sents) == 2 and excluded == 0
    with pytest.raises(ValueError, match="train"):
        lm_sentences(manifest[manifest.split != "train"], ["test"])
    assert oov_rate(["call mom now"], {"call", "mom"}) == pytest.approx(1 / 3)


def test_lexicon_keeps_only_spellable_words(tmp_path):
    path = write_lexicon(["call", "mom", "don't", "b2b", ""], tmp_path / "lexicon.txt")
    assert path.read_text().splitlines() == ["call c a l l |", "don't d o n ' t |", "mom m o m |"]
    with pytest.raises(ValueError, match="lexicon.txt"):
        write_lexicon(["b2b"], tmp_path / "lexicon.txt")


def test_beam_search_with_the_lm_repairs_what_greedy_misreads(tmp_path):
    tokens = _tokens()
    write_lexicon({w for s in SENTS for w in s} | {"nom"}, tmp_path / "lexicon.txt")
    lm = write_arpa(estimate(SENTS, 3), tmp_path / "lm.arpa")
    # "call mom" where the acoustics slightly prefer "n" over "m" for the first letter of mom
    logp = _emission(["c", "a", "l", "l", "|", ("n", "m"), "o", "m"], tokens)
    greedy = "".join(tokens[i] for i in torch.unique_consecutive(logp.argmax(-1)).tolist() if i != 0)
    assert greedy.replace("|", " ") == "call nom"
    no_lm = BeamDecoder(tokens, tmp_path / "lexicon.txt", None, BeamSettings(lm_weight=0.0))
    assert no_lm.decode(logp) == "call nom"
    with_lm = BeamDecoder(tokens, tmp_path / "lexicon.txt", lm, BeamSettings(lm_weight=2.0))
    assert with_lm.decode(logp) == "call mom"

    for jobs in (1, 2):  # forked workers search the same grid
        settings, grid = tune(tokens, tmp_path / "lexicon.txt", lm, [logp], ["call mom"], [0.0, 2.0], [0.0], 50, 25.0,
                              jobs=jobs)
        assert settings.lm_weight == 2.0 and [g["wer"] for g in grid] == [0.5, 0.0]


def test_params_refuse_tuning_on_a_scored_split(tmp_path):
    import yaml

    from s6damon.config import ParamsError, load_params

    from tests.conftest import REPO

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["decode"]["tune_split"] = "test"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match="decode.tune_split"):
        load_params(path)
    raw["decode"]["tune_split"] = "dev"
    raw["decode"]["lexicon"] = "everything"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match="decode.lexicon"):
        load_params(path)
