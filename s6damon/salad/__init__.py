"""SALAD: drop redundant audio tokens before the transformer (data side of S6-DAMON).

* :mod:`~s6damon.salad.frames` — token count and time span from the conv layout.
* :mod:`~s6damon.salad.labels` — salient/redundant labels from alignments or CTC paths.
* :mod:`~s6damon.salad.detector` — the small detector, its training, threshold and FLOPs.
* :mod:`~s6damon.salad.dropping` — token dropping inside a HF wav2vec2/HuBERT CTC model.
* :mod:`~s6damon.salad.guard` — the CTC guard (never drop below what the transcript needs).
* :mod:`~s6damon.salad.baselines` — uniform, random, energy and no dropping.

Pure algorithms: no Prefect, no DVC, no file I/O.
"""
