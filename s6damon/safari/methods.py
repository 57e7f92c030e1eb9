"""One small function per method; all finetune with :func:`s6damon.train.finetune.finetune`
under the same budget (``safari.finetune``), so only the mask and where it comes from differ.

Every method writes its run folder ``run_dir``: ``model/`` (the trained weights, Hugging
Face format; for structured methods the weights of *all* units — the mask says which
count), ``mask.json`` (structured) or ``weight_mask.pt`` (unstructured PARP), ``masks/``
(SAFARI's mask after every adjustment) and ``checkpoints/`` (a killed run resumes).

Where each starts (the paper's protocol):

- ``dense``: the pretrained model, finetuned without a mask — the reference row, and
  OMP's "finetune dense" step (one run serves both: same budget, same seed);
- ``safari``: Fisher (or L1, ``safari.criterion``) mask of the start model → masked finetune with prune-and-grow of the
  ``safari.adjust_kinds`` (heads and neurons by default; conv channels keep their initial mask);
- ``omp``: L1 mask of the *dense-finetuned* model → masked finetune from those weights;
- ``parp``: per-weight magnitude mask of the pretrained model, zeroed weights may regrow,
  re-pruned every ``parp_reprune_every`` steps and after the last (unstructured);
- ``parp_structured``: the same with heads / neurons / conv channels by L1;
- ``parp_masked_finetune``: ``parp_structured``'s weights and final mask → masked finetune;
- ``random``: random structured mask of the pretrained model → masked finetune;
- ``small_dense``: the dense model with the same share of heads, neurons and conv channels
  removed in every layer — a uniformly narrower dense model — whose weights are the
  *leading* units of the pretrained model (sliced, not re-initialised), finetuned without
  importance-based selection. It is trained under the equivalent mask (masked ==
  physically smaller, tested), so it runs on the same code path.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from s6damon import io
from s6damon.config.model import FinetuneParams, ModelParams
from s6damon.config.safari import SafariParams
from s6damon.pruning import StructuredMask, apply_masks
from s6damon.pruning.masks import load_mask, save_mask
from s6damon.safari.hooks import ParpRepruner, SafariAdjuster
from s6damon.safari.selection import fisher_scores, initial_mask
from s6damon.train import checkpoint as ck
from s6damon.train.finetune import finetune, init_model


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What every run shares: model shape, budget, data, seed and threads."""

    m: ModelParams
    sp: SafariParams
    train: pd.DataFrame
    dev: pd.DataFrame | None
    seed: int
    threads: int
    teacher: Path | None = None  # distillation teacher when ``safari.finetune.distills``

    @property
    def p(self) -> FinetuneParams:
        """The one finetuning budget every method gets."""
        return self.sp.finetune


