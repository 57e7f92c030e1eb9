"""Which attention kernel a Hugging Face wav2vec2/HuBERT model runs.

The models read ``config._attn_implementation`` at every forward pass, so the kernel can be
switched on a built model without touching its weights: ``"sdpa"`` (PyTorch's fused
scaled-dot-product attention, what loading a folder gives) or ``"eager"`` (matmul, softmax,
matmul — the same math with other rounding). Training under bfloat16 autocast on a CPU runs
eager (faster there, :func:`s6damon.hardware.training_attention`); counting FLOPs runs eager
because ``FlopCounterMode`` has no formula for the CPU SDPA kernel. Saved folders never record
the switch: it is restored when the block ends.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn

from s6damon.model.factory import unwrap

KERNELS = ("sdpa", "eager")


@contextlib.contextmanager
def attention_kernel(model: nn.Module, kernel: str) -> Iterator[None]:
    """Run ``model`` (or a wrapper holding it as ``.module``) with attention ``kernel`` inside the block.

    Raises:
        ValueError: for a kernel other than ``"sdpa"`` and ``"eager"``.
    """
    if kernel not in KERNELS:
        raise ValueError(f"attention kernel must be one of {KERNELS}, got {kernel!r}")
    cfg = unwrap(model).config
    saved = cfg._attn_implementation
    cfg._attn_implementation = kernel
    try:
        yield
    finally:
        cfg._attn_implementation = saved
