"""SALAD token dropping inside tiny random-weight wav2vec2 / HuBERT CTC models.

Parity tests are the contract: keep-all equals the unmodified model, a padded batch equals
each utterance run alone, order and padding survive compaction, gradients flow, and the
CTC guard never lets a transcript become undecodable.
"""

from __future__ import annotations

import pytest
import torch
from transformers import HubertConfig, HubertForCTC, Wav2Vec2Config, Wav2Vec2ForCTC

from s6damon.model.frames import num_frames
from s6damon.salad.baselines import baseline_keep
from s6damon.salad.detector import SaliencyDetector
from s6damon.salad.dropping import (SpanEmbedding, TokenDropCTC, compact, drop_forward, expand, merge_into_kept,
                                    token_spans)
from s6damon.salad.guard import ctc_required_lengths

TINY = dict(vocab_size=12, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16, 16), conv_kernel=(100, 4), conv_stride=(80, 4), conv_bias=True,
            feat_extract_norm="layer",  # LayerNorm convs: padding does not leak into features
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, hidden_dropout=0.0,
            attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0,
            layerdrop=0.0, pad_token_id=0, mask_time_prob=0.0, ctc_zero_infinity=True,
            ctc_loss_reduction="mean")


def _model(family: str, stable: bool = False):
    torch.manual_seed(0)
    if family == "wav2vec2":
        return Wav2Vec2ForCTC(Wav2Vec2Config(**TINY, do_stable_layer_norm=stable)).eval()
    return HubertForCTC(HubertConfig(**TINY, do_stable_layer_norm=stable)).eval()


MODELS = [("wav2vec2", False), ("wav2vec2", True), ("hubert", False)]
SR = 16000


def _batch(lengths):
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(len(lengths), max(lengths))
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for b, n in enumerate(lengths):
        x[b, :n] = torch.randn(n, generator=g)
        mask[b, :n] = 1
    return x, mask


def test_compact_preserves_order_and_padding():
    h = torch.arange(2 * 6, dtype=torch.float).view(2, 6, 1)
    keep = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    out, mask, index = compact(h, keep)
    assert out.shape == (2, 3, 1)
    assert out[0, :, 0].tolist() == [0.0, 2.0, 3.0]
    assert out[1, :, 0].tolist() == [11.0, 0.0, 0.0]  # padding zeroed
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    assert index[0].tolist() == [0, 2, 3] and int(index[1, 0]) == 5
    back = expand(out, index, mask, 6)
    assert torch.equal(back[..., 0] != 0, keep & (h[..., 0] != 0))


def test_merge_averages_dropped_tokens_into_the_kept_one_before():
    h = torch.arange(2 * 6, dtype=torch.float).view(2, 6, 1).requires_grad_()
    keep = torch.tensor([[0, 1, 0, 1, 1, 0], [1, 0, 0, 1, 0, 0]], dtype=torch.bool)
    valid = torch.tensor([[1] * 6, [1, 1, 1, 1, 1, 0]], dtype=torch.bool)  # row 1: last frame is padding
    compacted, mask, _ = compact(h, keep)
    out = merge_into_kept(h, keep, valid, compacted)
    # row 0: frame 0 (before the first kept) and 2 join 1; 5 joins 4. row 1: padding ignored
    assert out[0, :, 0].tolist() == [1.0, 3.0, 4.5]
    assert out[1, :, 0].tolist() == [7.0, 9.5, 0.0]
    out.sum().backward()  # every valid frame contributes, padding does not
    assert (h.grad[0, :, 0] > 0).all() and h.grad[1, 5, 0] == 0
    # nothing dropped: merging is compaction
    torch.testing.assert_close(merge_into_kept(h, valid, valid, compact(h, valid)[0]), compact(h, valid)[0])


