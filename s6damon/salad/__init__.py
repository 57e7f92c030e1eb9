"""SALAD: drop redundant audio tokens before the transformer (data side of S6-DAMON).

* :mod:`~s6damon.model.frames` (shared with the rest of the model code) — token count and
  time span from the conv layout.
* :mod:`~s6damon.salad.labels` — salient/redundant labels from alignments or CTC paths.
* :mod:`~s6damon.salad.corpus` — both label sources and the detector inputs over a manifest.
* :mod:`~s6damon.salad.detector` — the small detector, its training, FLOPs, and the drop
  rule with its dev-calibrated threshold (``threshold``: drop every token under it;
  ``alternate``: of each run of such candidates drop only every other one, never two
  neighbours).
* :mod:`~s6damon.salad.fit` — train a detector on one label source, thresholds per ratio.
* :mod:`~s6damon.salad.backbone` — the parts of a HF wav2vec2/HuBERT model SALAD wraps.
* :mod:`~s6damon.salad.dropping` — token dropping inside a HF wav2vec2/HuBERT CTC model,
  optionally merging each dropped token into the kept token before it (averaged) instead
  of discarding it.
* :mod:`~s6damon.salad.guard` — the CTC guard (never drop below what the transcript needs).
* :mod:`~s6damon.salad.baselines` — uniform, random, energy and no dropping.
* :mod:`~s6damon.salad.methods` — every method as one kind of model (a keep policy).

Pure algorithms: no Prefect, no DVC, no file I/O.
"""
