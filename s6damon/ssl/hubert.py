"""HuBERT-style SSL pretraining: masked prediction of k-means clusters of MFCC frames.

HuBERT's first iteration (Hsu et al., 2021): every 20 ms frame gets the label of its nearest
k-means centroid of MFCC + delta + delta-delta features (per-utterance mean/variance
normalised); spans of encoder tokens are masked as in wav2vec 2.0 and the transformer must
predict the cluster of each masked token (cross-entropy over cosine similarities between a
projection of its output and one learned embedding per cluster). Unlike the contrastive
objective (:mod:`s6damon.train.pretrain`) the targets are fixed before training; on the
default corpus they predict the synthesiser's phones as well on the unseen test voices as on
the training audio (PNMI, :func:`target_quality`; measured in docs/experiments/recipe.md).

Chosen with ``pretrain.objective: hubert``; :func:`s6damon.train.pretrain.pretrain` runs it
with the same model, optimiser, batches and masking as the contrastive objective. The model
is the same ``Wav2Vec2ForPreTraining`` (its quantiser stays untrained and unused), so the
saved folder loads everywhere a pretrained model does; the prediction head lives only in the
training checkpoints, the centroids of the targets in the folder (``kmeans.pt``).

MFCC frames are cut with the encoder's own geometry — window = the conv stack's receptive
field, hop = its total stride, no padding at the edges — so frame ``i`` of the features is
exactly the span of audio that encoder token ``i`` sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import torchaudio
from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining

from s6damon.config.model import HubertParams, PretrainParams
from s6damon.io import atomic_path
from s6damon.model.factory import unwrap
from s6damon.train import checkpoint as ck
from s6damon.train.data import SAMPLE_RATE, AudioSet, Batch, normalise_wave
from s6damon.train.evaluate import model_inputs
# the training loop, model, masking and metrics are the contrastive objective's
# (s6damon.train.pretrain.pretrain runs both); this module adds only the targets and the head
from s6damon.train.pretrain import SSLObjective, mask_spans

KMEANS_FILE = "kmeans.pt"
"""File in a hubert-pretrained model folder holding the centroids of its targets."""


def frame_geometry(config: Wav2Vec2Config) -> tuple[int, int]:
    """``(window, hop)`` in samples of one encoder token: the conv stack's receptive field and
    its total stride (400 and 320 for the wav2vec 2.0 layout)."""
    window, hop = 1, 1
    for k, s in zip(config.conv_kernel, config.conv_stride):
        window += (k - 1) * hop
        hop *= s
    return window, hop


def mfcc_features(wave: torch.Tensor | np.ndarray, window: int, hop: int) -> torch.Tensor:
    """``(frames, 39)`` MFCC + delta + delta-delta, mean/variance normalised over the utterance.

    ``frames = 1 + (len(wave) - window) // hop`` (the encoder's token count); a waveform
    shorter than one window gives ``(0, 39)``. The scale of ``wave`` does not matter: a gain
    only shifts log energies, which the normalisation removes.
    """
    x = torch.as_tensor(wave, dtype=torch.float32).flatten()
    if len(x) < window:
        return torch.zeros(0, 39)
    mf = torchaudio.compliance.kaldi.mfcc(
        x[None] * 32768.0, sample_frequency=SAMPLE_RATE, frame_length=1000.0 * window / SAMPLE_RATE,
        frame_shift=1000.0 * hop / SAMPLE_RATE, num_ceps=13, dither=0.0, snip_edges=True,
        round_to_power_of_two=True)
    d1 = torchaudio.functional.compute_deltas(mf.T[None])[0]
    d2 = torchaudio.functional.compute_deltas(d1[None])[0]
    feats = torch.cat([mf, d1.T, d2.T], dim=1)
    return (feats - feats.mean(0)) / (feats.std(0, unbiased=False) + 1e-5)


def fit_kmeans(waves: list[np.ndarray], h: HubertParams, window: int, hop: int, seed: int
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """Centroids ``(clusters, 39)`` of the MFCC frames of ``waves`` (scikit-learn k-means++ +
    Lloyd), and fit statistics (frames, mean squared distance to the nearest centroid)."""
    from sklearn.cluster import KMeans  # only this objective needs scikit-learn

    feats = torch.cat([mfcc_features(w, window, hop) for w in waves]).numpy().astype(np.float64)
    if len(feats) < h.clusters:
        raise ValueError(f"hubert: {len(feats)} MFCC frames cannot make {h.clusters} clusters; "
                         "raise hubert.kmeans_minutes or lower hubert.clusters")
    km = KMeans(n_clusters=h.clusters, init="k-means++", n_init=1, max_iter=h.kmeans_iters, random_state=seed)
    km.fit(feats)
    stats = {"kmeans_frames": int(len(feats)), "kmeans_inertia_per_frame": float(km.inertia_ / len(feats)),
             "kmeans_iterations": int(km.n_iter_)}
    return torch.from_numpy(km.cluster_centers_).float(), stats


def assign_clusters(feats: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid of every row of ``feats``."""
    return torch.cdist(feats, centroids).argmin(dim=1)


