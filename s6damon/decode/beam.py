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
from s6damon.config.decode import AdaptParams, SpeakerAdaptParams
from s6damon.decode.warp import warp_augment
from s6damon.model.factory import unwrap
from s6damon.model.vocab import PAD, UNK
from s6damon.text import LETTERS, WORD_DELIMITER
from s6damon.train.data import AudioSet, bucket_batches, perturb_speed
from s6damon.train.evaluate import model_inputs, score


@torch.no_grad()
def emissions(model: torch.nn.Module, df: pd.DataFrame, batch_seconds: float = 120.0,
              progress: bool = False, warp: float = 1.0) -> list[torch.Tensor]:
    """CTC log-probabilities ``(T_i, vocab)`` of every row of ``df``, in its row order.

    ``warp`` != 1 resamples each waveform first (:func:`s6damon.train.data.perturb_speed`:
    > 1 shorter and higher, < 1 longer and lower), as test-time warping does
    (:mod:`s6damon.decode.warp`).
    """
    inner = unwrap(model)
    was_training = inner.training
    inner.eval()
    data = AudioSet(df, preload=False)
    out: dict[int, torch.Tensor] = {}
    augment = warp_augment(warp)
    for rows in tqdm(bucket_batches(data.durations / warp, batch_seconds), desc="emissions", disable=not progress):
        batch = data.batch(rows, augment=augment)
        result = inner(**model_inputs(inner, batch))
        lengths = getattr(result, "lengths", None)
        if lengths is None:
            lengths = inner._get_feat_extract_output_lengths(batch.attention_mask.sum(-1))
        logp = torch.log_softmax(result.logits.float(), dim=-1)
        for i, row in enumerate(rows):
            out[row] = logp[i, : int(lengths[i])].contiguous()
    inner.train(was_training)
    return [out[i] for i in range(len(data.df))]


def _export_logits_fns(exp, paths: Iterable[str | Path], warp: float = 1.0) -> list:
    """One callable per audio file that runs an export's graph on it and returns its
    ``(T, vocab)`` logits (with autograd on when gradients are enabled)."""
    from s6damon.export.folder import prepare_wave
    from s6damon.train.data import load_audio

    fns = []
    for path in paths:
        wave = torch.from_numpy(prepare_wave(perturb_speed(load_audio(path), warp))).unsqueeze(0)
        n = torch.tensor([wave.shape[1]])

        def logits_fn(wave: torch.Tensor = wave, n: torch.Tensor = n) -> torch.Tensor:
            logits, lengths = exp.graph(wave, n)
            return logits[0, : int(lengths[0])]

        fns.append(logits_fn)
    return fns


def export_emissions(folder: str | Path, paths: Iterable[str | Path], warp: float = 1.0,
                     adapt: AdaptParams | None = None) -> tuple[list[torch.Tensor], object]:
    """CTC log-probabilities of each audio file through an exported model, and its tokenizer.

    Runs the export's own inference graph (SALAD detector and token dropping included) one
    utterance at a time, so no padding enters the result. ``warp`` as in :func:`emissions`;
    ``adapt`` adapts the pruned model's parameters to each utterance first
    (:func:`s6damon.decode.adapt.adapt_logp`; the SALAD detector stays as it is).
    """
    from s6damon.decode.adapt import adapt_logp, adapted_parameters, read_logp, trainable_only
    from s6damon.export.folder import load_exported

    exp = load_exported(folder)
    params = adapted_parameters(exp.graph, adapt.scope) if adapt else []
    out = []
    with trainable_only(exp.graph, params):
        for logits_fn in _export_logits_fns(exp, paths, warp):
            if adapt is None:
                out.append(read_logp(logits_fn))
            else:
                out.append(adapt_logp(logits_fn, params, adapt, exp.tokenizer.pad_token_id))
    return out, exp.tokenizer


