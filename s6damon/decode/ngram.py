"""A word n-gram language model (interpolated Kneser-Ney) written as an ARPA file.

The beam-search decoder (:mod:`s6damon.decode.beam`) reads ARPA through KenLM, the usual
format of on-device ASR language models. Building one needs KenLM's ``lmplz`` binary, which
no Python wheel ships, so this module estimates the model itself from the training
transcripts: interpolated Kneser-Ney with one absolute discount per order (Chen & Goodman's
``D = n1 / (n1 + 2 n2)``), continuation counts for the lower orders (raw counts for n-grams
that start with ``<s>``, which has no left context, as ``lmplz`` does), and the
interpolated probabilities stored in backoff form: for a seen n-gram the stored probability
already includes the lower-order share, and the backoff weight of a context is its
interpolation weight, so KenLM's backoff arithmetic gives back the interpolated model. A
user with a larger LM (``lmplz`` on more text) points ``decode.lm_path`` at it instead.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BOS, EOS, UNK = "<s>", "</s>", "<unk>"

Gram = tuple[str, ...]


@dataclass
class NgramModel:
    """Log10 probabilities and backoff weights per order (``probs[n-1][gram]``)."""

    order: int
    probs: list[dict[Gram, float]] = field(default_factory=list)
    backoffs: list[dict[Gram, float]] = field(default_factory=list)
    discounts: list[float] = field(default_factory=list)

    @property
    def vocab(self) -> list[str]:
        """Words with a unigram entry (``<s>``, ``</s>`` and ``<unk>`` included)."""
        return [g[0] for g in self.probs[0]]

    def logprob(self, word: str, context: Sequence[str] = ()) -> float:
        """Log10 ``p(word | context)`` by the ARPA backoff rule (unknown words score as ``<unk>``)."""
        known = self.probs[0]
        word = word if (word,) in known else UNK
        context = tuple(c if (c,) in known else UNK for c in context)[-(self.order - 1):] if self.order > 1 else ()
        penalty = 0.0
        while True:
            gram = (*context, word)
            if gram in self.probs[len(gram) - 1]:
                return penalty + self.probs[len(gram) - 1][gram]
            penalty += self.backoffs[len(context) - 1].get(context, 0.0) if context else 0.0
            context = context[1:]


def _discount(adjusted: Iterable[int]) -> float:
    """Chen & Goodman's single discount from the counts of counts (0.5 when undefined)."""
    coc = Counter(adjusted)
    n1, n2 = coc.get(1, 0), coc.get(2, 0)
    if n1 == 0 or n2 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2.0 * n2), 0.05), 0.95)


