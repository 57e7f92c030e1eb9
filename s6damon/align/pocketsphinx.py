"""Forced alignment with pocketsphinx's pretrained US-English model (no training).

Two passes per utterance, as pocketsphinx's API requires: word-level alignment of the
transcript (``set_align_text``), then phone-level alignment constrained to it
(``set_alignment``). Beams are very wide (alignment explores one word sequence, so the
cost is small) and ``bestpath`` is off so the Viterbi path is used as is. When words are
lost (the decoder gives up on part of the audio), the utterance is retried with wider
beams, then reported as failed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from s6damon.parallel import fork_pool
from s6damon.align.base import SILENCE, AlignItem, AlignResult
from s6damon.align.features import load_wav
from s6damon.align.lexicon import build_lexicon
from s6damon.config.align import AlignParams

# pocketsphinx's noise/silence units, all reported as 'sil'
_SILENCES = {"sil", "<sil>", "<s>", "</s>", "[noise]", "+noise+", "+spn+", ""}
_WORKER: dict = {}


def _decoder(p: AlignParams, lexicon: dict[str, list[list[str]]], widen: float):
    """A decoder on the wheel's model, with the corpus words added to its dictionary."""
    import pocketsphinx

    sp = p.pocketsphinx
    dec = pocketsphinx.Decoder(samprate=16000, bestpath=False, frate=sp.frate,
                               beam=sp.beam * widen, wbeam=sp.wbeam * widen,
                               pbeam=sp.pbeam * widen, lw=1.0, loglevel="FATAL")
    for word, prons in lexicon.items():
        # first variant under the plain name, others as word(2), word(3) (sphinx style)
        for k, pron in enumerate(prons):
            name = word if k == 0 else f"{word}({k + 1})"
            if dec.lookup_word(name) is None:
                dec.add_word(name, " ".join(x.upper() for x in pron), False)
    return dec


def _run(dec, pcm: bytes, text: str):
    dec.set_align_text(text)
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    dec.set_alignment()
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    return dec.get_alignment()


def _align_item(item: AlignItem) -> tuple[str, list, list, str]:
    """(utt_id, phone rows, word rows, failure reason) for one utterance, in a worker."""
    p, lexicon = _WORKER["p"], _WORKER["lexicon"]
    try:
        audio = load_wav(item.wav_path)
    except Exception as err:  # soundfile raises several types
        return item.utt_id, [], [], f"unreadable audio: {err}"
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    shift = 1.0 / p.pocketsphinx.frate
    want = item.text.split()
    reason = "no alignment"
    for attempt in range(p.pocketsphinx.retries + 1):
        widen = p.pocketsphinx.retry_factor ** attempt
        key = ("dec", attempt)
        if key not in _WORKER:
            _WORKER[key] = _decoder(p, lexicon, widen)
        try:
            ali = _run(_WORKER[key], pcm, item.text)
        except RuntimeError as err:
            reason = f"pocketsphinx: {err}"
            continue
        if ali is None:
            continue
        prow, wrow = [], []
        for w in ali:
            name = w.name.split("(")[0].lower()
            for ph in w:
                label = ph.name.lower()
                label = SILENCE if label in _SILENCES else label
                prow.append((item.utt_id, label, ph.start * shift, (ph.start + ph.duration) * shift))
            if name not in _SILENCES:
                wrow.append((item.utt_id, name, w.start * shift, (w.start + w.duration) * shift))
        got = [r[1] for r in wrow]
        if got == want:
            # merge adjacent silences so the phones table has one row per pause
            merged = []
            for r in prow:
                if merged and r[1] == SILENCE and merged[-1][1] == SILENCE:
                    merged[-1] = (r[0], SILENCE, merged[-1][2], r[3])
                else:
                    merged.append(r)
            return item.utt_id, merged, wrow, ""
        reason = f"lost words: aligned {len(got)} of {len(want)}"
    return item.utt_id, [], [], f"{reason} after {p.pocketsphinx.retries} retries with wider beams"


class PocketsphinxAligner:
    """Align with pocketsphinx's bundled US-English acoustic model and dictionary."""

    name = "pocketsphinx"

    def __init__(self, p: AlignParams):
        self.p = p

    def align(self, items: list[AlignItem], workdir: Path) -> AlignResult:
        """Align every item; ``workdir`` is unused (nothing is written)."""
        lexicon = build_lexicon({w for it in items for w in it.text.split()},
                                use_g2p=self.p.g2p, max_prons=self.p.max_pronunciations)
        _WORKER.clear()
        _WORKER.update(p=self.p, lexicon=lexicon)
        if self.p.jobs > 1 and len(items) >= 8:
            with fork_pool(self.p.jobs) as pool:
                out = pool.map(_align_item, items, chunksize=max(1, len(items) // (self.p.jobs * 8)))
        else:
            out = [_align_item(it) for it in items]
        _WORKER.clear()
        prow, wrow, failed = [], [], []
        for utt, p, w, reason in out:
            if reason:
                failed.append({"utt_id": utt, "reason": reason})
            else:
                prow += p
                wrow += w
        return AlignResult.from_rows(prow, wrow, failed)
