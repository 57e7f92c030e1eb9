"""Parameters of the model and of the ``pretrain`` and ``finetune`` stages."""

from __future__ import annotations

import dataclasses
from typing import Literal

from s6damon.config.schema import ParamsError, param


@dataclasses.dataclass(frozen=True)
class ModelParams:
    """Shape of the default tiny wav2vec 2.0 model (ignored where ``init`` is a checkpoint)."""

    init: str = param("", help="local Hugging Face checkpoint folder; empty = pretrain the tiny model")
    hidden_size: int = param(256, minimum=8, help="transformer width")
    num_layers: int = param(4, minimum=1, help="transformer layers")
    num_heads: int = param(4, minimum=1, help="attention heads per layer")
    intermediate_size: int = param(1024, minimum=8, help="FFN inner width")
    conv_dim: list[int] = param([32, 64, 128, 128, 128, 128, 128], minimum=1,
                                help="channels of each conv feature-encoder layer")
    conv_kernel: list[int] = param([10, 3, 3, 3, 3, 2, 2], minimum=1, help="kernel of each conv layer")
    conv_stride: list[int] = param([5, 2, 2, 2, 2, 2, 2], minimum=1,
                                   help="stride of each conv layer (product 320 = one token per 20 ms)")
    conv_pos_kernel: int = param(64, minimum=2, help="kernel of the convolutional position embedding")
    conv_pos_groups: int = param(16, minimum=1, help="groups of the convolutional position embedding")
    stable_layer_norm: bool = param(True, help="pre-LN transformer (wav2vec2-large style); trains more stably")
    hidden_dropout: float = param(0.1, minimum=0.0, maximum=1.0, help="dropout in transformer layers")
    attention_dropout: float = param(0.0, minimum=0.0, maximum=1.0,
                                     help="dropout on attention weights (> 0 leaves PyTorch's fused CPU kernel)")
    activation_dropout: float = param(0.0, minimum=0.0, maximum=1.0, help="dropout inside the FFN")
    feat_proj_dropout: float = param(0.1, minimum=0.0, maximum=1.0, help="dropout after the feature projection")
    final_dropout: float = param(0.1, minimum=0.0, maximum=1.0, help="dropout before the CTC head")
    layerdrop: float = param(0.0, minimum=0.0, maximum=1.0, help="probability of skipping a whole layer")
    codevector_dim: int = param(128, minimum=1, help="SSL quantiser: dimension of a code vector")
    proj_codevector_dim: int = param(128, minimum=1, help="SSL: dimension of the contrastive projection")
    num_codevector_groups: int = param(2, minimum=1, help="SSL quantiser: codebook groups G")
    num_codevectors_per_group: int = param(64, minimum=2, help="SSL quantiser: entries per codebook V")
    device: Literal["cpu", "cuda", "auto"] = param("cpu", help="training device; auto = cuda if available")

    def check(self) -> None:
        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride):
            raise ParamsError("params: 'model.conv_dim', 'model.conv_kernel' and 'model.conv_stride' must have equal lengths")
        if self.hidden_size % self.num_heads:
            raise ParamsError("params: 'model.hidden_size' must be divisible by 'model.num_heads'")
        if self.codevector_dim % self.num_codevector_groups:
            raise ParamsError("params: 'model.codevector_dim' must be divisible by 'model.num_codevector_groups'")
        if self.hidden_size % self.conv_pos_groups:
            raise ParamsError("params: 'model.hidden_size' must be divisible by 'model.conv_pos_groups'")


@dataclasses.dataclass(frozen=True)
class HubertParams:
    """The masked-prediction objective (``pretrain.objective: hubert``; HuBERT's first
    iteration: targets are k-means clusters of MFCC frames; ``s6damon/ssl/hubert.py``)."""

    clusters: int = param(100, minimum=2, help="k-means clusters = prediction targets (HuBERT: 100 on MFCCs)")
    kmeans_minutes: float = param(30.0, minimum=0.01,
                                  help="audio (minutes, drawn at random from the pretraining audio) "
                                       "the centroids are fitted on")
    kmeans_iters: int = param(100, minimum=1, help="most Lloyd iterations of the k-means fit")
    final_dim: int = param(128, minimum=1, help="dimension of the projection compared with the cluster embeddings")
    temperature: float = param(0.1, minimum=0.001, help="softmax temperature of the cosine-similarity logits")
    unmasked_weight: float = param(0.0, minimum=0.0,
                                   help="weight of the loss on unmasked tokens (HuBERT: 0, masked tokens only)")


