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


#: Submodules kept in float: the SALAD detector decides which tokens survive by comparing a
#: probability with a threshold, so int8 noise there would change *which* tokens the
#: encoder sees (and its cost is negligible anyway).
FLOAT_PREFIXES = ("detector",)


def quantizable_linears(model: nn.Module, skip: tuple[str, ...] = FLOAT_PREFIXES) -> set[str]:
    """Names of the ``nn.Linear`` modules that are quantised.

    Zero-width linears (a layer whose heads or FFN neurons were all pruned) are left out:
    the quantised module has no float bias to broadcast and nothing to multiply. So are
    modules under ``skip``.
    """
    return {name for name, m in model.named_modules()
            if type(m) is nn.Linear and m.in_features > 0 and m.out_features > 0
            and not any(name == p or name.startswith(p + ".") for p in skip)}


def quantize_torch(model: nn.Module) -> nn.Module:
    """A dynamically int8-quantised copy of ``model`` (``torch.ao.quantization.quantize_dynamic``)."""
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    import warnings

    spec = {name: default_dynamic_qconfig for name in quantizable_linears(model)}
    with warnings.catch_warnings():  # torch.ao deprecation notice; the API works in 2.11
        warnings.simplefilter("ignore", DeprecationWarning)
        return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=False).eval()


def quantize_onnx(src: str | Path, dest: str | Path) -> Path:
    """Write a dynamically int8-quantised copy of the ONNX model ``src`` to ``dest`` (atomically).

    Only MatMul/Gemm nodes are quantised (``onnxruntime.quantization.quantize_dynamic``): the
    linear layers, as in PyTorch; the convs stay float. The detector's nodes (named
    ``/detector/...`` by the exporter) are excluded, see :data:`FLOAT_PREFIXES`.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src), load_external_data=False).graph
    keep_float = [n.name for n in graph.node if any(n.name.startswith(f"/{p}/") for p in FLOAT_PREFIXES)]
    dest = Path(dest)
    with io.atomic_path(dest, suffix=".onnx") as tmp:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, nodes_to_exclude=keep_float,
                         op_types_to_quantize=["MatMul", "Gemm"])
    return dest
