"""Parameters of the ``align`` stage (forced alignment)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from s6damon.config.schema import param


@dataclasses.dataclass(frozen=True)
class AlignParams:
    backend: Literal["kaldi", "pocketsphinx", "mfa"] = "kaldi"
    compare_backends: list[str] = param(["pocketsphinx"], help="extra backends run for the metrics")
    out_dir: str = param("data/align")
    min_pause_ms: float = param(100.0, minimum=0.0, help="silence at least this long is a pause")
