"""Kaldi-compatible acoustic features for GMM-HMM alignment.

MFCC (torchaudio's Kaldi-compliant implementation, so no extra dependency) of dithered
audio, cepstral mean (optionally variance) normalisation per speaker (items with a
``speaker``) or per utterance, then deltas and delta-deltas (``add-deltas``, window 2).
"""

from __future__ import annotations

import zlib

import numpy as np

from s6damon.parallel import fork_pool
from s6damon.align.base import AlignItem
from s6damon.config.align import KaldiAlignParams

SAMPLE_RATE = 16000


def load_wav(path: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a wav as mono float32 at ``sample_rate`` (averaging channels, resampling)."""
    import soundfile as sf

    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != sample_rate:
        import torch
        import torchaudio.functional as AF

        audio = AF.resample(torch.from_numpy(audio), sr, sample_rate).numpy()
    return audio


def mfcc_deltas(audio: np.ndarray, kp: KaldiAlignParams, seed: int = 0) -> np.ndarray:
    """(frames, 3 * num_ceps) features of one utterance with per-utterance CMN."""
    m = mfcc(audio, kp, seed)
    return add_deltas(m - m.mean(axis=0, keepdims=True))


def mfcc(audio: np.ndarray, kp: KaldiAlignParams, seed: int = 0) -> np.ndarray:
    """(frames, num_ceps) float32 MFCCs (no normalisation) of 16 kHz mono ``audio``.

    ``kp.dither`` adds Gaussian noise of that standard deviation (16-bit sample scale,
    Kaldi's ``--dither``) from a generator seeded with ``seed``, so features are
    reproducible. Without it, stretches of digital silence (exact zeros, common in
    synthesised speech) give log energies at the floor, far from any real silence, and
    a silence model trained on them cannot explain the silence of other recordings.
    """
    import torch
    import torchaudio.compliance.kaldi as K

    # Kaldi's features expect 16-bit sample scale
    x = np.asarray(audio, dtype=np.float64) * 32768.0
    if kp.dither > 0:
        x = x + kp.dither * np.random.default_rng(seed).standard_normal(len(x))
    wav = torch.from_numpy(x.astype(np.float32))[None, :]
    m = K.mfcc(wav, sample_frequency=SAMPLE_RATE, num_ceps=kp.num_ceps, dither=0.0,
               frame_shift=kp.frame_shift_ms, frame_length=kp.frame_length_ms)
    return m.numpy().astype(np.float32)


def add_deltas(m: np.ndarray) -> np.ndarray:
    """Static features plus deltas and delta-deltas (Kaldi's ``add-deltas``, window 2)."""
    import torch
    import torchaudio.functional as AF

    t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))
    d1 = AF.compute_deltas(t.T, win_length=5)
    d2 = AF.compute_deltas(d1, win_length=5)
    return torch.cat([t, d1.T, d2.T], dim=1).numpy().astype(np.float32)


def apply_cmvn(static: dict[str, np.ndarray], groups: dict[str, str],
               variance: bool) -> dict[str, np.ndarray]:
    """Cepstral mean (and variance) normalisation with statistics pooled per group.

    ``groups`` maps each utterance to its group (a speaker, or the utterance itself);
    Kaldi's ``compute-cmvn-stats --spk2utt`` + ``apply-cmvn``.
    """
    members: dict[str, list[str]] = {}
    for utt in static:
        members.setdefault(groups.get(utt, utt), []).append(utt)
    out = {}
    for utts in members.values():
        x = np.concatenate([static[u] for u in utts], axis=0).astype(np.float64)
        mean = x.mean(axis=0)
        std = np.sqrt(np.maximum(x.var(axis=0), 1e-6)) if variance else None
        for u in utts:
            y = static[u] - mean
            out[u] = (y / std if variance else y).astype(np.float32)
    return out


def _one(args: tuple[AlignItem, KaldiAlignParams]) -> tuple[str, np.ndarray | None, str]:
    import torch

    torch.set_num_threads(1)  # one process per core already
    item, kp = args
    try:
        audio = load_wav(item.wav_path)
    except Exception as err:  # soundfile raises several types
        return item.utt_id, None, f"unreadable audio: {err}"
    min_len = int(SAMPLE_RATE * kp.frame_length_ms / 1000)
    if len(audio) < min_len:
        return item.utt_id, None, f"audio shorter than one frame ({len(audio)} samples)"
    return item.utt_id, mfcc(audio, kp, seed=zlib.crc32(item.utt_id.encode())), ""


def compute_features(items: list[AlignItem], kp: KaldiAlignParams,
                     jobs: int = 1) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Features of every item, and the reason for each item that has none."""
    args = [(it, kp) for it in items]
    if jobs > 1 and len(items) >= 16:
        with fork_pool(jobs) as pool:
            out = pool.map(_one, args, chunksize=max(1, len(items) // (jobs * 4)))
    else:
        out = [_one(a) for a in args]
    static = {u: f for u, f, _ in out if f is not None}
    bad = {u: r for u, f, r in out if f is None}
    groups = {it.utt_id: it.utt_id for it in items}
    if kp.cmvn == "speaker":
        groups.update({it.utt_id: f"spk:{it.speaker}" for it in items if it.speaker is not None})
    static = apply_cmvn(static, groups, kp.cmvn_variance)
    return {u: add_deltas(f) for u, f in static.items()}, bad
