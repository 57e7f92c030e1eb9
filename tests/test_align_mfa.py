"""MFA backend: corpus folder, TextGrid parsing, and the install hint (MFA is optional)."""

import dataclasses
import shutil

import pytest
from praatio import textgrid

from s6damon.align.base import AlignError, AlignItem
from s6damon.align.mfa import INSTALL_HINT, MfaAligner, read_textgrid, write_corpus
from s6damon.config.align import AlignParams, MfaAlignParams

HAVE_MFA = shutil.which("mfa") is not None


def _grid(path, words, phones, end):
    tg = textgrid.Textgrid()
    tg.addTier(textgrid.IntervalTier("words", words, 0, end))
    tg.addTier(textgrid.IntervalTier("phones", phones, 0, end))
    tg.save(str(path), format="long_textgrid", includeBlankSpaces=True)


def test_write_corpus(tmp_path):
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF")
    write_corpus([AlignItem("u1", str(wav), "hello world")], tmp_path / "corpus")
    assert (tmp_path / "corpus/all/u1.lab").read_text().strip() == "hello world"
    assert (tmp_path / "corpus/all/u1.wav").read_bytes() == b"RIFF"


def test_read_textgrid_and_collect(tmp_path):
    out = tmp_path / "aligned" / "all"
    out.mkdir(parents=True)
    _grid(out / "u1.TextGrid", [(0.1, 0.4, "hello"), (0.5, 0.9, "world")],
          [(0.1, 0.2, "HH"), (0.2, 0.3, "AH0"), (0.3, 0.35, "L"), (0.35, 0.4, "OW1"), (0.4, 0.5, "sil"),
           (0.5, 0.9, "W")], 1.0)
    p, w = read_textgrid(out / "u1.TextGrid", "u1")
    assert [x[1] for x in w] == ["hello", "world"]
    assert p[0][1] == "sil" and p[0][2] == 0.0  # leading blank interval is silence
    assert [x[1] for x in p[1:5]] == ["hh", "ah", "l", "ow"]
    res = MfaAligner.collect([AlignItem("u1", "x.wav", "hello world"), AlignItem("u2", "y.wav", "hi")],
                             tmp_path / "aligned")
    assert set(res.words.utt_id) == {"u1"}
    assert res.failed == [{"utt_id": "u2", "reason": "mfa wrote no TextGrid (not aligned)"}]


def test_missing_mfa_says_how_to_install(tmp_path):
    p = dataclasses.replace(AlignParams(), mfa=MfaAlignParams(command="mfa-not-installed-here"))
    with pytest.raises(AlignError, match="conda install -c conda-forge montreal-forced-aligner"):
        MfaAligner(p).align([AlignItem("u", "x.wav", "hi")], tmp_path)
    assert "conda-forge" in INSTALL_HINT


@pytest.mark.mfa
@pytest.mark.skipif(not HAVE_MFA, reason=INSTALL_HINT)
def test_mfa_real_run(tmp_path):  # pragma: no cover - needs conda-forge MFA
    from align_flite_data import synthesise

    items, _, _ = synthesise(tmp_path / "wav", 20)
    its = [AlignItem(r.utt_id, r.wav_path, r.text) for r in items.itertuples()]
    res = MfaAligner(AlignParams()).align(its, tmp_path / "work")
    assert len(set(res.words.utt_id)) + len(res.failed) == len(its)
