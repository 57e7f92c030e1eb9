"""SALAD labels: alignment labels, CTC-path labels, agreement (frame geometry: test_model_frames)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import Wav2Vec2Config

from s6damon.salad.guard import ctc_required_length, ctc_required_lengths, restore_row
from s6damon.salad.labels import (agreement, ctc_collapse, labels_for_utterances, labels_from_alignment,
                                  labels_from_ctc, labels_from_logits)


def _phones(rows):
    return pd.DataFrame(rows, columns=["phone", "start", "end"])


# --- alignment labels ----------------------------------------------------------------------------

def test_alignment_pauses_redundant_first_k_of_each_phone_salient():
    # 0-0.1 sil | k 0.1-0.2 | ae 0.2-0.3 | t 0.3-0.34 | pause 0.34-0.5 (from words) | sil to 0.6
    phones = _phones([("sil", 0.0, 0.1), ("k", 0.1, 0.2), ("ae", 0.2, 0.3), ("t", 0.3, 0.34),
                      ("sil", 0.5, 0.6)])
    pauses = pd.DataFrame({"start": [0.34], "end": [0.5]})
    keep = labels_from_alignment(phones, pauses, 30, keep_per_phone=2)
    expected = np.zeros(30, dtype=bool)
    expected[[5, 6, 10, 11, 15, 16]] = True  # frame t covers [t*0.02, (t+1)*0.02), centre decides
    np.testing.assert_array_equal(keep, expected)
    keep1 = labels_from_alignment(phones, pauses, 30, keep_per_phone=1)
    assert np.flatnonzero(keep1).tolist() == [5, 10, 15]


def test_alignment_every_phone_keeps_a_token_even_when_shorter_than_a_frame():
    # three phones inside 30 ms: only one frame centre falls in one of them
    phones = _phones([("sil", 0.0, 0.1), ("p", 0.1, 0.105), ("l", 0.105, 0.115), ("iy", 0.115, 0.13),
                      ("sil", 0.13, 0.3)])
    keep = labels_from_alignment(phones, None, 15, keep_per_phone=3)
    assert keep.sum() == 3  # one per phone, on distinct tokens
    assert set(np.flatnonzero(keep)) <= {4, 5, 6, 7}


def test_alignment_min_pause_and_min_keep():
    phones = _phones([("ah", 0.0, 0.2), ("sil", 0.2, 0.24), ("b", 0.24, 0.4)])
    long_only = labels_from_alignment(phones, None, 20, keep_per_phone=1, min_pause=0.1)
    # the 40 ms silence is shorter than min_pause: treated like a phone (its first token kept)
    assert np.flatnonzero(long_only).tolist() == [0, 10, 12]
    all_sil = labels_from_alignment(phones, None, 20, keep_per_phone=1, min_pause=0.0)
    assert np.flatnonzero(all_sil).tolist() == [0, 12]
    filled = labels_from_alignment(phones, None, 20, keep_per_phone=1, min_keep=6)
    assert filled.sum() == 6 and not filled[10:12].any()  # speech filled before silence


def test_alignment_with_model_spans_and_table_helper():
    cfg = Wav2Vec2Config()
    phones = pd.DataFrame({"utt_id": ["a", "a", "b"], "phone": ["m", "sil", "o"],
                           "start": [0.0, 0.1, 0.0], "end": [0.1, 0.2, 0.2]})
    out = labels_for_utterances(phones, None, {"a": 10, "b": 10, "failed": 5}, keep_per_phone=1,
                                conv=(cfg.conv_kernel, cfg.conv_stride))
    assert np.flatnonzero(out["a"]).tolist() == [0]
    assert out["b"].sum() == 1 and out["failed"].sum() == 0


# --- CTC-path labels -----------------------------------------------------------------------------

B = 0  # blank


def test_ctc_labels_hand_made():
    # h h _ e l l _ l o _  -> "hello"
    path = [1, 1, B, 2, 3, 3, B, 3, 4, B]
    keep = labels_from_ctc(path, blank_id=B)
    assert np.flatnonzero(keep).tolist() == [0, 3, 4, 6, 7, 8]
    assert ctc_collapse(np.asarray(path)[keep]) == ctc_collapse(path) == [1, 2, 3, 3, 4]


def test_ctc_labels_identical_neighbours_and_edges():
    assert np.flatnonzero(labels_from_ctc([3, 3, B, 3])).tolist() == [0, 2, 3]   # "l l _ l"
    assert np.flatnonzero(labels_from_ctc([3, B, B, B, 3, 3])).tolist() == [0, 1, 4]
    assert np.flatnonzero(labels_from_ctc([B, B, 5, B, 6])).tolist() == [2, 4]  # different labels: no blank
    assert labels_from_ctc([B, B, B]).sum() == 0
    assert labels_from_ctc([]).size == 0
    assert np.flatnonzero(labels_from_ctc([7, 7, 7, B, 7, 7], keep_per_run=2)).tolist() == [0, 1, 3, 4, 5]


def test_ctc_labels_preserve_greedy_decoding_random_paths():
    rng = np.random.default_rng(0)
    for trial in range(2000):
        T = int(rng.integers(0, 40))
        vocab = int(rng.integers(2, 5))  # small vocabularies make identical neighbours common
        # runs of labels, blanks frequent
        path = rng.integers(0, vocab, size=T)
        path[rng.random(T) < 0.3] = B
        k = int(rng.integers(1, 3))
        keep = labels_from_ctc(path, blank_id=B, keep_per_run=k)
        assert ctc_collapse(path[keep], B) == ctc_collapse(path, B), (trial, path, keep)
        # only the first k of a run are kept; never more tokens than needed + blank separators
        assert keep.sum() <= sum(1 for _ in ctc_collapse(path)) * (k + 1)


def test_labels_from_logits_batches():
    logits = torch.full((2, 5, 4), -5.0)
    path = [[1, 1, 0, 1, 2], [3, 0, 0, 0, 0]]
    for b, p in enumerate(path):
        logits[b, torch.arange(5), torch.tensor(p)] = 5.0
    out = labels_from_logits(logits, torch.tensor([5, 2]))
    assert np.flatnonzero(out[0]).tolist() == [0, 2, 3, 4]
    assert out[1].tolist() == [True, False]


# --- guard helpers -------------------------------------------------------------------------------

def test_ctc_required_length():
    assert ctc_required_length([8, 5, 12, 12, 15]) == 6  # "hello": l l needs a blank
    assert ctc_required_length([1, 1, 1, -100, -100]) == 5
    assert ctc_required_length([]) == 0
    labels = torch.tensor([[8, 5, 12, 12, 15], [1, 1, 1, -100, -100], [2, -100, -100, -100, -100]])
    assert ctc_required_lengths(labels).tolist() == [6, 5, 1]


def test_restore_row_uniform_and_scored():
    keep = np.zeros(10, dtype=bool)
    assert np.flatnonzero(restore_row(keep, 2)).tolist() == [2, 7]
    scores = np.arange(10.0)
    assert np.flatnonzero(restore_row(keep, 3, scores)).tolist() == [7, 8, 9]
    assert restore_row(keep, 20).all()


# --- agreement -----------------------------------------------------------------------------------

def test_agreement_metrics():
    a = np.array([1, 0, 0, 1, 0, 0], dtype=bool)
    b = np.array([1, 0, 0, 0, 1, 0], dtype=bool)
    m = agreement(a, b)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
    m1 = agreement(a, b, tolerance=1)
    assert m1["precision"] == 1.0 and m1["recall"] == 1.0
    same = agreement([a, b], [a, b])
    assert same["kappa"] == pytest.approx(1.0) and same["f1"] == 1.0
    with pytest.raises(ValueError):
        agreement([a], [b, b])
