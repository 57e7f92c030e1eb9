"""Distillation from a frozen teacher: target frames of dropped tokens, the frame-level and
layer-to-layer losses, and finetuning with them (plain, token-dropped and masked students)."""

from __future__ import annotations

import dataclasses
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from s6damon.pruning import StructuredMask, apply_masks
from s6damon.salad.dropping import TokenDropCTC
from s6damon.train.distill import distill_loss, hidden_distill_loss, segment_frames
from s6damon.train.finetune import finetune
from _train_fixtures import make_manifest, tiny_params

BLANK = 0


def _logp(spikes: dict[int, int], T: int, V: int = 5) -> torch.Tensor:
    """(1, T, V) log-probs: blank everywhere except label ``spikes[t]`` at frame ``t``."""
    p = torch.full((T, V), 0.01)
    p[:, BLANK] = 0.96
    for t, label in spikes.items():
        p[t] = 0.01
        p[t, label] = 0.96
    return (p / p.sum(-1, keepdim=True)).log()[None]


def test_segment_frames_moves_a_spike_in_a_dropped_frame_onto_its_kept_token():
    teacher = _logp({2: 3, 5: 1, 8: 4}, T=10)
    keep = torch.tensor([[True, False, False, True, False, True, False, False, False, False]])
    # segments: [0, 3) -> token 0, [3, 5) -> token 1, [5, 10) -> token 2
    frames = segment_frames(teacher, keep, torch.tensor([10]), width=3, blank_id=BLANK)
    assert frames.tolist() == [[2, 3, 5]]  # frame 2's spike for token 0; token 1 has none (its first frame)


def test_segment_frames_ignores_padding_and_frames_before_the_first_kept_token_go_to_it():
    teacher = _logp({1: 2, 7: 3}, T=8)  # the spike at 7 lies in padding
    keep = torch.tensor([[False, False, True, False, True, False, False, False]])
    frames = segment_frames(teacher, keep, torch.tensor([6]), width=2, blank_id=BLANK)
    assert frames.tolist() == [[1, 4]]


def test_segment_frames_with_everything_kept_is_the_identity():
    teacher = torch.randn(2, 7, 5).log_softmax(-1)
    keep = torch.ones(2, 7, dtype=torch.bool)
    frames = segment_frames(teacher, keep, torch.tensor([7, 7]), width=7, blank_id=BLANK)
    assert frames.tolist() == [list(range(7))] * 2


def test_distill_loss_is_zero_at_the_teacher_and_ignores_padding():
    teacher = torch.randn(2, 6, 5)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    assert float(distill_loss(teacher.clone(), mask, teacher)) == pytest.approx(0.0, abs=1e-6)
    student = teacher.clone()
    student[1, 4:] = torch.randn(2, 5) * 10  # padding differs: still zero
    assert float(distill_loss(student, mask, teacher)) == pytest.approx(0.0, abs=1e-6)
    student[0, 0] += torch.randn(5) * 3
    assert float(distill_loss(student, mask, teacher)) > 1e-3
    # gathered frames: the student's position j is compared with teacher frame frames[j]
    frames = torch.tensor([[1, 3], [0, 5]])
    gathered = teacher.gather(1, frames[..., None].expand(-1, -1, 5))
    assert float(distill_loss(gathered, torch.ones(2, 2, dtype=torch.bool), teacher, frames)) == pytest.approx(0.0, abs=1e-6)


def test_hidden_distill_loss_is_its_floor_at_the_teacher_ignores_padding_and_needs_equal_depth():
    teacher = [torch.randn(2, 6, 8) for _ in range(3)]
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    floor = math.log1p(math.exp(-1.0))  # -log sigmoid(1): cosine 1, L1 0
    assert float(hidden_distill_loss([t.clone() for t in teacher], teacher, mask)) == pytest.approx(floor, abs=1e-5)
    student = [t.clone() for t in teacher]
    student[2][1, 4:] = torch.randn(2, 8) * 10  # padding differs: still the floor
    assert float(hidden_distill_loss(student, teacher, mask)) == pytest.approx(floor, abs=1e-5)
    student[1][0, 0] = -teacher[1][0, 0]  # one real frame of one layer reversed: L1 and cosine both grow
    assert float(hidden_distill_loss(student, teacher, mask)) > floor + 0.05
    with pytest.raises(ValueError, match="same depth"):
        hidden_distill_loss(student[:2], teacher, mask)


