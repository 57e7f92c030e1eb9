"""SALAD token labels: which encoder tokens are salient (keep) and which redundant (drop).

One label per encoder token, i.e. per output frame of the conv feature encoder (20 ms for
wav2vec 2.0 / HuBERT). Two sources:

* **alignment** (:func:`labels_from_alignment`): forced-alignment phones and pauses. Tokens
  in pauses/silence are redundant; within a phone the first ``keep_per_phone`` tokens are
  salient and the rest (the inner frames of long phones) redundant; every phone keeps at
  least one token.
* **ctc** (:func:`labels_from_ctc`): the greedy CTC path of a finetuned model, which needs
  no transcript. The first frame(s) of each run of a non-blank label are salient; repeats
  and blanks are redundant, except one blank between two runs of the same label, so greedy
  decoding of the kept frames gives exactly the transcript of the full path.

Labels are ``(T,)`` bool numpy arrays, True = salient. Frame geometry comes from
:mod:`s6damon.model.frames` (re-exported here).

Usage::

    from s6damon.salad.labels import labels_from_alignment, num_frames, conv_layout
    kernel, stride = conv_layout(model.config)
    T = num_frames(len(wave), kernel, stride)
    keep = labels_from_alignment(phones_of_utt, pauses_of_utt, T, keep_per_phone=2)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from s6damon.model.frames import conv_layout, frame_spans, num_frames, shift_spans
from s6damon.salad.guard import restore_row

__all__ = [
    "SILENCE_PHONES", "conv_layout", "num_frames", "frame_spans", "labels_from_alignment",
    "labels_for_utterances", "labels_from_ctc", "labels_from_logits", "ctc_collapse", "agreement",
]

#: Phone labels treated as silence (``'sil'`` is what every aligner backend writes).
SILENCE_PHONES: tuple[str, ...] = ("sil", "sp", "spn", "")


def _in_intervals(t: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Bool mask of the times ``t`` falling inside any ``[start, end)`` interval."""
    if starts.size == 0:
        return np.zeros(t.shape, dtype=bool)
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], ends[order]
    # intervals may overlap (pauses from words plus silence phones), so compare with the
    # running maximum of the ends of all intervals starting at or before t
    e_max = np.maximum.accumulate(e)
    i = np.searchsorted(s, t, side="right") - 1
    out = np.zeros(t.shape, dtype=bool)
    ok = i >= 0
    out[ok] = t[ok] < e_max[i[ok]]
    return out


def labels_from_alignment(phones: pd.DataFrame, pauses: pd.DataFrame | None, num_frames: int,
                          frame_shift: float = 0.02, keep_per_phone: int = 2, min_pause: float = 0.0,
                          spans: np.ndarray | None = None,
                          silence_phones: Iterable[str] = SILENCE_PHONES, min_keep: int = 0) -> np.ndarray:
    """Salient/redundant label per token of one utterance from its forced alignment.

    A token belongs to the phone (or pause) that contains its centre. Silence phones and
    pauses at least ``min_pause`` long make their tokens redundant; shorter silences are
    treated like phones (their first ``keep_per_phone`` tokens kept), because a very short
    gap often carries a word boundary the character CTC model must emit. Tokens covered by
    no phone at all (audio beyond the alignment) are redundant.

    Guarantees: every non-silence phone keeps at least one token, even a phone shorter than
    a frame or sharing its frame with a neighbour (it then takes the nearest token not
    already kept), as long as there are tokens left; and at least ``min_keep`` tokens are
    kept overall (e.g. :func:`s6damon.salad.guard.ctc_required_length` of the character
    transcript, which can exceed the phone count), restored evenly over speech first.

    Args:
        phones: rows ``phone, start, end`` (seconds) of this utterance; other columns ignored.
        pauses: rows ``start, end`` (seconds) of this utterance's pauses, or None.
        num_frames: number of tokens ``T`` (see :func:`num_frames`).
        frame_shift: token hop in seconds, used when ``spans`` is None.
        keep_per_phone: salient tokens at the start of each phone (``k``), >= 1.
        min_pause: shortest silence (seconds) whose tokens are all redundant.
        spans: ``(T, 2)`` token spans in seconds (e.g. :func:`frame_spans` from the model's
            conv layout, whose receptive fields are 25 ms wide); the 20 ms grid if None.
        silence_phones: phone labels counted as silence.
        min_keep: minimum number of salient tokens for the utterance.

    Returns:
        ``(T,)`` bool, True = salient.
    """
    if keep_per_phone < 1:
        raise ValueError(f"keep_per_phone must be >= 1, got {keep_per_phone}")
    T = int(num_frames)
    spans = shift_spans(T, frame_shift) if spans is None else np.asarray(spans, dtype=np.float64)
    if spans.shape != (T, 2):
        raise ValueError(f"spans must have shape ({T}, 2), got {spans.shape}")
    centre = spans.mean(axis=1)
    keep = np.zeros(T, dtype=bool)
    if T == 0:
        return keep

    ph = phones.sort_values("start", kind="stable")
    p_start = ph["start"].to_numpy(np.float64)
    p_end = ph["end"].to_numpy(np.float64)
    p_sil = ph["phone"].astype(str).str.lower().isin({s.lower() for s in silence_phones}).to_numpy()
    long_sil = p_sil & (p_end - p_start >= min_pause)

    # silent tokens: long silence phones and long pauses
    sil_s, sil_e = [p_start[long_sil]], [p_end[long_sil]]
    if pauses is not None and len(pauses):
        ps, pe = pauses["start"].to_numpy(np.float64), pauses["end"].to_numpy(np.float64)
        long_p = pe - ps >= min_pause
        sil_s.append(ps[long_p])
        sil_e.append(pe[long_p])
    silent = _in_intervals(centre, np.concatenate(sil_s), np.concatenate(sil_e))

    # token -> phone index (-1: none); phones are sorted and (normally) non-overlapping
    idx = np.searchsorted(p_start, centre, side="right") - 1
    owned = idx >= 0
    owned[owned] = centre[owned] < p_end[idx[owned]]
    idx[~owned] = -1

    speech_phones = np.flatnonzero(~long_sil)
    for i in speech_phones:
        frames = np.flatnonzero((idx == i) & ~silent)
        keep[frames[:keep_per_phone]] = True
    # every phone keeps >= 1 token: phones that own none take the nearest free token
    for i in speech_phones:
        if np.any(keep[(idx == i)]):
            continue
        mid = 0.5 * (p_start[i] + p_end[i])
        for t in np.argsort(np.abs(centre - mid), kind="stable"):
            if not keep[t]:
                keep[t] = True
                break
    if keep.sum() < min_keep:
        # fill speech tokens first, then anything
        speech = np.flatnonzero(~silent)
        keep[speech] = restore_row(keep[speech], min(min_keep, speech.size))
        keep = restore_row(keep, min_keep)
    return keep


