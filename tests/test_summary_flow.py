"""The end-of-run summary leaves out the metrics of stages DVC reports out of date."""

import json

from flows import summary as S


def _write(root, name, payload):
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics" / f"{name}.json").write_text(json.dumps(payload))


def test_stale_stages_are_named_not_printed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "finetune", {"test": {"wer": 0.5, "cer": 0.2}})
    _write(tmp_path, "salad", {"results": [{"method": "none", "drop_ratio": 0.0, "test_wer": 0.9,
                                            "encoder_gflops": 1.0, "encoder_latency_ms": 2.0}]})
    fresh = S.summary()
    assert "finetuned test: WER 0.500" in fresh and "salad" in fresh and "out of date" not in fresh
    partial = S.summary(stale={"salad_eval", "safari"})
    assert "finetuned test: WER 0.500" in partial
    assert "test WER 0.900" not in partial
    assert partial.splitlines()[-1].endswith(": safari, salad_eval")


def test_the_scratch_controls_splits_are_printed_and_older_metrics_still_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    score = {"wer": 0.5, "cer": 0.2}
    _write(tmp_path, "finetune", {"dev": score, "test": score,
                                  "scratch": {"dev": {"wer": 0.6, "cer": 0.3}, "test": {"wer": 0.7, "cer": 0.3}}})
    text = S.summary(stale=set())
    assert "scratch   dev: WER 0.600" in text and "scratch   test: WER 0.700" in text
    # metrics written before the control was scored on dev
    _write(tmp_path, "finetune", {"test": score, "scratch": {"test": {"wer": 0.7, "cer": 0.3}}})
    text = S.summary(stale=set())
    assert "scratch   test: WER 0.700" in text and "scratch   dev" not in text


def test_stale_stages_without_dvc_is_empty(monkeypatch):
    monkeypatch.setattr(S.shutil, "which", lambda name: None)
    assert S.stale_stages() == set()


def test_stages_downstream_of_a_changed_one_are_out_of_date_too():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    stale = S.with_downstream({"salad_eval"}, root / "dvc.yaml")
    assert {"salad_eval", "export", "evaluate"} <= stale  # evaluate reads the exports
    assert not stale & {"prepare", "align", "pretrain", "finetune"}
    assert S.with_downstream(set(), root / "dvc.yaml") == set()
