"""Cache keys over file *contents*, parameters and source code.

Prefect's ``INPUTS`` policy hashes the arguments as given, so a task taking a path would hit
its cache after the file behind the path changed. ``ContentHash`` replaces every
``pathlib.Path`` argument by the hash of the file or folder it names, hashes dataclass
params as plain dicts, and adds the source of the task and of the core modules it relies
on. DVC decides *whether* a stage runs from the same contents, so the two caches agree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

from s6damon.io import hash_path

#: The project root: core sources are resolved from here, not from the working directory.
PROJECT = Path(__file__).resolve().parent.parent


def _stable(value: Any) -> Any:
    """Turn a task argument into a JSON-able, content-based value."""
    if isinstance(value, Path):
        return {"path_content": hash_path(value) if value.exists() else f"missing:{value}"}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"params": _stable(dataclasses.asdict(value))}
    if isinstance(value, dict):
        return {str(k): _stable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_stable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # pandas DataFrame
        return {"frame": hashlib.sha256(value.to_json(orient="split").encode()).hexdigest()}
    raise TypeError(f"cannot build a content cache key from {type(value).__name__}")


def fingerprint(*objects: Any) -> str:
    """Content hash of any mix of paths, params dataclasses, frames and plain values."""
    blob = json.dumps([_stable(o) for o in objects], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def source_hash(paths: Iterable[str]) -> str:
    """Hash of the given project source files/folders (``.py`` files only)."""
    h = hashlib.sha256()
    for rel in sorted(paths):
        p = PROJECT / rel
        files = [p] if p.is_file() else sorted(p.rglob("*.py"))
        for f in files:
            h.update(str(f.relative_to(PROJECT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


@dataclasses.dataclass
class ContentHash(CachePolicy):
    """Key = task source + named core sources + content hash of every argument.

    Args:
        code: project-relative files or folders whose source the task's result depends on.
        exclude: argument names left out of the key (e.g. progress flags).
    """

    code: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        import inspect

        task_src = inspect.getsource(task_ctx.task.fn) if task_ctx else ""
        args = {k: v for k, v in (inputs or {}).items() if k not in self.exclude}
        return fingerprint(task_src, source_hash(self.code), args)


def content_cache(*code: str, exclude: tuple[str, ...] = ()) -> ContentHash:
    """Cache policy for a task whose result depends on ``code`` (project-relative paths)."""
    return ContentHash(code=tuple(code), exclude=tuple(exclude))


def run_with_outputs(task_obj: Any, *args: Any, outputs: Any, **kwargs: Any) -> Any:
    """Call a cached task; if its cached result names files that are gone, run it again.

    Args:
        task_obj: a Prefect task whose result refers to files on disk.
        outputs: function from the task's result to the paths it promises.
    """
    result = task_obj(*args, **kwargs)
    if not all(Path(p).exists() for p in outputs(result)):
        result = task_obj.with_options(refresh_cache=True)(*args, **kwargs)
    return result
