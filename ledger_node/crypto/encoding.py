"""Unambiguous byte encodings for hash inputs: domain tags and length-prefixed fields.

Every hash input starts with a versioned domain tag (``jl:v1:<purpose>``) and every
variable-length part is prefixed with its length, so no two different inputs encode alike.
"""

from __future__ import annotations

import struct
from typing import Final

PROTOCOL_VERSION: Final = "v1"
MAX_FIELD_BYTES: Final = 0xFFFF_FFFF


def domain_tag(purpose: str) -> bytes:
    """Return the length-prefixed domain tag ``jl:v1:<purpose>`` for one kind of hash input."""
    return length_prefixed(f"jl:{PROTOCOL_VERSION}:{purpose}".encode("ascii"))


def length_prefixed(value: bytes) -> bytes:
    """Return ``value`` preceded by its length as a 4-byte big-endian integer."""
    if len(value) > MAX_FIELD_BYTES:
        raise ValueError(f"field of {len(value)} bytes is too long to length-prefix")
    return struct.pack(">I", len(value)) + value


def encode_parts(purpose: str, *parts: bytes) -> bytes:
    """Return the tagged encoding of ``parts``: domain tag then each part length-prefixed."""
    return domain_tag(purpose) + b"".join(length_prefixed(part) for part in parts)
