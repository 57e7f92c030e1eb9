"""SALAD detector: shapes, batch/single parity, training, threshold choice, FLOPs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

from s6damon.pruning.flops import flops_from_sizes, sizes_from_config

from s6damon.salad.backbone import extract_features
from s6damon.salad.detector import (SaliencyDetector, alternate_keep, choose_threshold, detector_flops,
                                    detector_loss, detector_metrics, keep_from_probs, predict_proba,
                                    train_detector)


def test_detector_shapes_and_batch_single_parity():
    torch.manual_seed(0)
    det = SaliencyDetector(in_dim=16, hidden=8, kernel_size=5, num_layers=2).eval()
    feats = torch.randn(3, 20, 16)
    lengths = torch.tensor([20, 7, 13])
    for b, n in enumerate(lengths.tolist()):
        feats[b, n:] = 123.0  # garbage in padding must not matter
    logits = det(feats, lengths)
    assert logits.shape == (3, 20)
    for b, n in enumerate(lengths.tolist()):
        single = det(feats[b:b + 1, :n])
        torch.testing.assert_close(logits[b, :n], single[0], rtol=1e-5, atol=1e-5)
    p = predict_proba(det, feats, lengths)
    assert p[1, 7:].abs().sum() == 0 and ((p >= 0) & (p <= 1)).all()
    with pytest.raises(ValueError):
        SaliencyDetector(in_dim=16, kernel_size=4)


def test_detector_learns_a_separable_rule():
    # salient iff feature 0 > 0: a few hundred steps on tiny tensors must learn it
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(2):
        f = torch.randn(4, 30, 8, generator=g)
        batches.append((f, (f[..., 0] > 0).float(), torch.tensor([30, 25, 20, 30])))
    det = SaliencyDetector(in_dim=8, hidden=16, kernel_size=3, num_layers=1, dropout=0.0)
    seen = []
    hist = train_detector(det, batches, epochs=20, lr=2e-2, on_epoch=lambda e, r: seen.append(e))
    assert len(hist) == 20 and seen == list(range(20)) and not det.training
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]
    f, y, n = batches[0]
    keep = keep_from_probs(predict_proba(det, f, n), n, 0.5)
    m = detector_metrics([keep[b, :k].numpy() for b, k in enumerate(n.tolist())],
                         [y[b, :k].bool().numpy() for b, k in enumerate(n.tolist())])
    assert m["accuracy"] > 0.9 and 0.3 < m["drop_ratio"] < 0.7


def test_detector_loss_ignores_padding():
    logits = torch.tensor([[5.0, -5.0, 100.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0]])
    loss = detector_loss(logits, labels, torch.tensor([2]))
    assert loss < 0.01  # the padded, badly wrong third position is ignored


def test_choose_threshold_hits_ratio():
    rng = np.random.default_rng(0)
    probs = [rng.random(int(n)) for n in rng.integers(5, 60, size=20)]
    lengths = [p.size for p in probs]
    total = sum(lengths)
    for target in (0.0, 0.1, 0.33, 0.5, 0.8, 1.0):
        thr = choose_threshold(probs, target)
        dropped = sum(int((p < thr).sum()) for p in probs)
        assert abs(dropped - target * total) <= 1  # one-token granularity over the dev set
        # batched application gives the same drop ratio
        P = torch.zeros(len(probs), max(lengths), dtype=torch.float64)
        for b, p in enumerate(probs):
            P[b, : p.size] = torch.from_numpy(p)
        keep = keep_from_probs(P, torch.tensor(lengths), thr)
        assert int(keep.sum()) == total - dropped
    # ties: cannot split equal probabilities, but never overshoots by more than the tie
    thr = choose_threshold(np.array([0.2, 0.5, 0.5, 0.5, 0.9]), 0.4)
    assert 0.2 < thr <= 0.5


def _alternate_reference(p: np.ndarray, thr: float) -> np.ndarray:
    """The rule token by token: drop a candidate unless its left neighbour was dropped."""
    keep = np.ones(p.size, dtype=bool)
    for t in range(p.size):
        if p[t] < thr and (t == 0 or keep[t - 1]):
            keep[t] = False
    return keep


def test_alternate_keep_by_hand_and_against_the_sequential_rule():
    p = torch.tensor([[0.1, 0.1, 0.1, 0.9, 0.1, 0.9, 0.1, 0.1, 0.5, 0.0]])
    keep = alternate_keep(p, torch.tensor([9]), 0.3)  # the last token is padding
    # runs of candidates: [0..2] -> drop 0, 2; [4] -> drop 4; [6, 7] -> drop 6
    assert keep.int().tolist() == [[0, 1, 0, 1, 0, 1, 0, 1, 1, 0]]
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 40, size=16)
    P = torch.from_numpy(rng.random((16, 40)))
    for thr in (0.0, 0.2, 0.5, 0.8, 1.01):
        keep = alternate_keep(P, torch.from_numpy(lengths), thr)
        for b, n in enumerate(lengths.tolist()):
            assert keep[b, :n].numpy().tolist() == _alternate_reference(P[b, :n].numpy(), thr).tolist()
            assert not keep[b, n:].any()
            assert not bool((~keep[b, 1:n] & ~keep[b, :n - 1]).any())  # never two neighbours


def test_alternate_threshold_is_exact_and_capped_near_one_half():
    rng = np.random.default_rng(2)
    probs = [rng.random(int(n)) for n in rng.integers(5, 80, size=30)]
    total = sum(p.size for p in probs)

    def dropped(thr):
        return sum(int((~_alternate_reference(p, thr)).sum()) for p in probs)

    for target in (0.0, 0.1, 0.3, 0.45):
        thr = choose_threshold(probs, target, rule="alternate")
        assert abs(dropped(thr) - target * total) <= 1  # each threshold step moves one token at most
    # every token a candidate: every other one goes, a little over one half at most
    most = dropped(choose_threshold(probs, 1.0, rule="alternate"))
    assert most == sum((p.size + 1) // 2 for p in probs)
    # a (B, T) array is one utterance per row, not one long utterance
    P = np.stack([np.resize(p, 40) for p in probs[:5]])
    thr = choose_threshold(P, 0.3, rule="alternate")
    assert abs(sum(int((~_alternate_reference(r, thr)).sum()) for r in P) - 0.3 * P.size) <= 1
    with pytest.raises(ValueError, match="rule"):
        choose_threshold(probs, 0.3, rule="sometimes")


def test_flops_detector_negligible_next_to_encoder():
    cfg = Wav2Vec2Config()  # wav2vec2-base shape, counted analytically (no weights built)
    T = 49  # 1 s of audio
    det = SaliencyDetector(in_dim=cfg.conv_dim[-1])
    sizes = sizes_from_config(cfg)
    enc = flops_from_sizes(sizes, 1.0, include_lm_head=True)
    half = flops_from_sizes(sizes, 1.0, include_lm_head=True, num_tokens=25)
    assert enc["total"] == sum(v for k, v in enc.items() if k != "total")
    assert half["conv"] == enc["conv"] and half["projection"] == enc["projection"]
    transformer = lambda f: f["attention"] + f["ffn"]  # noqa: E731
    assert transformer(half) < 0.55 * transformer(enc)
    d = detector_flops(det, T)
    assert d == 2 * T * (64 * 512 * 5 + 64 * 64 * 5 + 64)
    assert d < 0.01 * enc["total"]
    # known ballpark: wav2vec2-base is ~ 7 GMACs (14 GFLOPs) per second of audio
    assert 12e9 < enc["total"] < 16e9


def test_extract_features_shapes():
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(vocab_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, conv_dim=(16, 16), conv_kernel=(100, 4), conv_stride=(80, 4),
                         feat_extract_norm="layer", num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    model = Wav2Vec2ForCTC(cfg).eval()
    x = torch.randn(2, 4000)
    mask = torch.ones(2, 4000, dtype=torch.long)
    mask[1, 3000:] = 0
    with torch.no_grad():
        f, n = extract_features(model, x, mask)
    assert f.shape == (2, 12, 16) and n.tolist() == [12, 9] and f[1, 9:].abs().sum() == 0
