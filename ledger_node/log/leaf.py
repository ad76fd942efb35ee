"""Log leaves (PROTOCOL §5): a record commitment bound to its escrow and match tags.

A leaf is what a platform submits and what its Merkle log holds:
``leaf_data = tag("leaf") ‖ lp(C) ‖ lp(SM3(escrow)) ‖ lp(match_tag) ‖ lp(amount_tag)``,
absent tags encoded as empty. The escrow itself (regulator-only ciphertext) is stored and
served beside the log; only its digest is inside the tree, so the anchored root binds it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ledger_node.crypto.encoding import domain_tag, encode_parts
from ledger_node.crypto.hashes import DIGEST_SIZE, sm3
from ledger_node.errors import InvalidLeaf

MAX_ESCROW_BYTES: Final = 4096


@dataclass(frozen=True, slots=True)
class Leaf:
    """One submission: commitment C, the record's escrow, and optional match tags."""

    commitment: bytes
    escrow: bytes = b""
    match_tag: bytes | None = None
    amount_tag: bytes | None = None

    def __post_init__(self) -> None:
        _check_digest("commitment", self.commitment)
        if not isinstance(self.escrow, bytes) or len(self.escrow) > MAX_ESCROW_BYTES:
            raise InvalidLeaf("escrow", f"must be at most {MAX_ESCROW_BYTES} bytes")
        for name in ("match_tag", "amount_tag"):
            value = getattr(self, name)
            if value is not None:
                _check_digest(name, value)
        if (self.match_tag is None) != (self.amount_tag is None):
            raise InvalidLeaf("amount_tag", "match_tag and amount_tag come together or not at all")

    @property
    def escrow_digest(self) -> bytes:
        """SM3 of the escrow ciphertext: what the tree commits to."""
        return sm3(self.escrow)

    def leaf_data(self) -> bytes:
        """The canonical bytes the Merkle log hashes as this leaf."""
        return leaf_data(self.commitment, self.escrow_digest, self.match_tag, self.amount_tag)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form: lowercase hex, absent tags as ``null``."""
        return {
            "commitment": self.commitment.hex(),
            "escrow": self.escrow.hex(),
            "match_tag": self.match_tag.hex() if self.match_tag is not None else None,
            "amount_tag": self.amount_tag.hex() if self.amount_tag is not None else None,
        }

    @classmethod
    def from_json(cls, data: object) -> Leaf:
        """Parse the :meth:`to_json` form; raise :class:`InvalidLeaf` naming the field."""
        if not isinstance(data, dict):
            raise InvalidLeaf("leaf", "must be a JSON object")
        if not _LEAF_FIELDS.issuperset(data):  # one test for the usual case
            unknown = sorted(set(data) - _LEAF_FIELDS)
            raise InvalidLeaf(str(unknown[0]), "is not a leaf field")
        if "commitment" not in data:
            raise InvalidLeaf("commitment", "is missing")
        return cls(
            commitment=_hex("commitment", data["commitment"]),
            escrow=_hex("escrow", data.get("escrow", "")),
            match_tag=_optional_hex("match_tag", data.get("match_tag")),
            amount_tag=_optional_hex("amount_tag", data.get("amount_tag")),
        )


@dataclass(frozen=True, slots=True)
class LeafSummary:
    """What anyone may see of a leaf without the escrow: the parts its hash is made of."""

    commitment: bytes
    escrow_digest: bytes
    match_tag: bytes | None = None
    amount_tag: bytes | None = None

    @classmethod
    def of(cls, leaf: Leaf) -> LeafSummary:
        """The summary of ``leaf``."""
        return cls(leaf.commitment, leaf.escrow_digest, leaf.match_tag, leaf.amount_tag)

    def leaf_data(self) -> bytes:
        """The same canonical bytes as :meth:`Leaf.leaf_data`."""
        return leaf_data(self.commitment, self.escrow_digest, self.match_tag, self.amount_tag)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form: lowercase hex, absent tags as ``null``.

        The one wire format of a summary, wherever one travels: the ``leaf`` of a proof
        bundle, of a leaf status and of a reconciliation report item, and each entry of
        ``GET /v1/logs/{log_id}/summaries``.
        """
        return {
            "commitment": self.commitment.hex(),
            "escrow_digest": self.escrow_digest.hex(),
            "match_tag": self.match_tag.hex() if self.match_tag is not None else None,
            "amount_tag": self.amount_tag.hex() if self.amount_tag is not None else None,
        }

    @classmethod
    def from_json(cls, data: object) -> LeafSummary:
        """Parse the :meth:`to_json` form; raise :class:`InvalidLeaf` naming the field.

        Every value is 32 bytes of hex; the tags may be absent or ``null``, but come
        together or not at all, as they do in the leaf summarised. Nothing else may be there.
        """
        if not isinstance(data, Mapping):
            raise InvalidLeaf("leaf", "must be a JSON object")
        if not _SUMMARY_FIELDS.issuperset(data):  # one test for the usual case
            unknown = next(key for key in data if key not in _SUMMARY_FIELDS)
            raise InvalidLeaf(str(unknown), "is not a leaf summary field")
        for name in ("commitment", "escrow_digest"):
            if name not in data:
                raise InvalidLeaf(name, "is missing")
        commitment = _digest("commitment", data["commitment"])
        escrow_digest = _digest("escrow_digest", data["escrow_digest"])
        match_tag = _optional_digest("match_tag", data.get("match_tag"))
        amount_tag = _optional_digest("amount_tag", data.get("amount_tag"))
        if (match_tag is None) != (amount_tag is None):
            raise InvalidLeaf("amount_tag", "match_tag and amount_tag come together or not at all")
        return cls(commitment, escrow_digest, match_tag, amount_tag)


