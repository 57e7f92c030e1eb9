"""SAFARI (sparsify → masked finetune → adjust sparsity) and its baselines, without Prefect.

- :mod:`~s6damon.safari.unstructured` — PARP's weight-magnitude masks at a FLOPs target
- :mod:`~s6damon.safari.hooks` — loop hooks: SAFARI's prune-and-grow, PARP's re-prune
- :mod:`~s6damon.safari.methods` — one small function per method, all on
  :func:`s6damon.train.finetune.finetune` with the same budget
- :mod:`~s6damon.safari.measure` — params, GFLOPs and test WER/CER of a method's result
"""
