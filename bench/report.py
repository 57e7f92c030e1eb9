"""Markdown report of a benchmark run: measured speedup beside the FLOP ratio (the ideal)."""

from __future__ import annotations

from typing import Any

RUNTIME_NAMES = {"eager": "eager", "torchscript": "TorchScript", "onnxruntime": "ONNX Runtime"}
TARGET = "safari50+salad30"


def _index(rows: list[dict]) -> dict[tuple, dict]:
    return {(r["scale"], r["threads"], r["model"], r["runtime"]): r for r in rows}


def _models(rows: list[dict], scale: str) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        if r["scale"] == scale:
            seen.setdefault(r["model"], None)
    return list(seen)


def scale_table(rows: list[dict], scale: str, threads: int) -> str:
    """One table: every model of a scale on ``threads`` threads, the three runtimes side by side.

    ``FLOP ratio`` = dense GFLOPs / model GFLOPs (the ideal speedup); ``×`` after a latency is
    the measured speedup over ``dense`` in the same runtime and thread count.
    """
    idx = _index(rows)
    runtimes = [rt for rt in RUNTIME_NAMES if (scale, threads, "dense", rt) in idx]
    head = ["model", "params (M)", "GFLOPs", "FLOP ratio"] + [f"{RUNTIME_NAMES[rt]} ms (×)" for rt in runtimes] + [
        "best RTF", "peak MiB " + "/".join(RUNTIME_NAMES[rt] for rt in runtimes)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    dense_flops = idx[(scale, threads, "dense", runtimes[0])]["gflops"]
    for model in _models(rows, scale):
        cells = [idx.get((scale, threads, model, rt)) for rt in runtimes]
        if not any(cells):
            continue
        first = next(c for c in cells if c)
        row = [model, f"{first['params'] / 1e6:.2f}", f"{first['gflops']:.3f}", f"{dense_flops / first['gflops']:.2f}"]
        for rt, c in zip(runtimes, cells):
            if c is None:
                row.append("–")
                continue
            dense = idx[(scale, threads, "dense", rt)]["latency_ms_median"]
            row.append(f"{c['latency_ms_median']:.1f} ({dense / c['latency_ms_median']:.2f}×)")
        row.append(f"{min(c['rtf'] for c in cells if c):.4f}")
        row.append("/".join(f"{c['peak_mem_mb']:.0f}" if c else "–" for c in cells))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def target_check(rows: list[dict], scale: str, extras: dict[str, Any]) -> str:
    """The issue's claim for ``safari50+salad30``: speedup ≥ 0.9 × FLOP ratio and ≥ 3× overall."""
    idx = _index(rows)
    out = []
    for threads in sorted({r["threads"] for r in rows if r["scale"] == scale}):
        if (scale, threads, TARGET, "eager") not in idx:
            continue
        ratio = idx[(scale, threads, "dense", "eager")]["gflops"] / idx[(scale, threads, TARGET, "eager")]["gflops"]
        for rt in RUNTIME_NAMES:
            d, m = idx.get((scale, threads, "dense", rt)), idx.get((scale, threads, TARGET, rt))
            if d and m:
                s = d["latency_ms_median"] / m["latency_ms_median"]
                verdict = "meets" if s >= 0.9 * ratio else "falls short of"
                out.append(f"- {threads} thread(s), {RUNTIME_NAMES[rt]}: measured {s:.2f}× vs FLOP ratio {ratio:.2f}× "
                           f"({s / ratio:.0%} of ideal; {verdict} the 0.9× target)")
        dense_eager = idx[(scale, threads, "dense", "eager")]["latency_ms_median"]
        best = min((r for r in rows if r["scale"] == scale and r["threads"] == threads
                    and r["model"] in (TARGET, TARGET + "-int8")), key=lambda r: r["latency_ms_median"])
        overall = dense_eager / best["latency_ms_median"]
        out.append(f"- {threads} thread(s), overall: dense eager {dense_eager:.1f} ms → {best['model']} "
                   f"{RUNTIME_NAMES[best['runtime']]} {best['latency_ms_median']:.1f} ms = {overall:.2f}× "
                   f"({'meets' if overall >= 3 else 'falls short of'} the 3× target)")
    ex = extras.get(TARGET)
    if ex:
        out.append(f"- {TARGET}: the transformer sees {ex['keep_ratio']:.0%} of the tokens; the conv feature encoder "
                   f"(every frame, no token dropping) is {ex['conv_share']:.0%} of its FLOPs — a floor that SALAD and "
                   f"head/neuron pruning do not reduce, only conv-channel pruning (see `safari50conv+salad30`)")
    return "\n".join(out) + "\n"


def render(results: dict[str, Any], extras: dict[str, dict[str, Any]], notes: list[str]) -> str:
    """The whole report."""
    rows, machine = results["rows"], results["machine"]
    parts = ["# Benchmark: dense vs. compressed, eager vs. TorchScript vs. ONNX Runtime\n",
             f"Machine: {machine['cpu']} ({machine['cores']} cores), torch {machine['torch']}, onnxruntime "
             f"{machine['onnxruntime']}; load average at start {machine['load_average_at_start']}. Input "
             f"{machine['input_seconds']} s, batch 1, {machine['repeats']} timed repetitions after "
             f"{machine['warmup']} warm-up, round-robin in one process. Latency = median wall time of one call "
             "(conv encoder, detector, dropping, transformer, CTC head); FLOP ratio = dense GFLOPs / model GFLOPs, "
             "the ideal speedup; `×` = measured speedup over dense in the same runtime and thread count.\n"]
    for scale in dict.fromkeys(r["scale"] for r in rows):
        parts.append(f"\n## Scale: {scale}\n")
        for threads in sorted({r["threads"] for r in rows if r["scale"] == scale}):
            parts.append(f"\n### {threads} thread(s)\n\n" + scale_table(rows, scale, threads))
        parts.append(f"\n### {TARGET}: measured vs. ideal\n\n" + target_check(rows, scale, extras.get(scale, {})))
    if notes:
        parts.append("\n## Notes\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    return "".join(parts)
