"""Prefect tasks: I/O, caching and progress around the core algorithms in ``s6damon``.

Importing this package points Prefect's home and result storage at ignored folders of the
project (``.prefect/``) unless the user has set them, so runs never write to ``~/.prefect``.
"""

from tasks import env as _env  # noqa: F401  (must run before prefect is imported)
