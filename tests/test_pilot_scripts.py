"""The pilot scripts' own logic: recipe overrides and the pretraining pool's exclusions."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from finetune_pilot import override  # noqa: E402
from pretrain_pilot import pool_rows  # noqa: E402

from s6damon.config import ParamsError  # noqa: E402
from s6damon.config.model import FinetuneParams, PretrainParams  # noqa: E402


def test_override_validates_and_names_the_section():
    assert override(PretrainParams(), ["steps=7"], "pretrain").steps == 7
    assert override(FinetuneParams(), ["learning_rate=0.5"]).learning_rate == 0.5
    with pytest.raises(ParamsError, match="'pretrain.steps'"):
        override(PretrainParams(), ["steps=-1"], "pretrain")
    with pytest.raises(ParamsError, match="KEY=VALUE"):
        override(FinetuneParams(), ["steps"])


def _manifest(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """A manifest of (file name, text, split, voice) rows with empty audio files beside it."""
    for name, *_ in rows:
        (path.parent / name).write_bytes(b"")
    df = pd.DataFrame([(str(path.parent / n), t, s, v, 1.0) for n, t, s, v in rows],
                      columns=["path", "text", "split", "voice", "duration"])
    df.to_parquet(path)
    return path


def test_pool_leaves_out_evaluation_texts_and_unseen_voices(tmp_path):
    evals = _manifest(tmp_path / "eval.parquet", [
        ("a.wav", "turn on the light", "train", "flite:awb"),
        ("b.wav", "call mum", "dev", "flite:awb"),             # seen voice, held-out text
        ("c.wav", "stop the timer", "dev", "espeak:en+m6"),    # unseen dev voice
        ("d.wav", "play some jazz", "test", "flite:slt"),
    ])
    extra = _manifest(tmp_path / "extra.parquet", [
        ("e.wav", "open the door", "train", "flite:awb"),
        ("f.wav", "call mum", "train", "pico:en-US"),          # an evaluation text
        ("g.wav", "lock the door", "train", "flite:slt"),      # a test voice
        ("h.wav", "dim the lamp", "train", "espeak:en+m6"),    # the unseen dev voice
        ("i.wav", "set an alarm", "dev", "pico:en-US"),        # not a train row
    ])
    pool = pool_rows([evals, extra], pd.read_parquet(evals))
    assert sorted(pool["text"]) == ["open the door", "turn on the light"]


def test_nested_overrides_are_validated():
    from finetune_pilot import override

    from s6damon.config.model import PretrainParams
    from s6damon.config.schema import ParamsError

    p = override(PretrainParams(), ["objective=hubert", "hubert.clusters=50", "hubert.temperature=0.2"], "pretrain")
    assert p.objective == "hubert" and p.hubert.clusters == 50 and p.hubert.temperature == 0.2
    with pytest.raises(ParamsError, match="'pretrain.hubert.cluster'"):
        override(PretrainParams(), ["hubert.cluster=5"], "pretrain")
    with pytest.raises(ParamsError, match="'pretrain.hubert.clusters' must be >= 2"):
        override(PretrainParams(), ["hubert.clusters=1"], "pretrain")
    with pytest.raises(ParamsError, match="'pretrain.steps' is not a section"):
        override(PretrainParams(), ["steps.x=1"], "pretrain")
