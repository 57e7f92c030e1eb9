"""Lexicon-constrained CTC beam search with a word n-gram LM (torchaudio's flashlight decoder).

Greedy decoding reads each frame's best character; the beam search instead keeps the
``beam_size`` best prefixes, allows only words of a lexicon (each spelled in the model's
characters, ending in the word delimiter) and adds ``lm_weight`` x the KenLM log-probability
of every completed word plus ``word_score`` per word. The CTC emissions are computed once per
utterance and reused for every (lm_weight, word_score) pair tried on dev.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from s6damon import io
from s6damon.model.factory import unwrap
from s6damon.model.vocab import PAD, UNK
from s6damon.text import LETTERS, WORD_DELIMITER
from s6damon.train.data import AudioSet, bucket_batches
from s6damon.train.evaluate import model_inputs, score


@torch.no_grad()
def emissions(model: torch.nn.Module, df: pd.DataFrame, batch_seconds: float = 120.0,
              progress: bool = False) -> list[torch.Tensor]:
    """CTC log-probabilities ``(T_i, vocab)`` of every row of ``df``, in its row order."""
    inner = unwrap(model)
    was_training = inner.training
    inner.eval()
    data = AudioSet(df, preload=False)
    out: dict[int, torch.Tensor] = {}
    for rows in tqdm(bucket_batches(data.durations, batch_seconds), desc="emissions", disable=not progress):
        batch = data.batch(rows)
        result = inner(**model_inputs(inner, batch))
        lengths = getattr(result, "lengths", None)
        if lengths is None:
            lengths = inner._get_feat_extract_output_lengths(batch.attention_mask.sum(-1))
        logp = torch.log_softmax(result.logits.float(), dim=-1)
        for i, row in enumerate(rows):
            out[row] = logp[i, : int(lengths[i])].contiguous()
    inner.train(was_training)
    return [out[i] for i in range(len(data.df))]


def spellable(word: str) -> bool:
    """Whether ``word`` is spelled only in the model's characters."""
    return bool(word) and all(ch in LETTERS for ch in word)


def write_lexicon(words: Iterable[str], path: str | Path) -> Path:
    """A flashlight lexicon file: one ``word l e t t e r s |`` line per spellable word.

    Raises:
        ValueError: no word is spellable in the model's characters.
    """
    kept = sorted({w for w in words if spellable(w)})
    if not kept:
        raise ValueError(f"{path}: no lexicon word is spelled in the model's characters")
    io.write_text(path, "".join(f"{w} {' '.join(w)} {WORD_DELIMITER}\n" for w in kept))
    return Path(path)


@dataclass(frozen=True)
class BeamSettings:
    """Search settings of one decoding (the two LM-scale knobs are tuned on dev)."""

    beam_size: int = 50
    beam_threshold: float = 25.0
    lm_weight: float = 1.0
    word_score: float = 0.0


class BeamDecoder:
    """Lexicon + KenLM beam search over a character CTC vocabulary.

    Args:
        tokens: the model's tokens in id order (``tokenizer.convert_ids_to_tokens``).
        lexicon: a file written by :func:`write_lexicon`.
        lm: an ARPA or KenLM binary file, or None for lexicon-only search.
        settings: beam size, pruning threshold, LM weight and word score.
    """

    def __init__(self, tokens: list[str], lexicon: str | Path, lm: str | Path | None, settings: BeamSettings):
        from torchaudio.models.decoder import ctc_decoder

        if PAD not in tokens or WORD_DELIMITER not in tokens:
            raise ValueError(f"tokens must contain the blank {PAD!r} and the delimiter {WORD_DELIMITER!r}")
        self.settings = settings
        self._decoder = ctc_decoder(
            lexicon=str(lexicon), tokens=tokens, lm=str(lm) if lm else None, beam_size=settings.beam_size,
            beam_threshold=settings.beam_threshold, lm_weight=settings.lm_weight, word_score=settings.word_score,
            blank_token=PAD, sil_token=WORD_DELIMITER, unk_word=UNK, nbest=1,
        )

    def decode(self, logp: torch.Tensor) -> str:
        """The best word sequence of one utterance's ``(T, vocab)`` log-probabilities."""
        hyps = self._decoder(logp.unsqueeze(0).float().contiguous(), torch.tensor([logp.shape[0]]))[0]
        return " ".join(w for w in hyps[0].words if w != UNK).strip() if hyps else ""

    def decode_all(self, logps: list[torch.Tensor]) -> list[str]:
        """:meth:`decode` of each utterance."""
        return [self.decode(lp) for lp in logps]


def tune(tokens: list[str], lexicon: str | Path, lm: str | Path | None, logps: list[torch.Tensor],
         refs: list[str], lm_weights: list[float], word_scores: list[float], beam_size: int,
         beam_threshold: float) -> tuple[BeamSettings, list[dict[str, float]]]:
    """The (lm_weight, word_score) pair with the lowest WER on ``refs``, and every pair's WER.

    Ties go to the pair tried first (``lm_weights`` outer, ``word_scores`` inner).
    """
    grid: list[dict[str, float]] = []
    best: tuple[float, BeamSettings] | None = None
    for lw in lm_weights:
        for ws in word_scores:
            settings = BeamSettings(beam_size=beam_size, beam_threshold=beam_threshold, lm_weight=lw, word_score=ws)
            hyps = BeamDecoder(tokens, lexicon, lm, settings).decode_all(logps)
            wer = score(pd.DataFrame({"ref": refs, "hyp": hyps}))["wer"]
            grid.append({"lm_weight": lw, "word_score": ws, "wer": wer})
            if best is None or wer < best[0]:
                best = (wer, settings)
    assert best is not None, "empty tuning grid"
    return best[1], grid