def estimate(sentences: Iterable[Sequence[str]], order: int = 3) -> NgramModel:
    """Interpolated Kneser-Ney estimate of a word n-gram model.

    Args:
        sentences: tokenised sentences (no ``<s>``/``</s>``; they are added).
        order: n-gram order (1 = unigram).

    Raises:
        ValueError: ``order`` < 1 or no non-empty sentence.
    """
    if order < 1:
        raise ValueError(f"n-gram order must be >= 1, got {order}")
    counts: list[Counter[Gram]] = [Counter() for _ in range(order)]
    n_sent = 0
    for words in sentences:
        if not words:
            continue
        n_sent += 1
        seq = (BOS, *words, EOS)
        for n in range(1, order + 1):
            for i in range(len(seq) - n + 1):
                gram = tuple(seq[i:i + n])
                if gram != (BOS,):
                    counts[n - 1][gram] += 1
    if n_sent == 0:
        raise ValueError("no sentence to estimate a language model from")

    # Adjusted counts: raw at the top order and for grams starting with <s>; otherwise the
    # number of distinct words seen before the gram (Kneser-Ney continuation count).
    adjusted: list[dict[Gram, int]] = [dict() for _ in range(order)]
    adjusted[order - 1] = dict(counts[order - 1])
    for n in range(order - 1, 0, -1):
        left: Counter[Gram] = Counter(g[1:] for g in counts[n])
        for gram, c in counts[n - 1].items():
            adjusted[n - 1][gram] = c if gram[0] == BOS else left.get(gram, 0) or c
    model = NgramModel(order=order)
    model.discounts = [_discount(a.values()) for a in adjusted]

    # Unigrams: discounted counts interpolated with the uniform distribution over the vocabulary.
    uni = adjusted[0]
    vocab = sorted({g[0] for g in uni} | {EOS, UNK})
    total = sum(uni.values())
    d = model.discounts[0]
    gamma = d * len(uni) / total
    probs1: dict[Gram, float] = {(BOS,): -99.0}
    for w in vocab:
        probs1[(w,)] = math.log10(max(uni.get((w,), 0) - d, 0.0) / total + gamma / len(vocab))
    model.probs.append(probs1)
    lower = {g: 10 ** p for g, p in probs1.items() if g != (BOS,)}

    for n in range(2, order + 1):
        table = adjusted[n - 1]
        d = model.discounts[n - 1]
        ctx_total: Counter[Gram] = Counter()
        ctx_types: Counter[Gram] = Counter()
        for gram, a in table.items():
            ctx_total[gram[:-1]] += a
            ctx_types[gram[:-1]] += 1
        gammas = {h: d * ctx_types[h] / ctx_total[h] for h in ctx_total}
        probs: dict[Gram, float] = {}
        for gram, a in table.items():
            h = gram[:-1]
            p = max(a - d, 0.0) / ctx_total[h] + gammas[h] * lower[gram[1:]]
            probs[gram] = math.log10(p)
        model.backoffs.append({h: math.log10(g) for h, g in gammas.items()})
        model.probs.append(probs)
        lower = {g: 10 ** p for g, p in probs.items()}
    return model


def write_arpa(model: NgramModel, path: str | Path) -> Path:
    """Write ``model`` in ARPA format, atomically (KenLM and SRILM read it)."""
    from s6damon import io

    lines = ["", "\\data\\"]
    lines += [f"ngram {n + 1}={len(p)}" for n, p in enumerate(model.probs)]
    for n, probs in enumerate(model.probs):
        lines += ["", f"\\{n + 1}-grams:"]
        bows = model.backoffs[n] if n < len(model.backoffs) else {}
        for gram, p in sorted(probs.items()):
            text = " ".join(gram)
            if n + 1 < model.order and gram[-1] != EOS:
                lines.append(f"{p:.6f}\t{text}\t{bows.get(gram, 0.0):.6f}")
            else:
                lines.append(f"{p:.6f}\t{text}")
    lines += ["", "\\end\\", ""]
    io.write_text(path, "\n".join(lines))
    return Path(path)


def read_arpa(path: str | Path) -> NgramModel:
    """An :class:`NgramModel` from an ARPA file (for inspection and tests).

    Raises:
        ValueError: the file is not ARPA (named).
    """
    path = Path(path)
    probs: list[dict[Gram, float]] = []
    backoffs: list[dict[Gram, float]] = []
    order = 0
    section = 0
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line == "\\data\\" or line == "\\end\\" or line.startswith("ngram "):
            if line.startswith("ngram "):
                order = max(order, int(line.split()[1].split("=")[0]))
            continue
        if line.startswith("\\") and line.endswith("-grams:"):
            section = int(line[1:].split("-")[0])
            while len(probs) < section:
                probs.append({})
                backoffs.append({})
            continue
        if section == 0:
            raise ValueError(f"{path}: not an ARPA file (n-gram line before any \\N-grams: header)")
        parts = line.split()
        gram = tuple(parts[1:1 + section])
        probs[section - 1][gram] = float(parts[0])
        if len(parts) > 1 + section:
            backoffs[section - 1][gram] = float(parts[1 + section])
    if not probs:
        raise ValueError(f"{path}: not an ARPA file (no n-gram sections)")
    return NgramModel(order=order or len(probs), probs=probs, backoffs=backoffs[:-1] if len(backoffs) > 1 else [])
