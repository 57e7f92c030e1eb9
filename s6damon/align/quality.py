"""Alignment quality against ground-truth timings (synthesised corpora).

Definitions (all errors are absolute differences in milliseconds):

* **Word boundaries**: the start and the end of every word, matched by position within
  an utterance whose aligned word sequence equals the truth's.
* **Phone boundaries**: the truth's phone set depends on the synthesiser, so phones are
  compared only inside words whose aligned and true phone counts agree (by position);
  ``phone_words_compared`` is the share of words where that was possible.
* ``within_20ms`` / ``within_50ms`` are shares of **word** boundaries (the acceptance
  criterion is word-boundary based); ``phone_within_20ms`` / ``phone_within_50ms`` give
  the same for phone boundaries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SILENCES = frozenset({"sil", "pau", "sp", "spn", "h#", ""})
_KEYS = ("word_boundary_median_ms", "phone_boundary_median_ms", "within_20ms", "within_50ms",
         "phone_within_20ms", "phone_within_50ms", "phone_words_compared", "word_boundaries",
         "phone_boundaries", "failed", "utterances", "word_mismatch")


def _phones_by_word(words: pd.DataFrame, phones: pd.DataFrame) -> list[list[tuple[float, float]]]:
    """Speech phones of each word (by phone midpoint inside the word interval)."""
    ph = phones[~phones["phone"].str.lower().isin(SILENCES)]
    mids = ((ph["start"] + ph["end"]) / 2).to_numpy()
    st, en = ph["start"].to_numpy(), ph["end"].to_numpy()
    out = []
    for ws, we in zip(words["start"], words["end"]):
        sel = (mids >= ws) & (mids < we)
        out.append(list(zip(st[sel], en[sel])))
    return out


def _errors(pw: pd.DataFrame, pp: pd.DataFrame, tw: pd.DataFrame, tp: pd.DataFrame, utts):
    werr, perr, compared, nwords, mismatch = [], [], 0, 0, 0
    pw_g, pp_g = dict(tuple(pw.groupby("utt_id"))), dict(tuple(pp.groupby("utt_id")))
    tw_g, tp_g = dict(tuple(tw.groupby("utt_id"))), dict(tuple(tp.groupby("utt_id")))
    for utt in utts:
        a = pw_g[utt].sort_values("start")
        b = tw_g[utt].sort_values("start")
        if list(a["word"]) != list(b["word"]):
            mismatch += 1
            continue
        werr += list(np.abs(a["start"].to_numpy() - b["start"].to_numpy()) * 1000)
        werr += list(np.abs(a["end"].to_numpy() - b["end"].to_numpy()) * 1000)
        if utt not in pp_g or utt not in tp_g:
            continue
        for x, y in zip(_phones_by_word(a, pp_g[utt]), _phones_by_word(b, tp_g[utt])):
            nwords += 1
            if len(x) != len(y) or not x:
                continue
            compared += 1
            for (s1, e1), (s2, e2) in zip(x, y):
                perr += [abs(s1 - s2) * 1000, abs(e1 - e2) * 1000]
    return np.array(werr), np.array(perr), compared, nwords, mismatch


def _summary(werr, perr, compared, nwords, mismatch, n_failed, n_utts) -> dict:
    def med(x):
        return float(np.median(x)) if len(x) else None

    def share(x, ms):
        return float(np.mean(x <= ms)) if len(x) else None

    return {
        "word_boundary_median_ms": med(werr),
        "phone_boundary_median_ms": med(perr),
        "within_20ms": share(werr, 20.0),
        "within_50ms": share(werr, 50.0),
        "phone_within_20ms": share(perr, 20.0),
        "phone_within_50ms": share(perr, 50.0),
        "phone_words_compared": compared / nwords if nwords else None,
        "word_boundaries": int(len(werr)),
        "phone_boundaries": int(len(perr)),
        "failed": int(n_failed),
        "utterances": int(n_utts),
        "word_mismatch": int(mismatch),
    }


def alignment_quality(pred_words: pd.DataFrame, pred_phones: pd.DataFrame,
                      truth_words: pd.DataFrame, truth_phones: pd.DataFrame,
                      family: dict[str, str], failed: list) -> dict:
    """Boundary errors of an alignment against ground truth, overall and per family.

    Args:
        pred_words, pred_phones: the aligner's tables (utt_id, word/phone, start, end).
        truth_words, truth_phones: ground truth, same columns; silence phones 'sil'/'pau'.
        family: utt_id -> group name (e.g. the synthesiser), for ``per_family``.
        failed: the aligner's failures (dicts with ``utt_id``) or plain utt ids.

    Returns:
        dict with ``word_boundary_median_ms``, ``phone_boundary_median_ms``,
        ``within_20ms``, ``within_50ms`` (word boundaries), ``phone_within_*``,
        ``phone_words_compared``, counts (``failed``, ``utterances`` = aligned utterances
        with truth, ``word_mismatch``) and ``per_family: {family: same keys}``.
        Medians and shares are None when nothing could be compared.
    """
    failed_ids = {f["utt_id"] if isinstance(f, dict) else str(f) for f in failed}
    utts = sorted((set(pred_words["utt_id"]) & set(truth_words["utt_id"])) - failed_ids)
    out = _summary(*_errors(pred_words, pred_phones, truth_words, truth_phones, utts),
                   len(failed_ids), len(utts))
    per: dict[str, dict] = {}
    for fam in sorted(set(family.get(u, "unknown") for u in utts + sorted(failed_ids))):
        fu = [u for u in utts if family.get(u, "unknown") == fam]
        nf = sum(1 for u in failed_ids if family.get(u, "unknown") == fam)
        per[fam] = _summary(*_errors(pred_words, pred_phones, truth_words, truth_phones, fu),
                            nf, len(fu))
    out["per_family"] = per
    return out
