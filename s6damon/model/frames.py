"""Frame geometry of the wav2vec 2.0 / HuBERT convolutional feature encoder.

One encoder token is one output frame of the conv feature encoder (20 ms for the standard
``conv_stride = (5, 2, 2, 2, 2, 2, 2)``). Token dropping and its labels, MixStyle's per-layer
statistics, FLOP counts and the exported graph all need the same frame counts, so they are
computed here once, from the model config's kernels and strides, with the formula of
transformers' ``Wav2Vec2PreTrainedModel._get_feat_extract_output_lengths`` (adapters excluded:
they come after the transformer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

#: Sample rate every model in the project runs at.
SAMPLE_RATE = 16000


def conv_layout(config: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(conv_kernel, conv_stride)`` of a Hugging Face wav2vec2/HuBERT config."""
    return tuple(int(k) for k in config.conv_kernel), tuple(int(s) for s in config.conv_stride)


def layer_frames(num_samples: int | torch.Tensor | np.ndarray, conv_kernel: Sequence[int],
                 conv_stride: Sequence[int]) -> list[Any]:
    """Output frames of each conv layer for ``num_samples`` input samples.

    Each layer maps ``n`` to ``floor((n - kernel) / stride) + 1``, clipped at 0 (where
    transformers would carry a negative count on for inputs shorter than the receptive
    field). Integer arithmetic only, so a tensor input traces into an exported graph.

    Args:
        num_samples: an int, or an integer tensor/array of any shape.
        conv_kernel: kernel size per conv layer.
        conv_stride: stride per conv layer.

    Returns:
        One count per layer, each of ``num_samples``' type and shape.
    """
    # The count runs on unclipped (once <= 0 it stays <= 0) and each layer's is clipped on its
    # own, so the last count's traced ops are those of transformers' formula plus one clip.
    out: list[Any] = []
    n = num_samples if isinstance(num_samples, (int, torch.Tensor)) else np.asarray(num_samples)
    for k, s in zip(conv_kernel, conv_stride, strict=True):
        if isinstance(n, torch.Tensor):
            n = torch.div(n - k, s, rounding_mode="floor") + 1
            out.append(n.clamp(min=0))
        else:
            n = (n - k) // s + 1
            out.append(max(n, 0) if isinstance(n, int) else np.maximum(n, 0))
    return out


def num_frames(num_samples: int | torch.Tensor | np.ndarray, conv_kernel: Sequence[int],
               conv_stride: Sequence[int]) -> Any:
    """Number of encoder tokens for ``num_samples`` input samples: the last conv layer's
    count of :func:`layer_frames` (0 for inputs shorter than the receptive field)."""
    return layer_frames(num_samples, conv_kernel, conv_stride)[-1]


def total_stride(conv_stride: Sequence[int]) -> int:
    """Hop between consecutive tokens, in samples (320 = 20 ms at 16 kHz for wav2vec2)."""
    return int(math.prod(conv_stride))


def receptive_field(conv_kernel: Sequence[int], conv_stride: Sequence[int]) -> int:
    """Number of input samples that one token sees (400 = 25 ms for wav2vec2)."""
    r = 1
    for k, s in reversed(list(zip(conv_kernel, conv_stride))):
        r = (r - 1) * s + k
    return r


def frame_spans(n_frames: int, conv_kernel: Sequence[int], conv_stride: Sequence[int],
                sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Time span in seconds of each token's receptive field.

    Args:
        n_frames: number of tokens ``T``.

    Returns:
        ``(T, 2)`` float array of ``[start, end)`` in seconds; token ``t`` starts at
        ``t * hop``. Consecutive spans overlap by ``receptive_field - hop`` samples.
    """
    hop = total_stride(conv_stride)
    rf = receptive_field(conv_kernel, conv_stride)
    start = np.arange(n_frames, dtype=np.float64) * hop
    return np.stack([start, start + rf], axis=1) / float(sample_rate)


def shift_spans(n_frames: int, frame_shift: float = 0.02) -> np.ndarray:
    """``(T, 2)`` spans ``[t * shift, (t + 1) * shift)``: the simple 20 ms grid."""
    start = np.arange(n_frames, dtype=np.float64) * frame_shift
    return np.stack([start, start + frame_shift], axis=1)


def frame_energy(wave: np.ndarray | torch.Tensor, n_frames: int, conv_kernel: Sequence[int],
                 conv_stride: Sequence[int]) -> np.ndarray:
    """Log energy of each token's receptive field (for the energy/VAD baseline).

    Args:
        wave: ``(N,)`` waveform samples of one utterance (no padding).
        n_frames: number of tokens ``T`` (normally ``num_frames(N, ...)``).

    Returns:
        ``(T,)`` float64 log mean-square energy per token.
    """
    x = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    x = x.astype(np.float64).reshape(-1)
    hop = total_stride(conv_stride)
    rf = receptive_field(conv_kernel, conv_stride)
    # prefix sums make every window's energy O(1); windows are clipped at the wave's end
    cs = np.concatenate([[0.0], np.cumsum(x * x)])
    start = np.minimum(np.arange(n_frames) * hop, x.size)
    end = np.minimum(start + rf, x.size)
    n = np.maximum(end - start, 1)
    return np.log((cs[end] - cs[start]) / n + 1e-10)
