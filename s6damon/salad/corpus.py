"""SALAD over a whole manifest: token counts, both label sources, and detector inputs.

Everything is keyed by ``utt_id``. Token counts come from each file's exact sample count
through the model's conv layout, so labels, conv features and the model's own frames line
up one to one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from s6damon.model.frames import conv_layout, num_frames
from s6damon.model.vocab import encode
from s6damon.salad.backbone import extract_features
from s6damon.salad.guard import ctc_required_length
from s6damon.salad.labels import labels_for_utterances, labels_from_logits
from s6damon.train.data import AudioSet, Batch, bucket_batches
from s6damon.train.evaluate import model_inputs


def token_counts(data: AudioSet, config) -> dict[str, int]:
    """Encoder tokens of every utterance (``utt_id -> T``) for a model with ``config``."""
    kernel, stride = conv_layout(config)
    return {str(data.df.at[i, "utt_id"]): int(num_frames(len(data.wave(i)), kernel, stride))
            for i in range(len(data))}


def ctc_floor(df: pd.DataFrame, tokenizer) -> dict[str, int]:
    """Fewest tokens each transcript needs to stay decodable by CTC (labels plus repeats)."""
    return {str(u): ctc_required_length(encode(tokenizer, t)) for u, t in zip(df["utt_id"], df["text"])}


def alignment_labels(phones: pd.DataFrame, pauses: pd.DataFrame | None, counts: dict[str, int],
                     floors: dict[str, int], config, keep_per_phone: int, min_pause_s: float) -> dict[str, np.ndarray]:
    """Alignment-source labels of the utterances in ``counts`` (see :func:`labels_from_alignment`).

    Token spans are the model's receptive fields (its conv layout), and each utterance keeps
    at least its CTC floor, so a model trained on the kept tokens can still emit the transcript.
    An utterance the aligner failed on gets all-redundant labels except that floor.
    """
    return labels_for_utterances(phones, pauses, counts, min_keep=floors, conv=conv_layout(config),
                                 keep_per_phone=keep_per_phone, min_pause=min_pause_s)


def batches(data: AudioSet, batch_seconds: float) -> Iterator[tuple[list[int], Batch]]:
    """Length-bucketed, unshuffled batches of a whole set (rows, batch)."""
    for rows in bucket_batches(data.durations, batch_seconds):
        yield rows, data.batch(rows)


@torch.no_grad()
def ctc_labels(model: torch.nn.Module, data: AudioSet, keep_per_run: int, batch_seconds: float = 120.0,
               progress: bool = False) -> dict[str, np.ndarray]:
    """CTC-source labels from ``model``'s greedy path on every utterance (no transcript used)."""
    model.eval()
    out: dict[str, np.ndarray] = {}
    blank = int(model.config.pad_token_id)
    for rows, batch in tqdm(list(batches(data, batch_seconds)), desc="ctc labels", disable=not progress):
        logits = model(**model_inputs(model, batch)).logits
        lengths = model._get_feat_extract_output_lengths(batch.attention_mask.sum(-1))
        for i, lab in zip(rows, labels_from_logits(logits, lengths, blank, keep_per_run)):
            out[str(data.df.at[i, "utt_id"])] = lab
    return out


@torch.no_grad()
def conv_features(model: torch.nn.Module, data: AudioSet, batch_seconds: float = 120.0,
                  progress: bool = False) -> dict[str, torch.Tensor]:
    """The detector's input, ``(T, C)`` conv features per utterance (the model is frozen)."""
    model.eval()
    out: dict[str, torch.Tensor] = {}
    for rows, batch in tqdm(list(batches(data, batch_seconds)), desc="conv features", disable=not progress):
        feats, lengths = extract_features(model, batch.input_values, batch.attention_mask)
        for b, i in enumerate(rows):
            out[str(data.df.at[i, "utt_id"])] = feats[b, : int(lengths[b])].clone()
    return out


def pad_examples(feats: list[torch.Tensor], labels: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Collate ``(T_i, C)`` features and ``(T_i,)`` labels into padded detector batch tensors."""
    lengths = torch.tensor([len(f) for f in feats], dtype=torch.long)
    T, C = int(lengths.max()), feats[0].shape[1]
    x = torch.zeros(len(feats), T, C)
    y = torch.zeros(len(feats), T)
    for b, (f, lab) in enumerate(zip(feats, labels)):
        x[b, : len(f)] = f
        y[b, : len(f)] = torch.from_numpy(np.asarray(lab, dtype=np.float32))
    return x, y, lengths
