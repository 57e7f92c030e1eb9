"""CTC finetuning on characters (from a checkpoint, or from scratch as the baseline)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from s6damon.config.model import FinetuneParams, ModelParams
from s6damon.hardware import training_attention, training_pos_conv, training_precision
from s6damon.model.factory import build_ctc_model, count_parameters, load_ctc_model, save_model, unwrap
from s6damon.model.vocab import build_tokenizer
from s6damon.salad.backbone import feature_lengths, length_mask
from s6damon.train import checkpoint as ck
from s6damon.train import distributed as dd
from s6damon.train.augment import WaveAugmenter
from s6damon.train.averaging import WeightAverage
from s6damon.train.data import AudioSet, Batch
from s6damon.train.distill import distill_loss, hidden_distill_loss, segment_frames
from s6damon.train.evaluate import model_inputs, score, transcribe
from s6damon.train.feature_cache import FeatureBatch, FeatureCache, FeatureInputCTC, speed_grid
from s6damon.train.interctc import check_layers, interctc_loss
from s6damon.train.loop import Hook, LoopConfig, run_loop
from s6damon.train.mixstyle import MixStyle
from s6damon.train.precision import autocast, training_forward
from s6damon.train.token_merge import TokenMergeSchedule, merge_steps

log = logging.getLogger(__name__)


def _spec_augment(p: FinetuneParams) -> dict[str, Any]:
    return dict(apply_spec_augment=p.mask_time_prob > 0 or p.mask_feature_prob > 0,
                mask_time_prob=p.mask_time_prob, mask_time_length=p.mask_time_length, mask_time_min_masks=0,
                mask_feature_prob=p.mask_feature_prob, mask_feature_length=p.mask_feature_length)


def init_model(init: str | Path | None, m: ModelParams, p: FinetuneParams):
    """``(model, tokenizer)``: the checkpoint at ``init`` with our vocabulary, or a random tiny model."""
    if init:
        model, tok = load_ctc_model(init, own_vocab=True, **_spec_augment(p))
    else:
        tok = build_tokenizer()
        model = build_ctc_model(m, tok, **_spec_augment(p))
    model.train()
    return model, tok


def set_encoder_frozen(model: torch.nn.Module, frozen: bool) -> None:
    """Freeze (or unfreeze) the conv feature encoder: no gradients, and no backward through it."""
    base = unwrap(model).base_model
    fe = base.feature_extractor
    if frozen != (not fe._requires_grad):
        for prm in fe.parameters():
            prm.requires_grad = not frozen
        fe._requires_grad = not frozen  # HF skips the input grad hook when frozen


def encoder_frozen_at(p: FinetuneParams, step: int) -> bool:
    """Whether the conv feature encoder is frozen at optimiser step ``step`` (0-based): during the
    first ``freeze_feature_encoder_steps`` and from ``freeze_feature_encoder_from`` on. Late
    freezing saves the encoder's backward, a third of a CPU step here, once the encoder has
    adapted and the learning rate is decaying."""
    late = p.freeze_feature_encoder_from is not None and step >= p.freeze_feature_encoder_from
    return step < p.freeze_feature_encoder_steps or late


def _feature_cache(model: torch.nn.Module, data: AudioSet, p: FinetuneParams, device: torch.device,
                   wrap: Callable | None, teacher: torch.nn.Module | None,
                   saved: str | Path | None = None) -> FeatureCache:
    """The frozen conv encoder's output for the training set (``finetune.feature_cache``);
    with a ``wrap`` (token dropping) also each token's energy, for the energy baseline.
    ``saved``: a cache of this model's encoder on this training set (:meth:`FeatureCache.save`),
    loaded instead of filled."""
    if p.freeze_feature_encoder_steps < p.steps:
        raise ValueError("finetune: feature_cache needs freeze_feature_encoder_steps >= steps "
                         "(cached features are those of a conv encoder that never changes)")
    if teacher is not None:
        raise ValueError("finetune: feature_cache and distillation do not go together (the teacher reads "
                         "each step's waveforms)")
    set_encoder_frozen(model, True)
    model.to(device)
    speeds = speed_grid(p.speed_perturb, p.feature_cache_speeds)
    if saved is None:
        return FeatureCache(model, data, speeds, batch_seconds=p.eval_batch_seconds, progress=p.progress,
                            token_energy=wrap is not None)
    cache = FeatureCache.load(saved, data)
    if len(cache.speeds) != len(speeds) or not np.allclose(cache.speeds, speeds):
        raise ValueError(f"{saved}: cached at speed factors {cache.speeds}, the recipe draws from {speeds}")
    if wrap is not None and not cache.has_token_energy:
        raise ValueError(f"{saved}: holds no token energies (needed by the dropping runs' energy baseline)")
    return cache


def load_teacher(path: str | Path) -> torch.nn.Module:
    """A frozen CTC model in eval mode (no dropout, no SpecAugment): the distillation teacher."""
    teacher, _ = load_ctc_model(path)
    return teacher.eval().requires_grad_(False)


def distill_term(out: Any, teacher_logits: torch.Tensor, frame_lengths: torch.Tensor, blank_id: int,
                 temperature: float) -> torch.Tensor:
    """Distillation loss of one training output against the teacher's full-grid logits.

    ``out`` is either a plain CTC output (``.logits`` on every frame) or a token-dropped
    :class:`~s6damon.salad.dropping.DropOutput` (``.keep``, ``.lengths``), whose kept tokens
    are matched to teacher frames by :func:`~s6damon.train.distill.segment_frames`.
    """
    logits = out.logits
    width = logits.shape[1]
    if getattr(out, "keep", None) is not None:
        mask = length_mask(out.lengths, width)
        teacher_logp = torch.log_softmax(teacher_logits.float(), -1)
        frames = segment_frames(teacher_logp, out.keep, out.frame_lengths, width, blank_id)
        return distill_loss(logits, mask, teacher_logits, frames, temperature)
    return distill_loss(logits, length_mask(frame_lengths, width), teacher_logits, None, temperature)


def training_rows(rows: pd.DataFrame, p: FinetuneParams) -> pd.DataFrame:
    """The utterances of ``rows`` that finetuning trains on: those no longer than
    ``p.max_seconds`` (a longer one would make a batch of its own, past the memory the batch
    size was chosen for)."""
    return rows[rows["duration"] <= p.max_seconds].reset_index(drop=True)


def finetune(init: str | Path | None, m: ModelParams, p: FinetuneParams, train: pd.DataFrame, dev: pd.DataFrame | None,
             out_dir: str | Path, ckpt_dir: str | Path, seed: int, threads: int, *,
             best_dir: str | Path | None = None, stop_at: int | None = None,
             wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
             hooks: Sequence[Hook] = (), tag: str = "", teacher: str | Path | None = None,
             feature_cache_file: str | Path | None = None) -> dict[str, Any]:
    """Finetune a CTC character model and save it.

    Args:
        init: checkpoint folder to start from (any local wav2vec2/HuBERT folder); None or
            "" = random init with shape ``m`` (the from-scratch baseline).
        m: model shape (used for scratch init and for ``m.device``).
        p: finetuning recipe.
        train: manifest rows (``path``, ``duration``, ``text``); rows longer than
            ``p.max_seconds`` are skipped.
        dev: rows evaluated every ``p.eval_every`` steps and at the end (None = no eval);
            the best-by-dev-WER model is saved to ``best_dir`` if given.
        out_dir: final model folder (Hugging Face format, with tokenizer).
        ckpt_dir: resumable training checkpoints.
        best_dir: folder for the best-by-dev-WER model (None = not saved).
        seed: global seed.
        threads: torch intra-op threads.
        stop_at: stop after this step as if killed (tests); nothing is saved to ``out_dir``.
        wrap: turns the loaded CTC model into the module that is trained and evaluated, e.g.
            SALAD's token dropping (:class:`~s6damon.salad.dropping.TokenDropCTC`) or a
            structured mask; it must call the CTC model's own parameters, return an output
            with ``.loss`` (and ``.lengths`` where it shortens the sequence), and the plain
            CTC model is what ``out_dir`` receives.
        hooks: extra loop hooks (after each optimiser step), e.g. prune-and-grow; they run
            before the weight average (``p.average``) and the dev evaluation.
        tag: names the variant in the progress bar and the resumption fingerprint.
        teacher: CTC checkpoint folder distilled from when ``p.distills`` (either distillation weight > 0)
            (default: ``init``, the model the compressed variants start from).
        feature_cache_file: with ``p.feature_cache``, a cache of ``init``'s conv encoder on
            this training set saved beforehand (:meth:`FeatureCache.save`), loaded instead of
            filled: the salad stage fills one for all its runs.

    Returns:
        ``{"history": [...], "metrics": {...}}``; metrics hold the final (and best) dev WER/CER,
        train loss, steps, wall time, audio seconds per second and parameter count.
    """
    torch.set_num_threads(threads)
    env = dd.setup(m.device)
    out_dir, ckpt_dir = Path(out_dir), Path(ckpt_dir)
    if len(train) == 0:
        raise ValueError("finetune: the training manifest is empty")
    ck.seed_everything(seed)  # same random init on every rank
    model, tok = init_model(init, m, p)
    train = training_rows(train, p)
    data = AudioSet(train, tokenizer=tok)
    precision = training_precision(p.precision, env.device)
    kernel = training_attention(p.attention, precision, env.device)
    pos_conv = training_pos_conv(p.pos_conv, env.device)
    log.info("finetune%s: %s training forward pass (precision: %s), %s attention, positional conv %s",
             f"({tag})" if tag else "", precision, p.precision, kernel, pos_conv)
    teacher_net = None
    if p.distills:
        teacher = teacher or init
        if not teacher:
            raise ValueError("finetune: distillation (distill_weight, distill_hidden_weight > 0) needs a teacher "
                             "model (or an init checkpoint)")
        teacher_net = load_teacher(teacher).to(env.device)
    augment = WaveAugmenter(p.augment)
    augment = augment if augment.active else None  # off: no random draws, the batches of before
    if augment is not None and p.feature_cache:
        raise ValueError("finetune: augment (eq_prob, noise_prob) needs the conv encoder to see each step's "
                         "audio; turn feature_cache off")
    if p.mixstyle.prob > 0 and p.feature_cache:
        raise ValueError("finetune: mixstyle needs the conv encoder to run each step; turn feature_cache off")
    mix = MixStyle.for_model(p.mixstyle, model) if p.mixstyle.prob > 0 else None
    if p.interctc_weight > 0:
        if wrap is not None or p.feature_cache or p.distills:
            raise ValueError("finetune: interctc_weight > 0 trains the plain CTC model (no wrap, feature cache or distillation)")
        try:
            check_layers(p.interctc_layers, model.config.num_hidden_layers)
        except ValueError as err:
            raise ValueError(f"finetune.interctc_layers: {err}") from err
    if p.token_merge_ratio > 0 and (wrap is not None or p.feature_cache or p.interctc_weight > 0):
        raise ValueError("finetune: token_merge_ratio > 0 trains the plain CTC model on waveforms "
                         "(no wrap, feature cache or intermediate CTC)")
    fp = ck.fingerprint("finetune", str(init or ""), dataclasses.asdict(m), dataclasses.asdict(p), seed,
                        list(train["path"]), list(train["text"]), env.world_size, tag,
                        str(teacher) if teacher_net is not None else "", precision)
    cache = (_feature_cache(model, data, p, env.device, wrap, teacher_net, feature_cache_file)
             if p.feature_cache else None)
    decoder = wrap(model) if wrap is not None else model  # reads waveforms: evaluation
    if p.distill_hidden_weight > 0 and decoder is not model:
        # masks hook into the model itself; a wrapper module (token dropping) changes the frame grid
        raise ValueError("finetune: distill_hidden_weight > 0 needs student and teacher on one frame grid: a "
                         "masked model, not a wrapper such as token dropping")
    net = FeatureInputCTC(decoder) if cache is not None else decoder  # trained
    # token merging trains a schedule around the model; evaluation and the saved model read every token
    merging = (TokenMergeSchedule(model, p.token_merge_ratio, merge_steps(p.steps, p.token_merge_until),
                                  p.token_merge_every) if p.token_merge_ratio > 0 else None)
    net = merging if merging is not None else net
    averager = WeightAverage.from_params(p.average, p.steps)

    def batch_fn(rows: list[int], step: int) -> Batch | FeatureBatch:
        rng = np.random.default_rng([seed, step, env.rank])
        if cache is not None:
            return cache.batch(rows, rng=rng)
        # augmentation draws from a stream of its own: speeds match an unaugmented run's
        aug = augment.bind(np.random.default_rng([seed, step, env.rank, 1])) if augment is not None else None
        return data.batch(rows, rng=rng, speed=p.speed_perturb, augment=aug)

    def step_fn(net: torch.nn.Module, batch: Batch | FeatureBatch, step: int):
        if cache is not None:
            with training_forward(model, env.device, precision, kernel, pos_conv):
                out = net(batch)
            return out.loss, {"loss": float(out.loss.detach())}
        set_encoder_frozen(model, encoder_frozen_at(p, step))
        if merging is not None:
            merging.step = step
        if mix is None:
            loss, logs = _wave_step(net, batch, step)
        else:
            # mixing draws from a stream of its own, like augmentation
            with mix.step(np.random.default_rng([seed, step, env.rank, 2]), batch.attention_mask.sum(-1)):
                loss, logs = _wave_step(net, batch, step)
        if merging is not None:
            logs["token_merge"] = float(merging.merging)
        return loss, logs

    def _wave_step(net: torch.nn.Module, batch: Batch, step: int):
        inputs = model_inputs(net, batch)
        if p.interctc_weight > 0:  # only the plain CTC model (checked above) takes output_hidden_states
            with training_forward(model, env.device, precision, kernel, pos_conv):
                out = net(**inputs, labels=batch.labels, output_hidden_states=True)
                frames = feature_lengths(model.config, batch.attention_mask, batch.input_values)
                inter = interctc_loss(model, out.hidden_states, batch.labels, frames, p.interctc_layers)
            loss = (1 - p.interctc_weight) * out.loss + p.interctc_weight * inter
            return loss, {"loss": float(loss.detach()), "ctc_loss": float(out.loss.detach()),
                          "interctc_loss": float(inter.detach())}
        hidden = p.distill_hidden_weight > 0
        with training_forward(model, env.device, precision, kernel, pos_conv):
            out = net(**inputs, labels=batch.labels, **({"output_hidden_states": True} if hidden else {}))
        if teacher_net is None:
            return out.loss, {"loss": float(out.loss.detach())}
        with torch.no_grad(), autocast(env.device, precision):
            teacher_out = teacher_net(**inputs, output_hidden_states=hidden)
        # valid frames from the real padding mask (group-norm models are called without one)
        frame_len = feature_lengths(teacher_net.config, batch.attention_mask, batch.input_values)
        frame_len = frame_len.clamp(max=teacher_out.logits.shape[1])
        loss, logs = out.loss, {"ctc_loss": float(out.loss.detach())}
        if p.distill_weight > 0:
            kd = distill_term(out, teacher_out.logits, frame_len, teacher_net.config.pad_token_id,
                              p.distill_temperature)
            loss = loss + p.distill_weight * kd
            logs["distill_loss"] = float(kd.detach())
        if hidden:
            hd = hidden_distill_loss(out.hidden_states, teacher_out.hidden_states,
                                     length_mask(frame_len, out.logits.shape[1]))
            loss = loss + p.distill_hidden_weight * hd
            logs["distill_hidden_loss"] = float(hd.detach())
        return loss, {"loss": float(loss.detach()), **logs}

    def evaluate(net: torch.nn.Module, step: int, state: dict[str, Any]) -> dict[str, Any] | None:
        if dev is None or len(dev) == 0 or not (step % p.eval_every == 0 or step == p.steps):
            return None
        res = {}
        if env.is_main:
            # with averaging on, the weights the run would save if it ended here
            with averager.applied(net) if averager is not None else contextlib.nullcontext():
                res = score(transcribe(decoder, tok, dev, p.eval_batch_seconds))
                if res["wer"] < state.get("best_wer", float("inf")):
                    state.update(best_wer=res["wer"], best_cer=res["cer"], best_step=step)
                    if best_dir is not None:
                        save_model(decoder, tok, best_dir)
        res = dd.broadcast(res, env)
        state.update({k: v for k, v in dd.broadcast(state, env).items() if k != "history"})
        return {"dev_wer": res["wer"], "dev_cer": res["cer"]}

    cfg = LoopConfig(steps=p.steps, learning_rate=p.learning_rate, warmup_steps=p.warmup_steps, schedule=p.schedule,
                     weight_decay=p.weight_decay, grad_clip=p.grad_clip, batch_seconds=p.batch_seconds,
                     log_every=p.log_every, checkpoint_every=p.checkpoint_every, progress=p.progress,
                     desc=f"finetune({tag})" if tag else ("finetune" if init else "finetune(scratch)"), hold_fraction=p.hold_fraction,
                     final_lr_scale=p.final_lr_scale)
    res = run_loop(net, data, cfg, step_fn, env, ckpt_dir, fp, seed, batch_fn=batch_fn,
                   hooks=[*hooks, *([averager] if averager is not None else []), evaluate], stop_at=stop_at)
    if averager is not None and not res.stopped_early:
        averager.apply(net)  # the saved model is the average
    set_encoder_frozen(model, False)
    if mix is not None:
        mix.remove()
    losses = [h["loss"] for h in res.history if "loss" in h]
    metrics: dict[str, Any] = {
        "steps": res.steps_done, "resumed_from": res.resumed_from, "train_seconds": round(res.seconds, 2),
        "audio_seconds_per_second": round(res.throughput, 2), "train_audio_minutes": round(float(train["duration"].sum()) / 60, 2),
        "final_train_loss": losses[-1] if losses else None, "parameters": count_parameters(model),
        "init": str(init or "scratch"), "world_size": env.world_size, "precision": precision,
        "attention": kernel, "pos_conv": pos_conv,
        "feature_cache": cache is not None,
        "weight_average": p.average.kind, "averaged_steps": averager.count if averager is not None else 0,
        "token_merge_ratio": p.token_merge_ratio,
        "token_merge_steps": merging.merged_steps(p.steps) if merging is not None else 0,
    }
    if cache is not None:
        metrics.update(feature_cache_seconds=round(cache.seconds, 2), feature_cache_speeds=cache.speeds)
    last = [h for h in res.history if "dev_wer" in h]
    if last:
        metrics.update(dev_wer=last[-1]["dev_wer"], dev_cer=last[-1]["dev_cer"],
                       best_dev_wer=res.state.get("best_wer"), best_step=res.state.get("best_step"))
    if not res.stopped_early and env.is_main:
        save_model(model, tok, out_dir)
    dd.barrier(env)
    return {"history": res.history, "metrics": metrics, "stopped_early": res.stopped_early}
