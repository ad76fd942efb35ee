"""Strict readers of untrusted JSON documents (proof bundles, case files).

:class:`JsonFields` checks one field at a time and raises the document's own error type
with the field's JSON path and the reason (``records[3].bundle.path[1]: must be 32
bytes``), so every format reports mistakes the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})*")

FieldError = Callable[[str, str], Exception]
"""Makes the document's error from (JSON path, reason), e.g. ``InvalidBundle``."""


def show(value: object) -> str:
    """A short repr of a rejected value for messages (documents may be hostile and large)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class JsonFields:
    """Field readers raising ``error(where, reason)``."""

    def __init__(self, error: FieldError) -> None:
        self.error = error

    def mapping(self, where: str, data: object, keys: Sequence[str], *,
               prefix: str | None = None) -> Mapping[str, Any]:
        """``data`` as a mapping with exactly ``keys``; fields are named ``prefix + key``
        (by default ``where + "."``)."""
        lead = f"{where}." if prefix is None else prefix
        if not isinstance(data, Mapping):
            raise self.error(where, "must be a JSON object")
        for key in data:
            if key not in keys:
                raise self.error(f"{lead}{key}", "is not a field of this object")
        for key in keys:
            if key not in data:
                raise self.error(f"{lead}{key}", "is missing")
        return data

    def array(self, where: str, data: object) -> list[Any]:
        """``data`` if it is a JSON array."""
        if not isinstance(data, list):
            raise self.error(where, "must be a JSON array")
        return data

    def integer(self, where: str, value: object, low: int, high: int) -> int:
        """An integer (not a boolean) in ``low..high``."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(where, "must be an integer")
        if not low <= value <= high:
            raise self.error(where, f"must be in {low}..{high}, got {value}")
        return value

    def string(self, where: str, value: object) -> str:
        """A string."""
        if not isinstance(value, str):
            raise self.error(where, "must be a string")
        return value

    def boolean(self, where: str, value: object) -> bool:
        """``true`` or ``false``."""
        if not isinstance(value, bool):
            raise self.error(where, "must be true or false")
        return value

    def hex(self, where: str, value: object, size: int | None = None) -> bytes:
        """Bytes from lowercase or uppercase hex pairs without ``0x`` (exactly ``size``)."""
        if not isinstance(value, str) or not _HEX.fullmatch(value):
            raise self.error(where, "must be a string of hex byte pairs (no 0x)")
        raw = bytes.fromhex(value)
        if size is not None and len(raw) != size:
            raise self.error(where, f"must be {size} bytes, got {len(raw)}")
        return raw

    def time(self, where: str, value: object) -> datetime:
        """An ISO 8601 time with a time zone, in UTC."""
        if not isinstance(value, str):
            raise self.error(where, "must be an ISO 8601 time string")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise self.error(where, f"{show(value)} is not an ISO 8601 time") from None
        if moment.utcoffset() is None:
            raise self.error(where, "must carry a time zone")
        return moment.astimezone(UTC)
