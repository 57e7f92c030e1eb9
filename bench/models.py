"""The models the benchmark compares, at the tiny and the wav2vec2-base scale.

Weights are random (speed does not depend on them); what matters is the shape:

- ``dense``: the architecture as is;
- ``safari50`` / ``safari70``: heads and FFN neurons pruned so that 50 % / 70 % of the
  encoder FLOPs (10 s input) are gone — with the same share in every layer (lowest L1
  first), or with the per-layer distribution of a SAFARI mask when one is given
  (:func:`distribution_mask`);
- ``safari50conv``: the same 50 % target, conv feature-encoder channels prunable too;
- ``salad30``: a (random) detector whose threshold drops 30 % of the benchmark input's tokens;
- ``a+b``: both; ``-int8``: dynamic int8 linears (:mod:`s6damon.export.quantize`).

Each model is the :class:`~s6damon.export.graph.DropGraph` of the physically pruned model,
exactly what the export stage ships.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

from s6damon.export.graph import DropGraph
from s6damon.pruning import StructuredMask, mask_for_flops_target, materialise, model_sizes, unit_importance
from s6damon.pruning.flops import flops_from_sizes
from s6damon.salad.backbone import extract_features
from s6damon.salad.detector import SaliencyDetector, choose_threshold, detector_flops, predict_proba

#: wav2vec2-base (facebook/wav2vec2-base): 12 layers, 768 wide, 12 heads, FFN 3072, conv 512.
BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            conv_dim=[512] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2],
            num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, feat_extract_norm="group",
            do_stable_layer_norm=False, vocab_size=32)


def base_model(seed: int = 0, **overrides) -> nn.Module:
    """A random-weight wav2vec2-base CTC model (~94 M parameters); ``overrides``: config fields."""
    torch.manual_seed(seed)
    return Wav2Vec2ForCTC(Wav2Vec2Config(**{**BASE, "mask_time_prob": 0.0, **overrides})).eval()


def tiny_model(params_path: str | Path = "params.yaml", folder: str | Path | None = None, seed: int = 0,
               **overrides) -> nn.Module:
    """The default profile's tiny model: trained weights from ``folder``, else random ones.

    ``overrides`` (config fields) apply to the random-weight model only.
    """
    if folder:
        from s6damon.model.factory import load_ctc_model

        return load_ctc_model(folder)[0].eval()
    from s6damon.config import load_params
    from s6damon.model.factory import build_ctc_model

    torch.manual_seed(seed)
    return build_ctc_model(load_params(params_path).model, **{"mask_time_prob": 0.0, **overrides}).eval()


def uniform_mask(model: nn.Module, removed: float, kinds: tuple[str, ...], seconds: float,
                 notes: list[str] | None = None) -> StructuredMask:
    """Remove ``removed`` of the encoder FLOPs with the same share of units pruned in every layer.

    When ``kinds`` cannot reach the target (a small model whose conv encoder holds much of
    the FLOPs), conv channels are added, then whole layers may go; each fallback is
    appended to ``notes``.
    """
    tries = [(kinds, False), (tuple(dict.fromkeys((*kinds, "conv_channels"))), False),
             (tuple(dict.fromkeys((*kinds, "conv_channels"))), True)]
    for i, (ks, drop_layers) in enumerate(tries):
        importance = {k: unit_importance(model, k, "l1", normalise=True) for k in ks}
        try:
            mask = mask_for_flops_target(model, importance, removed, scope="per_layer", kinds=ks, seconds=seconds,
                                         allow_layer_removal=drop_layers)
        except ValueError as err:
            if i == len(tries) - 1:
                raise
            if notes is not None:
                notes.append(f"{removed:.0%} FLOPs by pruning {list(ks)}: {err}; trying more unit kinds")
            continue
        return mask
    raise AssertionError("unreachable")


def _fractions(data: dict, kind: str) -> list[float] | None:
    rows = data.get(kind)
    if not rows:
        return None
    # a StructuredMask dict holds 0/1 lists per layer, a distribution one kept share per layer
    return [float(np.mean(r)) if isinstance(r, list) else float(r) for r in rows]


def distribution_mask(model: nn.Module, path: str | Path) -> StructuredMask:
    """A mask with the per-layer kept shares of a SAFARI mask (or distribution) JSON.

    The JSON is either ``StructuredMask.to_dict()`` output or ``{"heads": [share, ...],
    "neurons": [...], "conv_channels": [...]}`` with one kept share per layer. A file from a
    model with another depth is resampled over relative depth (linear interpolation), so a
    mask SAFARI learned on the tiny model transfers to the 12-layer base. The lowest-L1 units
    of each layer are pruned.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable mask/distribution JSON ({err})") from err
    mask = StructuredMask.full(model)
    for kind in ("heads", "neurons", "conv_channels"):
        shares = _fractions(data, kind)
        if shares is None:
            continue
        units = mask.units(kind)
        src = np.linspace(0.0, 1.0, len(shares))
        dst = np.linspace(0.0, 1.0, len(units))
        scores = unit_importance(model, kind, "l1")
        for l, share in enumerate(np.interp(dst, src, shares)):
            n = len(units[l])
            keep_n = max(1, int(round(float(share) * n)))
            order = torch.argsort(scores[l], descending=True)
            units[l][:] = False
            units[l][order[:keep_n]] = True
    return mask


