"""LTAS normalisation (``s6damon.corpus.ltas``): an utterance's average envelope moves onto the
reference, nothing moves in time, the gain is bounded, and a second pass changes little."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import torchaudio

from s6damon.config.prepare import LtasParams
from s6damon.corpus.ltas import (N_FFT, RunningEnvelope, equalise, normalise, normalise_corpus, reference_ltas,
                                 smoothed_log_ltas, speaker_means)

RATE = 16000
DB = 10.0 / np.log(10.0)  # natural log of power -> dB


def _tilted(wave: np.ndarray, centre: float, gain_db: float) -> np.ndarray:
    """``wave`` through one peaking filter: a static colouring of the kind a voice or channel adds."""
    out = torchaudio.functional.equalizer_biquad(torch.from_numpy(wave).float(), RATE, centre, gain_db, 0.7)
    return out.numpy().astype(np.float64)


def _speechlike(rng: np.random.Generator, seconds: float = 2.0) -> np.ndarray:
    """White noise in bursts with pauses between them (the pauses must not count)."""
    n = int(seconds * RATE)
    wave = rng.normal(0, 0.1, n)
    gate = (np.arange(n) // 4000) % 2 == 0
    return wave * np.where(gate, 1.0, 1e-4)


def test_normalise_moves_a_coloured_utterance_onto_the_reference():
    rng = np.random.default_rng(0)
    reference = reference_ltas(smoothed_log_ltas(_speechlike(rng)) for _ in range(8))
    coloured = _tilted(_speechlike(rng), 2500.0, 9.0)
    before = np.abs(smoothed_log_ltas(coloured) - reference) * DB
    out = normalise(coloured, reference)
    after = np.abs(smoothed_log_ltas(out) - reference) * DB
    band = slice(8, 240)  # 250 Hz - 7.5 kHz: the window's edge bins are not what the test is about
    assert before[band].max() > 6.0
    assert after[band].max() < 2.0 and after[band].mean() < 0.7
    assert out.dtype == np.float32 and len(out) == len(coloured)


def test_a_static_filter_moves_nothing_in_time_and_a_second_pass_changes_little():
    rng = np.random.default_rng(1)
    reference = reference_ltas(smoothed_log_ltas(_speechlike(rng)) for _ in range(8))
    wave = _tilted(_speechlike(rng), 800.0, -8.0)
    once = normalise(wave, reference)
    twice = normalise(once, reference)
    # bursts stay where they were: the envelope's energy per 250 ms block keeps its on/off pattern
    blocks = (once[: len(once) // 4000 * 4000].reshape(-1, 4000) ** 2).mean(axis=1)
    assert (blocks[::2] > 100 * blocks[1::2]).all()
    assert np.abs(twice - once).max() < 0.1 * np.abs(once).max()


def test_gain_is_clipped_and_the_output_never_clips():
    rng = np.random.default_rng(2)
    reference = reference_ltas([smoothed_log_ltas(_speechlike(rng))])
    quiet = 1e-3 * _speechlike(rng)  # 60 dB below the reference everywhere
    out = normalise(quiet, reference, max_gain_db=12.0)
    ratio_db = 10 * np.log10((out.astype(np.float64) ** 2).sum() / (quiet ** 2).sum())
    assert 10.0 < ratio_db < 12.5
    loud = normalise(0.9 * _speechlike(rng) / 0.1, reference + 3.0)
    assert np.abs(loud).max() <= 0.999 + 1e-6


def test_short_and_silent_inputs_give_finite_output_of_their_length():
    reference = np.zeros(N_FFT // 2 + 1)
    for wave in (np.zeros(100), np.zeros(RATE), np.ones(10)):
        out = normalise(wave, reference)
        assert len(out) == len(wave) and np.isfinite(out).all()


def test_equalise_with_zero_gain_is_the_identity():
    wave = np.random.default_rng(3).normal(size=5000)
    np.testing.assert_allclose(equalise(wave, np.zeros(N_FFT // 2 + 1)), wave, atol=1e-9)


def test_reference_rejects_envelopes_of_another_size():
    with pytest.raises(ValueError, match="257 bins"):
        reference_ltas([np.zeros(100)])


def _corpus(root, rng) -> pd.DataFrame:
    """Six utterances of three 'voices' (coloured noise bursts); voice c is unseen (test)."""
    rows = []
    for voice, (centre, gain, split) in {"a": (600.0, 6.0, "train"), "b": (3000.0, -6.0, "train"),
                                         "c": (1500.0, 10.0, "test")}.items():
        for k in range(2):
            path = root / f"{voice}{k}.wav"
            sf.write(path, (0.5 * _tilted(_speechlike(rng, 1.0), centre, gain)).astype(np.float32), RATE)
            rows.append({"utt_id": f"{voice}-{k}", "speaker": voice, "voice": voice, "path": str(path),
                         "split": split})
    return pd.DataFrame(rows)


def test_normalise_corpus_writes_copies_nearer_the_train_reference(tmp_path):
    manifest = _corpus(tmp_path, np.random.default_rng(4))
    out, report = normalise_corpus(manifest, tmp_path / "corpus", LtasParams(enabled=True), RATE)
    assert list(out["raw_path"]) == list(manifest["path"])
    assert all(p.endswith(f"wav_ltas/{u}.wav") for p, u in zip(out["path"], out["utt_id"]))
    for raw, copy in zip(out["raw_path"], out["path"]):
        a, rate = sf.read(raw)
        b, _ = sf.read(copy)
        assert rate == RATE and len(a) == len(b)
    before, after = report["distance_db_before"], report["distance_db_after"]
    assert before["c"] > 3.0 and after["c"] < 0.5 * before["c"]
    assert len(report["reference_log_power"]) == N_FFT // 2 + 1


def test_normalise_corpus_names_a_bad_file_and_needs_train_rows(tmp_path):
    manifest = _corpus(tmp_path, np.random.default_rng(5))
    sf.write(tmp_path / "b1.wav", np.zeros(8000, dtype=np.float32), 8000)
    with pytest.raises(ValueError, match=r"b1\.wav: expected 16000 Hz"):
        normalise_corpus(manifest, tmp_path / "corpus", LtasParams(enabled=True), RATE)
    with pytest.raises(ValueError, match="no train rows"):
        normalise_corpus(manifest.assign(split="test"), tmp_path / "corpus", LtasParams(enabled=True), RATE)


def test_speaker_scope_keeps_the_differences_between_one_speakers_utterances(tmp_path):
    """One filter per speaker (from its mean envelope): what differs between a speaker's
    utterances (their phone content) survives, while the utterance scope equalises each
    utterance away on its own."""
    rng = np.random.default_rng(3)
    peaks = {"a-0": ("a", "train", [(600.0, 6.0)]), "a-1": ("a", "train", [(600.0, 6.0), (3000.0, -8.0)]),
             "c-0": ("c", "test", [(1500.0, 10.0)]), "c-1": ("c", "test", [(1500.0, 10.0), (4000.0, 8.0)])}
    rows = []
    for utt, (speaker, split, filters) in peaks.items():
        wave = _speechlike(rng, 1.0)
        for centre, gain in filters:
            wave = _tilted(wave, centre, gain)
        sf.write(tmp_path / f"{utt}.wav", (0.5 * wave).astype(np.float32), RATE)
        rows.append({"utt_id": utt, "speaker": speaker, "path": str(tmp_path / f"{utt}.wav"), "split": split})
    manifest = pd.DataFrame(rows)

    def spread(df: pd.DataFrame) -> float:  # mean |difference| (dB) between c's two utterances
        env = [smoothed_log_ltas(sf.read(path)[0]) * DB for path in df["path"].iloc[2:]]
        return float(np.abs(env[0] - env[1]).mean())

    by_speaker, report = normalise_corpus(manifest, tmp_path / "spk", LtasParams(enabled=True, scope="speaker"), RATE)
    by_utterance, utterance_report = normalise_corpus(manifest, tmp_path / "utt", LtasParams(enabled=True), RATE)
    assert spread(manifest) > 1.5
    assert abs(spread(by_speaker) - spread(manifest)) < 0.3 < spread(manifest) - spread(by_utterance)
    # the reference is the train rows' mean either way
    assert report["reference_log_power"] == utterance_report["reference_log_power"]


def test_speaker_means_and_the_running_envelope_average_per_speaker():
    env = np.array([[0.0, 2.0], [2.0, 4.0], [10.0, 10.0]])
    np.testing.assert_array_equal(speaker_means(env, ["a", "a", "b"]), [[1.0, 3.0], [1.0, 3.0], [10.0, 10.0]])
    rng = np.random.default_rng(6)
    waves = [_tilted(_speechlike(rng, 1.0), 1000.0, g) for g in (6.0, -6.0)]
    tracker = RunningEnvelope()
    first = tracker.update(waves[0])
    np.testing.assert_allclose(first, smoothed_log_ltas(waves[0]))  # one utterance: its own envelope
    both = tracker.update(waves[1])
    np.testing.assert_allclose(both, (smoothed_log_ltas(waves[0]) + smoothed_log_ltas(waves[1])) / 2)
    assert tracker.count == 2
