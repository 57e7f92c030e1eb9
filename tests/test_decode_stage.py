"""The decode stage end to end on the tiny profile (from a copy of the tiny spine).

The finetuned model is exported first, so the stage decodes one exported folder (through
the export's own graph) and one plain CTC checkpoint (the scratch model), as the default
``decode.models`` asks.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.conftest import copy_spine


@pytest.fixture(scope="module")
def decode_run(tiny_spine, tmp_path_factory):
    from flows.decode import decode
    from s6damon.export import export_model

    root = copy_spine(tiny_spine[0], tmp_path_factory.mktemp("decode") / "project")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        export_model("models/finetuned", "models/export/finetuned")
        out = decode(params_path="params.yaml")
    return root, out


def test_every_model_split_and_decoder_is_scored(decode_run):
    from s6damon import io

    root, out = decode_run
    metrics = json.loads((root / "metrics/decode.json").read_text())
    got = {(r["model"], r["split"], r["decoder"]) for r in metrics["results"]}
    # the tiny profile sets decode.adapt.warp and decode.speaker_adapt.tta
    variants = ("", "_warp", "_tta", "_tta_warp", "_spk", "_spk_tta")
    assert got == {(m, s, d + v) for m in ("finetuned", "scratch") for s in ("test", "test_open")
                   for d in ("greedy", "beam_lm") for v in variants}
    assert set(metrics["tuned"]) == {m + v for m in ("finetuned", "scratch") for v in variants}
    for r in metrics["results"]:
        assert r["wer"] >= 0.0 and 0.0 <= r["oov_rate"] <= 1.0 and r["utterances"] > 0
    for name, t in metrics["tuned"].items():
        assert len(t["grid"]) == 2 and t["lm_weight"] in (0.5, 2.0)
    hyps = io.read_parquet(root / "data/decode/hyps.parquet")
    assert len(hyps) == sum(r["utterances"] for r in metrics["results"])
    assert (root / "reports/decode.md").read_text().startswith("# Greedy vs.")


def test_greedy_rows_match_the_finetune_stage(decode_run):
    """The decode stage's greedy WER is the finetune stage's own test WER (same model, same decoding)."""
    root, out = decode_run
    finetune = json.loads((root / "metrics/finetune.json").read_text())
    row = next(r for r in out["results"] if (r["model"], r["split"], r["decoder"]) == ("finetuned", "test", "greedy"))
    assert row["wer"] == pytest.approx(finetune["test"]["wer"])


def test_warped_rows_decode_the_averaged_posteriors_of_the_export(decode_run):
    """greedy_warp of the exported model = greedy reading of the mean posterior over its three
    resampled copies, each run through the export's own graph."""
    import pandas as pd

    from s6damon import io
    from s6damon.decode.beam import export_emissions
    from s6damon.decode.warp import averaged, greedy_text
    from s6damon.train.evaluate import score

    root, out = decode_run
    manifest = io.read_parquet(root / "data/corpus/manifest.parquet")
    test = manifest[manifest["split"] == "test"].sort_values("utt_id").reset_index(drop=True)
    factors = [0.95, 1.0, 1.05]
    paths = [root / p for p in test["path"]]  # relative paths are the project's; absolute ones stay
    per = [export_emissions(root / "models/export/finetuned", paths, f) for f in factors]
    assert all(slow.shape[0] > fast.shape[0] for slow, fast in zip(per[0][0], per[2][0]))
    tok = per[1][1]
    hyp = [greedy_text(lp, tok) for lp in averaged([p[0] for p in per], factors)]
    row = next(r for r in out["results"]
               if (r["model"], r["split"], r["decoder"]) == ("finetuned", "test", "greedy_warp"))
    assert row["wer"] == pytest.approx(score(pd.DataFrame({"ref": test["text"], "hyp": hyp}))["wer"])


def test_adapted_rows_decode_the_adapted_export(decode_run):
    """greedy_tta of the exported model = greedy reading after adapting its graph to each
    test utterance with the profile's decode.adapt settings."""
    import pandas as pd

    from s6damon import io
    from s6damon.config import load_params
    from s6damon.decode.beam import export_emissions
    from s6damon.decode.warp import greedy_text
    from s6damon.train.evaluate import score

    root, out = decode_run
    adapt = load_params(root / "params.yaml").decode.adapt
    assert adapt.steps > 0 and out["adapt"]["steps"] == adapt.steps and out["adapt"]["models"] == list(adapt.models)
    manifest = io.read_parquet(root / "data/corpus/manifest.parquet")
    test = manifest[manifest["split"] == "test"].sort_values("utt_id").reset_index(drop=True)
    logps, tok = export_emissions(root / "models/export/finetuned", [root / p for p in test["path"]], adapt=adapt)
    hyp = [greedy_text(lp, tok) for lp in logps]
    row = next(r for r in out["results"]
               if (r["model"], r["split"], r["decoder"]) == ("finetuned", "test", "greedy_tta"))
    assert row["wer"] == pytest.approx(score(pd.DataFrame({"ref": test["text"], "hyp": hyp}))["wer"])


