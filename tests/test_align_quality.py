"""Alignment quality metrics on hand-made tables."""

import pandas as pd
import pytest

from s6damon.align.quality import alignment_quality


def _tables(shift=0.0):
    words = pd.DataFrame([("u", "hi", 0.1 + shift, 0.3 + shift), ("u", "yo", 0.3 + shift, 0.6 + shift),
                          ("v", "ok", 0.0 + shift, 0.4 + shift)], columns=["utt_id", "word", "start", "end"])
    phones = pd.DataFrame([("u", "pau", 0.0, 0.1 + shift), ("u", "hh", 0.1 + shift, 0.2 + shift),
                           ("u", "ay", 0.2 + shift, 0.3 + shift), ("u", "y", 0.3 + shift, 0.4 + shift),
                           ("u", "ow", 0.4 + shift, 0.6 + shift), ("v", "ow", 0.0 + shift, 0.2 + shift),
                           ("v", "k", 0.2 + shift, 0.3 + shift), ("v", "ey", 0.3 + shift, 0.4 + shift)],
                          columns=["utt_id", "phone", "start", "end"])
    return words, phones


def test_perfect_alignment():
    w, p = _tables()
    q = alignment_quality(w, p, w, p, {"u": "flite", "v": "espeak"}, [])
    assert q["word_boundary_median_ms"] == 0 and q["within_20ms"] == 1.0 and q["within_50ms"] == 1.0
    assert q["phone_boundary_median_ms"] == 0 and q["phone_words_compared"] == 1.0
    assert q["utterances"] == 2 and q["failed"] == 0
    assert set(q["per_family"]) == {"flite", "espeak"}


def test_shifted_alignment_and_failures():
    w, p = _tables()
    pw, pp = _tables(shift=0.03)
    pw = pw[pw.utt_id == "u"]
    q = alignment_quality(pw, pp, w, p, {"u": "flite", "v": "espeak"}, [{"utt_id": "v", "reason": "x"}])
    assert q["word_boundary_median_ms"] == pytest.approx(30)
    assert q["within_20ms"] == 0.0 and q["within_50ms"] == 1.0
    assert q["failed"] == 1 and q["utterances"] == 1
    assert q["per_family"]["espeak"]["failed"] == 1 and q["per_family"]["espeak"]["utterances"] == 0


def test_phone_count_mismatch_is_not_compared():
    w, p = _tables()
    p2 = p[~((p.utt_id == "v") & (p.phone == "k"))]  # 'ok' now has 2 phones in the prediction
    q = alignment_quality(w, p2, w, p, {}, [])
    assert q["phone_words_compared"] == pytest.approx(2 / 3)


def test_word_mismatch_counted():
    w, p = _tables()
    w2 = w.copy()
    w2.loc[0, "word"] = "ho"
    q = alignment_quality(w2, p, w, p, {}, [])
    assert q["word_mismatch"] == 1 and q["word_boundaries"] == 2
