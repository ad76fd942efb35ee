"""Checks on untrusted JSON text made before parsing it.

py_ecc (imported by py-evm, so by every process here that touches a chain) raises Python's
recursion limit to 100,000. After that, the C JSON decoder given ``[[[[...`` overflows the
thread's stack and kills the process instead of raising ``RecursionError``. Every server
that parses untrusted JSON checks the nesting depth first.
"""

from __future__ import annotations

import re
from typing import Final

MAX_JSON_DEPTH: Final = 64
"""Deeper nesting than any document of this project needs; deeper bodies are refused."""

_JSON_SPECIAL: Final = re.compile(rb'["\[\]{}]')
_JSON_STRING_REST: Final = re.compile(rb'(?:[^"\\]++|\\.)*+"', re.DOTALL)  # possessive: linear


def json_nested_deeper_than(body: bytes, limit: int) -> bool:
    """Whether the JSON text ``body`` nests arrays / objects deeper than ``limit``.

    Checked before parsing: py_ecc (imported by py-evm) raises the recursion limit to
    100,000, so the C JSON decoder would overflow a thread's stack on ``[[[[...`` and kill
    the process instead of raising RecursionError. One linear pass: strings are skipped by
    a possessive regex, brackets counted; an unterminated string ends the scan (the parser
    stops there too).
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
