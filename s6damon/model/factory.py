"""Build, load and save wav2vec 2.0 / HuBERT CTC models as Hugging Face folders.

A model folder is a plain Hugging Face checkpoint (``config.json``, ``model.safetensors``)
plus our tokenizer (``vocab.json`` …) and a feature-extractor config, so it loads with
``Wav2Vec2ForCTC.from_pretrained`` anywhere, and :func:`load_ctc_model` loads any local
wav2vec2/HuBERT folder — finetuned, pretraining-only or bare encoder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import (
    HubertConfig,
    HubertForCTC,
    PreTrainedModel,
    Wav2Vec2Config,
    Wav2Vec2CTCTokenizer,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForCTC,
    Wav2Vec2ForPreTraining,
)

from s6damon.config.model import ModelParams
from s6damon.errors import InputError
from s6damon.io import atomic_path
from s6damon.model.contiguous_conv import use_contiguous_conv_layers
from s6damon.model.frames import SAMPLE_RATE
from s6damon.model.vocab import build_tokenizer, build_vocab

log = logging.getLogger(__name__)

#: model_type in config.json → (config class, CTC class)
_FAMILIES: dict[str, tuple[type, type[PreTrainedModel]]] = {
    "wav2vec2": (Wav2Vec2Config, Wav2Vec2ForCTC),
    "hubert": (HubertConfig, HubertForCTC),
}


class CheckpointError(InputError, ValueError):
    """A model folder is missing, incomplete, corrupt or of an unsupported family."""


def read_checkpoint_json(path: str | Path, missing: str = "missing") -> Any:
    """The contents of a JSON file inside a model folder.

    Raises:
        CheckpointError: the file is absent (``"<path>: <missing>"``) or not valid JSON; the
            message names the file.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: {missing}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from err


def build_config(m: ModelParams, vocab_size: int, **overrides: Any) -> Wav2Vec2Config:
    """Hugging Face config of the tiny wav2vec 2.0 model described by ``m``.

    Args:
        m: model shape.
        vocab_size: CTC output size (blank included, id 0 = pad = blank).
        **overrides: further ``Wav2Vec2Config`` fields (e.g. SpecAugment settings).
    """
    kw: dict[str, Any] = dict(
        vocab_size=vocab_size, pad_token_id=0, bos_token_id=None, eos_token_id=None,
        hidden_size=m.hidden_size, num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads,
        intermediate_size=m.intermediate_size,
        conv_dim=list(m.conv_dim), conv_kernel=list(m.conv_kernel), conv_stride=list(m.conv_stride),
        # with pre-LN the conv encoder uses LayerNorm in every layer, which is also what makes
        # padded batches + attention masks exact (GroupNorm would mix padding into statistics)
        feat_extract_norm="layer" if m.stable_layer_norm else "group",
        do_stable_layer_norm=m.stable_layer_norm,
        num_conv_pos_embeddings=m.conv_pos_kernel, num_conv_pos_embedding_groups=m.conv_pos_groups,
        hidden_dropout=m.hidden_dropout, attention_dropout=m.attention_dropout,
        activation_dropout=m.activation_dropout, feat_proj_dropout=m.feat_proj_dropout,
        final_dropout=m.final_dropout, layerdrop=m.layerdrop,
        codevector_dim=m.codevector_dim, proj_codevector_dim=m.proj_codevector_dim,
        num_codevector_groups=m.num_codevector_groups, num_codevectors_per_group=m.num_codevectors_per_group,
        ctc_loss_reduction="mean", ctc_zero_infinity=True,
        # masked_spec_embed only exists when a mask prob is > 0 at construction; keep it
        # always so any folder can later be finetuned with SpecAugment on
        mask_time_prob=0.05, mask_time_length=5,
    )
    kw.update(overrides)
    return Wav2Vec2Config(**kw)


def build_ctc_model(m: ModelParams, tokenizer: Wav2Vec2CTCTokenizer | None = None, **overrides: Any) -> Wav2Vec2ForCTC:
    """A randomly initialised tiny CTC model (the "scratch" baseline)."""
    tokenizer = tokenizer or build_tokenizer()
    return use_contiguous_conv_layers(Wav2Vec2ForCTC(build_config(m, len(tokenizer), **overrides)))


def feature_extractor() -> Wav2Vec2FeatureExtractor:
    """The waveform preprocessing every model folder declares (zero-mean unit-var, 16 kHz)."""
    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                    do_normalize=True, return_attention_mask=True)