def labels_for_utterances(phones: pd.DataFrame, pauses: pd.DataFrame | None, frames: Mapping[str, int],
                          min_keep: Mapping[str, int] | None = None,
                          conv: tuple[Sequence[int], Sequence[int]] | None = None, **kwargs) -> dict[str, np.ndarray]:
    """:func:`labels_from_alignment` for every utterance of an alignment table.

    Args:
        phones: the align stage's phone table (``utt_id, phone, start, end``).
        pauses: its pause table (``utt_id, start, end``) or None.
        frames: token count per utt_id; only these utterances are labelled (an utterance
            without phones, e.g. one that failed to align, gets all-redundant labels).
        min_keep: optional per-utterance minimum kept count.
        conv: ``(conv_kernel, conv_stride)`` of the model: token spans are then its
            receptive fields (:func:`frame_spans`) instead of the ``frame_shift`` grid.
        **kwargs: passed on to :func:`labels_from_alignment`.

    Returns:
        utt_id -> ``(T,)`` bool labels.
    """
    by_utt = dict(tuple(phones.groupby("utt_id", sort=False)))
    p_by_utt = dict(tuple(pauses.groupby("utt_id", sort=False))) if pauses is not None else {}
    empty = phones.iloc[:0]
    out = {}
    for utt, T in frames.items():
        spans = None if conv is None else frame_spans(int(T), *conv)
        out[utt] = labels_from_alignment(by_utt.get(utt, empty), p_by_utt.get(utt), int(T),
                                         min_keep=0 if min_keep is None else int(min_keep.get(utt, 0)),
                                         spans=spans, **kwargs)
    return out


def ctc_collapse(path: Sequence[int] | np.ndarray, blank_id: int = 0) -> list[int]:
    """Greedy CTC decoding of a frame path: merge repeats, then remove blanks."""
    p = np.asarray(path).reshape(-1)
    if p.size == 0:
        return []
    first = np.ones(p.size, dtype=bool)
    first[1:] = p[1:] != p[:-1]
    return [int(x) for x in p[first] if x != blank_id]


