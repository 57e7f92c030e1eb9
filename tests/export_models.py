"""Tiny random model folders for the export tests: a CTC folder, a mask.json, a SALAD folder."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pruning_models import SMALL, VARIANTS

from s6damon.model.factory import save_model
from s6damon.model.vocab import build_tokenizer
from s6damon.pruning import StructuredMask
from s6damon.salad.backbone import extract_features
from s6damon.salad.detector import SaliencyDetector, choose_threshold, predict_proba, save_detector


def tiny_ctc(variant: str = "w2v2-layer-stable", seed: int = 0):
    """``(model, tokenizer)``: a tiny model over our character vocabulary, non-zero biases."""
    tok = build_tokenizer()
    cfg_cls, model_cls, extra = VARIANTS[variant]
    torch.manual_seed(seed)
    model = model_cls(cfg_cls(**{**SMALL, "vocab_size": len(tok), "pad_token_id": tok.pad_token_id}, **extra)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model, tok


def unit_mask(model, which: str) -> StructuredMask:
    """A mask pruning one unit kind (``heads``, ``neurons``, ``conv_channels``, ``layer``) or ``all``."""
    mask = StructuredMask.full(model)
    if which in ("heads", "all"):
        mask.heads[0][1] = False
        mask.heads[1][[0, 3]] = False
        mask.heads[2][:] = False
    if which in ("neurons", "all"):
        mask.neurons[0][::3] = False
        mask.neurons[2][5:60] = False
    if which in ("conv_channels", "all"):
        mask.conv_channels[0][::2] = False
        mask.conv_channels[1][:5] = False
    if which in ("layer", "all"):
        mask.layers[1] = False
    return mask


def audio(n: int, seed: int = 0) -> torch.Tensor:
    """``(1, n)`` normalised noise."""
    x = torch.randn(1, n, generator=torch.Generator().manual_seed(seed))
    return (x - x.mean()) / x.std()


def tiny_detector(model, drop_ratio: float = 0.3, seed: int = 0,
                  drop_rule: str = "threshold") -> tuple[SaliencyDetector, float]:
    """A random detector and the threshold that drops ``drop_ratio`` of some noise's tokens."""
    torch.manual_seed(seed)
    det = SaliencyDetector(model.config.conv_dim[-1], hidden=8, kernel_size=3, num_layers=1,
                           drop_rule=drop_rule).eval()
    with torch.no_grad():
        feats, lengths = extract_features(model, torch.cat([audio(16000, s) for s in range(3)]))
    return det, choose_threshold(predict_proba(det, feats, lengths), drop_ratio, rule=drop_rule)


def write_folders(root: Path, variant: str = "w2v2-layer-stable", which: str = "all", drop_rule: str = "alternate",
                  merge: bool = True) -> dict[str, Path]:
    """A SAFARI-like folder (weights + mask.json) and a SALAD folder (detector + salad.json)."""
    model, tok = tiny_ctc(variant)
    safari = save_model(model, tok, root / "safari")
    (safari / "mask.json").write_text(json.dumps(unit_mask(model, which).to_dict()))
    det, thr = tiny_detector(model, drop_rule=drop_rule)
    salad = save_model(model, tok, root / "salad")
    save_detector(salad / "salad_detector.pt", det, {0.3: thr})
    (salad / "salad.json").write_text(json.dumps({"method": "salad_alignment", "drop_ratio": 0.3, "threshold": thr,
                                                  "merge": merge}))
    return {"safari": safari, "salad": salad}
