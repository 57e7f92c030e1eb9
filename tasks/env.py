"""Prefect settings that must be in place before ``prefect`` is imported.

The project root is the working directory (DVC runs every stage from it). A user's explicit
settings win: only unset variables get a default.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path.cwd()

_DEFAULTS = {
    "PREFECT_HOME": str(ROOT / ".prefect"),
    "PREFECT_LOCAL_STORAGE_PATH": str(ROOT / ".prefect" / "storage"),
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_LEVEL": "INFO",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
for _key, _value in _DEFAULTS.items():
    os.environ.setdefault(_key, _value)
