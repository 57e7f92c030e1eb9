"""Kaldi "lang" for alignment: phone/word tables, HMM topology, lexicon FST, graphs.

The lexicon FST follows Kaldi's ``make_lexicon_fst.py`` with optional silence: after each
word the path either goes straight to the next word (cost -log(1 - sil_prob)) or through
one ``sil`` phone (cost -log(sil_prob)); an utterance may start with silence too.
Pronunciations that are prefixes of others, or homophones, get disambiguation symbols
(``#1``, ``#2`` ...; Kaldi's ``add_lex_disambig.pl``) so the FST stays determinizable.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import kaldi_hmm_gmm as khg
import kaldifst

from s6damon.align.base import SILENCE
from s6damon.config.align import KaldiAlignParams


@dataclasses.dataclass
class Lang:
    """Everything needed to build training graphs and read alignments back."""

    lexicon: dict[str, list[list[str]]]
    phone2id: dict[str, int]
    id2phone: dict[int, str]
    word2id: dict[str, int]
    disambig_ids: list[int]
    topo: khg.HmmTopology
    lex_fst: kaldifst.StdVectorFst
    compiler: khg.TrainingGraphCompiler | None = None
    sil_id: int = 0

    def compile(self, words: list[str]) -> kaldifst.StdVectorFst:
        """Training graph (HCLG without G: a linear word sequence) for one transcript."""
        return self.compiler.compile_graph_from_text([self.word2id[w] for w in words])


def _topology(nonsil: list[int], sil: int, n_nonsil: int, n_sil: int) -> khg.HmmTopology:
    """Kaldi's standard topology: left-to-right speech phones, ergodic-ish silence."""
    s = "<Topology> <TopologyEntry> <ForPhones> " + " ".join(map(str, nonsil)) + " </ForPhones> "
    for i in range(n_nonsil):
        s += f"<State> {i} <PdfClass> {i} <Transition> {i} 0.75 <Transition> {i + 1} 0.25 </State> "
    s += f"<State> {n_nonsil} </State> </TopologyEntry> "
    s += f"<TopologyEntry> <ForPhones> {sil} </ForPhones> "
    if n_sil == 1:
        s += "<State> 0 <PdfClass> 0 <Transition> 0 0.75 <Transition> 1 0.25 </State> <State> 1 </State> "
    else:
        p = 1.0 / (n_sil - 1)
        s += "<State> 0 <PdfClass> 0 " + "".join(f"<Transition> {k} {p} " for k in range(n_sil - 1)) + "</State> "
        for i in range(1, n_sil - 1):
            s += f"<State> {i} <PdfClass> {i} " + "".join(
                f"<Transition> {k} {p} " for k in range(1, n_sil)) + "</State> "
        last = n_sil - 1
        s += f"<State> {last} <PdfClass> {last} <Transition> {last} 0.75 <Transition> {n_sil} 0.25 </State> "
        s += f"<State> {n_sil} </State> "
    s += "</TopologyEntry> </Topology>"
    topo = khg.HmmTopology()
    topo.read(s)
    return topo


def _disambiguate(lexicon: dict[str, list[list[str]]]) -> tuple[list[tuple[str, list[str]]], int]:
    """(word, phones + optional #k) entries and the highest disambiguation index used."""
    entries = [(w, p) for w in sorted(lexicon) for p in lexicon[w]]
    count = defaultdict(int)
    prefixes = set()
    for _, p in entries:
        count[tuple(p)] += 1
        for i in range(1, len(p)):
            prefixes.add(tuple(p[:i]))
    last = defaultdict(int)
    out, top = [], 0
    for w, p in entries:
        key = tuple(p)
        if count[key] == 1 and key not in prefixes:
            out.append((w, list(p)))
            continue
        last[key] += 1
        top = max(top, last[key])
        out.append((w, list(p) + [f"#{last[key]}"]))
    return out, top


