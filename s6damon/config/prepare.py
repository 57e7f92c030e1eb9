"""Parameters of the ``prepare`` stage (corpus building and validation)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from s6damon.config.schema import ParamsError, param


@dataclasses.dataclass(frozen=True)
class SynthParams:
    """The embedded, synthesised default corpus (see ``s6damon.corpus.plan``)."""

    minutes: float = param(60.0, minimum=0.1, help="approximate total audio, all splits")
    train_voices: list[str] = param(
        ["flite:awb", "flite:kal16", "festival:kal", "festival:ked", "espeak:en-us+m3",
         "espeak:en+m1", "espeak:en-029+m5", "espeak:en-gb-x-rp+m2", "espeak:en-us+f2",
         "espeak:en+f4", "espeak:en-gb-scotland+f1", "espeak:en-us+f3"],
        help="voices of the train split (flite:<v>, festival:<v>, espeak:<lang>+<variant>, "
             "pico:en-US / pico:en-GB, piper:joe, kokoro:<v> (28 English Kokoro-82M voices, "
             "e.g. kokoro:af_heart), and festival's non-English voices reading English: "
             "festival:it-lp, it-pc, ca-ona, cs-dita, cs-machac, fi-lj, fi-mv; Pico, Piper, "
             "Kokoro and those give no timings, so no ground truth)")
    train_voice_weights: dict[str, int] = param(
        {"flite:awb": 3, "flite:kal16": 3, "festival:kal": 3, "festival:ked": 3}, minimum=1,
        help="relative share of train utterances per voice (unlisted voices weigh 1); the voices "
             "built from recordings of real people are weighted up, as the unseen test voices are")
    dev_voices: list[str] = param(["espeak:en-gb-x-gbclan+m6"],
                                  help="held-out voices of the dev split (beside held-out train utterances)")
    test_voices: list[str] = param(["flite:slt", "festival:slt-hts", "flite:rms", "espeak:en-us+f5",
                                    "espeak:en+m7"],
                                   help="unseen voices of test and test_open; no real person shared with train/dev")
    unlabeled_voices: list[str] = param(
        [], help="voices of the 'unlabeled' split: audio for SSL pretraining only, never finetuned on "
                 "(any voice train_voices accepts; no real person shared with dev_voices or test_voices)")
    unlabeled_minutes: float = param(0.0, minimum=0.0,
                                     help="approximate audio of the unlabeled split, on top of 'minutes'")
    dev_share: float = param(0.1, minimum=0.0, maximum=0.5, help="share of the audio in the dev split")
    test_share: float = param(0.1, minimum=0.0, maximum=0.5, help="share of the audio in test (commands)")
    test_open_share: float = param(0.05, minimum=0.0, maximum=0.5,
                                   help="share of the audio in test_open (open-vocabulary sentences)")
    dev_unseen_voice_share: float = param(0.5, minimum=0.0, maximum=1.0,
                                          help="share of dev utterances spoken by dev_voices (rest: train voices)")
    open_vocab_train_share: float = param(0.2, minimum=0.0, maximum=1.0,
                                          help="share of train/dev utterances that are fortune sentences")
    pitch_up_semitones: list[float] = param([2.0, 4.0, 6.0], minimum=-12.0, maximum=12.0,
                                            help="pitch shifts giving male train voices extra (higher) speakers")
    pitch_up_share: float = param(0.4, minimum=0.0, maximum=1.0,
                                  help="share of male-voice train utterances that are pitch-shifted")
    stretch_factors: list[float] = param([0.85, 1.15, 1.3], minimum=0.5, maximum=2.0,
                                         help="duration factors (tempo, pitch kept) for train augmentation")
    stretch_share: float = param(0.2, minimum=0.0, maximum=1.0, help="share of train utterances stretched")
    speed_factors: list[float] = param([0.9, 1.1], minimum=0.5, maximum=2.0,
                                       help="speed factors (tempo and pitch) for train augmentation")
    speed_share: float = param(0.1, minimum=0.0, maximum=1.0, help="share of train utterances speed-changed")
    sentence_min_words: int = param(4, minimum=1, help="fewest words of an open-vocabulary sentence")
    sentence_max_words: int = param(20, minimum=1, help="most words of an open-vocabulary sentence")
    seconds_per_word: float = param(0.25, minimum=0.05, maximum=2.0,
                                    help="speech-rate estimate used only to size the plan")
    shard_size: int = param(100, minimum=1, help="utterances per rendering shard (parallel unit)")

    def check(self) -> None:
        """Refuse voice lists that leak a test speaker into training (same real person)."""
        from s6damon.corpus.synth import voice_info

        try:
            people = {name: {voice_info(v).person for v in getattr(self, name)}
                      for name in ("train_voices", "dev_voices", "test_voices", "unlabeled_voices")}
        except ValueError as err:
            raise ParamsError(f"params: prepare.synth: {err}") from err
        if not self.train_voices or not self.test_voices:
            raise ParamsError("params: prepare.synth.train_voices and test_voices must not be empty")
        for a, b in (("train_voices", "test_voices"), ("dev_voices", "test_voices"),
                     ("train_voices", "dev_voices"), ("unlabeled_voices", "test_voices"),
                     ("unlabeled_voices", "dev_voices")):
            shared = people[a] & people[b]
            if shared:
                raise ParamsError(f"params: prepare.synth.{a} and {b} share the speaker(s) {sorted(shared)}")
        if self.unlabeled_minutes > 0 and not self.unlabeled_voices:
            raise ParamsError("params: 'prepare.synth.unlabeled_minutes' is > 0 but 'prepare.synth.unlabeled_voices' is empty")
        stray = sorted(set(self.train_voice_weights) - set(self.train_voices))
        if stray:
            raise ParamsError(f"params: prepare.synth.train_voice_weights names voices not in train_voices: {stray}")
        if self.sentence_min_words > self.sentence_max_words:
            raise ParamsError("params: prepare.synth.sentence_min_words must be <= sentence_max_words")
        if self.dev_share + self.test_share + self.test_open_share >= 0.9:
            raise ParamsError("params: prepare.synth dev/test/test_open shares leave < 10% for train")


@dataclasses.dataclass(frozen=True)
class LtasParams:
    """Long-term spectrum normalisation of the corpus (``s6damon/corpus/ltas.py``): every
    utterance is filtered once so its average spectral envelope matches the train split's mean.
    Off by default; the models then expect normalised audio (an export folder carries the
    reference and applies it in ``ExportedModel.transcribe``)."""

    enabled: bool = param(False, help="write normalised copies (<out_dir>/wav_ltas) and point the manifest at them")
    floor_db: float = param(30.0, minimum=5.0, maximum=80.0,
                            help="frames this far below the loudest (95th percentile) are not averaged")
    lifter: int = param(16, minimum=1, maximum=128,
                        help="cepstral coefficients kept when smoothing: the envelope, not the pitch harmonics")
    max_gain_db: float = param(12.0, minimum=0.0, maximum=40.0, help="largest boost or cut per frequency bin")
    scope: Literal["utterance", "speaker"] = param(
        "utterance", help="correct each utterance by its own envelope, or by its speaker's mean (keeps its phone content)")


@dataclasses.dataclass(frozen=True)
class PrepareParams:
    source: Literal["synth", "librispeech", "manifest"] = "synth"
    source_path: str = param("", help="folder (librispeech) or CSV/Parquet file (manifest)")
    out_dir: str = param("data/corpus", help="where wavs and the manifest are written")
    sample_rate: int = param(16000, minimum=8000, help="target sample rate; others are resampled")
    on_bad_input: Literal["error", "skip"] = "error"
    dev_speakers: list[str] = param([], help="librispeech: speaker ids put in dev (empty: chosen by seed)")
    test_speakers: list[str] = param([], help="librispeech: speaker ids put in test (empty: chosen by seed)")
    dev_speaker_share: float = param(0.1, minimum=0.0, maximum=0.5,
                                     help="librispeech: share of speakers in dev when dev_speakers is empty")
    test_speaker_share: float = param(0.1, minimum=0.0, maximum=0.5,
                                      help="librispeech: share of speakers in test when test_speakers is empty")
    max_seconds: float = param(30.0, minimum=0.5, help="external audio longer than this is a bad input")
    synth: SynthParams = dataclasses.field(default_factory=SynthParams)
    ltas: LtasParams = dataclasses.field(default_factory=LtasParams)
