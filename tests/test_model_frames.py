"""Frame geometry of the conv feature encoder (``s6damon.model.frames``): the counts every
part of the project (token dropping, MixStyle, FLOPs, the exported graph) derives its frames from."""

from __future__ import annotations

import numpy as np
import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

from s6damon.model.factory import build_ctc_model
from s6damon.model.frames import (frame_energy, frame_spans, layer_frames, num_frames, receptive_field,
                                  total_stride)
from s6damon.model.vocab import build_tokenizer
from _train_fixtures import tiny_params


def test_num_frames_matches_transformers():
    cfg = Wav2Vec2Config()  # the real wav2vec2-base layout (7 conv layers, 20 ms hop, 25 ms field)
    n = torch.tensor([400, 401, 16000, 16319, 16320, 33333])
    expected = Wav2Vec2ForCTC._get_feat_extract_output_lengths(type("M", (), {"config": cfg})(), n)
    got = num_frames(n, cfg.conv_kernel, cfg.conv_stride)
    assert torch.equal(got, expected)
    assert num_frames(16000, cfg.conv_kernel, cfg.conv_stride) == 49
    assert num_frames(100, cfg.conv_kernel, cfg.conv_stride) == 0  # shorter than the receptive field
    assert total_stride(cfg.conv_stride) == 320 and receptive_field(cfg.conv_kernel, cfg.conv_stride) == 400
    spans = frame_spans(3, cfg.conv_kernel, cfg.conv_stride)
    np.testing.assert_allclose(spans, [[0, 0.025], [0.02, 0.045], [0.04, 0.065]])


def test_layer_frames_are_each_conv_layers_real_output_length():
    m, _, _ = tiny_params()
    model = build_ctc_model(m, build_tokenizer()).eval()
    kernels, strides = model.config.conv_kernel, model.config.conv_stride
    seen: list[int] = []
    hooks = [layer.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[-1]))
             for layer in model.wav2vec2.feature_extractor.conv_layers]
    for samples in (400, 1601, 16000, 23457):
        seen.clear()
        with torch.no_grad():
            model.wav2vec2.feature_extractor(torch.zeros(1, samples))
        assert layer_frames(samples, kernels, strides) == seen
        as_tensor = layer_frames(torch.tensor([samples, samples]), kernels, strides)
        as_array = layer_frames(np.array([samples]), kernels, strides)
        assert [t.tolist() for t in as_tensor] == [[n, n] for n in seen]
        assert [a.tolist() for a in as_array] == [[n] for n in seen]
    for h in hooks:
        h.remove()
    # shorter than a layer's kernel: that layer and every one after it count 0, never negative
    assert layer_frames(12, kernels, strides)[1:] == [0] * (len(kernels) - 1)
    assert layer_frames(torch.tensor([12]), kernels, strides)[-1].item() == 0


def test_frame_energy_follows_loudness():
    wave = np.zeros(3200)
    wave[1600:] = 1.0  # silent first half, loud second half
    e = frame_energy(wave, 10, (100, 4), (80, 4))
    assert e.shape == (10,)
    assert e[:4].max() < e[6:].min()