def _lexicon_fst(entries, phone2id, word2id, sil_prob: float) -> kaldifst.StdVectorFst:
    sil_cost, nosil_cost = -math.log(sil_prob), -math.log(1.0 - sil_prob)
    fst = kaldifst.StdVectorFst()
    start, loop, sil = fst.add_state(), fst.add_state(), fst.add_state()
    fst.start = start
    fst.set_final(state=loop, weight=0)
    arc = kaldifst.StdArc
    fst.add_arc(state=start, arc=arc(ilabel=0, olabel=0, weight=nosil_cost, nextstate=loop))
    fst.add_arc(state=start, arc=arc(ilabel=0, olabel=0, weight=sil_cost, nextstate=sil))
    fst.add_arc(state=sil, arc=arc(ilabel=phone2id[SILENCE], olabel=0, weight=0, nextstate=loop))
    for word, phones in entries:
        cur = loop
        for i, ph in enumerate(phones[:-1]):
            nxt = fst.add_state()
            fst.add_arc(state=cur, arc=arc(ilabel=phone2id[ph], olabel=word2id[word] if i == 0 else 0,
                                           weight=0, nextstate=nxt))
            cur = nxt
        olab = word2id[word] if len(phones) == 1 else 0
        for cost, dest in ((nosil_cost, loop), (sil_cost, sil)):
            fst.add_arc(state=cur, arc=arc(ilabel=phone2id[phones[-1]], olabel=olab,
                                           weight=cost, nextstate=dest))
    kaldifst.arcsort(fst, sort_type="olabel")
    return fst


def build_lang(lexicon: dict[str, list[list[str]]], kp: KaldiAlignParams) -> Lang:
    """Phone and word tables, topology, lexicon FST and graph compiler for ``lexicon``."""
    entries, top = _disambiguate(lexicon)
    speech = sorted({p for prons in lexicon.values() for pr in prons for p in pr})
    phones = ["<eps>", SILENCE] + [p for p in speech if p != SILENCE]
    phones += [f"#{i}" for i in range(top + 1)]
    phone2id = {p: i for i, p in enumerate(phones)}
    word2id = {w: i for i, w in enumerate(["<eps>"] + sorted(lexicon) + ["#0"])}
    disambig = [phone2id[f"#{i}"] for i in range(top + 1)]
    nonsil = [phone2id[p] for p in phones if p not in ("<eps>", SILENCE) and not p.startswith("#")]
    topo = _topology(nonsil, phone2id[SILENCE], kp.nonsil_states, kp.sil_states)
    lex_fst = _lexicon_fst(entries, phone2id, word2id, kp.sil_prob)
    lang = Lang(lexicon=lexicon, phone2id=phone2id, id2phone={i: p for p, i in phone2id.items()},
                word2id=word2id, disambig_ids=disambig, topo=topo, lex_fst=lex_fst,
                sil_id=phone2id[SILENCE])
    return lang


def attach_compiler(lang: Lang, tm: khg.TransitionModel, tree: khg.ContextDependency) -> None:
    """Create the graph compiler for a transition model and tree (needs the model)."""
    lang.compiler = khg.TrainingGraphCompiler(
        trans_model=tm, ctx_dep=tree, lex_fst=lang.lex_fst, disambig_syms=lang.disambig_ids,
        opts=khg.TrainingGraphCompilerOptions())


def split_words(phones: list[str], words: list[str],
                lexicon: dict[str, list[list[str]]]) -> list[tuple[int, int]] | None:
    """Split a speech-phone sequence into the words' pronunciations.

    Returns:
        one (first, last + 1) phone-index span per word, or None when no choice of
        pronunciations reproduces ``phones`` exactly.
    """
    # memoised depth-first search over pronunciation choices: variants are few per word
    memo: dict[tuple[int, int], list[tuple[int, int]] | None] = {}

    def go(wi: int, pi: int):
        if wi == len(words):
            return [] if pi == len(phones) else None
        if (wi, pi) in memo:
            return memo[(wi, pi)]
        ans = None
        for pron in lexicon[words[wi]]:
            j = pi + len(pron)
            if phones[pi:j] == pron:
                rest = go(wi + 1, j)
                if rest is not None:
                    ans = [(pi, j)] + rest
                    break
        memo[(wi, pi)] = ans
        return ans

    return go(0, 0)