def cluster_targets(batch: Batch, frames: int, centroids: torch.Tensor, window: int, hop: int) -> torch.Tensor:
    """``(B, frames)`` cluster ids of every encoder token of a batch, -100 beyond each
    utterance's end. Computed from the batch's own (speed-perturbed, cropped) audio, in float32
    even inside a training step's bfloat16 autocast (``pretrain.precision``): the targets are
    the k-means fit's own nearest centroids, not an approximation of them."""
    out = torch.full((len(batch.index), frames), -100, dtype=torch.long)
    lengths = batch.attention_mask.sum(dim=1).tolist()
    with torch.autocast("cpu", enabled=False):
        for i, n in enumerate(lengths):
            feats = mfcc_features(batch.input_values[i, : int(n)].detach().cpu(), window, hop)
            if len(feats):
                ids = assign_clusters(feats, centroids)[:frames]
                out[i, : len(ids)] = ids
    return out.to(batch.input_values.device)


def frame_phones(phones: pd.DataFrame, frames: int, window: int, hop: int) -> list[str | None]:
    """The phone under the centre of each of ``frames`` encoder tokens of one utterance
    (``phones``: its ``phone``, ``start``, ``end`` rows in seconds); None where no phone is."""
    starts, ends = phones["start"].to_numpy(), phones["end"].to_numpy()
    names = phones["phone"].tolist()
    out: list[str | None] = []
    for i in range(frames):
        t = (i * hop + window / 2) / SAMPLE_RATE
        j = int(np.searchsorted(starts, t, side="right")) - 1
        out.append(names[j] if 0 <= j < len(names) and t < ends[j] else None)
    return out


def target_quality(clusters: list[int], phones: list[str]) -> dict[str, float]:
    """How much a frame's cluster says about its phone (HuBERT paper, section IV-D), over
    paired frame labels: phone purity (mean over clusters of the share of its frames that are
    its commonest phone, weighted by cluster size), cluster purity (the same from the phone's
    side) and phone-normalised mutual information ``I(phone; cluster) / H(phone)``."""
    if not clusters or len(clusters) != len(phones):
        raise ValueError("target_quality: need equally many (>0) cluster and phone labels")
    joint = pd.crosstab(pd.Series(phones, name="phone"), pd.Series(clusters, name="cluster")).to_numpy(float)
    joint = joint / joint.sum()
    py, pc = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / (py @ pc)[nz])).sum())
    hy = float(-(py[py > 0] * np.log(py[py > 0])).sum())
    return {"frames": len(clusters), "phone_purity": float(joint.max(0).sum()),
            "cluster_purity": float(joint.max(1).sum()), "pnmi": mi / hy if hy > 0 else 0.0}


