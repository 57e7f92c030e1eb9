"""Measure single-utterance test-time adaptation (:mod:`s6damon.decode.adapt`), greedy.

For each split and each setting of the grid: WER and CER after adapting the model to each
utterance alone, per voice, and the paired bootstrap against plain decoding (0 steps). With
``--average``, each setting is also run on the resampled copies of those warp factors and
their posteriors averaged (:mod:`s6damon.decode.warp`; adaptation and warping together).
Writes ``<out>/tta.json`` and each setting's hypotheses as ``<out>/hyps_<split>_<name>.parquet``.

Usage::

    .venv/bin/python scripts/tta_pilot.py --model models/finetuned --out /tmp/tta \\
        --steps 10 --lr 1e-4 2e-4 5e-4 --scope norm norm+conv
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
from s6damon.config.decode import AdaptParams  # noqa: E402
from s6damon.decode.adapt import adapt_emissions  # noqa: E402
from s6damon.decode.warp import averaged, greedy_text  # noqa: E402
from s6damon.model.factory import load_ctc_model  # noqa: E402
from s6damon.train.evaluate import paired_bootstrap, score  # noqa: E402


def main() -> None:
    ap = pilot_parser(__doc__)
    ap.add_argument("--splits", nargs="+", default=["dev", "test"])
    ap.add_argument("--steps", type=int, nargs="+", default=[10])
    ap.add_argument("--lr", type=float, nargs="+", default=[2e-4])
    ap.add_argument("--em-weight", type=float, nargs="+", default=[0.3])
    ap.add_argument("--temperature", type=float, nargs="+", default=[2.5])
    ap.add_argument("--scope", nargs="+", default=["norm"])
    ap.add_argument("--average", default="", help="comma-separated warp factors, e.g. 0.95,1.0,1.05")
    args = ap.parse_args()
    out, manifest = start(args)
    torch.manual_seed(0)
    model, tok = load_ctc_model(args.model)
    blank = tok.pad_token_id
    grid = [AdaptParams(steps=s, lr=lr, em_weight=em, temperature=t, scope=sc)
            for s, lr, em, t, sc in itertools.product(args.steps, args.lr, args.em_weight, args.temperature, args.scope)]
    report: dict = {"model": args.model, "grid": [vars(g) for g in grid]}
    for split in args.splits:
        df = manifest[manifest["split"] == split].reset_index(drop=True)
        speakers = df["speaker"].to_numpy()
        refs = list(df["text"])

        def run(settings: AdaptParams, factors: tuple[float, ...] = (1.0,)) -> tuple[pd.DataFrame, float]:
            t0 = time.time()
            per = [adapt_emissions(model, df, settings, blank, warp=f) for f in factors]
            logps = per[0] if len(factors) == 1 else averaged(per, list(factors))
            hyps = [greedy_text(lp, tok) for lp in logps]
            return pd.DataFrame({"utt_id": df["utt_id"], "ref": refs, "hyp": hyps}), time.time() - t0

        base, base_s = run(AdaptParams(steps=0))
        rep: dict = {"plain": {"wer": round(score(base)["wer"], 4), "cer": round(score(base)["cer"], 4),
                               "seconds": round(base_s, 1)}}
        warps = [float(f) for f in args.average.split(",")] if args.average else []
        runs = [(g, [1.0], "") for g in grid] + [(g, warps, "_warp") for g in grid if warps]
        if warps:
            runs.insert(0, (AdaptParams(steps=0), warps, "_warp"))
        for g, factors, tag in runs:
            name = f"s{g.steps}_lr{g.lr:g}_em{g.em_weight:g}_t{g.temperature:g}_{g.scope}{tag}"
            d, secs = run(g, factors)
            d.to_parquet(out / f"hyps_{split}_{name}.parquet")
            rep[name] = {
                "wer": round(score(d)["wer"], 4), "cer": round(score(d)["cer"], 4), "seconds": round(secs, 1),
                "vs_plain": {k: round(v, 4) for k, v in paired_bootstrap(base, d).items()},
                "per_voice": {str(s): [round(score(base[speakers == s])["wer"], 4), round(score(d[speakers == s])["wer"], 4)]
                              for s in pd.unique(speakers)},
            }
            print(split, name, "plain", rep["plain"]["wer"], "->", rep[name]["wer"], f"({secs:.0f} s)", flush=True)
        report[split] = rep
        (out / "tta.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({s: {k: v.get("wer") for k, v in report[s].items()} for s in args.splits}, indent=1))


if __name__ == "__main__":
    main()
