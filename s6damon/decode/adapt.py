"""Test-time adaptation of a CTC model to one utterance (SUTA: entropy minimisation).

An unseen voice shifts the encoder's activations away from the statistics its normalisation
layers learned on the training voices; the posteriors flatten and greedy decoding
substitutes characters. Single-utterance test-time adaptation (Lin et al., "Listen, Adapt,
Better WER", Interspeech 2022) takes a few gradient steps on the utterance itself, with no
transcript, before decoding it:

- **entropy minimisation**: the mean entropy of the frame posteriors, over the frames whose
  best token is not the blank (pauses are confidently blank at every step and would dilute
  the loss);
- **minimum class confusion**: the off-diagonal mass of the class-correlation matrix of the
  temperature-smoothed posteriors (one character's frames should not also look like another
  character), which keeps the entropy term from collapsing everything onto one token.

Only the normalisation layers' affine parameters move (``scope="norm"``; ``"norm+conv"``
also the convolutional feature encoder), with AdamW for ``steps`` steps; the model is put
back exactly as it was after each utterance, so utterances do not leak into one another and
the result does not depend on their order. Dropout and SpecAugment stay off (eval mode).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pandas as pd
import torch
from tqdm.auto import tqdm

from s6damon.config.decode import AdaptParams
from s6damon.decode.warp import warp_augment
from s6damon.model.factory import unwrap
from s6damon.pruning.model_parts import base_model
from s6damon.train.data import AudioSet
from s6damon.train.evaluate import model_inputs

#: Which parameters adaptation updates: the choices of ``decode.adapt.scope``.
SCOPES: tuple[str, ...] = typing.get_args(typing.get_type_hints(AdaptParams)["scope"])


def entropy_loss(logits: torch.Tensor, blank: int) -> torch.Tensor:
    """Mean entropy of the frame posteriors over non-blank frames of ``(T, vocab)`` logits.

    Zero (with a gradient path) when every frame's best token is the blank.
    """
    logp = torch.log_softmax(logits, dim=-1)
    ent = -(logp.exp() * logp).sum(-1)
    speech = logits.argmax(-1) != blank
    if not bool(speech.any()):
        return ent.sum() * 0.0
    return ent[speech].mean()


def class_confusion_loss(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Minimum-class-confusion loss of ``(T, vocab)`` logits.

    The class-correlation matrix ``P^T P`` of the smoothed posteriors ``P`` (frames weighted
    by how sure they are: 1 + exp(-entropy), as MCC does), each row normalised to sum to one;
    the loss is its off-diagonal mass divided by the vocabulary size.
    """
    p = torch.softmax(logits / temperature, dim=-1)
    ent = -(p * torch.log(p + 1e-8)).sum(-1)
    w = 1.0 + torch.exp(-ent)
    w = (len(w) * w / w.sum()).detach()
    cov = (p * w[:, None]).T @ p
    cov = cov / cov.sum(-1, keepdim=True).clamp_min(1e-12)
    return (cov.sum() - cov.trace()) / logits.shape[-1]


def adapted_parameters(model: torch.nn.Module, scope: str) -> list[torch.nn.Parameter]:
    """The parameters adaptation updates: every LayerNorm/GroupNorm affine weight and bias,
    and with ``scope="norm+conv"`` the convolutional feature encoder's too.

    ``model`` is a wav2vec2/HuBERT CTC model or an export's
    :class:`~s6damon.export.graph.DropGraph`; a SALAD detector in it (``model.detector``)
    is left alone: it decides which tokens to drop, and was trained for that.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown adaptation scope {scope!r}; expected one of {list(SCOPES)}")
    detector = getattr(model, "detector", None)
    skip = {id(p) for p in detector.parameters()} if isinstance(detector, torch.nn.Module) else set()
    params: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
            for p in module.parameters(recurse=False):
                params[id(p)] = p
    if scope == "norm+conv":
        encoder = getattr(base_model(model), "feature_extractor", None)
        if encoder is None:
            raise ValueError("scope 'norm+conv' needs a wav2vec2/HuBERT model with a feature_extractor")
        for p in encoder.parameters():
            params[id(p)] = p
    params = {k: p for k, p in params.items() if k not in skip}
    if not params:
        raise ValueError("the model has no normalisation layers to adapt")
    return list(params.values())


@contextmanager
def trainable_only(model: torch.nn.Module, params: list[torch.nn.Parameter]) -> Iterator[None]:
    """Within the block only ``params`` require gradients and the model is in eval mode;
    afterwards every parameter's ``requires_grad`` and the model's mode are as before."""
    grad_state = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    model.eval()
    for p, _ in grad_state:
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, g in grad_state:
            p.requires_grad_(g)
        model.train(was_training)


def adapt_logp(logits_fn: Callable[[], torch.Tensor], params: list[torch.nn.Parameter], settings: AdaptParams,
               blank: int) -> torch.Tensor:
    """Adapt ``params`` to one utterance, return its log-probabilities, put ``params`` back.

    Args:
        logits_fn: runs the model on the utterance and returns its ``(T, vocab)`` logits
            under the current parameters (with autograd on when gradients are enabled).
        params: what the steps update (:func:`adapted_parameters`), requiring gradients.
        settings: steps, learning rate, loss weights.
        blank: the blank (pad) token id.

    Returns:
        ``(T, vocab)`` log-probabilities after ``settings.steps`` AdamW steps.
    """
    with restored(params):
        descend(params, [logits_fn], settings, blank, settings.steps, 1)
        return read_logp(logits_fn)


@contextmanager
def restored(params: list[torch.nn.Parameter]) -> Iterator[None]:
    """Whatever the block does to ``params``' values, they are as before afterwards."""
    saved = [p.detach().clone() for p in params]
    try:
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