def phones_by_utt(truth_phones: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The synthesiser's phone rows (``utt_id``, ``phone``, ``start``, ``end``) of each
    utterance, in time order: what :func:`label_frames` and :func:`frame_phones` read."""
    return dict(tuple(truth_phones.sort_values(["utt_id", "start"]).groupby("utt_id")))


def label_frames(rows: pd.DataFrame, phones: dict[str, pd.DataFrame], centroids: torch.Tensor, window: int,
                 hop: int) -> tuple[list[int], list[str], list[str]]:
    """Cluster id, true phone and voice of every encoder token of ``rows`` (manifest rows
    with ``utt_id``, ``path``, ``voice``) that lies inside a phone of ``phones`` (the
    synthesiser's timings, :func:`phones_by_utt`). Utterances without timings are left out."""
    data = AudioSet(rows, preload=False)
    clusters: list[int] = []
    labels: list[str] = []
    voices: list[str] = []
    for i, (utt, voice) in enumerate(zip(rows["utt_id"], rows["voice"])):
        if utt not in phones:
            continue
        feats = mfcc_features(normalise_wave(data.wave(i)), window, hop)
        ids = assign_clusters(feats, centroids).tolist() if len(feats) else []
        for c, ph in zip(ids, frame_phones(phones[utt], len(ids), window, hop)):
            if ph is not None:
                clusters.append(int(c))
                labels.append(ph)
                voices.append(voice)
    return clusters, labels, voices


def target_quality_per_voice(clusters: list[int], phones: list[str], voices: list[str]) -> dict[str, dict[str, float]]:
    """:func:`target_quality` of the frames of each voice separately."""
    frame = pd.DataFrame({"c": clusters, "ph": phones, "v": voices})
    return {voice: target_quality(g["c"].tolist(), g["ph"].tolist()) for voice, g in frame.groupby("v")}


def target_report(model_dir: str | Path, sets: dict[str, pd.DataFrame], truth_phones: pd.DataFrame
                  ) -> dict[str, dict[str, Any]]:
    """How well the k-means targets a hubert-pretrained model was trained on (its folder's
    ``kmeans.pt``) predict the true phones: :func:`target_quality` over every frame of each
    named set of manifest rows (``utt_id``, ``path``, ``voice``) that ``truth_phones`` times,
    overall and per voice (``per_voice``). A set without timed utterances is left out."""
    path = Path(model_dir) / KMEANS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: no {KMEANS_FILE}; the folder was not pretrained with objective hubert")
    blob = torch.load(path, weights_only=True)
    phones = phones_by_utt(truth_phones)
    out: dict[str, dict[str, Any]] = {}
    for name, rows in sets.items():
        c, ph, v = label_frames(rows.reset_index(drop=True), phones, blob["centroids"], blob["window"], blob["hop"])
        if c:
            out[name] = {**target_quality(c, ph), "per_voice": target_quality_per_voice(c, ph, v)}
    return out


class MaskedPrediction(torch.nn.Module):
    """A wav2vec 2.0 pretraining model with HuBERT's prediction head.

    ``forward`` masks the given tokens (the model's learned mask embedding), runs the
    transformer and returns ``(B, T, clusters)`` logits: cosine similarity between a
    projection of each output and each cluster's embedding, over the temperature.
    """

    def __init__(self, ssl: Wav2Vec2ForPreTraining, h: HubertParams) -> None:
        super().__init__()
        self.ssl = ssl
        self.temperature = h.temperature
        self.final_proj = torch.nn.Linear(ssl.config.hidden_size, h.final_dim)
        self.cluster_embeddings = torch.nn.Parameter(torch.empty(h.clusters, h.final_dim).uniform_(-1.0, 1.0))

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                mask_time_indices: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.ssl.wav2vec2(input_values, attention_mask=attention_mask,
                                   mask_time_indices=mask_time_indices).last_hidden_state
        z = F.normalize(self.final_proj(hidden).float(), dim=-1)
        e = F.normalize(self.cluster_embeddings, dim=-1)
        return z @ e.T / self.temperature


def masked_prediction_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                           unmasked_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy per masked token (plus ``unmasked_weight`` × the same on unmasked tokens)
    and the share of masked / unmasked tokens whose top cluster is the target."""
    valid = targets >= 0
    logs: dict[str, float] = {}
    total = logits.new_zeros(())
    for name, sel, weight in (("masked", valid & mask, 1.0), ("unmasked", valid & ~mask, unmasked_weight)):
        n = int(sel.sum())
        if n == 0:
            continue
        lg, tg = logits[sel], targets[sel]
        ce = F.cross_entropy(lg, tg)
        logs[f"{name}_loss"] = float(ce.detach())
        logs[f"{name}_accuracy"] = float((lg.detach().argmax(-1) == tg).float().mean())
        if weight > 0:
            total = total + weight * ce
    logs["loss"] = float(total.detach())
    return total, logs


def _pool_waves(data: AudioSet, minutes: float, seed: int) -> list[np.ndarray]:
    """Normalised waveforms of randomly drawn pool utterances, up to ``minutes`` of audio."""
    order = np.random.default_rng(seed).permutation(len(data))
    waves, total = [], 0.0
    for i in order:
        if total >= minutes * 60:
            break
        w = data.wave(int(i))
        waves.append(normalise_wave(w))
        total += len(w) / SAMPLE_RATE
    return waves


def load_or_fit_centroids(data: AudioSet, h: HubertParams, window: int, hop: int, seed: int,
                          ckpt_dir: str | Path, fp: str) -> tuple[torch.Tensor, dict[str, float]]:
    """The run's centroids: read from ``ckpt_dir`` when a run with the same fingerprint fitted
    them (a resumed run must keep its targets), else fitted and written there atomically."""
    path = Path(ckpt_dir) / "kmeans.pt"
    if path.is_file():
        blob = torch.load(path, weights_only=True)
        if blob.get("fingerprint") == fp:
            return blob["centroids"], blob["stats"]
    centroids, stats = fit_kmeans(_pool_waves(data, h.kmeans_minutes, seed), h, window, hop, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"fingerprint": fp, "centroids": centroids, "stats": stats}, tmp)
    return centroids, stats


def hubert_objective(ssl: Wav2Vec2ForPreTraining, p: PretrainParams, data: AudioSet, seed: int,
                     ckpt_dir: str | Path, fp: str) -> SSLObjective:
    """The masked-prediction objective for :func:`s6damon.train.pretrain.pretrain`
    (``pretrain.objective: hubert``; settings ``p.hubert``).

    The k-means centroids are fitted once per run, before the first step, on
    ``p.hubert.kmeans_minutes`` of ``data``, and kept in ``ckpt_dir`` for resumption; the
    saved model folder gets them too (``kmeans.pt``: centroids, fit statistics and the
    frame geometry), so the targets a model was trained on travel with it. Its history logs
    the loss and the accuracy of the predicted cluster on masked and unmasked tokens.
    """
    h = p.hubert
    window, hop = frame_geometry(ssl.config)
    centroids, kstats = load_or_fit_centroids(data, h, window, hop, seed, ckpt_dir, fp)
    ck.seed_everything(seed)  # the head starts the same whether the centroids were fitted or loaded
    model = MaskedPrediction(ssl, h)

    def step(net: torch.nn.Module, batch: Batch, step: int):
        inner = unwrap(net)
        spans, _ = mask_spans(inner.ssl, batch, p.mask_time_prob, p.mask_time_length)
        mask = torch.from_numpy(spans).to(batch.input_values.device)
        targets = cluster_targets(batch, mask.shape[1], centroids, window, hop)
        logits = net(**model_inputs(inner.ssl, batch), mask_time_indices=mask)
        return masked_prediction_loss(logits, targets, mask, h.unmasked_weight)

    def save_targets(folder: Path) -> None:
        torch.save({"centroids": centroids, "stats": kstats, "window": window, "hop": hop}, folder / KMEANS_FILE)

    return SSLObjective(model, step, ("loss", "masked_accuracy", "unmasked_accuracy"), kstats, save_targets)
