"""Prefect task caching keyed on file contents, params and source."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow, task

from s6damon.config import load_params
import tasks.caching
from tasks.caching import content_cache, fingerprint, run_with_outputs
from tasks.runs import run_folder

CALLS: list[str] = []


@task(cache_policy=content_cache("s6damon/io.py"), persist_result=True)
def read_words(path: Path, repeat: int) -> str:
    CALLS.append(path.read_text())
    return path.read_text() * repeat


@flow
def reader(path: Path, repeat: int = 1) -> str:
    return read_words(path, repeat)


# Two training tasks alike in everything but their bodies: the second scales the loss.
@task(cache_policy=content_cache("trainer"), persist_result=True)
def train(data: Path, seed: int) -> str:
    return str(run_folder(Path("runs")))


@task(cache_policy=content_cache("trainer"), persist_result=True)
def train_scaled(data: Path, seed: int) -> str:
    loss_scale = 2  # noqa: F841  (only the source differs)
    return str(run_folder(Path("runs")))


@flow
def training(trainer: str, data: Path, seed: int) -> str:
    return {"train": train, "train_scaled": train_scaled}[trainer](data, seed)


def test_fingerprint_follows_content_not_path(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("one")
    key1 = fingerprint(a)
    a.write_text("two")
    assert fingerprint(a) != key1
    b = tmp_path / "b.txt"
    b.write_text("two")
    assert fingerprint(b) == fingerprint(a)  # same bytes, another name: same key


def test_fingerprint_covers_params_and_folders(tmp_path):
    p = load_params(Path(__file__).parent.parent / "params.yaml")
    assert fingerprint(p.finetune) == fingerprint(p.finetune)
    assert fingerprint(p.finetune) != fingerprint(p.pretrain)
    d = tmp_path / "d"
    d.mkdir()
    (d / "x").write_text("1")
    k = fingerprint(d)
    (d / "x").write_text("2")
    assert fingerprint(d) != k


def test_task_reruns_when_file_content_changes(prefect_server, tmp_path):
    f = tmp_path / "words.txt"
    f.write_text("alpha ")
    CALLS.clear()
    assert reader(f) == "alpha "
    assert reader(f) == "alpha "          # cached: same content
    assert len(CALLS) == 1
    f.write_text("beta ")                 # same path, new content: must re-run
    assert reader(f) == "beta "
    assert reader(f, repeat=2) == "beta beta "  # another argument: re-run
    assert len(CALLS) == 3


@task(cache_policy=content_cache(), persist_result=True)
def make_file(dest: str) -> dict:
    CALLS.append(dest)
    Path(dest).write_text("x")
    return {"path": dest}


@flow
def maker(dest: str) -> dict:
    return run_with_outputs(make_file, dest, outputs=lambda r: [r["path"]])


def test_cached_result_whose_files_are_gone_is_recomputed(prefect_server, tmp_path):
    dest = str(tmp_path / "out.txt")
    CALLS.clear()
    maker(dest)
    maker(dest)
    assert len(CALLS) == 1
    Path(dest).unlink()
    maker(dest)
    assert len(CALLS) == 2 and Path(dest).exists()


def test_run_folder_follows_the_task_cache_key(prefect_server, tmp_path, monkeypatch):
    """A run resumes from the checkpoints in its folder: whatever reruns the task (inputs, the
    core code it names, its own body) must also give it a new folder."""
    monkeypatch.setattr(tasks.caching, "PROJECT", tmp_path)
    (tmp_path / "trainer").mkdir()
    loss = tmp_path / "trainer" / "loss.py"
    loss.write_text("def loss(x):\n    return x\n")
    data = tmp_path / "train.parquet"
    data.write_text("rows")

    def folder(trainer: str = "train", seed: int = 1234) -> str:
        return training(trainer, data, seed)

    first = folder()
    assert first.startswith("runs/") and len(first) == len("runs/") + 16
    assert folder() == first  # same code and inputs: same folder, so it resumes
    loss.write_text("def loss(x):\n    return 2 * x\n")  # the core code the task names
    assert folder() != first
    loss.write_text("def loss(x):\n    return x\n")
    assert folder() == first
    assert folder(seed=4321) != first  # an input
    assert folder("train_scaled") != first  # the task's own body


def test_run_folder_outside_a_task_is_an_error():
    with pytest.raises(RuntimeError, match="cache key"):
        run_folder(Path("runs"))
