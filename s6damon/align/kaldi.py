"""Kaldi GMM-HMM forced aligner trained on the corpus itself (MFA's method).

Pipeline, following Kaldi's ``steps/train_mono.sh`` and ``align_si.sh`` through the PyPI
``kaldi_hmm_gmm`` / ``kaldifst`` bindings:

1. MFCC + deltas + delta-deltas, per-utterance cepstral mean normalisation
   (``features.py``).
2. A lexicon FST with optional silence between words and one training graph per
   utterance (``kaldi_lang.py``).
3. Monophone training: flat start from global mean/variance, equal alignment, then EM
   iterations with Viterbi realignment at ``realign_iters`` and Gaussian mix-up to
   ``max_gaussians``. The realignment's retry beam is wide (``train_retry_beam``): the
   first models, trained from equal alignments, need a beam of ~100-300 on most
   utterances, and an utterance that fails keeps its equal alignment, so with a narrow
   one most of the corpus trained on equal alignments for 20+ iterations.
4. Final Viterbi alignment with wide beams; frame alignments become phone and word
   intervals.

Alignment (the costly part) runs in ``jobs`` forked processes, which inherit the current
model by copy-on-write (the bindings' objects cannot be pickled).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from s6damon.parallel import fork_pool
from s6damon.align.base import SILENCE, AlignError, AlignItem, AlignResult
from s6damon.align.features import compute_features
from s6damon.align.kaldi_lang import Lang, attach_compiler, build_lang, split_words
from s6damon.align.lexicon import build_lexicon
from s6damon.align.mixup import mix_up
from s6damon.config.align import AlignParams, KaldiAlignParams

log = logging.getLogger(__name__)

# State read by forked alignment workers (set just before the pool is created).
_SHARED: dict = {}


def _init_model(lang: Lang, feats: dict[str, np.ndarray]):
    """Flat-start monophone model: every pdf is one Gaussian at the global mean/variance."""
    stacked = np.concatenate(list(feats.values()), axis=0).astype(np.float64)
    mean = stacked.mean(axis=0)
    var = np.maximum(stacked.var(axis=0), 1e-3)
    tree = khg.monophone_context_dependency(
        phones=lang.topo.phones, phone2num_pdf_classes=lang.topo.get_phone_to_num_pdf_classes())
    gmm = khg.DiagGmm(nmix=1, dim=stacked.shape[1])
    gmm.set_weights(np.ones(1, dtype=np.float32))
    gmm.set_means(mean[None, :].astype(np.float32))
    gmm.set_invvars((1.0 / var)[None, :].astype(np.float32))
    gmm.compute_gconsts()
    am = khg.AmDiagGmm()
    for _ in range(tree.num_pdfs):
        am.add_pdf(gmm)
    tm = khg.TransitionModel(ctx_dep=tree, hmm_topo=lang.topo)
    return tm, tree, am


def _boost_silence(am, tm, sil_phone: int, boost: float):
    """Copy of ``am`` with silence Gaussian weights scaled (Kaldi's gmm-boost-silence)."""
    out = khg.AmDiagGmm()
    out.copy_from_am_diag_gmm(am)
    if boost == 1.0:
        return out
    _, pdfs = khg.get_pdfs_for_phones(tm, [sil_phone])
    for pdf in pdfs:
        g = out.get_pdf(pdf)
        g.set_weights((np.asarray(g.weights) * boost).astype(np.float32))
        g.compute_gconsts()
    return out


def _align_one(utt: str) -> tuple[str, list[int] | None, str]:
    """Viterbi-align one utterance with the model in ``_SHARED`` (runs in a worker)."""
    s = _SHARED
    fst = s["graphs"][utt].copy()
    khg.add_transition_probs(trans_model=s["tm"], transition_scale=s["kp"].transition_scale,
                             self_loop_scale=s["kp"].self_loop_scale, fst=fst)
    dec = khg.DecodableAmDiagGmmScaled(am=s["am"], tm=s["tm"], feats=s["feats"][utt],
                                       scale=s["kp"].acoustic_scale)
    cfg = khg.AlignConfig()
    cfg.beam, cfg.retry_beam, cfg.careful = s["beam"], s["retry_beam"], False
    out = khg.align_utterance_wrapper(config=cfg, utt=utt, acoustic_scale=s["kp"].acoustic_scale,
                                      fst=fst, decodable=dec, num_done=0, num_error=0,
                                      num_retried=0, tot_like=0.0, frame_count=0)
    ali = list(out[5])
    if not ali:
        return utt, None, f"no alignment within retry beam {s['retry_beam']}"
    return utt, ali, ""


def _align_all(utts: list[str], jobs: int) -> list[tuple[str, list[int] | None, str]]:
    if jobs <= 1 or len(utts) < 8:
        return [_align_one(u) for u in utts]
    # fork: workers see _SHARED (model, graphs, features) without pickling
    with fork_pool(jobs) as pool:
        return pool.map(_align_one, utts, chunksize=max(1, len(utts) // (jobs * 8)))


def _accumulate(am, tm, feats: dict[str, np.ndarray], alis: dict[str, list[int]]):
    """Gaussian and transition statistics of fixed alignments (gmm-acc-stats-ali)."""
    accs = khg.AccumAmDiagGmm()
    accs.init(model=am, flags=khg.GmmUpdateFlags.kGmmAll)
    trans = tm.init_stats()
    tid2pdf = np.asarray(tm.transition_id_to_pdf_array())
    like = 0.0
    for utt, ali in alis.items():
        x = feats[utt]
        pdfs = tid2pdf[np.asarray(ali)]
        for t, (tid, pdf) in enumerate(zip(ali, pdfs)):
            trans = tm.accumulate(prob=1.0, trans_id=int(tid), stats=trans)
            like += accs.accumulate_for_gmm(model=am, data=x[t], gmm_index=int(pdf), weight=1.0)
    return accs, trans, like


def _update(am, tm, accs, trans, kp: KaldiAlignParams, mixup: int, min_occ: float, iteration: int = 0) -> None:
    """Re-estimate the model from statistics, then mix up (gmm-est; the split's random
    perturbation seeded by ``kp.seed`` and the iteration)."""
    flags = khg.str_to_gmm_flags("mvwt")
    tm.mle_update(trans, khg.MleTransitionUpdateConfig())
    opts = khg.MleDiagGmmOptions()
    opts.min_gaussian_occupancy = min_occ
    khg.mle_am_diag_gmm_update(config=opts, amdiag_gmm_acc=accs, flags=flags, am_gmm=am)
    if mixup > am.num_gauss:
        occs = np.array([accs.get_acc(i).occupancy.sum() for i in range(accs.num_accs)],
                        dtype=np.float32)
        # numpy's seeded generator, not Kaldi's split: the bindings' RandGauss cannot be seeded
        mix_up(am, occs, mixup, kp.perturb_factor, kp.mixup_power, kp.mixup_min_count,
               seed=(kp.seed, iteration))


def _equal_align(graphs, feats, seed: int) -> tuple[dict[str, list[int]], dict[str, str]]:
    alis, bad = {}, {}
    for utt, g in graphs.items():
        ok, path = kaldifst.equal_align(ifst=g, length=feats[utt].shape[0], rand_seed=seed,
                                        num_retries=10)
        if ok:
            ok, seq, _, _ = kaldifst.get_linear_symbol_sequence(path)
        if not ok:
            bad[utt] = "too short for its transcript (equal alignment impossible)"
            continue
        alis[utt] = list(seq)
    return alis, bad


def train_monophone(lang: Lang, tm, am, graphs, feats, kp: KaldiAlignParams, jobs: int):
    """Train the flat-start monophone model ``am`` in place; returns failures by utt."""
    alis, failed = _equal_align(graphs, feats, kp.seed)
    if not alis:
        return failed
    num_gauss = am.num_gauss
    max_inc = max(1, int(kp.mono_iters * 0.75))
    inc = max(0, (kp.max_gaussians - num_gauss) // max_inc)
    accs, trans, like = _accumulate(am, tm, feats, alis)
    _update(am, tm, accs, trans, kp, num_gauss, kp.min_gaussian_occupancy)
    realign = set(kp.realign_iters)
    for it in range(1, kp.mono_iters):
        t0 = time.time()
        if it in realign:
            _SHARED.update(am=_boost_silence(am, tm, lang.sil_id, kp.boost_silence), tm=tm,
                           graphs=graphs, feats=feats, kp=kp,
                           beam=kp.train_beam, retry_beam=kp.train_retry_beam)
            new = {}
            for utt, ali, _ in _align_all(sorted(alis), jobs):
                if ali is not None:
                    new[utt] = ali
            # an utterance that no longer aligns keeps its previous alignment for training
            log.info("mono iter %d: realigned %d of %d", it, len(new), len(alis))
            alis.update(new)
        accs, trans, like = _accumulate(am, tm, feats, alis)
        frames = sum(len(a) for a in alis.values())
        _update(am, tm, accs, trans, kp, num_gauss, 10.0, iteration=it)
        if it <= max_inc:
            num_gauss += inc
        log.info("mono iter %d: avg loglike/frame %.3f, %d gauss, %.1fs", it, like / frames,
                 am.num_gauss, time.time() - t0)
    return failed


def frames_to_intervals(utt: str, ali: list[int], tm, lang: Lang, words: list[str],
                        shift: float) -> tuple[list[tuple], list[tuple]]:
    """Phone and word intervals (seconds) from a transition-id alignment.

    A phone starts on the forward transition out of its first HMM state, so repeated
    identical phones stay separate. Words are recovered by matching the speech phones
    against the pronunciations of the transcript's words in order.
    """
    phones: list[tuple[str, int, int]] = []
    for t, tid in enumerate(ali):
        tid = int(tid)
        # Graphs use Kaldi's reordered self-loops: each HMM state's forward transition
        # comes before its self-loops, so a phone starts at the first state's forward one.
        if not phones or (tm.transition_ids_is_start_of_phone(tid) and not tm.is_self_loop(tid)):
            phones.append((lang.id2phone[tm.transition_id_to_phone(tid)], t, t + 1))
        else:
            phones[-1] = (phones[-1][0], phones[-1][1], t + 1)
    # merge consecutive silences (optional silence between words may repeat)
    merged: list[tuple[str, int, int]] = []
    for p in phones:
        if merged and p[0] == SILENCE and merged[-1][0] == SILENCE:
            merged[-1] = (SILENCE, merged[-1][1], p[2])
        else:
            merged.append(p)
    speech = [p for p in merged if p[0] != SILENCE]
    spans = split_words([p[0] for p in speech], words, lang.lexicon)
    if spans is None:
        raise ValueError("aligned phones do not match the transcript's pronunciations")
    prow = [(utt, p, a * shift, b * shift) for p, a, b in merged]
    wrow = [(utt, w, speech[i][1] * shift, speech[j - 1][2] * shift)
            for w, (i, j) in zip(words, spans)]
    return prow, wrow


class KaldiAligner:
    """Train a monophone GMM-HMM on the items, then force-align them with it."""

    name = "kaldi"

    def __init__(self, p: AlignParams):
        self.p = p
        self.kp = p.kaldi

    def align(self, items: list[AlignItem], workdir: Path) -> AlignResult:
        """Align ``items`` (see module docstring); ``workdir`` receives a training log."""
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        kp, t0 = self.kp, time.time()
        failed: dict[str, str] = {}
        lexicon = build_lexicon({w for it in items for w in it.text.split()},
                                use_g2p=self.p.g2p, max_prons=self.p.max_pronunciations)
        feats, bad = compute_features(items, kp, self.p.jobs)
        failed.update(bad)
        if not feats:
            raise AlignError(f"kaldi: no readable audio among {len(items)} utterances "
                             f"(first: {next(iter(failed.items()))})")
        lang = build_lang(lexicon, kp)
        tm, tree, am = _init_model(lang, feats)
        attach_compiler(lang, tm, tree)
        texts = {it.utt_id: it.text.split() for it in items}
        graphs = {}
        for utt in feats:
            try:
                graphs[utt] = lang.compile(texts[utt])
            except Exception as err:  # the bindings raise RuntimeError on bad graphs
                failed[utt] = f"training graph failed: {err}"
        if not graphs:
            raise_all = "; ".join(f"{u}: {r}" for u, r in list(failed.items())[:5])
            raise AlignError(f"kaldi: no utterance can be aligned ({raise_all})")
        bad = train_monophone(lang, tm, am, {u: g for u, g in graphs.items()}, feats, kp, self.p.jobs)
        failed.update(bad)
        t_train = time.time() - t0
        _SHARED.update(am=am, tm=tm, graphs=graphs, feats=feats, kp=kp,
                       beam=kp.beam, retry_beam=kp.retry_beam)
        prow, wrow = [], []
        shift = kp.frame_shift_ms / 1000.0
        for utt, ali, reason in _align_all(sorted(graphs), self.p.jobs):
            if ali is None:
                failed[utt] = reason
                continue
            try:
                p, w = frames_to_intervals(utt, ali, tm, lang, texts[utt], shift)
            except ValueError as err:
                failed[utt] = str(err)
                continue
            failed.pop(utt, None)  # the final alignment decides (e.g. skipped in training)
            prow += p
            wrow += w
        _SHARED.clear()
        (workdir / "kaldi_log.txt").write_text(
            f"utterances {len(items)} aligned {len({r[0] for r in wrow})} failed {len(failed)}\n"
            f"gaussians {am.num_gauss} pdfs {am.num_pdfs}\n"
            f"train_s {t_train:.1f} total_s {time.time() - t0:.1f}\n")
        order = {it.utt_id: i for i, it in enumerate(items)}
        fails = [{"utt_id": u, "reason": r} for u, r in sorted(failed.items(), key=lambda x: order[x[0]])]
        return AlignResult.from_rows(prow, wrow, fails)
