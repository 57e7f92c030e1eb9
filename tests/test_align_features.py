"""Kaldi backend features: dither, CMVN pooling, speaker field compatibility."""

import dataclasses

import numpy as np

from s6damon.align.base import AlignItem
from s6damon.align.features import apply_cmvn, mfcc
from s6damon.config.align import KaldiAlignParams


def test_dither_keeps_digital_silence_near_real_silence():
    rng = np.random.default_rng(0)
    quiet = np.concatenate([np.zeros(8000), 1e-4 * rng.standard_normal(8000)]).astype(np.float32)
    kp = KaldiAlignParams()
    c0 = mfcc(quiet, kp, seed=1)[:, 0]
    n = len(c0) // 2
    # exact zeros and faint noise give log energies in the same range, not at the floor
    assert abs(np.median(c0[: n - 3]) - np.median(c0[n + 3:])) < 15
    assert np.array_equal(c0, mfcc(quiet, kp, seed=1)[:, 0])  # reproducible
    raw = mfcc(quiet, dataclasses.replace(kp, dither=0.0))[:, 0]
    assert np.median(raw[: n - 3]) < np.median(c0[: n - 3]) - 30  # undithered: floor value


def test_cmvn_pools_statistics_per_group():
    rng = np.random.default_rng(0)
    static = {"a": rng.normal(5, 2, (50, 3)), "b": rng.normal(5, 2, (70, 3)), "c": rng.normal(-1, 1, (40, 3))}
    out = apply_cmvn(static, {"a": "s1", "b": "s1", "c": "c"}, variance=True)
    both = np.concatenate([out["a"], out["b"]])
    assert np.allclose(both.mean(0), 0, atol=1e-5) and np.allclose(both.std(0), 1, atol=1e-4)
    assert not np.allclose(out["a"].mean(0), 0, atol=1e-3)  # pooled, not per utterance
    assert np.allclose(out["c"].mean(0), 0, atol=1e-5)
    mean_only = apply_cmvn(static, {}, variance=False)
    assert np.allclose(mean_only["c"].std(0), static["c"].std(0), atol=1e-5)


def test_align_item_speaker_is_optional():
    assert AlignItem("u", "x.wav", "hi").speaker is None
    assert AlignItem("u", "x.wav", "hi", speaker="s").speaker == "s"