_LEAF_FIELDS: Final = frozenset({"commitment", "escrow", "match_tag", "amount_tag"})
_SUMMARY_FIELDS: Final = frozenset({"commitment", "escrow_digest", "match_tag", "amount_tag"})


@dataclass(frozen=True)
class Receipt:
    """Where a submitted leaf is in the log; ``duplicate``: seen before, nothing stored."""

    index: int
    leaf_hash: bytes
    duplicate: bool


def leaf_data(
    commitment: bytes, escrow_digest: bytes, match_tag: bytes | None, amount_tag: bytes | None
) -> bytes:
    """Return the canonical leaf bytes from its public parts (absent tags encode as empty)."""
    return encode_parts("leaf", commitment, escrow_digest, match_tag or b"", amount_tag or b"")


_LEAF_TAG: Final = domain_tag("leaf")
_BATCH_TAG: Final = domain_tag("batch")
_LEN32: Final = struct.pack(">I", DIGEST_SIZE)
_NO_TAGS: Final = struct.pack(">II", 0, 0)
_EMPTY_ESCROW_DIGEST: Final = sm3(b"")


def leaves_data(leaves: Sequence[Leaf]) -> list[bytes]:
    """``[leaf.leaf_data() for leaf in leaves]``, computed in one tight loop.

    The same bytes as :func:`leaf_data` (tag, then each part length prefixed; a commitment,
    escrow digest and match tags are 32 bytes, absent tags empty) without its generic
    per-part encoding, and without hashing empty escrows one by one: intake, ingest and
    batch signing spend most of their encoding time here.
    """
    out: list[bytes] = []
    put, h, join = out.append, sm3, b"".join
    for leaf in leaves:
        match_tag, escrow = leaf.match_tag, leaf.escrow
        tail = _NO_TAGS if match_tag is None else join(
            (_LEN32, match_tag, _LEN32, leaf.amount_tag or b""))
        digest = h(escrow) if escrow else _EMPTY_ESCROW_DIGEST
        put(join((_LEAF_TAG, _LEN32, leaf.commitment, _LEN32, digest, tail)))
    return out


_ESCROW_DIGEST_AT: Final = len(_LEAF_TAG) + 2 * len(_LEN32) + DIGEST_SIZE


def summaries_from_data(leaves: Sequence[Leaf], datas: Sequence[bytes]) -> list[LeafSummary]:
    """The summaries of ``leaves`` whose :func:`leaves_data` are ``datas``.

    The escrow digests are read out of the leaf data instead of hashing every escrow again:
    a node that has just encoded leaves to check their leaf hashes serves their summaries
    at no further SM3 cost.
    """
    at, end = _ESCROW_DIGEST_AT, _ESCROW_DIGEST_AT + DIGEST_SIZE
    return [LeafSummary(leaf.commitment, data[at:end], leaf.match_tag, leaf.amount_tag)
            for leaf, data in zip(leaves, datas, strict=True)]


def batch_digest_from_data(log_id: bytes, datas: Sequence[bytes]) -> bytes:
    """:func:`batch_digest` from the leaves' data already encoded (:func:`leaves_data`)."""
    if not datas:
        raise InvalidLeaf("leaves", "a batch holds at least one leaf")
    pack = struct.Struct(">I").pack
    parts = [_BATCH_TAG, pack(len(log_id)), log_id]
    for data in datas:
        parts.append(pack(len(data)))
        parts.append(data)
    return sm3(b"".join(parts))


def batch_digest(log_id: bytes, leaves: Sequence[Leaf]) -> bytes:
    """Return the SM3 digest a platform signs for a batch of leaves submitted to ``log_id``:
    ``SM3(encode_parts("batch", log_id, *leaf_data))``. Raises :class:`InvalidLeaf` for none."""
    return batch_digest_from_data(log_id, leaves_data(leaves))


def _check_digest(name: str, value: object) -> None:
    if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
        size = len(value) if isinstance(value, bytes) else type(value).__name__
        raise InvalidLeaf(name, f"must be {DIGEST_SIZE} bytes, got {size}")


def _hex(name: str, value: object) -> bytes:
    """``value``'s bytes if it is a string of hex digit pairs (nothing else, no ``0x``).

    ``bytes.fromhex`` refuses every character but hex digits and ASCII whitespace, and
    skipped whitespace makes the string longer than twice the bytes: the same test as the
    pattern ``(?:[0-9a-fA-F]{2})*``, at a sixth of its cost, which counts when a reader
    parses 10,000 summaries of four digests each.
    """
    if isinstance(value, str):
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            pass
        else:
            if 2 * len(raw) == len(value):
                return raw
    raise InvalidLeaf(name, "must be a string of hex byte pairs")


def _optional_hex(name: str, value: object) -> bytes | None:
    return None if value is None else _hex(name, value)


def _digest(name: str, value: object) -> bytes:
    raw = _hex(name, value)
    if len(raw) != DIGEST_SIZE:
        raise InvalidLeaf(name, f"must be {DIGEST_SIZE} bytes, got {len(raw)}")
    return raw


def _optional_digest(name: str, value: object) -> bytes | None:
    return None if value is None else _digest(name, value)
