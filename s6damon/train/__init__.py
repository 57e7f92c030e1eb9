"""Training and scoring: SSL pretraining, CTC finetuning, their shared loop and checkpoints,
audio batches, distillation, the frozen-encoder feature cache, greedy decoding and WER/CER.

Pure algorithms and file formats: no Prefect, no DVC.
"""
