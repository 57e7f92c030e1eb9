"""Self-supervised pretraining of a wav2vec 2.0 model: one training run for both objectives.

The contrastive objective (``pretrain.objective: wav2vec2``, the default): spans of encoder
tokens are masked (``_compute_mask_indices``); for every masked token the transformer output
must pick the quantised true latent among ``num_negatives`` distractors drawn from the same
utterance (``_sample_negative_indices``); a diversity term keeps the Gumbel-softmax codebooks
in use. Loss is normalised per masked token. The masked-prediction objective (``hubert``)
lives in :mod:`s6damon.ssl.hubert`; :func:`pretrain` runs either with the same model,
optimiser, batches and masking (:class:`SSLObjective` holds what differs).

Every ``pretrain.eval_every`` steps the objective's loss is also measured on held-out audio
(:func:`heldout_loss`; the flow passes the dev split, divided by whether its voices are in the
pool): a falling training loss says the model fits the pool, the held-out losses say whether
that carries to other utterances of the same voices and to voices it never heard.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from transformers import Wav2Vec2ForPreTraining
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

from s6damon.config.model import ModelParams, PretrainParams
from s6damon.hardware import training_attention, training_pos_conv, training_precision
from s6damon.model.contiguous_conv import use_contiguous_conv_layers
from s6damon.model.factory import build_config, count_parameters, load_pretraining_model, save_model, unwrap
from s6damon.model.vocab import build_tokenizer
from s6damon.train import checkpoint as ck
from s6damon.train import distributed as dd
from s6damon.train.data import SAMPLE_RATE, AudioSet, Batch, bucket_batches
from s6damon.train.evaluate import model_inputs
from s6damon.train.loop import LoopConfig, run_loop
from s6damon.train.precision import training_forward


def build_pretraining_model(m: ModelParams, p: PretrainParams, init: str | Path | None = None) -> Wav2Vec2ForPreTraining:
    """A fresh tiny model (or ``init`` for continued pretraining) with ``p``'s SSL settings."""
    ssl = dict(mask_time_prob=p.mask_time_prob, mask_time_length=p.mask_time_length, num_negatives=p.num_negatives,
               diversity_loss_weight=p.diversity_loss_weight,
               contrastive_logits_temperature=p.contrastive_temperature)
    if init:
        return load_pretraining_model(init, **ssl)
    return use_contiguous_conv_layers(Wav2Vec2ForPreTraining(build_config(m, len(build_tokenizer()), **ssl)))


def scale_feature_grad(model: Wav2Vec2ForPreTraining, mult: float) -> None:
    """Scale the gradient flowing into the conv feature encoder (wav2vec 2.0's feature_grad_mult).

    The forward value is unchanged; the backward gradient is multiplied by ``mult``.
    """
    if mult >= 1.0:
        return

    def hook(_module, _inputs, out: torch.Tensor) -> torch.Tensor:
        return out * mult + out.detach() * (1.0 - mult)

    model.wav2vec2.feature_extractor.register_forward_hook(hook)


def gumbel_temperature(step: int, total: int, start: float, end: float) -> float:
    """Geometric decay of the Gumbel temperature from ``start`` to ``end`` over ``total`` steps."""
    frac = min(1.0, step / max(1, total))
    return float(start * (end / start) ** frac)


def mask_spans(model: Wav2Vec2ForPreTraining, batch: Batch, mask_prob: float, mask_length: int
               ) -> tuple[np.ndarray, torch.Tensor]:
    """Spans of encoder tokens to mask for a batch (NumPy global RNG, as in HF), never past an
    utterance's end: ``(B, T')`` bool array and the ``(B, T')`` token attention mask, where
    ``T'`` is the number of encoder frames. Shared by both SSL objectives."""
    b, t = batch.input_values.shape
    frames = int(model._get_feat_extract_output_lengths(torch.tensor(t)))
    sub_mask = model._get_feature_vector_attention_mask(frames, batch.attention_mask)
    mask = _compute_mask_indices((b, frames), mask_prob, mask_length, attention_mask=sub_mask, min_masks=2)
    # tokens beyond an utterance's end must not be masked (nor used as negatives)
    return mask & sub_mask.bool().cpu().numpy(), sub_mask


