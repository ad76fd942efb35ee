"""Hash functions by name: SM3 (GB/T 32905, the default everywhere) and SHA-256.

Both go through OpenSSL via ``cryptography``; SHA-256 exists so that the RFC 6962/9162
Merkle test vectors apply unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Final, Literal, Protocol

from cryptography.hazmat.primitives import hashes

HashName = Literal["sm3", "sha256"]
HashFunction = Callable[[bytes], bytes]

DIGEST_SIZE: Final = 32
DEFAULT_HASH: Final[HashName] = "sm3"

_SM3: Final = hashes.SM3()  # one algorithm object: constructing it per call costs ~10%


def _sm3_cryptography(data: bytes) -> bytes:
    digest = hashes.Hash(_SM3)
    digest.update(data)
    return digest.finalize()


def sha256(data: bytes) -> bytes:
    """Return the 32-byte SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()




def hash_function(name: str) -> HashFunction:
    """Return the hash function called ``name``; raise ``ValueError`` for an unknown name."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown hash {name!r}; expected one of {sorted(_BY_NAME)}") from None


def sm3_with_prefix(prefix: bytes) -> HashFunction:
    """Return ``data -> SM3(prefix || data)``, absorbing ``prefix`` once.

    Hot paths hash many short inputs under one domain tag; copying a context that has
    already absorbed the tag saves that work. Python's hashlib contexts (OpenSSL's EVP SM3,
    when the linked OpenSSL provides it) copy about 1.5x faster than ``cryptography``'s, so
    they are used where available; both are OpenSSL and tests check they agree.
    """
    if HASHLIB_HAS_SM3:
        fast = hashlib.new("sm3", prefix)

        def digest_hashlib(data: bytes) -> bytes:
            context = fast.copy()
            context.update(data)
            return context.digest()

        return digest_hashlib

    base = hashes.Hash(_SM3)
    base.update(prefix)

    def digest(data: bytes) -> bytes:
        context = base.copy()
        context.update(data)
        return context.finalize()

    return digest


class SM3State(Protocol):
    """An SM3 context that has absorbed a prefix: copy it, feed the rest, take the digest.

    Hot loops use it inline (``state = prefix.copy(); state.update(data); state.digest()``)
    where calling a :func:`sm3_with_prefix` function per hash would add a Python frame to
    each of the ~20 hashes a record costs.
    """

    def copy(self) -> SM3State:
        """An independent copy of this state."""
        ...

    def update(self, data: bytes, /) -> None:
        """Absorb ``data``."""
        ...

    def digest(self) -> bytes:
        """The 32-byte digest of everything absorbed (the state stays usable)."""
        ...


class _CryptographySM3State:
    """:class:`SM3State` on ``cryptography``'s SM3, where hashlib has none."""

    __slots__ = ("_context",)

    def __init__(self, context: hashes.Hash) -> None:
        self._context = context

    def copy(self) -> _CryptographySM3State:
        return _CryptographySM3State(self._context.copy())

    def update(self, data: bytes, /) -> None:
        self._context.update(data)

    def digest(self) -> bytes:
        return self._context.copy().finalize()


def sm3_state(prefix: bytes = b"") -> SM3State:
    """Return an SM3 state that has absorbed ``prefix`` (hashlib's when it has SM3)."""
    if HASHLIB_HAS_SM3:
        return hashlib.new("sm3", prefix)
    context = hashes.Hash(_SM3)
    context.update(prefix)
    return _CryptographySM3State(context)


def _hashlib_has_sm3() -> bool:
    try:
        return hashlib.new("sm3", b"abc").hexdigest() == SM3_ABC_HEX
    except ValueError:
        return False


SM3_ABC_HEX: Final = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
HASHLIB_HAS_SM3: Final = _hashlib_has_sm3()
"""Whether Python's ``hashlib`` (its linked OpenSSL) has SM3: the one probe for it."""

sm3: Final[HashFunction] = sm3_with_prefix(b"") if HASHLIB_HAS_SM3 else _sm3_cryptography
"""Return the 32-byte SM3 digest of ``data`` (OpenSSL: hashlib's when it has SM3, copying
one context being the cheapest way to hash many short inputs; else ``cryptography``'s)."""

_BY_NAME: Final[dict[str, HashFunction]] = {"sm3": sm3, "sha256": sha256}
