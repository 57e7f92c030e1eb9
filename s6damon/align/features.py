"""Kaldi-compatible acoustic features for GMM-HMM alignment.

MFCC (torchaudio's Kaldi-compliant implementation, so no extra dependency), per-utterance
cepstral mean normalisation, then deltas and delta-deltas (Kaldi's ``add-deltas``, window 2).
"""

from __future__ import annotations


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


def mfcc_deltas(audio: np.ndarray, kp: KaldiAlignParams) -> np.ndarray:
    """(frames, 3 * num_ceps) float32 features of 16 kHz mono ``audio``."""
    import torch
    import torchaudio.compliance.kaldi as K
    import torchaudio.functional as AF

    # Kaldi's features expect 16-bit sample scale
    wav = torch.from_numpy(np.ascontiguousarray(audio))[None, :] * 32768.0
    m = K.mfcc(wav, sample_frequency=SAMPLE_RATE, num_ceps=kp.num_ceps, dither=0.0,
               frame_shift=kp.frame_shift_ms, frame_length=kp.frame_length_ms)
    m = m - m.mean(dim=0, keepdim=True)
    d1 = AF.compute_deltas(m.T, win_length=5)
    d2 = AF.compute_deltas(d1, win_length=5)
    return torch.cat([m, d1.T, d2.T], dim=1).numpy().astype(np.float32)


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
    return item.utt_id, mfcc_deltas(audio, kp), ""


def compute_features(items: list[AlignItem], kp: KaldiAlignParams,
                     jobs: int = 1) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Features of every item, and the reason for each item that has none."""
    args = [(it, kp) for it in items]
    if jobs > 1 and len(items) >= 16:
        with fork_pool(jobs) as pool:
            out = pool.map(_one, args, chunksize=max(1, len(items) // (jobs * 4)))
    else:
        out = [_one(a) for a in args]
    feats = {u: f for u, f, _ in out if f is not None}
    bad = {u: r for u, f, r in out if f is None}
    return feats, bad
