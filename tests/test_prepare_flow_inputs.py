"""The prepare flow on a user manifest: a bad file stops it naming the file, or is skipped and listed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import yaml

from s6damon import io
from s6damon.corpus.validate import BadInputError


def _write_inputs(root):
    audio = root / "inputs"
    audio.mkdir()
    t = np.arange(16000) / 16000
    tone = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sf.write(audio / "good.wav", tone, 16000)
    sf.write(audio / "stereo.wav", np.stack([tone, tone], axis=1), 16000)
    (audio / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    rows = ["path,text,speaker", "inputs/good.wav,turn on the lights,a",
            "inputs/stereo.wav,set a timer,b", "inputs/broken.wav,call mom,c"]
    (root / "corpus.csv").write_text("\n".join(rows) + "\n")


def _use_manifest(root, on_bad_input: str) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["prepare"].update(source="manifest", source_path="corpus.csv", on_bad_input=on_bad_input)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_bad_file_stops_prepare_and_names_it(prefect_server, tiny_project):
    from flows.prepare import prepare

    _write_inputs(tiny_project)
    _use_manifest(tiny_project, "error")
    with pytest.raises(BadInputError, match="stereo.wav"):
        prepare(params_path="params.yaml")
    assert not (tiny_project / "data/corpus/manifest.parquet").exists()


def test_bad_files_are_skipped_and_listed(prefect_server, tiny_project):
    from flows.prepare import prepare

    _write_inputs(tiny_project)
    _use_manifest(tiny_project, "skip")
    metrics = prepare(params_path="params.yaml")
    manifest = io.read_parquet(tiny_project / "data/corpus/manifest.parquet")
    assert len(manifest) == 1 and manifest["text"].iloc[0] == "turn on the lights"
    skipped = json.loads((tiny_project / "data/corpus/skipped.json").read_text())
    assert sorted(s["path"].split("/")[-1] for s in skipped) == ["broken.wav", "stereo.wav"]
    assert metrics["skipped"] == 2


def test_ltas_normalised_copies_feed_the_manifest(prefect_server, tiny_project):
    from flows.prepare import prepare

    _write_inputs(tiny_project)
    (tiny_project / "inputs/stereo.wav").unlink()
    (tiny_project / "inputs/broken.wav").unlink()
    rows = (tiny_project / "corpus.csv").read_text().splitlines()[:2]
    (tiny_project / "corpus.csv").write_text("\n".join(rows) + "\n")
    _use_manifest(tiny_project, "error")
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["prepare"]["ltas"] = {"enabled": True}
    (tiny_project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    metrics = prepare(params_path="params.yaml")
    manifest = io.read_parquet(tiny_project / "data/corpus/manifest.parquet")
    path = tiny_project / manifest["path"].iloc[0]
    assert path.parent.name == "wav_ltas" and path.exists()
    assert manifest["raw_path"].iloc[0] != manifest["path"].iloc[0]
    saved = json.loads((tiny_project / "data/corpus/ltas.json").read_text())
    assert saved["enabled"] and saved["lifter"] == 16 and len(saved["reference_log_power"]) == 257
    assert metrics["ltas"]["enabled"] and metrics["ltas"]["distance_db_after"] < 1.0

    # turned off again, the manifest reads the raw audio and no reference is left for export
    # (nor ground-truth timings a synthesised corpus left: this one has none)
    params["prepare"]["ltas"] = {"enabled": False}
    (tiny_project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tiny_project / "data/corpus/truth_phones.parquet").write_bytes(b"stale")
    metrics = prepare(params_path="params.yaml")
    assert not (tiny_project / "data/corpus/truth_phones.parquet").exists()
    manifest = io.read_parquet(tiny_project / "data/corpus/manifest.parquet")
    assert "wav_ltas" not in manifest["path"].iloc[0] and "raw_path" not in manifest
    assert not (tiny_project / "data/corpus/ltas.json").exists() and metrics["ltas"] == {"enabled": False}
