"""TorchScript and ONNX files of an export, and one calling convention for every runtime.

Both files hold the whole :class:`~s6damon.export.graph.DropGraph` — detector, token
dropping (sort-based compaction), encoder and CTC head — with dynamic batch and length
axes::

    inputs:  input_values (batch, samples) float32, num_samples (batch,) int64
    outputs: logits (batch, tokens, vocab) float32, lengths (batch,) int64

A *runner* is any callable ``(input_values, num_samples) -> (logits, lengths)`` on numpy
arrays: :class:`TorchRunner` wraps an eager, TorchScript or quantised module,
:class:`OnnxRunner` an ONNX Runtime session.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from s6damon import io

TORCHSCRIPT_FILE = "model.ts"
ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
INPUT_NAMES = ["input_values", "num_samples"]
OUTPUT_NAMES = ["logits", "lengths"]
DYNAMIC_AXES = {"input_values": {0: "batch", 1: "samples"}, "num_samples": {0: "batch"},
                "logits": {0: "batch", 1: "tokens"}, "lengths": {0: "batch"}}
OPSET = 17


def example_inputs(seconds: float = 1.0, sample_rate: int = 16000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A traced example: two utterances of different lengths, the shorter one zero-padded.

    Padding in the example makes no difference to what is recorded (the graph has no
    data-dependent branches) but documents the intended use.
    """
    gen = torch.Generator().manual_seed(seed)
    n = round(seconds * sample_rate)
    x = torch.randn(2, n, generator=gen)
    short = int(n * 0.7)
    x[1, short:] = 0
    return x, torch.tensor([n, short], dtype=torch.long)


def trace(graph: nn.Module, example: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.jit.ScriptModule:
    """An in-memory TorchScript trace of ``graph``."""
    # tracer warnings about shapes turned into constants concern the static, config-derived
    # ones; that the dynamic axes stay dynamic is what the tests check
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.jit.trace(graph.eval(), example or example_inputs(), check_trace=False)


def to_torchscript(graph: nn.Module, dest: str | Path, example: tuple[torch.Tensor, torch.Tensor] | None = None) -> Path:
    """Trace ``graph`` and save it (atomically) as TorchScript."""
    traced = trace(graph, example)
    dest = Path(dest)
    with io.atomic_path(dest, suffix=".ts") as tmp:
        torch.jit.save(traced, str(tmp))
    return dest


def to_onnx(graph: nn.Module, dest: str | Path, example: tuple[torch.Tensor, torch.Tensor] | None = None) -> Path:
    """Export ``graph`` to ONNX (opset 17, TorchScript-based exporter, dynamic axes), atomically.

    The TorchScript-based exporter (``dynamo=False``) is used because the token count after
    dropping is data dependent; it records ``arange(max(kept))`` as a dynamic ``Range``.
    """
    example = example or example_inputs()
    dest = Path(dest)
    with warnings.catch_warnings(), io.atomic_path(dest, suffix=".onnx") as tmp, torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph.eval(), example, str(tmp), input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                          dynamic_axes=DYNAMIC_AXES, opset_version=OPSET, dynamo=False)
    return dest


class TorchRunner:
    """Runner around a PyTorch module (eager, TorchScript or quantised)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module.eval()

    @torch.no_grad()
    def __call__(self, input_values: np.ndarray, num_samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(logits, lengths)`` as numpy arrays."""
        logits, lengths = self.module(torch.from_numpy(np.ascontiguousarray(input_values, dtype=np.float32)),
                                      torch.from_numpy(np.asarray(num_samples, dtype=np.int64)))
        return logits.numpy(), lengths.numpy()


def load_torchscript(path: str | Path) -> TorchRunner:
    """A :class:`TorchRunner` of a saved TorchScript file."""
    return TorchRunner(torch.jit.load(str(path), map_location="cpu"))


class OnnxRunner:
    """Runner around an ONNX Runtime CPU session.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (``None``: ONNX Runtime's default); inter-op is 1.
        spin: let idle intra-op threads busy-wait for the next call (ONNX Runtime's default).
            Off here: a spinning session takes a core from whatever runs next in the process
            (measured: PyTorch calls timed right after an ONNX Runtime call took twice as
            long), which skews side-by-side timing and starves other work on a small device.
    """

    def __init__(self, path: str | Path, threads: int | None = None, spin: bool = False) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

    def __call__(self, input_values: np.ndarray, num_samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(logits, lengths)`` as numpy arrays."""
        logits, lengths = self.session.run(OUTPUT_NAMES, {
            "input_values": np.ascontiguousarray(input_values, dtype=np.float32),
            "num_samples": np.asarray(num_samples, dtype=np.int64)})
        return logits, lengths


def write_runtimes(folder: str | Path, graph: nn.Module, *, quantize: bool = True) -> dict[str, Path]:
    """Write ``model.ts``, ``model.onnx`` and (``quantize``) ``model.int8.onnx`` into ``folder``."""
    from s6damon.export.quantize import quantize_onnx

    folder = Path(folder)
    out = {"torchscript": to_torchscript(graph, folder / TORCHSCRIPT_FILE),
           "onnx": to_onnx(graph, folder / ONNX_FILE)}
    if quantize:
        out["onnx_int8"] = quantize_onnx(out["onnx"], folder / ONNX_INT8_FILE)
    return out
