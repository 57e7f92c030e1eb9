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


#: the fields every structured initial mask reads (:func:`s6damon.safari.selection.initial_mask`)
_MASK_FIELDS = ("kinds", "scope", "allow_layer_removal", "eval_seconds")

#: per method, the :class:`SafariParams` fields a run reads besides ``finetune`` (see
#: :meth:`SafariParams.for_run`). ``parp_masked_finetune`` and ``omp`` also depend on the
#: run they continue from, which is part of their cache key as files.
RUN_FIELDS: dict[str, tuple[str, ...]] = {
    "dense": (),
    "safari": (*_MASK_FIELDS, "criterion", "fisher_utterances", "adjust_every", "swap_fraction", "adjust_kinds",
               "regrow_init", "ramp_steps"),
    "omp": _MASK_FIELDS,
    "parp": ("parp_reprune_every", "eval_seconds"),
    "parp_structured": (*_MASK_FIELDS, "parp_reprune_every"),
    "parp_masked_finetune": (),
    "random": _MASK_FIELDS,
    "small_dense": _MASK_FIELDS,
}


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
    criterion: Literal["fisher", "l1"] = param(
        "fisher", help="SAFARI's initial mask: Fisher information of each unit under the CTC loss, ranked per FLOP "
                       "over all kinds and layers, or weight L1 (as OMP and PARP), each kind pruned at the same pace")
    fisher_utterances: int = param(200, minimum=1, help="SAFARI, criterion 'fisher': training utterances scored "
                                                        "(one backward pass each)")
    adjust_every: int = param(25, minimum=1, help="SAFARI: optimiser steps between prune-and-grow adjustments")
    swap_fraction: float = param(0.1, minimum=0.0, maximum=1.0,
                                 help="SAFARI: share of each kind's kept units dropped (smallest weight L1) and regrown (largest gradient L1) per adjustment")
    adjust_kinds: list[Kind] = param(
        ["heads", "neurons"],
        help="SAFARI: unit kinds prune-and-grow swaps (a subset of 'kinds'; the others keep their initial L1 mask). "
             "Conv channels are left out by default: every conv swap changes the features all later layers read, "
             "and at 70 % FLOPs removed swapping them collapsed the model")
    regrow_init: Literal["zero", "keep"] = param("keep", help="SAFARI: regrown units' outgoing weights zeroed (RigL) or kept as they were")
    ramp_steps: int = param(
        0, minimum=0,
        help="SAFARI: gradual pruning — the FLOPs share removed rises on a cubic schedule from 0 to the level over "
             "the first ramp_steps steps (one pruning at each adjustment, in the order of safari.criterion), "
             "prune-and-grow after it; a multiple of adjust_every. 0: the whole level from the first step")
    parp_reprune_every: int = param(25, minimum=1, help="PARP: steps between re-prunes (and once at the end)")
    methods: list[Method] = param(list(METHODS), help="methods to run at every level (the dense reference always runs)")
    eval_seconds: float = param(10.0, minimum=0.1, help="utterance length FLOPs are counted for")
    start: Literal["pretrained", "finetuned"] = param(
        "finetuned", help="model every method starts from: the SSL-pretrained model (the paper's protocol; needs a "
                          "full finetuning budget per run) or the finetuned CTC model (what a short per-run budget can "
                          "compare on a CPU)")
    finetune: FinetuneParams = dataclasses.field(default_factory=_safari_budget)

    def for_run(self, method: str) -> SafariParams:
        """These params with every field ``method`` does not read reset to its default.

        A run's cache key is built from what it is given, so handing each run only the
        fields it reads means that changing, say, ``regrow_init`` re-runs the SAFARI runs and
        reuses every baseline. :data:`RUN_FIELDS` lists the fields each method reads (the
        ``finetune`` budget is read by all); it must follow :mod:`s6damon.safari.methods`.
        """
        if method not in RUN_FIELDS:
            raise ValueError(f"unknown safari method {method!r}; expected one of {sorted(RUN_FIELDS)}")
        read = {"finetune", *RUN_FIELDS[method]}
        defaults = SafariParams()
        return dataclasses.replace(self, **{f.name: getattr(defaults, f.name) for f in dataclasses.fields(self)
                                            if f.name not in read})

    def check(self) -> None:
        if not self.sparsities:
            raise ParamsError("params: 'safari.sparsities' must list at least one level")
        if len(set(self.sparsities)) != len(self.sparsities):
            raise ParamsError(f"params: 'safari.sparsities' has repeated levels {self.sparsities}")
        if not self.kinds:
            raise ParamsError("params: 'safari.kinds' must name at least one unit kind")
        if not set(self.adjust_kinds) <= set(self.kinds):
            raise ParamsError(f"params: 'safari.adjust_kinds' {self.adjust_kinds} must be a subset of "
                              f"'safari.kinds' {self.kinds}")
        if self.ramp_steps % self.adjust_every:
            raise ParamsError(f"params: 'safari.ramp_steps' ({self.ramp_steps}) must be a multiple of "
                              f"'safari.adjust_every' ({self.adjust_every}): the level rises at adjustments")
        if self.ramp_steps and self.ramp_steps + self.adjust_every > self.finetune.steps:
            raise ParamsError(f"params: 'safari.ramp_steps' ({self.ramp_steps}) must leave at least "
                              f"'safari.adjust_every' ({self.adjust_every}) of the {self.finetune.steps} "
                              "'safari.finetune.steps' to train at the full level")
        if len(set(self.methods)) != len(self.methods):
            raise ParamsError(f"params: 'safari.methods' has repeated entries {self.methods}")
