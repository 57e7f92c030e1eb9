"""Bucketed, deterministic, DDP-shardable batches and waveform normalisation."""

from __future__ import annotations

import numpy as np
import torch

from s6damon.train.data import AudioSet, BatchSchedule, bucket_batches, collate, perturb_speed
from s6damon.train.loop import lr_factor
from _train_fixtures import make_manifest


def test_buckets_respect_the_padded_seconds_cap():
    d = np.random.default_rng(0).uniform(0.5, 6.0, 200)
    batches = bucket_batches(d, 20.0, np.random.default_rng(1))
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert all(len(b) * d[b].max() <= 20.0 for b in batches)
    # a single utterance longer than the cap still gets its own batch
    assert bucket_batches(np.array([30.0, 1.0]), 10.0) == [[0], [1]]


def test_schedule_is_a_function_of_seed_and_step_and_shards_by_rank():
    d = np.random.default_rng(0).uniform(0.5, 6.0, 50)
    full = BatchSchedule(d, 12.0, seed=7).iter_from(0)
    first = [next(full) for _ in range(40)]
    resumed = BatchSchedule(d, 12.0, seed=7).iter_from(23)
    assert next(resumed) == first[23]
    other = [b for _, b in zip(range(5), BatchSchedule(d, 12.0, seed=8).iter_from(0))]
    assert other != first[:5]
    r0, r1 = (BatchSchedule(d, 12.0, seed=7, rank=r, world_size=2).iter_from(0) for r in (0, 1))
    for step in range(10):
        (_, a), (_, b) = next(r0), next(r1)
        whole = first[step][1]
        assert sorted(a + b) == sorted(whole) or (len(whole) == 1 and a == b == whole)


def test_collate_normalises_unpadded_samples_and_masks_padding():
    w1 = np.random.default_rng(0).normal(3.0, 2.0, 1600).astype(np.float32)
    w2 = np.random.default_rng(1).normal(-1.0, 0.1, 800).astype(np.float32)
    b = collate([w1, w2], [[3, 4, 5], [6]])
    assert b.input_values.shape == b.attention_mask.shape == (2, 1600)
    assert b.attention_mask[1, 800:].sum() == 0 and b.input_values[1, 800:].abs().sum() == 0
    x = b.input_values[1, :800]
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-2
    assert b.labels.tolist() == [[3, 4, 5], [6, -100, -100]]
    assert abs(b.seconds - 2400 / 16000) < 1e-9


def test_speed_perturbation_changes_length(tmp_path):
    w = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    assert len(perturb_speed(w, 1.25)) == 12800 and len(perturb_speed(w, 0.8)) == 20000
    data = AudioSet(make_manifest(tmp_path, 4))
    a = data.batch([0, 1], rng=np.random.default_rng(3), speed=[0.8, 1.2])
    b = data.batch([0, 1], rng=np.random.default_rng(3), speed=[0.8, 1.2])
    torch.testing.assert_close(a.input_values, b.input_values)


def test_lr_schedules():
    assert lr_factor(0, 100, 10, "cosine") == 0.1
    assert lr_factor(9, 100, 10, "linear") == 1.0
    assert abs(lr_factor(100, 100, 10, "cosine", final_scale=0.05) - 0.05) < 1e-9
    assert lr_factor(30, 100, 10, "tri_stage", hold_fraction=0.4) == 1.0
    assert lr_factor(99, 100, 10, "tri_stage", hold_fraction=0.4, final_scale=0.05) < 0.1
    assert lr_factor(50, 100, 10, "constant") == 1.0
