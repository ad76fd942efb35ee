"""Reading the TOML config files of ``jointledger serve``: sections, keys and their types.

Every mistake raises :class:`~ledger_node.errors.InvalidConfig` naming the section or key,
so an operator sees what to fix (``[node] has unknown key 'seal'``, ``http.port has the
wrong type (str)``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from ledger_node.errors import InvalidConfig

Sections = Mapping[str, Collection[str] | None]
"""Each known section and its allowed keys (``None``: any key)."""


def read_config(path: Path, sections: Sections) -> dict[str, Any]:
    """The TOML document at ``path``, whose top-level tables must all be in ``sections``."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidConfig(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfig(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(document) - set(sections))
    if unknown:
        raise InvalidConfig(f"unknown section [{unknown[0]}] in {path}")
    return document


def config_table(document: Mapping[str, Any], name: str, sections: Sections, *,
                 required: bool = False) -> dict[str, Any]:
    """Section ``name`` (empty if absent and not ``required``), with only its allowed keys."""
    value = document.get(name, {})
    if not isinstance(value, dict):
        raise InvalidConfig(f"[{name}] must be a table")
    if required and not value:
        raise InvalidConfig(f"[{name}] is missing")
    allowed = sections[name]
    if allowed is not None:
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise InvalidConfig(f"[{name}] has unknown key {unknown[0]!r}")
    return value


def config_value(section: str, data: Mapping[str, Any], key: str,
                 kind: type | tuple[type, ...], default: Any = None, *,
                 required: bool = False) -> Any:
    """``data[key]`` if it has type ``kind`` (booleans never pass as numbers)."""
    if key not in data:
        if required:
            raise InvalidConfig(f"{section}.{key} is missing")
        return default
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InvalidConfig(f"{section}.{key} has the wrong type ({type(value).__name__})")
    return value
