"""Test-time warping: posterior averaging over warped copies, and the pilot's confidence choice."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _train_fixtures import make_manifest, tiny_params
from s6damon.config import ParamsError
from s6damon.config.decode import DecodeParams, check_factors
from s6damon.decode.beam import emissions
from s6damon.decode.warp import average, averaged, greedy_text, warped_emissions
from s6damon.model.factory import build_ctc_model
from s6damon.model.vocab import build_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from warp_pilot import CRITERIA, choose, confidence  # noqa: E402


def _logp(rows: list[list[float]]) -> torch.Tensor:
    return torch.log_softmax(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_averaging_equal_lengths_is_the_mean_posterior():
    a = _logp([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    b = _logp([[0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    out = average([a, b], 2)
    torch.testing.assert_close(out.exp(), (a.exp() + b.exp()) / 2)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2))


def test_a_longer_copy_is_resampled_onto_the_reference_frames():
    # a copy at half the rate: every frame of the reference appears twice
    ref = _logp([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])
    slow = ref.repeat_interleave(2, dim=0)
    out = average([ref, slow], 3)
    assert out.shape == (3, 2)
    assert out.argmax(-1).tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="cannot resample 0 frames onto 3"):
        average([ref, ref[:0]], 3)


def test_one_confident_copy_outvotes_two_unsure_ones():
    unsure = _logp([[0.0, 0.3, 0.0]])     # letter 1 barely ahead
    sure = _logp([[0.0, 0.0, 6.0]])       # letter 2 by far
    assert average([unsure, unsure, sure], 1).argmax(-1).item() == 2


def test_warp_factors_must_hold_the_unwarped_copy_and_are_validated_in_params():
    assert check_factors([0.95, 1, 1.05]) == [0.95, 1.0, 1.05]
    for bad, msg in (([0.9, 1.1], "must include 1.0"), ([1.0, 1.0], "distinct"), ([], "not empty")):
        with pytest.raises(ValueError, match=msg):
            check_factors(bad)
    with pytest.raises(ParamsError, match="'decode.warp_factors'.*must include 1.0"):
        DecodeParams(warp_factors=[0.9, 1.1]).check()
    with pytest.raises(ValueError, match="2 emission sets for 3 warp factors"):
        averaged([[], []], [0.95, 1.0, 1.05])


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


def test_warped_emissions_change_length_with_the_factor_and_average_onto_the_unwarped_frames(tmp_path):
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
    avg = averaged(out, factors)
    assert [lp.shape[0] for lp in avg] == [lp.shape[0] for lp in out[1]]
    assert isinstance(greedy_text(avg[0], tok), str)
    # the pilot's per-utterance choice: the factor the model is surest of
    scores = np.array([[confidence(lp) for lp in per] for per in out])
    assert (choose(scores) == scores.argmax(0)).all()
