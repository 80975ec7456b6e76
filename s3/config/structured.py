"""Turning composed Hydra/OmegaConf nodes into validated dataclasses."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from s3.config.validation import ConfigError, first_line

T = TypeVar("T")


def _nested_schema(schema: type, name: str) -> type | None:
    """The dataclass type of field ``name`` of ``schema``, if it is one (Optional[...] unwrapped)."""
    hint = typing.get_type_hints(schema).get(name)
    candidates = [hint, *typing.get_args(hint)]
    return next((c for c in candidates if dataclasses.is_dataclass(c)), None)


def join_key(prefix: str, name: str) -> str:
    """``prefix.name``, or ``name`` for a top-level node (empty prefix)."""
    return f"{prefix}.{name}" if prefix else name


def reject_unknown_keys(node: Any, schema: type, key: str) -> None:
    """Raise ConfigError for any key of ``node`` that the dataclass ``schema`` does not define."""
    known = {f.name for f in dataclasses.fields(schema)}
    for name in node.keys():
        if name not in known:
            raise ConfigError(f"{join_key(key, name)}: unknown key (valid keys: {sorted(known)})")
        sub_schema = _nested_schema(schema, name)
        if sub_schema is not None and isinstance(node[name], (dict, DictConfig)):
            reject_unknown_keys(node[name], sub_schema, join_key(key, name))


def to_dataclass(node: DictConfig | dict[str, Any], schema: type[T], key: str) -> T:
    """Merge ``node`` onto ``schema`` and build the dataclass (whose __post_init__ validates).

    ``key`` is the node's path in the full config (``model``, ``train`` ...; empty for the top
    level of a job's config), used in messages.
    Unknown keys and wrongly typed values raise ``ConfigError`` naming the key.
    """
    reject_unknown_keys(node, schema, key)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except ConfigError:
        raise
    except Exception as err:  # omegaconf's ValidationError carries the offending key path
        where = join_key(key, err.full_key) if getattr(err, "full_key", None) else (key or "config")
        raise ConfigError(f"{where}: {first_line(err)}") from err
