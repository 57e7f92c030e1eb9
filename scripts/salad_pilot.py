"""Finetune and score one token-dropping variant outside the pipeline, on the salad_eval recipe.

For exploring SALAD variants without changing the stage (docs/experiments/salad.md): the same
finetuned model, detector, ``salad.finetune`` budget, seed and greedy decoding as
``python -m flows.salad_eval``, after ``dvc repro salad_eval`` in the same folder. A variant
is one keep policy at one drop ratio:

- ``--method salad_<source>`` with ``--quota``: every utterance drops exactly ``ratio`` of its
  tokens, least salient first (the stage's SALAD uses one global threshold instead);
- ``--max-run N`` (with ``--quota``): a token is dropped only if that leaves no run of more
  than ``N`` adjacent dropped tokens, so every stretch of speech keeps a minimum token
  density (``N = 1``: never two neighbours dropped), while the detector still decides which
  tokens go;
- ``--rule threshold|alternate`` (SALAD): the stage's one global threshold under another
  drop rule than the detector file's (``alternate``: never two neighbours dropped); the
  threshold is re-chosen on dev for ``ratio``, on the conv features of ``--init``'s model;
- ``--merge`` / ``--no-merge``: average dropped tokens into the kept ones, or discard them
  (default: ``salad.merge_dropped``);
- ``--span K``: add to each kept token a learned vector for the number of frames it stands
  for (1..K; :class:`~s6damon.salad.dropping.SpanEmbedding`), trained with the model;
- ``--ramp F``: a drop-ratio curriculum in training — the ratio rises in ``--ramp-stages``
  equal steps (``ratio/K, 2·ratio/K, …``) over the first ``F`` of the training steps and
  stays at ``ratio`` after (SALAD's threshold for each stage chosen on dev under the
  detector's drop rule, on ``--init``'s conv features); decoding drops at ``ratio``;
- ``--recipe finetune --init models/pretrained``: drop from the start of CTC finetuning instead
  of in an adaptation of the finetuned model — the finetune stage's recipe (``finetune``: its
  steps, learning rate, trainable conv encoder) from the SSL checkpoint; compare with a
  ``scripts/finetune_pilot.py`` run of the same seed, the same training without dropping;
- ``--rechoose`` (SALAD): the threshold re-chosen on dev for ``ratio`` under the detector's
  own rule on the conv features of the model in use — ``--init``'s before training, the
  trained model's before decoding — for a model whose conv encoder is not the finetuned
  model's the detector file was calibrated on;
- any of the stage's own methods (``salad_<source>``, ``uniform``, ``random``, ``energy``,
  ``none``), to rerun a cell of the committed table.

Writes ``<out>/hyps_<split>.parquet`` and ``<out>/summary.json`` (WER/CER and achieved drop
ratio per split, training metrics) and, with ``--against NAME`` (a ``data/salad_hyps``
prefix such as ``uniform_0.3``), the paired-bootstrap WER difference on each split.

Usage::

    .venv/bin/python scripts/salad_pilot.py --method salad_alignment --ratio 0.3 --quota \\
        --max-run 1 --out /tmp/salad_spaced --against uniform_0.3
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

from flows.salad_labels import FINETUNED  # noqa: E402
from flows.salad_train import detector_path  # noqa: E402
from s6damon import io  # noqa: E402
from s6damon.config import load_params  # noqa: E402
from s6damon.model.factory import load_ctc_model  # noqa: E402
from s6damon.salad.backbone import extract_features  # noqa: E402
from s6damon.salad.baselines import n_keep  # noqa: E402
from s6damon.salad.corpus import conv_features  # noqa: E402
from s6damon.salad.detector import (DROP_RULES, SaliencyDetector, choose_threshold, load_detector,  # noqa: E402
                                    predict_proba)
from s6damon.salad.dropping import SpanEmbedding, TokenDropCTC  # noqa: E402
from s6damon.salad.fit import dev_probabilities  # noqa: E402
from s6damon.salad.methods import RatioCycle, drop_model, is_salad  # noqa: E402
from s6damon.train.data import AudioSet  # noqa: E402
from s6damon.train.evaluate import paired_bootstrap, score, transcribe  # noqa: E402
from s6damon.train.finetune import finetune  # noqa: E402

def spaced_keep(scores: np.ndarray, n_drop: int, max_run: int | None) -> np.ndarray:
    """Drop the ``n_drop`` least salient tokens, skipping any whose drop would make a run of
    more than ``max_run`` adjacent dropped tokens (None: no limit). Fewer are dropped when the
    limit allows no more.

    Args:
        scores: ``(T,)`` P(salient) of one utterance's tokens.

    Returns:
        ``(T,)`` bool keep-mask.
    """
    T = scores.size
    keep = np.ones(T, dtype=bool)
    dropped = 0
    for i in np.argsort(scores, kind="stable"):
        if dropped >= n_drop:
            break
        if max_run is not None:
            left = i
            while left > 0 and not keep[left - 1]:
                left -= 1
            right = i
            while right < T - 1 and not keep[right + 1]:
                right += 1
            if right - left + 1 > max_run:
                continue
        keep[i] = False
        dropped += 1
    return keep


@torch.no_grad()
def salience(model: torch.nn.Module, detector: SaliencyDetector, input_values: torch.Tensor,
             attention_mask: torch.Tensor | None) -> torch.Tensor:
    """``(B, T)`` P(salient) on the CPU, from a rerun of ``model``'s frozen conv encoder (the
    pilot policies' input: fine for accuracy, not for latency)."""
    feats, lengths = extract_features(model, input_values, attention_mask)
    return predict_proba(detector, feats, lengths).float().cpu()


