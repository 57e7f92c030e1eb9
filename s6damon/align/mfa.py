"""Montreal Forced Aligner through its real command line.

MFA is installed from conda-forge (its Kaldi binaries are not on PyPI), so this backend
only writes MFA's inputs, runs ``mfa train`` (acoustic model trained on the corpus, the
default) or ``mfa align`` (with ``align.mfa.pretrained_model``), and reads the TextGrids.

Corpus layout written (one speaker folder, MFA's expected format)::

    workdir/mfa/corpus/all/<utt_id>.wav   (symlink or copy of the input)
    workdir/mfa/corpus/all/<utt_id>.lab   (the transcript)
    workdir/mfa/dictionary.txt            (word <tab> phones, from s6damon.align.lexicon)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from s6damon.align.base import SILENCE, AlignError, AlignItem, AlignResult
from s6damon.align.lexicon import build_lexicon, write_dictionary
from s6damon.config.align import AlignParams

INSTALL_HINT = ("Montreal Forced Aligner is not installed (no 'mfa' on PATH). Install it with: "
                "conda install -c conda-forge montreal-forced-aligner  "
                "(or choose align.backend: kaldi, which needs no install)")
_MFA_SILENCES = {"", "sil", "sp", "spn", "<eps>", "silence"}


def mfa_executable(command: str = "mfa") -> str | None:
    """Full path of the mfa command, or None when it is not installed."""
    return shutil.which(command)


def write_corpus(items: list[AlignItem], corpus_dir: Path, speaker: str = "all") -> None:
    """Write MFA's corpus folder: each utterance's wav (symlinked) and .lab transcript."""
    spk = Path(corpus_dir) / speaker
    spk.mkdir(parents=True, exist_ok=True)
    for it in items:
        wav = spk / f"{it.utt_id}.wav"
        if wav.exists() or wav.is_symlink():
            wav.unlink()
        try:
            os.symlink(Path(it.wav_path).resolve(), wav)
        except OSError:  # filesystems without symlinks
            shutil.copyfile(it.wav_path, wav)
        (spk / f"{it.utt_id}.lab").write_text(it.text + "\n", encoding="utf-8")


def read_textgrid(path: Path, utt_id: str) -> tuple[list[tuple], list[tuple]]:
    """Phone and word rows (utt_id, label, start, end) from one MFA TextGrid.

    Empty intervals and MFA's silence labels become 'sil' in the phones and are left out
    of the words; stress digits are stripped and labels lower-cased.
    """
    from praatio import textgrid

    tg = textgrid.openTextgrid(str(path), includeEmptyIntervals=True)
    names = {n.lower(): n for n in tg.tierNames}
    if "words" not in names or "phones" not in names:
        raise ValueError(f"{path}: expected tiers 'words' and 'phones', found {tg.tierNames}")
    phones, words = [], []
    for start, end, label in tg.getTier(names["phones"]).entries:
        lab = "".join(c for c in label.strip().lower() if not c.isdigit())
        lab = SILENCE if lab in _MFA_SILENCES else lab
        if phones and lab == SILENCE and phones[-1][1] == SILENCE:
            phones[-1] = (utt_id, SILENCE, phones[-1][2], float(end))
        else:
            phones.append((utt_id, lab, float(start), float(end)))
    for start, end, label in tg.getTier(names["words"]).entries:
        lab = label.strip().lower()
        if lab not in _MFA_SILENCES and lab != "<unk>":
            words.append((utt_id, lab, float(start), float(end)))
    return phones, words


class MfaAligner:
    """Run ``mfa train`` (or ``mfa align`` with a pretrained model) and parse the output."""

    name = "mfa"

    def __init__(self, p: AlignParams):
        self.p = p

    def _run(self, args: list[str], log: Path) -> None:
        mp = self.p.mfa
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=mp.timeout_s)
        except subprocess.TimeoutExpired as err:
            raise AlignError(f"mfa: timed out after {mp.timeout_s}s: {' '.join(args)}") from err
        log.write_text(proc.stdout + "\n" + proc.stderr)
        if proc.returncode != 0:
            raise AlignError(f"mfa failed (exit {proc.returncode}): {' '.join(args)}\n"
                             f"{proc.stderr[-2000:]}\nfull log: {log}")

    def align(self, items: list[AlignItem], workdir: Path) -> AlignResult:
        """Align with MFA; utterances without a TextGrid are reported as failed."""
        mp = self.p.mfa
        exe = mfa_executable(mp.command)
        if exe is None:
            raise AlignError(INSTALL_HINT)
        root = Path(workdir) / "mfa"
        if root.exists():
            shutil.rmtree(root)
        corpus, out = root / "corpus", root / "aligned"
        write_corpus(items, corpus)
        lexicon = build_lexicon({w for it in items for w in it.text.split()},
                                use_g2p=self.p.g2p, max_prons=self.p.max_pronunciations)
        dictionary = root / "dictionary.txt"
        write_dictionary(lexicon, dictionary)
        common = ["--clean", "--overwrite", "-j", str(self.p.jobs), *mp.extra_args]
        if mp.pretrained_model:
            self._run([exe, "align", str(corpus), str(dictionary), mp.pretrained_model, str(out),
                       *common], root / "mfa_align.log")
        else:
            model = root / "acoustic_model.zip"
            self._run([exe, "train", str(corpus), str(dictionary), str(model),
                       "--output_directory", str(out), *common], root / "mfa_train.log")
        return self.collect(items, out)

    @staticmethod
    def collect(items: list[AlignItem], out_dir: Path) -> AlignResult:
        """Read ``<out_dir>/**/<utt_id>.TextGrid`` for every item (failures listed)."""
        grids = {p.stem: p for p in Path(out_dir).rglob("*.TextGrid")}
        prow, wrow, failed = [], [], []
        for it in items:
            if it.utt_id not in grids:
                failed.append({"utt_id": it.utt_id, "reason": "mfa wrote no TextGrid (not aligned)"})
                continue
            try:
                p, w = read_textgrid(grids[it.utt_id], it.utt_id)
            except Exception as err:  # praatio raises several types on bad files
                failed.append({"utt_id": it.utt_id, "reason": f"unreadable TextGrid: {err}"})
                continue
            if [x[1] for x in w] != it.text.split():
                failed.append({"utt_id": it.utt_id,
                               "reason": "aligned words differ from the transcript (OOV or dropped)"})
                continue
            prow += p
            wrow += w
        return AlignResult.from_rows(prow, wrow, failed)
