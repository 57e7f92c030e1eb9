"""The CTC guard: never drop so many tokens that the transcript no longer fits.

CTC can emit a target of ``L`` labels from ``T`` frames only if
``T >= L + (number of adjacent repeated labels)``, because each repeat needs a blank in
between ("hello" needs 6 frames: h e l _ l o). A keep-mask that leaves fewer tokens makes
the CTC loss infinite (or, with ``zero_infinity``, silently zero) for that utterance, so
every producer of keep-masks (alignment labels, detector, baselines, the dropping layer)
can restore tokens through :func:`enforce_min_keep` and report how often it had to.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def ctc_required_length(target: Sequence[int] | np.ndarray | torch.Tensor, ignore_index: int = -100,
                        blank_id: int | None = None) -> int:
    """Fewest frames CTC needs to emit ``target``: ``L + #(y[i] == y[i-1])``.

    Args:
        target: ``(L,)`` label ids; entries equal to ``ignore_index`` (or ``blank_id``,
            when given: Hugging Face pads with either) are skipped.
    """
    y = target.detach().cpu().numpy() if isinstance(target, torch.Tensor) else np.asarray(target)
    y = y[y != ignore_index]
    if blank_id is not None:
        y = y[y != blank_id]
    if y.size == 0:
        return 0
    return int(y.size + np.count_nonzero(y[1:] == y[:-1]))


def ctc_required_lengths(labels: torch.Tensor, ignore_index: int = -100, blank_id: int | None = None) -> torch.Tensor:
    """Batched :func:`ctc_required_length`.

    Args:
        labels: ``(B, L)`` padded label ids (Hugging Face convention: ``-100`` on padding).

    Returns:
        ``(B,)`` long tensor on ``labels``' device.
    """
    valid = labels != ignore_index
    if blank_id is not None:
        valid &= labels != blank_id
    n = valid.sum(-1)
    # labels are left-aligned, so "same as the previous valid label" is a shifted compare
    rep = (labels[:, 1:] == labels[:, :-1]) & valid[:, 1:] & valid[:, :-1]
    return (n + rep.sum(-1)).long()


def restore_row(keep: np.ndarray, need: int, scores: np.ndarray | None = None) -> np.ndarray:
    """Return a copy of one utterance's keep-mask with at least ``need`` tokens kept.

    Dropped tokens are restored most-salient first when ``scores`` (e.g. detector
    probabilities) are given: those are the drops the detector was least sure about. Without
    scores the restored tokens are spread evenly over the dropped ones (uniform fill), so
    that no stretch of the utterance stays empty.

    Args:
        keep: ``(T,)`` bool, True = kept; ``T`` counts valid (unpadded) tokens only.
        need: minimum kept count; capped at ``T``.
        scores: ``(T,)`` higher = more worth keeping.
    """
    keep = np.asarray(keep, dtype=bool).copy()
    missing = min(int(need), keep.size) - int(keep.sum())
    if missing <= 0:
        return keep
    dropped = np.flatnonzero(~keep)
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64)[dropped]
        # stable sort on -score: ties restored in time order, so results are deterministic
        pick = dropped[np.argsort(-s, kind="stable")[:missing]]
    else:
        pick = dropped[np.floor((np.arange(missing) + 0.5) * dropped.size / missing).astype(int)]
    keep[pick] = True
    return keep


def enforce_min_keep(keep: torch.Tensor, min_keep: torch.Tensor | int, lengths: torch.Tensor | None = None,
                     scores: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Restore tokens in every utterance that keeps fewer than ``min_keep``.

    Args:
        keep: ``(B, T)`` bool keep-mask; positions at or after ``lengths`` are ignored and
            come back False.
        min_keep: ``(B,)`` or scalar minimum kept count per utterance (capped at its length).
        lengths: ``(B,)`` valid token counts; all ``T`` when None.
        scores: ``(B, T)`` restoration priority (see :func:`restore_row`); uniform fill when None.

    Returns:
        ``(keep, fell_back)``: the ``(B, T)`` repaired mask and a ``(B,)`` bool tensor that
        is True for utterances whose mask had to be changed.
    """
    B, T = keep.shape
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long, device=keep.device)
    valid = torch.arange(T, device=keep.device)[None, :] < lengths[:, None]
    keep = keep.bool() & valid
    need = torch.as_tensor(min_keep, device=keep.device).long().expand(B)
    need = torch.minimum(need, lengths.long())
    fell_back = keep.sum(-1) < need
    if bool(fell_back.any()):
        keep = keep.clone()
        for b in torch.nonzero(fell_back).flatten().tolist():
            n = int(lengths[b])
            sc = None if scores is None else scores[b, :n].detach().float().cpu().numpy()
            row = restore_row(keep[b, :n].cpu().numpy(), int(need[b]), sc)
            keep[b, :n] = torch.from_numpy(row).to(keep.device)
    return keep, fell_back
