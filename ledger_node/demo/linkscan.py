"""The unlinkability audit's scanner: planted values in every encoding, searched in public bytes.

Pure functions over bytes (no I/O), used by the audit in ``tests/test_unlinkability.py`` and
by the auditor check of ``jointledger demo`` (:mod:`ledger_node.demo.run`):

* **Needles.** :func:`text_needles`, :func:`amount_needles`, :func:`time_needles` and
  :func:`key_needles` turn one planted value (an identity, an account token, an amount, a
  key) into every form in which it could leak: UTF-8, GBK, lower- and upper-case hex,
  base64, JSON and URL escapes, decimal and yuan strings, big-endian integers, and the plain
  SM3, SHA-256 and keccak-256 digests of those bytes (raw, hex and base64).
* **Haystack.** :class:`Haystack` holds labelled byte strings (raw chain-database entries,
  JSON-RPC answers, HTTP responses) and, for text, the bytes of every hex string in it
  decoded, so that a digest printed as hex is found in its raw form too. :meth:`Haystack.scan`
  reports every occurrence of every needle with where it was found.
* **Chance.** :func:`chance_hits` estimates how many hits pure chance would give (random
  bytes matching a short needle), so that the audit states its own false-alarm rate.
* **Runs.** :func:`fixed_positions` finds an encoding's fixed structure from unrelated
  samples, :func:`value_segments` what a given encoding holds beyond it, and
  :func:`windows` / :func:`shared_runs` the 8-byte runs two records' values have in common.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import math
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from eth_utils.crypto import keccak

from ledger_node.crypto.hashes import sm3
from ledger_node.protocol.record import format_time

WINDOW: Final = 8
"""Length of the public byte runs two records of one person must not share."""

MIN_HEX_RUN: Final = 8
"""Shortest run of hex digits (4 bytes) that :class:`Haystack` decodes."""

_HEX_RUN: Final = re.compile(rb"[0-9a-fA-F]{%d,}" % MIN_HEX_RUN)
_HEX_CHARS: Final = frozenset(b"0123456789abcdefABCDEF")
_PRINTABLE: Final = frozenset(range(0x20, 0x7F))
_SEPARATOR: Final = b"\n--8<--\n"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DIGESTS: Final = (
    ("sm3", sm3),
    ("sha256", lambda data: hashlib.sha256(data).digest()),
    ("keccak256", lambda data: bytes(keccak(data))),
)


@dataclass(frozen=True)
class Needle:
    """One form of one planted value: ``owner`` says whose value, ``form`` which encoding."""

    owner: str
    form: str
    data: bytes

    def __str__(self) -> str:
        return f"{self.owner} as {self.form}"


@dataclass(frozen=True)
class Hit:
    """A needle found in a haystack part: the part's label and the offset inside it."""

    needle: Needle
    source: str
    offset: int

    def __str__(self) -> str:
        return f"{self.needle} in {self.source} at offset {self.offset}"


def _hex_forms(form: str, data: bytes) -> list[tuple[str, bytes]]:
    return [(f"hex({form})", data.hex().encode()), (f"HEX({form})", data.hex().upper().encode())]


def _digest_forms(form: str, data: bytes) -> list[tuple[str, bytes]]:
    forms: list[tuple[str, bytes]] = []
    for name, function in _DIGESTS:
        digest = function(data)
        forms.append((f"{name}({form})", digest))
        forms.extend(_hex_forms(f"{name}({form})", digest))
        forms.append((f"base64({name}({form}))", _base64(digest)))
    return forms


def _needles(owner: str, forms: Iterable[tuple[str, bytes]]) -> list[Needle]:
    """Needles of ``owner``, one per distinct byte string (the first form named wins)."""
    seen: set[bytes] = set()
    result = []
    for form, data in forms:
        if data and data not in seen:
            seen.add(data)
            result.append(Needle(owner, form, data))
    return result


def _base64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def text_needles(owner: str, value: str) -> list[Needle]:
    """Every form of a planted text (identity, name, account token, reference).

    UTF-8, its hex and base64, its JSON ``\\uXXXX`` escape and URL percent-encoding; GBK
    and its hex when the text has non-ASCII characters; the SM3, SHA-256 and keccak-256
    digests of the UTF-8 (and GBK) bytes, raw, as hex and as base64.
    """
    utf8 = value.encode("utf-8")
    forms = [("utf8", utf8), *_hex_forms("utf8", utf8), ("base64(utf8)", _base64(utf8)),
             ("json-escaped", json.dumps(value)[1:-1].encode("ascii")),
             ("url-encoded", urllib.parse.quote(value, safe="").encode("ascii"))]
    try:
        gbk: bytes | None = value.encode("gbk")
    except UnicodeEncodeError:
        gbk = None
    if gbk is not None and gbk != utf8:
        forms += [("gbk", gbk), *_hex_forms("gbk", gbk)]
    forms += _digest_forms("utf8", utf8)
    if gbk is not None and gbk != utf8:
        forms += _digest_forms("gbk", gbk)
    return _needles(owner, forms)


def yuan(fen: int) -> str:
    """``fen`` as a yuan amount with two decimals, e.g. ``12345.67``."""
    return f"{fen // 100}.{fen % 100:02d}"


def amount_needles(owner: str, fen: int) -> list[Needle]:
    """Every form of a planted amount in fen.

    Decimal fen, yuan (``12345.67`` and ``12,345.67``), big-endian 4-byte (when it fits)
    and 8-byte integers (the record's and the escrow payload's encoding) and their hex, and
    the digests of the decimal string and of the 8-byte integer.
    """
    decimal = str(fen).encode()
    be8 = fen.to_bytes(8, "big")
    forms = [
        ("decimal", decimal),
        ("yuan", yuan(fen).encode()),
        ("yuan-grouped", f"{fen // 100:,}.{fen % 100:02d}".encode()),
        ("u64be", be8),
        *_hex_forms("u64be", be8),
    ]
    if fen < 2**32:
        forms.append(("u32be", fen.to_bytes(4, "big")))
    forms += _digest_forms("decimal", decimal) + _digest_forms("u64be", be8)
    return _needles(owner, forms)


