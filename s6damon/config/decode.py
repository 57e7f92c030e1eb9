"""Parameters of the ``decode`` stage (lexicon + n-gram LM beam search)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

from s6damon.config.schema import ParamsError, param


@dataclasses.dataclass(frozen=True)
class AdaptParams:
    """Single-utterance test-time adaptation (SUTA; :mod:`s6damon.decode.adapt`)."""

    steps: int = param(10, minimum=0, help="gradient steps on each utterance before reading it (entropy "
                                            "minimisation + minimum class confusion); 0 = off")
    lr: float = param(1e-4, minimum=1e-8, maximum=1.0, help="AdamW learning rate of the adaptation steps")
    em_weight: float = param(0.3, minimum=0.0, maximum=1.0,
                             help="weight of the entropy term; the class-confusion term gets 1 - em_weight")
    temperature: float = param(2.5, minimum=0.01, help="the class-confusion term reads softmax(logits / temperature)")
    scope: Literal["norm", "norm+conv"] = param(
        "norm+conv", help="parameters adapted: every LayerNorm/GroupNorm, or those and the conv feature encoder")
    warp: bool = param(False, help="also score adaptation and test-time warping together: each warped copy "
                                    "adapted, the posteriors averaged (decoders greedy_tta_warp, beam_lm_tta_warp; "
                                    "one adaptation per warp factor)")
    models: list[str] = param(["scratch", "finetuned"],
                              help="names (globs allowed) of the decode.models folders also scored after adaptation "
                                   "(decoders greedy_tta, beam_lm_tta); each costs ~20 forward passes an utterance")


@dataclasses.dataclass(frozen=True)
class SpeakerAdaptParams:
    """Unsupervised speaker adaptation (:func:`s6damon.decode.adapt.adapted_to`): the model is
    adapted to a speaker's other utterances, with ``decode.adapt``'s objective and scope, and
    then reads the held-out ones without further steps."""

    epochs: int = param(2, minimum=0, help="passes over the speaker's adaptation utterances (no transcripts); "
                                           "0 = off")
    batch_utterances: int = param(4, minimum=1, help="utterances whose losses make one AdamW step")
    lr: float = param(1e-4, minimum=1e-8, maximum=1.0, help="AdamW learning rate")
    folds: int = param(2, minimum=1, help="each speaker's utterances (in utt_id order) are dealt into this many "
                                          "folds; a fold is read by the model adapted to the other folds, so no "
                                          "utterance adapts the model that reads it. 1 = adapt to all of them, "
                                          "the read ones included (transductive)")
    tta: bool = param(True, help="also score speaker adaptation followed by single-utterance adaptation "
                                  "(decode.adapt's steps from the speaker-adapted weights; decoders greedy_spk_tta, "
                                  "beam_lm_spk_tta; SUTA's cost)")
    models: list[str] = param(["scratch", "finetuned"],
                              help="names (globs allowed) of the decode.models folders also scored after speaker "
                                   "adaptation (decoders greedy_spk, beam_lm_spk)")


@dataclasses.dataclass(frozen=True)
class DecodeParams:
    """Beam-search decoding with a word n-gram LM, tuned on one split and scored on others."""

    models: list[str] = param(["models/scratch", "models/export/*"],
                              help="model folders decoded (globs allowed; each also scored greedily): CTC "
                                   "checkpoints, or exported folders, run with their pruning and SALAD detector")
    lm_path: str = param("", help="an existing ARPA or KenLM binary LM; empty = estimate one from the train "
                                  "transcripts")
    order: int = param(3, minimum=1, maximum=6, help="n-gram order of the estimated LM")
    exclude_eval_sentences: bool = param(True, help="leave out of the LM text every train sentence that is also "
                                                    "a tune/scored sentence, so no scored sentence is seen whole")
    lexicon: Literal["train", "train+cmudict"] = param(
        "train", help="words the search may emit: the LM text's words, or those plus every CMUdict word")
    beam_size: int = param(50, minimum=1, help="hypotheses kept per frame")
    beam_threshold: float = param(25.0, minimum=0.0, help="drop hypotheses this far (log) below the best")
    lm_weights: list[float] = param([0.5, 1.0, 2.0, 3.0], minimum=0.0, help="LM weights tried on tune_split")
    word_scores: list[float] = param([-1.0, 0.0, 1.0], help="per-word scores tried on tune_split")
    tune_split: str = param("dev", help="split on which lm_weight and word_score are chosen (lowest WER)")
    splits: list[str] = param(["test", "test_open"], help="splits scored with the chosen settings")
    warp_factors: list[float] = param(
        [0.95, 1.0, 1.05], minimum=0.5, maximum=2.0,
        help="test-time warping: resampling factors whose posteriors are averaged "
             "(s6damon/decode/warp.py); each model and split is also scored so, greedy and with the beam "
             "search (decoders greedy_warp, beam_lm_warp), at one forward pass per factor. Must hold 1.0; "
             "[1.0] = off")
    adapt: AdaptParams = dataclasses.field(default_factory=AdaptParams)
    speaker_adapt: SpeakerAdaptParams = dataclasses.field(default_factory=SpeakerAdaptParams)
    batch_seconds: float = param(120.0, minimum=1.0, help="padded audio per emission batch")
    jobs: int = param(2, minimum=1, help="processes searching the tuning grid in parallel")

    def check(self) -> None:
        for key in ("models", "lm_weights", "word_scores", "splits"):
            if not getattr(self, key):
                raise ParamsError(f"params: 'decode.{key}' must not be empty")
        try:
            check_factors(self.warp_factors)
        except ValueError as err:
            raise ParamsError(f"params: 'decode.warp_factors': {err}") from None
        if self.adapt.steps and not self.adapt.models:
            raise ParamsError("params: 'decode.adapt.models' must not be empty while 'decode.adapt.steps' > 0 "
                              "(set steps to 0 to turn adaptation off)")
        if self.speaker_adapt.epochs and not self.speaker_adapt.models:
            raise ParamsError("params: 'decode.speaker_adapt.models' must not be empty while "
                              "'decode.speaker_adapt.epochs' > 0 (set epochs to 0 to turn it off)")
        if self.tune_split in self.splits:
            raise ParamsError(f"params: 'decode.tune_split' ({self.tune_split!r}) must not be one of "
                              "'decode.splits': settings are chosen on a split that is not scored")


def check_factors(factors: Sequence[float]) -> list[float]:
    """Test-time warp factors (:mod:`s6damon.decode.warp`) as floats, validated: positive,
    distinct, 1.0 (the unwarped copy) among them. Kept here, free of torch, so loading params
    does not import the decoder.

    Raises:
        ValueError: naming what is wrong.
    """
    out = [float(f) for f in factors]
    if not out or any(f <= 0 for f in out):
        raise ValueError(f"warp factors must be positive and not empty, got {list(factors)}")
    if len(set(out)) != len(out):
        raise ValueError(f"warp factors must be distinct, got {list(factors)}")
    if 1.0 not in out:
        raise ValueError(f"warp factors must include 1.0 (the unwarped input sets the frame count), got {out}")
    return out
