"""Single-utterance test-time adaptation (SUTA): losses, the parameters it moves, and that
the model comes back unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from _train_fixtures import make_manifest, tiny_params
from s6damon.config.decode import AdaptParams
from s6damon.decode.adapt import (adapt_emissions, adapted_parameters, class_confusion_loss,
                                  entropy_loss)
from s6damon.decode.beam import emissions
from s6damon.model.factory import build_ctc_model
from s6damon.model.vocab import build_tokenizer


def _model():
    torch.manual_seed(0)
    m, _, _ = tiny_params()
    tok = build_tokenizer()
    return build_ctc_model(m, tok, mask_time_prob=0.0).eval(), tok


def test_entropy_counts_only_non_blank_frames():
    blank = 0
    sure_blank = torch.tensor([9.0, 0.0, 0.0])
    unsure_letter = torch.tensor([0.0, 0.5, 0.4])
    logits = torch.stack([sure_blank, sure_blank, unsure_letter])
    lp = torch.log_softmax(unsure_letter, -1)
    assert entropy_loss(logits, blank).item() == pytest.approx(float(-(lp.exp() * lp).sum()))
    # every frame blank: zero, and still differentiable
    x = sure_blank.repeat(4, 1).requires_grad_(True)
    loss = entropy_loss(x, blank)
    loss.backward()
    assert loss.item() == 0.0 and x.grad is not None


def test_class_confusion_is_low_for_distinct_classes_and_high_for_confused_ones():
    distinct = torch.tensor([[9.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 9.0]])
    confused = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    assert class_confusion_loss(distinct, 1.0) < 0.01 < class_confusion_loss(confused, 1.0)


def test_an_unknown_scope_is_refused():
    model, _ = _model()
    with pytest.raises(ValueError, match="unknown adaptation scope 'all'"):
        adapted_parameters(model, "all")


def test_the_adapted_parameters_are_the_norms_and_with_conv_the_feature_encoder():
    model, _ = _model()
    norm = {id(p) for p in adapted_parameters(model, "norm")}
    conv = {id(p) for p in adapted_parameters(model, "norm+conv")}
    norms = [mod for mod in model.modules() if isinstance(mod, (torch.nn.LayerNorm, torch.nn.GroupNorm))]
    assert norm == {id(p) for mod in norms for p in mod.parameters(recurse=False)}
    assert norm < conv
    assert {id(p) for p in model.wav2vec2.feature_extractor.parameters()} <= conv
    assert id(model.lm_head.weight) not in conv


def test_adaptation_changes_the_posteriors_and_leaves_the_model_as_it_was(tmp_path):
    model, tok = _model()
    df = make_manifest(tmp_path / "wav", n=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    plain = emissions(model, df)
    # no steps: exactly plain decoding (one utterance at a time, no padding)
    for a, b in zip(adapt_emissions(model, df, AdaptParams(steps=0), tok.pad_token_id), plain):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    settings = AdaptParams(steps=3, lr=1e-2, scope="norm+conv")
    adapted = adapt_emissions(model, df, settings, tok.pad_token_id)
    assert [a.shape for a in adapted] == [p.shape for p in plain]
    assert any((a - p).abs().max() > 1e-3 for a, p in zip(adapted, plain))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)
    assert grads == {n: p.requires_grad for n, p in model.named_parameters()}
    assert not model.training
    # each utterance starts from the original model: alone it reads the same as in the batch
    alone = adapt_emissions(model, df.iloc[[2]], settings, tok.pad_token_id)[0]
    torch.testing.assert_close(alone, adapted[2])


def test_an_export_adapts_through_its_own_graph_and_stays_as_it_was(tmp_path):
    from export_models import write_folders

    from s6damon.decode.beam import export_emissions
    from s6damon.export import export_model

    src = write_folders(tmp_path)
    pruned = export_model(src["safari"], tmp_path / "pruned")
    dropping = export_model(src["safari"], tmp_path / "dropping", salad_dir=src["salad"])
    paths = []
    for i, n in enumerate((9000, 12000)):
        wave = np.random.default_rng(i).standard_normal(n).astype(np.float32) * 0.1
        sf.write(tmp_path / f"u{i}.wav", wave, 16000, subtype="FLOAT")
        paths.append(tmp_path / f"u{i}.wav")
    for out in (pruned, dropping):
        plain, tok = export_emissions(out, paths)
        same, _ = export_emissions(out, paths, adapt=AdaptParams(steps=0))
        for a, b in zip(same, plain):
            torch.testing.assert_close(a, b)
        adapted, _ = export_emissions(out, paths, adapt=AdaptParams(steps=3, lr=1e-2))
        assert all(a.shape[-1] == len(tok) for a in adapted)
        if out == pruned:  # without a detector the frame count cannot move
            assert [a.shape for a in adapted] == [p.shape for p in plain]
            assert any((a - p).abs().max() > 1e-3 for a, p in zip(adapted, plain))
        else:  # the adapted conv encoder changes what the detector drops
            assert any(a.shape != p.shape or (a - p).abs().max() > 1e-3 for a, p in zip(adapted, plain))
        # the folder on disk is untouched and reads as before
        again, _ = export_emissions(out, paths)
        for a, b in zip(again, plain):
            torch.testing.assert_close(a, b)
