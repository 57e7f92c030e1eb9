"""Every stage end to end on the tiny profile, in-process, against one Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import make_tiny_project


@pytest.fixture(scope="module")
def pipeline(prefect_server, tmp_path_factory):
    """Run prepare → align → pretrain → finetune once on the tiny profile."""
    from flows.align import align
    from flows.finetune import finetune
    from flows.prepare import prepare
    from flows.pretrain import pretrain

    root = make_tiny_project(tmp_path_factory.mktemp("tiny") / "project")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        results = {
            "prepare": prepare(params_path="params.yaml"),
            "align": align(params_path="params.yaml"),
            "pretrain": pretrain(params_path="params.yaml"),
            "finetune": finetune(params_path="params.yaml"),
        }
    return root, results


def _metrics(root: Path, name: str) -> dict:
    return json.loads((root / "metrics" / f"{name}.json").read_text())


def test_prepare_writes_manifest_with_unseen_test_voices(pipeline):
    from s6damon import io

    root, _ = pipeline
    m = io.read_parquet(root / "data/corpus/manifest.parquet")
    assert list(m.columns[:6]) == ["utt_id", "speaker", "path", "duration", "text", "split"]
    assert {"train", "dev", "test", "test_open"} <= set(m["split"])
    assert m["utt_id"].is_unique
    assert all((root / p).exists() for p in m["path"])
    train_speakers = set(m.loc[m.split == "train", "speaker"])
    assert not train_speakers & set(m.loc[m.split.isin(["test", "test_open"]), "speaker"])
    metrics = _metrics(root, "prepare")
    assert metrics["splits"]["train"]["utterances"] == int((m.split == "train").sum())


def test_align_writes_tables_and_quality(pipeline):
    from s6damon import io

    root, _ = pipeline
    for table in ("phones", "words", "pauses"):
        df = io.read_parquet(root / "data/align" / f"{table}.parquet")
        assert {"utt_id", "start", "end"} <= set(df.columns)
        assert (df["end"] >= df["start"]).all()
    metrics = _metrics(root, "align")
    for key in ("word_boundary_median_ms", "phone_boundary_median_ms", "within_20ms", "within_50ms", "failed"):
        assert key in metrics
    assert set(metrics["backends"]) >= {"kaldi", "pocketsphinx"}
    assert 0.0 <= metrics["within_50ms"] <= 1.0


def test_pretrain_saves_loadable_checkpoint(pipeline):
    from s6damon.model.factory import load_ctc_model

    root, _ = pipeline
    model, tokenizer = load_ctc_model(root / "models/pretrained")
    assert model.config.vocab_size == len(tokenizer)
    assert (root / "plots/pretrain.csv").read_text().startswith("step")


def test_finetune_reports_wer_for_both_models(pipeline):
    from s6damon import io

    root, _ = pipeline
    metrics = _metrics(root, "finetune")
    for split in ("dev", "test", "test_open"):
        assert 0.0 <= metrics[split]["wer"] and 0.0 <= metrics[split]["cer"]
    assert "wer" in metrics["scratch"]["test"]
    hyps = io.read_parquet(root / "data/hyps/finetuned_test.parquet")
    assert {"utt_id", "ref", "hyp"} <= set(hyps.columns) and len(hyps) > 0