class QuotaPolicy:
    """SALAD's detector with a per-utterance quota and an optional run-length limit, as a
    keep policy for :class:`~s6damon.salad.dropping.TokenDropCTC`."""

    def __init__(self, model: torch.nn.Module, detector: SaliencyDetector, ratio: float,
                 max_run: int | None) -> None:
        self.model, self.detector, self.ratio, self.max_run = model, detector, ratio, max_run

    def __call__(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None,
                 frame_lengths: torch.Tensor, T: int) -> torch.Tensor:
        probs = salience(self.model, self.detector, input_values, attention_mask).numpy()
        keep = torch.zeros(len(frame_lengths), T, dtype=torch.bool)
        for b, n in enumerate(frame_lengths.tolist()):
            n = int(n)
            n_drop = n - n_keep(n, self.ratio, 1)  # the baselines' count, so every method drops as many
            keep[b, :n] = torch.from_numpy(spaced_keep(probs[b, :n], n_drop, self.max_run))
        return keep.to(input_values.device)


def rechoose_thresholds(model: torch.nn.Module, detector: SaliencyDetector, dev: pd.DataFrame,
                        ratios: list[float], rule: str) -> dict[float, float]:
    """Set ``detector``'s drop rule to ``rule`` and return, for each of ``ratios``, the
    threshold at which it drops that share of the dev tokens (dev P(salient) computed as the
    salad_train stage does)."""
    feats = conv_features(model, AudioSet(dev, preload=False))
    detector.drop_rule = rule
    probs = dev_probabilities(detector, list(feats.values()))
    out = {}
    for ratio in ratios:
        out[float(ratio)] = choose_threshold(probs, ratio, rule=rule)
        print(f"{rule} threshold {out[float(ratio)]:.4f} for {ratio:g} of dev tokens")
    return out


