"""The corpus plan: which text each utterance says, with which voice, in which split.

Splits (all deterministic from the seed):

* ``train``: command utterances plus a share (``open_vocab_train_share``) of fortune
  sentences, spoken by ``train_voices``. Male train voices are also pitch-shifted up
  (``pitch_up_semitones``) so training spans the female pitch range; a share is stretched
  (tempo) or speed-changed. A pitch-shifted or speed-changed voice is its own speaker id
  (``flite:awb+p5``, ``espeak:en+m1+v1.1``); tempo stretching keeps the speaker.
* ``dev``: held-out utterances (new texts) from the train voices, plus ``dev_voices``
  (by default one espeak-ng variant never used in train) for an unseen-voice check
  during development. Not augmented.
* ``test``: command utterances by ``test_voices`` only. By default SLT (flite slt and
  festival slt-hts, the only recorded female), RMS (flite rms) and two espeak-ng variants
  absent from train and dev. Speakers are disjoint by real person: flite kal16 and
  festival kal are both Kal, flite slt and festival slt-hts both SLT, and an espeak-ng
  variant is one person whatever its accent (``SynthParams.check`` enforces this).
* ``test_open``: fortune sentences by the same test voices; its sentences are disjoint
  from every sentence in train and dev.
* ``unlabeled`` (only with ``unlabeled_minutes`` > 0): audio for SSL pretraining, by
  ``unlabeled_voices``, augmented like train. Its transcripts are kept in the manifest but
  no stage trains on them (pretraining reads audio only; finetuning reads ``train``). Its
  texts are new: none is said in any other split. Planned after the labeled splits from its
  own text pools, so turning it on leaves the labeled splits' plan unchanged.

Every text appears once in the whole corpus. Sizes follow ``minutes`` through a
speech-rate estimate (``seconds_per_word``), so the rendered total is approximate.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re

from s6damon.config.prepare import PrepareParams
from s6damon.corpus import grammar, sentences
from s6damon.corpus.synth import voice_info
from s6damon.splits import SPLITS, UNLABELED



@dataclasses.dataclass(frozen=True)
class UttSpec:
    """One utterance to render."""

    utt_id: str
    text: str
    voice: str
    speaker: str
    voice_family: str
    gender: str
    domain: str  # "command" or "open"
    split: str
    stretch: float = 1.0
    pitch_semitones: float = 0.0
    speed: float = 1.0


def speaker_id(voice: str, pitch_semitones: float = 0.0, speed: float = 1.0) -> str:
    """Speaker id: the voice, plus pitch (``+p3``) and speed (``+v1.1``) augmentation."""
    sid = voice
    if pitch_semitones:
        sid += f"+p{pitch_semitones:g}"
    if speed != 1.0:
        sid += f"+v{speed:g}"
    return sid


def _estimate_seconds(text: str, spw: float, time_factor: float = 1.0) -> float:
    return (0.5 + spw * len(text.split())) * time_factor


def plan_corpus(p: PrepareParams, seed: int) -> list[UttSpec]:
    """Plan the synthesised corpus.

    Args:
        p: the ``prepare`` parameters (``p.synth`` sizes and voices).
        seed: the project seed; the plan is a pure function of ``(p, seed)``.

    Returns:
        Utterance specs ordered by split (train, dev, test, test_open).
    """
    s = p.synth
    rng = random.Random(seed)
    total = s.minutes * 60.0
    budgets = {"dev": total * s.dev_share, "test": total * s.test_share,
               "test_open": total * s.test_open_share}
    budgets["train"] = total - sum(budgets.values())
    # text pools large enough for any split: ~2.5 s per command, ~4 s per sentence
    n_cmd = int(total / 2.0) + 50
    commands = iter(grammar.generate_commands(n_cmd, rng.randrange(2**31)))
    n_sent = int(total * (s.open_vocab_train_share + s.test_open_share) / 2.0) + 20
    pool = sentences.sample_sentences(min(n_sent, len(sentences.candidate_sentences(
        s.sentence_min_words, s.sentence_max_words))), rng.randrange(2**31),
        s.sentence_min_words, s.sentence_max_words)
    # test_open takes sentences from the start of the sample, train/dev from the end:
    # disjoint by construction
    open_test, open_train = iter(pool), iter(reversed(pool))

    specs: list[UttSpec] = []
    male_train = [v for v in s.train_voices if voice_info(v).gender == "m"]
    for split in SPLITS:
        rng_split = random.Random(f"{seed}-{split}")
        if split == "train":
            voices = [v for v in s.train_voices for _ in range(s.train_voice_weights.get(v, 1))]
        elif split == "dev":
            voices = list(s.dev_voices)
        else:
            voices = list(s.test_voices)
        rng_split.shuffle(voices)
        voice_cycle = itertools.cycle(voices)
        train_cycle = itertools.cycle(sorted(s.train_voices, key=lambda v: rng_split.random()))
        spent, i = 0.0, 0
        while spent < budgets[split]:
            if split == "test_open":
                domain = "open"
            elif split == "test":
                domain = "command"
            else:
                domain = "open" if rng_split.random() < s.open_vocab_train_share else "command"
            try:
                text = next(open_test if split == "test_open" else open_train) if domain == "open" \
                    else next(commands)
            except StopIteration:
                break  # pool exhausted: the split ends a little short
            if split == "dev" and (not voices or rng_split.random() >= s.dev_unseen_voice_share):
                voice = next(train_cycle)
            else:
                voice = next(voice_cycle)
            aug = _augmentation(s, voice in male_train, rng_split) if split == "train" else (1.0, 0.0, 1.0)
            specs.append(_spec(text, voice, domain, split, i, *aug))
            spent += _estimate_seconds(text, s.seconds_per_word, aug[0] / aug[2])
            i += 1
    if s.unlabeled_minutes > 0:
        specs.extend(_plan_unlabeled(p, seed, {u.text for u in specs}))
    return specs


def _augmentation(s, male: bool, rng: random.Random) -> tuple[float, float, float]:  # noqa: ANN001 (SynthParams)
    """``(stretch, pitch_semitones, speed)`` of one training utterance: male voices are
    pitch-shifted up for a share, and a share is stretched or speed-changed."""
    stretch, pitch, speed = 1.0, 0.0, 1.0
    if male and s.pitch_up_semitones and rng.random() < s.pitch_up_share:
        pitch = rng.choice(s.pitch_up_semitones)
    u = rng.random()
    if s.stretch_factors and u < s.stretch_share:
        stretch = rng.choice(s.stretch_factors)
    elif s.speed_factors and u < s.stretch_share + s.speed_share:
        speed = rng.choice(s.speed_factors)
    return stretch, pitch, speed


def _spec(text: str, voice: str, domain: str, split: str, i: int, stretch: float, pitch: float,
          speed: float) -> UttSpec:
    info = voice_info(voice)
    spk = speaker_id(voice, pitch, speed)
    safe = re.sub(r"[^A-Za-z0-9]+", "_", spk).strip("_")
    return UttSpec(f"{safe}-{split}-{i:05d}", text, voice, spk, info.family, info.gender,
                   domain, split, stretch, pitch, speed)


def _plan_unlabeled(p: PrepareParams, seed: int, taken: set[str]) -> list[UttSpec]:
    """The ``unlabeled`` split: ``unlabeled_minutes`` of new texts by ``unlabeled_voices``,
    augmented like train, from text pools of their own (no text of ``taken`` is said)."""
    s = p.synth
    rng = random.Random(f"{seed}-{UNLABELED}")
    budget = s.unlabeled_minutes * 60.0
    n_cmd = int(budget / 2.0) + 50
    commands = iter([t for t in grammar.generate_commands(n_cmd + len(taken), rng.randrange(2**31))
                     if t not in taken])
    n_sent = min(int(budget * s.open_vocab_train_share / 2.0) + 20 + len(taken), len(
        sentences.candidate_sentences(s.sentence_min_words, s.sentence_max_words)))
    open_pool = iter([t for t in sentences.sample_sentences(n_sent, rng.randrange(2**31), s.sentence_min_words,
                                                            s.sentence_max_words) if t not in taken])
    voices = sorted(s.unlabeled_voices)
    rng.shuffle(voices)
    voice_cycle = itertools.cycle(voices)
    out: list[UttSpec] = []
    spent = 0.0
    while spent < budget:
        domain = "open" if rng.random() < s.open_vocab_train_share else "command"
        try:
            text = next(open_pool if domain == "open" else commands)
        except StopIteration:
            break  # pool exhausted: the split ends a little short
        voice = next(voice_cycle)
        aug = _augmentation(s, voice_info(voice).gender == "m", rng)
        out.append(_spec(text, voice, domain, UNLABELED, len(out), *aug))
        spent += _estimate_seconds(text, s.seconds_per_word, aug[0] / aug[2])
    return out


def shards(specs: list[UttSpec], shard_size: int) -> list[list[UttSpec]]:
    """Cut a plan into shards of about ``shard_size`` utterances for parallel rendering.

    Specs are grouped by voice inside each shard's range order, so a festival voice is
    loaded once per shard; every utterance is in exactly one shard.
    """
    ordered = sorted(specs, key=lambda u: (u.voice, u.utt_id))
    return [ordered[i:i + shard_size] for i in range(0, len(ordered), shard_size)]
