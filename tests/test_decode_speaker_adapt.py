"""Unsupervised speaker adaptation: the folds it reads and adapts on, no leak from an
utterance into its own reading, and the model (or export) coming back unchanged."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from _train_fixtures import make_manifest, tiny_params
from s6damon.config.decode import AdaptParams, SpeakerAdaptParams
from s6damon.decode.adapt import adapted_parameters, adapted_to, speaker_folds
from s6damon.decode.beam import emissions, speaker_emissions
from s6damon.model.factory import build_ctc_model, save_model
from s6damon.model.vocab import build_tokenizer


def _model():
    torch.manual_seed(0)
    m, _, _ = tiny_params()
    tok = build_tokenizer()
    return build_ctc_model(m, tok, mask_time_prob=0.0).eval(), tok


def _rows(speakers: list[str]) -> pd.DataFrame:
    # utt_ids out of row order, so the folds must follow utt_id, not the row position
    return pd.DataFrame({"speaker": speakers, "utt_id": [f"u{9 - i}" for i in range(len(speakers))]})


def test_every_row_is_read_once_by_a_model_adapted_to_its_speakers_other_folds():
    df = _rows(["a", "b", "a", "a", "c", "a", "a"])
    splits = speaker_folds(df, 2)
    read = [r for _, rows in splits for r in rows]
    assert sorted(read) == list(range(len(df)))
    for adapt, rows in splits:
        assert not set(adapt) & set(rows)
        assert df["speaker"].iloc[adapt + rows].nunique() == 1
    # speaker a in utt_id order: rows 6, 5, 3, 2, 0 -> folds {6, 3, 0} and {5, 2}
    assert ([5, 2], [6, 3, 0]) in splits and ([6, 3, 0], [5, 2]) in splits
    # one utterance: read unadapted
    assert ([], [1]) in splits
    # transductive: a speaker's rows are adapted to and read together
    assert all(sorted(a) == sorted(r) for a, r in speaker_folds(df, 1))


def test_bad_folds_and_missing_columns_are_refused():
    with pytest.raises(ValueError, match="folds must be >= 1"):
        speaker_folds(_rows(["a"]), 0)
    with pytest.raises(ValueError, match=r"columns \['speaker'\]"):
        speaker_folds(pd.DataFrame({"utt_id": ["u1"]}), 2)


def test_adapted_to_moves_the_posteriors_inside_and_restores_the_model(tmp_path):
    model, tok = _model()
    df = make_manifest(tmp_path / "wav", n=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    params = adapted_parameters(model, "norm+conv")
    plain = emissions(model, df)
    fns = []
    for i in range(len(df)):
        wave = torch.from_numpy(sf.read(df.at[i, "path"], dtype="float32")[0])
        fns.append(lambda w=wave: model(((w - w.mean()) / (w.std() + 1e-7))[None]).logits[0])
    with adapted_to(model, params, fns, AdaptParams(lr=1e-2), tok.pad_token_id, epochs=0, batch_utterances=2):
        for a, b in zip(emissions(model, df), plain):
            torch.testing.assert_close(a, b)
    with adapted_to(model, params, fns, AdaptParams(lr=1e-2), tok.pad_token_id, epochs=2, batch_utterances=2):
        inside = emissions(model, df)
        # the steps are over: mode and flags are back while the adapted weights are in place
        assert not model.training
        assert grads == {n: p.requires_grad for n, p in model.named_parameters()}
    assert any((a - b).abs().max() > 1e-3 for a, b in zip(inside, plain))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)
    assert grads == {n: p.requires_grad for n, p in model.named_parameters()}


def test_adapted_to_descends_on_a_given_loss_in_place_of_sutas(tmp_path):
    # the pseudo-label pilot's use: a supervised objective per utterance, the same steps and restore
    model, tok = _model()
    df = make_manifest(tmp_path / "wav", n=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = adapted_parameters(model, "norm+conv")
    fns = []
    for i in range(len(df)):
        wave = torch.from_numpy(sf.read(df.at[i, "path"], dtype="float32")[0])
        fns.append(lambda w=wave: model(((w - w.mean()) / (w.std() + 1e-7))[None]).logits[0])
    target = 5  # a character every frame is pushed towards
    calls: list[int] = []

    def loss(i: int, logits: torch.Tensor) -> torch.Tensor:
        assert logits.dtype == torch.float32 and logits.requires_grad
        calls.append(i)
        return -torch.log_softmax(logits, -1)[:, target].mean()

    plain = emissions(model, df)
    with adapted_to(model, params, fns, AdaptParams(lr=1e-2), tok.pad_token_id, epochs=2, batch_utterances=2,
                    loss=loss):
        inside = emissions(model, df)
    assert sorted(calls) == sorted(list(range(len(fns))) * 2)  # every utterance once an epoch
    for a, b in zip(inside, plain):
        assert a[:, target].mean() > b[:, target].mean() + 0.1
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)


def test_an_utterance_never_adapts_the_model_that_reads_it(tmp_path):
    model, tok = _model()
    folder = save_model(model, tok, tmp_path / "model")
    df = make_manifest(tmp_path / "wav", n=6).assign(speaker=["a", "a", "a", "a", "b", "b"])
    settings = SpeakerAdaptParams(epochs=2, batch_utterances=2, lr=1e-2, folds=2, tta=False)
    adapt = AdaptParams()
    plain, _ = speaker_emissions(folder, df, adapt, SpeakerAdaptParams(epochs=0, tta=False))
    for a, b in zip(plain, emissions(model, df)):
        torch.testing.assert_close(a, b)
    adapted, _ = speaker_emissions(folder, df, adapt, settings)
    assert [a.shape for a in adapted] == [p.shape for p in plain]
    assert any((a - p).abs().max() > 1e-3 for a, p in zip(adapted, plain))
    # speaker a's folds are {u000, u002} and {u001, u003}: replacing u000's audio changes how
    # u001 and u003 are read (their model adapted to it) but not u002, read beside it
    noise = np.random.default_rng(5).standard_normal(12000).astype(np.float32) * 0.3
    sf.write(tmp_path / "other.wav", noise, 16000)
    changed = df.copy()
    changed.loc[0, ["path", "duration"]] = [str(tmp_path / "other.wav"), 0.75]
    again, _ = speaker_emissions(folder, changed, adapt, settings)
    torch.testing.assert_close(again[2], adapted[2])
    assert (again[1] - adapted[1]).abs().max() > 1e-4
    for i in (4, 5):  # another speaker: untouched
        torch.testing.assert_close(again[i], adapted[i])
    # single-utterance steps on top: none reads as the speaker-adapted model does, some move it
    none, _ = speaker_emissions(folder, df, AdaptParams(steps=0), dataclasses.replace(settings, tta=True))
    for a, b in zip(none, adapted):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    both, _ = speaker_emissions(folder, df, AdaptParams(steps=2, lr=1e-2), dataclasses.replace(settings, tta=True))
    assert any((a - b).abs().max() > 1e-3 for a, b in zip(both, adapted))


def test_an_export_adapts_to_a_speaker_through_its_own_graph(tmp_path):
    from export_models import write_folders

    from s6damon.decode.beam import export_emissions
    from s6damon.export import export_model

    src = write_folders(tmp_path)
    out = export_model(src["safari"], tmp_path / "pruned")
    rows = []
    for i, n in enumerate((9000, 12000, 10000, 11000)):
        wave = np.random.default_rng(i).standard_normal(n).astype(np.float32) * 0.1
        sf.write(tmp_path / f"u{i}.wav", wave, 16000, subtype="FLOAT")
        rows.append({"utt_id": f"u{i}", "speaker": "s", "path": str(tmp_path / f"u{i}.wav"), "duration": n / 16000})
    df = pd.DataFrame(rows)
    plain, tok = export_emissions(out, df["path"])
    same, _ = speaker_emissions(out, df, AdaptParams(), SpeakerAdaptParams(epochs=0, tta=False))
    for a, b in zip(same, plain):
        torch.testing.assert_close(a, b)
    settings = SpeakerAdaptParams(epochs=2, lr=1e-2, batch_utterances=1, tta=False)
    adapted, _ = speaker_emissions(out, df, AdaptParams(), settings)
    assert [a.shape for a in adapted] == [p.shape for p in plain]
    assert any((a - p).abs().max() > 1e-3 for a, p in zip(adapted, plain))
    again, _ = export_emissions(out, df["path"])
    for a, b in zip(again, plain):
        torch.testing.assert_close(a, b)