class RatioRamp(RatioCycle):
    """A drop-ratio curriculum over one CTC model: forward call ``i`` runs
    ``nets[min(K - 1, i * K // ramp_calls)]`` — each of the ``K`` nets (rising ratios, all
    around the same model) for an equal share of the first ``ramp_calls`` calls, the last one
    after. :class:`~s6damon.salad.methods.RatioCycle` with another schedule: training calls
    forward once a step, so calls count steps; a resumed run restarts the ramp (pilots do
    not resume)."""

    def __init__(self, nets: list[TokenDropCTC], ramp_calls: int) -> None:
        super().__init__(nets)
        self.span_embedding = nets[0].span_embedding  # registered so the optimiser trains it
        self.ramp_calls = max(1, ramp_calls)

    def forward(self, *args, **kwargs):
        """The current stage's :class:`~s6damon.salad.dropping.TokenDropCTC` forward."""
        K = len(self._nets)
        net = self._nets[min(K - 1, self.calls * K // self.ramp_calls)]
        self.calls += 1
        return net(*args, **kwargs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", required=True, help="salad_<source>, uniform, random, energy or none")
    ap.add_argument("--ratio", type=float, required=True)
    ap.add_argument("--quota", action="store_true", help="SALAD: drop exactly ratio per utterance")
    ap.add_argument("--max-run", type=int, default=None, help="with --quota: longest run of dropped tokens")
    ap.add_argument("--rule", choices=DROP_RULES, default=None,
                    help="SALAD: drop rule to use instead of the detector's (threshold re-chosen on dev)")
    ap.add_argument("--merge", action=argparse.BooleanOptionalAction, default=None,
                    help="average each dropped token into the kept one before it (default: salad.merge_dropped)")
    ap.add_argument("--span", type=int, default=0,
                    help="learned span embedding over 1..K frames per kept token (0: none)")
    ap.add_argument("--ramp", type=float, default=0.0,
                    help="share of the training steps over which the drop ratio rises to --ratio (0: none)")
    ap.add_argument("--ramp-stages", type=int, default=4, help="with --ramp: number of equal ratio steps")
    ap.add_argument("--init", type=Path, default=FINETUNED,
                    help="checkpoint folder training starts from (default: the finetuned model)")
    ap.add_argument("--recipe", choices=("salad", "finetune"), default="salad",
                    help="training recipe: salad.finetune (the stage's adaptation) or finetune (the finetune stage's)")
    ap.add_argument("--rechoose", action="store_true",
                    help="SALAD: re-choose the threshold on dev with the model in use, before training and before decoding")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--against", default=None, help="data/salad_hyps/<NAME>_<split>.parquet to compare with")
    args = ap.parse_args()
    if (args.quota or args.max_run is not None or args.rule or args.rechoose) and not is_salad(args.method):
        ap.error("--quota, --max-run, --rule and --rechoose apply to salad_<source> methods")
    if args.rechoose and (args.quota or args.rule or args.ramp):
        ap.error("--rechoose re-chooses the stage's threshold: not with --quota, --rule or --ramp")
    if args.quota and args.rule:
        ap.error("--quota and --rule are two policies: choose one")
    if args.max_run is not None and not args.quota:
        ap.error("--max-run needs --quota")
    if not 0.0 <= args.ramp <= 1.0 or args.ramp_stages < 1:
        ap.error("--ramp is a share of the steps in [0, 1] and --ramp-stages at least 1")
    if args.ramp and (args.quota or args.method == "none"):
        ap.error("--ramp needs a dropping method under the stage's threshold or a baseline (not --quota, not none)")

    params = load_params(args.params)
    s = params.salad
    recipe = params.finetune if args.recipe == "finetune" else s.finetune
    manifest = io.read_parquet(Path(params.prepare.out_dir) / "manifest.parquet")
    det_path = detector_path(args.method.removeprefix("salad_")) if is_salad(args.method) else None
    det, thresholds = (load_detector(det_path)[:2] if det_path else (None, {}))

    merge = s.merge_dropped if args.merge is None else args.merge
    # the ratios training drops at: a curriculum's rising stages, the last exactly --ratio
    # (it keys the threshold table)
    ramp = [args.ratio * (k + 1) / args.ramp_stages for k in range(args.ramp_stages - 1)] if args.ramp else []
    train_ratios = [*ramp, args.ratio]
    # SALAD thresholds the detector file lacks: every ratio under another --rule, else a ramp's lower stages
    need = train_ratios if args.rule else ramp
    dev = manifest[manifest["split"] == "dev"].reset_index(drop=True)
    if det is not None and need:
        # on the conv features of the model training starts from (the finetuned model unless --init)
        thresholds.update(rechoose_thresholds(load_ctc_model(args.init)[0].eval(), det, dev,
                                              need, args.rule or det.drop_rule))

    chosen: dict[str, float] = {}  # --rechoose: the threshold for training and for decoding

    def recalibrate(model: torch.nn.Module, when: str) -> None:
        # the detector reads the conv features of the model it runs with: the threshold that
        # drops `ratio` of dev tokens moves when those features are not the finetuned model's
        print(f"threshold {when}:", end=" ")
        thresholds.update(rechoose_thresholds(model.eval(), det, dev, [args.ratio], det.drop_rule))
        chosen[when] = thresholds[float(args.ratio)]

    if args.rechoose:
        recalibrate(load_ctc_model(args.init)[0], "training")

    # one table for training and decoding (made at the first wrap): the saved CTC model does not hold it
    span: SpanEmbedding | None = None

    def wrap(model: torch.nn.Module, ratio: float | None = None) -> TokenDropCTC:
        nonlocal span
        ratio = args.ratio if ratio is None else ratio
        if args.span > 0 and span is None:
            span = SpanEmbedding(args.span, model.config.hidden_size)
        if args.quota:
            net = TokenDropCTC(model, policy=QuotaPolicy(model, det, ratio, args.max_run), merge=merge)
        else:
            net = drop_model(model, args.method, ratio, detector=det,
                             threshold=thresholds.get(float(ratio)), seed=params.seed, merge=merge)
        net.span_embedding = span
        return net

    def train_wrap(model: torch.nn.Module) -> torch.nn.Module:
        if not args.ramp:
            return wrap(model)
        return RatioRamp([wrap(model, r) for r in train_ratios], round(args.ramp * s.finetune.steps))

    args.out.mkdir(parents=True, exist_ok=True)
    train = manifest[manifest["split"] == "train"].reset_index(drop=True)
    tag = f"pilot {args.method}@{args.ratio:g}" + (f" ramp {args.ramp:g}/{args.ramp_stages}" if args.ramp else "")
    result = finetune(args.init, params.model, recipe, train, None, args.out / "model", args.out / "checkpoints",
                      seed=params.seed, threads=params.threads, wrap=train_wrap, tag=tag)
    model, tok = load_ctc_model(args.out / "model")
    if args.rechoose:
        recalibrate(model, "decoding")
    if span is not None:
        torch.save(span.state_dict(), args.out / "span.pt")
    summary = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "merge": merge, "drop_rule": getattr(det, "drop_rule", None), "rechosen_thresholds": chosen,
               "train": result["metrics"], "splits": {}}
    for split in ("dev", *s.eval_splits):
        net = wrap(model)
        hyps = transcribe(net, tok, manifest[manifest["split"] == split].reset_index(drop=True))
        io.write_parquet(args.out / f"hyps_{split}.parquet", hyps)
        row = {**score(hyps), "achieved_drop_ratio": net.stats["drop_ratio"], "fallbacks": net.stats["fallbacks"]}
        ref = Path("data/salad_hyps") / f"{args.against}_{split}.parquet"
        if args.against and ref.exists():
            row["vs_" + args.against] = paired_bootstrap(io.read_parquet(ref), hyps)
        summary["splits"][split] = row
        print(split, json.dumps(row))
    io.write_json(args.out / "summary.json", summary)


if __name__ == "__main__":
    main()
