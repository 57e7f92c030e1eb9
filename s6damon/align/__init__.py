"""Forced alignment: one interface (``base``), backends ``kaldi``, ``pocketsphinx``, ``mfa``."""

from s6damon.align.base import AlignError, AlignItem, Aligner, AlignResult, get_aligner, pauses

__all__ = ["AlignError", "AlignItem", "Aligner", "AlignResult", "get_aligner", "pauses"]
