"""Pairwise reconciliation keys and match tags (PROTOCOL §7): pure functions, no I/O.

Two platforms derive one secret from their registered SM2 keys alone, with nothing sent and
no third party: static-static ECDH on the SM2 curve (``d_A·P_B = d_B·P_A``), then the SM3
KDF of GB/T 32918 over ``tag("pairwise-key") ‖ x ‖ y ‖ (address, key) of each party`` in a
canonical order (the lower chain address first). The key is a function of the keys
registered now, so a governance rotation of either key changes it.

A cross-platform payment is recorded twice, once by the platform holding the payer's
account (side ``payer``) and once by the one holding the payee's (side ``payee``), under one
clearing reference. Each record's leaf carries two tags, keyed by the pairwise key ``k``::

    match_tag  = HMAC-SM3(k, tag("match-tag")  ‖ side ‖ clearing_ref)
    amount_tag = HMAC-SM3(k, tag("amount-tag") ‖ side ‖ clearing_ref ‖ amount_fen ‖ currency)

The side is in the tag, so the two halves of one payment carry unrelated bytes: the public
cannot pair them, yet each platform computes the tags the other side's half must carry.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from ledger_node.crypto import gmcrypto
from ledger_node.crypto.encoding import domain_tag, encode_parts, length_prefixed
from ledger_node.crypto.gmcrypto import SM2PrivateKey, SM2PublicKey
from ledger_node.crypto.hashes import DIGEST_SIZE, sm3
from ledger_node.errors import InvalidPeerKey, InvalidRecord
from ledger_node.protocol.record import PaymentRecord, encode_field

TAG_SIZE: Final = DIGEST_SIZE
KEY_SIZE: Final = 32
_ADDRESS_SIZE: Final = 20
_SM3: Final = hashes.SM3()


class Side(StrEnum):
    """Which half of a cross-platform payment a record is: its platform holds the payer's
    account (``payer``) or the payee's (``payee``)."""

    PAYER = "payer"
    PAYEE = "payee"

    @property
    def other(self) -> Side:
        """The other half."""
        return Side.PAYEE if self is Side.PAYER else Side.PAYER


@dataclass(frozen=True)
class CrossPlatform:
    """A record's part in a cross-platform payment: the other platform and this side.

    What the SDK needs to tag a leaf (the record itself does not say which platform holds
    which party's account). ``counterparty`` is the other platform's member name on chain.
    """

    counterparty: str
    side: Side

    def __post_init__(self) -> None:
        if not isinstance(self.counterparty, str) or not self.counterparty:
            raise ValueError("counterparty must be a platform name")
        object.__setattr__(self, "side", Side(self.side))


def peer_public_key(raw: bytes) -> SM2PublicKey:
    """The SM2 public key in ``raw`` (64-byte ``x ‖ y`` as registered, or ``04 ‖ x ‖ y``).

    Raises :class:`InvalidPeerKey` for the point at infinity (all-zero or the one-byte SEC1
    ``00``), a wrong length, or a point that is not on the SM2 curve: an ECDH with such a
    point would leak the private scalar or yield a key anyone can compute.
    """
    if not isinstance(raw, bytes | bytearray):
        raise InvalidPeerKey(f"must be bytes, got {type(raw).__name__}")
    data = bytes(raw)
    if len(data) == 65 and data[0] == 4:
        data = data[1:]
    if data == b"\x00" or (data and not any(data)):
        raise InvalidPeerKey("is the point at infinity (the identity)")
    if len(data) != 64:
        raise InvalidPeerKey(f"must be 64 bytes x || y, got {len(data)}")
    try:
        return SM2PublicKey.from_raw(data)
    except ValueError:  # InvalidKey
        raise InvalidPeerKey("is not a point on the SM2 curve") from None


def _address(value: str) -> bytes:
    text = value.lower().removeprefix("0x")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != _ADDRESS_SIZE:
        raise ValueError(f"{value!r} is not a 20-byte chain address")
    return raw


def _kdf(z: bytes, length: int) -> bytes:
    """GB/T 32918.4's KDF: SM3(z ‖ counter) for counter = 1, 2, ... (32-bit big-endian)."""
    out = b""
    counter = 1
    while len(out) < length:
        out += sm3(z + counter.to_bytes(4, "big"))
        counter += 1
    return out[:length]


def _shared_point(own_key: SM2PrivateKey, peer: SM2PublicKey) -> tuple[int, int]:
    """``d·P``: the static-static ECDH point (:func:`gmcrypto.shared_point`: OpenSSL's ladder)."""
    point = gmcrypto.shared_point(own_key, peer)
    if point is None:  # impossible for d in [1, n-2] and P of order n (cofactor 1)
        raise InvalidPeerKey("gives the point at infinity in the key agreement")
    return point


@dataclass(frozen=True, repr=False)
class PairwiseKey:
    """The secret two platforms share, and which two (address, key) pairs it belongs to.

    ``key_id`` (SM3 of a tag and the key, 8 bytes) names it in reports without revealing it.
    """

    secret: bytes
    parties: tuple[tuple[str, bytes], tuple[str, bytes]]  # (address, raw key), lower first
    _mac: crypto_hmac.HMAC = field(compare=False, hash=False)

    @property
    def key_id(self) -> bytes:
        """A short public name of this key (not a function anyone without it can compute)."""
        return sm3(encode_parts("pairwise-key-id", self.secret))[:8]

    def __repr__(self) -> str:
        return f"PairwiseKey(<secret>, id={self.key_id.hex()})"

    def mac(self, data: bytes) -> bytes:
        """HMAC-SM3 of ``data`` under this key."""
        context = self._mac.copy()
        context.update(data)
        return context.finalize()


