"""The export stage end to end on the tiny profile (from a copy of the tiny spine)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.conftest import copy_spine


def _fake_salad_folder(root):
    """models/salad/salad_alignment_0.3 from the finetuned model + a random detector (when the
    SALAD stages have not run in this copy)."""
    from s6damon.model.factory import load_ctc_model
    from s6damon.salad.detector import SaliencyDetector, save_detector

    dest = root / "models/salad/salad_alignment_0.3"
    if dest.exists():
        return dest
    model, _ = load_ctc_model(root / "models/finetuned")
    shutil.copytree(root / "models/finetuned", dest)
    torch.manual_seed(0)
    det = SaliencyDetector(model.config.conv_dim[-1], hidden=8, kernel_size=3, num_layers=1)
    save_detector(dest / "salad_detector.pt", det, {0.3: 0.5})
    (dest / "salad.json").write_text(json.dumps({"method": "salad_alignment", "drop_ratio": 0.3, "threshold": 0.5}))
    return dest


def _fake_safari_folder(root):
    """models/safari/safari50: the finetuned weights + a mask.json (what SAFARI will write)."""
    from s6damon.model.factory import load_ctc_model
    from s6damon.pruning import StructuredMask

    dest = root / "models/safari/safari50"
    model, _ = load_ctc_model(root / "models/finetuned")
    shutil.copytree(root / "models/finetuned", dest)
    mask = StructuredMask.full(model)
    mask.heads[0][0] = False
    mask.neurons[0][::2] = False
    mask.conv_channels[1][:4] = False
    (dest / "mask.json").write_text(json.dumps(mask.to_dict()))
    return dest


@pytest.fixture(scope="module")
def export_run(tiny_spine, tmp_path_factory):
    import yaml

    from flows.export import export

    root = copy_spine(tiny_spine[0], tmp_path_factory.mktemp("export") / "project")
    salad = _fake_salad_folder(root)
    _fake_safari_folder(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["export"]["salad_with_masked"] = str(salad.relative_to(root))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        metrics = export(params_path="params.yaml")
    return root, metrics


def test_every_model_exported_with_identical_transcripts(export_run):
    root, metrics = export_run
    assert set(metrics["models"]) == {"finetuned", "salad_alignment_0.3", "safari50", "safari50+salad_alignment_0.3"}
    assert metrics["all_identical"] and metrics["utterances"] == 4
    on_disk = json.loads((root / "metrics/export.json").read_text())
    assert on_disk["models"].keys() == metrics["models"].keys()
    for name, m in metrics["models"].items():
        p = m["parity"]
        assert p["runtimes"] == ["pytorch_masked", "pytorch_exported", "torchscript", "onnxruntime"]
        assert max(p["max_abs_logit_diff"].values()) < 1e-3, name
        assert set(p["report_only"]) == {"pytorch_int8", "onnxruntime_int8"}
        for f in ("config.json", "model.safetensors", "model.ts", "model.onnx", "model.int8.onnx", "export.json"):
            assert (root / "models/export" / name / f).is_file(), (name, f)
    assert metrics["models"]["safari50"]["param_ratio"] < 1.0
    assert metrics["models"]["finetuned"]["param_ratio"] == 1.0
    assert metrics["models"]["salad_alignment_0.3"]["parity"]["kept_token_share"] < 1.0
    assert (root / "models/export/safari50+salad_alignment_0.3/salad_detector.pt").is_file()


def test_exported_folder_transcribes_a_test_file(export_run):
    from s6damon import io
    from s6damon.export import load_exported

    root, _ = export_run
    test = io.read_parquet(root / "data/corpus/manifest.parquet").query("split == 'test'").iloc[0]
    exported = load_exported(root / "models/export/safari50+salad_alignment_0.3")
    text = exported.transcribe(root / test["path"])
    assert isinstance(text, str)
    assert exported.detector is not None and exported.model.config.conv_dim[1] == 12


def test_evaluate_gathers_every_export_and_runtime(export_run, monkeypatch):
    from flows.evaluate import evaluate

    root, exported = export_run
    monkeypatch.chdir(root)
    metrics = evaluate(params_path="params.yaml")
    rows = metrics["rows"]
    assert {r["model"] for r in rows} == set(exported["models"])
    assert {r["runtime"] for r in rows} == {"eager", "onnxruntime", "onnxruntime-int8"}
    by = {(r["model"], r["runtime"]): r for r in rows}
    for name in exported["models"]:
        # parity: ONNX Runtime float transcribes exactly like eager, so the WER is the same
        assert by[(name, "onnxruntime")]["test_wer"] == pytest.approx(by[(name, "eager")]["test_wer"])
        # the tiny profile's corpus is LTAS-normalised, so every folder carries the front end, and
        # the real-time factor counts its time beside the graph's
        assert (root / "models/export" / name / "ltas.json").is_file()
        for runtime in ("eager", "onnxruntime", "onnxruntime-int8"):
            r = by[(name, runtime)]
            assert r["front_end_ms"] > 0
            assert r["rtf"] == pytest.approx((r["latency_ms"] + r["front_end_ms"]) / 1000 / metrics["input_seconds"])
    assert by[("safari50", "eager")]["params"] < by[("finetuned", "eager")]["params"]
    assert by[("safari50", "eager")]["gflops"] < by[("finetuned", "eager")]["gflops"]
    assert any(r["pareto"] for r in rows)
    assert json.loads((root / "metrics/summary.json").read_text())["rows"] == rows
    assert (root / "plots/summary.csv").read_text().startswith("model,runtime,rtf,test_wer")


def test_pareto_front():
    from s6damon.export.summary import pareto_front

    rows = [{"rtf": 0.1, "test_wer": 0.5}, {"rtf": 0.2, "test_wer": 0.4}, {"rtf": 0.3, "test_wer": 0.45},
            {"rtf": 0.1, "test_wer": 0.6}]
    assert pareto_front(rows) == [True, True, False, False]
