from pathlib import Path

import pytest
import yaml

from s6damon.config.prepare import PrepareParams, SynthParams
from s6damon.config.schema import ParamsError, build
from s6damon.corpus.build import MANIFEST_COLUMNS, render_shard, summarise
from s6damon.corpus.plan import plan_corpus, shards
from s6damon.corpus.synth import voice_info

ROOT = Path(__file__).resolve().parents[1]


def _tiny() -> PrepareParams:
    data = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    return build(PrepareParams, data["prepare"], "prepare")


def test_profiles_load():
    default = build(PrepareParams, yaml.safe_load((ROOT / "params.yaml").read_text())["prepare"], "prepare")
    assert default.synth.minutes >= 30
    assert _tiny().synth.minutes <= 5


def test_plan_splits_and_disjoint_voices():
    p = _tiny()
    specs = plan_corpus(p, 1234)
    assert specs == plan_corpus(p, 1234)
    assert {u.split for u in specs} == {"train", "dev", "test", "test_open", "unlabeled"}
    people = lambda split: {voice_info(u.voice).person for u in specs if u.split == split}  # noqa: E731
    assert not people("train") & (people("test") | people("test_open"))
    assert {u.domain for u in specs if u.split == "test"} == {"command"}
    assert {u.domain for u in specs if u.split == "test_open"} == {"open"}
    texts = [u.text for u in specs]
    assert len(set(texts)) == len(texts)
    assert len({u.utt_id for u in specs}) == len(specs)
    est = sum(0.5 + 0.25 * len(u.text.split()) for u in specs) / 60
    assert 1.0 < est < 4.0


def test_default_plan_open_vocab_disjoint_and_augmented():
    specs = plan_corpus(PrepareParams(synth=SynthParams(minutes=20.0)), 5)
    train_open = {u.text for u in specs if u.domain == "open" and u.split in ("train", "dev")}
    test_open = {u.text for u in specs if u.split == "test_open"}
    assert train_open and test_open and not train_open & test_open
    train = [u for u in specs if u.split == "train"]
    assert any(u.pitch_semitones > 0 for u in train) and any(u.stretch != 1 for u in train)
    assert any(u.speed != 1 for u in train)
    assert all(u.pitch_semitones == 0 and u.stretch == 1 and u.speed == 1 for u in specs if u.split != "train")
    assert {u.gender for u in train} == {"m", "f"}
    assert sum(len(s) for s in shards(specs, 50)) == len(specs)


def test_same_person_in_train_and_test_is_refused():
    with pytest.raises(ParamsError, match="kal"):
        build(PrepareParams, {"synth": {"train_voices": ["flite:kal16"], "test_voices": ["festival:kal"]}})
    with pytest.raises(ParamsError, match="espeak-f2"):
        build(PrepareParams, {"synth": {"train_voices": ["espeak:en+f2"], "test_voices": ["espeak:en-us+f2"]}})


def test_render_shard(tmp_path):
    specs = [u for u in plan_corpus(_tiny(), 1234)][:4]
    man, phones, words = render_shard(specs, tmp_path / "corpus", 16000)
    assert list(man.columns) == MANIFEST_COLUMNS
    assert len(man) == 4
    for row in man.itertuples():
        assert Path(row.path).exists() and row.path == str(tmp_path / "corpus" / "wav" / f"{row.utt_id}.wav")
        if row.voice_family == "pico":  # untimed: no ground truth (test_render_shard_untimed_voice)
            continue
        ph = phones[phones.utt_id == row.utt_id]
        assert ph.end.max() == pytest.approx(row.duration, abs=1e-4)
        assert words[words.utt_id == row.utt_id].word.tolist() == row.text.split()
    s = summarise(man)
    assert s["utterances"] == 4 and s["hours"] > 0 and set(s["splits"]) >= {"train", "test"}


def test_render_shard_untimed_voice(tmp_path):
    """A Pico utterance gets its wav and manifest row but no ground-truth rows, even when
    augmented; a timed voice in the same shard keeps its rows."""
    from s6damon.corpus.plan import UttSpec

    specs = [UttSpec("pico-train-00000", "turn on the kitchen lights", "pico:en-GB", "pico:en-GB", "pico",
                     "f", "command", "train", stretch=1.15),
             UttSpec("awb-train-00001", "call anna at five", "flite:awb", "flite:awb", "flite", "m",
                     "command", "train")]
    man, phones, words = render_shard(specs, tmp_path / "corpus", 16000)
    assert man.utt_id.tolist() == ["pico-train-00000", "awb-train-00001"]
    assert set(phones.utt_id) == set(words.utt_id) == {"awb-train-00001"}
    assert man.duration.iloc[0] > 1.0 and Path(man.path.iloc[0]).exists()


def test_train_voice_weights_shift_the_voice_mix():
    import collections

    synth = build(SynthParams, {"minutes": 20.0, "train_voices": ["flite:awb", "espeak:en-us+m3"],
                                "train_voice_weights": {"flite:awb": 3}}, "prepare.synth")
    specs = plan_corpus(PrepareParams(synth=synth), seed=7)
    counts = collections.Counter(s.voice for s in specs if s.split == "train")
    assert counts["flite:awb"] == pytest.approx(3 * counts["espeak:en-us+m3"], rel=0.05)
    with pytest.raises(ParamsError, match="train_voice_weights"):
        build(SynthParams, {"train_voices": ["flite:awb"], "train_voice_weights": {"flite:rms": 2}},
              "prepare.synth")


def _with_unlabeled(p: PrepareParams, voices: list[str], minutes: float) -> PrepareParams:
    import dataclasses

    return dataclasses.replace(p, synth=dataclasses.replace(p.synth, unlabeled_voices=voices,
                                                            unlabeled_minutes=minutes))


def test_unlabeled_split_adds_new_texts_and_leaves_the_labeled_plan_alone():
    p = _with_unlabeled(_tiny(), [], 0.0)
    base = plan_corpus(p, 1234)
    voices = ["pico:en-GB", "festival:it-lp", "flite:awb"]
    specs = plan_corpus(_with_unlabeled(p, voices, 3.0), 1234)
    assert specs[:len(base)] == base  # turning the split on re-plans nothing else
    extra = specs[len(base):]
    assert extra and {u.split for u in extra} == {"unlabeled"}
    assert {u.voice for u in extra} == set(voices)
    assert not {u.text for u in extra} & {u.text for u in base}
    assert len({u.text for u in extra}) == len(extra) and len({u.utt_id for u in specs}) == len(specs)
    assert any(u.pitch_semitones > 0 for u in extra if u.voice == "flite:awb")  # augmented like train
    assert not any(u.pitch_semitones for u in extra if u.gender == "f")
    est = sum(0.5 + 0.25 * len(u.text.split()) for u in extra) / 60
    assert 2.5 < est < 4.5


def test_unlabeled_voices_are_checked_like_train_voices():
    with pytest.raises(ParamsError, match="unlabeled_voices and test_voices"):
        build(PrepareParams, {"synth": {"unlabeled_voices": ["festival:slt-hts"], "unlabeled_minutes": 1.0}})
    with pytest.raises(ParamsError, match="unlabeled_voices and dev_voices"):
        build(PrepareParams, {"synth": {"unlabeled_voices": ["espeak:en+m6"], "unlabeled_minutes": 1.0}})
    with pytest.raises(ParamsError, match="unlabeled_minutes"):
        build(PrepareParams, {"synth": {"unlabeled_minutes": 1.0}})
