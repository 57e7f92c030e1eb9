"""Validation of external audio files and transcripts.

Every problem is a :class:`BadInputError` naming the file and the reason, so that with
``on_bad_input: error`` the user sees exactly which file to fix, and with ``skip`` the
skipped files are listed with their reasons.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from s6damon.errors import InputError
from s6damon.text import TextError, normalise


class BadInputError(InputError, ValueError):
    """An input file or transcript cannot be used.

    Attributes:
        path: the offending file.
        reason: what is wrong with it.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def load_audio(path: str | Path, sample_rate: int) -> tuple[np.ndarray, dict]:
    """Read a mono audio file as float32 at ``sample_rate``.

    Args:
        path: any format libsndfile reads (wav, flac, ogg...).
        sample_rate: target rate; other rates are resampled (torchaudio) and recorded.

    Returns:
        (samples, info) with info keys ``sample_rate``, ``duration``, ``frames`` and
        ``resampled_from`` (original rate, or ``None``).

    Raises:
        BadInputError: missing, unreadable or truncated file, more than one channel, or
            no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "file not found")
    try:
        meta = sf.info(str(path))
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile raises RuntimeError/LibsndfileError/etc.
        raise BadInputError(path, f"unreadable audio ({err})") from err
    if meta.frames > 0 and audio.shape[0] < meta.frames:
        raise BadInputError(path, f"truncated: header says {meta.frames} frames, file holds {audio.shape[0]}")
    if path.suffix.lower() == ".wav" and meta.format == "WAV":
        _check_wav_size(path, meta)
    if audio.shape[1] != 1:
        raise BadInputError(path, f"{audio.shape[1]} channels; only mono audio is accepted")
    if audio.shape[0] == 0:
        raise BadInputError(path, "zero-length audio")
    x = audio[:, 0]
    info = {"sample_rate": sample_rate, "resampled_from": None}
    if sr != sample_rate:
        import torch
        import torchaudio.functional as AF

        x = AF.resample(torch.from_numpy(np.ascontiguousarray(x)), sr, sample_rate).numpy()
        info["resampled_from"] = int(sr)
    info["frames"] = int(len(x))
    info["duration"] = len(x) / sample_rate
    return x.astype(np.float32, copy=False), info


def _check_wav_size(path: Path, meta: sf._SoundFileInfo) -> None:
    """Catch wavs cut short: libsndfile silently reads what is there, so compare sizes."""
    import struct

    with open(path, "rb") as fh:
        head = fh.read(4096)
    pos = 12
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if cid == b"data":
            have = path.stat().st_size - (pos + 8)
            if size not in (0, 0xFFFFFFFF) and have < size:
                raise BadInputError(path, f"truncated: data chunk declares {size} bytes, file holds {have}")
            return
        pos += 8 + size + (size & 1)


def check_transcript(path: str | Path, text: object) -> str:
    """Normalised transcript, or :class:`BadInputError` naming ``path`` if unusable."""
    if text is None or (isinstance(text, float) and np.isnan(text)) or not str(text).strip():
        raise BadInputError(path, "empty transcript")
    try:
        return normalise(str(text))
    except TextError as err:
        raise BadInputError(path, f"transcript cannot be normalised: {err}") from err
