"""Fit the salience detector on one label source and calibrate its thresholds on dev."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from s6damon.config.salad import DetectorParams
from s6damon.salad.corpus import pad_examples
from s6damon.salad.detector import (
    SaliencyDetector,
    choose_threshold,
    detector_metrics,
    predict_proba,
    train_detector,
)

TOKENS_PER_SECOND = 50  # 20 ms tokens


def _batches(n_tokens: Sequence[int], tokens_per_batch: int, rng: np.random.Generator) -> list[list[int]]:
    order = rng.permutation(len(n_tokens))
    out, cur, size = [], [], 0
    for i in order:
        cur.append(int(i))
        size += int(n_tokens[i])
        if size >= tokens_per_batch:
            out.append(cur)
            cur, size = [], 0
    if cur:
        out.append(cur)
    return out


def dev_probabilities(detector: SaliencyDetector, feats: list[torch.Tensor]) -> list[np.ndarray]:
    """P(salient) per token of each utterance (one at a time: no padding effects)."""
    detector.eval()
    return [predict_proba(detector, f[None])[0].numpy() for f in feats]


def fit_detector(train_feats: list[torch.Tensor], train_labels: list[np.ndarray], dev_feats: list[torch.Tensor],
                 dev_labels: list[np.ndarray], p: DetectorParams, ratios: Sequence[float], report_ratio: float,
                 seed: int) -> dict:
    """Train a detector, then choose on dev the threshold of every drop ratio.

    Args:
        train_feats, train_labels: ``(T, C)`` conv features and ``(T,)`` bool labels per utterance.
        dev_feats, dev_labels: the same for the dev split (thresholds and metrics).
        p: detector shape and training recipe.
        ratios: drop ratios to calibrate thresholds for.
        report_ratio: the ratio whose dev precision/recall/F1 are reported.
        seed: initialisation and batch order.

    Returns:
        ``{"detector", "thresholds" (ratio -> threshold), "metrics", "history"}``; metrics are
        dev precision/recall/F1 of salient tokens at ``report_ratio``, the achieved drop
        ratio, and the label source's own redundant share on dev.
    """
    if not train_feats or not dev_feats:
        raise ValueError("the detector needs train and dev utterances")
    torch.manual_seed(seed)
    det = SaliencyDetector(in_dim=int(train_feats[0].shape[1]), hidden=p.hidden, kernel_size=p.kernel_size,
                           num_layers=p.num_layers, dropout=p.dropout, drop_rule=p.drop_rule)
    flat = np.concatenate([np.asarray(y, dtype=bool) for y in train_labels])
    pos = max(int(flat.sum()), 1)
    pos_weight = (flat.size - pos) / pos if p.balance else None
    sizes = [len(f) for f in train_feats]

    def epoch_batches(epoch: int):
        for rows in _batches(sizes, int(p.batch_seconds * TOKENS_PER_SECOND), np.random.default_rng([seed, epoch])):
            yield pad_examples([train_feats[i] for i in rows], [train_labels[i] for i in rows])

    history = train_detector(det, epoch_batches, epochs=p.epochs, lr=p.learning_rate, pos_weight=pos_weight)
    probs = dev_probabilities(det, dev_feats)
    thresholds = {float(r): choose_threshold(probs, float(r), rule=det.drop_rule)
                  for r in sorted({*ratios, report_ratio})}
    thr = thresholds[float(report_ratio)]
    keep = [det.keep_mask(torch.from_numpy(pr)[None], torch.tensor([len(pr)]), thr)[0].numpy() for pr in probs]
    m = detector_metrics(keep, [np.asarray(y, dtype=bool) for y in dev_labels])
    dev_flat = np.concatenate([np.asarray(y, dtype=bool) for y in dev_labels])
    metrics = {"precision": m["precision"], "recall": m["recall"], "f1": m["f1"], "drop_ratio": m["drop_ratio"],
               "target_drop_ratio": float(report_ratio), "threshold": thr,
               "label_drop_ratio": float(1.0 - dev_flat.mean()), "dev_tokens": int(dev_flat.size),
               "final_train_loss": history[-1]["loss"]}
    return {"detector": det, "thresholds": thresholds, "metrics": metrics, "history": history}