@dataclasses.dataclass
class MethodResult:
    """A finished run: model folder, its mask (None for dense), history and train metrics."""

    model_dir: Path
    mask_path: Path | None
    unstructured: bool
    history: list[dict[str, Any]]
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (Prefect persists task results)."""
        return {"model_dir": str(self.model_dir), "mask_path": str(self.mask_path) if self.mask_path else None,
                "unstructured": self.unstructured, "history": self.history, "metrics": self.metrics}


def _start_model(ctx: RunContext, init: Path | None):
    """``(model, tokenizer)``: the exact model ``finetune`` will start from (same seed, so
    also for random init)."""
    ck.seed_everything(ctx.seed)
    return init_model(init, ctx.m, ctx.p)


def _run(ctx: RunContext, init: Path | None, run_dir: Path, tag: str, *, wrap=None, hooks=(),
         stop_at: int | None = None) -> dict[str, Any]:
    return finetune(init, ctx.m, ctx.p, ctx.train, ctx.dev, run_dir / "model", run_dir / "checkpoints",
                    ctx.seed, ctx.threads, wrap=wrap, hooks=hooks, tag=tag, stop_at=stop_at, teacher=ctx.teacher)


def _masked(ctx: RunContext, init: Path | None, mask: StructuredMask, run_dir: Path, tag: str,
            stop_at: int | None = None) -> MethodResult:
    """Finetune with a fixed structured mask applied at every step."""
    path = save_mask(mask, run_dir / "mask.json")
    res = _run(ctx, init, run_dir, tag, wrap=lambda model: apply_masks(model, mask), stop_at=stop_at)
    return MethodResult(run_dir / "model", path, False, res["history"], res["metrics"])


def _mask_of(ctx: RunContext, model: torch.nn.Module, level: float, criterion: str,
             fisher: dict[str, list[torch.Tensor]] | None = None) -> StructuredMask:
    sp = ctx.sp
    return initial_mask(model, level, criterion=criterion, kinds=sp.kinds, scope=sp.scope,
                        allow_layer_removal=sp.allow_layer_removal, seconds=sp.eval_seconds, seed=ctx.seed,
                        fisher=fisher)


def dense(ctx: RunContext, init: Path | None, run_dir: Path, stop_at: int | None = None) -> MethodResult:
    """The unpruned reference (and OMP's dense finetune)."""
    res = _run(ctx, init, run_dir, "safari-dense", stop_at=stop_at)
    return MethodResult(run_dir / "model", None, False, res["history"], res["metrics"])


def safari(ctx: RunContext, init: Path | None, level: float, run_dir: Path,
           stop_at: int | None = None) -> MethodResult:
    """Sparsify (``safari.criterion``) → masked finetune → prune-and-grow every ``adjust_every`` steps;
    with ``safari.ramp_steps`` the sparsify step is spread over the first adjustments."""
    sp = ctx.sp
    model, tok = _start_model(ctx, init)
    fisher = (fisher_scores(model, tok, ctx.train, sp.fisher_utterances, ctx.seed, sp.kinds)
              if sp.criterion == "fisher" else None)
    mask = _mask_of(ctx, model, level, sp.criterion, fisher)

    def prune_to(net: torch.nn.Module, base: StructuredMask, share: float) -> StructuredMask:
        # gradual pruning: the criterion's ranking (Fisher scores of the start model, or the
        # current weights' L1) applied on top of the mask in force
        return initial_mask(net, share, criterion=sp.criterion, kinds=sp.kinds, scope=sp.scope,
                            allow_layer_removal=sp.allow_layer_removal, seconds=sp.eval_seconds, seed=ctx.seed,
                            fisher=fisher, base_mask=base)

    adjuster = SafariAdjuster(StructuredMask.full(model) if sp.ramp_steps else mask, level,
                              adjust_every=sp.adjust_every, swap_fraction=sp.swap_fraction, kinds=sp.adjust_kinds,
                              allow_layer_removal=sp.allow_layer_removal, total_steps=ctx.p.steps,
                              regrow_init=sp.regrow_init, mask_dir=run_dir / "masks",
                              ckpt_dir=run_dir / "checkpoints", seconds=sp.eval_seconds,
                              ramp_steps=sp.ramp_steps, prune_to=prune_to)
    # the criterion's mask at the level: where one-shot SAFARI starts, and (about) where the
    # ramp arrives — the "initial" distribution of the report
    save_mask(mask, run_dir / "initial_mask.json")
    res = _run(ctx, init, run_dir, f"safari-{level}", wrap=adjuster.wrap, hooks=[adjuster], stop_at=stop_at)
    path = save_mask(adjuster.mask, run_dir / "mask.json")
    return MethodResult(run_dir / "model", path, False, res["history"], res["metrics"])


def omp(ctx: RunContext, dense_model: Path, level: float, run_dir: Path, stop_at: int | None = None) -> MethodResult:
    """One-shot magnitude pruning of the dense-finetuned model, then masked finetune from it."""
    mask = _mask_of(ctx, _start_model(ctx, dense_model)[0], level, "l1")
    return _masked(ctx, dense_model, mask, run_dir, f"omp-{level}", stop_at)


def random_structured(ctx: RunContext, init: Path | None, level: float, run_dir: Path, stop_at: int | None = None) -> MethodResult:
    """Random structured mask (same FLOPs) of the pretrained model, then masked finetune."""
    mask = _mask_of(ctx, _start_model(ctx, init)[0], level, "random")
    return _masked(ctx, init, mask, run_dir, f"random-{level}", stop_at)


def small_dense(ctx: RunContext, init: Path | None, level: float, run_dir: Path,
                stop_at: int | None = None) -> MethodResult:
    """Uniformly narrower dense model (leading pretrained units) of the same FLOPs, finetuned."""
    mask = _mask_of(ctx, _start_model(ctx, init)[0], level, "leading")
    return _masked(ctx, init, mask, run_dir, f"small_dense-{level}", stop_at)


def _parp(ctx: RunContext, init: Path | None, level: float, run_dir: Path, structured: bool,
          stop_at: int | None) -> MethodResult:
    sp = ctx.sp
    pruner = ParpRepruner(level, every=sp.parp_reprune_every, total_steps=ctx.p.steps, structured=structured,
                          kinds=sp.kinds, scope=sp.scope, allow_layer_removal=sp.allow_layer_removal,
                          seconds=sp.eval_seconds)
    name = "parp_structured" if structured else "parp"
    # wrap prunes the starting weights; on resume the checkpoint's weights replace them.
    res = _run(ctx, init, run_dir, f"{name}-{level}", wrap=pruner.prune, hooks=[pruner], stop_at=stop_at)
    if structured:
        path = save_mask(pruner.mask, run_dir / "mask.json")
    else:
        path = run_dir / "weight_mask.pt"
        with io.atomic_path(path, suffix=".pt") as tmp:
            torch.save(pruner.mask, tmp)
    return MethodResult(run_dir / "model", path, not structured, res["history"], res["metrics"])


def parp(ctx: RunContext, init: Path | None, level: float, run_dir: Path, stop_at: int | None = None) -> MethodResult:
    """PARP, unstructured: magnitude-prune the pretrained weights, regrow freely, re-prune."""
    return _parp(ctx, init, level, run_dir, False, stop_at)


def parp_structured(ctx: RunContext, init: Path | None, level: float, run_dir: Path,
                    stop_at: int | None = None) -> MethodResult:
    """PARP with structured units (heads / neurons / conv channels by L1)."""
    return _parp(ctx, init, level, run_dir, True, stop_at)


def parp_masked_finetune(ctx: RunContext, parp_result: MethodResult, level: float, run_dir: Path,
                         stop_at: int | None = None) -> MethodResult:
    """``parp_structured``'s model and final mask, finetuned again with the mask on."""
    if parp_result.mask_path is None or parp_result.unstructured:
        raise ValueError("parp_masked_finetune needs a parp_structured result (a structured mask)")
    return _masked(ctx, parp_result.model_dir, load_mask(parp_result.mask_path), run_dir,
                   f"parp_masked_finetune-{level}", stop_at)


def run_method(ctx: RunContext, method: str, level: float, init: Path | None, base: dict[str, Path] | None,
               run_dir: Path) -> MethodResult:
    """Train ``method`` at ``level``: the one entry point the safari stage calls (in a process
    of its own, :func:`s6damon.parallel.call_in_subprocess`).

    Args:
        method: ``dense`` or one of :data:`s6damon.config.safari.METHODS`.
        init: the model the run starts from (None = random init).
        base: the run this one continues from — the ``dense`` result for ``omp``, the
            ``parp_structured`` result for ``parp_masked_finetune``: ``{"model_dir", "mask_path"}``.
    """
    if method == "dense":
        return dense(ctx, init, run_dir)
    if method in ("omp", "parp_masked_finetune") and not base:
        raise ValueError(f"{method} continues from another run; none was given")
    if method == "omp":
        return omp(ctx, Path(base["model_dir"]), level, run_dir)
    if method == "parp_masked_finetune":
        parp_result = MethodResult(Path(base["model_dir"]), Path(base["mask_path"]), False, [], {})
        return parp_masked_finetune(ctx, parp_result, level, run_dir)
    if method == "random":
        return random_structured(ctx, init, level, run_dir)
    if method in ("safari", "parp", "parp_structured", "small_dense"):
        return globals()[method](ctx, init, level, run_dir)
    raise ValueError(f"unknown safari method {method!r}")
