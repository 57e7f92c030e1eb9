"""What the machine can do fast: native bfloat16 arithmetic decides the training precision."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str | None:
    """``/proc/cpuinfo``, read once; None where it does not exist (not Linux)."""
    path = Path("/proc/cpuinfo")
    return path.read_text() if path.exists() else None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    info = _cpuinfo() or ""
    return next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")),
                platform.processor())


def cpu_native_bf16() -> bool | None:
    """Whether the CPU has native bfloat16 dot products (AVX512-BF16 or AMX-BF16).

    None where ``/proc/cpuinfo`` does not exist (not Linux): unknown. Without them oneDNN
    emulates bfloat16, and a bfloat16-autocast training step is slower than a float32 one
    (measured on a 2-core AVX512 Xeon without AVX512-BF16: 1442 vs 843 ms; with it: 223 vs
    358 ms — ``python -m bench.train_step``).
    """
    flags = _cpuinfo()
    if flags is None:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def training_precision(precision: str, device: torch.device) -> str:
    """Resolve a ``precision`` param to ``float32`` or ``bfloat16`` on ``device``.

    ``auto``: bfloat16 on a GPU that supports it and on a CPU with native bfloat16
    (:func:`cpu_native_bf16`), float32 elsewhere.
    """
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device.type == "cpu" and cpu_native_bf16() else "float32"


def training_attention(choice: str, precision: str, device: torch.device) -> str:
    """Resolve an ``attention`` param to the Hugging Face attention implementation a training
    forward pass uses: ``"sdpa"`` (PyTorch's fused scaled-dot-product attention) or ``"eager"``
    (matmul, softmax, matmul).

    ``auto``: eager under bfloat16 autocast on a CPU, sdpa elsewhere. On CPU the fused kernel is
    slow in bfloat16 at the corpus's utterance lengths: forward + backward of one layer's
    attention (4 heads of 64, one thread) took 19.7 ms fused against 5.9 ms eager for 6 x 164
    tokens and 25.6 against 14.3 ms for 2 x 500, though 119 against 138 ms for one 1500-token
    (30 s) utterance; in float32 the fused kernel is faster at every length (13.2 against 14.0 ms
    for 6 x 164; ``python -m bench.attention_kernel``, ``bench/attention_kernel.json``).

    Args:
        choice: ``auto``, ``sdpa`` or ``eager``.
        precision: the resolved training precision (:func:`training_precision`).
        device: the training device.
    """
    if choice != "auto":
        return choice
    return "eager" if device.type == "cpu" and precision == "bfloat16" else "sdpa"


def training_pos_conv(choice: str, device: torch.device) -> str:
    """Resolve a ``pos_conv`` param to how a training forward pass computes the positional
    convolution: ``"conv"`` (the direct grouped convolution) or ``"fft"``
    (:mod:`s6damon.model.fft_pos_conv`).

    ``auto``: fft on a CPU, where oneDNN's direct grouped convolution (kernel 64, 16 groups) is
    slow at the corpus's lengths in both precisions; conv elsewhere (a GPU's is fast).
    """
    if choice != "auto":
        return choice
    return "fft" if device.type == "cpu" else "conv"