def _run(tmp_path, name, p, df, init, **kw):
    m, _, _ = tiny_params()
    return finetune(init, m, p, df, None, tmp_path / name, tmp_path / f"ck_{name}", seed=4, threads=1, **kw)


def test_finetune_with_distillation_logs_both_losses_for_plain_dropped_and_masked_students(tmp_path):
    m, _, p = tiny_params()
    df = make_manifest(tmp_path / "wav", 6)
    _run(tmp_path, "teacher", dataclasses.replace(p, steps=2, eval_every=100), df, None)
    teacher = tmp_path / "teacher"
    kd = dataclasses.replace(p, steps=2, eval_every=100, distill_weight=1.0, distill_temperature=2.0)

    def losses(res):
        h = [e for e in res["history"] if "distill_loss" in e]
        assert h, "no distillation loss logged"
        for e in h:
            assert e["distill_loss"] > 0
            assert e["loss"] == pytest.approx(e["ctc_loss"] + e["distill_loss"], rel=1e-4)
        return h[0]["distill_loss"]

    losses(_run(tmp_path, "plain", kd, df, teacher))
    losses(_run(tmp_path, "dropped", kd, df, teacher,
                wrap=lambda model: TokenDropCTC(model, policy=lambda x, a, n, T: torch.arange(T)[None].expand(len(n), T) % 2 == 0)))

    def masked(model):
        mask = StructuredMask.full(model)
        mask.heads[0][0] = False
        mask.neurons[0][: mask.neurons[0].numel() // 2] = False
        return apply_masks(model, mask)

    losses(_run(tmp_path, "masked", kd, df, teacher, wrap=masked))
    # with no teacher and no init there is nothing to distil from
    with pytest.raises(ValueError, match="teacher"):
        _run(tmp_path, "none", kd, df, None)
    # weight 0 (the default): no teacher is loaded and only the CTC loss is logged
    off = _run(tmp_path, "off", dataclasses.replace(p, steps=2, eval_every=100), df, teacher)
    assert all("distill_loss" not in e for e in off["history"])


def test_finetune_with_layer_distillation_trains_a_masked_student_and_refuses_a_dropped_one(tmp_path):
    m, _, p = tiny_params()
    df = make_manifest(tmp_path / "wav", 6)
    _run(tmp_path, "teacher", dataclasses.replace(p, steps=2, eval_every=100), df, None)
    teacher = tmp_path / "teacher"
    hd = dataclasses.replace(p, steps=2, eval_every=100, distill_hidden_weight=0.5)

    def masked(model):
        mask = StructuredMask.full(model)
        mask.heads[0][0] = False
        mask.neurons[0][mask.neurons[0].numel() // 2 :] = False
        return apply_masks(model, mask)

    res = _run(tmp_path, "masked", hd, df, teacher, wrap=masked)
    h = [e for e in res["history"] if "distill_hidden_loss" in e]
    assert h, "no layer distillation loss logged"
    for e in h:
        assert e["distill_hidden_loss"] > math.log1p(math.exp(-1.0))  # the mask moved the layers off the teacher
        assert "distill_loss" not in e  # the frame-level term stays off
        assert e["loss"] == pytest.approx(e["ctc_loss"] + 0.5 * e["distill_hidden_loss"], rel=1e-4)
    with pytest.raises(ValueError, match="one frame grid"):
        _run(tmp_path, "dropped", hd, df, teacher,
             wrap=lambda model: TokenDropCTC(model, policy=lambda x, a, n, T: torch.arange(T)[None].expand(len(n), T) % 2 == 0))
