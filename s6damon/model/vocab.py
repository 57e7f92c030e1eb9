"""Character vocabulary and CTC tokenizer.

Ids: 0 = ``<pad>`` (also the CTC blank, Hugging Face convention), 1 = ``<unk>``, then the
word delimiter ``|`` and the letters of :data:`s6damon.text.LETTERS`. The tokenizer is saved
inside every model folder so that a checkpoint is self-describing.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from transformers import Wav2Vec2CTCTokenizer

from s6damon.text import LETTERS, WORD_DELIMITER

PAD = "<pad>"
UNK = "<unk>"


def build_vocab() -> dict[str, int]:
    """Token → id mapping; blank/pad first so that ``blank_id == pad_token_id == 0``."""
    tokens = [PAD, UNK, WORD_DELIMITER, *LETTERS]
    return {t: i for i, t in enumerate(tokens)}


def build_tokenizer() -> Wav2Vec2CTCTokenizer:
    """A fresh character CTC tokenizer over our vocabulary."""
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        vocab_file.write_text(json.dumps(build_vocab()))
        return Wav2Vec2CTCTokenizer(
            str(vocab_file), unk_token=UNK, pad_token=PAD, word_delimiter_token=WORD_DELIMITER,
            bos_token=None, eos_token=None, do_lower_case=False,
        )


def encode(tokenizer: Wav2Vec2CTCTokenizer, text: str) -> list[int]:
    """Ids of a normalised transcript (spaces become the word delimiter)."""
    return tokenizer(text).input_ids
