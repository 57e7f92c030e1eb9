"""One table of every exported model: WER/CER, size, FLOPs and real-time factor per runtime.

Used by the ``evaluate`` stage. Each exported folder is scored in the runtimes it ships
(PyTorch eager always; ONNX Runtime and its int8 copy when present), one utterance at a
time (what an on-device recogniser does), and timed on the same real-speech input.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import torch

from s6damon.export.folder import ExportedModel, prepare_wave
from s6damon.salad.methods import dropped_flops

Runner = Callable[[np.ndarray, np.ndarray], tuple[Any, Any]]


def runners(exp: ExportedModel, threads: int) -> dict[str, Runner]:
    """The runtimes an export folder ships: ``eager`` (PyTorch), ``onnxruntime``, ``onnxruntime-int8``."""
    from s6damon.export.runtimes import OnnxRunner

    def eager(x: np.ndarray, n: np.ndarray):
        torch.set_num_threads(threads)
        return exp.logits(torch.from_numpy(x), torch.from_numpy(n))

    out: dict[str, Runner] = {"eager": eager}
    for name, file in (("onnxruntime", "model.onnx"), ("onnxruntime-int8", "model.int8.onnx")):
        if (exp.folder / file).is_file():
            out[name] = OnnxRunner(exp.folder / file, threads=threads)
    return out


def transcribe_each(exp: ExportedModel, run: Runner, waves: Sequence[np.ndarray]) -> list[str]:
    """Greedy transcript of every (normalised) waveform, batch 1."""
    hyps = []
    for w in waves:
        logits, lengths = run(w[None], np.array([len(w)], dtype=np.int64))
        hyps += exp.decode(np.asarray(logits), np.asarray(lengths))
    return hyps


def latency_ms(run: Runner, wave: np.ndarray, repeats: int, warmup: int = 2) -> tuple[float, float, int]:
    """``(median ms, p90 ms, kept tokens)`` of one call on ``wave`` (batch 1)."""
    x, n = wave[None], np.array([len(wave)], dtype=np.int64)
    for _ in range(warmup):
        run(x, n)
    times = []
    kept = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, lengths = run(x, n)
        times.append((time.perf_counter() - t0) * 1000.0)
        kept = int(np.asarray(lengths)[0])
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.9 * len(times)))], kept


def gflops(exp: ExportedModel, seconds: float, kept_tokens: int) -> float:
    """GFLOPs of one pass on ``seconds`` of audio with ``kept_tokens`` reaching the transformer
    (detector and CTC head included)."""
    return dropped_flops(exp.model, seconds, kept_tokens, exp.detector, include_lm_head=True) / 1e9


def pareto_front(rows: list[dict[str, Any]], x: str = "rtf", y: str = "test_wer") -> list[bool]:
    """Whether each row is Pareto-optimal (no other row is at least as good in both and better in one)."""
    flags = []
    for r in rows:
        dominated = any(o is not r and o[x] <= r[x] and o[y] <= r[y] and (o[x] < r[x] or o[y] < r[y]) for o in rows)
        flags.append(not dominated)
    return flags


def summarise(name: str, exp: ExportedModel, refs: Sequence[str], waves: Sequence[np.ndarray],
              timing_wave: np.ndarray, repeats: int, threads: int) -> list[dict[str, Any]]:
    """One row per runtime of one exported model (keys documented in the README).

    Args:
        name: the model's name (its export folder's name).
        refs, waves: test transcripts and their normalised waveforms.
        timing_wave: the normalised input the latency is measured on.
    """
    seconds = len(timing_wave) / 16000
    params = sum(p.numel() for p in exp.model.parameters())
    if exp.detector is not None:
        params += sum(p.numel() for p in exp.detector.parameters())
    rows = []
    for runtime, run in runners(exp, threads).items():
        hyps = transcribe_each(exp, run, waves)
        med, p90, kept = latency_ms(run, timing_wave, repeats)
        rows.append({"model": name, "runtime": runtime, "test_wer": float(jiwer.wer(list(refs), hyps)),
                     "test_cer": float(jiwer.cer(list(refs), hyps)), "params": int(params),
                     "gflops": round(gflops(exp, seconds, kept), 4), "latency_ms": med, "latency_p90_ms": p90,
                     "rtf": med / 1000.0 / seconds, "threads": threads})
    return rows


def timing_input(paths: Sequence[str | Path], seconds: float) -> np.ndarray:
    """A normalised ``seconds``-long input of real test speech (utterances back to back)."""
    from s6damon.salad.methods import latency_input
    from s6damon.train.data import load_audio

    return prepare_wave(latency_input([load_audio(p) for p in paths], seconds))
