"""Prefect flows, one per DVC stage (``python -m flows.<stage>``). Orchestration only."""

from tasks import env as _env  # noqa: F401  (Prefect settings before prefect is imported)
