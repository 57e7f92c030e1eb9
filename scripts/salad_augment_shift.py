"""How far training-time waveform augmentation moves SALAD's detector decisions.

The SALAD adaptation runs (``salad.finetune``) may augment their training audio
(``salad.finetune.augment``, the finetune stage's random equaliser); the detector then
chooses the kept tokens from the augmented audio's conv features, while test audio is never
augmented. This script measures, on a sample of training utterances, the share of tokens the
detector drops on the clean and on the augmented audio and how often it makes the same
keep/drop choice for a token on both (docs/experiments/salad.md, "The equaliser in the
adaptation"). The augmentation is applied to every sampled utterance (its probabilities are
ignored), so the figures are for an augmented utterance, not for an average batch.

Usage (after ``dvc repro salad_train``)::

    .venv/bin/python scripts/salad_augment_shift.py --source alignment --ratio 0.3 --utterances 150
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.salad_labels import FINETUNED  # noqa: E402
from flows.salad_train import detector_path  # noqa: E402
from s6damon import io  # noqa: E402
from s6damon.config import load_params  # noqa: E402
from s6damon.config.model import AugmentParams  # noqa: E402
from s6damon.model.factory import load_ctc_model  # noqa: E402
from s6damon.salad.backbone import extract_features  # noqa: E402
from s6damon.salad.detector import SaliencyDetector, load_detector, predict_proba  # noqa: E402
from s6damon.train.augment import WaveAugmenter  # noqa: E402
from s6damon.train.data import load_audio, normalise_wave  # noqa: E402


@torch.no_grad()
def detector_keep(model: torch.nn.Module, detector: SaliencyDetector, threshold: float,
                  wave: np.ndarray) -> np.ndarray:
    """``(T,)`` keep-mask the detector gives one utterance: the dropping model's detector path
    (conv features, detector, its drop rule) in float32, without the dropping model's guard."""
    x = torch.from_numpy(normalise_wave(wave)).float()[None]
    feats, lengths = extract_features(model, x)
    probs = predict_proba(detector, feats, lengths).float()
    return detector.keep_mask(probs, lengths, threshold)[0, : int(lengths[0])].numpy()


def augment_shift(model: torch.nn.Module, detector: SaliencyDetector, threshold: float,
                  waves: Sequence[np.ndarray], augment: AugmentParams, seed: int = 0) -> dict[str, float]:
    """Detector decisions on clean against augmented audio.

    Args:
        model: the CTC model whose conv encoder feeds the detector.
        detector, threshold: the SALAD detector (its drop rule included) and its threshold.
        waves: clean 16 kHz utterances.
        augment: the augmentation; each part with a non-zero probability is applied to every
            utterance.
        seed: seed of the augmentation's draws.

    Returns:
        ``drop_clean`` and ``drop_augmented`` (share of tokens dropped, pooled over the
        utterances), ``agreement`` (share of tokens with the same keep/drop choice) and
        ``min_agreement`` (the lowest per-utterance agreement).
    """
    always = replace(augment, eq_prob=float(augment.eq_prob > 0), noise_prob=float(augment.noise_prob > 0))
    augmenter, rng = WaveAugmenter(always), np.random.default_rng(seed)
    clean, augmented, per_utt = [], [], []
    for wave in waves:
        a = detector_keep(model, detector, threshold, wave)
        b = detector_keep(model, detector, threshold, augmenter(wave, rng))
        clean.append(a)
        augmented.append(b)
        per_utt.append(float((a == b).mean()))
    a, b = np.concatenate(clean), np.concatenate(augmented)
    return {"utterances": len(per_utt), "tokens": int(a.size), "drop_clean": float(1 - a.mean()),
            "drop_augmented": float(1 - b.mean()), "agreement": float((a == b).mean()),
            "min_agreement": min(per_utt)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--source", default="alignment", help="label source of the detector: alignment or ctc")
    ap.add_argument("--ratio", type=float, default=0.3, help="drop ratio whose threshold is used")
    ap.add_argument("--utterances", type=int, default=150, help="training utterances sampled")
    args = ap.parse_args()

    params = load_params(args.params)
    torch.set_num_threads(params.threads)
    manifest = io.read_parquet(Path(params.prepare.out_dir) / "manifest.parquet")
    train = manifest[manifest.split == "train"]
    rows = train.sample(min(args.utterances, len(train)), random_state=params.seed)
    model = load_ctc_model(FINETUNED)[0].eval()
    detector, thresholds, _ = load_detector(detector_path(args.source))
    if args.ratio not in thresholds:
        raise SystemExit(f"the {args.source} detector has no threshold for {args.ratio}: {sorted(thresholds)}")
    result = augment_shift(model, detector, thresholds[args.ratio],
                           [load_audio(p) for p in rows.path], params.salad.finetune.augment, seed=params.seed)
    print(json.dumps({"source": args.source, "ratio": args.ratio, "rule": detector.drop_rule, **result}, indent=1))


if __name__ == "__main__":
    main()