def ssl_targets(model: Wav2Vec2ForPreTraining, batch: Batch, mask_prob: float, mask_length: int,
                num_negatives: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mask positions and negative indices for a batch (NumPy global RNG, as in HF).

    Returns:
        ``mask_time_indices`` ``(B, T')`` bool, ``sampled_negative_indices`` ``(B, T', K)``
        long, and the ``(B, T')`` token attention mask, where ``T'`` is the number of
        encoder frames.
    """
    mask, sub_mask = mask_spans(model, batch, mask_prob, mask_length)
    neg = _sample_negative_indices(mask.shape, num_negatives, mask_time_indices=mask)
    dev = batch.input_values.device
    return (torch.from_numpy(mask).to(dev), torch.from_numpy(neg).to(dev), sub_mask)


def loop_config(p: PretrainParams, desc: str) -> LoopConfig:
    """The training-loop settings of an SSL run (either objective) from ``p``."""
    return LoopConfig(steps=p.steps, learning_rate=p.learning_rate, warmup_steps=p.warmup_steps, schedule=p.schedule,
                      weight_decay=p.weight_decay, grad_clip=p.grad_clip, batch_seconds=p.batch_seconds,
                      log_every=p.log_every, checkpoint_every=p.checkpoint_every, progress=p.progress, desc=desc)


@dataclasses.dataclass
class SSLObjective:
    """What differs between the SSL objectives; :func:`pretrain` runs either the same way.

    Attributes:
        net: the module the training loop optimises (the pretraining model, or a wrapper
            holding it plus the objective's own head; the head lives only in checkpoints).
        step: ``(net, batch, step) -> (loss, logs)`` for :func:`s6damon.train.loop.run_loop`.
        final: history keys whose last values the metrics report as ``final_<key>``.
        stats: metrics fixed before training (e.g. the k-means fit of the targets).
        save_extra: called with the saved model folder, to add the objective's files to it.
    """

    net: torch.nn.Module
    step: Callable[[torch.nn.Module, Batch, int], tuple[torch.Tensor, dict[str, float]]]
    final: tuple[str, ...]
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    save_extra: Callable[[Path], None] | None = None


def contrastive_objective(model: Wav2Vec2ForPreTraining, p: PretrainParams) -> SSLObjective:
    """wav2vec 2.0's objective: pick the quantised latent of each masked token among
    distractors, plus the codebook-diversity term; loss per masked token."""
    g0, g1 = p.gumbel_temperature[0], p.gumbel_temperature[-1]

    def step(net: torch.nn.Module, batch: Batch, step: int):
        inner = unwrap(net)
        inner.set_gumbel_temperature(gumbel_temperature(step, p.steps, g0, g1))
        mask, neg, _ = ssl_targets(inner, batch, p.mask_time_prob, p.mask_time_length, p.num_negatives)
        out = net(**model_inputs(inner, batch), mask_time_indices=mask, sampled_negative_indices=neg)
        n = mask.sum().clamp(min=1)
        loss = out.loss / n
        return loss, {"loss": float(loss.detach()), "contrastive_loss": float(out.contrastive_loss.detach() / n),
                      "diversity_loss": float(out.diversity_loss.detach() / n),
                      "codevector_perplexity": float(out.codevector_perplexity.detach())}

    return SSLObjective(model, step, ("loss", "contrastive_loss", "diversity_loss", "codevector_perplexity"))


def heldout_sets(dev: pd.DataFrame, pool: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Held-out audio for the SSL loss, by whether its voice is in the pretraining pool.

    ``dev_seen``: rows whose voice (the ``voice`` column where both manifests have one,
    else ``speaker``) the pool holds; ``dev_unseen``: the others. Empty sets are left out.
    """
    key = "voice" if "voice" in dev.columns and "voice" in pool.columns else "speaker"
    seen = dev[key].isin(set(pool[key]))
    sets = {"dev_seen": dev[seen], "dev_unseen": dev[~seen]}
    return {name: rows.reset_index(drop=True) for name, rows in sets.items() if len(rows)}


def heldout_audio(rows: pd.DataFrame, p: PretrainParams) -> tuple[AudioSet, list[list[int]]]:
    """``rows``' waveforms in memory and their batches for :func:`heldout_loss`: in duration
    order (no rng), the same every time, sized like ``p``'s training batches."""
    durations = np.minimum(rows["duration"].to_numpy(float), p.max_seconds)
    return AudioSet(rows), bucket_batches(durations, p.batch_seconds)


def heldout_loss(objective: SSLObjective, data: AudioSet, batches: Sequence[Sequence[int]], max_samples: int,
                 step: int, seed: int, device: torch.device | str,
                 forward: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
                 ) -> dict[str, float]:
    """The objective's logged values on held-out audio, averaged over ``batches`` weighted by
    their audio seconds.

    The model runs in eval mode (no dropout; the quantiser takes its argmax codewords), and
    the masks and negatives come from ``seed`` (HF draws them from NumPy's global RNG, which
    is restored afterwards, so training draws the same as without evaluation): every
    evaluation scores the same positions, so the values of one run, and of runs of one
    corpus, compare.

    Args:
        objective: the run's objective (its ``net`` is evaluated).
        data: the held-out waveforms.
        batches: row positions per batch (e.g. :func:`s6damon.train.data.bucket_batches`).
        max_samples: longer waveforms are cropped to their start.
        step: the training step (the contrastive objective's Gumbel temperature).
        seed: seeds the masks and negatives.
        device: where the batches go.
        forward: context of the forward pass (the training run's precision and kernels).
    """
    net = objective.net
    was_training = net.training
    rng_state = np.random.get_state()
    np.random.seed(seed)
    sums: dict[str, float] = {}
    seconds = 0.0
    net.eval()
    try:
        with torch.no_grad():
            for rows in batches:
                batch = data.batch(list(rows), max_samples).to(device)
                with forward():
                    _, logs = objective.step(net, batch, step)
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * batch.seconds
                seconds += batch.seconds
    finally:
        np.random.set_state(rng_state)
        net.train(was_training)
    return {k: v / seconds for k, v in sums.items()} if seconds else {}


def pretrain(m: ModelParams, p: PretrainParams, train: pd.DataFrame, out_dir: str | Path, ckpt_dir: str | Path,
             seed: int, threads: int, *, init: str | Path | None = None, stop_at: int | None = None,
             heldout: dict[str, pd.DataFrame] | None = None) -> dict[str, Any]:
    """Pretrain a wav2vec 2.0 model with ``p.objective`` and save it as a HF folder.

    Args:
        m: model shape (ignored for ``init``).
        p: SSL recipe; ``p.objective`` picks contrastive (``wav2vec2``) or masked prediction
            of MFCC clusters (``hubert``, :mod:`s6damon.ssl.hubert`, settings ``p.hubert``).
        train: manifest rows (``path``, ``duration``); transcripts are not used. Utterances
            longer than ``p.max_seconds`` are randomly cropped.
        out_dir: where the ``Wav2Vec2ForPreTraining`` folder is written (loadable by
            :func:`s6damon.model.factory.load_ctc_model` for finetuning); the hubert
            objective adds its targets' centroids (``kmeans.pt``).
        ckpt_dir: resumable training checkpoints.
        seed: global seed.
        threads: torch intra-op threads.
        init: optional wav2vec2 folder to continue pretraining from.
        stop_at: stop after this step as if killed (tests); nothing is saved to ``out_dir``.
        heldout: named held-out manifests (e.g. :func:`heldout_sets`) scored with
            :func:`heldout_loss` every ``p.eval_every`` steps and at the end; their values
            enter the history as ``<name>_<key>``.

    Returns:
        ``{"history", "metrics", "stopped_early"}``: the objective's losses per logging step
        (contrastive: loss, contrastive and diversity loss per masked token, codebook
        perplexity; hubert: loss and masked/unmasked cluster accuracy) and the held-out
        values at evaluation steps; metrics with the objective, the final values (training
        and held-out: ``final_<name>_<key>``), wall time and audio seconds per second.
    """
    torch.set_num_threads(threads)
    env = dd.setup(m.device)
    if len(train) == 0:
        raise ValueError("pretrain: the training manifest is empty")
    ck.seed_everything(seed)
    model = build_pretraining_model(m, p, init)
    scale_feature_grad(model, p.feature_grad_mult)
    data = AudioSet(train)
    fp = ck.fingerprint("pretrain", str(init or ""), dataclasses.asdict(m), dataclasses.asdict(p), seed,
                        list(train["path"]), env.world_size)
    if p.objective == "hubert":
        from s6damon.ssl.hubert import hubert_objective  # it builds on this module's helpers

        objective = hubert_objective(model, p, data, seed, ckpt_dir, fp)
    else:
        objective = contrastive_objective(model, p)
    objective.net.train()
    max_samples = int(p.max_seconds * SAMPLE_RATE)
    data.durations = np.minimum(data.durations, p.max_seconds)  # batches are sized by the cropped length

    precision = training_precision(p.precision, env.device)
    kernel = training_attention(p.attention, precision, env.device)
    pos_conv = training_pos_conv(p.pos_conv, env.device)

    def batch_fn(rows: list[int], step: int) -> Batch:
        return data.batch(rows, max_samples, np.random.default_rng([seed, step, env.rank]), p.speed_perturb)

    def forward() -> contextlib.AbstractContextManager:
        return training_forward(model, env.device, precision, kernel, pos_conv)

    def step_fn(net: torch.nn.Module, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        with forward():
            return objective.step(net, batch, step)

    held = {name: heldout_audio(rows, p) for name, rows in (heldout or {}).items() if len(rows)}

    def evaluate(net: torch.nn.Module, step: int, state: dict[str, Any]) -> dict[str, float] | None:
        if not held or p.eval_every == 0 or not (step % p.eval_every == 0 or step == p.steps):
            return None
        out: dict[str, float] = {}
        for name, (audio, batches) in held.items():
            logs = heldout_loss(objective, audio, batches, max_samples, step, seed, env.device, forward)
            out.update({f"{name}_{k}": dd.mean(v, env) for k, v in logs.items()})
        return out

    res = run_loop(objective.net, data, loop_config(p, f"pretrain ({p.objective})"), step_fn, env, ckpt_dir,
                   fp, seed, batch_fn=batch_fn, hooks=[evaluate], stop_at=stop_at)
    last = res.history[-1] if res.history else {}
    final_heldout = {}
    for name in held:
        entries = [h for h in res.history if f"{name}_loss" in h]
        if entries:
            final_heldout.update({f"final_{name}_{k}": entries[-1].get(f"{name}_{k}") for k in objective.final})
    metrics = {
        "objective": p.objective, "steps": res.steps_done, "resumed_from": res.resumed_from,
        "train_seconds": round(res.seconds, 2), "audio_seconds_per_second": round(res.throughput, 2),
        "train_audio_minutes": round(float(train["duration"].sum()) / 60, 2), "parameters": count_parameters(model),
        **objective.stats, **{f"final_{k}": last.get(k) for k in objective.final}, **final_heldout, "world_size": env.world_size,
        "precision": precision, "attention": kernel, "pos_conv": pos_conv,
    }
    if not res.stopped_early and env.is_main:
        save_model(model, build_tokenizer(), out_dir, extra=objective.save_extra)
    dd.barrier(env)
    return {"history": res.history, "metrics": metrics, "stopped_early": res.stopped_early}
