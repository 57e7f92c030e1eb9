"""The token-dropping methods SALAD is compared with, built as one kind of model.

Every method — SALAD with a detector trained on either label source, and the uniform,
random, energy and no-dropping baselines — is a :class:`~s6damon.salad.dropping.TokenDropCTC`
around the same finetuned CTC model, differing only in how the keep-mask is chosen. So
training, decoding, FLOP counting and latency measurement are the same code for all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from s6damon.model.frames import SAMPLE_RATE, conv_layout, num_frames
from s6damon.pruning.flops import flops_from_sizes, model_sizes
from s6damon.salad.baselines import BaselinePolicy
from s6damon.salad.detector import SaliencyDetector, detector_flops, load_detector
from s6damon.salad.dropping import TokenDropCTC
from s6damon.timing import round_robin, summary_ms


def is_salad(method: str) -> bool:
    """Whether ``method`` uses a trained detector (``salad_<source>``)."""
    return method.startswith("salad_")


def drop_model(model: nn.Module, method: str, drop_ratio: float, *, detector: SaliencyDetector | None = None,
               threshold: float | None = None, seed: int = 0, merge: bool = False) -> TokenDropCTC:
    """Wrap a CTC model so its transformer sees only the tokens ``method`` keeps.

    Args:
        model: ``Wav2Vec2ForCTC`` / ``HubertForCTC``.
        method: ``salad_alignment``, ``salad_ctc``, ``uniform``, ``random``, ``energy`` or ``none``.
        drop_ratio: share of tokens dropped (the detector's ``threshold`` was chosen for it).
        detector, threshold: required for SALAD methods.
        seed: seed of the ``random`` baseline.
        merge: average dropped tokens into the kept ones (see
            :func:`~s6damon.salad.dropping.drop_forward`) instead of discarding them.
    """
    if is_salad(method):
        if detector is None or threshold is None:
            raise ValueError(f"{method} needs a detector and its threshold")
        return TokenDropCTC(model, detector=detector, threshold=threshold, merge=merge)
    return TokenDropCTC(model, policy=BaselinePolicy.for_model(method, drop_ratio, model.config, seed=seed), merge=merge)


class RatioCycle(nn.Module):
    """One method's token dropping at several drop ratios, a different ratio each training step.

    Shared adaptation (``salad.shared_adaptation``): instead of one finetuning run per
    (method, ratio), one run per method learns to read the sequence shortened at every ratio
    of the list — forward call ``i`` drops at ``ratios[i % len(ratios)]`` — and the one model
    is then evaluated at each ratio. The models of ``nets`` all wrap the same CTC model (and
    share one detector), so the parameters are that model's; only the keep rule differs.
    After a resumed run the cycle restarts at the first ratio (the call counter is not
    checkpointed), which shifts which steps use which ratio — a minor effect.

    Args:
        nets: one :class:`~s6damon.salad.dropping.TokenDropCTC` per ratio, around one model.
    """

    def __init__(self, nets: list[TokenDropCTC]) -> None:
        super().__init__()
        if not nets or any(n.model is not nets[0].model for n in nets):
            raise ValueError("RatioCycle needs at least one TokenDropCTC, all around the same model")
        self.model = nets[0].model
        self.detector = nets[0].detector  # registered so .to(device) moves it; never trained
        self._nets = list(nets)  # a plain list: the shared model is registered once, above
        self.calls = 0

    @property
    def config(self):
        """The wrapped model's config."""
        return self.model.config

    def train(self, mode: bool = True) -> "RatioCycle":
        super().train(mode)
        for net in self._nets:
            net.train(mode)  # each keep policy's own training flag, detector kept in eval
        return self

    def forward(self, *args, **kwargs):
        """The next ratio's :meth:`TokenDropCTC.forward <s6damon.salad.dropping.TokenDropCTC.forward>`."""
        net = self._nets[self.calls % len(self._nets)]
        self.calls += 1
        return net(*args, **kwargs)


@dataclass(frozen=True)
class DropWrap:
    """``model -> drop_model(model, method, ratio, ...)`` for one ratio, or a
    :class:`RatioCycle` over several, with the detector read once from a file.

    A picklable ``wrap`` for :func:`s6damon.train.finetune.finetune`, so a run can train in a
    process of its own (:func:`s6damon.parallel.call_in_subprocess`); evaluation builds the
    one-ratio model of the ratio it decodes at.
    """

    method: str
    ratios: tuple[float, ...]
    detector_path: str | Path | None = None  # a saved detector (SALAD methods): its threshold per ratio is used
    seed: int = 0
    merge: bool = False

    def __call__(self, model: nn.Module) -> TokenDropCTC | RatioCycle:
        if not self.ratios:
            raise ValueError("DropWrap needs at least one drop ratio")
        det, thresholds = None, {}
        if is_salad(self.method):
            det, thresholds, _ = load_detector(self.detector_path)
            missing = [r for r in self.ratios if float(r) not in thresholds]
            if missing:
                raise ValueError(f"{self.detector_path}: no threshold for drop ratios {missing} "
                                 f"(it has {sorted(thresholds)}; rerun salad_train with them)")
        nets = [drop_model(model, self.method, r, detector=det, threshold=thresholds.get(float(r)), seed=self.seed,
                           merge=self.merge) for r in self.ratios]
        return nets[0] if len(nets) == 1 else RatioCycle(nets)


def dropped_flops(model: nn.Module, seconds: float, num_tokens: int, detector: SaliencyDetector | None = None,
                  include_lm_head: bool = False) -> int:
    """FLOPs of one pass on ``seconds`` of audio when ``num_tokens`` reach the transformer.

    The conv encoder and feature projection see every frame; the positional conv, the
    transformer (and the CTC head, if included) only the kept tokens; a SALAD detector adds
    its own cost on every frame.
    """
    frames = num_frames(round(seconds * SAMPLE_RATE), *conv_layout(model.config))
    flops = flops_from_sizes(model_sizes(model), seconds, num_tokens=num_tokens,
                             include_lm_head=include_lm_head)["total"]
    return flops + (detector_flops(detector, int(frames)) if detector is not None else 0)


def encoder_gflops(model: nn.Module, keep_ratio: float, seconds: float,
                   detector: SaliencyDetector | None = None) -> dict[str, float]:
    """Encoder GFLOPs on a ``seconds``-long input when ``keep_ratio`` of the tokens are kept
    (see :func:`dropped_flops`).

    Returns:
        ``{"gflops", "dense_gflops", "detector_gflops", "flop_reduction"}`` (reduction =
        dense / dropped).
    """
    frames = num_frames(round(seconds * SAMPLE_RATE), *conv_layout(model.config))
    dense = dropped_flops(model, seconds, int(frames))
    total = dropped_flops(model, seconds, round(keep_ratio * frames), detector)
    det = detector_flops(detector, int(frames)) if detector is not None else 0
    return {"gflops": total / 1e9, "dense_gflops": dense / 1e9, "detector_gflops": det / 1e9,
            "flop_reduction": dense / total if total else float("nan")}


def latency_input(waves: list[np.ndarray], seconds: float) -> np.ndarray:
    """A ``seconds``-long waveform made of real utterances back to back (cut to length).

    Real speech with its pauses, not noise: the detector and the energy baseline decide on
    content, so a synthetic input would not show what they keep.
    """
    if not waves:
        raise ValueError("no utterances to build the latency input from")
    need = round(seconds * SAMPLE_RATE)
    out, total = [], 0
    while total < need:
        for w in waves:
            out.append(np.asarray(w, dtype=np.float32))
            total += len(w)
            if total >= need:
                break
    return np.concatenate(out)[:need]


@torch.no_grad()
def compare_latency(nets: dict[str, TokenDropCTC], wave: np.ndarray, repeats: int,
                    warmup: int = 2) -> dict[str, dict[str, float]]:
    """Wall time of one forward pass (conv encoder, detector or policy, dropping, transformer,
    CTC head) of each model on the same utterance, in milliseconds.

    The models run round-robin — repetition ``r`` of every model before repetition ``r+1`` —
    in this one process, so slow drifts of the machine (other load, frequency) hit all of
    them alike. The caller sets the thread count.

    Returns:
        name -> ``{"median_ms", "p90_ms", "keep_ratio"}``.
    """
    x = torch.from_numpy(np.asarray(wave, dtype=np.float32))[None]
    x = (x - x.mean()) / (x.std() + 1e-7)
    modes = {name: net.training for name, net in nets.items()}
    for net in nets.values():
        net.eval()
    times, last = round_robin({name: (lambda n=net: n(x)) for name, net in nets.items()}, repeats, warmup)
    for name, net in nets.items():
        net.train(modes[name])
    return {name: {**summary_ms(times[name]),
                   "keep_ratio": float(last[name].lengths[0]) / float(last[name].frame_lengths[0])} for name in nets}
