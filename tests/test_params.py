"""params.yaml validation: every bad value is reported with its dotted key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from s6damon.config import Params, ParamsError, load_params

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["params.yaml", "profiles/tiny.yaml"])
def test_shipped_profiles_are_valid_and_complete(name):
    params = load_params(REPO / name)
    assert isinstance(params, Params)
    # every key of the schema is spelled out in the file, so `dvc params diff` shows it
    raw = yaml.safe_load((REPO / name).read_text())
    assert set(raw) == set(Params.__dataclass_fields__)


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"finetune": {"stepz": 3}}, "finetune.stepz"),
        ({"finetune": {"steps": -1}}, "finetune.steps"),
        ({"finetune": {"learning_rate": "fast"}}, "finetune.learning_rate"),
        ({"align": {"backend": "htk"}}, "align.backend"),
        ({"prepare": {"on_bad_input": "ignore"}}, "prepare.on_bad_input"),
        ({"seed": 1.5}, "seed"),
        ({"surprise": 1}, "surprise"),
        ({"model": {"conv_dim": [32, "x"]}}, "model.conv_dim[1]"),
        ({"salad": {"drop_ratio": 1.5}}, "salad.drop_ratio"),
        ({"salad": {"methods": ["salad_alignment", "pooling"]}}, "salad.methods"),
        ({"salad": {"drop_ratios": [0.3, 0.6]}}, "salad.drop_ratios"),  # alternate rule caps at 0.5
        ({"salad": {"detector": {"drop_rule": "sometimes"}}}, "salad.detector.drop_rule"),
        ({"salad": {"sources": ["ctc"]}}, "salad.methods"),  # salad_alignment needs its source
        ({"salad": {"finetune": {"steps": 10, "freeze_feature_encoder_steps": 5}}},
         "salad.finetune.freeze_feature_encoder_steps"),
        ({"finetune": {"distill_weight": 1.0}}, "finetune.distill_weight"),  # no teacher there
        ({"finetune": {"distill_hidden_weight": 1.0}}, "finetune.distill_hidden_weight"),  # nor here
        ({"salad": {"finetune": {"distill_hidden_weight": 1.0}}}, "salad.finetune.distill_hidden_weight"),
        ({"safari": {"finetune": {"distill_hidden_weight": -1.0}}}, "safari.finetune.distill_hidden_weight"),
        ({"finetune": {"feature_cache": True, "freeze_feature_encoder_steps": 0}}, "finetune.feature_cache"),
        ({"safari": {"finetune": {"feature_cache": True}}}, "safari.finetune.feature_cache"),
        ({"salad": {"finetune": {"feature_cache": True, "distill_weight": 1.0}}}, "salad.finetune.feature_cache"),
        ({"finetune": {"feature_cache_speeds": 0}}, "finetune.feature_cache_speeds"),
        ({"finetune": {"average": {"kind": "median"}}}, "finetune.average.kind"),
        ({"salad": {"finetune": {"average": {"ema_decay": 1.5}}}}, "salad.finetune.average.ema_decay"),
        ({"finetune": {"freeze_feature_encoder_from": -1}}, "finetune.freeze_feature_encoder_from"),
        ({"finetune": {"freeze_feature_encoder_from": "late"}}, "finetune.freeze_feature_encoder_from"),
        ({"safari": {"finetune": {"distill_weight": -1.0}}}, "safari.finetune.distill_weight"),
        ({"safari": {"ramp_steps": 30}}, "safari.ramp_steps"),  # not a multiple of adjust_every
        ({"safari": {"ramp_steps": 200}}, "safari.ramp_steps"),  # no steps left at the full level
        ({"pretrain": {"splits": ["train", "test"]}}, "pretrain.splits"),  # never an evaluation split
        ({"prepare": {"synth": {"unlabeled_minutes": 5.0}}}, "prepare.synth.unlabeled_minutes"),
        ({"decode": {"adapt": {"scope": "all"}}}, "decode.adapt.scope"),
        ({"decode": {"adapt": {"steps": -1}}}, "decode.adapt.steps"),
        ({"decode": {"adapt": {"em_weight": 1.5}}}, "decode.adapt.em_weight"),
        ({"decode": {"adapt": {"models": []}}}, "decode.adapt.models"),
        ({"decode": {"speaker_adapt": {"models": []}}}, "decode.speaker_adapt.models"),
        ({"decode": {"speaker_adapt": {"folds": 0}}}, "decode.speaker_adapt.folds"),
        ({"decode": {"speaker_adapt": {"batch_utterances": 0}}}, "decode.speaker_adapt.batch_utterances"),
        ({"concurrent_runs": 0}, "concurrent_runs"),
        ({"concurrent_runs": 3}, "concurrent_runs"),  # more runs than threads
    ],
)
def test_bad_values_name_the_key(tmp_path, patch, key):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    def merge(into: dict, value: dict) -> None:
        for k, v in value.items():
            if isinstance(v, dict) and isinstance(into.get(k), dict):
                merge(into[k], v)
            else:
                into[k] = v

    for section, value in patch.items():
        if isinstance(value, dict):
            merge(raw[section], value)
        else:
            raw[section] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert f"'{key}'" in str(err.value)
    assert str(path) in str(err.value)


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: [1,\n")
    with pytest.raises(ParamsError, match="params.yaml"):
        load_params(path)


@pytest.mark.parametrize("name", ["params.yaml", "profiles/tiny.yaml"])
def test_profiles_parse_with_dvcs_yaml_reader(name):
    # DVC reads params.yaml with ruamel, which is stricter than PyYAML (e.g. `a:b` in a list).
    from ruamel.yaml import YAML

    assert YAML(typ="safe").load((REPO / name).read_text()) == yaml.safe_load((REPO / name).read_text())


def test_safari_for_run_keeps_only_the_fields_a_method_reads():
    """The SAFARI run cache key: a SAFARI-only key reaches only SAFARI runs, the budget all."""
    from s6damon.config.model import FinetuneParams
    from s6damon.config.safari import METHODS, RUN_FIELDS, SafariParams

    base = SafariParams()
    changed = dataclasses.replace(base, regrow_init="zero", parp_reprune_every=7)
    assert changed.for_run("safari").regrow_init == "zero"
    assert changed.for_run("safari").parp_reprune_every == base.parp_reprune_every
    for method in ("omp", "random", "small_dense", "dense", "parp_masked_finetune"):
        assert changed.for_run(method) == base.for_run(method)
    assert changed.for_run("parp").parp_reprune_every == 7
    budget = dataclasses.replace(base, finetune=FinetuneParams(steps=11))
    assert all(budget.for_run(m).finetune.steps == 11 for m in RUN_FIELDS)
    assert set(RUN_FIELDS) == {"dense", *METHODS}
    with pytest.raises(ValueError, match="unknown safari method"):
        base.for_run("nope")


@pytest.mark.parametrize("name", ["params.yaml", "profiles/tiny.yaml"])
def test_params_survive_dvc_exp_run_set(name, tmp_path):
    """``dvc exp run -S key=value`` rewrites params.yaml with DVC's round-trip YAML writer,
    which drops quotes a flow-style mapping of ``voice:variant`` keys needs; what it writes
    must load again, with only the set key changed."""
    import shutil

    from dvc.utils.serialize import load_yaml, modify_yaml

    from s6damon.config.schema import to_dict

    path = tmp_path / "params.yaml"
    shutil.copy(REPO / name, path)
    before = to_dict(load_params(path))
    with modify_yaml(path) as data:
        data["finetune"]["steps"] = before["finetune"]["steps"] + 1
    load_yaml(path)   # DVC reads it back for the run (its parser is stricter than PyYAML's)
    after = to_dict(load_params(path))
    after["finetune"]["steps"] -= 1
    assert after == before
