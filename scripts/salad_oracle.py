"""How much would a perfect salience detector give? Keep-masks from the forced alignment of
the evaluated split itself against the detector's and uniform dropping, on one model.

A diagnostic for SALAD (docs/experiments/salad.md), no training: each given CTC model
decodes the split (greedy, one utterance at a time) with three keep-masks that drop the
same share of its tokens, all under the "never two neighbours" rule and the same merging:

- ``oracle``: the split's own alignment labels (the ``salad_labels`` rule on the ``align``
  stage's phones and pauses: pauses and the tail of each phone redundant) — built from the
  transcript, so not deployable; every other redundant token of each run is dropped;
- ``detector``: the stage's trained detector, its threshold chosen *on this split* so that it
  drops exactly the oracle's share;
- ``uniform``: evenly spaced tokens at that share.

If the oracle decodes clearly better than the detector, a better detector can close part of
SALAD's gap; if not, *which* tokens go matters less than *how many* for this model.

Writes ``<out>/oracle.json``; run in the folder of a finished ``dvc repro``::

    .venv/bin/python scripts/salad_oracle.py --models models/finetuned models/salad/salad_alignment_0.3 \\
        --out /tmp/salad_oracle
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

from flows.salad_train import detector_path  # noqa: E402
from s6damon import io  # noqa: E402
from s6damon.config import load_params  # noqa: E402
from s6damon.model.factory import load_ctc_model  # noqa: E402
from s6damon.salad import corpus as C  # noqa: E402
from s6damon.salad.backbone import extract_features  # noqa: E402
from s6damon.salad.baselines import uniform_keep  # noqa: E402
from s6damon.salad.detector import alternate_keep, choose_threshold, load_detector, predict_proba  # noqa: E402
from s6damon.salad.dropping import drop_forward  # noqa: E402
from s6damon.train.data import AudioSet  # noqa: E402
from s6damon.train.evaluate import paired_bootstrap, score  # noqa: E402


def oracle_keep(labels: np.ndarray) -> np.ndarray:
    """Keep-mask dropping every other token of each run of label-redundant tokens."""
    p = torch.from_numpy(labels.astype(np.float64))[None]
    return alternate_keep(p, torch.tensor([labels.size]), 0.5)[0].numpy()


@torch.no_grad()
def decode(model, tok, data: AudioSet, keeps: dict[str, np.ndarray], merge: bool) -> pd.DataFrame:
    """Greedy transcript of every utterance with its given keep-mask."""
    rows = []
    for i in range(len(data)):
        utt = str(data.df.at[i, "utt_id"])
        batch = data.batch([i])
        keep = torch.from_numpy(keeps[utt])[None]
        out = drop_forward(model, batch.input_values, batch.attention_mask, keep=keep, merge=merge,
                           apply_spec_augment=False)
        ids = out.logits[0, :int(out.lengths[0])].argmax(-1).tolist()
        rows.append({"utt_id": utt, "ref": data.df.at[i, "text"], "hyp": tok.decode(ids).strip()})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", required=True, help="CTC model folders to decode with each mask")
    ap.add_argument("--split", default="test")
    ap.add_argument("--source", default="alignment", help="the detector's label source")
    ap.add_argument("--merge", action=argparse.BooleanOptionalAction, default=None,
                    help="merge dropped tokens (default: salad.merge_dropped)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    params = load_params(args.params)
    s = params.salad
    merge = s.merge_dropped if args.merge is None else args.merge
    torch.set_num_threads(params.threads)

    manifest = io.read_parquet(Path(params.prepare.out_dir) / "manifest.parquet")
    df = manifest[manifest["split"] == args.split].reset_index(drop=True)
    data = AudioSet(df, preload=False)
    model0, tok = load_ctc_model(args.models[0])
    counts = C.token_counts(data, model0.config)
    labels = C.alignment_labels(io.read_parquet("data/align/phones.parquet"), io.read_parquet("data/align/pauses.parquet"),
                                counts, C.ctc_floor(df, tok), model0.config, s.keep_per_phone, s.min_pause_ms / 1000.0)
    oracle = {u: oracle_keep(labels[u]) for u in counts}
    total = sum(counts.values())
    share = 1.0 - sum(int(k.sum()) for k in oracle.values()) / total

    det = load_detector(detector_path(args.source))[0]
    det.drop_rule = "alternate"
    probs = {}
    with torch.no_grad():
        for i in range(len(data)):
            b = data.batch([i])
            feats, lengths = extract_features(model0.eval(), b.input_values, b.attention_mask)
            probs[str(df.at[i, "utt_id"])] = predict_proba(det, feats, lengths)[0, :int(lengths[0])].numpy()
    thr = choose_threshold(list(probs.values()), share, rule="alternate")
    detected = {u: alternate_keep(torch.from_numpy(p)[None], torch.tensor([p.size]), thr)[0].numpy()
                for u, p in probs.items()}
    uniform = {u: uniform_keep(n, share) for u, n in counts.items()}
    masks = {"oracle": oracle, "detector": detected, "uniform": uniform}
    dropped = {k: 1.0 - sum(int(m.sum()) for m in v.values()) / total for k, v in masks.items()}
    print(f"{args.split}: {total} tokens; dropped share {json.dumps({k: round(v, 4) for k, v in dropped.items()})}")

    result = {"split": args.split, "merge": merge, "dropped": dropped, "detector_threshold": thr, "models": {}}
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.models:
        model, _ = load_ctc_model(path)
        model.eval()
        hyps = {k: decode(model, tok, data, v, merge) for k, v in masks.items()}
        row = {k: score(h) for k, h in hyps.items()}
        row["oracle_minus_detector"] = paired_bootstrap(hyps["detector"], hyps["oracle"])
        row["oracle_minus_uniform"] = paired_bootstrap(hyps["uniform"], hyps["oracle"])
        result["models"][str(path)] = row
        print(path, json.dumps({k: round(v["wer"], 4) for k, v in row.items() if "wer" in v}),
              "oracle-detector", json.dumps({k: round(v, 4) for k, v in row["oracle_minus_detector"].items()}))
    io.write_json(args.out / "oracle.json", result)


if __name__ == "__main__":
    main()