def test_speaker_adapted_rows_decode_the_export_adapted_to_each_speakers_other_folds(decode_run):
    """greedy_spk of the exported model = greedy reading of each test fold by its graph adapted
    to the speaker's other folds, with the profile's decode.speaker_adapt and seed."""
    import pandas as pd

    from s6damon import io
    from s6damon.config import load_params
    from s6damon.decode.beam import speaker_emissions
    from s6damon.decode.warp import greedy_text
    from s6damon.train.evaluate import score

    root, out = decode_run
    params = load_params(root / "params.yaml")
    spk = params.decode.speaker_adapt
    assert spk.epochs > 0 and out["speaker_adapt"]["folds"] == spk.folds
    manifest = io.read_parquet(root / "data/corpus/manifest.parquet")
    test = manifest[manifest["split"] == "test"].sort_values("utt_id").reset_index(drop=True)
    test["path"] = [str(root / p) for p in test["path"]]
    assert spk.tta  # the tiny profile scores both readings
    hyps = io.read_parquet(root / "data/decode/hyps.parquet")
    for decoder, tta in (("greedy_spk", False), ("greedy_spk_tta", True)):
        logps, tok = speaker_emissions(root / "models/export/finetuned", test, params.decode.adapt,
                                       dataclasses.replace(spk, tta=tta), seed=params.seed)
        hyp = [greedy_text(lp, tok) for lp in logps]
        row = next(r for r in out["results"]
                   if (r["model"], r["split"], r["decoder"]) == ("finetuned", "test", decoder))
        assert row["wer"] == pytest.approx(score(pd.DataFrame({"ref": test["text"], "hyp": hyp}))["wer"])
        stored = hyps[(hyps["model"] == "finetuned") & (hyps["split"] == "test") & (hyps["decoder"] == decoder)]
        assert list(stored.sort_values("utt_id")["hyp"]) == hyp


def test_adapt_models_must_name_decoded_models():
    from flows.decode import _adapted_names

    assert _adapted_names(["scratch", "finetuned", "safari_0.3"], ["safari_*", "scratch"]) == {"safari_0.3", "scratch"}
    with pytest.raises(ValueError, match="decode.adapt.models: 'finetune' matches none"):
        _adapted_names(["scratch", "finetuned"], ["finetune"])
    with pytest.raises(ValueError, match="decode.speaker_adapt.models: 'x' matches none"):
        _adapted_names(["scratch"], ["x"], "decode.speaker_adapt.models")


def test_lm_holds_no_scored_sentence_and_kenlm_reads_it(decode_run):
    from s6damon import io
    from s6damon.decode import read_arpa

    root, out = decode_run
    assert out["lm"]["source"] == "estimated" and out["lm"]["order"] == 3
    model = read_arpa(root / "data/decode/lm.arpa")
    manifest = io.read_parquet(root / "data/corpus/manifest.parquet")
    lexicon = {line.split()[0] for line in (root / "data/decode/lexicon.txt").read_text().splitlines()}
    assert set(model.vocab) - {"<s>", "</s>", "<unk>"} == lexicon
    train = set(manifest.loc[manifest.split == "train", "text"])
    held = set(manifest.loc[manifest.split.isin(["dev", "test", "test_open"]), "text"])
    assert out["lm"]["excluded_sentences"] == sum(t in held for t in manifest.loc[manifest.split == "train", "text"])
    assert out["lm"]["sentences"] == int((manifest.split == "train").sum()) - out["lm"]["excluded_sentences"]
    assert train  # the tiny corpus has train text to estimate from


def test_a_missing_external_lm_is_named(decode_run, monkeypatch):
    import yaml

    from flows.decode import decode

    root, _ = decode_run
    monkeypatch.chdir(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["decode"]["lm_path"] = "nowhere/lm.arpa"
    (root / "bad.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(FileNotFoundError, match="decode.lm_path: nowhere/lm.arpa"):
        decode(params_path="bad.yaml")


def test_no_matching_model_folder_is_named(decode_run, monkeypatch):
    import yaml

    from flows.decode import decode

    root, _ = decode_run
    monkeypatch.chdir(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["decode"]["models"] = ["models/nothing_here/*"]
    (root / "none.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(FileNotFoundError, match="decode.models: no model folder matches"):
        decode(params_path="none.yaml")


def test_a_rerun_searches_again_only_for_the_changed_variants(decode_run, tmp_path, monkeypatch):
    """Each variant's tuned search is a cached task: after an edit of decode.speaker_adapt
    only the speaker-adapted variants tune and decode again, and every other row is the
    first run's."""
    import yaml

    import s6damon.decode
    from flows.decode import decode

    root = copy_spine(decode_run[0], tmp_path / "again")
    monkeypatch.chdir(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["decode"]["speaker_adapt"]["epochs"] += 1
    (root / "spk.yaml").write_text(yaml.safe_dump(params))
    calls = []
    real_tune = s6damon.decode.tune

    def counted(*args, **kwargs):
        calls.append(1)
        return real_tune(*args, **kwargs)

    monkeypatch.setattr(s6damon.decode, "tune", counted)
    again = decode(params_path="spk.yaml")
    # two models x (_spk, _spk_tta) searched; the other 2 x 4 variants from the cache
    assert len(calls) == 4
    first = {(r["model"], r["split"], r["decoder"]): r["wer"] for r in decode_run[1]["results"]}
    for r in again["results"]:
        if "_spk" not in r["decoder"]:
            assert r["wer"] == first[(r["model"], r["split"], r["decoder"])]
    assert {k: v for k, v in again["tuned"].items() if "_spk" not in k} == \
        {k: v for k, v in decode_run[1]["tuned"].items() if "_spk" not in k}
