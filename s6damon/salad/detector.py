"""The SALAD saliency detector: P(salient) per token from the conv feature encoder's output.

The detector sees only ``extract_features`` (``(B, T, conv_dim[-1])``), which exists before
the transformer runs, so dropping can happen between the feature projection and the
encoder. It is deliberately tiny (a LayerNorm, a couple of 1-D convs, a linear head): its
FLOPs must be negligible next to the transformer it shortens (:func:`detector_flops` vs
:func:`s6damon.pruning.flops.flops_from_sizes`, which takes the tokens left after dropping).

Usage::

    det = SaliencyDetector(in_dim=model.config.conv_dim[-1])
    history = train_detector(det, batches, epochs=5)          # batches of (feats, labels, lengths)
    thr = choose_threshold(dev_probs, target_drop_ratio=0.5, rule=det.drop_rule)  # list of (T,) arrays
    keep = keep_from_probs(predict_proba(det, feats, lengths), lengths, thr, rule=det.drop_rule)

Drop rules (:data:`DROP_RULES`), how the threshold turns probabilities into a keep-mask:

- ``threshold``: every token with P(salient) < threshold is dropped;
- ``alternate``: tokens under the threshold are drop *candidates*, and in every run of
  adjacent candidates the 1st, 3rd, 5th... are dropped — never two neighbours. A character
  CTC model needs tokens wherever letters are spelled; emptying whole stretches (every
  pause, the tail of every long phone) cost the plain rule 0.5–3.5 WER points against this
  one in five paired pilots (docs/experiments/salad.md).

The rule is part of the detector's config, so its thresholds (chosen under that rule) and
every consumer (training, evaluation, the exported graph) agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from s6damon.salad.backbone import length_mask
from s6damon.salad.labels import agreement

#: how P(salient) and a threshold give the keep-mask (module docstring)
DROP_RULES = ("threshold", "alternate")


class SaliencyDetector(nn.Module):
    """LayerNorm -> ``num_layers`` x (Conv1d "same" + GELU + dropout) -> Linear -> logit.

    Padded positions are zeroed before every conv, so a padded batch gives exactly the
    logits of each utterance run alone (the convs' own zero padding sees the same zeros).

    Args:
        in_dim: feature size (``config.conv_dim[-1]``).
        hidden: conv channels.
        kernel_size: odd conv width in tokens (5 = +-40 ms of context per layer).
        num_layers: number of conv layers (>= 1).
        dropout: dropout after each conv (training only).
        drop_rule: how a threshold on its probabilities gives the keep-mask (:data:`DROP_RULES`).
    """

    def __init__(self, in_dim: int, hidden: int = 64, kernel_size: int = 5, num_layers: int = 2,
                 dropout: float = 0.1, drop_rule: str = "threshold") -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same-length convs), got {kernel_size}")
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        if drop_rule not in DROP_RULES:
            raise ValueError(f"drop_rule must be one of {list(DROP_RULES)}, got {drop_rule!r}")
        self.drop_rule = drop_rule
        self.config = {"in_dim": in_dim, "hidden": hidden, "kernel_size": kernel_size,
                       "num_layers": num_layers, "dropout": dropout, "drop_rule": drop_rule}
        self.norm = nn.LayerNorm(in_dim)
        self.convs = nn.ModuleList(
            nn.Conv1d(in_dim if i == 0 else hidden, hidden, kernel_size, padding=kernel_size // 2)
            for i in range(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 1)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Salience logits.

        Args:
            features: ``(B, T, C)`` conv features.
            lengths: ``(B,)`` valid token counts; all ``T`` when None.

        Returns:
            ``(B, T)`` logits (padded positions are meaningless; mask them).
        """
        B, T, _ = features.shape
        mask = (torch.ones(B, T, dtype=torch.bool, device=features.device) if lengths is None
                else length_mask(lengths.to(features.device), T))
        m = mask[:, None, :].to(features.dtype)
        x = self.norm(features).transpose(1, 2)  # (B, C, T)
        for conv in self.convs:
            x = self.dropout(F.gelu(conv(x * m)))
        return self.head((x * m).transpose(1, 2)).squeeze(-1)

    def keep_mask(self, probs: torch.Tensor, lengths: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
        """``(B, T)`` keep-mask from this detector's probabilities under its drop rule."""
        return keep_from_probs(probs, lengths, threshold, rule=self.drop_rule)


def detector_loss(logits: torch.Tensor, labels: torch.Tensor, lengths: torch.Tensor | None = None,
                  pos_weight: float | None = None) -> torch.Tensor:
    """Binary cross-entropy over valid tokens (mean per token).

    Args:
        logits: ``(B, T)`` detector logits.
        labels: ``(B, T)`` 1 = salient, 0 = redundant (any value on padding).
        lengths: ``(B,)`` valid token counts.
        pos_weight: weight of the salient class (e.g. ``redundant/salient`` ratio to balance).
    """
    T = logits.shape[1]
    mask = (torch.ones_like(logits, dtype=torch.bool) if lengths is None
            else length_mask(lengths.to(logits.device), T))
    pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none", pos_weight=pw)
    return (loss * mask).sum() / mask.sum().clamp(min=1)


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def train_detector(detector: SaliencyDetector, batches: Iterable[Batch] | Callable[[int], Iterable[Batch]],
                   epochs: int = 5, lr: float = 1e-3, weight_decay: float = 0.0, pos_weight: float | None = None,
                   grad_clip: float | None = 1.0, device: str | torch.device = "cpu",
                   on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Train the detector with AdamW on BCE.

    Args:
        detector: the model (trained in place, left in eval mode).
        batches: a re-iterable of ``(features (B,T,C), labels (B,T), lengths (B,))``, or a
            function ``epoch -> iterable`` (for per-epoch shuffling).
        epochs: passes over ``batches``.
        lr, weight_decay: AdamW settings.
        pos_weight: see :func:`detector_loss`.
        grad_clip: max gradient norm (None = no clipping).
        device: where to train.
        on_epoch: called with ``(epoch, record)`` after each epoch (logging, checkpoints).

    Returns:
        One ``{"epoch", "loss", "steps"}`` record per epoch (token-weighted mean loss).
    """
    detector.to(device).train()
    opt = torch.optim.AdamW(detector.parameters(), lr=lr, weight_decay=weight_decay)
    history = []
    for epoch in range(epochs):
        total, tokens, steps = 0.0, 0, 0
        for feats, labels, lengths in (batches(epoch) if callable(batches) else batches):
            feats, labels, lengths = feats.to(device), labels.to(device), lengths.to(device)
            loss = detector_loss(detector(feats, lengths), labels, lengths, pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(detector.parameters(), grad_clip)
            opt.step()
            n = int(lengths.sum())
            total += float(loss.detach()) * n
            tokens += n
            steps += 1
        rec = {"epoch": epoch, "loss": total / max(tokens, 1), "steps": steps}
        history.append(rec)
        if on_epoch is not None:
            on_epoch(epoch, rec)
    detector.eval()
    return history


@torch.no_grad()
def predict_proba(detector: SaliencyDetector, features: torch.Tensor,
                  lengths: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, T)`` P(salient), 0 on padding (detector run in its current mode)."""
    p = torch.sigmoid(detector(features, lengths))
    if lengths is not None:
        p = p * length_mask(lengths.to(p.device), p.shape[1])
    return p


def _flat(probs: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> np.ndarray:
    if isinstance(probs, torch.Tensor):
        return probs.detach().cpu().double().numpy().reshape(-1)
    if isinstance(probs, np.ndarray) and probs.dtype != object:
        return probs.astype(np.float64).reshape(-1)
    parts = [np.asarray(p.detach().cpu() if isinstance(p, torch.Tensor) else p, dtype=np.float64).reshape(-1)
             for p in probs]
    return np.concatenate(parts) if parts else np.zeros(0)


def choose_threshold(probs: np.ndarray | torch.Tensor | Sequence[np.ndarray], target_drop_ratio: float,
                     rule: str = "threshold") -> float:
    """Threshold on P(salient) that drops ``target_drop_ratio`` of the given (dev) tokens.

    Rule ``threshold``: a token is dropped when ``p < threshold``; the threshold sits
    halfway between the ``k``-th and ``k+1``-th smallest probability (``k = round(ratio *
    N)``), so exactly ``k`` tokens fall below it unless probabilities tie there.

    Rule ``alternate``: the dropped share is a non-decreasing step function of the
    threshold (a new candidate either starts a run, adding one drop, or joins/extends runs,
    never lowering ``ceil(run / 2)`` in total), so a binary search over the distinct
    probabilities finds the step closest to the target exactly; the threshold sits halfway
    into that step. Alternation caps the share near one half.

    Args:
        probs: P(salient) of valid dev tokens only: one array per utterance (a flat array is
            one utterance, a 2-D one a row per utterance; ``alternate`` needs the boundaries).
        target_drop_ratio: wanted share of dropped tokens, in [0, 1].
        rule: one of :data:`DROP_RULES`.
    """
    if not 0.0 <= target_drop_ratio <= 1.0:
        raise ValueError(f"target_drop_ratio must be in [0, 1], got {target_drop_ratio}")
    if rule not in DROP_RULES:
        raise ValueError(f"rule must be one of {list(DROP_RULES)}, got {rule!r}")
    p = np.sort(_flat(probs))
    if p.size == 0:
        return 0.5
    if rule == "alternate":
        return _alternate_threshold(probs, np.unique(p), target_drop_ratio)
    k = int(round(target_drop_ratio * p.size))
    if k <= 0:
        return float(p[0])
    if k >= p.size:
        return float(np.nextafter(p[-1], np.inf))
    return float(0.5 * (p[k - 1] + p[k])) if p[k] > p[k - 1] else float(p[k])


def _alternate_threshold(probs: np.ndarray | torch.Tensor | Sequence[np.ndarray], levels: np.ndarray,
                         target: float) -> float:
    """:func:`choose_threshold` for the ``alternate`` rule (``levels``: sorted distinct probabilities)."""
    if isinstance(probs, torch.Tensor) or (isinstance(probs, np.ndarray) and probs.dtype != object):
        rows = [_flat(r) for r in probs] if probs.ndim == 2 else [_flat(probs)]  # (B, T): one row each
    else:
        rows = [_flat([r]) for r in probs]
    width = max(len(r) for r in rows)
    P = torch.ones(len(rows), width, dtype=torch.float64)  # padding is never a candidate
    for i, r in enumerate(rows):
        P[i, :len(r)] = torch.from_numpy(r)
    lengths = torch.tensor([len(r) for r in rows])
    total = int(lengths.sum())

    def dropped(thr: float) -> float:
        return float((~alternate_keep(P, lengths, thr) & length_mask(lengths, width)).sum()) / total

    # thresholds just above levels[i] make levels[:i+1] candidates; share(i) is non-decreasing
    lo, hi = 0, len(levels) - 1
    while lo < hi:  # first i with share(i) >= target
        mid = (lo + hi) // 2
        if dropped(float(np.nextafter(levels[mid], np.inf))) >= target:
            hi = mid
        else:
            lo = mid + 1
    best = lo
    if lo > 0 and abs(dropped(float(np.nextafter(levels[lo - 1], np.inf))) - target) <= \
            abs(dropped(float(np.nextafter(levels[lo], np.inf))) - target):
        best = lo - 1
    if best == 0 and target < 0.5 * dropped(float(np.nextafter(levels[0], np.inf))):
        return float(levels[0])  # nothing dropped is closer than the first step
    upper = levels[best + 1] if best + 1 < len(levels) else np.nextafter(levels[best], np.inf)
    return float(0.5 * (levels[best] + upper))


def alternate_keep(probs: torch.Tensor, lengths: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """The ``alternate`` rule: tokens with P(salient) < ``threshold`` are candidates, and in
    every run of adjacent candidates the 1st, 3rd, 5th... are dropped (never two neighbours).

    No loop over tokens — each run's first index is found with a cumulative sum, a scatter
    and a gather — so the rule lives in the exported graph as it is.

    Args:
        probs: ``(B, T)`` P(salient); lengths: ``(B,)`` valid tokens.

    Returns:
        ``(B, T)`` bool keep-mask (False on padding).
    """
    B, T = probs.shape
    idx = torch.arange(T, device=probs.device).expand(B, T)
    valid = idx < lengths.to(probs.device)[:, None]
    cand = (probs < threshold) & valid
    prev = torch.cat([torch.zeros_like(cand[:, :1]), cand[:, :-1]], dim=1)
    start = cand & ~prev
    run_id = torch.cumsum(start.long(), dim=1)  # k at and after the k-th run's first token
    zeros = torch.zeros_like(idx)
    # slot k holds the k-th run's first index (slot 0 collects the zeros of non-start tokens)
    starts = torch.zeros(B, T + 1, dtype=idx.dtype, device=probs.device).scatter(
        1, torch.where(start, run_id, zeros), torch.where(start, idx, zeros))
    drop = cand & ((idx - torch.gather(starts, 1, run_id)) % 2 == 0)
    return valid & ~drop


def keep_from_probs(probs: torch.Tensor, lengths: torch.Tensor | None, threshold: float | torch.Tensor,
                    rule: str = "threshold") -> torch.Tensor:
    """``(B, T)`` keep-mask on valid tokens (False on padding) under ``rule`` (:data:`DROP_RULES`):
    ``p >= threshold``, or :func:`alternate_keep`."""
    if rule == "alternate":
        if lengths is None:
            lengths = torch.full((probs.shape[0],), probs.shape[1], dtype=torch.long, device=probs.device)
        return alternate_keep(probs, lengths, threshold)
    if rule != "threshold":
        raise ValueError(f"rule must be one of {list(DROP_RULES)}, got {rule!r}")
    keep = probs >= threshold
    if lengths is not None:
        keep = keep & length_mask(lengths.to(probs.device), probs.shape[1])  # not in place: ONNX export
    return keep


def detector_flops(detector: nn.Module, num_tokens: int) -> int:
    """FLOPs (2 x multiply-accumulates) of the detector's convs and linears on ``num_tokens``.

    Norms and activations are ignored (a few FLOPs per element, well below the matmuls).
    """
    flops = 0
    for m in detector.modules():
        if isinstance(m, nn.Conv1d):
            flops += 2 * num_tokens * m.out_channels * (m.in_channels // m.groups) * m.kernel_size[0]
        elif isinstance(m, nn.Linear):
            flops += 2 * num_tokens * m.in_features * m.out_features
    return int(flops)


def detector_metrics(keep: Sequence[np.ndarray], labels: Sequence[np.ndarray], tolerance: int = 0) -> dict[str, float]:
    """Precision/recall/F1 of predicted salient tokens against labels, and the drop ratio.

    Args:
        keep: predicted keep-masks, one ``(T,)`` bool array per utterance.
        labels: reference labels, same shapes.
    """
    m = agreement(list(keep), list(labels), tolerance=tolerance)
    m["drop_ratio"] = 1.0 - m["keep_ratio_a"] if m["tokens"] else math.nan
    return m


def save_detector(dest: str | Path, detector: SaliencyDetector, thresholds: dict[float, float],
                  meta: dict | None = None) -> None:
    """Save a detector with its per-drop-ratio thresholds (atomically, one ``.pt`` file)."""
    from s6damon import io

    blob = {"format": "s6damon-salad-detector/1", "config": detector.config,
            "state_dict": detector.state_dict(), "thresholds": {float(k): float(v) for k, v in thresholds.items()},
            "meta": meta or {}}
    with io.atomic_path(dest) as tmp:
        torch.save(blob, tmp)


def load_detector(path: str | Path) -> tuple[SaliencyDetector, dict[float, float], dict]:
    """``(detector in eval mode, thresholds by drop ratio, meta)`` from :func:`save_detector`.

    Raises:
        CheckpointError: the file is missing, unreadable or not a saved detector.
    """
    from s6damon.model.factory import CheckpointError

    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != "s6damon-salad-detector/1":
            raise ValueError("not a SALAD detector file")
        det = SaliencyDetector(**blob["config"])
        det.load_state_dict(blob["state_dict"])
    except Exception as err:  # torch raises many kinds on truncated/corrupt files
        raise CheckpointError(f"{path}: cannot load the SALAD detector ({err})") from err
    return det.eval(), {float(k): float(v) for k, v in blob["thresholds"].items()}, blob.get("meta", {})
