"""Every stage end to end on the tiny profile, in-process, against one Prefect server."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest



@pytest.fixture(scope="module")
def pipeline(tiny_spine):
    """prepare → align → pretrain → finetune, run once per test session (see conftest)."""
    return tiny_spine


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
    # the tiny profile renders an unlabeled split (pretraining audio) by voices not in train
    unlabeled = m[m.split == "unlabeled"]
    assert set(unlabeled["voice"]) == {"pico:en-GB", "festival:fi-lj"}
    assert not set(unlabeled["text"]) & set(m.loc[m.split != "unlabeled", "text"])
    assert metrics["splits"]["unlabeled"]["utterances"] == len(unlabeled)


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
    m = io.read_parquet(root / "data/corpus/manifest.parquet")
    aligned = set(io.read_parquet(root / "data/align/words.parquet")["utt_id"])
    assert aligned and not aligned & set(m.loc[m.split == "unlabeled", "utt_id"])  # pretraining audio only


def test_pretrain_saves_loadable_checkpoint(pipeline):
    from s6damon.model.factory import load_ctc_model

    root, _ = pipeline
    model, tokenizer = load_ctc_model(root / "models/pretrained")
    assert model.config.vocab_size == len(tokenizer)
    assert (root / "plots/pretrain.csv").read_text().startswith("step")
    metrics = _metrics(root, "pretrain")
    hours = metrics["audio_hours_per_split"]
    assert set(hours) == {"train", "unlabeled"} and hours["train"] > 0 and hours["unlabeled"] > 0
    # the dev split's voices in the pool and its unseen voice, scored apart at the end
    assert all(math.isfinite(metrics[f"final_dev_{s}_loss"]) for s in ("seen", "unseen"))
    assert "dev_unseen_loss" in (root / "plots/pretrain.csv").read_text().splitlines()[0]


def test_pretrain_stage_runs_the_hubert_objective(pipeline, tmp_path, monkeypatch):
    """``pretrain.objective: hubert`` through the stage: a loadable model with its targets, and
    metrics saying how phonetic those targets are on the pretraining audio and the test voices."""
    import yaml

    from flows.pretrain import pretrain
    from s6damon import io
    from s6damon.model.factory import load_ctc_model
    from tests.conftest import copy_spine
    from s6damon.ssl.hubert import KMEANS_FILE

    root = copy_spine(pipeline[0], tmp_path / "project")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["pretrain"]["objective"] = "hubert"
    (root / "hubert.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(root)
    metrics = pretrain(params_path="hubert.yaml")
    assert metrics == _metrics(root, "pretrain")
    assert metrics["objective"] == "hubert" and 0.0 <= metrics["final_masked_accuracy"] <= 1.0
    assert metrics["kmeans_frames"] >= params["pretrain"]["hubert"]["clusters"]
    assert (root / "models/pretrained" / KMEANS_FILE).is_file()
    load_ctc_model(root / "models/pretrained")
    targets = metrics["targets"]
    assert set(targets) == {"pretrain_audio", "test"}
    for name, t in targets.items():
        assert t["frames"] > 0 and 0.0 <= t["pnmi"] <= 1.0, name
    manifest = io.read_parquet(root / "data/corpus/manifest.parquet")
    assert set(targets["test"]["per_voice"]) == set(manifest.loc[manifest.split == "test", "voice"])  # all timed


def test_finetune_reports_wer_for_both_models(pipeline):
    from s6damon import io

    root, _ = pipeline
    metrics = _metrics(root, "finetune")
    for split in ("dev", "test", "test_open"):
        assert 0.0 <= metrics[split]["wer"] and 0.0 <= metrics[split]["cer"]
    for split in ("dev", "test", "test_open"):
        assert 0.0 <= metrics["scratch"][split]["wer"]
        for model in ("finetuned", "scratch"):
            hyps = io.read_parquet(root / f"data/hyps/{model}_{split}.parquet")
            assert {"utt_id", "ref", "hyp"} <= set(hyps.columns) and len(hyps) > 0


def test_killed_finetune_resumes_from_its_last_checkpoint(pipeline, prefect_server):
    """SIGKILL the finetune flow after its first checkpoint; the re-run resumes from it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    root, _ = pipeline
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["finetune"].update(steps=60, checkpoint_every=3, eval_every=60)
    params.update(concurrent_runs=2, threads=2)  # the two runs train side by side, each in its own process
    (root / "resume.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    cmd = [sys.executable, "-m", "flows.finetune", "--params", "resume.yaml"]
    before = set(root.glob(".work/runs/finetune/*"))

    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    ckpts: list[Path] = []
    runs = params["concurrent_runs"]  # the finetuned model and its control train side by side
    while time.time() < deadline and proc.poll() is None:
        new_runs = set(root.glob(".work/runs/finetune/*")) - before
        ckpts = [c for run in new_runs for c in run.glob("checkpoints/step_*.pt")]
        if len({c.parent.parent for c in ckpts}) >= runs:  # killed once every run has a checkpoint
            break
        time.sleep(0.2)
    assert proc.poll() is None, "finetune finished before it could be killed"
    assert ckpts, "no checkpoint was written within the time limit"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # its training processes die with it: no checkpoint is written once they have had time to notice
    time.sleep(2)
    settled = {c: c.stat().st_mtime for run in set(root.glob(".work/runs/finetune/*")) - before
               for c in run.glob("checkpoints/step_*.pt")}
    time.sleep(3)
    after = {c: c.stat().st_mtime for run in set(root.glob(".work/runs/finetune/*")) - before
             for c in run.glob("checkpoints/step_*.pt")}
    assert after == settled, "a training process outlived the killed flow"

    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    train = _metrics(root, "finetune")["train"]
    assert train["resumed_from"] >= 3          # picked up the killed run's checkpoint
    assert train["steps"] == 60                # and finished the whole schedule
