"""The numerics of a training forward pass: bfloat16 autocast, the attention kernel and the
positional convolution.

Both training loops (:mod:`s6damon.train.finetune`, :mod:`s6damon.train.pretrain`) run every
forward pass inside :func:`training_forward`; evaluation runs outside it (float32, the fused
attention kernel). ``precision`` and ``attention`` params are resolved from the hardware by
:func:`s6damon.hardware.training_precision` and :func:`s6damon.hardware.training_attention`.
"""

from __future__ import annotations

import contextlib

import torch

from s6damon.hardware import training_precision
from s6damon.model.attention import attention_kernel
from s6damon.model.fft_pos_conv import pos_conv_kernel


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The training forward pass's autocast context: a no-op for ``float32``.

    ``bfloat16`` runs matmuls and convolutions in bfloat16 (1.61x faster per step on a
    2-core CPU with AVX512-BF16, ``bench/train_step.json``; 0.58x — slower — on one without,
    ``bench/train_step_no_native_bf16.json``); autocast keeps reductions, log-softmax and the
    CTC loss in float32, and the weights and optimiser state stay float32. ``auto`` is resolved
    by :func:`~s6damon.hardware.training_precision`.
    """
    enabled = training_precision(precision, device) == "bfloat16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def training_forward(model: torch.nn.Module, device: torch.device, precision: str, kernel: str,
                     pos_conv: str = "conv") -> contextlib.ExitStack:
    """Autocast for ``precision``, attention ``kernel`` and the positional convolution
    ``pos_conv`` (``conv`` or ``fft``) for ``model``, as one ``with`` block."""
    stack = contextlib.ExitStack()
    stack.enter_context(autocast(device, precision))
    stack.enter_context(attention_kernel(model, kernel))
    stack.enter_context(pos_conv_kernel(model, pos_conv))
    return stack