@dataclasses.dataclass(frozen=True)
class PretrainParams:
    """Self-supervised pretraining: wav2vec 2.0's contrastive + diversity loss, or HuBERT-style
    masked prediction of MFCC clusters (``objective``)."""

    enabled: bool = param(True, help="false = skip SSL; finetune starts from random weights")
    objective: Literal["wav2vec2", "hubert"] = param(
        "wav2vec2", help="wav2vec2: contrastive + codebook diversity; hubert: masked prediction of k-means "
                         "clusters of MFCC frames (settings in pretrain.hubert)")
    splits: list[str] = param(["train", "unlabeled"],
                              help="manifest splits whose audio is pretrained on: train and/or unlabeled "
                                   "(prepare.synth.unlabeled_voices); never an evaluation split")
    steps: int = param(2000, minimum=0, help="optimiser steps")
    batch_seconds: float = param(60.0, minimum=1.0, help="audio seconds per batch (all ranks together)")
    max_seconds: float = param(15.0, minimum=0.5, help="longer utterances are randomly cropped to this")
    learning_rate: float = param(5e-4, minimum=0.0, help="peak learning rate")
    warmup_steps: int = param(200, minimum=0, help="linear warmup steps")
    schedule: Literal["linear", "cosine", "constant"] = param("linear", help="decay after warmup")
    weight_decay: float = param(0.01, minimum=0.0)
    grad_clip: float = param(5.0, minimum=0.0, help="max gradient norm; 0 = no clipping")
    speed_perturb: list[float] = param([0.85, 1.2], minimum=0.5, maximum=2.0,
                                       help="[low, high] random speed/pitch factor per utterance; [1, 1] = off")
    mask_time_prob: float = param(0.5, minimum=0.0, maximum=1.0, help="share of tokens starting a mask span")
    mask_time_length: int = param(5, minimum=1, help="mask span length in tokens")
    num_negatives: int = param(50, minimum=1, help="distractors per masked token")
    diversity_loss_weight: float = param(0.1, minimum=0.0)
    contrastive_temperature: float = param(0.1, minimum=0.001)
    gumbel_temperature: list[float] = param([2.0, 0.5], minimum=0.01,
                                            help="Gumbel softmax temperature [start, end], decayed over the run")
    feature_grad_mult: float = param(0.1, minimum=0.0, maximum=1.0,
                                     help="scale of the gradient into the conv feature encoder (wav2vec 2.0: 0.1)")
    precision: Literal["auto", "float32", "bfloat16"] = param(
        "float32", help="training forward pass: float32, or bfloat16 autocast (weights and optimiser stay "
                        "float32); auto = bfloat16 where the hardware has native bfloat16, else float32")
    attention: Literal["auto", "sdpa", "eager"] = param(
        "sdpa", help="attention kernel of the training forward pass (as finetune.attention): auto = eager "
                     "under bfloat16 autocast on a CPU, else sdpa")
    pos_conv: Literal["auto", "conv", "fft"] = param(
        "conv", help="positional convolution of the training forward pass (as finetune.pos_conv): auto = fft "
                     "on a CPU, else conv")
    log_every: int = param(20, minimum=1, help="steps between history entries")
    eval_every: int = param(200, minimum=0, help="steps between SSL losses on the dev split's audio (its voices "
                                                 "seen and unseen in the pool, apart) and at the end; 0 = never")
    checkpoint_every: int = param(200, minimum=1, help="steps between resumable checkpoints")
    progress: bool = param(True, help="show tqdm progress bars")
    hubert: HubertParams = param(HubertParams(), help="settings of objective hubert (unused by wav2vec2)")

    def check(self) -> None:
        bad = sorted(set(self.splits) - {"train", "unlabeled"})
        if bad or not self.splits:
            raise ParamsError(f"params: 'pretrain.splits' must be a non-empty subset of [train, unlabeled], got {self.splits}")


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Waveform augmentation of the training utterances after speed perturbation: a random
    equaliser and coloured noise (``s6damon/train/augment.py``). Both are off in this dataclass
    (a finetune built without params trains unaugmented); ``params.yaml`` turns the equaliser
    on for half the utterances (docs/experiments/recipe.md, "a random equaliser")."""

    eq_prob: float = param(0.0, minimum=0.0, maximum=1.0,
                           help="share of training utterances (per step) passed through a random equaliser")
    eq_bands: int = param(3, minimum=1, maximum=10, help="peaking filters in series per equalised utterance")
    eq_gain_db: float = param(10.0, minimum=0.0, maximum=24.0, help="each band's gain is uniform in +-this (dB)")
    eq_freq_hz: list[float] = param([150.0, 6000.0], minimum=20.0, maximum=7900.0,
                                    help="[low, high] of the bands' log-uniform centre frequencies")
    eq_q: list[float] = param([0.5, 2.0], minimum=0.1, maximum=10.0, help="[low, high] of the bands' Q")
    noise_prob: float = param(0.0, minimum=0.0, maximum=1.0,
                              help="share of training utterances (per step) given additive noise")
    noise_snr_db: list[float] = param([10.0, 40.0], minimum=-10.0, maximum=80.0,
                                      help="[low, high] of the uniform signal-to-noise ratio (dB)")
    noise_exponents: list[float] = param([0.0, 1.0, 2.0], minimum=0.0, maximum=3.0,
                                         help="spectral slopes the noise is drawn from: power ~ 1/f^x "
                                              "(0 white, 1 pink, 2 brown)")

    def check(self) -> None:
        for name in ("eq_freq_hz", "eq_q", "noise_snr_db", "noise_exponents"):
            if not getattr(self, name):
                raise ParamsError(f"params: 'augment.{name}' (of a finetune section) must not be empty")


@dataclasses.dataclass(frozen=True)
class MixStyleParams:
    """MixStyle in the conv feature encoder (``s6damon/train/mixstyle.py``): in a share of the
    training steps each utterance's per-channel feature statistics after the listed conv layers
    are mixed with another utterance's of the batch. Off (``prob`` 0) by default."""

    prob: float = param(0.0, minimum=0.0, maximum=1.0,
                        help="share of training steps that mix; 0 = off (no hooks, training unchanged)")
    alpha: float = param(0.1, minimum=0.01, maximum=100.0,
                         help="mixing weights ~ Beta(alpha, alpha): small alpha keeps most weights near 0 or 1")
    layers: list[int] = param([0, 1, 2], minimum=0,
                              help="0-based conv encoder layers after which the statistics are mixed")

    def check(self) -> None:
        if not self.layers:
            raise ParamsError("params: 'mixstyle.layers' (of a finetune section) must not be empty")


