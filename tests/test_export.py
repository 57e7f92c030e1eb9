"""Export: pruned + SALAD graph equals the masked model, folder round trip, TorchScript,
ONNX with variable batch/length, int8, and the parity check's failure path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from export_models import audio, tiny_ctc, tiny_detector, unit_mask, write_folders

from s6damon.export import (
    DropGraph,
    OnnxRunner,
    ParityError,
    TorchRunner,
    check_parity,
    export_model,
    load_exported,
    load_reference,
    load_torchscript,
    quantize_onnx,
    quantize_torch,
    to_onnx,
    to_torchscript,
)
from s6damon.model.factory import CheckpointError
from s6damon.pruning import apply_masks, materialise
from s6damon.salad.dropping import drop_forward


@pytest.mark.parametrize("variant,which", [("w2v2-layer-stable", k) for k in ("heads", "neurons", "conv_channels", "layer")]
                         + [("w2v2-group", "all"), ("hubert", "all")])
def test_dropping_graph_of_pruned_model_equals_masked_model(variant, which):
    model, _ = tiny_ctc(variant)
    det, thr = tiny_detector(model)
    mask = unit_mask(model, which)
    small = materialise(model, mask)
    apply_masks(model, mask)
    x = audio(12000, seed=5)
    with torch.no_grad():
        want = drop_forward(model, x, detector=det, threshold=thr, apply_spec_augment=False)
        logits, lengths = DropGraph(small, det, thr)(x, torch.tensor([x.shape[1]]))
    assert int(lengths[0]) == int(want.lengths[0]) < int(want.frame_lengths[0])  # tokens were dropped
    torch.testing.assert_close(logits, want.logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("rule,merge", [("alternate", False), ("threshold", True), ("alternate", True)])
def test_graph_follows_the_drop_rule_and_merging(rule, merge):
    """The deployed graph applies the detector's drop rule and merging exactly as training did,
    on a padded batch as on single utterances."""
    model, _ = tiny_ctc()  # layer-norm conv encoder: padding does not change its frames
    det, thr = tiny_detector(model, drop_rule=rule)
    small = materialise(model, unit_mask(model, "all"))
    apply_masks(model, unit_mask(model, "all"))
    graph = DropGraph(small, det, thr, merge=merge)
    x, n = _batch([16000, 9000, 12000], seed=2)
    with torch.no_grad():
        logits, lengths = graph(torch.from_numpy(x), torch.from_numpy(n))
        for b, k in enumerate(n.tolist()):
            want = drop_forward(model, torch.from_numpy(x[b:b + 1, :k]), detector=det, threshold=thr,
                                apply_spec_augment=False, merge=merge)
            assert int(lengths[b]) == int(want.lengths[0]) < int(want.frame_lengths[0])
            if rule == "alternate":
                keep = want.keep[0, :int(want.frame_lengths[0])]
                assert not bool((~keep[1:] & ~keep[:-1]).any())  # never two neighbours dropped
            torch.testing.assert_close(logits[b:b + 1, :int(lengths[b])], want.logits, atol=1e-5, rtol=0)
    with torch.no_grad():  # merging changes what the transformer sees
        other = DropGraph(small, det, thr, merge=not merge)(torch.from_numpy(x), torch.from_numpy(n))[0]
    assert (other - logits).abs().max() > 1e-3


def test_graph_without_detector_equals_plain_model():
    model, _ = tiny_ctc()
    x = audio(9000)
    with torch.no_grad():
        logits, lengths = DropGraph(model)(x, torch.tensor([9000]))
        torch.testing.assert_close(logits, model(x).logits, atol=1e-5, rtol=0)
    assert int(lengths[0]) == logits.shape[1]


def test_every_utterance_keeps_a_token():
    model, _ = tiny_ctc()
    det, _ = tiny_detector(model)
    logits, lengths = DropGraph(model, det, threshold=2.0)(audio(8000).repeat(2, 1), torch.tensor([8000, 5000]))
    assert lengths.tolist() == [1, 1] and logits.shape[1] == 1


def test_export_folder_round_trip(tmp_path):
    src = write_folders(tmp_path)
    ref = load_reference(src["safari"], salad_dir=src["salad"])
    out = export_model(src["safari"], tmp_path / "export", reference=ref, salad_dir=src["salad"])
    meta = json.loads((out / "export.json").read_text())
    assert meta["params"] < meta["dense_params"]
    assert meta["salad"]["threshold"] == pytest.approx(ref.threshold)
    assert meta["salad"]["merge"] is True and ref.merge
    assert ref.detector.drop_rule == "alternate"
    assert len(meta["layer_sizes"]["num_attention_heads"]) == 2  # layer 1 dropped
    exported = load_exported(out)
    x = audio(11000, seed=3)
    assert exported.detector.drop_rule == "alternate" and exported.graph.merge
    with torch.no_grad():
        want = drop_forward(ref.model, x, detector=ref.detector, threshold=ref.threshold, merge=True)
    logits, lengths = exported.logits(x, torch.tensor([11000]))
    torch.testing.assert_close(logits, want.logits, atol=1e-5, rtol=0)
    # transcribe from a file and from the array give the same text
    wave = np.random.default_rng(0).standard_normal(11000).astype(np.float32) * 0.1
    sf.write(tmp_path / "u.wav", wave, 16000, subtype="FLOAT")
    assert exported.transcribe(tmp_path / "u.wav") == exported.transcribe(wave)
    assert exported.transcribe_batch([wave, wave[:7000]])[0] == exported.transcribe(wave)


def test_an_ltas_front_end_travels_with_the_export_and_reads_raw_audio(tmp_path):
    from s6damon.corpus.ltas import N_FFT, normalise
    from s6damon.export.folder import prepare_wave

    src = write_folders(tmp_path)
    reference = np.linspace(-14.0, -22.0, N_FFT // 2 + 1)  # a tilted envelope, natural-log power
    settings = {"floor_db": 30.0, "lifter": 16, "max_gain_db": 12.0}
    (tmp_path / "ltas.json").write_text(json.dumps({**settings, "reference_log_power": reference.tolist()}))
    plain = load_exported(export_model(src["safari"], tmp_path / "plain"))
    out = export_model(src["safari"], tmp_path / "export", ltas=tmp_path / "ltas.json")
    exported = load_exported(out)
    assert plain.ltas is None and "ltas" not in plain.meta
    assert json.loads((out / "export.json").read_text())["ltas"] == "ltas.json"
    wave = np.random.default_rng(1).standard_normal(11000).astype(np.float32) * 0.1
    want = normalise(wave, reference, **settings)
    np.testing.assert_array_equal(exported.front_end(wave), want)
    assert np.abs(exported.front_end(wave) - wave).max() > 0.01  # the front end changed the audio
    np.testing.assert_array_equal(plain.front_end(wave), wave)
    # transcribe = the graph on the normalised audio
    x = torch.from_numpy(prepare_wave(want))[None]
    logits, lengths = exported.logits(x, torch.tensor([len(want)]))
    assert exported.transcribe(wave) == exported.decode(logits, lengths)[0]
    # a speaker-scope front end: the envelope given (a running mean over the speaker's
    # utterances) is the one corrected, not the utterance's own
    tracker = exported.envelope_tracker()
    other = np.random.default_rng(2).standard_normal(9000).astype(np.float32) * 0.1
    tracker.update(other)
    mean = tracker.update(wave)
    np.testing.assert_array_equal(exported.front_end(wave, mean), normalise(wave, reference, **settings, envelope=mean))
    # an envelope 1 (natural-log power) above the reference everywhere: a flat cut of e^-1/2
    np.testing.assert_allclose(exported.front_end(wave, reference + 1.0), wave * np.exp(-0.5), atol=1e-4)
    assert exported.transcribe(wave, mean) == exported.transcribe_batch([wave, other], [mean, mean])[0]
    with pytest.raises(ValueError, match="1 envelopes for 2 waves"):
        exported.transcribe_batch([wave, other], [mean])
    with pytest.raises(ValueError, match="no ltas.json"):
        plain.envelope_tracker()
    (out / "ltas.json").unlink()
    with pytest.raises(CheckpointError, match=r"ltas\.json: missing"):
        load_exported(out)


def test_mask_picked_up_from_the_model_folder(tmp_path):
    src = write_folders(tmp_path, which="heads")
    ref = load_reference(src["safari"])
    assert ref.mask is not None and ref.detector is None
    assert load_reference(src["salad"]).detector is not None


def test_corrupt_export_names_the_folder(tmp_path):
    src = write_folders(tmp_path)
    out = export_model(src["safari"], tmp_path / "export")
    (out / "model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(CheckpointError, match="export"):
        load_exported(out)
    (out / "export.json").unlink()
    with pytest.raises(CheckpointError, match="export.json"):
        load_exported(out)
    bad = tmp_path / "bad_mask.json"
    bad.write_text('{"heads": []}')
    with pytest.raises(CheckpointError, match="bad_mask.json"):
        load_reference(src["safari"], mask_json=bad)


@pytest.fixture(scope="module")
def pruned_graph():
    model, _ = tiny_ctc()
    det, thr = tiny_detector(model, drop_rule="alternate")  # the deployed rule and merging
    return DropGraph(materialise(model, unit_mask(model, "all")), det, thr, merge=True)


def _batch(sizes, seed=0):
    rng = np.random.default_rng(seed)
    n = np.array(sizes, dtype=np.int64)
    x = np.zeros((len(sizes), n.max()), dtype=np.float32)
    for i, k in enumerate(sizes):
        x[i, :k] = rng.standard_normal(k)
    return x, n


BATCHES = [[5000], [16000, 9000, 12000], [7000, 7000]]


def test_onnx_matches_pytorch_on_variable_batches_and_lengths(pruned_graph, tmp_path):
    path = to_onnx(pruned_graph, tmp_path / "m.onnx")
    onnx_run, torch_run = OnnxRunner(path, threads=1), TorchRunner(pruned_graph)
    for seed, sizes in enumerate(BATCHES):
        x, n = _batch(sizes, seed)
        (want, want_len), (got, got_len) = torch_run(x, n), onnx_run(x, n)
        assert got.shape == want.shape and got.shape[0] == len(sizes)
        np.testing.assert_array_equal(got_len, want_len)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_torchscript_matches_pytorch(pruned_graph, tmp_path):
    ts = load_torchscript(to_torchscript(pruned_graph, tmp_path / "m.ts"))
    for seed, sizes in enumerate(BATCHES):
        x, n = _batch(sizes, seed)
        (want, want_len), (got, got_len) = TorchRunner(pruned_graph)(x, n), ts(x, n)
        np.testing.assert_array_equal(got_len, want_len)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_int8_models_run_and_transcribe(pruned_graph, tmp_path):
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    q = quantize_torch(pruned_graph)
    assert any(isinstance(m, QLinear) for m in q.modules())
    x, n = _batch([12000, 8000])
    want, want_len = TorchRunner(pruned_graph)(x, n)
    got, got_len = TorchRunner(q)(x, n)
    np.testing.assert_array_equal(got_len, want_len)  # the detector stays float: same tokens kept
    assert np.isfinite(got).all()
    assert 0 < np.abs(got - want).max() < 1.0  # quantised: close, not equal
    onnx8 = quantize_onnx(to_onnx(pruned_graph, tmp_path / "m.onnx"), tmp_path / "m8.onnx")
    import onnx

    assert "DynamicQuantizeLinear" in {node.op_type for node in onnx.load(str(onnx8)).graph.node}
    got8, len8 = OnnxRunner(onnx8)(x, n)
    np.testing.assert_array_equal(len8, want_len)
    assert np.isfinite(got8).all() and 0 < np.abs(got8 - want).max() < 1.0


def test_parity_check_passes_and_names_a_mismatching_utterance(tmp_path):
    src = write_folders(tmp_path)
    ref = load_reference(src["safari"], salad_dir=src["salad"])
    exported = load_exported(export_model(src["safari"], tmp_path / "export", reference=ref))
    waves = {f"utt{i}": audio(6000 + 2000 * i, seed=i)[0].numpy() for i in range(3)}
    onnx_path = to_onnx(exported.graph, tmp_path / "m.onnx")
    report = check_parity(ref, {"pytorch_exported": TorchRunner(exported.graph), "onnxruntime": OnnxRunner(onnx_path)},
                          waves, max_logit_diff=1e-3,
                          report_only={"pytorch_int8": TorchRunner(quantize_torch(exported.graph))})
    assert report["transcripts_identical"] and report["utterances"] == 3
    assert 0 <= report["max_abs_logit_diff"]["onnxruntime"] < 1e-3
    assert 0 < report["kept_token_share"] < 1
    assert 0 <= report["report_only"]["pytorch_int8"]["transcript_agreement"] <= 1

    def broken(x, n):
        logits, lengths = TorchRunner(exported.graph)(x, n)
        if x.shape[1] == 10000:  # utt2 only: make blank win everywhere
            logits = logits.copy()
            logits[..., 0] += 100
        return logits, lengths

    with pytest.raises(ParityError, match="utt2"):
        check_parity(ref, {"broken": broken}, waves)


def test_padded_batch_rows_equal_single_utterances(pruned_graph):
    # layer-norm conv encoder + masked attention over compacted, zero-padded tokens: each
    # row of a padded batch gets exactly what the utterance gets alone
    x, n = _batch([16000, 9000, 12000], seed=7)
    logits, lengths = TorchRunner(pruned_graph)(x, n)
    for b in range(3):
        one, one_len = TorchRunner(pruned_graph)(x[b:b + 1, : n[b]], n[b:b + 1])
        assert int(lengths[b]) == int(one_len[0])
        np.testing.assert_allclose(logits[b, : lengths[b]], one[0], atol=1e-5, rtol=0)
