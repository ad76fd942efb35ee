"""Hash functions by name: SM3 (GB/T 32905, the default everywhere) and SHA-256.

Both go through OpenSSL via ``cryptography``; SHA-256 exists so that the RFC 6962/9162
Merkle test vectors apply unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Final, Literal

from cryptography.hazmat.primitives import hashes

HashName = Literal["sm3", "sha256"]
HashFunction = Callable[[bytes], bytes]

DIGEST_SIZE: Final = 32
DEFAULT_HASH: Final[HashName] = "sm3"

_SM3: Final = hashes.SM3()  # one algorithm object: constructing it per call costs ~10%


def sm3(data: bytes) -> bytes:
    """Return the 32-byte SM3 digest of ``data`` (OpenSSL)."""
    digest = hashes.Hash(_SM3)
    digest.update(data)
    return digest.finalize()


def sha256(data: bytes) -> bytes:
    """Return the 32-byte SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()


_BY_NAME: Final[dict[str, HashFunction]] = {"sm3": sm3, "sha256": sha256}


def hash_function(name: str) -> HashFunction:
    """Return the hash function called ``name``; raise ``ValueError`` for an unknown name."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown hash {name!r}; expected one of {sorted(_BY_NAME)}") from None
