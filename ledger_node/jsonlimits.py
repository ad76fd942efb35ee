"""Checks on untrusted JSON text made before parsing it, and the process's recursion limit.

JSON between systems is UTF-8 (RFC 8259 §8.1). Python's ``json.loads(bytes)`` guesses UTF-16
and UTF-32 from the first bytes, so a byte-level guard that assumes UTF-8 can be walked past
(a UTF-16 code unit whose low byte is ``0x22`` looks like a quote) while the parser decodes
the text another way. Every server therefore refuses anything but UTF-8 without a byte order
mark, and parses only text already decoded as UTF-8.

py_ecc (imported by web3 and py-evm, so by every process here that touches a chain) raises
Python's recursion limit to 100,000. The C JSON decoder counts its nesting against that
limit, so past it ``[[[[...`` overflows the thread's C stack and kills the process instead of
raising ``RecursionError``. Importing this package brings the limit back to
:data:`SAFE_RECURSION_LIMIT` (``ledger_node/__init__.py``), and every server checks the
nesting depth before parsing anyway.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from typing import Any, Final

MAX_JSON_DEPTH: Final = 64
"""Deeper nesting than any document of this project needs; deeper bodies are refused."""

SAFE_RECURSION_LIMIT: Final = 12_288
"""py-evm's own ``EVM_RECURSION_LIMIT`` (1024 × 12), which it sets on import and needs for
nested calls; the C JSON decoder parses 12,000 levels in a worker thread without exhausting
its stack (``tests/test_jsonlimits.py``), where py_ecc's 100,000 would not."""

_BOMS: Final = (codecs.BOM_UTF32_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF8, codecs.BOM_UTF16_BE,
                codecs.BOM_UTF16_LE)
_JSON_SPECIAL: Final = re.compile(rb'["\[\]{}]')
_JSON_STRING_REST: Final = re.compile(rb'(?:[^"\\]++|\\.)*+"', re.DOTALL)  # possessive: linear
_CHARSET: Final = re.compile(r';\s*charset\s*=\s*"?([^";\s]*)', re.IGNORECASE)


class JsonTextRefused(ValueError):
    """A body that is not UTF-8 JSON text this project parses: ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        """What is wrong with the text, for the problem's detail."""


def check_json_text(body: bytes, *, content_type: str | None = None) -> None:
    """Refuse ``body`` unless it is UTF-8 without a byte order mark, holds no NUL byte (no
    JSON text does; UTF-16 and UTF-32 text of ASCII characters does) and declares no other
    charset; raise :class:`JsonTextRefused` naming the reason.

    ``content_type`` is the request's ``Content-Type`` header, if any.
    """
    if content_type:
        declared = _CHARSET.search(content_type)
        if declared and declared.group(1).lower().replace("_", "-") not in {"utf-8", "utf8"}:
            raise JsonTextRefused(f"charset {declared.group(1)!r}: JSON between systems is "
                                  "UTF-8 (RFC 8259 §8.1)")
    if body.startswith(_BOMS):
        raise JsonTextRefused("JSON text must be UTF-8 without a byte order mark "
                              "(RFC 8259 §8.1)")
    if b"\x00" in body:
        raise JsonTextRefused("JSON text is UTF-8 (RFC 8259 §8.1): this body holds NUL bytes, "
                              "as UTF-16 or UTF-32 text does")
    try:
        body.decode("utf-8")  # strict: refuses overlong forms and encoded surrogates too
    except UnicodeDecodeError as exc:
        raise JsonTextRefused(f"JSON text is UTF-8 (RFC 8259 §8.1): invalid byte at offset "
                              f"{exc.start} ({exc.reason})") from None


def check_json_body(body: bytes, *, content_type: str | None = None,
                    limit: int = MAX_JSON_DEPTH) -> None:
    """:func:`check_json_text`, then refuse nesting deeper than ``limit``: everything a server
    checks before a parser sees ``body``. Raises :class:`JsonTextRefused`."""
    check_json_text(body, content_type=content_type)
    if json_nested_deeper_than(body, limit):
        raise JsonTextRefused(f"JSON nested deeper than {limit} levels is refused")


def parse_json(body: bytes, *, limit: int = MAX_JSON_DEPTH) -> Any:
    """Parse untrusted JSON ``body`` after :func:`check_json_body`, from text decoded as UTF-8
    (never letting ``json`` guess an encoding). Raises :class:`JsonTextRefused` or
    ``json.JSONDecodeError`` (a ``ValueError``)."""
    check_json_body(body, limit=limit)
    return json.loads(body.decode("utf-8"))


def parse_json_text(text: str, *, limit: int = MAX_JSON_DEPTH,
                    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None
                    ) -> Any:
    """Parse untrusted JSON ``text`` (already decoded, e.g. a line of a user's file) after
    refusing nesting deeper than ``limit``. Raises :class:`JsonTextRefused` or
    ``json.JSONDecodeError``."""
    if json_nested_deeper_than(text.encode("utf-8", "surrogatepass"), limit):
        raise JsonTextRefused(f"JSON nested deeper than {limit} levels is refused")
    return json.loads(text, object_pairs_hook=object_pairs_hook)


def json_nested_deeper_than(body: bytes, limit: int) -> bool:
    """Whether the UTF-8 JSON text ``body`` nests arrays / objects deeper than ``limit``.

    One linear pass: strings are skipped by a possessive regex, brackets counted; an
    unterminated string ends the scan (the parser stops there too). Only meaningful for
    text :func:`check_json_text` accepts: in UTF-8 no byte of a multi-byte character is a
    quote, backslash or bracket.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    position = 0
    while (special := _JSON_SPECIAL.search(body, position)) is not None:
        char = body[special.start()]
        position = special.end()
        if char == 0x22:  # '"': skip the string
            rest = _JSON_STRING_REST.match(body, position)
            if rest is None:
                return False
            position = rest.end()
        elif char in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False
