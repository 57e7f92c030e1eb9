"""Tasks of the ``decode`` stage: the LM and lexicon, CTC emissions, the tuned beam search.

Emissions (one forward pass per model and split) and each variant's tuned search are cached
on the contents of the files they read, their params and the core source, so a rerun after
an edit of ``decode.beam_size`` reuses the emissions and only searches again, and one after an
edit that changes one variant's emissions searches again for that variant alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from s6damon import io
from s6damon.config.decode import AdaptParams, DecodeParams, SpeakerAdaptParams
from tasks.caching import content_cache

DECODE_CODE = ("s6damon/decode", "s6damon/model", "s6damon/train/data.py", "s6damon/train/evaluate.py",
               "s6damon/export", "s6damon/pruning", "s6damon/salad", "s6damon/text.py", "s6damon/io.py",
               "s6damon/align/lexicon.py")


def _split(manifest: Path, split: str) -> pd.DataFrame:
    df = io.read_parquet(manifest)
    part = df[df["split"] == split].sort_values("utt_id").reset_index(drop=True)
    if part.empty:
        raise ValueError(f"decode: no {split!r} utterances in {manifest}")
    return part


# Not cached: it writes into data/decode/, which DVC empties before rerunning the stage, and
# estimating the LM takes about a second.
@task(cache_policy=NO_CACHE)
def build_lm(manifest: Path, p: DecodeParams, out_dir: Path) -> dict[str, Any]:
    """Estimate the n-gram LM (unless ``decode.lm_path`` names one) and write the lexicon.

    Returns:
        ``{"lm", "lexicon"}`` paths and the LM's statistics.
    """
    from s6damon.align.lexicon import cmudict_words
    from s6damon.decode import estimate, lm_sentences, write_arpa, write_lexicon

    df = io.read_parquet(manifest)
    sentences, excluded = lm_sentences(df, [p.tune_split, *p.splits], p.exclude_eval_sentences)
    words = {w for s in sentences for w in s}
    info: dict[str, Any] = {"sentences": len(sentences), "excluded_sentences": excluded, "text_words": len(words)}
    if p.lm_path:
        lm = Path(p.lm_path)
        if not lm.is_file():
            raise FileNotFoundError(f"decode.lm_path: {lm} is not a file")
        info.update(source=str(lm))
    else:
        model = estimate(sentences, p.order)
        lm = write_arpa(model, out_dir / "lm.arpa")
        info.update(source="estimated", order=p.order, ngrams=[len(t) for t in model.probs],
                    discounts=model.discounts)
    lexicon_words = words | (cmudict_words() if p.lexicon == "train+cmudict" else set())
    lexicon = write_lexicon(lexicon_words, out_dir / "lexicon.txt")
    info.update(lm=str(lm), lexicon=str(lexicon), lexicon_words=sum(1 for _ in lexicon.open()))
    return info


@task(cache_policy=content_cache(*DECODE_CODE), persist_result=True)
def model_emissions(model_dir: Path, manifest: Path, split: str, batch_seconds: float, threads: int,
                    warp: float = 1.0, adapt: AdaptParams | None = None, speaker: SpeakerAdaptParams | None = None,
                    seed: int = 0) -> dict[str, Any]:
    """CTC log-probabilities of every utterance of one split (its audio resampled by ``warp``;
    with ``adapt`` alone, after adapting the model to each utterance; with ``speaker`` too,
    after adapting it to the speaker's other utterances with ``adapt``'s objective), with its
    refs and greedy hyps."""
    import torch

    from s6damon.decode.beam import folder_emissions, speaker_emissions
    from s6damon.decode.warp import greedy_text

    torch.set_num_threads(threads)
    df = _split(manifest, split)
    if speaker is not None:
        if adapt is None or warp != 1.0:
            raise ValueError("model_emissions: speaker adaptation takes decode.adapt's objective and no warp")
        logps, tok = speaker_emissions(model_dir, df, adapt, speaker, batch_seconds, seed)
    else:
        logps, tok = folder_emissions(model_dir, df, batch_seconds, warp, adapt)
    greedy = [greedy_text(lp, tok) for lp in logps]
    return {"utt_id": list(df["utt_id"].astype(str)), "ref": list(df["text"].astype(str)), "greedy": greedy,
            "logps": logps, "tokens": tok.convert_ids_to_tokens(list(range(len(tok)))), "tokenizer": tok}


def split_emissions(model_dir: Path, manifest: Path, split: str, batch_seconds: float, threads: int,
                    factors: list[float], adapt: AdaptParams | None = None,
                    speaker: SpeakerAdaptParams | None = None, seed: int = 0) -> dict[str, Any]:
    """One split's emissions (:func:`model_emissions`), averaged over the warp ``factors``
    (the plain ones for ``[1.0]``), with greedy hypotheses read from them."""
    from s6damon.decode.warp import averaged, greedy_text

    per = [model_emissions(model_dir, manifest, split, batch_seconds, threads, f, adapt, speaker, seed)
           for f in factors]
    if factors == [1.0]:
        return per[0]
    em = dict(per[0])
    em["logps"] = averaged([e["logps"] for e in per], factors)
    em["greedy"] = [greedy_text(lp, em["tokenizer"]) for lp in em["logps"]]
    return em


# Cached apart from the emissions: tuning a variant's LM weights on dev is a grid of beam
# searches (about a minute a variant on 2 cores), so a rerun after an edit that changes one
# variant (say decode.speaker_adapt) searches again for that variant only. ``jobs`` only
# spreads the same search over processes.
@task(cache_policy=content_cache(*DECODE_CODE, exclude=("jobs",)), persist_result=True)
def tuned_search(model_dir: Path, manifest: Path, tune_split: str, splits: list[str], batch_seconds: float,
                 threads: int, factors: list[float], adapt: AdaptParams | None, speaker: SpeakerAdaptParams | None,
                 seed: int, lm: Path, lexicon: Path, lm_weights: list[float], word_scores: list[float],
                 beam_size: int, beam_threshold: float, jobs: int = 1) -> dict[str, Any]:
    """Tune the beam search's ``lm_weight``/``word_score`` on ``tune_split`` for one model
    variant (its emissions as :func:`split_emissions` computes them), then decode ``splits``
    greedily and with the tuned search.

    Returns:
        ``{"lm_weight", "word_score", "tune_wer", "grid", "splits": {split: {"utt_id", "ref",
        "greedy", "beam"}}}``.
    """
    from s6damon.decode import BeamDecoder, tune

    run = (batch_seconds, threads, factors, adapt, speaker, seed)
    dev = split_emissions(model_dir, manifest, tune_split, *run)
    settings, grid = tune(dev["tokens"], lexicon, lm, dev["logps"], dev["ref"], lm_weights, word_scores,
                          beam_size, beam_threshold, jobs)
    decoder = BeamDecoder(dev["tokens"], lexicon, lm, settings)
    out: dict[str, Any] = {"lm_weight": settings.lm_weight, "word_score": settings.word_score,
                           "tune_wer": min(g["wer"] for g in grid), "grid": grid, "splits": {}}
    for split in splits:
        em = split_emissions(model_dir, manifest, split, *run)
        out["splits"][split] = {"utt_id": em["utt_id"], "ref": em["ref"], "greedy": em["greedy"],
                                "beam": decoder.decode_all(em["logps"])}
    return out


def model_folders(patterns: list[str]) -> list[tuple[str, Path]]:
    """``(name, folder)`` of every model folder the patterns name (globs allowed).

    A folder counts when it holds ``config.json``; a glob matching nothing is skipped (the
    compressed models exist once their stages have run).

    Raises:
        FileNotFoundError: a plain (non-glob) entry is not a model folder.
        ValueError: two folders share a name.
    """
    found: list[tuple[str, Path]] = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            found += [(p.name, p) for p in sorted(Path().glob(pattern)) if (p / "config.json").is_file()]
        elif (Path(pattern) / "config.json").is_file():
            found.append((Path(pattern).name, Path(pattern)))
        else:
            raise FileNotFoundError(f"decode.models: {pattern} is not a model folder (no config.json)")
    names = [n for n, _ in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"decode.models: several folders are named {dupes}; list only one of each")
    return found