#: The objective of utterance ``i`` of a :func:`descend` call, given its float ``(T, vocab)`` logits.
UtteranceLoss = Callable[[int, torch.Tensor], torch.Tensor]


def descend(params: list[torch.nn.Parameter], logits_fns: Sequence[Callable[[], torch.Tensor]],
            settings: AdaptParams, blank: int, epochs: int, batch_utterances: int,
            rng: torch.Generator | None = None, loss: UtteranceLoss | None = None) -> None:
    """AdamW steps at ``settings.lr`` over ``logits_fns``: ``epochs`` passes in a random order
    (``rng``), each step averaging ``batch_utterances`` utterances, each run alone. The
    objective is ``loss`` (e.g. a supervised CTC loss on pseudo-labels), by default
    :func:`adaptation_loss` with ``settings``' weights. ``params`` must require gradients."""
    def suta(_: int, logits: torch.Tensor) -> torch.Tensor:
        return adaptation_loss(logits, settings.em_weight, settings.temperature, blank)

    objective = loss or suta
    if not epochs or not logits_fns:
        return
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    with torch.enable_grad():
        for _ in range(epochs):
            # one utterance (SUTA) has one order: no draw from any generator
            order = torch.randperm(len(logits_fns), generator=rng).tolist() if len(logits_fns) > 1 else [0]
            for start in range(0, len(order), batch_utterances):
                chunk = order[start:start + batch_utterances]
                opt.zero_grad(set_to_none=True)
                for i in chunk:
                    (objective(i, logits_fns[i]().float()) / len(chunk)).backward()
                opt.step()


