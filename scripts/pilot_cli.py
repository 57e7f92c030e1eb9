"""The command line the decode pilots share (`tta_pilot.py`, `warp_pilot.py`,
`speaker_adapt_pilot.py`, `pseudo_label_pilot.py`): which model reads which manifest, on how
many threads, into which folder. Each pilot adds its own grid to the parser.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch


def pilot_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser with the shared options: --model, --manifest, --threads, --out."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/finetuned")
    ap.add_argument("--manifest", default="data/corpus/manifest.parquet")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    return ap


def start(args: argparse.Namespace) -> tuple[Path, pd.DataFrame]:
    """Set torch's thread count, make the output folder; return it and the manifest."""
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out, pd.read_parquet(args.manifest)
