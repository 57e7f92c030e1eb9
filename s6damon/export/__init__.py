"""Export: physically pruned, SALAD-folded models as checkpoint folders, TorchScript and ONNX."""
