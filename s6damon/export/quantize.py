"""Dynamic int8 quantisation of the linear layers, for PyTorch and ONNX Runtime.

Weights of every ``nn.Linear`` (attention projections, FFN, feature projection, CTC head)
are stored as int8; activations are quantised on the fly per call. The conv feature
encoder stays in float: dynamic quantisation covers linear/matmul layers only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from s6damon import io


def quantizable_linears(model: nn.Module) -> set[str]:
    """Names of the ``nn.Linear`` modules that can be quantised.

    Zero-width linears (a layer whose heads or FFN neurons were all pruned) are left out:
    the quantised module has no float bias to broadcast and nothing to multiply.
    """
    return {name for name, m in model.named_modules()
            if type(m) is nn.Linear and m.in_features > 0 and m.out_features > 0}


def quantize_torch(model: nn.Module) -> nn.Module:
    """A dynamically int8-quantised copy of ``model`` (``torch.ao.quantization.quantize_dynamic``)."""
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    spec = {name: default_dynamic_qconfig for name in quantizable_linears(model)}
    return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=False).eval()


def quantize_onnx(src: str | Path, dest: str | Path) -> Path:
    """Write a dynamically int8-quantised copy of the ONNX model ``src`` to ``dest`` (atomically).

    MatMul/Gemm weights become int8 (``onnxruntime.quantization.quantize_dynamic``).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dest = Path(dest)
    with io.atomic_path(dest, suffix=".onnx") as tmp:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)
    return dest
