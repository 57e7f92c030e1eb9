"""Parameters of the ``prepare`` stage (corpus building and validation)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from s6damon.config.schema import param


@dataclasses.dataclass(frozen=True)
class SynthParams:
    """The embedded, synthesised default corpus."""

    minutes: float = param(60.0, minimum=0.1, help="approximate total audio, all splits")


@dataclasses.dataclass(frozen=True)
class PrepareParams:
    source: Literal["synth", "librispeech", "manifest"] = "synth"
    source_path: str = param("", help="folder (librispeech) or CSV/Parquet file (manifest)")
    out_dir: str = param("data/corpus", help="where wavs and the manifest are written")
    sample_rate: int = param(16000, minimum=8000, help="target sample rate; others are resampled")
    on_bad_input: Literal["error", "skip"] = "error"
    synth: SynthParams = dataclasses.field(default_factory=SynthParams)
