"""Parity of every export with the PyTorch-masked model: identical greedy transcripts.

Each utterance runs alone (batch 1, the deployed ``transcribe(wav)`` case) through

- ``pytorch_masked``: the source model with its mask applied by hooks
  (:func:`s6damon.pruning.masks.apply_masks`) and SALAD dropping by
  :func:`s6damon.salad.dropping.drop_forward` — the reference;
- every runner given (``pytorch_exported``, ``torchscript``, ``onnxruntime`` …).

Transcripts must be identical and kept-token counts equal; the largest absolute logit
difference to the reference is reported per runtime. int8 runners are compared the same
way but only reported (quantisation changes numbers by design).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from s6damon.errors import InputError
from s6damon.export.folder import Reference, prepare_wave

Runner = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class ParityError(InputError, RuntimeError):
    """An export transcribes an utterance differently from the PyTorch-masked model."""


@torch.no_grad()
def reference_logits(ref: Reference, wave: np.ndarray) -> tuple[np.ndarray, int]:
    """``((T', V) logits, kept tokens)`` of one normalised utterance through the masked model."""
    from s6damon.salad.dropping import drop_forward

    x = torch.from_numpy(np.asarray(wave, dtype=np.float32))[None]
    out = drop_forward(ref.model, x, detector=ref.detector, threshold=ref.threshold, apply_spec_augment=False,
                       merge=ref.merge)
    n = int(out.lengths[0])
    return out.logits[0, :n].numpy(), n


def _decode(tokenizer, logits: np.ndarray) -> str:
    return tokenizer.decode(logits.argmax(-1).tolist()).strip()


def check_parity(ref: Reference, runners: Mapping[str, Runner], waves: Mapping[str, np.ndarray], *,
                 max_logit_diff: float | None = None, report_only: Mapping[str, Runner] | None = None) -> dict:
    """Compare every runner with the PyTorch-masked reference on every utterance.

    Args:
        ref: the reference model, mask, detector and tokenizer (:func:`~s6damon.export.folder.load_reference`).
        runners: name → runner that must agree exactly in transcripts.
        waves: utterance id → raw 16 kHz waveform (normalised here, as in ``transcribe``).
        max_logit_diff: also fail when a runner's logits differ by more than this.
        report_only: name → runner compared but never failing (int8 models).

    Returns:
        ``{"utterances", "runtimes", "transcripts_identical", "max_abs_logit_diff": {name: x},
        "kept_token_share", "report_only": {name: {"max_abs_logit_diff", "transcript_agreement"}}}``.

    Raises:
        ParityError: naming the first utterance and runtime that disagree.
    """
    diffs = {name: 0.0 for name in runners}
    loose = {name: {"max_abs_logit_diff": 0.0, "same": 0} for name in (report_only or {})}
    kept = frames = 0
    for utt, raw in waves.items():
        wave = prepare_wave(raw)
        want_logits, want_n = reference_logits(ref, wave)
        want = _decode(ref.tokenizer, want_logits)
        kept += want_n
        frames += int(ref.model._get_feat_extract_output_lengths(torch.tensor(len(wave))))
        x, n = wave[None], np.array([len(wave)], dtype=np.int64)
        for name, runner in runners.items():
            logits, lengths = runner(x, n)
            got_n = int(lengths[0])
            if got_n != want_n:
                raise ParityError(f"utterance {utt}: {name} keeps {got_n} tokens, the PyTorch-masked model {want_n}")
            got = _decode(ref.tokenizer, logits[0, :got_n])
            if got != want:
                raise ParityError(f"utterance {utt}: {name} transcribes {got!r}, the PyTorch-masked model {want!r}")
            diff = float(np.abs(logits[0, :got_n] - want_logits).max()) if got_n else 0.0
            if max_logit_diff is not None and diff > max_logit_diff:
                raise ParityError(f"utterance {utt}: {name} logits differ by {diff:.3g} > {max_logit_diff:g}")
            diffs[name] = max(diffs[name], diff)
        for name, runner in (report_only or {}).items():
            logits, lengths = runner(x, n)
            got_n = int(lengths[0])
            rec = loose[name]
            rec["same"] += int(_decode(ref.tokenizer, logits[0, :got_n]) == want)
            if got_n == want_n and got_n:
                rec["max_abs_logit_diff"] = max(rec["max_abs_logit_diff"],
                                                float(np.abs(logits[0, :got_n] - want_logits).max()))
    count = len(waves)
    return {
        "utterances": count,
        "runtimes": ["pytorch_masked", *runners],
        "transcripts_identical": True,
        "max_abs_logit_diff": diffs,
        "kept_token_share": kept / frames if frames else float("nan"),
        "report_only": {name: {"max_abs_logit_diff": r["max_abs_logit_diff"],
                               "transcript_agreement": r["same"] / count if count else float("nan")}
                        for name, r in loose.items()},
    }