def test_token_spans_count_the_frames_each_kept_token_stands_for():
    keep = torch.tensor([[0, 1, 0, 1, 1, 0], [1, 0, 0, 1, 0, 0]], dtype=torch.bool)
    valid = torch.tensor([[1] * 6, [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    # row 0: frames 0-2 owned by the first kept, 3, then 4-5; row 1: 0-2, then 3-4 (5 is padding)
    assert token_spans(keep, valid, 3).tolist() == [[3, 1, 2], [3, 2, 0]]
    emb = SpanEmbedding(2, 1)
    h = torch.zeros(2, 3, 1)
    assert torch.equal(emb(h, token_spans(keep, valid, 3)), h)  # zero at start: no change
    with torch.no_grad():
        emb.table.weight.copy_(torch.tensor([[1.0], [10.0]]))
    # spans past max_span share its vector; padding positions get nothing
    assert emb(h, token_spans(keep, valid, 3))[..., 0].tolist() == [[10.0, 1.0, 10.0], [10.0, 10.0, 0.0]]


def test_span_embedding_trains_and_starts_as_the_model_without_it():
    model = _model("wav2vec2").train()
    x, mask = _batch([4000, 3000])
    labels = torch.tensor([[3, 4, 4, 5], [6, 7, -100, -100]])
    keep = baseline_keep("uniform", torch.tensor([12, 9]), 0.5, T=12)
    span = SpanEmbedding(3, TINY["hidden_size"])
    net = TokenDropCTC(model, merge=True, span_embedding=span)
    assert any(p is span.table.weight for p in net.parameters())
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(net(x, mask, keep=keep).logits,
                                   drop_forward(model, x, mask, keep=keep, merge=True).logits, rtol=0, atol=0)
        model.train()
    out = net(x, mask, labels=labels, keep=keep)
    out.loss.backward()
    assert span.table.weight.grad[:2].abs().sum() > 0  # the spans this mask makes (1-2 frames) get gradient


@pytest.mark.parametrize("family,stable", MODELS)
def test_keep_all_equals_unmodified_model(family, stable):
    model = _model(family, stable)
    x, mask = _batch([4000, 4000])
    with torch.no_grad():
        ref = model(x).logits
        out = drop_forward(model, x)
        ref_m = model(x, attention_mask=mask).logits
        out_m = drop_forward(model, x, mask)
        merged = drop_forward(model, x, mask, merge=True)
    torch.testing.assert_close(out.logits, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(merged.logits, ref_m, rtol=0, atol=1e-6)
    torch.testing.assert_close(out_m.logits, ref_m, rtol=0, atol=1e-6)
    assert out.lengths.tolist() == [ref.shape[1]] * 2 and out.drop_ratio == 0.0
    labels = torch.tensor([[3, 4, 4, 5], [6, 7, -100, -100]])
    with torch.no_grad():
        ref_loss = model(x, attention_mask=mask, labels=labels).loss
        loss = drop_forward(model, x, mask, labels=labels).loss
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("merge", [False, True])
@pytest.mark.parametrize("family,stable", MODELS)
def test_padded_batch_matches_single_utterances(family, stable, merge):
    model = _model(family, stable)
    lengths = [4000, 2570, 3300]
    x, mask = _batch(lengths)
    frames = [num_frames(n, TINY["conv_kernel"], TINY["conv_stride"]) for n in lengths]
    keep = baseline_keep("random", frames, 0.5, seed=3)
    with torch.no_grad():
        out = drop_forward(model, x, mask, keep=keep, merge=merge)
        for b, n in enumerate(lengths):
            single = drop_forward(model, x[b:b + 1, :n], keep=keep[b:b + 1, : out.frame_lengths[b]], merge=merge)
            L = int(out.lengths[b])
            assert L == int(single.lengths[0])
            torch.testing.assert_close(out.logits[b, :L], single.logits[0], rtol=1e-5, atol=1e-5)
    # the kept frames are exactly the mask's, in order
    for b in range(len(lengths)):
        kept = torch.nonzero(keep[b]).flatten()
        assert out.index[b, : len(kept)].tolist() == kept.tolist()
    assert out.fallbacks == 0


def test_dropping_shortens_sequence_and_trains():
    model = _model("wav2vec2").train()
    x, mask = _batch([4000, 3000])
    labels = torch.tensor([[3, 4, 4, 5], [6, 7, -100, -100]])
    frames = torch.tensor([12, 9])
    keep = baseline_keep("uniform", frames, 0.5, T=12)
    out = drop_forward(model, x, mask, keep=keep, labels=labels)
    assert out.lengths.tolist() == [6, 4] and out.logits.shape[1] == 6
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.wav2vec2.encoder.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert model.wav2vec2.feature_projection.projection.weight.grad.abs().sum() > 0
    # the loss is the CTC loss on the shortened lengths
    lp = torch.log_softmax(out.logits.detach(), -1).transpose(0, 1)
    ref = torch.nn.functional.ctc_loss(lp, torch.tensor([3, 4, 4, 5, 6, 7]), out.lengths, torch.tensor([4, 2]),
                                       blank=0, reduction="mean", zero_infinity=True)
    torch.testing.assert_close(out.loss.detach(), ref)


def test_spec_augment_applies_in_training_only():
    model = Wav2Vec2ForCTC(Wav2Vec2Config(**{**TINY, "mask_time_prob": 0.5, "mask_time_length": 2}))
    x, mask = _batch([4000, 4000])
    keep = baseline_keep("uniform", [12, 12], 0.25)
    torch.manual_seed(0)
    model.train()
    a = drop_forward(model, x, mask, keep=keep).logits
    b = drop_forward(model, x, mask, keep=keep, apply_spec_augment=False).logits
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(drop_forward(model, x, mask, keep=keep).logits,
                               drop_forward(model, x, mask, keep=keep, apply_spec_augment=False).logits)


def test_ctc_guard_restores_tokens_and_counts_fallbacks():
    model = _model("wav2vec2")
    x, mask = _batch([4000, 4000, 4000])
    labels = torch.tensor([[3, 4, 4, 4, 5, 6], [3, -100, -100, -100, -100, -100], [3, 3, 3, 3, 3, 3]])
    need = ctc_required_lengths(labels).tolist()
    assert need == [8, 1, 11]
    keep = torch.zeros(3, 12, dtype=torch.bool)
    keep[:, :3] = True  # 3 kept each: too few for utterances 0 and 2
    drop = TokenDropCTC(model)
    with torch.no_grad():
        out = drop(x, mask, labels=labels, keep=keep)
    assert out.lengths.tolist() == [8, 3, 11]
    assert out.fell_back.tolist() == [True, False, True] and out.fallbacks == 2
    assert keep[0].logical_and(~out.keep[0]).sum() == 0  # restoring only adds tokens
    assert torch.isfinite(out.loss) and out.loss > 0
    assert drop.stats["fallbacks"] == 2 and drop.stats["utterances"] == 3
    # keeping nothing at inference still keeps one token per utterance
    with torch.no_grad():
        empty = drop(x, mask, keep=torch.zeros(3, 12, dtype=torch.bool))
    assert empty.lengths.tolist() == [1, 1, 1] and torch.isfinite(empty.logits).all()
    # min_keep_ratio floor
    with torch.no_grad():
        out = drop_forward(model, x, mask, keep=torch.zeros(3, 12, dtype=torch.bool), min_keep_ratio=0.5)
    assert out.lengths.tolist() == [6, 6, 6]
    # a mask narrower than the frame grid is padded with False (dropped)
    with torch.no_grad():
        out = drop_forward(model, x, mask, keep=torch.ones(3, 10, dtype=torch.bool))
    assert out.lengths.tolist() == [10, 10, 10] and not out.keep[:, 10:].any()


def test_detector_driven_dropping_restores_most_salient_first():
    model = _model("wav2vec2")
    det = SaliencyDetector(in_dim=16, hidden=8)
    x, mask = _batch([4000, 2600])
    drop = TokenDropCTC(model, detector=det, threshold=2.0)  # threshold above 1: detector drops everything
    with torch.no_grad():
        out = drop(x, mask, labels=torch.tensor([[3, 4, 5], [6, 6, -100]]))
        feats = model.wav2vec2.feature_extractor(x).transpose(1, 2)
        p = torch.sigmoid(det(feats, out.frame_lengths))
    assert out.lengths.tolist() == [3, 3] and out.fallbacks == 2
    for b in range(2):
        n = int(out.frame_lengths[b])
        top = torch.topk(p[b, :n], 3).indices.sort().values
        assert torch.nonzero(out.keep[b]).flatten().tolist() == top.tolist()
    assert all(not q.requires_grad for q in det.parameters())
    drop.train()
    assert not det.training


def test_token_drop_module_exposes_model_parameters():
    model = _model("hubert")
    drop = TokenDropCTC(model)
    assert sum(p.numel() for p in drop.parameters()) == sum(p.numel() for p in model.parameters())
    assert drop.config is model.config
