"""The three SALAD stages end to end on the tiny profile (from a copy of the tiny spine)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import copy_spine


@pytest.fixture(scope="module")
def salad_run(tiny_spine, tmp_path_factory):
    from flows.salad_eval import salad_eval
    from flows.salad_labels import salad_labels
    from flows.salad_train import salad_train

    root = copy_spine(tiny_spine[0], tmp_path_factory.mktemp("salad") / "project")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        out = {"labels": salad_labels(params_path="params.yaml"),
               "train": salad_train(params_path="params.yaml"),
               "eval": salad_eval(params_path="params.yaml")}
    return root, out


def test_labels_cover_every_token_of_train_and_dev(salad_run):
    from s6damon import io

    root, out = salad_run
    table = io.read_parquet(root / "data/salad_labels/labels.parquet")
    manifest = io.read_parquet(root / "data/corpus/manifest.parquet")
    assert set(table["utt_id"]) == set(manifest.loc[manifest.split.isin(["train", "dev"]), "utt_id"])
    for src in ("alignment", "ctc"):
        assert all(len(v) == n for v, n in zip(table[src], table["frames"]))
    m = out["labels"]
    assert 0.0 < m["sources"]["alignment"]["train"]["drop_ratio"] < 1.0
    # the tiny profile's 4-step model may emit nothing but blanks: then every token is redundant
    assert 0.0 < m["sources"]["ctc"]["train"]["drop_ratio"] <= 1.0
    assert -1.0 <= m["agreement"]["kappa"] <= 1.0


def test_detectors_saved_with_thresholds_per_ratio(salad_run):
    from s6damon.salad.detector import load_detector

    root, out = salad_run
    for src in ("alignment", "ctc"):
        det, thresholds, _ = load_detector(root / f"models/salad_detector/detector_{src}.pt")
        assert det.drop_rule == "alternate"  # the profile's salad.detector.drop_rule
        assert set(thresholds) == {0.3, 0.5}
        assert thresholds[0.5] >= thresholds[0.3]  # dropping more needs a higher bar
        m = out["train"][src]
        assert 0.0 <= m["f1"] <= 1.0 and 0.0 < m["flops_share"] < 1.0


def test_results_table_has_every_method_and_ratio(salad_run):
    root, _ = salad_run
    metrics = json.loads((root / "metrics/salad.json").read_text())
    rows = metrics["results"]
    got = {(r["method"], r["drop_ratio"]) for r in rows}
    want = {("none", 0.0)} | {(m, r) for r in (0.3, 0.5)
                              for m in ("salad_alignment", "salad_ctc", "uniform", "random", "energy")}
    assert got == want
    for r in rows:
        for key in ("test_wer", "test_cer", "encoder_gflops", "encoder_latency_ms"):
            assert np.isfinite(r[key]), (r["method"], key)
    none = next(r for r in rows if r["method"] == "none")
    assert none["achieved_drop_ratio"] == 0.0
    for r in rows:
        if r["method"] in ("uniform", "random", "energy"):
            # baselines drop exactly the requested share per utterance (up to rounding and the floor)
            assert abs(r["achieved_drop_ratio"] - r["drop_ratio"]) < 0.1
            assert r["encoder_gflops"] < none["encoder_gflops"]
    assert {"precision", "recall", "f1", "drop_ratio"} <= set(metrics["detector"])
    assert (root / "reports/salad.md").read_text().count("\n") >= len(rows) + 2
    assert (root / "plots/salad.csv").read_text().startswith("method")
    exported = root / "models/salad/salad_alignment_0.3"
    assert (exported / "salad_detector.pt").exists() and (exported / "salad.json").exists()
    assert json.loads((exported / "salad.json").read_text())["merge"] is True  # salad.merge_dropped


def test_rerun_reuses_cached_results(salad_run, monkeypatch):
    """A second run (e.g. after a kill) takes every finetuning run from the task cache."""
    from flows.salad_eval import salad_eval

    root, out = salad_run
    monkeypatch.chdir(root)
    first = json.loads((root / "metrics/salad.json").read_text())["results"]
    again = salad_eval(params_path="params.yaml")["results"]
    assert [r["test_wer"] for r in again] == [r["test_wer"] for r in first]
    assert [r["train_seconds"] for r in again] == [r["train_seconds"] for r in first]


def test_both_adaptation_modes(salad_run, monkeypatch):
    """``salad.shared_adaptation``: one run per method serves every ratio; off, every
    (method, ratio) trains its own run. The fixture ran the profile's mode; this runs the
    other one on the same labels and detectors."""
    import yaml

    from flows.salad_eval import salad_eval

    root, out = salad_run
    monkeypatch.chdir(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    profile_mode = bool(params["salad"]["shared_adaptation"])
    params["salad"]["shared_adaptation"] = not profile_mode
    (root / "params_other_mode.yaml").write_text(yaml.safe_dump(params))
    runs = root / ".work/runs/salad"
    before = set(runs.iterdir())
    other = salad_eval(params_path="params_other_mode.yaml")
    # trained now: one run per method (5) or per (method, ratio) (10); none's run is the same
    # in both modes and comes from the task cache
    assert len(set(runs.iterdir()) - before) == (10 if profile_mode else 5)
    for metrics, shared in ((out["eval"], profile_mode), (other, not profile_mode)):
        assert metrics["shared_adaptation"] is shared
        for r in metrics["results"]:
            want = [0.0] if r["method"] == "none" else ([0.3, 0.5] if shared else [r["drop_ratio"]])
            assert r["adapted_on"] == want, (shared, r["method"], r["drop_ratio"])
