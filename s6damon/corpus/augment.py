"""Augmentation that keeps the synthesiser's timings exact: tempo, pitch and speed.

sox does the signal processing (``tempo -s``, ``pitch``, ``speed``); the timing change of
each effect is known exactly, so phone and word intervals are scaled by the same factor:

* ``stretch`` s (duration factor, 1.2 = 20 % longer): sox ``tempo -s 1/s``; times × s.
* ``pitch_semitones`` k: sox ``pitch 100k`` keeps the duration; times unchanged.
* ``speed`` v (1.1 = 10 % faster and higher): sox ``speed v`` then ``rate`` back to the
  input rate; times × 1/v.

sox's WSOLA (tempo, pitch) can pad or trim a few milliseconds at the end; the intervals are
then snapped to the output length (``synth._finish``), so the phone track still tiles the
audio exactly.
"""

from __future__ import annotations

import io
import subprocess

import numpy as np
import soundfile as sf

from s6damon.corpus.synth import Rendered, _finish


def time_factor(stretch: float = 1.0, speed: float = 1.0) -> float:
    """Factor by which every timestamp is multiplied (pitch shifting does not change time)."""
    return stretch / speed


def sox_effects(stretch: float = 1.0, pitch_semitones: float = 0.0, speed: float = 1.0) -> list[str]:
    """The sox effect chain for one augmentation (empty when it is the identity)."""
    fx: list[str] = []
    if abs(pitch_semitones) > 1e-9:
        fx += ["pitch", f"{100.0 * pitch_semitones:.3f}"]
    if abs(stretch - 1.0) > 1e-9:
        fx += ["tempo", "-s", f"{1.0 / stretch:.6f}"]
    if abs(speed - 1.0) > 1e-9:
        fx += ["speed", f"{speed:.6f}"]
    return fx


def augment(r: Rendered, stretch: float = 1.0, pitch_semitones: float = 0.0,
            speed: float = 1.0) -> Rendered:
    """Apply tempo / pitch / speed to a rendering, scaling its timings exactly.

    Args:
        r: a rendering at any sample rate.
        stretch: duration factor (> 1 is slower), pitch preserved.
        pitch_semitones: pitch shift, duration preserved.
        speed: playback speed (> 1 is faster and higher).

    Returns:
        A new rendering at ``r.sample_rate``.
    """
    fx = sox_effects(stretch, pitch_semitones, speed)
    if not fx:
        return r
    if abs(speed - 1.0) > 1e-9:
        fx += ["rate", "-h", str(r.sample_rate)]  # back to the input rate after speed
    buf = io.BytesIO()
    sf.write(buf, r.audio, r.sample_rate, format="WAV", subtype="FLOAT")
    res = subprocess.run(["sox", "-q", "-t", "wav", "-", "-t", "wav", "-e", "floating-point", "-b", "32",
                          "-", *fx], input=buf.getvalue(), capture_output=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"sox {' '.join(fx)} failed: {res.stderr.decode(errors='replace').strip()}")
    audio, sr = sf.read(io.BytesIO(res.stdout), dtype="float32")
    f = time_factor(stretch, speed)
    scale = lambda xs: [(lab, s * f, e * f) for lab, s, e in xs]  # noqa: E731
    return _finish(np.clip(audio, -1.0, 1.0), sr, scale(r.phones), scale(r.words))
