"""Result tables for people: CSV curves that ``dvc plots show`` reads, and Markdown tables."""

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


def markdown_table(rows: list[dict], columns: tuple[str, ...]) -> str:
    """``rows`` as a Markdown table of ``columns`` (floats to 3 decimals, missing keys blank)."""
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"
