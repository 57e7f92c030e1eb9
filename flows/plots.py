"""Training curves as CSV files that ``dvc plots show`` reads."""

from __future__ import annotations

import csv
import io as _io
from pathlib import Path

from s6damon import io


def write_curve(dest: str | Path, rows: list[dict]) -> None:
    """Write a list of per-step dicts (``step`` plus any numbers) as CSV, atomically."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys or ["step"])
    writer.writeheader()
    writer.writerows(rows)
    io.write_text(dest, buf.getvalue())
