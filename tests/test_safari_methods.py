"""SAFARI and each baseline's core function on a tiny random model for a few steps.

Checks what the methods promise: masks reach the FLOPs target, the kept count per kind is
constant through prune-and-grow (no layer left without a head), pruned units have no effect
on the deployed model, PARP's re-prune restores exactly the target sparsity after the zeroed
weights regrew, and a killed SAFARI run resumes with the mask it had.
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from _train_fixtures import make_manifest, tiny_params

from s6damon.config.safari import SafariParams
from s6damon.pruning import StructuredMask, apply_masks, encoder_flops, materialise, removed_share
from s6damon.pruning.masks import load_mask
from s6damon.pruning.model_parts import encoder_layers
from s6damon.safari import methods as M
from s6damon.safari import unstructured as U
from s6damon.safari.measure import cost, load_result
from s6damon.safari.selection import fisher_scores, initial_mask, kept_per_layer

KINDS = ["heads", "neurons", "conv_channels"]
LEVEL = 0.4


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    m, _, p = tiny_params()
    # two layers of four heads, so prune-and-grow has something to move between layers
    m = dataclasses.replace(m, num_layers=2, num_heads=4)
    p = dataclasses.replace(p, steps=6, checkpoint_every=2, eval_every=100, freeze_feature_encoder_steps=0,
                            mask_time_prob=0.0, speed_perturb=[1.0, 1.0])
    # adjust_kinds=KINDS: the method tests also swap conv channels (and repair the FLOPs after)
    sp = SafariParams(sparsities=[LEVEL], kinds=KINDS, adjust_kinds=KINDS, adjust_every=2, swap_fraction=0.5,
                      parp_reprune_every=2, finetune=p)
    df = make_manifest(tmp_path_factory.mktemp("wav"), 8)
    return M.RunContext(m=m, sp=sp, train=df, dev=None, seed=3, threads=1)


def _audio() -> torch.Tensor:
    return torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))


def _logits(model) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(_audio()).logits


def _assert_pruned_units_inert(result: M.MethodResult) -> None:
    """Masked logits equal the physically pruned model's, and scrambling every pruned
    unit's weights changes nothing."""
    model, _, mask = load_result(result.model_dir, result.mask_path, result.unstructured)
    masked = _logits(model)
    torch.testing.assert_close(_logits(materialise(model, mask)), masked, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        for l, layer in enumerate(encoder_layers(model)):
            ffn = layer.feed_forward
            ffn.intermediate_dense.weight[~mask.neurons[l]] = 7.0
            ffn.output_dense.weight[:, ~mask.neurons[l]] = -7.0
            dim = model.config.hidden_size // model.config.num_attention_heads
            for h in (~mask.heads[l]).nonzero().squeeze(1).tolist():
                layer.attention.v_proj.weight[h * dim:(h + 1) * dim] = 5.0
    torch.testing.assert_close(_logits(model), masked, atol=1e-5, rtol=1e-4)


def test_magnitude_masks_hit_the_flops_target_exactly(ctx):
    model, _ = M._start_model(ctx, None)
    dense = encoder_flops(model, None, 10.0)["total"]
    masks = U.magnitude_masks(model, LEVEL, 10.0)
    removed = U.removed_flops(model, masks, 10.0)
    max_cost = max(c for _, _, c in U.prunable_weights(model, 10.0))
    assert LEVEL * dense <= removed < LEVEL * dense + max_cost
    U.zero_weights(model, masks)
    assert U.zeroed_share(model, 10.0) >= LEVEL
    with pytest.raises(ValueError, match="unstructured"):
        U.magnitude_masks(model, 0.95, 10.0)


def test_safari_keeps_sparsity_constant_and_learns_the_distribution(ctx, tmp_path):
    res = M.safari(ctx, None, LEVEL, tmp_path / "run")
    masks = [load_mask(p)
             for p in sorted((tmp_path / "run" / "masks").glob("step_*.json"))]
    assert len(masks) == 3  # initial + adjustments after steps 2 and 4 (none at the last step)
    model, _, _ = load_result(res.model_dir, res.mask_path, False)
    for mask in masks:  # the FLOPs share stays at the level through every adjustment
        assert LEVEL <= removed_share(model, mask, 10.0) < LEVEL + 0.05
        assert all(bool(h.any()) for h in mask.heads) and all(bool(n.any()) for n in mask.neurons)
    assert any(masks[-1].to_dict()[k] != masks[0].to_dict()[k] for k in KINDS), "prune-and-grow moved nothing"
    final = load_mask(res.mask_path)
    assert final.to_dict() == masks[-1].to_dict()
    swaps = [h["swapped"] for h in res.history if "swapped" in h]
    assert len(swaps) == 2 and all(s > 0 for s in swaps)
    _assert_pruned_units_inert(res)


@pytest.mark.parametrize("criterion", ["fisher", "l1"])
def test_safari_initial_mask_follows_the_criterion(ctx, tmp_path, criterion):
    """``safari.criterion`` picks the initial mask: Fisher scores of the start model on the
    training utterances (ranked per FLOP) or weight L1; the run records it."""
    sub = dataclasses.replace(ctx, sp=dataclasses.replace(ctx.sp, criterion=criterion, fisher_utterances=4))
    M.safari(sub, None, LEVEL, tmp_path / "run", stop_at=1)
    model, tok = M._start_model(sub, None)
    fisher = fisher_scores(model, tok, sub.train, 4, sub.seed, KINDS)
    want = {c: initial_mask(model, LEVEL, criterion=c, kinds=KINDS, scope="global", allow_layer_removal=False,
                            seconds=10.0, seed=sub.seed, fisher=fisher).to_dict() for c in ("fisher", "l1")}
    assert want["fisher"] != want["l1"]
    assert load_mask(tmp_path / "run" / "initial_mask.json").to_dict() == want[criterion]


def test_safari_swaps_only_the_adjust_kinds(ctx, tmp_path):
    """The default ``adjust_kinds`` (heads, neurons): conv channels keep their initial L1 mask."""
    sub = dataclasses.replace(ctx, sp=dataclasses.replace(ctx.sp, adjust_kinds=["heads", "neurons"]))
    M.safari(sub, None, LEVEL, tmp_path / "run")
    masks = [load_mask(p).to_dict() for p in sorted((tmp_path / "run" / "masks").glob("step_*.json"))]
    assert len(masks) == 3
    assert all(m["conv_channels"] == masks[0]["conv_channels"] for m in masks)
    assert any(m[k] != masks[0][k] for m in masks for k in ("heads", "neurons")), "prune-and-grow moved nothing"


def test_ramp_level_is_cubic_from_zero_to_the_level():
    from s6damon.safari.hooks import ramp_level

    assert ramp_level(0, 100, 0.5) == 0.0
    assert ramp_level(50, 100, 0.5) == pytest.approx(0.5 * (1 - 0.5 ** 3))
    assert ramp_level(100, 100, 0.5) == ramp_level(150, 100, 0.5) == 0.5
    assert ramp_level(0, 0, 0.5) == 0.5  # no ramp: the whole level from the start
    assert all(ramp_level(s, 100, 0.5) < ramp_level(s + 25, 100, 0.5) for s in range(0, 100, 25))


def test_safari_ramp_prunes_gradually_then_swaps(ctx, tmp_path):
    """``safari.ramp_steps``: training starts dense, each adjustment inside the ramp prunes
    further (nested masks) to the cubic schedule's share, and prune-and-grow at the full level
    takes over after it."""
    from s6damon.safari.hooks import ramp_level

    p = dataclasses.replace(ctx.p, steps=8)
    sub = dataclasses.replace(ctx, sp=dataclasses.replace(ctx.sp, ramp_steps=4, finetune=p))
    res = M.safari(sub, None, LEVEL, tmp_path / "run")
    steps = sorted((tmp_path / "run" / "masks").glob("step_*.json"))
    assert [int(f.stem.split("_")[1]) for f in steps] == [0, 2, 4, 6]
    masks = [load_mask(f) for f in steps]
    model, _, _ = load_result(res.model_dir, res.mask_path, False)
    shares = [removed_share(model, m, 10.0) for m in masks]
    assert shares[0] == 0.0
    for step, share in zip((2, 4, 6), shares[1:], strict=True):
        want = ramp_level(step, 4, LEVEL)
        assert want <= share < want + 0.05, (step, share)
    for before, after in zip(masks[:2], masks[1:3], strict=True):  # ramp: pruned units stay pruned
        for k in KINDS:
            assert all(bool((a <= b).all()) for b, a in zip(before.units(k), after.units(k), strict=True))
    assert [h["pruned"] > 0 for h in res.history if "pruned" in h] == [True, True]
    assert [h["swapped"] > 0 for h in res.history if "swapped" in h] == [True]
    assert load_mask(res.mask_path).to_dict() == masks[-1].to_dict()
    _assert_pruned_units_inert(res)


def test_restore_flops_target_after_conv_swaps(ctx):
    from s6damon.pruning import all_importances, prune_and_grow
    from s6damon.safari.hooks import restore_flops_target

    model, _ = M._start_model(ctx, None)
    mask = initial_mask(model, LEVEL, criterion="l1", kinds=KINDS, scope="global", allow_layer_removal=False,
                        seconds=10.0)
    w = all_importances(model, "l1", KINDS, normalise=True)
    for favour_cheap in (True, False):  # grads that regrow cheap (late) or costly (early) conv channels
        g = {k: [torch.rand(len(m)) for m in mask.units(k)] for k in KINDS}
        g["conv_channels"] = [torch.full((len(m),), float(i if favour_cheap else -i)) + torch.rand(len(m))
                              for i, m in enumerate(mask.conv_channels)]
        new = prune_and_grow(mask, w, g, 0.5, kinds=KINDS)
        fixed = restore_flops_target(model, mask, new, LEVEL, g, KINDS, seconds=10.0, allow_layer_removal=False)
        share = removed_share(model, fixed, 10.0)
        assert LEVEL <= share < LEVEL + 0.05, (favour_cheap, removed_share(model, new, 10.0), share)
        assert all(bool(h.any()) for h in fixed.heads)


def test_killed_safari_run_resumes_with_its_mask(ctx, tmp_path):
    whole = M.safari(ctx, None, LEVEL, tmp_path / "whole")
    killed = M.safari(ctx, None, LEVEL, tmp_path / "resumed", stop_at=3)
    assert killed.metrics["steps"] == 3
    resumed = M.safari(ctx, None, LEVEL, tmp_path / "resumed")
    assert resumed.metrics["resumed_from"] == 2
    assert load_mask(resumed.mask_path).to_dict() == load_mask(whole.mask_path).to_dict()


@pytest.mark.parametrize("structured", [False, True])
def test_parp_regrows_then_reprunes_to_the_target(ctx, tmp_path, structured):
    fn = M.parp_structured if structured else M.parp
    res = fn(ctx, None, LEVEL, tmp_path / "run")
    model, _, mask = load_result(res.model_dir, res.mask_path, res.unstructured)
    assert res.unstructured is not structured
    reprunes = [h for h in res.history if "reprune" in h or "zero_share_before_reprune" in h]
    assert [h["step"] for h in reprunes] == [2, 4, 6]
    if structured:
        assert removed_share(model, mask, 10.0) >= LEVEL
        _assert_pruned_units_inert(res)
    else:
        # zeroed weights regrew between re-prunes, and the final re-prune put the share back
        assert all(h["zero_share_before_reprune"] < LEVEL for h in reprunes)
        masks = torch.load(res.mask_path)
        max_cost = max(c for _, _, c in U.prunable_weights(model, 10.0))
        dense = encoder_flops(model, None, 10.0)["total"]
        assert LEVEL * dense <= U.removed_flops(model, masks, 10.0) < LEVEL * dense + max_cost
        assert U.zeroed_share(model, 10.0) >= LEVEL
        c = cost(model, None, True, 10.0)
        assert c["flops_removed_actual"] >= LEVEL and c["params"] < sum(p.numel() for p in model.parameters())


def test_parp_masked_finetune_keeps_parps_mask(ctx, tmp_path):
    first = M.parp_structured(ctx, None, LEVEL, tmp_path / "parp")
    res = M.parp_masked_finetune(ctx, first, LEVEL, tmp_path / "pmf")
    assert load_mask(res.mask_path).to_dict() == load_mask(first.mask_path).to_dict()
    _assert_pruned_units_inert(res)


@pytest.mark.parametrize("method", ["omp", "random_structured", "small_dense"])
def test_fixed_mask_methods(ctx, tmp_path, method):
    init = None
    if method == "omp":
        init = M.dense(ctx, None, tmp_path / "dense").model_dir
    res = getattr(M, method)(ctx, init, LEVEL, tmp_path / "run")
    model, _, mask = load_result(res.model_dir, res.mask_path, False)
    assert removed_share(model, mask, 10.0) >= LEVEL
    _assert_pruned_units_inert(res)
    c = cost(model, mask, False, 10.0)
    assert c["params"] == sum(p.numel() for p in materialise(model, mask).parameters())
    if method == "small_dense":  # a uniformly narrower model: every layer keeps a prefix, same share
        for kind in KINDS:
            for m in mask.units(kind):
                k = int(m.sum())
                assert bool(m[:k].all()) and not bool(m[k:].any())


def test_random_and_l1_masks_differ_and_random_is_seeded(ctx):
    model, _ = M._start_model(ctx, None)
    kw = dict(kinds=KINDS, scope="global", allow_layer_removal=False, seconds=10.0)
    a = initial_mask(model, LEVEL, criterion="random", seed=1, **kw)
    b = initial_mask(model, LEVEL, criterion="random", seed=1, **kw)
    c = initial_mask(model, LEVEL, criterion="l1", **kw)
    assert a.to_dict() == b.to_dict() and a.to_dict() != c.to_dict()
    assert set(kept_per_layer(c)) == set(KINDS)


def test_global_l1_mask_prunes_every_kind_at_a_similar_pace():
    """On the default model shape, the initial global mask neither wipes out a conv layer
    nor spares a whole kind (raw L1 per FLOP would do both)."""
    from s6damon.config.model import ModelParams
    from s6damon.model.factory import build_ctc_model
    from s6damon.model.vocab import build_tokenizer

    torch.manual_seed(0)
    model = build_ctc_model(ModelParams(), build_tokenizer())
    mask = initial_mask(model, 0.5, criterion="l1", kinds=KINDS, scope="global", allow_layer_removal=False,
                        seconds=10.0)
    assert removed_share(model, mask, 10.0) == pytest.approx(0.5, abs=0.01)
    shares = {k: mask.sparsity(k) for k in KINDS}
    assert all(0.2 < s < 0.8 for s in shares.values()), shares
    assert all(int(m.sum()) >= 0.1 * len(m) for m in mask.conv_channels)


@pytest.mark.parametrize("allow", [False, True])
def test_head_floor_holds_unless_layer_removal_is_on(allow):
    """Layer 0's only head has the smallest weight L1: prune-and-grow keeps it unless layer
    removal is on (the regrown heads go to layer 1, which has the largest gradients)."""
    from pruning_models import tiny_model

    from s6damon.pruning import prune_and_grow

    model = tiny_model()
    mask = StructuredMask.full(model)
    mask.heads[0][1:] = False
    mask.heads[1][:2] = False
    w = {"heads": [torch.zeros(4), torch.ones(4), torch.ones(4)]}
    g = {"heads": [torch.zeros(4), torch.tensor([5.0, 5.0, 0, 0]), torch.zeros(4)]}
    new = prune_and_grow(mask, w, g, swap_fraction=0.3, kinds=("heads",), allow_empty_layers=allow)
    assert new.kept("heads") == mask.kept("heads")
    assert bool(new.heads[1][:2].all())
    assert int(new.heads[0].sum()) == (0 if allow else 1)
