"""The exported-model folder: a physically pruned model with its SALAD detector inside.

Layout of ``<folder>/`` (written by :func:`export_model`, read by :func:`load_exported`)::

    config.json, model.safetensors   the pruned dense model; per-layer sizes in the config
                                     (``s6_layer_sizes``, ``conv_dim``, ``num_hidden_layers``)
    vocab.json, tokenizer files,     tokenizer and waveform preprocessing
    preprocessor_config.json
    salad_detector.pt                only with SALAD: the detector (+ its threshold and drop rule)
    ltas.json                        only when the corpus was LTAS-normalised (``prepare.ltas``):
                                     the reference envelope ``transcribe`` equalises raw audio to
    export.json                      {"format", "source", "mask", "salad", "params", ...}
    model.ts, model.onnx,            optional runtimes (:mod:`s6damon.export.runtimes`)
    model.int8.onnx

Usage::

    export_model("models/safari/safari50", "models/export/safari50", salad_dir="models/salad/salad_alignment_0.3")
    exported = load_exported("models/export/safari50")
    exported.transcribe("utt.wav")           # detector → dropping → encoder → greedy CTC
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from s6damon import io
from s6damon.model.factory import (CheckpointError, count_parameters, feature_extractor, load_ctc_model,
                                   read_checkpoint_json)
from s6damon.pruning.masks import StructuredMask, apply_masks, load_mask
from s6damon.pruning.physical import SIZES_KEY, load_pruned, materialise, save_pruned

if TYPE_CHECKING:
    from s6damon.corpus.ltas import RunningEnvelope

FORMAT = "s6damon-export/1"
META_FILE = "export.json"
DETECTOR_FILE = "salad_detector.pt"
SALAD_FILE = "salad.json"
MASK_FILE = "mask.json"
LTAS_FILE = "ltas.json"


def load_salad(salad_dir: str | Path) -> tuple[nn.Module, float, dict[str, Any]]:
    """``(detector, threshold, salad.json contents)`` of a SALAD model folder.

    The threshold is the one ``salad.json`` records for the folder's drop ratio.

    Raises:
        CheckpointError: ``salad.json`` or ``salad_detector.pt`` missing or corrupt (named).
    """
    from s6damon.salad.detector import load_detector

    salad_dir = Path(salad_dir)
    meta_path = salad_dir / SALAD_FILE
    meta = read_checkpoint_json(meta_path, f"missing; {salad_dir} is not a SALAD model folder")
    try:
        threshold = float(meta["threshold"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{meta_path}: no valid 'threshold' ({err})") from err
    detector, _, _ = load_detector(salad_dir / DETECTOR_FILE)
    return detector, threshold, meta


@dataclass
class Reference:
    """The PyTorch model an export is checked against: the masked model and its detector."""

    model: nn.Module
    tokenizer: Any
    mask: StructuredMask | None = None
    detector: nn.Module | None = None
    threshold: float = 0.5
    salad: dict[str, Any] | None = None

    @property
    def merge(self) -> bool:
        """Whether dropped tokens are averaged into the kept ones (``salad.json``'s ``merge``)."""
        return bool((self.salad or {}).get("merge", False))


def load_reference(model_dir: str | Path, mask_json: str | Path | None = None,
                   salad_dir: str | Path | None = None) -> Reference:
    """Load a model folder with its mask applied by hooks (weights unchanged) and its detector.

    Args:
        model_dir: a HF CTC model folder (finetuned, SAFARI-masked or SALAD).
        mask_json: a ``StructuredMask`` JSON; default ``<model_dir>/mask.json`` if present.
        salad_dir: a SALAD folder (``salad.json`` + ``salad_detector.pt``); default
            ``model_dir`` itself when it holds a ``salad.json``.
    """
    model_dir = Path(model_dir)
    model, tokenizer = load_ctc_model(model_dir)
    if mask_json is None and (model_dir / MASK_FILE).is_file():
        mask_json = model_dir / MASK_FILE
    if salad_dir is None and (model_dir / SALAD_FILE).is_file():
        salad_dir = model_dir
    mask = None
    if mask_json is not None:
        mask = load_mask(mask_json)
        try:
            apply_masks(model, mask)
        except ValueError as err:
            raise CheckpointError(f"{mask_json}: does not fit the model in {model_dir} ({err})") from err
    ref = Reference(model=model.eval(), tokenizer=tokenizer, mask=mask)
    if salad_dir is not None:
        ref.detector, ref.threshold, ref.salad = load_salad(salad_dir)
    return ref


def export_model(model_dir: str | Path, dest: str | Path, *, mask_json: str | Path | None = None,
                 salad_dir: str | Path | None = None, reference: Reference | None = None,
                 ltas: str | Path | None = None) -> Path:
    """Write the exported folder of a (masked, SALAD) model: physically pruned, detector inside.

    Args:
        model_dir: source HF CTC folder.
        dest: the folder to write (replaced atomically).
        mask_json, salad_dir: see :func:`load_reference`.
        reference: an already loaded :func:`load_reference` result (saves loading twice).
        ltas: the corpus's ``ltas.json`` when the model was trained on LTAS-normalised audio
            (``prepare.ltas``): copied in, so ``transcribe`` applies the same front end.

    Returns:
        ``dest``.
    """
    from s6damon.salad.detector import save_detector

    ref = reference or load_reference(model_dir, mask_json, salad_dir)
    small = materialise(ref.model, ref.mask or StructuredMask.full(ref.model)).eval()
    meta = {
        "format": FORMAT,
        "source": str(model_dir),
        "mask": None if ref.mask is None else str(mask_json or Path(model_dir) / MASK_FILE),
        "salad": None if ref.detector is None else {**(ref.salad or {}), "threshold": ref.threshold},
        "params": count_parameters(small),
        "dense_params": count_parameters(ref.model),
        "layer_sizes": getattr(small.config, SIZES_KEY, None),
        "conv_dim": list(small.config.conv_dim),
    }
    front_end = None if ltas is None else read_checkpoint_json(Path(ltas), "missing")
    if front_end is not None:
        meta["ltas"] = LTAS_FILE
    dest = Path(dest)
    with io.atomic_path(dest) as tmp:
        tmp.mkdir(parents=True)
        save_pruned(small, tmp)
        ref.tokenizer.save_pretrained(str(tmp))
        feature_extractor().save_pretrained(str(tmp))
        if ref.detector is not None:
            ratio = float((ref.salad or {}).get("drop_ratio", 0.0))
            save_detector(tmp / DETECTOR_FILE, ref.detector, {ratio: ref.threshold},
                          meta={"source": str(salad_dir or model_dir)})
        if front_end is not None:
            io.write_json(tmp / LTAS_FILE, front_end)
        io.write_json(tmp / META_FILE, meta)
    return dest


@dataclass
class ExportedModel:
    """A loaded export: the pruned model, tokenizer, optional detector, and the inference graph.

    Attributes:
        folder: where it was loaded from.
        model: the physically pruned HF CTC model (eval mode).
        tokenizer: its CTC tokenizer.
        detector, threshold: SALAD detector and threshold (None: no dropping).
        meta: ``export.json``; its ``salad.merge`` says whether dropped tokens are merged.
        ltas: ``ltas.json`` (reference envelope and settings) when the model expects
            LTAS-normalised audio; :meth:`transcribe_batch` applies it to raw input.
    """

    folder: Path
    model: nn.Module
    tokenizer: Any
    detector: nn.Module | None
    threshold: float
    meta: dict[str, Any]
    ltas: dict[str, Any] | None = None
    _graph: nn.Module | None = field(default=None, repr=False)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "ExportedModel":
        """Same as :func:`load_exported` (the Hugging Face spelling)."""
        return load_exported(folder)

    @property
    def graph(self) -> nn.Module:
        """The traceable :class:`~s6damon.export.graph.DropGraph` (built once)."""
        if self._graph is None:
            from s6damon.export.graph import DropGraph

            merge = bool((self.meta.get("salad") or {}).get("merge", False))
            self._graph = DropGraph(self.model, self.detector, self.threshold, merge=merge)
        return self._graph

    @torch.no_grad()
    def logits(self, input_values: torch.Tensor, num_samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (B, T', V), lengths (B,))`` of a padded batch of *normalised* waveforms."""
        return self.graph(input_values, num_samples)

    def decode(self, logits: torch.Tensor | np.ndarray, lengths: torch.Tensor | np.ndarray) -> list[str]:
        """Greedy CTC transcripts of a batch of logits (repeats merged, blanks removed)."""
        ids = np.asarray(logits).argmax(-1) if not isinstance(logits, torch.Tensor) else logits.argmax(-1).numpy()
        return [self.tokenizer.decode(ids[b, : int(n)].tolist()).strip() for b, n in enumerate(np.asarray(lengths))]

    def transcribe(self, wave_or_path: str | Path | np.ndarray | torch.Tensor,
                   envelope: np.ndarray | None = None) -> str:
        """Greedy transcript of one utterance (a 16 kHz mono waveform or an audio file);
        ``envelope`` as in :meth:`front_end`."""
        return self.transcribe_batch([wave_or_path], None if envelope is None else [envelope])[0]

    def transcribe_batch(self, waves: list[str | Path | np.ndarray | torch.Tensor],
                         envelopes: list[np.ndarray] | None = None) -> list[str]:
        """Greedy transcripts of several utterances of raw audio run as one padded batch (the
        folder's LTAS front end, if it has one, applied first; ``envelopes``, one per wave, as
        in :meth:`front_end`)."""
        envelopes = envelopes if envelopes is not None else [None] * len(waves)
        if len(envelopes) != len(waves):
            raise ValueError(f"transcribe_batch: {len(envelopes)} envelopes for {len(waves)} waves")
        x, n = pad_batch([prepare_wave(self.front_end(w, e)) for w, e in zip(waves, envelopes)])
        return self.decode(*self.logits(torch.from_numpy(x), torch.from_numpy(n)))

    def front_end(self, wave_or_path: str | Path | np.ndarray | torch.Tensor,
                  envelope: np.ndarray | None = None) -> np.ndarray:
        """A raw 16 kHz waveform (or file) as the model was trained to hear it: LTAS-normalised
        when the folder has ``ltas.json``, else unchanged (loudness is normalised later).

        ``envelope``: the smoothed log-LTAS to correct (``ltas.json``'s ``scope: speaker``: the
        speaker's mean so far, from :meth:`envelope_tracker`); by default the utterance's own.
        """
        from s6damon.corpus.ltas import normalise

        wave = as_wave(wave_or_path)
        if self.ltas is None:
            return wave
        s = self.ltas
        return normalise(wave, np.asarray(s["reference_log_power"]), s["floor_db"], s["lifter"], s["max_gain_db"],
                         envelope)

    def envelope_tracker(self) -> RunningEnvelope:
        """A running mean of one speaker's envelopes with this folder's LTAS settings: for a model
        trained on speaker-scope normalisation, ``transcribe(w, tracker.update(w))`` on each of a
        user's utterances in turn.

        Raises:
            ValueError: the folder has no LTAS front end.
        """
        from s6damon.corpus.ltas import RunningEnvelope

        if self.ltas is None:
            raise ValueError(f"{self.folder}: no {LTAS_FILE}, the model reads raw audio")
        return RunningEnvelope(self.ltas["floor_db"], self.ltas["lifter"])


def as_wave(wave_or_path: str | Path | np.ndarray | torch.Tensor) -> np.ndarray:
    """A ``(T,)`` float32 waveform from a file path (read and resampled to 16 kHz mono) or samples."""
    from s6damon.train.data import load_audio

    if isinstance(wave_or_path, (str, Path)):
        wave = load_audio(wave_or_path)
    elif isinstance(wave_or_path, torch.Tensor):
        wave = wave_or_path.detach().cpu().numpy()
    else:
        wave = np.asarray(wave_or_path)
    return np.asarray(wave, dtype=np.float32).reshape(-1)


def prepare_wave(wave_or_path: str | Path | np.ndarray | torch.Tensor) -> np.ndarray:
    """A loudness-normalised float32 waveform (zero mean, unit variance) from a file path or a
    16 kHz waveform: the model's input."""
    from s6damon.train.data import normalise_wave

    return normalise_wave(as_wave(wave_or_path)).astype(np.float32)


def pad_batch(waves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad waveforms with zeros: ``((B, N) float32, (B,) int64 sample counts)``."""
    n = np.array([len(w) for w in waves], dtype=np.int64)
    out = np.zeros((len(waves), int(n.max()) if len(waves) else 0), dtype=np.float32)
    for i, w in enumerate(waves):
        out[i, : len(w)] = w
    return out, n


def load_exported(folder: str | Path) -> ExportedModel:
    """Rebuild a folder written by :func:`export_model` exactly (shapes from the config).

    Raises:
        CheckpointError: ``export.json``, the weights or the detector missing or corrupt;
            the message names the folder or file.
    """
    from s6damon.model.factory import _load_tokenizer, _read_config
    from s6damon.salad.detector import load_detector

    folder = Path(folder)
    meta_path = folder / META_FILE
    meta = read_checkpoint_json(meta_path, f"missing; {folder} is not an exported model folder")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    _read_config(folder)
    try:
        model = load_pruned(folder)
    except Exception as err:  # safetensors/torch raise many types on truncated files
        raise CheckpointError(f"{folder}: cannot load the exported weights ({type(err).__name__}: {err})") from err
    tokenizer = _load_tokenizer(folder)
    if tokenizer is None:
        raise CheckpointError(f"{folder / 'vocab.json'}: missing; cannot decode")
    detector, threshold = None, 0.5
    if meta.get("salad"):
        detector, _, _ = load_detector(folder / DETECTOR_FILE)
        threshold = float(meta["salad"]["threshold"])
    ltas = None
    if meta.get("ltas"):
        ltas = read_checkpoint_json(folder / meta["ltas"], "missing; export.json says the model expects "
                                                           "LTAS-normalised audio")
        missing = {"reference_log_power", "floor_db", "lifter", "max_gain_db"} - set(ltas)
        if missing:
            raise CheckpointError(f"{folder / meta['ltas']}: missing {sorted(missing)}")
    return ExportedModel(folder=folder, model=model, tokenizer=tokenizer, detector=detector,
                         threshold=threshold, meta=meta, ltas=ltas)
