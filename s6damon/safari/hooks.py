"""Loop hooks (``hook(net, step, state)``, run after each optimiser step) of SAFARI and PARP.

Gradients at hook time: :func:`s6damon.train.loop.run_loop` zeroes gradients *before* each
backward pass, so when the hooks run, ``.grad`` still holds the step's (clipped) gradients.
SAFARI's regrow criterion needs the gradient of *pruned* units, which a plain mask zeroes;
so the step before each adjustment the adjuster re-applies the mask with
``dense_grad=True`` (see :mod:`s6damon.pruning.masks`) and reads gradient L1 after that
step. The pruned units' outgoing slices then take one optimiser step with that gradient
(and drift a little after it through the optimiser's momentum); they are masked, so the
forward pass is unchanged. With ``regrow_init='keep'`` a regrown unit comes back with those
weights, with ``'zero'`` its outgoing slice is cleared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from s6damon.model.factory import unwrap
from s6damon.pruning import (
    UNIT_KINDS,
    StructuredMask,
    all_importances,
    apply_masks,
    mask_for_flops_target,
    prune_and_grow,
    regrown_units,
    reinit_regrown,
    removed_share,
)
from s6damon.pruning.masks import load_mask, save_mask
from s6damon.safari import unstructured as U
from s6damon.safari.selection import balanced_importance, comparable, initial_mask, zero_units
from s6damon.train import checkpoint as ck


def latest_checkpoint_step(ckpt_dir: str | Path) -> int:
    """Step of the newest checkpoint in ``ckpt_dir`` (0 if none): where a resumed run restarts."""
    found = ck.list_checkpoints(ckpt_dir)
    return int(found[-1].stem.split("_")[1]) if found else 0


def ramp_level(step: int, ramp_steps: int, level: float) -> float:
    """FLOPs share removed at ``step`` under gradual pruning: ``level * (1 - (1 - step/ramp)^3)``
    up to ``ramp_steps``, then ``level`` (the cubic schedule of Zhu & Gupta 2017: most of the
    pruning early, while the learning rate is high, then finer steps as the level nears)."""
    if ramp_steps <= 0 or step >= ramp_steps:
        return level
    return level * (1.0 - (1.0 - step / ramp_steps) ** 3)


def _pruned_count(old: StructuredMask, new: StructuredMask, kinds: Sequence[str]) -> int:
    """Units of ``kinds`` kept in ``old`` and pruned in ``new``."""
    return sum(int((o & ~n).sum()) for k in kinds for o, n in zip(old.units(k), new.units(k), strict=True))


def restore_flops_target(model: torch.nn.Module, old: StructuredMask, new: StructuredMask, level: float,
                         grad_l1: dict[str, list[torch.Tensor]], kinds: Sequence[str], *, seconds: float,
                         allow_layer_removal: bool, max_tries: int = 200) -> StructuredMask:
    """Put a prune-and-grow result back at the FLOPs target.

    :func:`~s6damon.pruning.prune_and_grow` keeps each kind's *count* constant; heads and
    neurons cost the same in every layer, but a conv channel's cost depends on its layer
    (and its neighbours' widths), so swapping channels between conv layers moves the FLOPs.
    SAFARI's sparsity is a FLOPs share, so: if the swap freed FLOPs, prune the kept units of
    least weight L1 per FLOP (never those regrown in this step) until the target is met
    again; if it removed more than needed, regrow the pruned units of largest gradient L1
    that fit (at most ``max_tries`` candidates). Result: removed share >= ``level``, short of
    it by less than one unit's FLOPs above.
    """
    if removed_share(model, new, seconds) < level:
        w = comparable(all_importances(model, "l1", kinds, normalise=True))
        for kind in kinds:  # just-regrown units are not candidates (their outgoing slice may be zero)
            for scores, grown in zip(w[kind], regrown_units(old, new, kind), strict=True):
                scores[grown] = float("inf")
        w = balanced_importance(model, w, new, seconds)
        return mask_for_flops_target(model, w, level, scope="global", kinds=kinds, seconds=seconds,
                                     allow_layer_removal=allow_layer_removal, base_mask=new)
    out = new.clone()
    cands = sorted(((float(grad_l1[k][l][j]), k, l, j) for k in kinds for l, m in enumerate(out.units(k))
                    for j in (~m).nonzero().squeeze(1).tolist()), reverse=True)
    for _, kind, l, j in cands[:max_tries]:
        out.units(kind)[l][j] = True
        if removed_share(model, out, seconds) < level:
            out.units(kind)[l][j] = False
    return out


class SafariAdjuster:
    """SAFARI's adjust-sparsity step as a loop hook, with its mask history on disk.

    Every ``adjust_every`` steps (the last one at least ``adjust_every`` steps before the
    end, so regrown units get trained): per kind, pooled across layers, drop the
    ``swap_fraction`` of kept units with the smallest weight L1 and regrow as many pruned
    units with the largest gradient L1 (per-weight means; conv channels relative to their
    layer's mean, see :func:`~s6damon.safari.selection.comparable`), then :func:`restore_flops_target` (the FLOPs removed stay at the
    level; per kind the count is constant up to that repair). Each mask is written to
    ``mask_dir/step_XXXXXXXX.json``; :meth:`wrap` of a resumed run restarts from the mask in
    force at the resumed checkpoint. ``kinds`` are the kinds it swaps (``safari.adjust_kinds``);
    units of other kinds keep the mask they started with.

    Gradual pruning (``ramp_steps`` > 0, ``safari.ramp_steps``): ``mask`` is where training
    starts (all units kept), and the adjustments up to ``ramp_steps`` instead prune further,
    with ``prune_to(model, mask, share)``, to :func:`ramp_level`'s share; the swaps start after.
    """

    def __init__(self, mask: StructuredMask, level: float, *, adjust_every: int, swap_fraction: float, kinds: Sequence[str],
                 allow_layer_removal: bool, total_steps: int, regrow_init: str, mask_dir: str | Path,
                 ckpt_dir: str | Path, seconds: float = 10.0, ramp_steps: int = 0,
                 prune_to: Callable[[torch.nn.Module, StructuredMask, float], StructuredMask] | None = None) -> None:
        if ramp_steps and prune_to is None:
            raise ValueError("SafariAdjuster: ramp_steps > 0 needs prune_to")
        self.mask, self.level = mask, level
        self.adjust_every, self.swap_fraction = adjust_every, swap_fraction
        self.kinds, self.allow_layer_removal = tuple(kinds), allow_layer_removal
        self.total_steps, self.regrow_init = total_steps, regrow_init
        self.mask_dir, self.ckpt_dir, self.seconds = Path(mask_dir), Path(ckpt_dir), seconds
        self.ramp_steps, self.prune_to = ramp_steps, prune_to
        self.dense_grad = False
        self.swaps: list[dict[str, Any]] = []

    def is_adjust_step(self, step: int) -> bool:
        """Whether the hook after ``step`` adjusts the mask."""
        return step > 0 and step % self.adjust_every == 0 and step + self.adjust_every <= self.total_steps

    def is_swap_step(self, step: int) -> bool:
        """Whether the hook after ``step`` runs prune-and-grow (an adjustment after the ramp)."""
        return self.is_adjust_step(step) and step > self.ramp_steps

    def _save(self, step: int) -> None:
        save_mask(self.mask, self.mask_dir / f"step_{step:08d}.json")

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``finetune(wrap=...)``: apply the mask in force at the step the run (re)starts from."""
        start = latest_checkpoint_step(self.ckpt_dir)
        saved = sorted(p for p in self.mask_dir.glob("step_*.json") if int(p.stem.split("_")[1]) <= start)
        if saved:
            self.mask = load_mask(saved[-1])
        else:
            self._save(0)
        self.dense_grad = self.is_swap_step(start + 1)
        return apply_masks(model, self.mask, dense_grad=self.dense_grad)

    def __call__(self, net: torch.nn.Module, step: int, state: dict[str, Any]) -> dict[str, Any] | None:
        model = unwrap(net)
        out = None
        if self.is_swap_step(step):
            w = comparable(all_importances(model, "l1", self.kinds, normalise=True))
            g = comparable(all_importances(model, "grad_l1", self.kinds, normalise=True))
            new = prune_and_grow(self.mask, w, g, self.swap_fraction, kinds=self.kinds,
                                 allow_empty_layers=self.allow_layer_removal)
            new = restore_flops_target(model, self.mask, new, self.level, g, self.kinds, seconds=self.seconds,
                                       allow_layer_removal=self.allow_layer_removal)
            reinit_regrown(model, self.mask, new, mode=self.regrow_init)
            out = {"swapped": _pruned_count(self.mask, new, self.kinds)}
        elif self.is_adjust_step(step):  # inside the ramp: prune further, nothing regrows
            new = self.prune_to(model, self.mask, ramp_level(step, self.ramp_steps, self.level))
            out = {"pruned": _pruned_count(self.mask, new, UNIT_KINDS)}
        changed = out is not None
        if changed:
            self.mask = new
            self._save(step)
            out["flops_removed"] = removed_share(model, new, self.seconds)
        dense = self.is_swap_step(step + 1)
        if changed or dense != self.dense_grad:
            self.dense_grad = dense
            apply_masks(model, self.mask, dense_grad=dense)
        return out


class ParpRepruner:
    """PARP's re-prune as a loop hook: every ``every`` steps and after the last one,
    recompute the mask from the current weights at the same FLOPs target and zero what it
    prunes; in between, zeroed weights are trained like the others and may grow back.

    ``structured=False``: per-weight magnitude masks (:mod:`s6damon.safari.unstructured`);
    ``structured=True``: unit masks by weight L1 (:func:`initial_mask`), units zeroed with
    :func:`zero_units`. :attr:`mask` holds the last mask.
    """

    def __init__(self, level: float, *, every: int, total_steps: int, structured: bool, kinds: Sequence[str] = (),
                 scope: str = "global", allow_layer_removal: bool = False, seconds: float = 10.0) -> None:
        self.level, self.every, self.total_steps = level, every, total_steps
        self.structured, self.kinds, self.scope = structured, tuple(kinds), scope
        self.allow_layer_removal, self.seconds = allow_layer_removal, seconds
        self.mask: StructuredMask | U.WeightMasks | None = None

    def prune(self, model: torch.nn.Module) -> torch.nn.Module:
        """Compute the mask from ``model``'s current weights and zero what it prunes."""
        if self.structured:
            self.mask = initial_mask(model, self.level, criterion="l1", kinds=self.kinds, scope=self.scope,
                                     allow_layer_removal=self.allow_layer_removal, seconds=self.seconds)
            zero_units(model, self.mask)
        else:
            self.mask = U.magnitude_masks(model, self.level, self.seconds)
            U.zero_weights(model, self.mask)
        return model

    def __call__(self, net: torch.nn.Module, step: int, state: dict[str, Any]) -> dict[str, Any] | None:
        if step % self.every and step != self.total_steps:
            return None
        model = unwrap(net)
        before = U.zeroed_share(model, self.seconds) if not self.structured else None
        self.prune(model)
        return {"reprune": 1.0} if before is None else {"zero_share_before_reprune": before}