@dataclasses.dataclass(frozen=True)
class AverageParams:
    """Weight averaging over the last part of finetuning (``s6damon/train/averaging.py``): the
    saved model holds the average instead of the last step's weights. Off by default."""

    kind: Literal["none", "ema", "uniform"] = param(
        "none", help="none = the last step's weights; ema = exponential moving average; uniform = the mean "
                     "of the weights at every `every`-th step (stochastic weight averaging)")
    start_fraction: float = param(0.5, minimum=0.0, maximum=1.0,
                                  help="averaging starts after this share of the steps")
    ema_decay: float = param(0.999, minimum=0.0, maximum=1.0, help="ema: decay per averaged step")
    every: int = param(1, minimum=1, help="average the weights every this many steps")


@dataclasses.dataclass(frozen=True)
class FinetuneParams:
    """CTC finetuning on characters (and the from-scratch baseline)."""

    steps: int = param(2000, minimum=0, help="optimiser steps")
    batch_seconds: float = param(60.0, minimum=1.0, help="audio seconds per batch (all ranks together)")
    max_seconds: float = param(30.0, minimum=0.5, help="utterances longer than this are skipped in training")
    learning_rate: float = param(1e-3, minimum=0.0, help="peak learning rate")
    warmup_steps: int = param(200, minimum=0, help="linear warmup steps")
    schedule: Literal["linear", "cosine", "constant", "tri_stage"] = param(
        "cosine", help="decay after warmup (tri_stage: hold then exponential decay, as in wav2vec 2.0)")
    hold_fraction: float = param(0.4, minimum=0.0, maximum=1.0, help="tri_stage: share of steps held at peak")
    final_lr_scale: float = param(0.05, minimum=0.0, maximum=1.0, help="final LR as a share of the peak")
    weight_decay: float = param(0.01, minimum=0.0)
    grad_clip: float = param(5.0, minimum=0.0, help="max gradient norm; 0 = no clipping")
    speed_perturb: list[float] = param([0.85, 1.2], minimum=0.5, maximum=2.0,
                                       help="[low, high] random speed/pitch factor per utterance; [1, 1] = off")
    freeze_feature_encoder_steps: int = param(0, minimum=0, help="conv encoder frozen for this many steps")
    freeze_feature_encoder_from: int | None = param(
        None, minimum=0, help="late freezing: the conv encoder is frozen from this step to the end, so the "
                              "rest of training skips its backward (null = it trains to the end)")
    feature_cache: bool = param(
        False, help="run the frozen conv encoder once per utterance and speed factor before training and "
                    "train on its cached output (needs freeze_feature_encoder_steps >= steps; the finetune "
                    "and salad stages; s6damon/train/feature_cache.py)")
    feature_cache_speeds: int = param(5, minimum=1, help="feature cache: speed factors spread evenly over "
                                                         "speed_perturb, one drawn per utterance and step")
    precision: Literal["auto", "float32", "bfloat16"] = param(
        "float32", help="training forward pass: float32, or bfloat16 autocast (weights, optimiser and the "
                        "CTC loss stay float32); auto = bfloat16 where the hardware has native bfloat16 "
                        "(AVX512-BF16/AMX CPUs, recent GPUs), else float32; evaluation is always float32")
    attention: Literal["auto", "sdpa", "eager"] = param(
        "sdpa", help="attention kernel of the training forward pass: sdpa = PyTorch's fused "
                     "scaled-dot-product attention, eager = matmul + softmax + matmul (the same math, "
                     "other rounding); auto = eager under bfloat16 autocast on a CPU, where the fused "
                     "kernel's backward is slow, else sdpa (s6damon/hardware.py); evaluation always uses sdpa")
    pos_conv: Literal["auto", "conv", "fft"] = param(
        "conv", help="positional convolution of the training forward pass: conv = the direct grouped "
                     "convolution, fft = the same convolution through the FFT in float32 (other rounding; "
                     "s6damon/model/fft_pos_conv.py); auto = fft on a CPU, where the direct one is slow at "
                     "the corpus's lengths, else conv; evaluation and export always use conv")
    distill_weight: float = param(
        0.0, minimum=0.0, help="weight of frame-level distillation from a frozen teacher (the finetuned dense "
                               "model) added to the CTC loss; 0 = off (see s6damon/train/distill.py)")
    distill_temperature: float = param(1.0, minimum=0.1, help="softening of teacher and student distributions")
    distill_hidden_weight: float = param(
        0.0, minimum=0.0, help="weight of layer-to-layer distillation from the same teacher added to the loss: "
                               "the transformer's input and every layer's output pulled to the teacher's "
                               "(L1 + cosine distance, DistilHuBERT/DPHuBERT); 0 = off; safari.finetune only, "
                               "where student and teacher share the frame grid (s6damon/train/distill.py)")
    interctc_weight: float = param(
        0.0, minimum=0.0, maximum=1.0,
        help="intermediate CTC: the loss is (1 - w) * CTC of the last layer + w * mean CTC of "
             "interctc_layers' outputs through the same final norm and head; 0 = off "
             "(s6damon/train/interctc.py; the finetune stage only)")
    interctc_layers: list[int] = param([2], minimum=1, help="1-based transformer layers below the last "
                                                           "whose outputs get the intermediate CTC loss")
    token_merge_ratio: float = param(
        0.0, minimum=0.0, maximum=0.9,
        help="share of the tokens evenly merged into their kept neighbours (averaged) between the feature "
             "projection and the transformer while training, so the transformer learns from a coarser "
             "sequence; 0 = off (s6damon/train/token_merge.py; the finetune stage only)")
    token_merge_until: float = param(
        0.75, minimum=0.0, maximum=1.0,
        help="share of the steps, from the first, trained with token_merge_ratio's merging; the rest trains on "
             "every token, so the saved model is read without merging (a model trained with merging to the end "
             "reads unmerged input much worse: test WER 0.70-0.75 against 0.49-0.51 merged, three seeds)")
    token_merge_every: int = param(
        1, minimum=1, help="within token_merge_until, merge on one step in this many (2 = merged and plain steps "
                           "alternate, so the model learns to read both)")
    augment: AugmentParams = param(AugmentParams(), help="waveform augmentation of the training utterances "
                                                         "(random equaliser, coloured noise); off by default")
    mixstyle: MixStyleParams = param(MixStyleParams(), help="MixStyle in the conv feature encoder (mixing "
                                                             "utterances' channel statistics); off by default")
    average: AverageParams = param(AverageParams(), help="weight averaging over the last part of training "
                                                         "(EMA or uniform); off by default")
    mask_time_prob: float = param(0.05, minimum=0.0, maximum=1.0, help="SpecAugment: share of tokens starting a time mask")
    mask_time_length: int = param(5, minimum=1, help="SpecAugment: time mask length in tokens")
    mask_feature_prob: float = param(0.0, minimum=0.0, maximum=1.0, help="SpecAugment: share of channels masked")
    mask_feature_length: int = param(16, minimum=1, help="SpecAugment: channel mask width")
    eval_every: int = param(500, minimum=1, help="steps between dev-set evaluations (best-by-dev-WER kept)")
    eval_batch_seconds: float = param(120.0, minimum=1.0, help="audio seconds per decoding batch")
    log_every: int = param(20, minimum=1, help="steps between history entries")
    checkpoint_every: int = param(200, minimum=1, help="steps between resumable checkpoints")
    progress: bool = param(True, help="show tqdm progress bars")

    @property
    def distills(self) -> bool:
        """Whether training reads a teacher (either distillation term on)."""
        return self.distill_weight > 0 or self.distill_hidden_weight > 0
