"""Gaussian mix-up of a monophone model (Kaldi's ``gmm-est --mix-up``), with a seeded generator.

Kaldi's ``AmDiagGmm::SplitByCount`` perturbs the means of every split Gaussian with
``RandGauss``, and in the PyPI bindings that generator cannot be seeded: the same statistics
split into different models from one call to the next, and two alignment runs on the same
corpus drifted apart from the first mix-up on (the phone tables of 1298 of 1302 utterances
differed). This module does the same split with numpy's seeded generator, so the stage is
reproducible. Same rules as Kaldi: Gaussians are shared out to the pdfs by occupancy raised to
``power`` (``GetSplitTargets``: repeatedly give one more to the pdf with the largest
occupancy per Gaussian, none where a Gaussian would get fewer than ``min_count`` frames), and
a pdf grows by halving its heaviest component and moving the two halves' means apart by
``perturb_factor`` standard deviations along a random direction (``DiagGmm::Split``).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np


def split_targets(occs: np.ndarray, target: int, power: float, min_count: float) -> list[int]:
    """Gaussians per pdf after mixing up to ``target`` in all (Kaldi's ``GetSplitTargets``).

    Every pdf keeps at least one; a pdf whose next Gaussian would be trained on fewer than
    ``min_count`` frames (its raw occupancy over its count) gets no more.
    """
    occs = np.asarray(occs, dtype=np.float64)
    counts = [1] * len(occs)
    score = [float(o) ** power for o in occs]
    # max-heap on score per Gaussian; ties go to the lower pdf index
    heap = [(-score[i], i) for i in range(len(occs))]
    heapq.heapify(heap)
    total = len(occs)
    while total < target and heap:
        neg, i = heapq.heappop(heap)
        if neg == 0:
            break
        if (counts[i] + 1) * min_count >= occs[i]:
            continue  # min count reached: this pdf splits no further
        counts[i] += 1
        total += 1
        heapq.heappush(heap, (-score[i] / counts[i], i))
    return counts


def split_gmm(gmm, target: int, perturb_factor: float, rng: np.random.Generator) -> None:
    """Grow a ``kaldi_hmm_gmm.DiagGmm`` to ``target`` components in place (``DiagGmm::Split``)."""
    n = gmm.num_gauss
    if target <= n:
        return
    weights = np.asarray(gmm.weights, dtype=np.float64).copy()
    means = np.asarray(gmm.means, dtype=np.float64).copy()
    inv_vars = np.asarray(gmm.inv_vars, dtype=np.float64).copy()
    dim = means.shape[1]
    weights = np.concatenate([weights, np.zeros(target - n)])
    means = np.concatenate([means, np.zeros((target - n, dim))])
    inv_vars = np.concatenate([inv_vars, np.ones((target - n, dim))])
    for new in range(n, target):
        heaviest = int(np.argmax(weights[:new]))
        weights[heaviest] /= 2
        weights[new] = weights[heaviest]
        step = perturb_factor * rng.standard_normal(dim) / np.sqrt(inv_vars[heaviest])
        inv_vars[new] = inv_vars[heaviest]
        means[new] = means[heaviest] + step
        means[heaviest] -= step
    gmm.resize(target, dim)
    gmm.set_weights(weights.astype(np.float32))
    gmm.set_invvars_and_means(inv_vars.astype(np.float32), means.astype(np.float32))
    gmm.compute_gconsts()


def mix_up(am, occs: np.ndarray, target: int, perturb_factor: float, power: float, min_count: float,
           seed: int | Sequence[int]) -> None:
    """Mix the ``AmDiagGmm`` up to ``target`` Gaussians in all, in place, reproducibly for ``seed``
    (an int or numpy seed sequence entropy, e.g. ``(params seed, iteration)``)."""
    rng = np.random.default_rng(seed)
    for pdf, want in enumerate(split_targets(occs, target, power, min_count)):
        split_gmm(am.get_pdf(pdf), want, perturb_factor, rng)
