"""Paired bootstrap of the WER difference between two systems on the same utterances."""

from __future__ import annotations

import pandas as pd
import pytest

from s6damon.train.evaluate import paired_bootstrap, score, word_errors


def _hyps(pairs: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame({"utt_id": [f"u{i:03d}" for i in range(len(pairs))],
                         "ref": [r for r, _ in pairs], "hyp": [h for _, h in pairs]})


def test_word_errors_count_substitutions_deletions_insertions() -> None:
    errors, words = word_errors(_hyps([("set a timer", "set the timer now"), ("call anna", "")]))
    assert errors.tolist() == [2, 2] and words.tolist() == [3, 2]


def test_delta_equals_wer_difference_and_interval_covers_it() -> None:
    refs = [f"turn on the light number {i}" for i in range(60)]
    a = _hyps([(r, r) for r in refs])
    # b gets one word wrong in every third utterance
    b = _hyps([(r, r.replace("light", "lamp") if i % 3 == 0 else r) for i, r in enumerate(refs)])
    out = paired_bootstrap(a, b, resamples=500, seed=1)
    assert out["delta"] == pytest.approx(score(b)["wer"] - score(a)["wer"])
    assert 0 < out["low"] <= out["delta"] <= out["high"]
    # the order of rows does not matter: utterances are paired by utt_id
    assert paired_bootstrap(a, b.iloc[::-1], resamples=500, seed=1) == out


def test_identical_systems_have_a_zero_interval() -> None:
    a = _hyps([("what time is it", "what tme is it"), ("stop", "stop")])
    assert paired_bootstrap(a, a.copy(), resamples=200) == {"delta": 0.0, "low": 0.0, "high": 0.0, "utterances": 2}


def test_unpaired_inputs_are_refused() -> None:
    a = _hyps([("stop the music", "stop the music"), ("play", "play")])
    with pytest.raises(ValueError, match="same utterances"):
        paired_bootstrap(a, a.iloc[:1])
    b = a.copy()
    b.loc[0, "ref"] = "start the music"
    with pytest.raises(ValueError, match="same references"):
        paired_bootstrap(a, b)
