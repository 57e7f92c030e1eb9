"""Measure test-time warping (:mod:`s6damon.decode.warp`) on a CTC model folder, greedy.

For each split: WER at every fixed factor; the posteriors averaged over each ``--average``
set of factors (what the decode stage does); one factor chosen per utterance and per speaker
by each confidence criterion (:data:`CRITERIA`; the VTLN-like alternative, not adopted);
and the per-utterance oracle (the factor with the fewest word errors: an upper bound no
transcript-free choice reaches, flattered by picking the best of several noisy readings).
Per voice, with the paired bootstrap against no warp. Writes ``<out>/warp.json`` and each
variant's hypotheses as ``<out>/hyps_<split>_<variant>.parquet``.

Usage::

    .venv/bin/python scripts/warp_pilot.py --model models/finetuned --out /tmp/warp
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pilot_cli import pilot_parser, start  # noqa: E402
from s6damon.decode.warp import averaged, greedy_text, warped_emissions  # noqa: E402
from s6damon.model.factory import load_ctc_model  # noqa: E402
from s6damon.train.evaluate import paired_bootstrap, score, word_errors  # noqa: E402


#: Scores of a ``(T, vocab)`` log-probability matrix; higher = the model is surer.
#: ``max_logp``: mean over frames of the best token's log-probability.
#: ``speech_max_logp``: the same over frames whose best token is not the blank (blank frames
#: in pauses are easy at every factor and dilute the score).
#: ``neg_entropy``: minus the mean entropy of the frame posteriors.
CRITERIA = ("max_logp", "speech_max_logp", "neg_entropy")


def confidence(logp: torch.Tensor, criterion: str = "max_logp", blank: int = 0) -> float:
    """How sure a CTC model is of one utterance's ``(T, vocab)`` log-probabilities.

    ``-inf`` for an empty utterance, and for ``speech_max_logp`` when every frame's best
    token is the blank.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown warp criterion {criterion!r}; expected one of {list(CRITERIA)}")
    if logp.shape[0] == 0:
        return float("-inf")
    logp = logp.float()
    best, ids = logp.max(dim=-1)
    if criterion == "max_logp":
        return float(best.mean())
    if criterion == "speech_max_logp":
        speech = ids != blank
        return float(best[speech].mean()) if bool(speech.any()) else float("-inf")
    return float((logp.exp() * logp).sum(-1).mean())


def choose(scores: np.ndarray, groups: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
    """The factor index each utterance decodes at, from ``(n_factors, n_utterances)`` scores.

    With ``groups`` (e.g. speakers) every utterance of a group gets the factor with the best
    ``weights``-weighted mean score over the group (an utterance without a finite score at a
    factor does not count there). Ties go to the earlier factor.
    """
    scores = np.asarray(scores, dtype=float)
    if groups is None:
        return np.argmax(scores, axis=0)
    groups = np.asarray(groups)
    if len(groups) != scores.shape[1]:
        raise ValueError(f"{len(groups)} group labels for {scores.shape[1]} utterances")
    w = np.ones(scores.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    out = np.zeros(scores.shape[1], dtype=np.int64)
    for g in pd.unique(groups):
        members = groups == g
        s = scores[:, members]
        finite = np.isfinite(s)
        mean = (np.where(finite, s, 0.0) * w[members]).sum(1) / np.maximum((finite * w[members]).sum(1), 1e-12)
        mean[~finite.any(1)] = -np.inf
        out[members] = int(np.argmax(mean))
    return out


def per_voice(df: pd.DataFrame, speakers: np.ndarray) -> dict[str, float]:
    return {str(s): round(score(df[speakers == s])["wer"], 4) for s in pd.unique(speakers)}


def main() -> None:
    ap = pilot_parser(__doc__)
    ap.add_argument("--splits", nargs="+", default=["dev", "test", "test_open"])
    ap.add_argument("--factors", type=float, nargs="+", default=[0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2])
    ap.add_argument("--average", nargs="+",
                    default=["0.95,1.0,1.05", "0.9,0.95,1.0,1.05,1.1", "0.85,0.9,0.95,1.0,1.05,1.1,1.15"],
                    help="comma-separated factor sets whose posteriors are averaged (each within --factors)")
    args = ap.parse_args()
    out, manifest = start(args)
    model, tok = load_ctc_model(args.model)
    factors = sorted({float(f) for f in args.factors} | {1.0})
    k1 = factors.index(1.0)
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
        for spec in args.average:
            subset = [float(f) for f in spec.split(",")]
            avg = averaged([logps[factors.index(f)] for f in subset], subset)
            d = pd.DataFrame({"utt_id": df["utt_id"], "ref": refs, "hyp": [greedy_text(lp, tok) for lp in avg]})
            d.to_parquet(out / f"hyps_{split}_average_{len(subset)}.parquet")
            rep["chosen"][f"average {spec}"] = {
                "wer": round(score(d)["wer"], 4), "cer": round(score(d)["cer"], 4),
                "vs_no_warp": {k: round(v, 4) for k, v in paired_bootstrap(base, d).items()},
                "per_voice": per_voice(d, speakers)}
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
