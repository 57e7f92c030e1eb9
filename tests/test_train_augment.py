"""Waveform augmentation: noise slopes and SNR, the equaliser's gain and headroom, and the
contract that augmentation off leaves training's random stream (and batches) untouched."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from s6damon.config.model import AugmentParams, FinetuneParams
from s6damon.config.schema import ParamsError, build
from s6damon.train.augment import WaveAugmenter, add_coloured_noise, coloured_noise, random_equaliser
from s6damon.train.data import AudioSet
from s6damon.train.finetune import finetune
from _train_fixtures import make_manifest, tiny_params


def _band_power_db(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x))
    return 10 * math.log10(spec[(f >= lo) & (f < hi)].mean())


@pytest.mark.parametrize("exponent, slope_db_per_decade", [(0.0, 0.0), (1.0, -10.0), (2.0, -20.0)])
def test_coloured_noise_has_the_requested_slope(exponent, slope_db_per_decade):
    n = coloured_noise(1 << 17, exponent, np.random.default_rng(3))
    assert n.dtype == np.float32 and abs(float(n.mean())) < 1e-3 and n.std() == pytest.approx(1.0, rel=1e-3)
    # mean power in two bands a decade apart
    drop = _band_power_db(n, 0.02, 0.03) - _band_power_db(n, 0.002, 0.003)
    assert drop == pytest.approx(slope_db_per_decade, abs=1.5)


def test_noise_is_added_at_the_drawn_snr():
    t = np.arange(32000) / 16000
    wave = (0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    p = AugmentParams(noise_prob=1.0, noise_snr_db=[12.0, 12.0], noise_exponents=[1.0])
    out = add_coloured_noise(wave, p, np.random.default_rng(0))
    noise = out - wave
    snr = 10 * math.log10(float((wave ** 2).sum()) / float((noise ** 2).sum()))
    assert snr == pytest.approx(12.0, abs=0.05)


def test_equaliser_applies_the_drawn_gain_without_clipping():
    t = np.arange(16000) / 16000
    # full scale: a boost would clip inside torchaudio's lfilter without the headroom
    wave = (0.5 * np.sin(2 * np.pi * 1000 * t) + 0.5 * np.sin(2 * np.pi * 100 * t)).astype(np.float32)
    p = AugmentParams(eq_prob=1.0, eq_bands=1, eq_gain_db=12.0, eq_freq_hz=[1000.0, 1000.0], eq_q=[2.0, 2.0])
    out = random_equaliser(wave, p, np.random.default_rng(5))
    replay = np.random.default_rng(5)
    replay.uniform()  # the centre frequency's draw (a fixed 1 kHz here)
    gain = replay.uniform(-12.0, 12.0)
    assert abs(gain) > 1.0  # the seed draws a gain worth measuring
    tail = slice(4000, None)  # past the filter's transient
    ratio = lambda x: _band_power_db(x[tail], 0.06, 0.065) - _band_power_db(x[tail], 0.0055, 0.007)  # noqa: E731
    assert ratio(out) - ratio(wave) == pytest.approx(gain, abs=1.0)
    # linear: no clipping, whatever the input level
    quiet = random_equaliser(wave * 0.01, p, np.random.default_rng(5))
    np.testing.assert_allclose(quiet / quiet.std(), out / out.std(), atol=1e-4)


def test_augmenter_off_draws_nothing_and_on_is_deterministic():
    wave = np.random.default_rng(1).standard_normal(8000).astype(np.float32) * 0.1
    off = WaveAugmenter(AugmentParams())
    rng = np.random.default_rng(7)
    assert not off.active and off(wave, rng) is wave
    assert rng.uniform() == np.random.default_rng(7).uniform()
    on = WaveAugmenter(AugmentParams(eq_prob=1.0, noise_prob=1.0))
    a, b = on(wave, np.random.default_rng(2)), on(wave, np.random.default_rng(2))
    assert on.active and a.shape == wave.shape and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a / a.std(), wave / wave.std(), atol=1e-2)


def test_batches_change_only_with_augmentation_on(tmp_path):
    data = AudioSet(make_manifest(tmp_path / "wav", 4))
    plain = data.batch([0, 1, 2], rng=np.random.default_rng(4), speed=[0.9, 1.1])
    off = data.batch([0, 1, 2], rng=np.random.default_rng(4), speed=[0.9, 1.1],
                     augment=None)
    noisy = WaveAugmenter(AugmentParams(noise_prob=1.0, noise_snr_db=[0.0, 0.0]))
    on = data.batch([0, 1, 2], rng=np.random.default_rng(4), speed=[0.9, 1.1],
                    augment=noisy.bind(np.random.default_rng(5)))
    assert np.array_equal(plain.input_values, off.input_values)
    # its own generator: the speed factors (lengths) are those of the plain batch
    assert np.array_equal(plain.attention_mask, on.attention_mask)
    assert not np.allclose(plain.input_values, on.input_values, atol=0.1)


def test_params_name_the_bad_augment_key():
    with pytest.raises(ParamsError, match=r"finetune\.augment\.noise_prob"):
        build(FinetuneParams, {"augment": {"noise_prob": 1.5}}, "finetune")
    with pytest.raises(ParamsError, match=r"finetune\.augment\.snr"):
        build(FinetuneParams, {"augment": {"snr": 10}}, "finetune")
    with pytest.raises(ParamsError, match=r"augment\.eq_q"):
        build(FinetuneParams, {"augment": {"eq_q": []}}, "finetune")


def test_finetune_trains_with_augmentation_and_refuses_it_with_the_feature_cache(tmp_path):
    m, _, p = tiny_params()
    aug = AugmentParams(eq_prob=0.5, noise_prob=0.5)
    df = make_manifest(tmp_path / "wav", 6)
    out = finetune(None, m, dataclasses.replace(p, steps=2, eval_every=2, augment=aug), df, None,
                   tmp_path / "model", tmp_path / "ck", seed=1, threads=1)
    assert out["metrics"]["steps"] == 2 and np.isfinite(out["metrics"]["final_train_loss"])
    cached = dataclasses.replace(p, steps=2, augment=aug, feature_cache=True, freeze_feature_encoder_steps=2)
    with pytest.raises(ValueError, match="feature_cache"):
        finetune(None, m, cached, df, None, tmp_path / "model2", tmp_path / "ck2", seed=1, threads=1)
