"""Measure test-time warping (:mod:`s6damon.decode.warp`) on a CTC model folder.

For each split: greedy WER at every fixed factor, with the factor chosen per utterance and
per speaker by each confidence criterion, and the per-utterance oracle (the factor with the
fewest word errors: an upper bound no transcript-free choice reaches), per voice; the paired
bootstrap of each choice against no warp. Writes ``<out>/warp.json`` and the chosen
hypotheses as ``<out>/hyps_<split>_<criterion>_<scope>.parquet``.

Usage::

    .venv/bin/python scripts/warp_pilot.py --model models/finetuned --out /tmp/warp
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s6damon.decode.warp import CRITERIA, choose, confidence, greedy_text, warp_factors, warped_emissions  # noqa: E402
from s6damon.model.factory import load_ctc_model  # noqa: E402
from s6damon.train.evaluate import paired_bootstrap, score, word_errors  # noqa: E402


def per_voice(df: pd.DataFrame, speakers: np.ndarray) -> dict[str, float]:
    return {str(s): round(score(df[speakers == s])["wer"], 4) for s in pd.unique(speakers)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/finetuned")
    ap.add_argument("--manifest", default="data/corpus/manifest.parquet")
    ap.add_argument("--splits", nargs="+", default=["dev", "test", "test_open"])
    ap.add_argument("--low", type=float, default=0.8)
    ap.add_argument("--high", type=float, default=1.2)
    ap.add_argument("--n", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, tok = load_ctc_model(args.model)
    factors = warp_factors(args.low, args.high, args.n)
    k1 = factors.index(1.0)
    manifest = pd.read_parquet(args.manifest)
    report: dict = {"model": args.model, "factors": factors}
    for split in args.splits:
        df = manifest[manifest["split"] == split].reset_index(drop=True)
        speakers = df["speaker"].to_numpy()
        logps = warped_emissions(model, df, factors, progress=True)
        refs = list(df["text"])
        hyps = [[greedy_text(lp, tok) for lp in per] for per in logps]
        frames = np.array([lp.shape[0] for lp in logps[0]], dtype=float)
        base = pd.DataFrame({"utt_id": df["utt_id"], "ref": refs, "hyp": hyps[k1]})
        rep: dict = {"fixed": {}, "chosen": {}}
        for k, f in enumerate(factors):
            d = pd.DataFrame({"utt_id": df["utt_id"], "ref": refs, "hyp": hyps[k]})
            rep["fixed"][f"{f:g}"] = {"wer": round(score(d)["wer"], 4), "per_voice": per_voice(d, speakers)}
        errs = np.stack([word_errors(pd.DataFrame({"ref": refs, "hyp": h}))[0] for h in hyps])
        choices = {"oracle_utterance": np.argmin(errs + 1e-3 * np.abs(np.array(factors) - 1.0)[:, None], axis=0)}
        for c in CRITERIA:
            scores = np.array([[confidence(lp, c) for lp in per] for per in logps])
            choices[f"{c}_utterance"] = choose(scores)
            choices[f"{c}_speaker"] = choose(scores, speakers, frames)
        for name, idx in choices.items():
            d = pd.DataFrame({"utt_id": df["utt_id"], "ref": refs, "hyp": [hyps[int(k)][i] for i, k in enumerate(idx)]})
            d.to_parquet(out / f"hyps_{split}_{name}.parquet")
            chosen = np.array(factors)[idx]
            rep["chosen"][name] = {
                "wer": round(score(d)["wer"], 4), "cer": round(score(d)["cer"], 4),
                "vs_no_warp": {k: round(v, 4) for k, v in paired_bootstrap(base, d).items()},
                "per_voice": per_voice(d, speakers),
                "mean_factor_per_voice": {str(s): round(float(chosen[speakers == s].mean()), 3)
                                          for s in pd.unique(speakers)},
            }
        report[split] = rep
        print(split, "no warp", rep["fixed"]["1"]["wer"],
              {n: r["wer"] for n, r in rep["chosen"].items()}, flush=True)
    (out / "warp.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
