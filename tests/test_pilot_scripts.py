"""The pilot scripts' own logic: recipe overrides and the pretraining pool's exclusions."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from finetune_pilot import override, with_device  # noqa: E402
from pretrain_pilot import pool_rows  # noqa: E402

from s6damon.config import ParamsError  # noqa: E402
from s6damon.config.model import FinetuneParams, ModelParams, PretrainParams  # noqa: E402


def assert_refused(script: str, argv: list[str], message: str, monkeypatch, capsys, tmp_path) -> None:
    """``scripts/<script>.py argv --out <tmp>`` exits with a usage error (code 2) whose text holds
    ``message``, before writing any output."""
    module = __import__(script)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv, "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as err:
        module.main()
    assert err.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before any training or output


def test_override_validates_and_names_the_section():
    assert override(PretrainParams(), ["steps=7"], "pretrain").steps == 7
    assert override(FinetuneParams(), ["learning_rate=0.5"]).learning_rate == 0.5
    with pytest.raises(ParamsError, match="'pretrain.steps'"):
        override(PretrainParams(), ["steps=-1"], "pretrain")
    with pytest.raises(ParamsError, match="KEY=VALUE"):
        override(FinetuneParams(), ["steps"])


def test_device_override_is_validated_as_model_device():
    # the pilots' --device goes through the same validation as params.yaml's model.device
    assert with_device(ModelParams(), "cuda").device == "cuda"
    assert with_device(ModelParams(), None) == ModelParams()
    with pytest.raises(ParamsError, match="'model.device'"):
        with_device(ModelParams(), "gpu")


def _manifest(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """A manifest of (file name, text, split, voice) rows with empty audio files beside it."""
    for name, *_ in rows:
        (path.parent / name).write_bytes(b"")
    df = pd.DataFrame([(str(path.parent / n), t, s, v, 1.0) for n, t, s, v in rows],
                      columns=["path", "text", "split", "voice", "duration"])
    df.to_parquet(path)
    return path


def test_pool_leaves_out_evaluation_texts_and_unseen_voices(tmp_path):
    evals = _manifest(tmp_path / "eval.parquet", [
        ("a.wav", "turn on the light", "train", "flite:awb"),
        ("b.wav", "call mum", "dev", "flite:awb"),             # seen voice, held-out text
        ("c.wav", "stop the timer", "dev", "espeak:en+m6"),    # unseen dev voice
        ("d.wav", "play some jazz", "test", "flite:slt"),
    ])
    extra = _manifest(tmp_path / "extra.parquet", [
        ("e.wav", "open the door", "train", "flite:awb"),
        ("f.wav", "call mum", "train", "pico:en-US"),          # an evaluation text
        ("g.wav", "lock the door", "train", "flite:slt"),      # a test voice
        ("h.wav", "dim the lamp", "train", "espeak:en+m6"),    # the unseen dev voice
        ("i.wav", "set an alarm", "dev", "pico:en-US"),        # not a train row
    ])
    pool = pool_rows([evals, extra], pd.read_parquet(evals))
    assert sorted(pool["text"]) == ["open the door", "turn on the light"]


def test_nested_overrides_are_validated():
    from finetune_pilot import override

    from s6damon.config.model import PretrainParams
    from s6damon.config.schema import ParamsError

    p = override(PretrainParams(), ["objective=hubert", "hubert.clusters=50", "hubert.temperature=0.2"], "pretrain")
    assert p.objective == "hubert" and p.hubert.clusters == 50 and p.hubert.temperature == 0.2
    with pytest.raises(ParamsError, match="'pretrain.hubert.cluster'"):
        override(PretrainParams(), ["hubert.cluster=5"], "pretrain")
    with pytest.raises(ParamsError, match="'pretrain.hubert.clusters' must be >= 2"):
        override(PretrainParams(), ["hubert.clusters=1"], "pretrain")
    with pytest.raises(ParamsError, match="'pretrain.steps' is not a section"):
        override(PretrainParams(), ["steps.x=1"], "pretrain")


def test_layer_table_pairs_every_representation_with_timed_phones(tmp_path):
    from layer_pnmi import frame_table, timed_rows
    from transformers import Wav2Vec2Model

    from _train_fixtures import make_manifest, tiny_params
    from s6damon.model.factory import build_config
    from s6damon.model.vocab import build_tokenizer

    df = make_manifest(tmp_path / "wav", 4).assign(split=["train", "train", "test", "train"],
                                                   voice=["a", "b", "c", "a"])
    phones = {u: pd.DataFrame({"phone": ["x", "y"], "start": [0.0, 0.1], "end": [0.1, 0.3]})
              for u in df.utt_id[:3]}                      # the fourth utterance is untimed
    rows = timed_rows(df, set(phones), "train", minutes=10.0, seed=0)
    assert sorted(rows["utt_id"]) == sorted(df.utt_id[:2])
    m, _, _ = tiny_params()
    model = Wav2Vec2Model(build_config(m, len(build_tokenizer()))).eval()
    feats, ph, voices = frame_table(model, rows, phones)
    assert set(feats) == {f"layer{k}" for k in range(m.num_layers + 1)} | {"mfcc"}
    assert all(len(x) == len(ph) == len(voices) == 30 for x in feats.values())   # 15 tokens in 0-0.3 s each
    assert feats["mfcc"].shape[1] == 39 and feats["layer0"].shape[1] == m.hidden_size
    assert ph.count("x") == 2 * 5


def test_oracle_mask_drops_every_other_redundant_token_and_pilot_quota_limits_runs():
    import numpy as np
    from salad_oracle import oracle_keep
    from salad_pilot import spaced_keep

    labels = np.array([1, 0, 0, 0, 1, 0, 1, 0, 0], dtype=bool)  # True = salient
    assert oracle_keep(labels).astype(int).tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1]
    scores = np.array([0.9, 0.1, 0.2, 0.3, 0.8, 0.05, 0.7, 0.15, 0.25])
    keep = spaced_keep(scores, 4, max_run=1)
    assert int((~keep).sum()) == 4 and not bool((~keep[1:] & ~keep[:-1]).any())
    assert int((~spaced_keep(scores, 4, max_run=None)).sum()) == 4


def test_read_voices_renders_the_first_distinct_test_texts(tmp_path):
    from read_voices import first_test_texts, per_voice, render_rows

    manifest = pd.DataFrame({"split": ["train", "test", "test", "test", "dev"],
                             "text": ["a b", "call mum", "call mum", "stop the timer", "x"]})
    assert first_test_texts(manifest, 5) == ["call mum", "stop the timer"]
    assert first_test_texts(manifest, 1) == ["call mum"]
    rows = render_rows(["espeak:en+m1"], ["call mum", "stop the timer"], tmp_path, 16000)
    assert list(rows["text"]) == ["call mum", "stop the timer"]
    assert all(Path(p).is_file() for p in rows["path"]) and (rows["duration"] > 0.3).all()
    hyps = pd.DataFrame({"voice": ["v1", "v1", "v2"], "ref": ["call mum", "stop it", "go"],
                         "hyp": ["call mum", "stop", "no"]})
    res = per_voice(hyps)
    assert res["v1"]["wer"] == pytest.approx(1 / 4) and res["v2"]["wer"] == 1.0


def test_ssl_heldout_sets_take_a_fixed_train_sample_and_split_dev_by_voice():
    from ssl_heldout import eval_sets

    manifest = pd.DataFrame({"split": ["train"] * 5 + ["dev", "dev", "test"],
                             "voice": ["a", "a", "b", "b", "a", "a", "new", "t"],
                             "speaker": ["a", "a", "b", "b", "a", "a", "new", "t"],
                             "utt_id": [f"u{i}" for i in range(8)]})
    sets = eval_sets(manifest, 3, seed=1)
    assert list(sets) == ["train_sample", "dev_seen", "dev_unseen", "test"]
    assert len(sets["train_sample"]) == 3 and set(sets["train_sample"]["split"]) == {"train"}
    assert list(eval_sets(manifest, 3, seed=1)["train_sample"]["utt_id"]) == list(sets["train_sample"]["utt_id"])
    assert list(sets["dev_seen"]["utt_id"]) == ["u5"] and list(sets["dev_unseen"]["utt_id"]) == ["u6"]


def test_augment_shift_measures_the_detectors_decisions_on_augmented_audio():
    from salad_augment_shift import augment_shift

    from s6damon.config.model import AugmentParams
    from s6damon.salad.backbone import extract_features
    from s6damon.salad.detector import SaliencyDetector, predict_proba
    from tests.export_models import tiny_ctc

    model, _ = tiny_ctc()
    torch.manual_seed(0)
    det = SaliencyDetector(model.config.conv_dim[-1], hidden=8, kernel_size=3, num_layers=1).eval()
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) for n in (8000, 12000)]
    with torch.no_grad():  # a threshold at the median, so about half the tokens are dropped
        feats, lengths = extract_features(model, torch.from_numpy(waves[1])[None])
        thr = float(predict_proba(det, feats, lengths).median())
    # no augmentation: the same audio, so the same choices
    same = augment_shift(model, det, thr, waves, AugmentParams())
    assert same["agreement"] == 1.0 and same["drop_clean"] == same["drop_augmented"]
    assert same["utterances"] == 2 and same["tokens"] > 0
    # a strong equaliser on every utterance (probability ignored) changes some choices
    eq = AugmentParams(eq_prob=0.01, eq_bands=3, eq_gain_db=30.0)
    moved = augment_shift(model, det, thr, waves, eq)
    assert moved["drop_clean"] == same["drop_clean"]
    assert moved["min_agreement"] <= moved["agreement"] < 1.0


def test_running_copies_correct_each_utterance_by_its_speakers_mean_so_far(tmp_path):
    import soundfile as sf
    from ltas_running import causal_copies

    from s6damon.corpus.ltas import N_FFT, normalise, smoothed_log_ltas

    rng = np.random.default_rng(7)
    rows = []
    for k, speaker in enumerate(["a", "a", "a", "b"]):
        path = tmp_path / f"u{k}.wav"
        sf.write(path, (rng.normal(0, 0.05 * (k + 1), 8000)).astype(np.float32), 16000, subtype="FLOAT")
        rows.append({"utt_id": f"u{k}", "speaker": speaker, "raw_path": str(path), "split": "test"})
    settings = {"reference_log_power": [-6.0] * (N_FFT // 2 + 1), "floor_db": 30.0, "lifter": 16, "max_gain_db": 12.0,
                "sample_rate": 16000}
    out = causal_copies(pd.DataFrame(rows), settings, tmp_path / "wav", seed=0)
    assert sorted(out.loc[out.speaker == "a", "position"]) == [0, 1, 2] and list(out.loc[out.speaker == "b", "position"]) == [0]
    ordered = out[out.speaker == "a"].sort_values("position")
    waves = [sf.read(p, dtype="float64")[0] for p in ordered["raw_path"]]
    envs = [smoothed_log_ltas(w) for w in waves]
    reference = np.asarray(settings["reference_log_power"])
    for k, (path, wave) in enumerate(zip(ordered["path"], waves)):
        want = normalise(wave, reference, envelope=np.mean(envs[: k + 1], axis=0))
        np.testing.assert_allclose(sf.read(path)[0], want, atol=1e-4)  # PCM_16 rounding


@pytest.mark.parametrize(("argv", "message"), [
    (["--method", "omp", "--level", "0.5"], "give its pilot folder as --base"),
    (["--method", "safari", "--level", "0"], "--level 0 is the dense run"),
    (["--method", "dense", "--level", "0.5"], "--level 0 is the dense run"),
])
def test_safari_pilot_refuses_runs_the_stage_would_not_make(monkeypatch, capsys, tmp_path, argv, message):
    assert_refused("safari_pilot", argv, message, monkeypatch, capsys, tmp_path)


def test_finetune_pilot_scratch_is_the_stages_random_init_control():
    from finetune_pilot import start

    from flows.finetune import scratch_recipe
    from s6damon.config import load_params

    recipe = override(load_params(Path(__file__).resolve().parents[1] / "params.yaml").finetune, ["freeze_feature_encoder_steps=500"])
    assert start("models/pretrained", recipe) == ("models/pretrained", recipe)
    init, control = start("scratch", recipe)
    assert init is None and control == scratch_recipe(recipe)
    assert control.freeze_feature_encoder_steps == 0 and control.steps == recipe.steps


def test_finetune_pilot_reads_extra_averages():
    from finetune_pilot import average_hook

    ema = average_hook("ema:0.5:0.9998", 4000, "avg")
    assert (ema.kind, ema.start, ema.key) == ("ema", 2001, "avg")
    assert average_hook("uniform:0.75", 4000, "avg").start == 3001
    with pytest.raises(ValueError, match="'none:0.5'"):
        average_hook("none:0.5", 4000, "avg")
    with pytest.raises(ValueError, match="'ema:half'"):
        average_hook("ema:half", 4000, "avg")
    with pytest.raises(ValueError, match="'mean:0.5'"):
        average_hook("mean:0.5", 4000, "avg")


def test_ratio_ramp_raises_the_drop_ratio_in_equal_stages_then_holds_it():
    from salad_pilot import RatioRamp

    shared = torch.nn.Linear(2, 2)

    class Stage(torch.nn.Module):  # stands in for a TokenDropCTC at one ratio
        def __init__(self, ratio: float) -> None:
            super().__init__()
            self.model, self.detector, self.span_embedding, self.ratio = shared, None, None, ratio

        def forward(self) -> float:
            return self.ratio

    ramp = RatioRamp([Stage(0.1), Stage(0.2), Stage(0.3)], ramp_calls=6)
    assert [ramp() for _ in range(9)] == [0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3]
    assert [p for p in ramp.parameters()] == list(shared.parameters())  # the one model is what trains


@pytest.mark.parametrize(("argv", "message"), [
    (["--method", "uniform", "--ratio", "0.3", "--rechoose"], "apply to salad_<source> methods"),
    (["--method", "salad_ctc", "--ratio", "0.3", "--rechoose", "--quota"], "--rechoose re-chooses"),
    (["--method", "salad_ctc", "--ratio", "0.3", "--rechoose", "--ramp", "0.5"], "--rechoose re-chooses"),
    (["--method", "salad_ctc", "--ratio", "0.3", "--recipe", "adapt"], "invalid choice: 'adapt'"),
])
def test_salad_pilot_refuses_conflicting_policies(monkeypatch, capsys, tmp_path, argv, message):
    assert_refused("salad_pilot", argv, message, monkeypatch, capsys, tmp_path)


@pytest.mark.parametrize(("argv", "message"), [
    (["--decode-merge", "1.0"], "--decode-merge ratios must lie in (0, 1)"),
    (["--score", "m", "--set", "steps=5"], "--score trains nothing"),
    (["--score", "m", "--init", "scratch"], "--score trains nothing"),
])
def test_finetune_pilot_refuses_conflicting_flags(monkeypatch, capsys, tmp_path, argv, message):
    assert_refused("finetune_pilot", argv, message, monkeypatch, capsys, tmp_path)


def test_finetune_pilot_merged_reader_reads_the_evenly_merged_sequence():
    from finetune_pilot import merged_reader

    from s6damon.model.factory import build_ctc_model
    from s6damon.salad.baselines import n_keep

    torch.manual_seed(0)
    model = build_ctc_model(ModelParams(num_layers=1, hidden_size=32, num_heads=2, intermediate_size=64,
                                        conv_dim=[8] * 7))
    reader = merged_reader(model, 0.3)
    assert not reader.training
    with torch.no_grad():
        full = model.eval()(torch.randn(1, 16000)).logits.shape[1]
        out = reader(torch.randn(1, 16000))
    assert out.lengths.tolist() == [n_keep(full, 0.3, 1)] and out.lengths[0] < full