def _hmac_context(secret: bytes) -> crypto_hmac.HMAC:
    """An HMAC-SM3 context keyed with ``secret`` (OpenSSL via ``cryptography``), to copy per
    tag: copying a keyed context skips the two key-block compressions."""
    return crypto_hmac.HMAC(secret, _SM3)


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """HMAC (RFC 2104) with SM3 of ``data`` under ``key``."""
    context = _hmac_context(key)
    context.update(data)
    return context.finalize()


def pairwise_key(
    own_key: SM2PrivateKey, own_address: str, peer_address: str, peer_key: bytes | SM2PublicKey
) -> PairwiseKey:
    """The key ``own_address`` shares with ``peer_address`` under their registered keys.

    ``own_key`` is this platform's SM2 private key; ``peer_key`` the other platform's SM2
    public key as registered on chain. Both platforms get the same key. Raises
    :class:`InvalidPeerKey` for a peer key that is not a valid curve point (or is the
    identity), or the own key itself, and ``ValueError`` for a malformed or equal address.
    """
    peer = peer_key if isinstance(peer_key, SM2PublicKey) else peer_public_key(peer_key)
    own_public = own_key.public_key()
    if peer == own_public:
        raise InvalidPeerKey("is this platform's own key: a pairwise key needs two parties")
    own_raw, peer_raw = _address(own_address), _address(peer_address)
    if own_raw == peer_raw:
        raise ValueError("a pairwise key needs two different addresses")
    x, y = _shared_point(own_key, peer)
    mine = (own_raw, own_public.raw)
    theirs = (peer_raw, peer.raw)
    first, second = sorted((mine, theirs))
    secret = _kdf(encode_parts("pairwise-key", x.to_bytes(32, "big"), y.to_bytes(32, "big"),
                               first[0], first[1], second[0], second[1]), KEY_SIZE)
    parties = (("0x" + first[0].hex(), first[1]), ("0x" + second[0].hex(), second[1]))
    return PairwiseKey(secret, parties, _hmac_context(secret))


def _reference(clearing_ref: str) -> bytes:
    value = encode_field("clearing_ref", clearing_ref)
    if not value:
        raise InvalidRecord("clearing_ref", "a cross-platform record needs its clearing "
                                            "reference for its match tags")
    return value


# The tag inputs with their constant prefixes encoded once: tag, then the length-prefixed
# side. ``encode_parts`` gives the same bytes (tests check it); this skips re-encoding them
# for every record of a large reconciliation.
_MATCH_PREFIX: Final = {side: domain_tag("match-tag") + length_prefixed(side.value.encode())
                        for side in Side}
_AMOUNT_PREFIX: Final = {side: domain_tag("amount-tag") + length_prefixed(side.value.encode())
                         for side in Side}
_AMOUNT_TAIL: Final = struct.pack(">I", 8)


def _match_input(side: Side, reference: bytes) -> bytes:
    return _MATCH_PREFIX[side] + length_prefixed(reference)


def _amount_input(side: Side, reference: bytes, amount_fen: int, currency: bytes) -> bytes:
    return (_AMOUNT_PREFIX[side] + length_prefixed(reference) + _AMOUNT_TAIL
            + struct.pack(">Q", amount_fen) + length_prefixed(currency))


def match_tag(key: PairwiseKey, side: Side, clearing_ref: str) -> bytes:
    """The match tag of ``side``'s half of the payment with ``clearing_ref``:
    ``HMAC-SM3(k, tag("match-tag") ‖ lp(side) ‖ lp(clearing_ref))``.

    Raises :class:`InvalidRecord` for an empty or invalid reference.
    """
    return key.mac(_match_input(Side(side), _reference(clearing_ref)))


def amount_tag(key: PairwiseKey, side: Side, clearing_ref: str, amount_fen: int,
               currency: str) -> bytes:
    """The amount tag of ``side``'s half: ``HMAC-SM3(k, tag("amount-tag") ‖ lp(side) ‖
    lp(clearing_ref) ‖ lp(u64 amount_fen) ‖ lp(currency))``.

    Raises :class:`InvalidRecord` for an invalid reference, amount or currency.
    """
    encode_field("amount_fen", amount_fen)
    return key.mac(_amount_input(Side(side), _reference(clearing_ref), amount_fen,
                                 encode_field("currency", currency)))


def record_tags(key: PairwiseKey, side: Side, record: PaymentRecord) -> tuple[bytes, bytes]:
    """``(match_tag, amount_tag)`` of ``record`` as ``side``'s half of its payment.

    The record's fields are valid by construction; only an empty reference is refused
    (:class:`InvalidRecord`).
    """
    reference = record.clearing_ref.encode("utf-8")
    if not reference:
        _reference("")  # raises
    return (key.mac(_match_input(side, reference)),
            key.mac(_amount_input(side, reference, record.amount_fen,
                                  record.currency.encode("ascii"))))


def record_match_tags(key: PairwiseKey, record: PaymentRecord) -> dict[Side, bytes]:
    """The match tag of each side of ``record``'s payment (to tell which side a leaf is)."""
    reference = record.clearing_ref.encode("utf-8")
    if not reference:
        _reference("")  # raises
    return {side: key.mac(_match_input(side, reference)) for side in Side}


__all__ = [
    "KEY_SIZE",
    "TAG_SIZE",
    "CrossPlatform",
    "PairwiseKey",
    "Side",
    "amount_tag",
    "hmac_sm3",
    "match_tag",
    "pairwise_key",
    "peer_public_key",
    "record_match_tags",
    "record_tags",
]
