"""Gaussian mix-up of the Kaldi aligner's model: Kaldi's share-out rule, a seeded split."""

from __future__ import annotations

import kaldi_hmm_gmm as khg
import numpy as np
import pytest

from s6damon.align.mixup import mix_up, split_targets

DIM = 3


def _model(pdfs: int) -> khg.AmDiagGmm:
    am = khg.AmDiagGmm()
    g = khg.DiagGmm(nmix=1, dim=DIM)
    g.set_weights(np.ones(1, dtype=np.float32))
    g.set_invvars_and_means(np.full((1, DIM), 4.0, dtype=np.float32), np.ones((1, DIM), dtype=np.float32))
    g.compute_gconsts()
    for _ in range(pdfs):
        am.add_pdf(g)
    return am


def _means(am) -> np.ndarray:
    return np.concatenate([np.asarray(am.get_pdf(i).means).ravel() for i in range(am.num_pdfs)])


@pytest.mark.parametrize("trial", range(12))
def test_targets_are_kaldis(trial):
    rng = np.random.default_rng(trial)
    occs = (rng.random(7) * 300).astype(np.float32)
    occs[rng.integers(7)] = 0.0  # an unseen pdf keeps its one Gaussian
    target, min_count = int(rng.integers(7, 60)), float(rng.choice([1.0, 20.0]))
    kaldi = _model(7)
    kaldi.split_by_count(state_occs=occs, target_components=target, perturb_factor=0.01, power=0.2,
                         min_count=min_count)
    assert split_targets(occs, target, 0.2, min_count) == [kaldi.get_pdf(i).num_gauss for i in range(7)]


def test_mix_up_is_reproducible_and_splits_the_heaviest_component():
    occs = np.array([10, 50, 80, 0, 30], dtype=np.float32)
    a, b, c = _model(5), _model(5), _model(5)
    mix_up(a, occs, 12, 0.01, 0.2, 1.0, seed=3)
    mix_up(b, occs, 12, 0.01, 0.2, 1.0, seed=3)
    mix_up(c, occs, 12, 0.01, 0.2, 1.0, seed=4)
    assert a.num_gauss == 12 and np.array_equal(_means(a), _means(b))
    assert not np.array_equal(_means(a), _means(c))
    g = a.get_pdf(2)  # three components: the first split in two, then the heavier half again
    w, m = np.asarray(g.weights), np.asarray(g.means)
    assert len(w) == 3 and sorted(w.tolist()) == pytest.approx([0.25, 0.25, 0.5]) and w.sum() == pytest.approx(1.0)
    assert np.allclose(m.mean(axis=0), 1.0, atol=0.05) and not np.allclose(m[0], m[1])
    assert np.allclose(np.asarray(g.inv_vars), 4.0)
    assert a.get_pdf(3).num_gauss == 1  # zero occupancy: never split
    # the mixed-up model scores like a Kaldi one: finite log-likelihoods everywhere
    assert np.isfinite(a.log_likelihood(pdf_index=2, data=np.ones(DIM, dtype=np.float32)))
