"""Frame-level knowledge distillation from a frozen CTC teacher (the uncompressed model).

Every compressed variant — token-dropped (SALAD and its baselines) or masked (SAFARI and
its baselines) — starts from, and is compared with, the finetuned dense model. With a
distillation weight, each is also trained to reproduce that model's per-frame CTC
posteriors, a dense signal beside CTC's alignment-free one, which matters on the short
adaptation budgets these comparisons use. Every method of a comparison gets the same loss.

Where tokens were dropped the student has fewer frames than the teacher. Each kept token
stands for the frames from it up to the next kept one (frames before the first kept token
belong to the first); its target is the teacher's distribution at the frame of that
segment where the teacher is least sure of blank, so a label spike anywhere in the segment
moves onto the kept token rather than being lost. With nothing dropped this is ordinary
frame-by-frame distillation.

Layer-to-layer distillation (:func:`hidden_distill_loss`) pulls the student's transformer
input and each layer's output to the teacher's, as DistilHuBERT (Chang et al., 2022) and
DPHuBERT (Peng et al., 2023) train pruned SSL models: a structured mask disturbs every layer's
output, not only the last, and the per-layer targets say where. It needs student and teacher
on one frame grid (masked models, not token-dropped ones) and equal hidden widths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from s6damon.salad.backbone import length_mask
from s6damon.salad.dropping import frame_owners


def segment_frames(teacher_logp: torch.Tensor, keep: torch.Tensor, frame_lengths: torch.Tensor, width: int,
                   blank_id: int) -> torch.Tensor:
    """For each kept token, the teacher frame whose distribution is its target.

    Args:
        teacher_logp: ``(B, T, V)`` teacher log-probabilities on the full frame grid.
        keep: ``(B, T)`` bool, the tokens the student kept (False on padding).
        frame_lengths: ``(B,)`` valid frames per utterance.
        width: ``T'``, the student's (compacted) sequence width.
        blank_id: the CTC blank.

    Returns:
        ``(B, T')`` long frame indices (arbitrary but in range on the student's padding).
    """
    B, T, _ = teacher_logp.shape
    valid = length_mask(frame_lengths.to(keep.device), T)
    keep = keep[:, :T] & valid
    seg = frame_owners(keep).clamp(max=max(0, width - 1))  # (B, T) kept token each frame belongs to
    score = (-teacher_logp[..., blank_id].float()).masked_fill(~valid, float("-inf"))
    best = score.new_full((B, width), float("-inf")).scatter_reduce(1, seg, score, "amax", include_self=True)
    frames = torch.arange(T, device=keep.device).expand(B, T)
    cand = torch.where(valid & (score == best.gather(1, seg)), frames, torch.full_like(frames, T))
    chosen = torch.full((B, width), T, dtype=torch.long, device=keep.device)
    chosen = chosen.scatter_reduce(1, seg, cand, "amin", include_self=True)
    return chosen.clamp(max=T - 1)


def distill_loss(student_logits: torch.Tensor, student_mask: torch.Tensor, teacher_logits: torch.Tensor,
                 frames: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
    """``KL(teacher || student)`` of the temperature-softened per-frame distributions,
    times ``temperature**2`` (so its gradient scale does not depend on the temperature),
    averaged over the student's real frames.

    Args:
        student_logits: ``(B, T', V)``.
        student_mask: ``(B, T')`` bool, real (not padding) student frames.
        teacher_logits: ``(B, T, V)`` on the full frame grid.
        frames: ``(B, T')`` teacher frame of each student frame (None: the same index, T' <= T).
        temperature: softening of both distributions.
    """
    t = float(temperature)
    width = student_logits.shape[1]
    teacher = teacher_logits.float() / t
    if frames is None:
        teacher = teacher[:, :width]
    else:
        teacher = teacher.gather(1, frames[..., None].expand(-1, -1, teacher.shape[-1]))
    target = F.log_softmax(teacher, -1)
    student = F.log_softmax(student_logits.float() / t, -1)
    kl = (target.exp() * (target - student)).sum(-1)
    mask = student_mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp(min=1.0) * t * t


def hidden_distill_loss(student_hidden: Sequence[torch.Tensor], teacher_hidden: Sequence[torch.Tensor],
                        mask: torch.Tensor) -> torch.Tensor:
    """Mean over layers of ``L1 / D - log sigmoid(cos)`` between student and teacher hidden
    states, averaged over the real frames (DistilHuBERT's loss).

    Args:
        student_hidden: the student's ``(B, T, D)`` hidden states (transformer input, then
            every layer's output).
        teacher_hidden: the teacher's, as many and of the same shapes.
        mask: ``(B, T)`` bool, real (not padding) frames.
    """
    if len(student_hidden) != len(teacher_hidden):
        raise ValueError(f"hidden distillation: the student has {len(student_hidden)} hidden states, the teacher "
                         f"{len(teacher_hidden)} (the two models need the same depth)")
    weight = mask.float()
    frames = weight.sum().clamp(min=1.0)
    total = weight.new_zeros(())
    for s, t in zip(student_hidden, teacher_hidden):
        s, t = s.float(), t.float()
        per_frame = (s - t).abs().mean(-1) - F.logsigmoid(F.cosine_similarity(s, t, dim=-1))
        total = total + (per_frame * weight).sum() / frames
    return total / len(student_hidden)
