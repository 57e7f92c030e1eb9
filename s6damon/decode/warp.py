"""Test-time warping: decode each utterance (or speaker) at the resampling factor the model is surest of.

Vocal-tract length normalisation in GMM-HMM systems warps the frequency axis of an unseen
speaker's features by the factor (typically 0.88–1.12) under which the acoustic model gives
the audio the highest likelihood. A wav2vec2-style model reads raw samples, so the warp here
is a resampling of the waveform (:func:`s6damon.train.data.perturb_speed`, the transform
finetuning's speed perturbation draws from): a factor < 1 lowers formants and pitch and
slows the audio, bringing a voice higher than the training voices toward them. A CTC model
gives no likelihood of its input; the score of a factor is how sure the model is of its own
greedy reading instead (:data:`CRITERIA`), which needs no transcript, so the factor can be
chosen on the test audio itself, per utterance or per speaker (one on-device user is one
speaker: an enrolment).

The cost is one forward pass per factor tried; the chosen emissions then go to greedy or beam
search decoding unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

#: Scores of a ``(T, vocab)`` log-probability matrix; higher = the model is surer.
#: ``max_logp``: mean over frames of the best token's log-probability.
#: ``speech_max_logp``: the same over frames whose best token is not the blank (blank frames
#: in pauses are easy at every factor and dilute the score).
#: ``neg_entropy``: minus the mean entropy of the frame posteriors.
CRITERIA = ("max_logp", "speech_max_logp", "neg_entropy")


def confidence(logp: torch.Tensor, criterion: str = "max_logp", blank: int = 0) -> float:
    """How sure a CTC model is of one utterance's ``(T, vocab)`` log-probabilities.

    Args:
        logp: log-softmax outputs of one utterance.
        criterion: one of :data:`CRITERIA`.
        blank: the blank token's id (used by ``speech_max_logp``).

    Returns:
        The score (higher = surer); ``-inf`` for an empty utterance, and for
        ``speech_max_logp`` when every frame's best token is the blank.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown warp criterion {criterion!r}; expected one of {list(CRITERIA)}")
    if logp.shape[0] == 0:
        return float("-inf")
    logp = logp.float()
    best, ids = logp.max(dim=-1)
    if criterion == "max_logp":
        return float(best.mean())
    if criterion == "speech_max_logp":
        speech = ids != blank
        return float(best[speech].mean()) if bool(speech.any()) else float("-inf")
    return float((logp.exp() * logp).sum(-1).mean())


def choose(scores: np.ndarray, groups: Sequence | None = None, weights: np.ndarray | None = None) -> np.ndarray:
    """The factor index each utterance decodes at.

    Args:
        scores: ``(n_factors, n_utterances)`` confidences (:func:`confidence`).
        groups: one label per utterance (e.g. its speaker): every utterance of a group gets
            the factor with the best weighted mean score over the group. None: each
            utterance chooses alone.
        weights: ``(n_utterances,)`` weights of the group mean (e.g. frames); default 1.

    Returns:
        ``(n_utterances,)`` indices into the factor axis. Ties go to the earlier factor.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise ValueError(f"scores must be (n_factors, n_utterances) with n_factors >= 1, got {scores.shape}")
    if groups is None:
        return np.argmax(scores, axis=0)
    groups = np.asarray(groups)
    if len(groups) != scores.shape[1]:
        raise ValueError(f"{len(groups)} group labels for {scores.shape[1]} utterances")
    w = np.ones(scores.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    out = np.zeros(scores.shape[1], dtype=np.int64)
    for g in pd.unique(groups):
        members = groups == g
        s = scores[:, members]
        finite = np.isfinite(s)
        # an utterance with no score at some factor (all blank) must not decide the group
        mean = (np.where(finite, s, 0.0) * w[members]).sum(1) / np.maximum((finite * w[members]).sum(1), 1e-12)
        mean[~finite.any(1)] = -np.inf
        out[members] = int(np.argmax(mean))
    return out


def warp_factors(low: float, high: float, n: int) -> list[float]:
    """``n`` factors spread evenly over ``[low, high]`` with 1.0 (no warp) always among them.

    Raises:
        ValueError: ``low`` > 1 or ``high`` < 1 (no warp must stay a candidate), or ``n`` < 1.
    """
    if n < 1:
        raise ValueError(f"need at least one warp factor, got n={n}")
    if not 0 < low <= 1.0 <= high:
        raise ValueError(f"warp range [{low}, {high}] must be positive and contain 1.0")
    grid = set(np.round(np.linspace(low, high, n), 6).tolist()) if n > 1 else set()
    return sorted(grid | {1.0})


def greedy_text(logp: torch.Tensor, tokenizer) -> str:
    """Greedy CTC reading of one utterance's log-probabilities (repeats merged, blanks removed)."""
    return tokenizer.decode(logp.argmax(-1).tolist()).strip()


def warped_emissions(model: torch.nn.Module, df: pd.DataFrame, factors: Sequence[float],
                     batch_seconds: float = 120.0, progress: bool = False) -> list[list[torch.Tensor]]:
    """Log-probabilities of every row of ``df`` at every factor: ``out[k][i]`` for factor ``k``, row ``i``."""
    from s6damon.decode.beam import emissions

    return [emissions(model, df, batch_seconds, progress=progress, warp=float(f)) for f in factors]


def select(logps: Sequence[Sequence[torch.Tensor]], criterion: str = "max_logp", groups: Sequence | None = None,
           blank: int = 0) -> tuple[list[torch.Tensor], np.ndarray]:
    """Pick each utterance's emissions from :func:`warped_emissions`' output.

    Args:
        logps: ``logps[k][i]``: row ``i`` at factor ``k``.
        criterion: one of :data:`CRITERIA`.
        groups: per-row labels sharing one factor (see :func:`choose`); None: per utterance.
        blank: the blank token's id.

    Returns:
        The chosen ``(T_i, vocab)`` tensor of each row, and the chosen factor index of each row.
    """
    scores = np.array([[confidence(lp, criterion, blank) for lp in per_factor] for per_factor in logps])
    frames = np.array([lp.shape[0] for lp in logps[0]], dtype=float) if len(logps) else None
    idx = choose(scores, groups, frames)
    return [logps[int(k)][i] for i, k in enumerate(idx)], idx
