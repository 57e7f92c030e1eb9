"""SALAD methods as one dropping model: policies, finetuning with dropping, detector fit and files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s6damon.config.salad import DetectorParams
from s6damon.model.factory import CheckpointError, build_ctc_model
from s6damon.model.vocab import build_tokenizer
from s6damon.salad.baselines import BaselinePolicy
from s6damon.salad.detector import SaliencyDetector, load_detector, save_detector
from s6damon.salad.fit import fit_detector
from s6damon.salad.methods import (DropWrap, RatioCycle, compare_latency, drop_model, encoder_gflops,
                                   latency_input)
from tests._train_fixtures import make_manifest, tiny_params


def _model():
    torch.manual_seed(0)
    m, _, _ = tiny_params()
    return build_ctc_model(m, build_tokenizer())


@pytest.mark.parametrize("method", ["uniform", "random", "energy"])
def test_baseline_policy_drops_the_ratio_inside_the_model(method):
    model = _model().eval()
    net = drop_model(model, method, 0.5, seed=3)
    x = torch.randn(2, 16000)
    mask = torch.ones(2, 16000, dtype=torch.long)
    mask[1, 9000:] = 0
    x[1, 9000:] = 0
    out = net(x, mask)
    assert out.lengths.tolist() == [round(n - np.floor(0.5 * n + 0.5)) for n in out.frame_lengths.tolist()]
    kept = out.keep[0].nonzero().flatten()
    assert torch.equal(out.index[0, : len(kept)], kept)  # order preserved


def test_random_policy_fresh_in_training_fixed_in_eval():
    pol = BaselinePolicy("random", 0.5, [10, 3], [5, 2], seed=1)
    args = (torch.zeros(1, 400), None, torch.tensor([30]), 30)
    pol.training = True
    a, b = pol(*args), pol(*args)
    assert not torch.equal(a, b)
    pol.training = False
    assert torch.equal(pol(*args), pol(*args))


def test_finetune_with_dropping_wrapper(tmp_path):
    from s6damon.train.finetune import finetune

    m, _, p = tiny_params()
    df = make_manifest(tmp_path / "wav", n=6)
    wrapped = []

    def wrap(model):
        net = drop_model(model, "uniform", 0.4)
        wrapped.append(net)
        return net

    res = finetune(None, m, p, df, df.iloc[:2], tmp_path / "out", tmp_path / "ck", seed=0, threads=1,
                   wrap=wrap, tag="uniform@0.4")
    net = wrapped[0]
    assert res["metrics"]["steps"] == p.steps
    assert 0.3 < net.stats["drop_ratio"] < 0.5  # the transformer saw the shortened sequences
    assert (tmp_path / "out" / "config.json").exists()  # the plain CTC model is saved
    assert "dev_wer" in res["history"][-1]  # dev decoding ran through the dropping model


def test_ratio_cycle_drops_each_ratio_in_turn():
    """Shared adaptation: one model, a different drop ratio on each training call, the
    parameters those of the one CTC model."""
    model = _model()
    cycle = DropWrap("uniform", (0.2, 0.5))(model).train()
    assert isinstance(cycle, RatioCycle)
    assert {id(p) for p in cycle.parameters()} == {id(p) for p in model.parameters()}
    assert set(cycle.state_dict()) == {f"model.{k}" for k in model.state_dict()}
    x = torch.randn(1, 16000)
    ratios = [cycle(x).drop_ratio for _ in range(4)]
    assert ratios[0] == pytest.approx(ratios[2]) and ratios[1] == pytest.approx(ratios[3])
    assert ratios[0] == pytest.approx(0.2, abs=0.03) and ratios[1] == pytest.approx(0.5, abs=0.03)
    # one ratio: that ratio's plain dropping model
    assert not isinstance(DropWrap("uniform", (0.3,))(model), RatioCycle)
    with pytest.raises(ValueError, match="same model"):
        RatioCycle([drop_model(model, "uniform", 0.2), drop_model(_model(), "uniform", 0.5)])


def test_drop_wrap_reads_every_ratios_threshold(tmp_path):
    model = _model()
    torch.manual_seed(1)
    det = SaliencyDetector(in_dim=model.config.conv_dim[-1], hidden=8, kernel_size=3, num_layers=1)
    path = tmp_path / "det.pt"
    save_detector(path, det, {0.3: 0.4, 0.5: 0.6}, meta={})
    cycle = DropWrap("salad_ctc", (0.3, 0.5), path)(model)
    assert [n.threshold for n in cycle._nets] == [0.4, 0.6]
    assert all(n.detector is cycle.detector for n in cycle._nets)  # loaded once, shared
    with pytest.raises(ValueError, match=r"det\.pt: no threshold for drop ratios \[0\.4\]"):
        DropWrap("salad_ctc", (0.3, 0.4), path)(model)


def test_finetune_with_a_ratio_cycle(tmp_path):
    from s6damon.train.finetune import finetune

    m, _, p = tiny_params()
    df = make_manifest(tmp_path / "wav", n=6)
    wrapped = []

    def wrap(model):
        wrapped.append(DropWrap("uniform", (0.2, 0.5))(model))
        return wrapped[-1]

    res = finetune(None, m, p, df, None, tmp_path / "out", tmp_path / "ck", seed=0, threads=1, wrap=wrap,
                   tag="uniform@0.2/0.5")
    assert res["metrics"]["steps"] == p.steps and wrapped[0].calls == p.steps
    seen = [n.stats["utterances"] for n in wrapped[0]._nets]
    assert all(k > 0 for k in seen)  # both ratios trained
    assert (tmp_path / "out" / "config.json").exists()


@pytest.mark.parametrize("rule", ["threshold", "alternate"])
def test_fit_detector_threshold_hits_requested_ratio(rule):
    rng = np.random.default_rng(0)
    feats, labels = [], []
    for _ in range(30):
        T = int(rng.integers(20, 60))
        x = torch.from_numpy(rng.standard_normal((T, 8)).astype(np.float32))
        feats.append(x)
        labels.append((x[:, 0] > 0.3).numpy())
    p = DetectorParams(hidden=8, kernel_size=3, num_layers=1, epochs=20, batch_seconds=2.0, drop_rule=rule)
    res = fit_detector(feats[:20], labels[:20], feats[20:], labels[20:], p, [0.3, 0.5], 0.3, seed=0)
    det = res["detector"]
    assert det.drop_rule == rule
    probs = [torch.sigmoid(det(f[None])) for f in feats[20:]]
    total = sum(f.shape[0] for f in feats[20:])
    for r, thr in res["thresholds"].items():
        kept = sum(int(det.keep_mask(pr, torch.tensor([pr.shape[1]]), thr).sum()) for pr in probs)
        assert abs(1 - kept / total - r) < 0.01  # every threshold step moves one token at most
        if rule == "alternate":
            for pr in probs:  # never two neighbours dropped
                keep = det.keep_mask(pr, torch.tensor([pr.shape[1]]), thr)[0]
                assert not bool((~keep[1:] & ~keep[:-1]).any())
    assert abs(res["metrics"]["drop_ratio"] - 0.3) < 0.01
    assert res["metrics"]["f1"] > 0.7  # the rule is learnable from the features


def test_detector_file_round_trip_and_corrupt_file(tmp_path):
    det = SaliencyDetector(in_dim=8, hidden=4, kernel_size=3, num_layers=1)
    save_detector(tmp_path / "d.pt", det, {0.3: 0.41}, meta={"source": "ctc"})
    det2, thr, meta = load_detector(tmp_path / "d.pt")
    assert thr == {0.3: 0.41} and meta["source"] == "ctc"
    x = torch.randn(1, 10, 8)
    torch.testing.assert_close(det.eval()(x), det2(x))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_detector(tmp_path / "bad.pt")


def test_flops_and_latency_follow_the_kept_tokens():
    model = _model()
    dense = encoder_gflops(model, 1.0, 10.0)
    half = encoder_gflops(model, 0.5, 10.0)
    assert dense["flop_reduction"] == pytest.approx(1.0)
    assert half["gflops"] < dense["gflops"] and half["flop_reduction"] > 1.0
    wave = latency_input([np.ones(3000, np.float32), np.zeros(2000, np.float32)], 1.0)
    assert wave.shape == (16000,)
    nets = {"none": drop_model(model, "none", 0.0), "uniform": drop_model(model, "uniform", 0.5)}
    lat = compare_latency(nets, wave, repeats=2, warmup=0)
    assert lat["none"]["keep_ratio"] == 1.0 and lat["uniform"]["keep_ratio"] < 0.6
    assert all(v["median_ms"] > 0 for v in lat.values())
