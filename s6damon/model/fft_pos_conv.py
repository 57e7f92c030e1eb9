"""The positional convolution of wav2vec2/HuBERT computed through the FFT: same math, faster on CPU.

The transformer's relative position embedding is a grouped 1-D convolution over time (the
default model: 256 channels in 16 groups, kernel 64, weight-normalised), then the same-padding
trim and a GELU. On a CPU oneDNN runs it directly at a few GFLOP/s: in a profiled bfloat16
training step of the default model (7 utterances of 3 s, one thread) its backward was the
largest single op, and forward + backward took ~13 % of the step. A 64-tap kernel over ~150
tokens is what the FFT is for: the convolution becomes a per-frequency 16 × 16 channel mix,
a few MFLOPs instead of ~0.5 GFLOPs per pass. Inputs longer than one FFT of :data:`BLOCK`
points are convolved in overlapping blocks (overlap-save), so long utterances cost linearly in
time. ``python -m bench.pos_conv`` times the two (forward + backward of the embedding, per length
and precision). In float32 on a 2-core AMD EPYC without AVX512 (one thread, nothing else
running; ``bench/pos_conv_avx2.json``): 7 x 149 tokens 24 ms through the FFT against 96 ms
direct, 2 x 500 30 against 92, 1 x 1500 36 against 130, 1 x 3000 60 against 312 ms (before the
blocks, one FFT over the whole input was slower than the direct conv at 1500 tokens). In
bfloat16 on an AMD EPYC with AVX512-BF16, beside other jobs: 7 x 149 ~90 ms against ~240-310.

:func:`fft_conv1d` computes PyTorch's ``conv1d`` (a cross-correlation, zero padding, groups)
in float32 — autocast is off inside it, so under bfloat16 training the embedding is more
precise than the direct bfloat16 convolution, not less — and :func:`pos_conv_kernel` runs a
model's positional convolution through it inside a ``with`` block, as
:func:`s6damon.model.attention.attention_kernel` does for attention. The weights, their
weight-norm parametrisation and the state dict are untouched; outside the block (evaluation,
export, saved folders) the model is the stock one. Outputs equal the direct convolution within
float32 rounding (``tests/test_fft_pos_conv.py``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import types
from typing import Iterator

import torch
from torch import nn
from transformers.models.hubert.modeling_hubert import HubertPositionalConvEmbedding
from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2PositionalConvEmbedding

KERNELS = ("conv", "fft")
POSITIONAL_CONVS = (Wav2Vec2PositionalConvEmbedding, HubertPositionalConvEmbedding)


def fft_size(n: int) -> int:
    """The smallest length >= ``n`` with no prime factor above 5 (fast for the FFT; a
    length with a large prime factor, e.g. 213 = 3 x 71, is several times slower)."""
    size = max(1, int(n))
    while True:
        m = size
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return size
        size += 1


@functools.lru_cache(maxsize=16)
def _dft_basis(taps: int, n: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)``, each ``(taps, n // 2 + 1)``: the real DFT of a ``taps``-long signal
    zero-padded to ``n``, as two matrices (sin carries the transform's minus sign)."""
    k = torch.arange(taps, dtype=torch.float64)[:, None]
    f = torch.arange(n // 2 + 1, dtype=torch.float64)[None]
    angle = -2.0 * math.pi * k * f / n
    return torch.cos(angle).float().to(device), torch.sin(angle).float().to(device)


# The longest FFT of one block. A longer input is convolved in overlapping blocks of this length
# (overlap-save): the kernel's spectrum, the costly part (its DFT-basis matmul grows with the
# FFT length), is then computed at this length however long the input, and the cost grows
# linearly with time. 256 was chosen in a side check of one embedding's forward + backward
# (one thread, beside pretraining): against 512 and 1024 it was fastest at 2 x 500 and 1 x 3000
# tokens, 512 at 1 x 1500; inputs of up to 192 tokens fit one block either way.
BLOCK = 256


def fft_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int,
               groups: int, block: int = BLOCK) -> torch.Tensor:
    """``torch.nn.functional.conv1d`` on time-major input, computed through the FFT in float32.

    The input's spectrum is an FFT over time; the kernel's — ``C_out x C_in / groups`` short
    filters, 4096 of them in the default model — is one matmul with a DFT basis of the kernel's
    ``K`` taps, cheaper than thousands of zero-padded FFTs (and so is its backward). The
    channel mix is then a ``C_in / groups -> C_out / groups`` complex matmul per group and
    frequency. An input longer than one FFT of ``block`` points is cut into overlapping blocks
    of that length, each giving ``block - K + 1`` outputs (overlap-save).

    Args:
        x: ``(B, T, C_in)`` — time before channels, as the transformer holds its tokens.
        weight: ``(C_out, C_in / groups, K)``.
        bias: ``(C_out,)`` or None.
        padding: zeros added at both ends of time.
        groups: channel groups.
        block: the longest FFT; at least ``2 * K``.

    Returns:
        ``(B, T + 2 * padding - K + 1, C_out)`` float32.
    """
    B, T, C = x.shape
    c_out, c_group, K = weight.shape
    if C != c_group * groups or c_out % groups:
        raise ValueError(f"fft_conv1d: {C} input channels do not match weight {tuple(weight.shape)} "
                         f"in {groups} groups")
    if block < 2 * K:
        raise ValueError(f"fft_conv1d: block {block} is shorter than twice the kernel ({K} taps)")
    t_out = T + 2 * padding - K + 1
    with torch.autocast(x.device.type, enabled=False):
        # a cross-correlation: Y = X * conj(W) per frequency. Output t of a block reads inputs
        # t .. t + K - 1 of it, so the first hop = n - K + 1 outputs of an n-point block never
        # wrap around; an input whose padded length fits one FFT is one block (hop >= t_out)
        n = min(fft_size(T + 2 * padding), block)
        hop = n - K + 1
        blocks = -(-t_out // hop)
        xp = nn.functional.pad(x.float(), (0, 0, padding, blocks * hop + K - 1 - T - padding))
        frames = xp.transpose(1, 2).unfold(2, n, hop).transpose(1, 2)  # (B, blocks, C, n)
        xf = torch.fft.rfft(frames, n=n, dim=-1)  # (B, blocks, C, F)
        F = xf.shape[-1]
        cos, sin = _dft_basis(K, n, str(x.device))
        w = weight.float().reshape(-1, K)
        w_conj = torch.complex(w @ cos, -(w @ sin))  # conj of the kernel's spectrum, (C_out * C_in/G, F)
        wg = w_conj.reshape(groups, c_out // groups, c_group, F).permute(0, 3, 2, 1)  # (G, F, C_in/G, C_out/G)
        xg = xf.reshape(B * blocks, groups, c_group, F).permute(1, 3, 0, 2)  # (G, F, B * blocks, C_in/G)
        yf = torch.matmul(xg, wg).permute(2, 0, 3, 1).reshape(B, blocks, c_out, F)
        y = torch.fft.irfft(yf, n=n, dim=-1)[..., :hop]  # (B, blocks, C_out, hop)
        y = y.permute(0, 1, 3, 2).reshape(B, blocks * hop, c_out)[:, :t_out]
        return y if bias is None else y + bias.float()


def _fft_forward(self: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """The positional conv embedding's forward with its convolution through the FFT."""
    batch_norm = getattr(self, "batch_norm", None)  # HuBERT's conv_pos_batch_norm
    if batch_norm is not None:
        hidden_states = batch_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    conv = self.conv
    out = fft_conv1d(hidden_states, conv.weight, conv.bias, conv.padding[0], conv.groups)
    if self.padding.num_pad_remove > 0:  # the same-padding trim of an even kernel
        out = out[:, : -self.padding.num_pad_remove]
    return self.activation(out)


@contextlib.contextmanager
def pos_conv_kernel(model: nn.Module, kernel: str) -> Iterator[None]:
    """Run the positional convolution of ``model`` (any module holding a wav2vec2/HuBERT
    encoder) as ``kernel`` inside the block: ``"conv"`` (the stock direct convolution) or
    ``"fft"`` (:func:`fft_conv1d`). The stock forward is restored when the block ends.

    Raises:
        ValueError: for a kernel other than ``"conv"`` and ``"fft"``.
    """
    if kernel not in KERNELS:
        raise ValueError(f"positional conv kernel must be one of {KERNELS}, got {kernel!r}")
    mods = [m for m in model.modules() if isinstance(m, POSITIONAL_CONVS)] if kernel == "fft" else []
    for m in mods:
        m.forward = types.MethodType(_fft_forward, m)  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        for m in mods:
            del m.forward
