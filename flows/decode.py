"""Beam-search decoding with a lexicon and a word n-gram LM, against greedy decoding.

Usage::

    python -m flows.decode [--params params.yaml]

Estimates an interpolated Kneser-Ney LM from the train transcripts (train sentences that
also occur in a tuned or scored split are left out; ``decode.lm_path`` may name an existing
KenLM/ARPA file instead), writes it with the lexicon to ``data/decode/``, computes each
model's CTC emissions once per split, chooses ``lm_weight`` and ``word_score`` on
``decode.tune_split`` for each model, and scores ``decode.splits`` greedy and with the beam
search — once on the plain input, once with test-time warping (posteriors averaged over
``decode.warp_factors``) and, for the models ``decode.adapt.models`` names, once after
adapting the model to each utterance (``decode.adapt``; with ``decode.adapt.warp`` also
adapted and warped together) and, for those ``decode.speaker_adapt.models`` names, once after
adapting it to each speaker's other utterances (``decode.speaker_adapt``), each tuned separately. Writes
``metrics/decode.json``, ``reports/decode.md`` and every hypothesis to
``data/decode/hyps.parquet``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger

from flows.cli import main
from flows.plots import markdown_table
from s6damon import io
from s6damon.config import load_params
from tasks import decode as T

OUT = Path("data/decode")
COLUMNS = ("model", "split", "decoder", "wer", "cer", "utterances", "oov_rate")


def _adapted_names(names: list[str], patterns: list[str], key: str = "decode.adapt.models") -> set[str]:
    """The decoded models that ``patterns`` (the params ``key``) name (globs over folder names).

    Raises:
        ValueError: a pattern matches none of them (a typo would otherwise silently skip it).
    """
    from fnmatch import fnmatch

    out: set[str] = set()
    for pattern in patterns:
        hit = {n for n in names if fnmatch(n, pattern)}
        if not hit:
            raise ValueError(f"{key}: {pattern!r} matches none of the decoded models {names}")
        out |= hit
    return out


@flow(name="decode")
def decode(params_path: str = "params.yaml") -> dict:
    """Greedy vs. lexicon + n-gram LM beam search for every model in ``decode.models``."""
    from s6damon.decode import oov_rate
    from s6damon.train.evaluate import score

    params = load_params(params_path)
    p = params.decode
    manifest = Path(params.prepare.out_dir) / "manifest.parquet"
    lm = T.build_lm(manifest, p, OUT)
    vocab = {line.split(" ", 1)[0] for line in Path(lm["lexicon"]).read_text().splitlines()}
    folders = T.model_folders(list(p.models))
    if not folders:
        raise FileNotFoundError(f"decode.models: no model folder matches {list(p.models)} (have their stages run?)")
    warps = [float(f) for f in p.warp_factors]
    names = [n for n, _ in folders]
    adapted = _adapted_names(names, list(p.adapt.models)) if p.adapt.steps else set()
    spk = p.speaker_adapt
    spk_adapted = _adapted_names(names, list(spk.models), "decode.speaker_adapt.models") if spk.epochs else set()
    rows, tuned, hyps = [], {}, []
    for name, model_dir in folders:
        # (suffix of the decoder names, factors averaged, adaptation, speaker adaptation): the
        # plain input, test-time warping, single-utterance adaptation, speaker adaptation
        variants = [("", [1.0], None, None)] + ([("_warp", warps, None, None)] if len(warps) > 1 else [])
        if name in adapted:
            variants += [("_tta", [1.0], p.adapt, None)]
            variants += [("_tta_warp", warps, p.adapt, None)] if p.adapt.warp and len(warps) > 1 else []
        if name in spk_adapted:
            variants += [("_spk", [1.0], p.adapt, dataclasses.replace(spk, tta=False))]
            variants += [("_spk_tta", [1.0], p.adapt, spk)] if spk.tta else []
        for suffix, factors, adapt, speaker in variants:
            # the seed orders speaker adaptation's steps; elsewhere it would only split the cache
            found = T.tuned_search(model_dir, manifest, p.tune_split, list(p.splits), p.batch_seconds, params.threads,
                                   factors, adapt, speaker, params.seed if speaker else 0, Path(lm["lm"]),
                                   Path(lm["lexicon"]), list(p.lm_weights), list(p.word_scores), p.beam_size,
                                   p.beam_threshold, p.jobs)
            tuned[name + suffix] = {"lm_weight": found["lm_weight"], "word_score": found["word_score"],
                                    f"{p.tune_split}_wer": found["tune_wer"], "grid": found["grid"]}
            for split in p.splits:
                em = found["splits"][split]
                oov = oov_rate(em["ref"], vocab)
                for dec, hyp in (("greedy" + suffix, em["greedy"]), ("beam_lm" + suffix, em["beam"])):
                    s = score(pd.DataFrame({"ref": em["ref"], "hyp": hyp}))
                    rows.append({"model": name, "split": split, "decoder": dec, **s, "oov_rate": oov})
                    hyps.append(pd.DataFrame({"model": name, "split": split, "decoder": dec,
                                              "utt_id": em["utt_id"], "ref": em["ref"], "hyp": hyp}))
    io.write_parquet(OUT / "hyps.parquet", pd.concat(hyps, ignore_index=True))
    lm_info = {k: v for k, v in lm.items() if k not in ("lm", "lexicon")}
    metrics = {"results": rows, "tuned": tuned, "lm": lm_info, "beam_size": p.beam_size,
               "beam_threshold": p.beam_threshold, "tune_split": p.tune_split, "seed": params.seed,
               "warp_factors": warps, "adapt": dataclasses.asdict(p.adapt),
               "speaker_adapt": dataclasses.asdict(spk)}
    io.write_json("metrics/decode.json", metrics)
    table = markdown_table(rows, COLUMNS)
    chosen = "\n".join(f"- {m}: lm_weight {t['lm_weight']}, word_score {t['word_score']} "
                       f"({p.tune_split} WER {t[f'{p.tune_split}_wer']:.3f})" for m, t in tuned.items())
    lm_name = f"{p.order}-gram LM" if lm_info["source"] == "estimated" else f"LM {lm_info['source']}"
    io.write_text("reports/decode.md", f"# Greedy vs. lexicon + {lm_name} beam search\n\n{table}\n\n"
                                       f"Settings chosen on {p.tune_split}:\n\n{chosen}\n\nLM: {lm_info}\n")
    get_run_logger().info("decode:\n%s", table)
    return metrics


if __name__ == "__main__":
    main(decode)
