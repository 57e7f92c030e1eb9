"""Command-line entry shared by every flow module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from s6damon.config import load_params
from s6damon.errors import InputError


def main(flow_fn: Callable[..., Any], argv: list[str] | None = None) -> None:
    """Run ``flow_fn(params_path=...)`` from the command line.

    Bad input (a params value, an audio file, a transcript, a checkpoint) ends the process
    with status 2 and the message, which names the key or the file, instead of a traceback.
    """
    parser = argparse.ArgumentParser(prog=f"python -m flows.{flow_fn.__name__}",
                                     description=(flow_fn.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    try:
        load_params(args.params)  # fail fast, before a Prefect server is started
        flow_fn(params_path=args.params)
    except (InputError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
