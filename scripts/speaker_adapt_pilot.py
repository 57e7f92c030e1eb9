"""Measure unsupervised speaker adaptation (:func:`s6damon.decode.beam.speaker_emissions`), greedy.

For each split and setting, every speaker's utterances are dealt into ``--folds`` folds (in
utt_id order); a fold is read by the model adapted to the speaker's other folds (to all of
them with ``--folds 1``: transductive), without transcripts, plainly or, with ``--tta``, after
single-utterance adaptation on top (``decode.adapt``'s defaults). Reports WER/CER, per voice,
and the paired bootstrap against plain decoding. Writes ``<out>/speaker_adapt.json`` and each
setting's hypotheses.

Usage::

    .venv/bin/python scripts/speaker_adapt_pilot.py --model models/finetuned --out /tmp/spk \\
        --epochs 2 3 --lr 1e-4 3e-4 --folds 2
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pilot_cli import pilot_parser, start  # noqa: E402
from s6damon.config.decode import AdaptParams, SpeakerAdaptParams  # noqa: E402
from s6damon.decode.beam import folder_emissions, speaker_emissions  # noqa: E402
from s6damon.decode.warp import greedy_text  # noqa: E402
from s6damon.train.evaluate import paired_bootstrap, score  # noqa: E402


def main() -> None:
    ap = pilot_parser(__doc__)
    ap.add_argument("--splits", nargs="+", default=["dev", "test"])
    ap.add_argument("--epochs", type=int, nargs="+", default=[3])
    ap.add_argument("--batch", type=int, nargs="+", default=[4])
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-4])
    ap.add_argument("--em-weight", type=float, nargs="+", default=[0.3])
    ap.add_argument("--scope", nargs="+", default=["norm+conv"])
    ap.add_argument("--folds", type=int, nargs="+", default=[2])
    ap.add_argument("--tta", action="store_true", help="also read each fold with single-utterance adaptation on top")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    out, manifest = start(args)
    report: dict = {"model": args.model, "args": vars(args)}
    for split in args.splits:
        df = manifest[manifest["split"] == split].sort_values("utt_id").reset_index(drop=True)
        speakers = df["speaker"].to_numpy()

        def frame(logps: list[torch.Tensor], tok) -> pd.DataFrame:
            return pd.DataFrame({"utt_id": df["utt_id"], "ref": df["text"],
                                 "hyp": [greedy_text(lp, tok) for lp in logps]})

        base = frame(*folder_emissions(args.model, df))
        rep: dict = {"plain": {"wer": round(score(base)["wer"], 4), "cer": round(score(base)["cer"], 4)}}
        grid = itertools.product(args.epochs, args.batch, args.lr, args.em_weight, args.scope, args.folds,
                                 [False, True] if args.tta else [False])
        for epochs, batch, lr, em, scope, folds, tta in grid:
            t0 = time.time()
            speaker = SpeakerAdaptParams(epochs=epochs, batch_utterances=batch, lr=lr, folds=folds, tta=tta)
            d = frame(*speaker_emissions(args.model, df, AdaptParams(em_weight=em, scope=scope), speaker,
                                         seed=args.seed))
            secs = time.time() - t0
            name = f"e{epochs}_b{batch}_lr{lr:g}_em{em:g}_{scope}_f{folds}" + ("_tta" if tta else "")
            d.to_parquet(out / f"hyps_{split}_{name}.parquet")
            rep[name] = {
                "wer": round(score(d)["wer"], 4), "cer": round(score(d)["cer"], 4), "seconds": round(secs, 1),
                "vs_plain": {k: round(v, 4) for k, v in paired_bootstrap(base, d).items()},
                "per_voice": {str(s): [round(score(base[speakers == s])["wer"], 4),
                                       round(score(d[speakers == s])["wer"], 4)] for s in pd.unique(speakers)},
            }
            print(split, name, rep["plain"]["wer"], "->", rep[name]["wer"], rep[name]["vs_plain"], f"({secs:.0f} s)",
                  flush=True)
            report[split] = rep
            (out / "speaker_adapt.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({s: {k: v.get("wer") for k, v in report[s].items()} for s in args.splits}, indent=1))


if __name__ == "__main__":
    main()
