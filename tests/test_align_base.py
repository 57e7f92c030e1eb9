"""Aligner interface: backend registry, result tables, pause extraction, params."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from s6damon.align.base import AlignResult, get_aligner, pauses
from s6damon.config.align import AlignParams
from s6damon.config.schema import ParamsError, build

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown aligner backend 'htk'.*kaldi"):
        get_aligner("htk", AlignParams())


@pytest.mark.parametrize("name", ["kaldi", "pocketsphinx", "mfa"])
def test_known_backends_construct(name):
    assert get_aligner(name, AlignParams()).name == name


def test_pauses_leading_gaps_trailing():
    words = pd.DataFrame([("u", "a", 0.20, 0.50), ("u", "b", 0.55, 0.80), ("u", "c", 1.00, 1.40),
                          ("v", "x", 0.0, 1.0)], columns=["utt_id", "word", "start", "end"])
    got = pauses(words, {"u": 1.45, "v": 1.0, "w": 2.0}, min_pause_ms=100)
    assert got.values.tolist() == [["u", 0.0, 0.2], ["u", 0.8, 1.0]]
    # trailing 50 ms counts once the threshold is lowered; "w" has no words (failed): skipped
    got = pauses(words, {"u": 1.45, "v": 1.0}, min_pause_ms=50)
    assert ["u", 0.5, 0.55] in got.values.tolist() and ["u", 1.4, 1.45] in got.values.tolist()


def test_result_from_rows_has_typed_columns():
    r = AlignResult.from_rows([("u", "sil", 0, 1)], [], [{"utt_id": "v", "reason": "x"}])
    assert list(r.phones.columns) == ["utt_id", "phone", "start", "end"]
    assert list(r.words.columns) == ["utt_id", "word", "start", "end"]
    assert r.phones["start"].dtype == float and r.failed[0]["utt_id"] == "v"


@pytest.mark.parametrize("path", ["params.yaml", "profiles/tiny.yaml"])
def test_align_section_of_profiles_validates(path):
    data = yaml.safe_load((ROOT / path).read_text())["align"]
    p = build(AlignParams, data, "align")
    assert p.backend in ("kaldi", "pocketsphinx", "mfa")
    # every key is listed explicitly in both profiles
    assert set(data) == {f for f in AlignParams.__dataclass_fields__}
    assert set(data["kaldi"]) == set(p.kaldi.__dataclass_fields__)


def test_bad_align_params_name_the_key():
    with pytest.raises(ParamsError, match="align.kaldi.beam"):
        build(AlignParams, {"kaldi": {"beam": 0.0}}, "align")
    with pytest.raises(ParamsError, match="compare_backends"):
        build(AlignParams, {"compare_backends": ["htk"]}, "align")
