"""One table of every exported model: WER/CER, size, FLOPs and real-time factor per runtime.

Used by the ``evaluate`` stage. Each exported folder is scored in the runtimes it ships
(PyTorch eager always; ONNX Runtime and its int8 copy when present), one utterance at a
time (what an on-device recogniser does), and timed on the same real-speech input, every
(model, runtime) round-robin in one process (:func:`s6damon.timing.round_robin`). A folder
with an LTAS front end (``ltas.json``) has that timed in the same rounds too: a device runs it
on every utterance before the graph, so the real-time factor counts it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import torch

from s6damon.export.folder import ExportedModel, prepare_wave
from s6damon.salad.methods import dropped_flops
from s6damon.timing import round_robin, summary_ms

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
              threads: int) -> tuple[list[dict[str, Any]], dict[str, Runner]]:
    """Accuracy rows (one per runtime) of one exported model, and its runners for timing.

    Args:
        name: the model's name (its export folder's name).
        refs, waves: test transcripts and their normalised waveforms.

    Returns:
        ``(rows, runners)``: rows with ``model, runtime, test_wer, test_cer, params, threads``,
        completed by :func:`add_latency`; runtime -> runner.
    """
    params = sum(p.numel() for p in exp.model.parameters())
    if exp.detector is not None:
        params += sum(p.numel() for p in exp.detector.parameters())
    rows = []
    runs = runners(exp, threads)
    for runtime, run in runs.items():
        hyps = transcribe_each(exp, run, waves)
        rows.append({"model": name, "runtime": runtime, "test_wer": float(jiwer.wer(list(refs), hyps)),
                     "test_cer": float(jiwer.cer(list(refs), hyps)), "params": int(params), "threads": threads})
    return rows, runs


def front_end_call(exp: ExportedModel, wave: np.ndarray) -> Callable[[], np.ndarray] | None:
    """What a device does to raw audio before the graph, as one call on ``wave``: for a folder
    with an LTAS front end, the utterance's envelope estimated (with ``scope: speaker`` added
    to a running speaker mean, :meth:`ExportedModel.envelope_tracker`) and the utterance
    filtered; ``None`` for a folder without one (its graph reads raw audio)."""
    if exp.ltas is None:
        return None
    if exp.ltas.get("scope") == "speaker":
        tracker = exp.envelope_tracker()
        return lambda: exp.front_end(wave, tracker.update(wave))
    return lambda: exp.front_end(wave)


def add_latency(rows: list[dict[str, Any]], exports: dict[str, ExportedModel], runs: dict[tuple[str, str], Runner],
                timing_wave: np.ndarray, repeats: int, warmup: int = 2) -> None:
    """Time every (model, runtime) round-robin on ``timing_wave`` (batch 1) and complete the rows
    with ``gflops`` (for the tokens that reached the transformer), ``latency_ms`` and
    ``latency_p90_ms`` (the graph), ``front_end_ms`` (the folder's LTAS front end, timed in
    the same rounds; 0 without one) and ``rtf`` (graph and front end over the input seconds)."""
    seconds = len(timing_wave) / 16000
    x, n = timing_wave[None], np.array([len(timing_wave)], dtype=np.int64)
    calls: dict[tuple[str, str], Callable[[], Any]] = {key: (lambda r=run: r(x, n)) for key, run in runs.items()}
    for name, exp in exports.items():
        call = front_end_call(exp, timing_wave)
        if call is not None:
            calls[(name, "front_end")] = call
    times, last = round_robin(calls, repeats, warmup)
    for row in rows:
        key = (row["model"], row["runtime"])
        t = summary_ms(times[key])
        front = (row["model"], "front_end")
        front_ms = summary_ms(times[front])["median_ms"] if front in times else 0.0
        kept = int(np.asarray(last[key][1])[0])
        row.update(gflops=round(gflops(exports[row["model"]], seconds, kept), 4), latency_ms=t["median_ms"],
                   latency_p90_ms=t["p90_ms"], front_end_ms=front_ms,
                   rtf=(t["median_ms"] + front_ms) / 1000.0 / seconds)


def timing_input(paths: Sequence[str | Path], seconds: float) -> np.ndarray:
    """A normalised ``seconds``-long input of real test speech (utterances back to back)."""
    from s6damon.salad.methods import latency_input
    from s6damon.train.data import load_audio

    return prepare_wave(latency_input([load_audio(p) for p in paths], seconds))
