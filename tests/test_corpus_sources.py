from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from s6damon.config.prepare import PrepareParams
from s6damon.corpus.sources import ingest
from s6damon.corpus.validate import BadInputError, load_audio

SR = 16000


def _tone(sec=0.5, sr=SR, ch=1):
    t = np.arange(int(sec * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    return np.stack([x] * ch, axis=1) if ch > 1 else x


def _libri(root: Path) -> Path:
    for spk in ["11", "22", "33", "44"]:
        d = root / spk / "100"
        d.mkdir(parents=True)
        lines = []
        for k in range(2):
            uid = f"{spk}-100-{k:04d}"
            sf.write(d / f"{uid}.flac", _tone(), SR)
            lines.append(f"{uid} HELLO WORLD NUMBER {k}")
        (d / f"{spk}-100.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def test_ingest_librispeech(tmp_path):
    p = PrepareParams(source="librispeech", source_path=str(_libri(tmp_path / "ls")), test_speakers=["44"])
    man, skipped = ingest(p, tmp_path / "out")
    assert len(man) == 8 and not skipped
    assert set(man[man.split == "test"].speaker) == {"44"}
    assert "44" not in set(man[man.split == "train"].speaker)
    assert man.text.iloc[0].startswith("hello world number")
    assert all(Path(x).exists() for x in man.path)


def _bad_cases(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    cases = {}
    (d / "garbage.wav").write_bytes(b"this is not audio at all" * 10)
    cases["unreadable"] = d / "garbage.wav"
    sf.write(d / "full.wav", _tone(1.0), SR, subtype="PCM_16")
    raw = (d / "full.wav").read_bytes()
    (d / "trunc.wav").write_bytes(raw[: len(raw) // 2])
    cases["truncated"] = d / "trunc.wav"
    sf.write(d / "stereo.wav", _tone(ch=2), SR)
    cases["channels"] = d / "stereo.wav"
    sf.write(d / "empty.wav", np.zeros(0, np.float32), SR)
    cases["zero-length"] = d / "empty.wav"
    return cases


@pytest.mark.parametrize("case", ["unreadable", "truncated", "channels", "zero-length"])
def test_load_audio_bad(tmp_path, case):
    path = _bad_cases(tmp_path)[case]
    with pytest.raises(BadInputError) as err:
        load_audio(path, SR)
    assert err.value.path == str(path) and str(path) in str(err.value) and case in err.value.reason


def test_load_audio_resamples_8k(tmp_path):
    sf.write(tmp_path / "a8k.wav", _tone(1.0, sr=8000), 8000)
    x, info = load_audio(tmp_path / "a8k.wav", SR)
    assert info["resampled_from"] == 8000 and len(x) == SR and x.dtype == np.float32


def _manifest(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    cases = _bad_cases(tmp_path / "audio")
    sf.write(tmp_path / "audio" / "good.wav", _tone(), SR)
    sf.write(tmp_path / "audio" / "a8k.wav", _tone(sr=8000), 8000)
    rows = [("audio/good.wav", "Good morning!", "alice", "train"),
            ("audio/a8k.wav", "Low rate file", "bob", "test")]
    rows += [(str(p.relative_to(tmp_path)), "some words", "carl", "train") for p in cases.values()]
    rows += [("audio/good.wav", "", "dan", "train"), ("audio/good.wav", "!!! ???", "dan", "train")]
    path = tmp_path / "m.csv"
    pd.DataFrame(rows, columns=["path", "text", "speaker", "split"]).to_csv(path, index=False)
    return path, cases


def test_ingest_manifest_skip(tmp_path):
    path, cases = _manifest(tmp_path)
    p = PrepareParams(source="manifest", source_path=str(path), on_bad_input="skip")
    man, skipped = ingest(p, tmp_path / "out")
    assert man.text.tolist() == ["good morning", "low rate file"]
    assert man.split.tolist() == ["train", "test"]
    assert sf.info(man.path.iloc[1]).samplerate == SR
    reasons = [s["reason"] for s in skipped]
    assert len(skipped) == 6
    assert {s["path"] for s in skipped} >= {str(p) for p in cases.values()}
    assert any("empty transcript" in r for r in reasons) and any("normalised" in r for r in reasons)


def test_ingest_manifest_error_names_file(tmp_path):
    path, cases = _manifest(tmp_path)
    p = PrepareParams(source="manifest", source_path=str(path), on_bad_input="error")
    with pytest.raises(BadInputError) as err:
        ingest(p, tmp_path / "out")
    assert err.value.path == str(cases["unreadable"])


@pytest.mark.parametrize("text,reason", [("", "empty"), ("?!", "normalised")])
def test_bad_transcript_errors(tmp_path, text, reason):
    sf.write(tmp_path / "g.wav", _tone(), SR)
    pd.DataFrame({"path": ["g.wav"], "text": [text]}).to_parquet(tmp_path / "m.parquet")
    p = PrepareParams(source="manifest", source_path=str(tmp_path / "m.parquet"))
    with pytest.raises(BadInputError, match=reason) as err:
        ingest(p, tmp_path / "out")
    assert err.value.path == str(tmp_path / "g.wav")


def test_manifest_unlabeled_rows_need_no_transcript(tmp_path):
    sf.write(tmp_path / "g.wav", _tone(), SR)
    pd.DataFrame({"path": ["g.wav", "g.wav", "g.wav"], "text": ["Hello there", "", None],
                  "split": ["train", "unlabeled", "unlabeled"]}).to_parquet(tmp_path / "m.parquet")
    man, skipped = ingest(PrepareParams(source="manifest", source_path=str(tmp_path / "m.parquet")), tmp_path / "out")
    assert man.split.tolist() == ["train", "unlabeled", "unlabeled"] and not skipped
    assert man.text.tolist() == ["hello there", "", ""]


def test_manifest_unknown_split_is_an_error_naming_the_row(tmp_path):
    """A typo must not send evaluation audio into training (rows without a split do go there)."""
    sf.write(tmp_path / "g.wav", _tone(), SR)
    pd.DataFrame({"path": ["g.wav", "g.wav"], "text": ["one two", "three four"],
                  "split": [None, "tset"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(BadInputError, match="row 1 .*'tset'") as err:
        ingest(PrepareParams(source="manifest", source_path=str(tmp_path / "m.csv")), tmp_path / "out")
    assert err.value.path == str(tmp_path / "m.csv")
