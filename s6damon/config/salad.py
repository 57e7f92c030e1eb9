"""Parameters of the SALAD stages: ``salad_labels``, ``salad_train`` and ``salad_eval``."""

from __future__ import annotations

import dataclasses
from typing import Literal

from s6damon.config.model import FinetuneParams
from s6damon.config.schema import ParamsError, param

LABEL_SOURCES = ("alignment", "ctc")
#: Token-dropping methods compared at every drop ratio (``none`` is added once, at ratio 0).
DROP_METHODS = ("salad_alignment", "salad_ctc", "uniform", "random", "energy")


@dataclasses.dataclass(frozen=True)
class DetectorParams:
    """The small salience detector on the conv feature encoder's output."""

    hidden: int = param(64, minimum=1, help="conv channels")
    kernel_size: int = param(5, minimum=1, help="odd conv width in tokens (5 = +-40 ms per layer)")
    num_layers: int = param(2, minimum=1, help="conv layers")
    dropout: float = param(0.1, minimum=0.0, maximum=1.0)
    epochs: int = param(8, minimum=1, help="passes over the training tokens")
    learning_rate: float = param(2e-3, minimum=0.0)
    batch_seconds: float = param(60.0, minimum=1.0, help="audio seconds per detector batch")
    balance: bool = param(True, help="weight the salient class by redundant/salient (BCE pos_weight)")
    drop_rule: Literal["threshold", "alternate"] = param(
        "alternate", help="threshold: drop every token under the threshold; alternate: never two neighbours")

    def check(self) -> None:
        if self.kernel_size % 2 != 1:
            raise ParamsError("params: 'salad.detector.kernel_size' must be odd (same-length convs)")


def _drop_finetune() -> FinetuneParams:
    # A short adaptation of the finetuned model to the shortened sequence, the same for every
    # method and ratio. The conv encoder stays frozen: the detector reads its output.
    return FinetuneParams(steps=150, batch_seconds=20.0, max_seconds=30.0, learning_rate=3e-4,
                          warmup_steps=15, schedule="cosine", final_lr_scale=0.05,
                          freeze_feature_encoder_steps=1_000_000, mask_time_prob=0.05,
                          eval_every=1_000_000, log_every=10, checkpoint_every=50)


@dataclasses.dataclass(frozen=True)
class SaladParams:
    """SALAD token dropping: labels, detector, and the comparison with its baselines."""

    sources: list[str] = param(list(LABEL_SOURCES), help="label sources to derive: alignment and/or ctc")
    keep_per_phone: int = param(2, minimum=1, help="alignment labels: salient tokens at the start of each phone (k)")
    min_pause_ms: float = param(60.0, minimum=0.0,
                                help="alignment labels: silences at least this long are wholly redundant")
    ctc_keep_per_run: int = param(1, minimum=1, help="ctc labels: salient frames at the start of each label run")
    agreement_tolerance: int = param(2, minimum=0, help="tokens of slack when comparing the two sources' salient tokens")
    drop_ratio: float = param(0.3, minimum=0.0, maximum=0.95, help="the drop ratio reported for the detector")
    drop_ratios: list[float] = param([0.2, 0.3, 0.4, 0.5], minimum=0.0, maximum=0.95,
                                     help="drop ratios at which every method is finetuned and evaluated")
    methods: list[str] = param(list(DROP_METHODS), help="methods compared at each ratio (none is always added)")
    merge_dropped: bool = param(True, help="every method: average each dropped token into the kept one before it "
                                          "instead of discarding it")
    detector: DetectorParams = dataclasses.field(default_factory=DetectorParams)
    shared_adaptation: bool = param(
        False, help="one finetuning run per method, dropping at each of drop_ratios in turn (a different ratio "
                    "each step), evaluated at every ratio; false: one run per (method, ratio). Either way every "
                    "method, and none, gets the same finetune.steps per run")
    finetune: FinetuneParams = dataclasses.field(default_factory=_drop_finetune)
    latency_seconds: float = param(10.0, minimum=0.5, help="input length for encoder FLOPs and latency")
    latency_repeats: int = param(10, minimum=1, help="timed repetitions per method (median reported)")
    eval_splits: list[str] = param(["test"], help="splits decoded for every method (test is required)")

    def check(self) -> None:
        for s in self.sources:
            if s not in LABEL_SOURCES:
                raise ParamsError(f"params: 'salad.sources' items must be in {list(LABEL_SOURCES)}, got {s!r}")
        for m in self.methods:
            if m not in DROP_METHODS:
                raise ParamsError(f"params: 'salad.methods' items must be in {list(DROP_METHODS)}, got {m!r}")
            if m.startswith("salad_") and m.removeprefix("salad_") not in self.sources:
                raise ParamsError(f"params: 'salad.methods' has {m!r} but 'salad.sources' lacks "
                                  f"{m.removeprefix('salad_')!r}")
        if not self.drop_ratios:
            raise ParamsError("params: 'salad.drop_ratios' must not be empty")
        if self.detector.drop_rule == "alternate":
            for key, ratios in (("drop_ratios", self.drop_ratios), ("drop_ratio", [self.drop_ratio])):
                if max(ratios) > 0.5:
                    raise ParamsError(f"params: 'salad.{key}' must be <= 0.5 with 'salad.detector.drop_rule: "
                                      f"alternate' (never two neighbours dropped caps the share at one half), "
                                      f"got {max(ratios)}")
        if "test" not in self.eval_splits:
            raise ParamsError("params: 'salad.eval_splits' must include 'test'")
        if self.finetune.freeze_feature_encoder_steps < self.finetune.steps:
            raise ParamsError("params: 'salad.finetune.freeze_feature_encoder_steps' must be >= "
                              "'salad.finetune.steps': the detector reads the conv encoder's output, "
                              "so the encoder stays frozen while finetuning with dropping")
