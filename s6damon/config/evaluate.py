"""Parameters of the ``evaluate`` stage (one table of every exported model)."""

from __future__ import annotations

import dataclasses

from s6damon.config.schema import param


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    """WER/CER, size, FLOPs and real-time factor of every exported model, per runtime."""

    split: str = param("test", help="manifest split scored (test: voices unseen in training)")
    seconds: float = param(10.0, minimum=0.5, help="input length (real test speech) for latency, RTF and FLOPs")
    repeats: int = param(10, minimum=1, help="timed calls per model and runtime (median reported)")
