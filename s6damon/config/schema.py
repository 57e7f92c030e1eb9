"""Validation of ``params.yaml`` sections against typed dataclasses.

Every section of ``params.yaml`` maps to a frozen dataclass. Loading checks, for each key:
that it is known, that its value has the declared type, and that it lies in the range given
by the field's metadata (``minimum``, ``maximum``, ``choices``). Errors name the full dotted
key (``finetune.learning_rate``) so a user editing ``params.yaml`` or running
``dvc exp run -S key=value`` sees exactly what to fix.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin

from s6damon.errors import InputError

T = TypeVar("T")


class ParamsError(InputError, ValueError):
    """A value in params.yaml is unknown, missing, of the wrong type or out of range."""


def param(default: Any = dataclasses.MISSING, *, minimum: float | None = None,
          maximum: float | None = None, help: str = "") -> Any:
    """Declare a dataclass field with a range and a description.

    Args:
        default: default value (lists are copied per instance).
        minimum: inclusive lower bound for numbers (and for each item of a list of numbers).
        maximum: inclusive upper bound.
        help: one line shown in error messages and docs.
    """
    meta = {"minimum": minimum, "maximum": maximum, "help": help}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(key: str, value: Any, tp: Any, meta: dict[str, Any]) -> Any:
    """Check ``value`` against type ``tp`` and return it (ints widen to floats)."""
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ParamsError(f"params: '{key}' must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg, meta)
            except ParamsError as err:
                errors.append(str(err))
        raise ParamsError(errors[-1] if errors else f"params: '{key}' has an invalid value {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"params: '{key}' must be a list, got {type(value).__name__} {value!r}")
        (item_tp,) = get_args(tp)
        return [_coerce(f"{key}[{i}]", v, item_tp, meta) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"params: '{key}' must be a mapping, got {value!r}")
        _, val_tp = get_args(tp)
        return {k: _coerce(f"{key}.{k}", v, val_tp, meta) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"params: '{key}' must be true or false, got {value!r}")
        return value
    if tp in (int, float):
        ok = isinstance(value, int) and not isinstance(value, bool)
        if tp is float:
            ok = ok or isinstance(value, float)
        if not ok:
            raise ParamsError(f"params: '{key}' must be {_type_name(tp)}, got {type(value).__name__} {value!r}")
        value = tp(value)
        lo, hi = meta.get("minimum"), meta.get("maximum")
        if lo is not None and value < lo:
            raise ParamsError(f"params: '{key}' must be >= {lo}, got {value!r}")
        if hi is not None and value > hi:
            raise ParamsError(f"params: '{key}' must be <= {hi}, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"params: '{key}' must be a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported params type {tp!r} for '{key}'")


def build(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, validating every key.

    Args:
        cls: a dataclass whose fields carry types (and optional ``param`` metadata).
        data: the mapping read from YAML (``None`` means all defaults).
        prefix: dotted path of this section, used in error messages.

    Raises:
        ParamsError: naming the first unknown, missing, mistyped or out-of-range key.
    """
    data = {} if data is None else data
    where = prefix or "params"
    if not isinstance(data, dict):
        raise ParamsError(f"params: '{where}' must be a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        dotted = ", ".join(f"'{prefix + '.' if prefix else ''}{k}'" for k in unknown)
        raise ParamsError(f"params: unknown key {dotted} (known keys in '{where}': {sorted(fields)})")
    values = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if dataclasses.is_dataclass(hints[name]):
                    values[name] = build(hints[name], {}, key)
                    continue
                raise ParamsError(f"params: missing required key '{key}'")
            continue
        values[name] = _coerce(key, data[name], hints[name], dict(f.metadata))
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if callable(check):
        check()
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-dict form of a params dataclass (for hashing and for recording in metrics)."""
    return dataclasses.asdict(obj)
