"""MixStyle in the conv feature encoder: mixing utterances' channel statistics in training.

An unseen speaker (and vocoder) shows up first in the conv encoder's per-channel statistics
over time: the mean and spread of each channel across an utterance carry the spectral envelope
and excitation, much as instance statistics carry "style" in images. MixStyle (Zhou et al.,
"Domain Generalization with MixStyle", ICLR 2021) normalises each training utterance's
feature maps by their own statistics and rescales them with a random convex mix of its own
and another utterance's, so the layers above learn to read content under styles that lie
between the training voices. It adds no parameters and is the identity in evaluation; the
saved model is an ordinary wav2vec2 model.

The statistics are taken over each utterance's real frames only (padding excluded, lengths
followed through the conv strides) and carry no gradient, as in the paper. Whether a step
mixes, the partner of each utterance and the mixing weights come from a generator the caller
seeds per step, so a resumed run mixes as an uninterrupted one does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from s6damon.config.model import MixStyleParams
from s6damon.model.factory import unwrap
from s6damon.model.frames import layer_frames


def mix_statistics(x: torch.Tensor, lengths: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor,
                   eps: float = 1e-6) -> torch.Tensor:
    """``x`` (B, C, T) with each utterance's per-channel mean and std over its first
    ``lengths[b]`` frames replaced by ``lam[b] * own + (1 - lam[b]) * partner's``.

    Padding frames are returned unchanged; an utterance with no frames is left as it is.
    Statistics are computed in float32 and detached; the result has ``x``'s dtype.
    """
    xf = x.float()
    t = torch.arange(x.shape[-1], device=x.device)
    mask = (t[None, :] < lengths[:, None]).unsqueeze(1)  # (B, 1, T)
    n = mask.sum(-1, keepdim=True).clamp(min=1)
    with torch.no_grad():
        mu = (xf * mask).sum(-1, keepdim=True) / n
        sig = ((((xf - mu) ** 2) * mask).sum(-1, keepdim=True) / n + eps).sqrt()
    w = lam.to(xf)[:, None, None]
    mu_mix = w * mu + (1 - w) * mu[partner]
    sig_mix = w * sig + (1 - w) * sig[partner]
    mixed = (xf - mu) / sig * sig_mix + mu_mix
    keep = mask & (lengths > 0)[:, None, None]
    return torch.where(keep, mixed, xf).to(x.dtype)


class MixStyle:
    """Forward hooks on a wav2vec2 conv feature encoder's layers that apply
    :func:`mix_statistics` in training steps chosen with probability ``p.prob``.

    Wrap each training forward pass in :meth:`step`; evaluation (``model.eval()``), forward
    passes outside :meth:`step` and steps not chosen pass the features through untouched.
    """

    def __init__(self, p: MixStyleParams, conv_layers: Sequence[torch.nn.Module],
                 kernels: Sequence[int], strides: Sequence[int]) -> None:
        bad = [i for i in p.layers if not 0 <= i < len(conv_layers)]
        if bad:
            raise ValueError(f"mixstyle.layers (of a finetune section): {bad} outside the conv encoder's layers "
                             f"0..{len(conv_layers) - 1}")
        self.p, self.kernels, self.strides = p, list(kernels), list(strides)
        self._lengths: list[torch.Tensor] | None = None
        self._partner = self._lam = None
        self._handles = [conv_layers[i].register_forward_hook(self._hook(i)) for i in sorted(set(p.layers))]

    @classmethod
    def for_model(cls, p: MixStyleParams, model: torch.nn.Module) -> MixStyle:
        """Hooks on the conv encoder of a Hugging Face wav2vec2/HuBERT CTC model."""
        base = unwrap(model).base_model
        cfg = base.config
        return cls(p, base.feature_extractor.conv_layers, cfg.conv_kernel, cfg.conv_stride)

    @contextmanager
    def step(self, rng: np.random.Generator, samples: torch.Tensor) -> Iterator[bool]:
        """Mix in the forward passes inside this block if the step is chosen; yields whether it is.

        See :meth:`begin_step`; the draws are cleared on leaving, so no later forward pass
        (an evaluation in training mode, another batch) reuses them.
        """
        try:
            yield self.begin_step(rng, samples)
        finally:
            self._lengths = None

    def begin_step(self, rng: np.random.Generator, samples: torch.Tensor) -> bool:
        """Decide whether this step mixes and draw its partners and weights.

        Args:
            rng: this step's generator (seeded by the caller from seed and step).
            samples: ``(B,)`` real input samples of each utterance.

        Returns:
            Whether the step mixes (never with fewer than two utterances).
        """
        b = int(samples.shape[0])
        self._lengths = None
        if b < 2 or rng.random() >= self.p.prob:
            return False
        # a random pairing that never pairs an utterance with itself
        order = rng.permutation(b)
        partner = np.empty(b, dtype=np.int64)
        partner[order] = np.roll(order, 1)
        self._partner = torch.from_numpy(partner)
        self._lam = torch.from_numpy(rng.beta(self.p.alpha, self.p.alpha, size=b).astype(np.float32))
        self._lengths = layer_frames(samples.long(), self.kernels, self.strides)
        return True

    def _hook(self, layer: int):
        def hook(module: torch.nn.Module, args, out: torch.Tensor) -> torch.Tensor | None:
            if not module.training or self._lengths is None:
                return None
            if out.shape[0] != len(self._partner):
                raise RuntimeError(f"MixStyle: drawn for a batch of {len(self._partner)}, got {out.shape[0]}")
            lengths = self._lengths[layer].to(out.device)
            return mix_statistics(out, lengths, self._partner.to(out.device), self._lam)
        return hook

    def remove(self) -> None:
        """Detach the hooks (the model is plain again)."""
        for h in self._handles:
            h.remove()
        self._handles = []
