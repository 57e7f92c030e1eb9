"""What a method's result costs (params, GFLOPs) and how well it transcribes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from s6damon.model.factory import count_parameters, load_ctc_model
from s6damon.pruning import apply_masks, encoder_flops, materialise
from s6damon.safari import unstructured as U
from s6damon.pruning.masks import load_mask
from s6damon.train.evaluate import score, transcribe


def load_result(model_dir: str | Path, mask_path: str | Path | None, unstructured: bool):
    """``(model, tokenizer, structured mask or None)``: the deployed model of a run, in eval
    mode, with its structured mask applied (an unstructured PARP model is already zeroed)."""
    model, tok = load_ctc_model(model_dir)
    mask = None
    if mask_path is not None and not unstructured:
        mask = load_mask(mask_path)
        apply_masks(model, mask)
    return model, tok, mask


def cost(model: torch.nn.Module, mask, unstructured: bool, seconds: float = 10.0) -> dict[str, Any]:
    """``params`` (kept: materialised model, or non-zeroed weights), ``gflops`` (encoder,
    ``seconds`` of audio) and ``flops_removed_actual`` (share of the dense encoder FLOPs)."""
    dense = encoder_flops(model, None, seconds)["total"]
    if unstructured:
        zero = sum(int((w == 0).sum()) for _, w, _ in U.prunable_weights(model, seconds))
        params = count_parameters(model) - zero
        flops = dense - U.removed_flops(model, {n: w != 0 for n, w, _ in U.prunable_weights(model, seconds)},
                                        seconds)
    elif mask is not None:
        params = count_parameters(materialise(model, mask))
        flops = encoder_flops(model, mask, seconds)["total"]
    else:
        params, flops = count_parameters(model), dense
    return {"params": int(params), "gflops": flops / 1e9, "flops_removed_actual": 1.0 - flops / dense}


def evaluate(model_dir: str | Path, mask_path: str | Path | None, unstructured: bool, df: pd.DataFrame,
             threads: int, seconds: float = 10.0, batch_seconds: float = 120.0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Greedy transcripts of ``df`` by a run's deployed model, with WER/CER and its cost."""
    torch.set_num_threads(threads)
    model, tok, mask = load_result(model_dir, mask_path, unstructured)
    hyps = transcribe(model, tok, df, batch_seconds)
    return hyps, score(hyps) | cost(model, mask, unstructured, seconds)
