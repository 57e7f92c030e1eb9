"""Tiny synthetic audio manifests and tiny-profile params for the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import yaml

from s6damon.config.model import FinetuneParams, ModelParams, PretrainParams
from s6damon.config.schema import build

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["turn on the light", "stop", "play music", "call mom", "set a timer", "what time is it"]


def tiny_params() -> tuple[ModelParams, PretrainParams, FinetuneParams]:
    """The model/pretrain/finetune sections of profiles/tiny.yaml."""
    data = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    return (build(ModelParams, data["model"], "model"), build(PretrainParams, data["pretrain"], "pretrain"),
            build(FinetuneParams, data["finetune"], "finetune"))


def make_manifest(folder: Path, n: int = 10, seed: int = 0) -> pd.DataFrame:
    """``n`` short utterances of tones + noise (0.5-1.3 s) with command-like transcripts."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        dur = float(rng.uniform(0.5, 1.3))
        t = np.arange(int(dur * 16000)) / 16000
        text = TEXTS[i % len(TEXTS)]
        wave = 0.3 * np.sin(2 * np.pi * (200 + 40 * len(text)) * t) + 0.05 * rng.standard_normal(len(t))
        path = folder / f"u{i:03d}.wav"
        sf.write(path, wave.astype(np.float32), 16000)
        rows.append({"utt_id": f"u{i:03d}", "path": str(path), "duration": len(t) / 16000, "text": text})
    return pd.DataFrame(rows)
