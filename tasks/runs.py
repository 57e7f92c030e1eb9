"""Folders of training runs under ``.work/runs``.

A training run resumes from the checkpoints in its folder, so the folder must change
whenever anything the task's result depends on does. The task cache key
(:class:`tasks.caching.ContentHash`) is exactly that set — the task's own source, the core
code it names, the contents of its inputs, params and seed — so the folder is named from the
key of the task run it belongs to, and the two cannot disagree.

Its own module (not :mod:`tasks.caching`, which every stage depends on) so that only the
training stages list it in ``dvc.yaml``.
"""

from __future__ import annotations

from pathlib import Path

#: Hex digits of the cache key in a folder's name: enough to never collide in one project.
KEY_CHARS = 16


def run_folder(root: Path) -> Path:
    """The folder, under ``root``, of the training run of the task that calls this.

    Raises:
        RuntimeError: when called outside a task run that has a cache key (a Prefect task
            with a ``content_cache`` policy, run inside a flow or on its own).
    """
    from prefect.transactions import get_transaction

    txn = get_transaction()
    if txn is None or not txn.key:
        raise RuntimeError(
            "a training run's folder is named from its task's cache key: call run_folder() inside a "
            "Prefect task that has a content_cache policy (not through task.fn)")
    return Path(root) / txn.key[:KEY_CHARS]