@dataclass
class BenchModel:
    """One benchmarked model: its inference graph and its cost figures.

    Attributes:
        name: row name (``dense``, ``safari50+salad30``, ``dense-int8`` …).
        graph: the float :class:`DropGraph` (int8 variants are quantised from it by the runner).
        int8: quantise the linears.
        params: parameters of the pruned model plus the detector.
        gflops: FLOPs of one pass on the benchmark input (kept tokens only after the
            conv encoder; CTC head and detector included).
        keep_ratio: share of tokens the transformer sees.
        conv_share: share of ``gflops`` spent in the conv feature encoder (runs on every
            frame, untouched by token dropping): what caps the speedup.
    """

    name: str
    graph: nn.Module
    int8: bool
    params: int
    gflops: float
    keep_ratio: float
    conv_share: float = 0.0


def _detector_for(model: nn.Module, wave: torch.Tensor, drop: float, seed: int,
                  drop_rule: str) -> tuple[nn.Module, float]:
    torch.manual_seed(seed)
    det = SaliencyDetector(model.config.conv_dim[-1], hidden=64, kernel_size=5, num_layers=2,
                           drop_rule=drop_rule).eval()
    with torch.no_grad():
        feats, lengths = extract_features(model, wave)
    return det, choose_threshold(predict_proba(det, feats, lengths), drop, rule=drop_rule)


def build(model: nn.Module, wave: torch.Tensor, seconds: float, *, distributions: dict[str, Path] | None = None,
          seed: int = 0, notes: list[str] | None = None, drop_rule: str = "alternate",
          merge: bool = True) -> list[BenchModel]:
    """Every benchmarked variant of ``model`` on the ``(1, N)`` normalised input ``wave``.

    ``notes`` receives a line for every FLOP target that needed a fallback. ``drop_rule``
    and ``merge``: SALAD's keep rule and whether dropped tokens are merged, as deployed
    (``salad.detector.drop_rule``, ``salad.merge_dropped``).
    """
    distributions = distributions or {}
    masks: dict[str, StructuredMask | None] = {"dense": None}
    for name, share in (("safari50", 0.5), ("safari70", 0.7)):
        masks[name] = (distribution_mask(model, distributions[name]) if name in distributions
                       else uniform_mask(model, share, ("heads", "neurons"), seconds, notes))
    masks["safari50conv"] = uniform_mask(model, 0.5, ("heads", "neurons", "conv_channels"), seconds, notes)
    plan = [("dense", None, False), ("safari50", None, False), ("safari70", None, False),
            ("safari50conv", None, False), ("dense", 0.3, False), ("safari50", 0.3, False),
            ("safari50conv", 0.3, False), ("dense", None, True), ("safari50", 0.3, True)]
    out = []
    n = torch.tensor([wave.shape[1]])
    for mask_name, drop, int8 in plan:
        mask = masks[mask_name]
        small = materialise(model, mask) if mask is not None else model
        det, thr = _detector_for(small, wave, drop, seed, drop_rule) if drop else (None, 0.5)
        graph = DropGraph(small, det, thr, merge=merge)
        with torch.no_grad():
            logits, lengths = graph(wave, n)
        frames = int(small._get_feat_extract_output_lengths(n)[0])
        kept = int(lengths[0])
        parts = flops_from_sizes(model_sizes(small), seconds, num_tokens=kept, include_lm_head=True)
        flops = parts["total"]
        if det is not None:
            flops += detector_flops(det, frames)
        name = "dense" if mask_name == "dense" and not drop else "+".join(
            p for p in (mask_name if mask_name != "dense" else "", f"salad{round(drop * 100)}" if drop else "") if p)
        params = sum(p.numel() for p in graph.parameters())
        out.append(BenchModel(name=name + ("-int8" if int8 else ""), graph=graph, int8=int8, params=params,
                              gflops=flops / 1e9, keep_ratio=kept / frames,
                              conv_share=parts["conv"] / flops))
    return out
