"""Export: physically pruned, SALAD-folded models as checkpoint folders, TorchScript and ONNX.

- :mod:`~s6damon.export.graph` — :class:`DropGraph`, the traceable inference module
  (detector → sort-based token compaction → encoder → CTC head)
- :mod:`~s6damon.export.folder` — :func:`export_model`, :func:`load_exported`,
  :class:`ExportedModel` (``transcribe``), :func:`load_reference`
- :mod:`~s6damon.export.runtimes` — TorchScript / ONNX files and runners
- :mod:`~s6damon.export.quantize` — dynamic int8 for PyTorch and ONNX Runtime
- :mod:`~s6damon.export.parity` — :func:`check_parity`, :class:`ParityError`

No Prefect or DVC here: the ``export`` stage (``flows/export.py``) drives these functions.
"""

from s6damon.export.folder import ExportedModel, Reference, export_model, load_exported, load_reference
from s6damon.export.graph import DropGraph
from s6damon.export.parity import ParityError, check_parity
from s6damon.export.quantize import quantize_onnx, quantize_torch
from s6damon.pruning.masks import load_mask  # the mask files export reads (one format, written by SAFARI)
from s6damon.export.runtimes import OnnxRunner, TorchRunner, load_torchscript, to_onnx, to_torchscript, write_runtimes

__all__ = [
    "DropGraph", "ExportedModel", "OnnxRunner", "ParityError", "Reference", "TorchRunner", "check_parity",
    "export_model", "load_exported", "load_mask", "load_reference", "load_torchscript", "quantize_onnx",
    "quantize_torch", "to_onnx", "to_torchscript", "write_runtimes",
]
