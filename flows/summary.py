"""Print a one-screen summary of a pipeline run from ``metrics/*.json``.

Usage::

    python -m flows.summary [--seconds ELAPSED]

After a partial ``dvc repro`` (``scripts/run.sh align finetune``) the later stages' metrics
files are the committed run's, computed from other models: the stages ``dvc status`` reports
out of date are named instead of printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import yaml

# The stage that writes each metrics file the summary reads.
STAGE_OF = {"prepare": "prepare", "align": "align", "finetune": "finetune", "decode": "decode",
            "salad": "salad_eval", "safari": "safari", "summary": "evaluate"}


def _load_file(name: str) -> dict:
    path = Path("metrics") / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _fmt(x: object, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def stale_stages() -> set[str]:
    """Stages ``dvc status`` reports out of date (empty where DVC is not on the PATH or fails)."""
    dvc = shutil.which("dvc")
    if dvc is None:
        return set()
    done = subprocess.run([dvc, "status", "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        return set()
    try:
        changed = {name.split(":")[-1] for name in json.loads(done.stdout or "{}")}
    except json.JSONDecodeError:
        return set()
    return with_downstream(changed)


def _paths(entries: list) -> list[str]:
    # dvc.yaml lists a path either bare or as a one-key mapping to its options
    return [e if isinstance(e, str) else next(iter(e)) for e in entries]


def with_downstream(changed: set[str], dvc_yaml: Path = Path("dvc.yaml")) -> set[str]:
    """``changed`` and every stage that reads, directly or not, what one of them writes.

    ``dvc status`` names only the stages whose own deps changed; a stage downstream of them is
    out of date as well, though its deps (not yet rewritten) still match the lock."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    outs = {n: _paths(s.get("outs", []) + s.get("metrics", []) + s.get("plots", [])) for n, s in stages.items()}
    deps = {n: _paths(s.get("deps", [])) for n, s in stages.items()}
    stale = set(changed)
    grew = True
    while grew:
        written = [o for n in stale for o in outs.get(n, [])]
        more = {n for n in stages if n not in stale
                and any(d == o or d.startswith(o.rstrip("/") + "/") for d in deps[n] for o in written)}
        stale |= more
        grew = bool(more)
    return stale


def summary(seconds: int | None = None, stale: set[str] | frozenset[str] = frozenset()) -> str:
    """The summary text: corpus size, alignment accuracy, dev/test WER and CER, and (once
    their stages ran) LM beam-search WER, SALAD and SAFARI at the headline settings and the
    WER-vs-RTF front. Metrics of the stages in ``stale`` are left out and those stages named."""
    def _load(name: str) -> dict:
        return {} if STAGE_OF[name] in stale else _load_file(name)

    prep, align, ft = _load("prepare"), _load("align"), _load("finetune")
    lines = ["s6damon pipeline summary", "=" * 24]
    if prep:
        lines.append(f"corpus: {_fmt(prep.get('hours'), 2)} h, {prep.get('utterances')} utterances; "
                     + ", ".join(f"{s}: {_fmt(m['hours'], 2)} h / {m['utterances']} utts / {m['speakers']} speakers"
                                 for s, m in prep.get("splits", {}).items()))
    for backend, m in align.get("backends", {}).items():
        lines.append(f"align[{backend}]: word boundary median {_fmt(m.get('word_boundary_median_ms'), 1)} ms, "
                     f"phone boundary median {_fmt(m.get('phone_boundary_median_ms'), 1)} ms, "
                     f"within 20 ms {_fmt(m.get('within_20ms'))}, within 50 ms {_fmt(m.get('within_50ms'))}, "
                     f"failed {m.get('failed')}")
    # a split missing from the metrics is left out (the control's dev before 2026-12-07)
    for label, scores, note in (("finetuned", ft, ""),
                                ("scratch  ", ft.get("scratch", {}), "  (same budget, random init)")):
        for split in ("dev", "test", "test_open"):
            if split in scores:
                s = scores[split]
                lines.append(f"{label} {split}: WER {_fmt(s['wer'])}  CER {_fmt(s['cer'])}{note}")
    for r in _load("decode").get("results", []):
        if r["split"] == "test" and r["decoder"] == "beam_lm" and r["model"] in ("finetuned", "scratch"):
            lines.append(f"{r['model']:<9} test with LM beam search: WER {_fmt(r['wer'])}  CER {_fmt(r['cer'])}")
    salad = _load("salad").get("results", [])
    for r in salad:
        if r["method"] == "none" or abs(r["drop_ratio"] - 0.3) < 1e-9:
            lines.append(f"salad {r['method']:>15} @ {r['drop_ratio']:.1f}: test WER {_fmt(r['test_wer'])}, "
                         f"{_fmt(r['encoder_gflops'], 2)} GFLOPs, {_fmt(r['encoder_latency_ms'], 1)} ms")
    for r in _load("safari").get("results", []):
        if r["method"] in ("dense", "safari", "omp", "random") and r["flops_removed"] in (0.0, 0.5):
            lines.append(f"safari {r['method']:>8} @ {r['flops_removed']:.1f} FLOPs removed: test WER "
                         f"{_fmt(r['test_wer'])}, {_fmt(r['gflops'], 2)} GFLOPs")
    for r in _load("summary").get("rows", []):
        if r.get("pareto"):
            lines.append(f"pareto {r['model']} [{r['runtime']}]: test WER {_fmt(r['test_wer'])}, RTF {_fmt(r['rtf'], 4)}")
    left_out = sorted(stage for stage in set(STAGE_OF.values()) if stage in stale)
    if left_out:
        lines.append("out of date (not run by this dvc repro; their metrics files are an earlier run's): "
                     + ", ".join(left_out))
    if seconds is not None:
        lines.append(f"dvc repro wall time: {seconds // 60} min {seconds % 60} s")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=None)
    print(summary(parser.parse_args().seconds, stale_stages()))
