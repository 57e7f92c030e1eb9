"""Weight averaging (EMA and uniform): the averages' arithmetic, swapping weights in and out,
the finetune run saving the average, and a killed run resuming its average."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from s6damon.config.model import AverageParams
from s6damon.model.factory import load_ctc_model
from s6damon.train.averaging import WeightAverage
from s6damon.train.finetune import finetune
from _train_fixtures import make_manifest, tiny_params


def _run(avg: WeightAverage, values: list[float], state: dict | None = None, first_step: int = 1):
    """Feed a one-weight module the weight ``values[i]`` at step ``first_step + i``."""
    net = torch.nn.Linear(1, 1, bias=False)
    state = {} if state is None else state
    for i, v in enumerate(values):
        with torch.no_grad():
            net.weight.fill_(v)
        avg(net, first_step + i, state)
    return net, state


def test_uniform_average_is_the_mean_from_the_start_step_on():
    avg = WeightAverage("uniform", start_step=3)
    net, _ = _run(avg, [10.0, 20.0, 1.0, 2.0, 3.0, 6.0])
    assert avg.count == 4
    with avg.applied(net) as used:
        assert used and net.weight.item() == pytest.approx(3.0)  # mean of 1, 2, 3, 6
    assert net.weight.item() == 6.0  # its own weight back


def test_ema_follows_the_recursion_and_every_skips_steps():
    avg = WeightAverage("ema", start_step=1, decay=0.5, every=2)
    net, _ = _run(avg, [4.0, 100.0, 8.0, 100.0, 0.0])  # averaged: steps 1, 3, 5
    assert avg.count == 3
    expected = 0.5 * (0.5 * 4.0 + 0.5 * 8.0) + 0.5 * 0.0
    avg.apply(net)
    assert net.weight.item() == pytest.approx(expected)


def test_nothing_averaged_before_the_start_leaves_the_weights():
    avg = WeightAverage("uniform", start_step=10)
    net, state = _run(avg, [1.0, 2.0])
    assert avg.count == 0 and state == {}
    with avg.applied(net) as used:
        assert not used and net.weight.item() == 2.0
    assert not avg.apply(net)


def test_from_params_places_the_start_and_keeps_none_off():
    assert WeightAverage.from_params(AverageParams(), 100) is None
    avg = WeightAverage.from_params(AverageParams(kind="uniform", start_fraction=0.75), 100)
    assert avg.start == 76
    last = WeightAverage.from_params(AverageParams(kind="ema", start_fraction=1.0), 100)
    assert last.start == 100  # the last step's weights alone
    with pytest.raises(ValueError, match="kind"):
        WeightAverage("mean", 1)


def test_average_resumes_from_a_saved_state(tmp_path):
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0]
    whole = WeightAverage("ema", start_step=2, decay=0.7)
    net_a, _ = _run(whole, values)
    first = WeightAverage("ema", start_step=2, decay=0.7)
    _, state = _run(first, values[:3])
    torch.save(state, tmp_path / "state.pt")  # what a checkpoint holds
    second = WeightAverage("ema", start_step=2, decay=0.7)
    net_b, _ = _run(second, values[3:], torch.load(tmp_path / "state.pt"), first_step=4)
    whole.apply(net_a), second.apply(net_b)
    assert second.count == whole.count == 5
    assert net_b.weight.item() == pytest.approx(net_a.weight.item())


def _weights(folder):
    return load_ctc_model(folder)[0].state_dict()


def test_finetune_saves_the_average_and_resumes_it(tmp_path):
    m, _, p = tiny_params()
    p = dataclasses.replace(p, steps=6, checkpoint_every=2, eval_every=3,
                            average=AverageParams(kind="uniform", start_fraction=0.5))
    plain = dataclasses.replace(p, average=AverageParams())
    df = make_manifest(tmp_path / "wav", 8)
    raw = finetune(None, m, plain, df, None, tmp_path / "raw", tmp_path / "ck_raw", seed=3, threads=1)
    full = finetune(None, m, p, df, df.iloc[:2], tmp_path / "full", tmp_path / "ck_full", seed=3, threads=1)
    assert full["metrics"]["weight_average"] == "uniform" and full["metrics"]["averaged_steps"] == 3
    assert raw["metrics"]["averaged_steps"] == 0
    a, r = _weights(tmp_path / "full"), _weights(tmp_path / "raw")
    # the same training (averaging draws nothing), a different saved model
    assert full["history"][-1]["loss"] == raw["history"][-1]["loss"]
    assert any(not torch.equal(a[k], r[k]) for k in a)
    killed = finetune(None, m, p, df, df.iloc[:2], tmp_path / "res", tmp_path / "ck_res", seed=3, threads=1,
                      stop_at=5)
    assert killed["stopped_early"]
    resumed = finetune(None, m, p, df, df.iloc[:2], tmp_path / "res", tmp_path / "ck_res", seed=3, threads=1)
    assert resumed["metrics"]["resumed_from"] == 4 and resumed["metrics"]["averaged_steps"] == 3
    b = _weights(tmp_path / "res")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    # the dev evaluation at the end scored the averaged weights the run saved
    assert resumed["metrics"]["dev_wer"] == full["metrics"]["dev_wer"]
