"""Parameters of the ``export`` stage."""

from __future__ import annotations

import dataclasses

from s6damon.config.schema import ParamsError, param


@dataclasses.dataclass(frozen=True)
class ExportParams:
    """Physical export, TorchScript/ONNX files, int8 copies and the parity check."""

    models: list[str] = param(["models/finetuned", "models/salad/*", "models/safari/*"],
                              help="model folders (globs; absent ones skipped) to export: a folder with mask.json "
                                   "is physically pruned, one with salad.json carries its detector")
    salad_with_masked: str = param("", help="a SALAD folder whose detector is also folded into every masked "
                                            "model (exported as '<masked>+<salad>'); empty = none")
    split: str = param("test", help="manifest split on which every export must transcribe like PyTorch")
    max_utterances: int = param(0, minimum=0, help="parity utterances (0 = the whole split)")
    max_logit_diff: float = param(1e-3, minimum=0.0, help="fail when an export's logits differ more than this")
    torchscript: bool = param(True, help="write model.ts")
    onnx: bool = param(True, help="write model.onnx")
    quantize: bool = param(True, help="write model.int8.onnx and report int8 agreement (PyTorch and ONNX Runtime)")

    def check(self) -> None:
        if not self.models:
            raise ParamsError("params: 'export.models' must list at least one model folder")
        if self.quantize and not self.onnx:
            raise ParamsError("params: 'export.quantize' needs 'export.onnx' (the int8 file is made from it)")