def read_logp(logits_fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``(T, vocab)`` log-probabilities of one utterance under the current weights, no autograd."""
    with torch.no_grad():
        return torch.log_softmax(logits_fn().float(), dim=-1).contiguous()


def adapt_emissions(model: torch.nn.Module, df: pd.DataFrame, settings: AdaptParams, blank: int,
                    warp: float = 1.0, progress: bool = False) -> list[torch.Tensor]:
    """CTC log-probabilities ``(T_i, vocab)`` of every row of ``df`` after adapting the model
    to that row alone (:func:`adapt_logp`); the model is unchanged afterwards.

    Args:
        model: a wav2vec2/HuBERT CTC model.
        df: manifest rows (``path``, ``duration``).
        settings: steps, learning rate, loss weights, scope.
        blank: the blank (pad) token id.
        warp: resample each waveform first, as :func:`s6damon.decode.beam.emissions` does.
    """
    inner = unwrap(model)
    params = adapted_parameters(inner, settings.scope)
    data = AudioSet(df, preload=False)
    augment = warp_augment(warp)
    out = []
    with trainable_only(inner, params):
        for i in tqdm(range(len(data)), desc="adapt", disable=not progress):
            out.append(adapt_logp(utterance_logits(inner, data, i, augment), params, settings, blank))
    return out


def utterance_logits(model: torch.nn.Module, data: AudioSet, i: int,
                     augment: Callable | None = None) -> Callable[[], torch.Tensor]:
    """A callable that runs CTC ``model`` (unwrapped) on row ``i`` of ``data`` alone (no
    padding) and returns its ``(T, vocab)`` logits, with autograd on when gradients are."""
    batch = data.batch([i], augment=augment)
    frames = int(model._get_feat_extract_output_lengths(batch.attention_mask.sum(-1))[0])
    inputs = model_inputs(model, batch)
    return lambda: model(**inputs).logits[0, :frames]


def adaptation_loss(logits: torch.Tensor, em_weight: float, temperature: float, blank: int) -> torch.Tensor:
    """The adaptation objective of one utterance's ``(T, vocab)`` logits: ``em_weight`` ×
    :func:`entropy_loss` + (1 − ``em_weight``) × :func:`class_confusion_loss`."""
    loss = em_weight * entropy_loss(logits, blank)
    if em_weight < 1.0:
        loss = loss + (1.0 - em_weight) * class_confusion_loss(logits, temperature)
    return loss


def speaker_folds(df: pd.DataFrame, folds: int) -> list[tuple[list[int], list[int]]]:
    """``(adapt_rows, read_rows)`` positions of ``df`` for speaker adaptation.

    Each speaker's rows, in ``utt_id`` order, are dealt into ``folds`` folds (row ``j`` of the
    speaker into fold ``j % folds``); each fold is read after adapting to the speaker's other
    folds. With ``folds=1`` a speaker's rows are both adapted to and read. A speaker with
    fewer rows than ``folds`` leaves folds empty; a fold with nothing to adapt to (a speaker
    of one utterance) is read by the unadapted model.

    Raises:
        ValueError: ``df`` has no ``speaker``/``utt_id`` column, or ``folds`` < 1.
    """
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    missing = {"speaker", "utt_id"} - set(df.columns)
    if missing:
        raise ValueError(f"speaker adaptation needs manifest columns {sorted(missing)}")
    out = []
    pos = pd.Series(range(len(df)), index=df.index)
    for _, rows in df.groupby("speaker", sort=True):
        rows_pos = pos[rows.sort_values("utt_id").index].tolist()
        for k in range(folds):
            read = rows_pos[k::folds]
            if not read:
                continue
            adapt = rows_pos if folds == 1 else [r for j, r in enumerate(rows_pos) if j % folds != k]
            out.append((adapt, read))
    return out


@contextmanager
def adapted_to(module: torch.nn.Module, params: list[torch.nn.Parameter],
               logits_fns: Sequence[Callable[[], torch.Tensor]], settings: AdaptParams, blank: int, epochs: int,
               batch_utterances: int, seed: int = 0, loss: UtteranceLoss | None = None) -> Iterator[None]:
    """Within the block ``params`` are adapted to a set of utterances together (one speaker's)
    without their transcripts; afterwards they, and ``module``'s mode and ``requires_grad``
    flags, are exactly as before.

    The objective is SUTA's (:func:`adaptation_loss`, ``settings``' weights), averaged over
    ``batch_utterances`` utterances an AdamW step at ``settings.lr`` (each utterance run
    alone, so no padding enters the statistics), for ``epochs`` passes in a seeded order.
    Where SUTA adapts to each utterance and throws the result away, this adapts once to what
    a speaker has said and reads what they say next at the plain model's cost: the
    unsupervised counterpart of enrolling a device's owner.

    Args:
        module: the model ``params`` belong to (put in eval mode while adapting).
        params: what the steps update (:func:`adapted_parameters`).
        logits_fns: one per utterance: runs the model and returns its ``(T, vocab)`` logits.
        settings: loss weights, temperature and learning rate.
        blank: the blank (pad) token id.
        epochs: passes over ``logits_fns``; 0 leaves the model as it is.
        batch_utterances: utterances per step.
        seed: the order of the utterances in each pass.
        loss: the objective in place of SUTA's (:func:`descend`).
    """
    with restored(params):
        if epochs and logits_fns:
            with trainable_only(module, params):
                descend(params, logits_fns, settings, blank, epochs, batch_utterances,
                        torch.Generator().manual_seed(seed), loss)
        yield


def speaker_adapted(df: pd.DataFrame, folds: int, adapt: Callable[[list[int]], typing.ContextManager],
                    read: Callable[[list[int]], list[torch.Tensor]]) -> list[torch.Tensor]:
    """Log-probabilities of every row of ``df``, each fold read inside ``adapt(its adaptation
    rows)`` (:func:`speaker_folds`), in ``df``'s row order.

    Args:
        df: manifest rows with ``speaker`` and ``utt_id``.
        folds: see :func:`speaker_folds`.
        adapt: a context manager factory adapting the model to the given row positions
            (:func:`adapted_to` over them).
        read: log-probabilities of the given row positions under the current model.
    """
    out: list[torch.Tensor | None] = [None] * len(df)
    for adapt_rows, read_rows in speaker_folds(df, folds):
        with adapt(adapt_rows):
            for r, lp in zip(read_rows, read(read_rows)):
                out[r] = lp
    return typing.cast(list[torch.Tensor], out)
