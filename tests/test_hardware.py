"""Resolution of the ``precision`` param (``auto``) from what the hardware can do."""

from __future__ import annotations

import torch

from s6damon import hardware
from s6damon.hardware import training_precision


def test_explicit_precisions_are_kept():
    for p in ("float32", "bfloat16"):
        assert training_precision(p, torch.device("cpu")) == p


def test_auto_is_bfloat16_only_on_a_cpu_with_native_bfloat16(monkeypatch):
    cpu = torch.device("cpu")
    for native, want in ((True, "bfloat16"), (False, "float32"), (None, "float32")):
        monkeypatch.setattr(hardware, "cpu_native_bf16", lambda native=native: native)
        assert training_precision("auto", cpu) == want


def test_cpu_flags_are_read_from_proc_cpuinfo():
    flag = hardware.cpu_native_bf16()
    assert flag in (True, False, None)
    assert isinstance(hardware.cpu_model(), str)
