"""Test-time warping: confidence scores, the choice per utterance and per speaker, warped emissions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _train_fixtures import make_manifest, tiny_params
from s6damon.decode.beam import emissions
from s6damon.decode.warp import CRITERIA, choose, confidence, greedy_text, select, warp_factors, warped_emissions
from s6damon.model.factory import build_ctc_model
from s6damon.model.vocab import build_tokenizer


def _logp(rows: list[list[float]]) -> torch.Tensor:
    return torch.log_softmax(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_a_peaked_posterior_scores_higher_on_every_criterion():
    sure = _logp([[0.0, 9.0, 0.0], [9.0, 0.0, 0.0], [0.0, 0.0, 9.0]])
    unsure = _logp([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    for c in CRITERIA:
        assert confidence(sure, c) > confidence(unsure, c), c


def test_speech_score_ignores_blank_frames_and_all_blank_is_minus_infinity():
    # two sure blank frames and one unsure letter frame
    lp = _logp([[9.0, 0.0, 0.0], [9.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    letter = float(lp[2].max())
    assert confidence(lp, "speech_max_logp") == pytest.approx(letter)
    assert confidence(lp, "max_logp") > letter
    assert confidence(lp[:2], "speech_max_logp") == -math.inf
    assert confidence(lp[:0], "max_logp") == -math.inf
    with pytest.raises(ValueError, match="unknown warp criterion 'likelihood'"):
        confidence(lp, "likelihood")


def test_choose_per_utterance_and_per_speaker():
    scores = np.array([[-1.0, -5.0, -2.0],    # factor 0
                       [-2.0, -1.0, -2.5]])   # factor 1
    assert choose(scores).tolist() == [0, 1, 0]
    # speaker a = utterances 0 and 1: weighted means -1.8 (factor 0) and -1.2 (factor 1)
    assert choose(scores, ["a", "a", "b"], np.array([1.0, 4.0, 1.0])).tolist() == [1, 1, 0]
    # equal weights: means -3.0 and -1.5 → still factor 1; b alone keeps its own best
    assert choose(scores, ["a", "a", "b"]).tolist() == [1, 1, 0]
    with pytest.raises(ValueError, match="2 group labels for 3 utterances"):
        choose(scores, ["a", "b"])


def test_an_unscorable_utterance_does_not_decide_its_speaker():
    scores = np.array([[-1.0, -math.inf], [-2.0, -0.1]])
    assert choose(scores, ["s", "s"]).tolist() == [0, 0]


def test_warp_factors_always_hold_no_warp():
    assert warp_factors(0.8, 1.2, 5) == [0.8, 0.9, 1.0, 1.1, 1.2]
    assert 1.0 in warp_factors(0.85, 1.2, 4)
    assert warp_factors(0.9, 1.1, 1) == [1.0]
    with pytest.raises(ValueError, match="contain 1.0"):
        warp_factors(1.05, 1.2, 3)


def test_warped_emissions_change_length_with_the_factor_and_select_picks_per_row(tmp_path):
    torch.manual_seed(0)
    m, _, _ = tiny_params()
    tok = build_tokenizer()
    model = build_ctc_model(m, tok, mask_time_prob=0.0).eval()
    df = make_manifest(tmp_path / "wav", n=3)
    factors = [0.8, 1.0, 1.25]
    out = warped_emissions(model, df, factors)
    assert len(out) == 3 and all(len(per) == len(df) for per in out)
    for i in range(len(df)):
        frames = [out[k][i].shape[0] for k in range(3)]
        assert frames[0] > frames[1] > frames[2]
        # no warp is exactly the plain emissions
        torch.testing.assert_close(out[1][i], emissions(model, df)[i])
    chosen, idx = select(out, "max_logp")
    for i, k in enumerate(idx):
        assert chosen[i] is out[int(k)][i]
        assert confidence(chosen[i]) == max(confidence(out[j][i]) for j in range(3))
    assert isinstance(greedy_text(chosen[0], tok), str)
