"""Parameters of the model and of the ``pretrain`` and ``finetune`` stages."""

from __future__ import annotations

import dataclasses

from s6damon.config.schema import param


@dataclasses.dataclass(frozen=True)
class ModelParams:
    init: str = param("", help="local Hugging Face checkpoint folder; empty = pretrain the tiny model")
    hidden_size: int = param(256, minimum=8)
    num_layers: int = param(4, minimum=1)
    num_heads: int = param(4, minimum=1)
    intermediate_size: int = param(1024, minimum=8)
    conv_dim: list[int] = param([32, 64, 128, 128, 128, 128, 128], minimum=1)
    conv_kernel: list[int] = param([10, 3, 3, 3, 3, 2, 2], minimum=1)
    conv_stride: list[int] = param([5, 2, 2, 2, 2, 2, 2], minimum=1)

    def check(self) -> None:
        from s6damon.config.schema import ParamsError

        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride):
            raise ParamsError("params: 'model.conv_dim', 'model.conv_kernel' and 'model.conv_stride' must have equal lengths")
        if self.hidden_size % self.num_heads:
            raise ParamsError("params: 'model.hidden_size' must be divisible by 'model.num_heads'")


@dataclasses.dataclass(frozen=True)
class PretrainParams:
    steps: int = param(2000, minimum=0)
    learning_rate: float = param(5e-4, minimum=0.0)
    checkpoint_every: int = param(200, minimum=1)


@dataclasses.dataclass(frozen=True)
class FinetuneParams:
    steps: int = param(2000, minimum=0)
    learning_rate: float = param(1e-3, minimum=0.0)
    checkpoint_every: int = param(200, minimum=1)
