"""Parameters of the ``safari`` stage (structured pruning and its baselines)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from s6damon.config.model import FinetuneParams
from s6damon.config.schema import ParamsError, param

#: Every method the stage can run, in report order (``dense`` is always run: it is the
#: reference row and OMP's first finetune).
METHODS: tuple[str, ...] = ("safari", "omp", "parp", "parp_structured", "parp_masked_finetune",
                            "random", "small_dense")

Method = Literal["safari", "omp", "parp", "parp_structured", "parp_masked_finetune", "random", "small_dense"]
Kind = Literal["heads", "neurons", "conv_channels"]


def _safari_budget() -> FinetuneParams:
    # Same budget rule for every method: one finetuning run = these settings. Sized for the
    # default profile on a 2-core CPU; see params.yaml for the arithmetic.
    return FinetuneParams(steps=200, batch_seconds=20.0, learning_rate=0.002, warmup_steps=20,
                          eval_every=200, log_every=10, checkpoint_every=50)


@dataclasses.dataclass(frozen=True)
class SafariParams:
    """SAFARI (sparsify, masked finetune, adjust sparsity) against OMP, PARP, random and small-dense."""

    sparsities: list[float] = param([0.3, 0.5, 0.7], minimum=0.0, maximum=0.95,
                                    help="shares of the whole encoder's FLOPs (10 s input) removed, one run per level")
    kinds: list[Kind] = param(["heads", "neurons", "conv_channels"], help="structured unit kinds that may be pruned")
    scope: Literal["global", "per_layer"] = param("global", help="initial mask: one ranking over all layers, or the same share per layer")
    allow_layer_removal: bool = param(False, help="let a layer lose all its heads or neurons (a layer with neither is skipped)")
    adjust_every: int = param(25, minimum=1, help="SAFARI: optimiser steps between prune-and-grow adjustments")
    swap_fraction: float = param(0.1, minimum=0.0, maximum=1.0,
                                 help="SAFARI: share of each kind's kept units dropped (smallest weight L1) and regrown (largest gradient L1) per adjustment")
    regrow_init: Literal["zero", "keep"] = param("keep", help="SAFARI: regrown units' outgoing weights zeroed (RigL) or kept as they were")
    parp_reprune_every: int = param(25, minimum=1, help="PARP: steps between re-prunes (and once at the end)")
    methods: list[Method] = param(list(METHODS), help="methods to run at every level (the dense reference always runs)")
    eval_seconds: float = param(10.0, minimum=0.1, help="utterance length FLOPs are counted for")
    start: Literal["pretrained", "finetuned"] = param(
        "finetuned", help="model every method starts from: the SSL-pretrained model (the paper's protocol; needs a "
                          "full finetuning budget per run) or the finetuned CTC model (what a short per-run budget can "
                          "compare on a CPU)")
    finetune: FinetuneParams = dataclasses.field(default_factory=_safari_budget)

    def check(self) -> None:
        if not self.sparsities:
            raise ParamsError("params: 'safari.sparsities' must list at least one level")
        if len(set(self.sparsities)) != len(self.sparsities):
            raise ParamsError(f"params: 'safari.sparsities' has repeated levels {self.sparsities}")
        if not self.kinds:
            raise ParamsError("params: 'safari.kinds' must name at least one unit kind")
        if len(set(self.methods)) != len(self.methods):
            raise ParamsError(f"params: 'safari.methods' has repeated entries {self.methods}")
