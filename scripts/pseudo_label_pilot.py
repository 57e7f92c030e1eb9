"""Measure speaker adaptation on pseudo-labels: CTC on a speaker's earlier utterances, each
labelled by a decoding of the decode stage, then greedy (and LM) reading of the others.

Each speaker's test utterances are dealt into ``--folds`` folds (utt_id order, as
:func:`s6damon.decode.adapt.speaker_folds`); a fold is read by the model trained with CTC on
the speaker's other folds, whose targets are the hypotheses of decoder ``--source`` from the
committed decode stage (``data/decode/hyps.parquet``; never a reference transcript). A source
whose reading of an utterance used other utterances' audio (``*_spk*``) would let the read
fold's own audio reach its model, so only per-utterance sources are allowed. Reports greedy
WER/CER (and, with ``--beam``, the LM beam search at the stage's tuned weights) with the
paired bootstrap against plain decoding. Writes ``<out>/pseudo_label.json`` and hypotheses.

Usage::

    .venv/bin/python scripts/pseudo_label_pilot.py --source beam_lm_tta --epochs 2 4 --lr 1e-4 --out /tmp/pl
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
from s6damon.decode.adapt import (adapt_emissions, adapted_parameters, adapted_to, adaptation_loss,  # noqa: E402
                                  speaker_adapted, utterance_logits)
from s6damon.decode.beam import BeamDecoder, BeamSettings, emissions  # noqa: E402
from s6damon.decode.warp import greedy_text  # noqa: E402
from s6damon.model.ctc import ctc_loss  # noqa: E402
from s6damon.model.factory import load_ctc_model, unwrap  # noqa: E402
from s6damon.pruning.model_parts import base_model  # noqa: E402
from s6damon.train.data import AudioSet  # noqa: E402
from s6damon.train.evaluate import paired_bootstrap, score  # noqa: E402


def trained_params(module: torch.nn.Module, scope: str) -> list[torch.nn.Parameter]:
    """What the pseudo-label steps update: SUTA's scopes, ``transformer`` (everything but the
    conv feature encoder) or ``all``."""
    if scope in ("norm", "norm+conv"):
        return adapted_parameters(module, scope)
    conv = {id(p) for p in base_model(module).feature_extractor.parameters()}
    return [p for p in module.parameters() if scope == "all" or id(p) not in conv]


def main() -> None:
    ap = pilot_parser(__doc__)
    ap.add_argument("--name", default="finetuned", help="the model's name in the stage's hypotheses")
    ap.add_argument("--hyps", default="data/decode/hyps.parquet", help="the decode stage's hypotheses")
    ap.add_argument("--decode-metrics", type=Path, default=Path("metrics/decode.json"),
                    help="the decode stage's metrics: its tuned LM weights, beam settings and SUTA settings")
    ap.add_argument("--lm-dir", type=Path, default=Path("data/decode"),
                    help="the decode stage's lexicon.txt and lm.arpa")
    ap.add_argument("--split", default="test")
    ap.add_argument("--source", nargs="+", default=["beam_lm_tta"])
    ap.add_argument("--epochs", type=int, nargs="+", default=[3])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-4])
    ap.add_argument("--scope", nargs="+", default=["norm+conv"])
    ap.add_argument("--ent", type=float, nargs="+", default=[0.0],
                    help="weight of SUTA's unsupervised loss added to the CTC loss")
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--beam", action="store_true", help="also decode with the stage's LM at its tuned weights")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    out, manifest = start(args)
    df = manifest[manifest["split"] == args.split].sort_values("utt_id").reset_index(drop=True)
    stage = pd.read_parquet(args.hyps)
    stage = stage[(stage["model"] == args.name) & (stage["split"] == args.split)]
    model, tok = load_ctc_model(args.model)
    module = unwrap(model)
    blank = tok.pad_token_id
    data = AudioSet(df, preload=True)
    fns = [utterance_logits(module, data, i) for i in range(len(df))]
    decode_json = json.loads(args.decode_metrics.read_text())
    tuned = decode_json["tuned"][args.name]
    decoder = None
    if args.beam:
        decoder = BeamDecoder(tok.convert_ids_to_tokens(list(range(len(tok)))), args.lm_dir / "lexicon.txt",
                              args.lm_dir / "lm.arpa",
                              BeamSettings(decode_json["beam_size"], decode_json["beam_threshold"],
                                           tuned["lm_weight"], tuned["word_score"]))

    def frame(hyps: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"utt_id": df["utt_id"], "ref": df["text"], "hyp": hyps})

    plain_lp = emissions(model, df)
    base = frame([greedy_text(lp, tok) for lp in plain_lp])
    report: dict = {"args": vars(args), "plain": score(base)}
    if decoder:
        base_lm = frame(decoder.decode_all(plain_lp))
        report["plain_beam"] = score(base_lm)
    print("plain", report["plain"], report.get("plain_beam"), flush=True)
    unsup = AdaptParams()
    sources: dict[str, pd.Series] = {}

    def source_hyps(source: str) -> pd.Series:
        """The stage's hypotheses of ``source``, or (a split the stage keeps none of, e.g. dev)
        the same decoding computed here: greedy, beam_lm or beam_lm_tta at the tuned weights."""
        rows = stage[stage["decoder"] == source]
        if len(rows):
            return rows.set_index("utt_id")["hyp"].reindex(df["utt_id"]).fillna("").reset_index(drop=True)
        if source == "greedy":
            return base["hyp"]
        if decoder is None or source not in ("beam_lm", "beam_lm_tta"):
            raise SystemExit(f"--source {source}: not in the stage's {args.split} hypotheses (--beam computes "
                             "beam_lm and beam_lm_tta)")
        lps = plain_lp if source == "beam_lm" else adapt_emissions(model, df, AdaptParams(**{
            k: v for k, v in decode_json["adapt"].items() if k in ("steps", "lr", "em_weight", "temperature", "scope")}),
            blank)
        return pd.Series(decoder.decode_all(lps))
    for source, epochs, lr, scope, ent in itertools.product(args.source, args.epochs, args.lr, args.scope, args.ent):
        if "spk" in source:
            raise SystemExit(f"--source {source}: its hypotheses used other utterances' audio")
        if source not in sources:
            sources[source] = source_hyps(source)
        src = sources[source]
        labels = [tok(t).input_ids if t.strip() else [] for t in src]
        t0 = time.time()
        params = trained_params(module, scope)

        def adapt(adapt_rows: list[int]):
            """Adapted with CTC on the labelled rows among ``adapt_rows`` (plus ``ent`` x SUTA's loss)."""
            rows = [r for r in adapt_rows if labels[r]]

            def pseudo_label_loss(i: int, logits: torch.Tensor) -> torch.Tensor:
                y = torch.tensor(labels[rows[i]])
                loss = ctc_loss(module, logits[None], y[None], torch.tensor([logits.shape[0]]))
                if ent:
                    loss = loss + ent * adaptation_loss(logits, unsup.em_weight, unsup.temperature, blank)
                return loss

            return adapted_to(module, params, [fns[r] for r in rows], AdaptParams(lr=lr), blank, epochs,
                              args.batch, args.seed, loss=pseudo_label_loss)

        logps = speaker_adapted(df, args.folds, adapt, lambda rows: emissions(model, df.iloc[rows]))
        secs = time.time() - t0
        name = f"{source}_e{epochs}_lr{lr:g}_{scope}_ent{ent:g}"
        d = frame([greedy_text(lp, tok) for lp in logps])
        d.to_parquet(out / f"hyps_{name}.parquet")
        rep = {"greedy": score(d), "vs_plain": paired_bootstrap(base, d), "seconds": round(secs, 1),
               "source_wer": score(frame(list(src)))["wer"]}
        if decoder:
            dl = frame(decoder.decode_all(logps))
            dl.to_parquet(out / f"hyps_beam_{name}.parquet")
            rep["beam"] = score(dl)
            rep["beam_vs_plain"] = paired_bootstrap(base_lm, dl)
        report[name] = rep
        print(name, {k: (round(v["wer"], 4) if isinstance(v, dict) and "wer" in v else v) for k, v in rep.items()},
              flush=True)
        (out / "pseudo_label.json").write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
