"""The text a decoding LM is estimated from, and how much of a split it covers."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd


def lm_sentences(manifest: pd.DataFrame, held_out_splits: Iterable[str], exclude_held_out: bool = True,
                 train_split: str = "train") -> tuple[list[list[str]], int]:
    """Tokenised train transcripts for the LM, and how many were left out.

    Args:
        manifest: the prepare stage's manifest (``text``, ``split``).
        held_out_splits: splits the LM is tuned or scored on.
        exclude_held_out: leave out every train sentence whose exact text is also in a
            held-out split, so the LM never holds a scored sentence whole (the command
            grammar repeats short requests across splits).
        train_split: the split whose transcripts the LM reads.

    Raises:
        ValueError: no train transcript is left.
    """
    train = manifest.loc[manifest["split"] == train_split, "text"].astype(str)
    held = set(manifest.loc[manifest["split"].isin(list(held_out_splits)), "text"].astype(str))
    kept = [t for t in train if not (exclude_held_out and t in held)]
    sentences = [t.split() for t in kept if t.split()]
    if not sentences:
        raise ValueError(f"no '{train_split}' transcript left to estimate a language model from")
    return sentences, len(train) - len(kept)


def oov_rate(texts: Iterable[str], vocab: set[str]) -> float:
    """Share of running words of ``texts`` not in ``vocab`` (0 for no words)."""
    words = [w for t in texts for w in str(t).split()]
    return sum(w not in vocab for w in words) / len(words) if words else 0.0
