"""``BxT`` shape arguments of the kernel benchmarks (utterances x tokens)."""

from __future__ import annotations

import argparse


def batch_by_tokens(value: str) -> tuple[int, int]:
    """``"6x164"`` -> ``(6, 164)``; an argparse ``type`` (a bad value is a usage error naming it)."""
    try:
        b, t = (int(x) for x in value.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BxT (e.g. 6x164), got {value!r}") from None
    if b < 1 or t < 1:
        raise argparse.ArgumentTypeError(f"expected positive B and T, got {value!r}")
    return b, t