def labels_from_ctc(path_ids: Sequence[int] | np.ndarray | torch.Tensor, blank_id: int = 0,
                    keep_per_run: int = 1) -> np.ndarray:
    """Salient/redundant label per token from a greedy CTC frame path.

    The first ``keep_per_run`` frames of each run of a non-blank label are salient;
    further repeats and blanks are redundant, except that one blank (the first of the gap)
    is kept between two runs of the *same* label, e.g. ``l l _ l`` (for "ll") keeps
    ``l . _ l``. Greedy decoding of the kept frames therefore gives exactly the transcript
    of the whole path (see :func:`ctc_collapse`).

    Args:
        path_ids: ``(T,)`` argmax label per frame.
        blank_id: CTC blank id (0 = ``<pad>`` in this project's vocabulary).
        keep_per_run: salient frames at the start of each label run, >= 1.

    Returns:
        ``(T,)`` bool, True = salient.
    """
    if keep_per_run < 1:
        raise ValueError(f"keep_per_run must be >= 1, got {keep_per_run}")
    p = (path_ids.detach().cpu().numpy() if isinstance(path_ids, torch.Tensor) else np.asarray(path_ids))
    p = p.reshape(-1).astype(np.int64)
    keep = np.zeros(p.size, dtype=bool)
    last_label = None  # last non-blank label whose run was kept
    gap_blank = -1     # first blank frame since that run
    run_pos = 0
    for t, c in enumerate(p):
        run_pos = run_pos + 1 if t > 0 and c == p[t - 1] else 0
        if c == blank_id:
            if gap_blank < 0 and last_label is not None:
                gap_blank = t
            continue
        if run_pos == 0 and c == last_label and gap_blank >= 0:
            keep[gap_blank] = True  # separates two runs of the same label
        if run_pos < keep_per_run:
            keep[t] = True
        last_label, gap_blank = int(c), -1
    return keep


def labels_from_logits(logits: torch.Tensor, lengths: torch.Tensor | None = None, blank_id: int = 0,
                       keep_per_run: int = 1) -> list[np.ndarray]:
    """:func:`labels_from_ctc` on the argmax paths of a batch of CTC logits.

    Args:
        logits: ``(B, T, V)`` CTC logits of the full (undropped) model.
        lengths: ``(B,)`` valid frame counts; all ``T`` when None.

    Returns:
        One ``(T_b,)`` bool array per utterance.
    """
    path = logits.argmax(-1).cpu().numpy()
    n = [path.shape[1]] * path.shape[0] if lengths is None else lengths.cpu().tolist()
    return [labels_from_ctc(path[b, : int(n[b])], blank_id, keep_per_run) for b in range(path.shape[0])]


def _as_flat(x: np.ndarray | Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    if isinstance(x, np.ndarray) and x.dtype != object and x.ndim == 1:
        rows = [x.astype(bool)]
    else:
        rows = [np.asarray(r, dtype=bool).reshape(-1) for r in x]
    return rows, (np.concatenate(rows) if rows else np.zeros(0, dtype=bool))


def agreement(a: np.ndarray | Sequence[np.ndarray], b: np.ndarray | Sequence[np.ndarray],
              tolerance: int = 0) -> dict[str, float]:
    """Agreement between two label sources (``b`` taken as the reference).

    Args:
        a: labels of one utterance ``(T,)`` or a sequence of them (same lengths as ``b``).
        b: reference labels, same shapes.
        tolerance: a salient token of one source also counts as matched when the other
            source has a salient token within ``tolerance`` frames (the two sources place
            a label's frame a few frames apart); applies to precision/recall/F1 only.

    Returns:
        ``accuracy`` (token-level), ``kappa`` (Cohen's), ``precision``/``recall``/``f1`` of
        ``a``'s salient tokens against ``b``'s, ``keep_ratio_a``/``keep_ratio_b`` and
        ``tokens``.
    """
    ra, fa = _as_flat(a)
    rb, fb = _as_flat(b)
    if len(ra) != len(rb) or any(x.size != y.size for x, y in zip(ra, rb)):
        raise ValueError("label sources differ in utterance count or lengths")
    n = fa.size
    if n == 0:
        return {"tokens": 0, "accuracy": float("nan"), "kappa": float("nan"), "precision": float("nan"),
                "recall": float("nan"), "f1": float("nan"), "keep_ratio_a": float("nan"),
                "keep_ratio_b": float("nan")}
    acc = float(np.mean(fa == fb))
    pa, pb = fa.mean(), fb.mean()
    pe = pa * pb + (1 - pa) * (1 - pb)
    kappa = float((acc - pe) / (1 - pe)) if pe < 1 else 1.0

    def _dilate(rows: list[np.ndarray]) -> np.ndarray:
        if tolerance <= 0:
            return np.concatenate(rows)
        out = []
        for r in rows:
            d = r.copy()
            for s in range(1, tolerance + 1):
                d[s:] |= r[:-s]
                d[:-s] |= r[s:]
            out.append(d)
        return np.concatenate(out)

    hit_a = np.count_nonzero(fa & _dilate(rb))  # a's salient tokens near one of b's
    hit_b = np.count_nonzero(fb & _dilate(ra))
    prec = hit_a / fa.sum() if fa.any() else float("nan")
    rec = hit_b / fb.sum() if fb.any() else float("nan")
    f1 = 2 * prec * rec / (prec + rec) if (prec + rec) > 0 else 0.0
    return {"tokens": int(n), "accuracy": acc, "kappa": kappa, "precision": float(prec), "recall": float(rec),
            "f1": float(f1), "keep_ratio_a": float(pa), "keep_ratio_b": float(pb)}