def time_needles(owner: str, when: datetime) -> list[Needle]:
    """Every form of a planted payment time: RFC 3339 text, µs since 1970 (decimal, i64be)."""
    micros = (when - _EPOCH) // timedelta(microseconds=1)
    text = format_time(when).encode()
    be8 = micros.to_bytes(8, "big", signed=True)
    return _needles(owner, [
        ("rfc3339", text), ("micros", str(micros).encode()), ("i64be", be8),
        *_hex_forms("i64be", be8), *_digest_forms("rfc3339", text),
    ])


def key_needles(owner: str, key: bytes) -> list[Needle]:
    """A derived secret (an identity key): its raw bytes, hex and base64."""
    return _needles(owner, [("raw", key), *_hex_forms("raw", key), ("base64", _base64(key))])


def hex_decoded(text: bytes) -> Iterator[bytes]:
    """The bytes of every run of at least :data:`MIN_HEX_RUN` hex digits in ``text``.

    Both alignments of an odd-length run are decoded (a ``0x`` prefix or a stray digit must
    not shift a digest out of reach).
    """
    for match in _HEX_RUN.finditer(text):
        run = match.group()
        yield bytes.fromhex(run[: len(run) // 2 * 2].decode())
        if len(run) % 2:
            yield bytes.fromhex(run[1:].decode())


@dataclass
class Haystack:
    """Labelled byte strings searched together; text parts are also searched hex-decoded."""

    parts: list[tuple[str, bytes]] = field(default_factory=list)
    text_bytes: int = 0
    binary_bytes: int = 0

    def add(self, source: str, data: bytes, *, text: bool) -> None:
        """Add ``data`` found at ``source``; a ``text`` part also adds its hex runs decoded."""
        self.parts.append((source, data))
        if text:
            self.text_bytes += len(data)
            for blob in hex_decoded(data):
                self.parts.append((f"{source} [hex-decoded]", blob))
                self.binary_bytes += len(blob)
        else:
            self.binary_bytes += len(data)

    def scan(self, needles: Iterable[Needle]) -> list[Hit]:
        """Every occurrence of every needle inside one part (never across two parts)."""
        joined = _SEPARATOR.join(data for _, data in self.parts)
        starts: list[int] = []
        position = 0
        for _, data in self.parts:
            starts.append(position)
            position += len(data) + len(_SEPARATOR)
        hits = []
        for needle in needles:
            at = joined.find(needle.data)
            while at != -1:
                index = bisect.bisect_right(starts, at) - 1
                source, data = self.parts[index]
                offset = at - starts[index]
                if offset + len(needle.data) <= len(data):
                    hits.append(Hit(needle, source, offset))
                at = joined.find(needle.data, at + 1)
        return hits


def chance_hits(needles: Iterable[Needle], haystack: Haystack) -> float:
    """Expected number of hits from chance alone (an upper-bound model, for the report).

    In binary parts every needle byte matches with probability 1/256, except leading zero
    bytes, counted as certain (zero padding is common). In text parts a hex-digit byte
    matches with 1/16, another printable one with 1/64, any other byte with 1/256.
    """
    total = 0.0
    for needle in needles:
        significant = len(needle.data.lstrip(b"\0"))
        log_text = sum(
            math.log(16 if b in _HEX_CHARS else 64 if b in _PRINTABLE else 256)
            for b in needle.data
        )
        total += haystack.binary_bytes * 256.0**-significant
        total += haystack.text_bytes * math.exp(-log_text)
    return total


def fixed_positions(samples: Sequence[bytes]) -> frozenset[int]:
    """The byte positions at which every sample (all of one length) holds the same byte.

    Given encodings of unrelated random values, these are the encoding's fixed structure
    (tags, length prefixes, JSON keys); a value position agrees in all of ``n`` random
    samples only with probability ``p**(n-1)`` (p = 1/16 for hex text, 1/256 for bytes).
    Raises ``ValueError`` if the samples differ in length or there are fewer than two.
    """
    if len(samples) < 2 or len({len(s) for s in samples}) != 1:
        raise ValueError("need at least two samples of one length")
    first = samples[0]
    return frozenset(i for i in range(len(first)) if all(s[i] == first[i] for s in samples))


def value_segments(data: bytes, fixed: frozenset[int]) -> list[bytes]:
    """The maximal runs of ``data`` outside the ``fixed`` positions: its values."""
    segments: list[bytes] = []
    start: int | None = None
    for i in range(len(data) + 1):
        inside = i < len(data) and i not in fixed
        if inside and start is None:
            start = i
        elif not inside and start is not None:
            segments.append(data[start:i])
            start = None
    return segments


def windows(parts: Iterable[bytes], width: int = WINDOW) -> set[bytes]:
    """Every run of ``width`` consecutive bytes inside any of ``parts``."""
    return {part[i:i + width] for part in parts for i in range(len(part) - width + 1)}


def shared_runs(
    first: Sequence[bytes],
    second: Sequence[bytes],
    structure: set[bytes] | frozenset[bytes] = frozenset(),
    width: int = WINDOW,
) -> set[bytes]:
    """The ``width``-byte runs found in both ``first`` and ``second`` but not in ``structure``."""
    return (windows(first, width) & windows(second, width)) - structure
