"""Names of training-run folders under ``.work/runs``.

Its own module (not :mod:`tasks.caching`, which every stage depends on) so that only the
training stages list it in ``dvc.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tasks.caching import fingerprint, source_hash


def run_key(code: Iterable[str], *objects: Any) -> str:
    """Name of a training run's folder: its inputs and the source of the code that trains it
    (``code``, project-relative paths).

    A run resumes from the checkpoints in its folder, so the folder must change whenever the
    code does: otherwise a code change that DVC and the task cache rerun would continue from
    checkpoints the old code wrote, and the final model would mix the two.
    """
    return fingerprint(source_hash(code), *objects)[:16]
