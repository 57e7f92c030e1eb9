"""The training loops run unchanged as a 2-process gloo DDP job (what torchrun sets up)."""

from __future__ import annotations

import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch.multiprocessing as mp

from s6damon.model.factory import load_ctc_model
from _train_fixtures import make_manifest, tiny_params


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, tmp: str, df) -> None:
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank))
    import torch.distributed as dist

    from s6damon.train.finetune import finetune
    from s6damon.train.pretrain import pretrain

    m, pp, fp = tiny_params()
    pretrain(m, pp, df, f"{tmp}/ssl", f"{tmp}/ck_pt", seed=1, threads=1)
    out = finetune(f"{tmp}/ssl", m, fp, df, df.iloc[:3], f"{tmp}/ctc", f"{tmp}/ck_ft", seed=1, threads=1)
    assert out["metrics"]["world_size"] == 2
    dist.destroy_process_group()


def test_two_process_gloo_ddp(tmp_path):
    df = make_manifest(tmp_path / "wav", 10)
    mp.spawn(_worker, args=(_free_port(), str(tmp_path), df), nprocs=2, join=True)
    model, tok = load_ctc_model(tmp_path / "ctc")
    assert len(tok) == model.lm_head.out_features
    assert (tmp_path / "ck_ft").is_dir() and (tmp_path / "ssl" / "config.json").is_file()
