"""Structured pruning machinery shared by SAFARI, its baselines and the export stage.

- :mod:`~s6damon.pruning.masks` — :class:`StructuredMask`, :func:`apply_masks`, :func:`remove_masks`
- :mod:`~s6damon.pruning.importance` — :func:`unit_importance` (``l1``, ``grad_l1``, ``random``)
- :mod:`~s6damon.pruning.flops` — :func:`encoder_flops`, :func:`mask_for_flops_target`
- :mod:`~s6damon.pruning.prune_grow` — :func:`prune_and_grow`, :func:`reinit_regrown`
- :mod:`~s6damon.pruning.physical` — :func:`materialise`, :func:`build_from_sizes`,
  :func:`save_pruned`, :func:`load_pruned`
"""

from s6damon.pruning.flops import (
    encoder_flops,
    mask_for_flops_target,
    measured_flops,
    model_sizes,
    removed_share,
)
from s6damon.pruning.importance import all_importances, unit_importance
from s6damon.pruning.masks import StructuredMask, apply_masks, has_masks, remove_masks
from s6damon.pruning.model_parts import UNIT_KINDS
from s6damon.pruning.physical import build_from_sizes, load_pruned, materialise, save_pruned
from s6damon.pruning.prune_grow import prune_and_grow, regrown_units, reinit_regrown

__all__ = [
    "UNIT_KINDS",
    "StructuredMask",
    "all_importances",
    "apply_masks",
    "build_from_sizes",
    "encoder_flops",
    "has_masks",
    "load_pruned",
    "mask_for_flops_target",
    "materialise",
    "measured_flops",
    "model_sizes",
    "prune_and_grow",
    "regrown_units",
    "reinit_regrown",
    "remove_masks",
    "removed_share",
    "save_pruned",
    "unit_importance",
]
