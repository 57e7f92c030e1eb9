"""Self-supervised pretraining objectives beyond wav2vec 2.0's contrastive one."""