def speaker_emissions(folder: str | Path, df: pd.DataFrame, adapt: AdaptParams, speaker: SpeakerAdaptParams,
                      batch_seconds: float = 120.0, seed: int = 0) -> tuple[list[torch.Tensor], object]:
    """Log-probabilities of every row of ``df`` after unsupervised speaker adaptation, and the
    tokenizer: each speaker's folds read by the model adapted to the speaker's other folds
    (:func:`s6damon.decode.adapt.speaker_adapted`), with ``adapt``'s objective and scope at
    ``speaker``'s learning rate, epochs and batch; with ``speaker.tta`` each read utterance is
    then adapted to alone as well (``adapt``'s SUTA steps, from the speaker-adapted weights).
    ``folder`` is a CTC checkpoint or an export (whose SALAD detector stays as trained)."""
    import dataclasses

    from s6damon.decode.adapt import (adapt_logp, adapted_parameters, adapted_to, read_logp, speaker_adapted,
                                      trainable_only, utterance_logits)

    settings = dataclasses.replace(adapt, lr=speaker.lr)
    df = df.reset_index(drop=True)
    if (Path(folder) / "export.json").is_file():
        from s6damon.export.folder import load_exported

        exp = load_exported(folder)
        module, tok = exp.graph, exp.tokenizer
        fns = _export_logits_fns(exp, df["path"])

        def plain(rows: list[int]) -> list[torch.Tensor]:
            module.eval()
            return [read_logp(fns[r]) for r in rows]
    else:
        from s6damon.model.factory import load_ctc_model

        model, tok = load_ctc_model(folder)
        module = unwrap(model)
        data = AudioSet(df, preload=True)
        fns = [utterance_logits(module, data, i) for i in range(len(df))]

        def plain(rows: list[int]) -> list[torch.Tensor]:
            return emissions(model, df.iloc[rows], batch_seconds)
    params = adapted_parameters(module, settings.scope)

    def read(rows: list[int]) -> list[torch.Tensor]:
        if not speaker.tta:
            return plain(rows)
        with trainable_only(module, params):
            return [adapt_logp(fns[r], params, adapt, tok.pad_token_id) for r in rows]
    logps = speaker_adapted(
        df, speaker.folds,
        lambda rows: adapted_to(module, params, [fns[r] for r in rows], settings, tok.pad_token_id, speaker.epochs,
                                speaker.batch_utterances, seed),
        read)
    return logps, tok


def folder_emissions(folder: str | Path, df: pd.DataFrame, batch_seconds: float = 120.0, warp: float = 1.0,
                     adapt: AdaptParams | None = None) -> tuple[list[torch.Tensor], object]:
    """Log-probabilities of every row of ``df`` from a model folder, and its tokenizer.

    An exported folder (``export.json``: pruned, maybe with a SALAD detector) runs its own
    graph; any other folder is a CTC checkpoint (this project's or Hugging Face's). ``warp``
    as in :func:`emissions`; ``adapt`` adapts the model to each utterance before reading it
    (:mod:`s6damon.decode.adapt`).
    """
    if (Path(folder) / "export.json").is_file():
        return export_emissions(folder, df["path"], warp, adapt)
    from s6damon.model.factory import load_ctc_model

    model, tok = load_ctc_model(folder)
    if adapt is not None:
        from s6damon.decode.adapt import adapt_emissions

        return adapt_emissions(model, df, adapt, tok.pad_token_id, warp=warp), tok
    return emissions(model, df, batch_seconds, warp=warp), tok


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



#: What the forked tuning workers read (set before the pool forks, so nothing is pickled).
_TUNING: dict = {}


def _grid_point(point: tuple[float, float]) -> float:
    d = _TUNING
    settings = BeamSettings(beam_size=d["beam_size"], beam_threshold=d["beam_threshold"], lm_weight=point[0],
                            word_score=point[1])
    hyps = BeamDecoder(d["tokens"], d["lexicon"], d["lm"], settings).decode_all(d["logps"])
    return score(pd.DataFrame({"ref": d["refs"], "hyp": hyps}))["wer"]


def tune(tokens: list[str], lexicon: str | Path, lm: str | Path | None, logps: list[torch.Tensor],
         refs: list[str], lm_weights: list[float], word_scores: list[float], beam_size: int,
         beam_threshold: float, jobs: int = 1) -> tuple[BeamSettings, list[dict[str, float]]]:
    """The (lm_weight, word_score) pair with the lowest WER on ``refs``, and every pair's WER.

    Ties go to the pair tried first (``lm_weights`` outer, ``word_scores`` inner). ``jobs`` > 1
    searches grid points in that many forked processes (the search is single-threaded).
    """
    points = [(lw, ws) for lw in lm_weights for ws in word_scores]
    if not points:
        raise ValueError("empty tuning grid: lm_weights and word_scores must each hold a value")
    _TUNING.update(tokens=tokens, lexicon=lexicon, lm=lm, logps=logps, refs=refs, beam_size=beam_size,
                   beam_threshold=beam_threshold)
    try:
        if jobs > 1 and len(points) > 1:
            from s6damon.parallel import fork_pool

            with fork_pool(min(jobs, len(points))) as pool:
                wers = pool.map(_grid_point, points, chunksize=1)
        else:
            wers = [_grid_point(pt) for pt in points]
    finally:
        _TUNING.clear()
    grid = [{"lm_weight": lw, "word_score": ws, "wer": w} for (lw, ws), w in zip(points, wers)]
    best = min(range(len(points)), key=lambda k: (wers[k], k))
    lw, ws = points[best]
    return BeamSettings(beam_size=beam_size, beam_threshold=beam_threshold, lm_weight=lw, word_score=ws), grid
