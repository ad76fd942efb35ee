"""A tiny strict DER codec: only what SM2 keys, signatures and ciphertexts need.

Strict means distinguished: definite minimal lengths, minimal non-negative integers, no
trailing bytes. Callers turn :class:`DerError` into their own domain error
(:class:`~ledger_node.errors.InvalidKey`, :class:`~ledger_node.errors.InvalidSignature`,
:class:`~ledger_node.errors.DecryptionFailed`). Pure: bytes in, bytes out.
"""

from __future__ import annotations

from typing import Final

INTEGER: Final = 0x02
BIT_STRING: Final = 0x03
OCTET_STRING: Final = 0x04
OID: Final = 0x06
SEQUENCE: Final = 0x30
CTX0: Final = 0xA0
CTX1: Final = 0xA1

OID_EC_PUBLIC_KEY: Final = bytes.fromhex("2a8648ce3d0201")  # 1.2.840.10045.2.1
OID_SM2: Final = bytes.fromhex("2a811ccf5501822d")  # 1.2.156.10197.1.301


class DerError(Exception):
    """Internal: malformed DER; callers translate it into a domain error."""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, body: bytes) -> bytes:
    """Return the TLV of ``tag`` around ``body`` (definite, minimal length)."""
    return bytes([tag]) + _length(len(body)) + body


def sequence(*items: bytes) -> bytes:
    """Return ``SEQUENCE { items... }`` (each item already encoded)."""
    return tlv(SEQUENCE, b"".join(items))


def integer(value: int) -> bytes:
    """Return the minimal DER ``INTEGER`` of a non-negative ``value``."""
    if value < 0:
        raise ValueError("only non-negative integers are encoded")
    return tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def octets(data: bytes) -> bytes:
    """Return ``OCTET STRING`` ``data``."""
    return tlv(OCTET_STRING, data)


class DerReader:
    """Reads consecutive DER TLVs from a buffer, rejecting anything that is not strict DER."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def at_end(self) -> bool:
        return self._pos == len(self._data)

    def end(self) -> None:
        if not self.at_end():
            raise DerError("trailing bytes")

    def peek_tag(self) -> int | None:
        return None if self.at_end() else self._data[self._pos]

    def read(self, tag: int) -> bytes:
        data, pos = self._data, self._pos
        if pos + 2 > len(data):
            raise DerError("truncated")
        if data[pos] != tag:
            raise DerError(f"expected tag 0x{tag:02x}, found 0x{data[pos]:02x}")
        first = data[pos + 1]
        pos += 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > 4:
                raise DerError("indefinite or oversized length")
            if pos + count > len(data):
                raise DerError("truncated length")
            length = int.from_bytes(data[pos : pos + count], "big")
            if length < 0x80 or data[pos] == 0:
                raise DerError("non-minimal length")
            pos += count
        if pos + length > len(data):
            raise DerError("truncated value")
        self._pos = pos + length
        return data[pos : pos + length]

    def integer(self) -> int:
        body = self.read(INTEGER)
        if not body:
            raise DerError("empty integer")
        if body[0] & 0x80:
            raise DerError("negative integer")
        if len(body) > 1 and body[0] == 0 and not body[1] & 0x80:
            raise DerError("non-minimal integer")
        return int.from_bytes(body, "big")

