"""Parameters of the ``align`` stage (forced alignment).

``backend`` picks the aligner (``s6damon.align.get_aligner``); the nested sections hold
each backend's own knobs, e.g. ``dvc exp run -S align.kaldi.mono_iters=20``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from s6damon.config.schema import ParamsError, param


@dataclasses.dataclass(frozen=True)
class KaldiAlignParams:
    """Kaldi GMM-HMM training and alignment (the ``kaldi`` backend), Kaldi's defaults."""

    num_ceps: int = param(13, minimum=1, maximum=40, help="MFCC coefficients (x3 with deltas)")
    frame_shift_ms: float = param(10.0, minimum=1.0, maximum=50.0, help="feature frame shift")
    frame_length_ms: float = param(25.0, minimum=5.0, maximum=100.0, help="feature window length")
    dither: float = param(1.0, minimum=0.0, help="Gaussian noise std added to samples (16-bit scale), Kaldi's --dither")
    cmvn: Literal["speaker", "utterance"] = param(
        "speaker", help="cepstral normalisation statistics per speaker (items without one: per utterance) or per utterance")
    cmvn_variance: bool = param(True, help="also normalise the variance (CMVN), not only the mean")
    nonsil_states: int = param(3, minimum=1, maximum=10, help="HMM states per speech phone")
    sil_states: int = param(5, minimum=1, maximum=10, help="HMM states of the silence phone")
    sil_prob: float = param(0.5, minimum=0.01, maximum=0.99, help="prior of optional silence between words")
    mono_iters: int = param(40, minimum=1, maximum=200, help="monophone EM iterations")
    realign_iters: list[int] = param(
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 23, 26, 29, 32, 35, 38], minimum=1,
        help="iterations (1-based) before which the data are realigned with the current model")
    max_gaussians: int = param(1000, minimum=1, help="total Gaussians reached by mixing up")
    boost_silence: float = param(1.25, minimum=0.0, maximum=10.0, help="silence weight boost while training")
    train_beam: float = param(6.0, minimum=1.0, help="Viterbi beam of training realignment")
    train_retry_beam: float = param(
        400.0, minimum=1.0,
        help="retry beam of training realignment; wide, because early models (flat start) need it "
             "and an utterance that fails keeps its equal alignment")
    beam: float = param(10.0, minimum=1.0, help="Viterbi beam of the final alignment")
    retry_beam: float = param(40.0, minimum=1.0, help="retry beam of the final alignment")
    acoustic_scale: float = param(0.1, minimum=0.001, maximum=10.0, help="acoustic likelihood scale")
    self_loop_scale: float = param(0.1, minimum=0.0, maximum=10.0, help="self-loop log-prob scale")
    transition_scale: float = param(1.0, minimum=0.0, maximum=10.0, help="transition log-prob scale")
    min_gaussian_occupancy: float = param(3.0, minimum=0.0, help="frames a Gaussian needs to be updated")
    mixup_power: float = param(0.2, minimum=0.0, maximum=1.0, help="power allocating Gaussians to states")
    mixup_min_count: float = param(20.0, minimum=0.0, help="frames a Gaussian needs when mixing up")
    perturb_factor: float = param(0.01, minimum=0.0, maximum=1.0, help="mean perturbation when splitting")
    seed: int = param(3, minimum=0, help="seed of the equal-alignment initialisation and of the mix-up's mean perturbation")

    def check(self) -> None:
        if self.frame_length_ms < self.frame_shift_ms:
            raise ParamsError("params: 'align.kaldi.frame_length_ms' must be >= frame_shift_ms")


@dataclasses.dataclass(frozen=True)
class PocketsphinxAlignParams:
    """Pretrained US-English pocketsphinx alignment (the ``pocketsphinx`` backend)."""

    beam: float = param(1e-100, minimum=0.0, maximum=1.0, help="HMM beam (smaller is wider)")
    wbeam: float = param(1e-80, minimum=0.0, maximum=1.0, help="word-exit beam")
    pbeam: float = param(1e-100, minimum=0.0, maximum=1.0, help="phone-transition beam")
    retries: int = param(2, minimum=0, maximum=10, help="retries with beams widened by retry_factor")
    retry_factor: float = param(1e-20, minimum=0.0, maximum=1.0, help="beam multiplier per retry")
    frate: int = param(100, minimum=50, maximum=200, help="frames per second (model's rate)")


@dataclasses.dataclass(frozen=True)
class MfaAlignParams:
    """Montreal Forced Aligner's command line (the ``mfa`` backend)."""

    command: str = param("mfa", help="the mfa executable (name on PATH or full path)")
    pretrained_model: str = param("", help="acoustic model name/path for 'mfa align'; empty = 'mfa train' on the corpus")
    extra_args: list[str] = param([], help="extra arguments passed to mfa train/align")
    timeout_s: float = param(7200.0, minimum=1.0, help="wall-clock limit of one mfa run")


@dataclasses.dataclass(frozen=True)
class AlignParams:
    backend: Literal["kaldi", "pocketsphinx", "mfa"] = "kaldi"
    compare_backends: list[str] = param(["pocketsphinx"], help="extra backends run for the metrics")
    out_dir: str = param("data/align")
    min_pause_ms: float = param(100.0, minimum=0.0, help="silence at least this long is a pause")
    g2p: bool = param(True, help="pronounce out-of-dictionary words with flite's t2p (else error)")
    max_pronunciations: int = param(3, minimum=1, maximum=20, help="CMUdict variants kept per word")
    jobs: int = param(2, minimum=1, maximum=256, help="parallel processes")
    kaldi: KaldiAlignParams = dataclasses.field(default_factory=KaldiAlignParams)
    pocketsphinx: PocketsphinxAlignParams = dataclasses.field(default_factory=PocketsphinxAlignParams)
    mfa: MfaAlignParams = dataclasses.field(default_factory=MfaAlignParams)

    def check(self) -> None:
        for b in self.compare_backends:
            if b not in ("kaldi", "pocketsphinx", "mfa"):
                raise ParamsError(f"params: 'align.compare_backends' has unknown backend {b!r} "
                                  "(choose from kaldi, pocketsphinx, mfa)")
