"""Typed, validated view of ``params.yaml``.

One dataclass per ``params.yaml`` section, each in the module named after the stage that
reads it. ``load_params`` is the only way code reads parameters.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from s6damon.config.align import AlignParams
from s6damon.config.decode import DecodeParams
from s6damon.config.evaluate import EvaluateParams
from s6damon.config.export import ExportParams
from s6damon.config.model import FinetuneParams, ModelParams, PretrainParams
from s6damon.config.prepare import PrepareParams
from s6damon.config.salad import SaladParams
from s6damon.config.safari import SafariParams
from s6damon.config.schema import ParamsError, build, param, to_dict

__all__ = ["Params", "ParamsError", "load_params", "to_dict"]


@dataclasses.dataclass(frozen=True)
class Params:
    """The whole of ``params.yaml``."""

    seed: int = param(1234, minimum=0, help="global random seed, recorded in every metrics file")
    threads: int = param(2, minimum=1, help="torch intra-op threads for training and inference")
    concurrent_runs: int = param(2, minimum=1, help="training runs of one stage trained at once, each in its own "
                                                   "process on threads // concurrent_runs threads")
    prepare: PrepareParams = dataclasses.field(default_factory=PrepareParams)
    align: AlignParams = dataclasses.field(default_factory=AlignParams)
    model: ModelParams = dataclasses.field(default_factory=ModelParams)
    pretrain: PretrainParams = dataclasses.field(default_factory=PretrainParams)
    finetune: FinetuneParams = dataclasses.field(default_factory=FinetuneParams)
    decode: DecodeParams = dataclasses.field(default_factory=DecodeParams)
    salad: SaladParams = dataclasses.field(default_factory=SaladParams)
    safari: SafariParams = dataclasses.field(default_factory=SafariParams)
    export: ExportParams = dataclasses.field(default_factory=ExportParams)
    evaluate: EvaluateParams = dataclasses.field(default_factory=EvaluateParams)

    def check(self) -> None:
        if self.concurrent_runs > self.threads:
            raise ParamsError(f"params: 'concurrent_runs' ({self.concurrent_runs}) must not exceed 'threads' "
                              f"({self.threads}): each run gets threads // concurrent_runs torch threads")
        for key in ("distill_weight", "distill_hidden_weight"):
            if getattr(self.finetune, key) > 0:
                # the finetune stage trains the dense model that salad/safari distil from
                raise ParamsError(f"params: 'finetune.{key}' must be 0: the finetune stage has no teacher "
                                  "(distillation is for 'salad.finetune' and 'safari.finetune')")
        if self.salad.finetune.distill_hidden_weight > 0:
            raise ParamsError("params: 'salad.finetune.distill_hidden_weight' must be 0: a token-dropped student's "
                              "layers have no frame-for-frame teacher layer (use 'salad.finetune.distill_weight')")
        if self.finetune.feature_cache and self.finetune.freeze_feature_encoder_steps < self.finetune.steps:
            raise ParamsError("params: 'finetune.feature_cache' needs 'finetune.freeze_feature_encoder_steps' >= "
                              "'finetune.steps': cached features are those of a conv encoder that never changes")
        if self.safari.finetune.feature_cache:
            raise ParamsError("params: 'safari.finetune.feature_cache' must be false: SAFARI prunes and trains "
                              "the conv encoder whose output the cache would hold")
        sft = self.salad.finetune  # its conv encoder is always frozen (SaladParams checks)
        if sft.feature_cache and sft.distills:
            raise ParamsError("params: 'salad.finetune.feature_cache' needs 'salad.finetune.distill_weight' 0: "
                              "the teacher reads each step's waveforms")
        for section in ("salad", "safari"):
            if getattr(self, section).finetune.token_merge_ratio > 0:
                raise ParamsError(f"params: '{section}.finetune.token_merge_ratio' must be 0: token merging is for "
                                  f"the finetune stage ({section}'s runs choose their own tokens or masks)")
            if getattr(self, section).finetune.interctc_weight > 0:
                raise ParamsError(f"params: '{section}.finetune.interctc_weight' must be 0: intermediate CTC is "
                                  f"for the finetune stage ({section}'s runs reshape or mask the layers it reads)")
        for section, recipe in (("finetune", self.finetune), ("salad.finetune", self.salad.finetune),
                                ("safari.finetune", self.safari.finetune)):
            self._check_mixstyle(section, recipe)
        ft = self.finetune
        if ft.token_merge_ratio > 0 and (ft.feature_cache or ft.interctc_weight > 0):
            raise ParamsError("params: 'finetune.token_merge_ratio' > 0 needs 'finetune.feature_cache' false and "
                              "'finetune.interctc_weight' 0 (both read the unmerged sequence)")
        if ft.interctc_weight > 0:
            if ft.feature_cache:
                raise ParamsError("params: 'finetune.interctc_weight' > 0 needs 'finetune.feature_cache' false")
            bad = [k for k in ft.interctc_layers if k >= self.model.num_layers]
            if not self.model.init and (bad or not ft.interctc_layers):
                raise ParamsError(f"params: 'finetune.interctc_layers' must name layers 1..{self.model.num_layers - 1} "
                                  f"(below the last of 'model.num_layers'), got {ft.interctc_layers}")


    def _check_mixstyle(self, section: str, recipe: FinetuneParams) -> None:
        """MixStyle hooks the conv encoder, which must run each step and have the named layers
        (known here unless ``model.init`` brings its own shape; the finetune run checks then)."""
        if recipe.mixstyle.prob == 0:
            return
        if recipe.feature_cache:
            raise ParamsError(f"params: '{section}.mixstyle.prob' > 0 needs '{section}.feature_cache' false: "
                              f"MixStyle acts inside the conv encoder, which a feature cache skips")
        bad = [i for i in recipe.mixstyle.layers if i >= len(self.model.conv_dim)]
        if bad and not self.model.init:
            raise ParamsError(f"params: '{section}.mixstyle.layers' {bad} outside the conv encoder's layers "
                              f"0..{len(self.model.conv_dim) - 1} ('model.conv_dim')")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file.

    Raises:
        FileNotFoundError: the file does not exist.
        ParamsError: a key is unknown, mistyped or out of range; the message names the key
            and the file.
    """
    path = Path(path)
    try:
        data: Any = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from err
    try:
        return build(Params, data)
    except ParamsError as err:
        raise ParamsError(f"{path}: {str(err).removeprefix('params: ')}") from err
