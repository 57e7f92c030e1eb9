"""Contract between SAFARI and export: a masked model and its physically pruned copy agree.

For every unit kind (and all together, and with a dropped layer), on every model variant
(wav2vec 2.0 with group-norm and layer-norm conv encoders, HuBERT): eval-mode logits of
``apply_masks(model, mask)`` equal those of ``materialise(model, mask)`` within 1e-5 on a
padded batch with an attention mask; the pruned model's measured FLOPs equal the analytic
masked count; and a save/load round trip keeps the logits.
"""

from __future__ import annotations

import pytest
import torch
from pruning_models import VARIANTS, padded_batch, tiny_model

from s6damon.pruning import (
    StructuredMask,
    apply_masks,
    encoder_flops,
    load_pruned,
    materialise,
    measured_flops,
    remove_masks,
    save_pruned,
)


def _mask(model, which: str) -> StructuredMask:
    mask = StructuredMask.full(model)
    if which in ("heads", "all", "layer"):
        mask.heads[0][1] = False
        mask.heads[1][[0, 3]] = False
        mask.heads[2][:] = False  # a layer with no head left (allowed in the machinery)
    if which in ("neurons", "all", "layer"):
        mask.neurons[0][::3] = False
        mask.neurons[2][5:60] = False
    if which in ("conv_channels", "all", "layer"):
        mask.conv_channels[0][::2] = False
        mask.conv_channels[1][:5] = False
    if which == "layer":
        mask.layers[1] = False
    return mask


def _logits(model, audio, attention_mask):
    with torch.no_grad():
        return model(audio, attention_mask=attention_mask).logits


CASES = [("w2v2-group", which) for which in ("heads", "neurons", "conv_channels")] + [
    (variant, which) for variant in VARIANTS for which in ("all", "layer")
]


@pytest.mark.parametrize(("variant", "which"), CASES)
def test_masked_equals_materialised(variant, which, tmp_path):
    model = tiny_model(variant)
    audio, attention_mask = padded_batch()
    dense = _logits(model, audio, attention_mask)
    mask = _mask(model, which)

    apply_masks(model, mask)
    masked = _logits(model, audio, attention_mask)
    assert not torch.allclose(masked, dense, atol=1e-3), "the mask should change the output"

    small = materialise(model, mask)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    torch.testing.assert_close(_logits(small, audio, attention_mask), masked, atol=1e-5, rtol=0)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in small.modules())
    torch.testing.assert_close(_logits(model, audio, attention_mask), masked, atol=0, rtol=0)  # still masked

    # FLOPs: analytic count under the mask == measured on the physical model
    assert measured_flops(small, 0.4) == encoder_flops(model, mask, 0.4, include_lm_head=True)["total"]

    # round trip through a folder
    save_pruned(small, tmp_path / "small")
    loaded = load_pruned(tmp_path / "small")
    torch.testing.assert_close(_logits(loaded, audio, attention_mask), masked, atol=1e-6, rtol=0)

    remove_masks(model)
    torch.testing.assert_close(_logits(model, audio, attention_mask), dense, atol=0, rtol=0)


def test_batch_matches_single_after_materialise():
    # layer-norm conv encoder: the group-norm one normalises over padding by design
    model = tiny_model("w2v2-layer-stable")
    small = materialise(model, _mask(model, "all"))
    audio, attention_mask = padded_batch()
    batch = _logits(small, audio, attention_mask)
    single = _logits(small, audio[1:, :4300], attention_mask[1:, :4300])
    frames = single.shape[1]
    torch.testing.assert_close(batch[1:, :frames], single, atol=1e-5, rtol=0)


def test_full_mask_materialises_to_identical_model():
    model = tiny_model()
    small = materialise(model, StructuredMask.full(model))
    audio, attention_mask = padded_batch()
    torch.testing.assert_close(_logits(small, audio, attention_mask), _logits(model, audio, attention_mask))


def test_materialised_model_can_be_masked_again():
    model = tiny_model()
    small = materialise(model, _mask(model, "heads"))
    again = StructuredMask.full(small)
    assert [len(m) for m in again.heads] == [3, 2, 0]
    again.neurons[1][:10] = False
    apply_masks(small, again)
    audio, attention_mask = padded_batch()
    torch.testing.assert_close(
        _logits(materialise(small, again), audio, attention_mask), _logits(small, audio, attention_mask),
        atol=1e-5, rtol=0)


def test_mask_shape_mismatch_is_rejected():
    model = tiny_model()
    mask = StructuredMask.full(model)
    mask.heads[0] = torch.ones(5, dtype=torch.bool)
    with pytest.raises(ValueError, match="heads"):
        apply_masks(model, mask)
    mask = StructuredMask.full(model)
    mask.conv_channels[0][:] = False
    with pytest.raises(ValueError, match="no channels"):
        materialise(model, mask)