def _read_config(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: model folder not found")
    cfg_file = folder / "config.json"
    cfg = read_checkpoint_json(cfg_file, f"missing; {folder} is not a Hugging Face model folder")
    if cfg.get("model_type") not in _FAMILIES:
        raise CheckpointError(f"{cfg_file}: model_type {cfg.get('model_type')!r} is not one of {sorted(_FAMILIES)}")
    if not any((folder / f).is_file() for f in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")):
        raise CheckpointError(f"{folder}: no weights file (model.safetensors or pytorch_model.bin)")
    return cfg


def _load_tokenizer(folder: Path) -> Wav2Vec2CTCTokenizer | None:
    if not (folder / "vocab.json").is_file():
        return None
    try:
        return Wav2Vec2CTCTokenizer.from_pretrained(str(folder))
    except Exception as err:  # tokenizers raise many types on bad files
        raise CheckpointError(f"{folder / 'vocab.json'}: cannot load the tokenizer ({err})") from err


def load_ctc_model(folder: str | Path, *, own_vocab: bool = False, **overrides: Any
                   ) -> tuple[PreTrainedModel, Wav2Vec2CTCTokenizer]:
    """Load any local wav2vec 2.0 or HuBERT folder as a CTC model.

    A finetuned CTC folder keeps its head and tokenizer. A pretraining-only checkpoint
    (``Wav2Vec2ForPreTraining``, bare ``Wav2Vec2Model``/``HubertModel``) gets a fresh CTC head
    sized to our character vocabulary.

    Args:
        folder: the checkpoint folder.
        own_vocab: force our character vocabulary: a CTC head over another vocabulary is
            replaced by a fresh one (what finetuning wants).
        **overrides: config fields to override (SpecAugment, dropout …).

    Returns:
        ``(model, tokenizer)``; the model is in eval mode on the CPU.

    Raises:
        CheckpointError: naming the folder or file that is missing or corrupt.
    """
    folder = Path(folder)
    _quiet_hf()
    cfg = _read_config(folder)
    config_cls, ctc_cls = _FAMILIES[cfg["model_type"]]
    is_ctc = any(a.endswith("ForCTC") for a in cfg.get("architectures") or [])
    tokenizer = _load_tokenizer(folder) if is_ctc else None
    if is_ctc and own_vocab and (tokenizer.get_vocab() if tokenizer else None) != build_vocab():
        log.warning("%s: vocabulary differs from ours; the CTC head is re-initialised", folder)
        tokenizer, is_ctc = None, False
    if tokenizer is None and is_ctc and cfg.get("vocab_size") != len(build_vocab()):
        raise CheckpointError(f"{folder}: CTC model without vocab.json and with vocab_size "
                              f"{cfg.get('vocab_size')} != ours; cannot decode it (pass own_vocab=True to finetune it)")
    tokenizer = tokenizer or build_tokenizer()
    kw = dict(overrides)
    if not is_ctc:
        kw.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                  ctc_loss_reduction="mean", ctc_zero_infinity=True)
        # the fresh head needs masked_spec_embed to exist if SpecAugment is used later
        kw.setdefault("mask_time_prob", max(cfg.get("mask_time_prob", 0.0), 0.05))
    try:
        config = config_cls.from_pretrained(str(folder), **kw)
        model = ctc_cls.from_pretrained(str(folder), config=config, ignore_mismatched_sizes=not is_ctc)
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(f"{folder}: cannot load the weights ({type(err).__name__}: {err})") from err
    use_contiguous_conv_layers(model)
    model.eval()
    return model, tokenizer


def unwrap(model: torch.nn.Module) -> PreTrainedModel:
    """The Hugging Face model inside a DDP wrapper (or the model itself)."""
    return getattr(model, "module", model)


def _quiet_hf() -> None:
    # HF's per-shard progress bars would flood logs of every save/load
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def save_model(model: torch.nn.Module, tokenizer: Wav2Vec2CTCTokenizer, folder: str | Path,
               extra: Callable[[Path], None] | None = None) -> Path:
    """Atomically write a loadable Hugging Face folder (weights, config, tokenizer, preprocessor).

    The folder appears complete or not at all: it is written beside ``folder`` and renamed.
    ``extra``, if given, writes further files into the folder before the rename.
    """
    folder = Path(folder)
    _quiet_hf()
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        unwrap(model).save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        feature_extractor().save_pretrained(str(tmp))
        if extra is not None:
            extra(tmp)
    return folder


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def load_pretraining_model(folder: str | Path, **overrides: Any) -> Wav2Vec2ForPreTraining:
    """Load a wav2vec 2.0 folder for (continued) SSL pretraining."""
    folder = Path(folder)
    cfg = _read_config(folder)
    if cfg["model_type"] != "wav2vec2":
        raise CheckpointError(f"{folder}: SSL pretraining supports wav2vec2 models, not {cfg['model_type']!r}")
    try:
        model = Wav2Vec2ForPreTraining.from_pretrained(str(folder), **overrides)
    except Exception as err:
        raise CheckpointError(f"{folder}: cannot load the weights ({type(err).__name__}: {err})") from err
    return use_contiguous_conv_layers(model)
