"""Greedy CTC transcription and WER/CER scoring."""

from __future__ import annotations

from typing import Any

import jiwer
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from s6damon.model.factory import unwrap
from s6damon.train.data import AudioSet, Batch, bucket_batches


def uses_attention_mask(model: torch.nn.Module) -> bool:
    """Whether the model expects an attention mask (HF: only layer-norm feature encoders).

    Models with a GroupNorm feature encoder (wav2vec2-base, HuBERT-base) were trained on
    zero-padded batches without a mask; passing one changes their outputs.
    """
    return getattr(unwrap(model).config, "feat_extract_norm", "layer") == "layer"


def model_inputs(model: torch.nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
    """Keyword arguments for a HF audio model's forward."""
    kw: dict[str, Any] = {"input_values": batch.input_values}
    if uses_attention_mask(model):
        kw["attention_mask"] = batch.attention_mask
    return kw


@torch.no_grad()
def greedy_ids(model: torch.nn.Module, batch: Batch) -> list[list[int]]:
    """Frame-level argmax ids of each utterance, cut to its true number of frames.

    A model whose output carries ``lengths`` (SALAD's token-dropping wrapper, which shortens
    the sequence) is cut to those instead.

    Returns:
        One list of ``T_i`` ids per utterance (``T_i`` = encoder frames of its unpadded audio).
    """
    out = model(**model_inputs(model, batch))
    lengths = getattr(out, "lengths", None)
    if lengths is None:
        lengths = unwrap(model)._get_feat_extract_output_lengths(batch.attention_mask.sum(-1))
    ids = out.logits.argmax(-1).cpu()
    return [ids[i, : int(n)].tolist() for i, n in enumerate(lengths)]


@torch.no_grad()
def transcribe(model: torch.nn.Module, tokenizer, df: pd.DataFrame, batch_seconds: float = 120.0,
               device: torch.device | str | None = None, progress: bool = False) -> pd.DataFrame:
    """Greedy-decode every row of a manifest.

    Args:
        model: a CTC model (``Wav2Vec2ForCTC``, ``HubertForCTC``, possibly DDP-wrapped).
        tokenizer: its CTC tokenizer (blank = pad).
        df: rows with ``path`` and ``duration`` (``utt_id`` and ``text`` used when present).
        batch_seconds: padded audio per decoding batch.
        device: where to run (default: the model's device).
        progress: show a progress bar.

    Returns:
        DataFrame ``(utt_id, ref, hyp)`` in the row order of ``df``.
    """
    inner = unwrap(model)
    device = device or next(inner.parameters()).device
    was_training = inner.training
    inner.eval()
    data = AudioSet(df, preload=False)
    hyps: dict[int, str] = {}
    batches = bucket_batches(data.durations, batch_seconds)
    for rows in tqdm(batches, desc="decode", disable=not progress, dynamic_ncols=True):
        batch = data.batch(rows).to(device)
        for i, seq in zip(rows, greedy_ids(inner, batch)):
            hyps[i] = tokenizer.decode(seq).strip()
    inner.train(was_training)
    d = data.df
    utt = d["utt_id"] if "utt_id" in d else pd.Series(range(len(d))).astype(str)
    ref = d["text"] if "text" in d else pd.Series([""] * len(d))
    return pd.DataFrame({"utt_id": utt.to_numpy(), "ref": ref.to_numpy(), "hyp": [hyps[i] for i in range(len(d))]})


def score(df: pd.DataFrame) -> dict[str, float]:
    """Corpus-level WER and CER (jiwer) of a :func:`transcribe` result.

    Empty hypotheses count as all deletions.
    """
    refs, hyps = list(df["ref"]), list(df["hyp"])
    if not refs:
        return {"wer": float("nan"), "cer": float("nan"), "utterances": 0}
    return {"wer": float(jiwer.wer(refs, hyps)), "cer": float(jiwer.cer(refs, hyps)), "utterances": len(refs)}


def word_errors(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-utterance word errors (substitutions + deletions + insertions) and reference words."""
    errors, words = [], []
    for ref, hyp in zip(df["ref"], df["hyp"]):
        out = jiwer.process_words(ref, hyp)
        errors.append(out.substitutions + out.deletions + out.insertions)
        words.append(len(ref.split()))
    return np.asarray(errors, dtype=np.int64), np.asarray(words, dtype=np.int64)


def paired_bootstrap(a: pd.DataFrame, b: pd.DataFrame, resamples: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict[str, float]:
    """WER difference ``b − a`` of two systems on the same utterances, with a bootstrap interval.

    Utterances are resampled with replacement and the corpus-level WER difference recomputed
    on each resample (the paired bootstrap of Koehn 2004 / Bisani & Ney 2004): the interval
    covers the test-set sampling noise only, not training noise (seeds).

    Args:
        a, b: :func:`transcribe` results (``utt_id``, ``ref``, ``hyp``) over the same utterances.
        resamples: bootstrap resamples.
        seed: resampling seed.
        level: two-sided interval level.

    Returns:
        ``{"delta": b − a, "low": …, "high": …, "utterances": n}`` in absolute WER.
    """
    a, b = a.set_index("utt_id").sort_index(), b.set_index("utt_id").sort_index()
    if not a.index.equals(b.index) or not (a["ref"] == b["ref"]).all():
        raise ValueError("paired_bootstrap: the two systems must cover the same utterances with the same references")
    if a.index.has_duplicates:
        raise ValueError("paired_bootstrap: utt_id must be unique")
    err_a, words = word_errors(a)
    err_b, _ = word_errors(b)
    if words.sum() == 0:
        raise ValueError("paired_bootstrap: the references hold no words")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(words), size=(resamples, len(words)))
    deltas = (err_b[idx].sum(1) - err_a[idx].sum(1)) / np.maximum(words[idx].sum(1), 1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return {"delta": float((err_b.sum() - err_a.sum()) / words.sum()), "low": float(low), "high": float(high),
            "utterances": int(len(words))}
