"""Regulator escrows (PROTOCOL §6): the regulator-only AML payload of each leaf.

Each record's leaf carries an escrow ``E`` that only the regulator can read:

* **Identity keys.** :func:`identity_key` derives a 32-byte key from a party's real-name
  identity (normalised, then tagged SM3), so the same person has the same key on every
  platform. Keys only ever travel inside escrows.
* **Payload.** :class:`EscrowPayload` holds what AML needs (identity keys and party kinds,
  amount, currency, time, channel, cross-border and cash flags, and a clearing key that pairs
  the two platforms' records of one cross-platform payment) and nothing else: never the
  record salt, the local transaction id, account tokens or raw identities. Its encoding is
  fixed-size, versioned and decoded strictly.
* **Envelope.** Per sealed batch, :class:`EscrowSealer` draws a fresh SM4 key K and wraps it
  once with SM2 for the regulator; each record's escrow is
  ``version ‖ fingerprint ‖ wrapped K ‖ SM4-GCM(K, payload, aad = C)``, so it is
  self-contained. :class:`EscrowOpener` holds one or more regulator private keys (key
  rotation) and caches unwrapped batch keys: one SM2 decryption per batch, not per record.

Escrow v1 layout (293 bytes, every escrow the same size)::

    off  len  field
      0    1  version            0x01
      1   16  key fingerprint    SM3(tag("escrow-key") ‖ lp(x ‖ y of regulator key))[:16]
     17  112  wrapped K          SM2 ciphertext of K as raw C1.x ‖ C1.y ‖ C3 ‖ C2 (32+32+32+16)
    129   12  nonce              random per record
    141  136  ciphertext         SM4-GCM of the 136-byte payload, aad = the commitment C
    277   16  tag                GCM tag

The module is pure: bytes in, bytes out, no I/O.
"""

from __future__ import annotations

import functools
import re
import struct
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ledger_node.crypto.encoding import encode_parts
from ledger_node.crypto.gmcrypto import (
    GCM_NONCE_SIZE,
    GCM_TAG_SIZE,
    SM4_KEY_SIZE,
    SM2PrivateKey,
    SM2PublicKey,
    decrypt,
    encrypt,
    new_sm4_key,
    sm4_gcm_decrypt,
    sm4_gcm_encrypt,
)
from ledger_node.crypto.hashes import DIGEST_SIZE, sm3
from ledger_node.errors import (
    DecryptionFailed,
    EscrowAuthenticationFailed,
    EscrowFormatError,
    EscrowKeyUnwrapFailed,
    EscrowVersionError,
    InvalidEscrowPayload,
    InvalidIdentity,
    UnknownEscrowKey,
)
from ledger_node.log.leaf import MAX_ESCROW_BYTES
from ledger_node.protocol.aml import EvidenceRef, IdentityKey, PartyKind, TracedPayment
from ledger_node.protocol.record import ISO_4217, MAX_AMOUNT_FEN, Channel, PaymentRecord

__all__ = [
    "ESCROW_SIZE",
    "ESCROW_VERSION",
    "FINGERPRINT_SIZE",
    "HEADER_SIZE",
    "PAYLOAD_SIZE",
    "PAYLOAD_VERSION",
    "EscrowOpener",
    "EscrowPayload",
    "EscrowSealer",
    "PartyKind",
    "classify_identity",
    "clearing_key",
    "escrow_fingerprint",
    "identity_key",
    "is_resident_id",
    "is_social_credit_code",
    "key_fingerprint",
    "normalise_identity",
    "payload_mismatches",
]

Commitment = bytes
"""A 32-byte record commitment C (the escrow's associated data)."""
Fingerprint = bytes
"""The 16-byte fingerprint of a regulator SM2 public key."""

ESCROW_VERSION: Final = 1
PAYLOAD_VERSION: Final = 1
FINGERPRINT_SIZE: Final = 16
HEADER_SIZE: Final = 1 + FINGERPRINT_SIZE
"""The fixed structure of an escrow: version and key fingerprint (same for every escrow of
one regulator key); everything after it is ciphertext or random."""
WRAPPED_KEY_SIZE: Final = 32 + 32 + 32 + SM4_KEY_SIZE  # C1.x ‖ C1.y ‖ C3 ‖ C2
CHANNEL_FIELD_SIZE: Final = 16
PAYLOAD_SIZE: Final = 1 + 2 * DIGEST_SIZE + 2 + 8 + 3 + 8 + CHANNEL_FIELD_SIZE + DIGEST_SIZE + 2
NO_CLEARING_KEY: Final = bytes(DIGEST_SIZE)
"""The clearing key of a payment made within one platform (no clearing reference)."""
ESCROW_SIZE: Final = HEADER_SIZE + WRAPPED_KEY_SIZE + GCM_NONCE_SIZE + PAYLOAD_SIZE + GCM_TAG_SIZE
MAX_SEALS_PER_BATCH: Final = 2**32
"""Random 96-bit GCM nonces stay safe for up to 2^32 messages under one key (NIST SP 800-38D)."""
DEFAULT_CACHE_SIZE: Final = 4096

assert ESCROW_SIZE <= MAX_ESCROW_BYTES

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_KIND_BYTE: Final = {PartyKind.PERSON: 1, PartyKind.INSTITUTION: 2}
_KIND_OF_BYTE: Final = {v: k for k, v in _KIND_BYTE.items()}
_CURRENCY: Final = {code.encode("ascii"): code for code in ISO_4217}
_MIN_MICROS: Final = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _US
_MAX_MICROS: Final = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _US
_PAYLOAD_STRUCT: Final = struct.Struct(f">B32s32sBBQ3sq{CHANNEL_FIELD_SIZE}s32sBB")
_CHANNEL_OF_FIELD: Final = {c.value.encode("ascii").ljust(CHANNEL_FIELD_SIZE, b"\x00"): c
                            for c in Channel}
assert _PAYLOAD_STRUCT.size == PAYLOAD_SIZE

# --------------------------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------------------------

_ID_FORM: Final = re.compile(r"[0-9A-Z]{18}")
_RESIDENT_ID: Final = re.compile(r"[1-9][0-9]{16}[0-9X]")
_RESIDENT_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RESIDENT_CHECK: Final = "10X98765432"
_USCC_CHARS: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100: no I, O, Z, S, V
_USCC: Final = re.compile(f"[{_USCC_CHARS}]{{18}}")
_ORG_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)  # GB 11714 organisation code
_USCC_WEIGHTS: Final = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def normalise_identity(identity: str) -> str:
    """Return the canonical form of a real-name identity, the input of :func:`identity_key`.

    NFC, surrounding whitespace stripped. If what remains, after NFKC (full-width digits and
    letters to ASCII), is an 18-character ID number form (resident identity number or unified
    social credit code), it is taken in that ASCII form and upper-cased (``x`` → ``X``).
    Other identities keep their case. Raises :class:`InvalidIdentity` for a non-string or an
    empty identity.
    """
    if not isinstance(identity, str):
        raise InvalidIdentity(f"identity must be a string, got {type(identity).__name__}")
    text = unicodedata.normalize("NFC", identity).strip()
    if not text:
        raise InvalidIdentity("identity must not be empty")
    folded = unicodedata.normalize("NFKC", text).upper()
    if _ID_FORM.fullmatch(folded):
        return folded
    return text


IDENTITY_KEY_CACHE_SIZE: Final = 16_384
"""Identity keys remembered per process (about 3 MB): payers and merchants recur, and a
key costs two Unicode normalisations and an SM3 call, a sixth of preparing a record."""


def identity_key(identity: str) -> IdentityKey:
    """Return the 32-byte identity key ``SM3(tag("identity-key") ‖ lp(normalised identity))``.

    Deterministic, so the same person has the same key on every platform; it must only ever
    travel inside escrows. Raises :class:`InvalidIdentity` as :func:`normalise_identity`.
    Recent identities' keys are remembered (:data:`IDENTITY_KEY_CACHE_SIZE`): the process
    that asks already holds the identities themselves.
    """
    if not isinstance(identity, str):
        normalise_identity(identity)  # raises
    return _identity_key(identity)


@functools.lru_cache(maxsize=IDENTITY_KEY_CACHE_SIZE)
def _identity_key(identity: str) -> IdentityKey:
    return sm3(encode_parts("identity-key", normalise_identity(identity).encode("utf-8")))


def is_resident_id(text: str) -> bool:
    """Whether ``text`` is a valid 18-character resident identity number (GB 11643).

    Checks the form (17 digits and a digit or ``X``), a real birth date at positions 7-14 and
    the ISO 7064 MOD 11-2 check character. ``text`` must already be normalised.
    """
    if not _RESIDENT_ID.fullmatch(text):
        return False
    try:
        datetime.strptime(text[6:14], "%Y%m%d")
    except ValueError:
        return False
    total = sum(int(ch) * w for ch, w in zip(text[:17], _RESIDENT_WEIGHTS, strict=True))
    return _RESIDENT_CHECK[total % 11] == text[17]


def is_social_credit_code(text: str) -> bool:
    """Whether ``text`` is a valid 18-character unified social credit code (GB 32100).

    Checks the alphabet (digits and upper-case letters without I, O, Z, S, V), the GB 11714
    check character of the embedded organisation code (positions 9-17) and the mod-31 check
    character. ``text`` must already be normalised.
    """
    if not _USCC.fullmatch(text):
        return False
    org = text[8:16]
    # GB 11714 values its characters over 0-9A-Z (A = 10 ... Z = 35), not GB 32100's set
    org_total = sum(int(ch, 36) * w for ch, w in zip(org, _ORG_WEIGHTS, strict=True))
    org_check = 11 - org_total % 11
    if text[16] != {10: "X", 11: "0"}.get(org_check, str(org_check)):
        return False
    total = sum(
        _USCC_CHARS.index(ch) * w for ch, w in zip(text[:17], _USCC_WEIGHTS, strict=True)
    )
    return _USCC_CHARS[(31 - total % 31) % 31] == text[17]


def classify_identity(identity: str) -> PartyKind:
    """Return whether ``identity`` is a natural person's or an institution's (a fallback).

    The platform did the real-name check and should state the kind explicitly (see
    :meth:`EscrowPayload.from_record`); this guesses it from the identity's form. A valid
    resident identity number is a :attr:`PartyKind.PERSON`, a valid unified social credit
    code an :attr:`PartyKind.INSTITUTION`. The rare 18-digit string that passes both checks
    (about 1 in 341 resident IDs) is taken as a PERSON: the lower AML thresholds, so a wrong
    guess gives an extra report, never a missed one. Raises :class:`InvalidIdentity` for an
    identity that is neither.
    """
    text = normalise_identity(identity)
    if is_resident_id(text):
        return PartyKind.PERSON
    if is_social_credit_code(text):
        return PartyKind.INSTITUTION
    raise InvalidIdentity("identity is neither a resident ID nor a unified social credit code")


# --------------------------------------------------------------------------------------------
# Payload
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EscrowPayload:
    """What the regulator learns from one record's escrow: exactly what AML needs.

    Field names match :class:`ledger_node.protocol.aml.TracedPayment`. Construction validates every
    field (time converted to UTC, channel to :class:`Channel`) and raises
    :class:`InvalidEscrowPayload` naming the bad field. ``cash`` must equal
    ``channel == "cash"``, as in :attr:`PaymentRecord.cash`.
    """

    payer_key: IdentityKey
    payee_key: IdentityKey
    payer_kind: PartyKind
    payee_kind: PartyKind
    amount_fen: int
    currency: str
    time: datetime
    channel: Channel
    cross_border: bool
    cash: bool
    clearing_key: bytes = NO_CLEARING_KEY

    def __post_init__(self) -> None:
        for name in ("payer_key", "payee_key", "clearing_key"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
                raise InvalidEscrowPayload(name, f"must be {DIGEST_SIZE} bytes")
        for name in ("payer_kind", "payee_kind"):
            if not isinstance(getattr(self, name), PartyKind):
                raise InvalidEscrowPayload(name, "must be a PartyKind")
        amount = self.amount_fen
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise InvalidEscrowPayload("amount_fen", "must be an integer number of fen")
        if not 0 < amount <= MAX_AMOUNT_FEN:
            raise InvalidEscrowPayload("amount_fen", f"must be in 1..{MAX_AMOUNT_FEN}")
        if not isinstance(self.currency, str) or self.currency not in ISO_4217:
            raise InvalidEscrowPayload("currency", f"{self.currency!r} is not ISO 4217")
        if not isinstance(self.time, datetime) or self.time.utcoffset() is None:
            raise InvalidEscrowPayload("time", "must be a datetime with a time zone")
        object.__setattr__(self, "time", self.time.astimezone(UTC))
        try:
            object.__setattr__(self, "channel", Channel(self.channel))
        except ValueError:
            raise InvalidEscrowPayload("channel", f"{self.channel!r} is not a channel") from None
        for name in ("cross_border", "cash"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidEscrowPayload(name, "must be a boolean")
        if self.cash != (self.channel is Channel.CASH):
            raise InvalidEscrowPayload("cash", "must be true exactly for the cash channel")

    @classmethod
    def from_record(
        cls,
        record: PaymentRecord,
        *,
        payer_kind: PartyKind | None = None,
        payee_kind: PartyKind | None = None,
    ) -> EscrowPayload:
        """Return the payload of ``record``, the kinds given or else :func:`classify_identity`.

        Only identity keys leave the record: the salt, local tx id, account tokens, clearing
        reference, platform name and raw identities are never copied. Raises
        :class:`InvalidIdentity` if a kind is omitted and its identity cannot be classified.
        """
        payer_kind = classify_identity(record.payer_identity) if payer_kind is None else payer_kind
        payee_kind = classify_identity(record.payee_identity) if payee_kind is None else payee_kind
        if not isinstance(payer_kind, PartyKind) or not isinstance(payee_kind, PartyKind):
            return cls(payer_key=identity_key(record.payer_identity),
                       payee_key=identity_key(record.payee_identity), payer_kind=payer_kind,
                       payee_kind=payee_kind, amount_fen=record.amount_fen,
                       currency=record.currency, time=record.time, channel=record.channel,
                       cross_border=record.cross_border, cash=record.cash)  # names the kind
        # A PaymentRecord's fields are valid by construction (amount range, ISO 4217, UTC
        # time, channel, flags), the same rules as the payload's, and both keys are SM3
        # digests: skip the constructor's checks on the SDK's per-record path.
        return cls._unchecked(
            identity_key(record.payer_identity), identity_key(record.payee_identity),
            payer_kind, payee_kind, record.amount_fen, record.currency, record.time,
            record.channel, record.cross_border, record.cash, clearing_key(record.clearing_ref))

    @classmethod
    def _unchecked(cls, *values: Any) -> EscrowPayload:
        """A payload of ``values`` in field order, not checked: only for values already
        checked against the same rules (:meth:`from_record`, :meth:`from_bytes`)."""
        payload = object.__new__(cls)
        for put, value in zip(_PAYLOAD_SETTERS, values, strict=True):
            put(payload, value)
        return payload

    def to_bytes(self) -> bytes:
        """Return the canonical fixed-size (:data:`PAYLOAD_SIZE`) v1 encoding.

        ``version(1) ‖ payer_key(32) ‖ payee_key(32) ‖ payer_kind(1) ‖ payee_kind(1) ‖
        amount_fen(u64) ‖ currency(3 ASCII) ‖ time(i64 µs since epoch, UTC) ‖
        channel(16 ASCII, zero-padded) ‖ clearing_key(32) ‖ cross_border(1) ‖ cash(1)``,
        integers big-endian.
        """
        micros = (self.time - _EPOCH) // _US
        return _PAYLOAD_STRUCT.pack(
            PAYLOAD_VERSION,
            self.payer_key,
            self.payee_key,
            _KIND_BYTE[self.payer_kind],
            _KIND_BYTE[self.payee_kind],
            self.amount_fen,
            self.currency.encode("ascii"),
            micros,
            self.channel.value.encode("ascii"),
            self.clearing_key,
            int(self.cross_border),
            int(self.cash),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> EscrowPayload:
        """Decode :meth:`to_bytes` strictly; every other byte string is refused.

        Raises :class:`EscrowVersionError` for an unknown payload version and
        :class:`InvalidEscrowPayload` for a wrong length, a kind or flag byte out of range, a
        channel not zero-padded or unknown, or any field value the constructor refuses.
        """
        if len(data) < 1:
            raise InvalidEscrowPayload("payload", "is empty")
        if data[0] != PAYLOAD_VERSION:
            raise EscrowVersionError("escrow payload", data[0])
        if len(data) != PAYLOAD_SIZE:
            raise InvalidEscrowPayload("payload", f"must be {PAYLOAD_SIZE} bytes")
        (_, payer_key, payee_key, payer_kind, payee_kind, amount, currency, micros, channel,
         clearing, cross_border, cash) = _PAYLOAD_STRUCT.unpack(data)
        kind_of, channel_value = _KIND_OF_BYTE.get, _CHANNEL_OF_FIELD.get(channel)
        payer, payee = kind_of(payer_kind), kind_of(payee_kind)
        currency_code = _CURRENCY.get(currency)
        if (payer is not None and payee is not None and channel_value is not None
                and currency_code is not None and cross_border < 2 and cash == (
                    channel_value is Channel.CASH) and 0 < amount <= MAX_AMOUNT_FEN
                and _MIN_MICROS <= micros <= _MAX_MICROS):
            # The usual case, every field valid, checked at once (the regulator decodes one
            # payload per record it ingests); anything else takes the named checks below.
            return cls._unchecked(payer_key, payee_key, payer, payee, amount, currency_code,
                                  _EPOCH + micros * _US, channel_value, cross_border == 1,
                                  cash == 1, clearing)
        kinds = []
        for name, byte in (("payer_kind", payer_kind), ("payee_kind", payee_kind)):
            if byte not in _KIND_OF_BYTE:
                raise InvalidEscrowPayload(name, f"unknown kind byte {byte}")
            kinds.append(_KIND_OF_BYTE[byte])
        flags = []
        for name, byte in (("cross_border", cross_border), ("cash", cash)):
            if byte not in (0, 1):
                raise InvalidEscrowPayload(name, f"flag byte must be 0 or 1, got {byte}")
            flags.append(byte == 1)
        channel_value = _CHANNEL_OF_FIELD.get(channel)
        if channel_value is None:
            name_bytes = channel.rstrip(b"\x00")
            if b"\x00" in name_bytes or not name_bytes.isascii():
                raise InvalidEscrowPayload("channel", "must be ASCII, zero-padded")
            raise InvalidEscrowPayload("channel", f"{name_bytes!r} is not a channel")
        try:
            time = _EPOCH + micros * _US
        except OverflowError:
            raise InvalidEscrowPayload("time", "out of range") from None
        if not currency.isascii():
            raise InvalidEscrowPayload("currency", "must be ASCII")
        currency_code = currency.decode("ascii")
        if (not 0 < amount <= MAX_AMOUNT_FEN or currency_code not in ISO_4217
                or flags[1] != (channel_value is Channel.CASH)):
            # the constructor names the field and the reason
            return cls(payer_key=payer_key, payee_key=payee_key, payer_kind=kinds[0],
                       payee_kind=kinds[1], amount_fen=amount, currency=currency_code,
                       time=time, channel=channel_value, cross_border=flags[0], cash=flags[1],
                       clearing_key=clearing)
        # Every field is checked above: skip the constructor's checks (ingest decodes one
        # payload per record, and they were most of its cost).
        return cls._unchecked(payer_key, payee_key, kinds[0], kinds[1], amount, currency_code,
                              time, channel_value, flags[0], flags[1], clearing)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form the regulator's API and case files show: hex identity keys,
        the kinds and channel by value, the time as ISO 8601 UTC (``+00:00``)."""
        return {
            "payer_key": self.payer_key.hex(), "payee_key": self.payee_key.hex(),
            "payer_kind": self.payer_kind.value, "payee_kind": self.payee_kind.value,
            "amount_fen": self.amount_fen, "currency": self.currency,
            "time": self.time.isoformat(), "channel": self.channel.value,
            "cross_border": self.cross_border, "cash": self.cash,
            "clearing_key": self.clearing_key.hex(),
        }

    def traced(self, ref: EvidenceRef, platform: str) -> TracedPayment:
        """Return this payload as the AML module's :class:`TracedPayment` for ``ref``."""
        return TracedPayment(
            ref=ref,
            platform=platform,
            payer_key=self.payer_key,
            payee_key=self.payee_key,
            payer_kind=self.payer_kind,
            payee_kind=self.payee_kind,
            amount_fen=self.amount_fen,
            currency=self.currency,
            time=self.time,
            channel=self.channel.value,
            cross_border=self.cross_border,
            cash=self.cash,
            clearing_key=None if self.clearing_key == NO_CLEARING_KEY else self.clearing_key,
        )


_PAYLOAD_SETTERS: Final = tuple(getattr(EscrowPayload, f.name).__set__
                                for f in fields(EscrowPayload))
"""Each field's slot setter, in field order (:meth:`EscrowPayload._unchecked`): a frozen
dataclass refuses ``setattr``, its slots' descriptors do not."""


def clearing_key(clearing_ref: str) -> bytes:
    """``SM3(tag("clearing-key") ‖ lp(UTF-8 clearing_ref))``, or :data:`NO_CLEARING_KEY`
    for a payment without a clearing reference.

    Both platforms' records of one cross-platform payment carry the same clearing reference,
    so their escrows carry the same key and the regulator counts the payment once. It only
    travels inside escrows (a public hash of a clearing reference would link the two records).
    """
    if not clearing_ref:
        return NO_CLEARING_KEY
    return sm3(encode_parts("clearing-key", clearing_ref.encode("utf-8")))


def payload_mismatches(payload: EscrowPayload, record: PaymentRecord) -> tuple[str, ...]:
    """Return the names of the payload fields that disagree with ``record`` (empty if none).

    The regulator's check of an escrow against a disclosed opening: the escrow is bound to its
    leaf, not to the committed record, so only an opening shows whether a platform escrowed
    the truth. Party kinds are not in the record and are not compared.
    """
    expected = {
        "payer_key": identity_key(record.payer_identity),
        "payee_key": identity_key(record.payee_identity),
        "amount_fen": record.amount_fen,
        "currency": record.currency,
        "time": record.time,
        "channel": record.channel,
        "cross_border": record.cross_border,
        "cash": record.cash,
        "clearing_key": clearing_key(record.clearing_ref),
    }
    return tuple(name for name, value in expected.items() if getattr(payload, name) != value)


# --------------------------------------------------------------------------------------------
# Envelope
# --------------------------------------------------------------------------------------------


def key_fingerprint(public_key: SM2PublicKey) -> Fingerprint:
    """Return the 16-byte fingerprint ``SM3(tag("escrow-key") ‖ lp(x ‖ y))[:16]`` of a key."""
    return sm3(encode_parts("escrow-key", public_key.raw))[:FINGERPRINT_SIZE]


def _der_length(n: int) -> bytes:
    return bytes([n]) if n < 0x80 else bytes([0x81, n])


def _der_tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(value)) + value


def _der_int(value: int) -> bytes:
    return _der_tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _raw_from_der(der: bytes) -> bytes:
    """Return ``x ‖ y ‖ C3 ‖ C2`` (fixed size) from a DER SM2 ciphertext of a 16-byte K."""
    parts: list[bytes] = []
    pos = 2
    if len(der) < 2 or der[0] != 0x30 or der[1] != len(der) - 2:
        raise EscrowFormatError("unexpected SM2 ciphertext form")
    for tag in (0x02, 0x02, 0x04, 0x04):
        if pos + 2 > len(der) or der[pos] != tag or der[pos + 1] >= 0x80:
            raise EscrowFormatError("unexpected SM2 ciphertext form")
        end = pos + 2 + der[pos + 1]
        parts.append(der[pos + 2:end])
        pos = end
    x, y, c3, c2 = parts
    if pos != len(der) or len(c3) != 32 or len(c2) != SM4_KEY_SIZE:
        raise EscrowFormatError("unexpected SM2 ciphertext form")
    return (
        int.from_bytes(x, "big").to_bytes(32, "big")
        + int.from_bytes(y, "big").to_bytes(32, "big")
        + c3
        + c2
    )


def _der_from_raw(raw: bytes) -> bytes:
    """Return the canonical DER SM2 ciphertext for ``x ‖ y ‖ C3 ‖ C2``."""
    body = (
        _der_int(int.from_bytes(raw[:32], "big"))
        + _der_int(int.from_bytes(raw[32:64], "big"))
        + _der_tlv(0x04, raw[64:96])
        + _der_tlv(0x04, raw[96:])
    )
    return _der_tlv(0x30, body)


def _check_commitment(commitment: bytes) -> None:
    if not isinstance(commitment, bytes) or len(commitment) != DIGEST_SIZE:
        raise EscrowFormatError(f"commitment must be {DIGEST_SIZE} bytes")


def escrow_fingerprint(escrow: bytes) -> Fingerprint:
    """Return the fingerprint of the regulator key ``escrow`` was sealed for.

    Raises :class:`EscrowVersionError` for an unknown escrow version and
    :class:`EscrowFormatError` unless ``escrow`` is exactly :data:`ESCROW_SIZE` bytes.
    """
    if not isinstance(escrow, bytes) or not escrow:
        raise EscrowFormatError("escrow is empty")
    if escrow[0] != ESCROW_VERSION:
        raise EscrowVersionError("escrow", escrow[0])
    if len(escrow) != ESCROW_SIZE:
        raise EscrowFormatError(f"escrow is {len(escrow)} bytes, v1 is {ESCROW_SIZE}")
    return escrow[1:HEADER_SIZE]


class EscrowSealer:
    """Seals the escrows of one batch for one regulator key (make a new one per batch).

    Construction draws a fresh SM4 key K and wraps it with SM2 for ``regulator_public_key``:
    the only SM2 operation of the batch (:attr:`sm2_encryptions` stays 1).
    """

    def __init__(self, regulator_public_key: SM2PublicKey) -> None:
        self.fingerprint: Final = key_fingerprint(regulator_public_key)
        self._key = new_sm4_key()
        self.wrapped_key: Final = _raw_from_der(encrypt(regulator_public_key, self._key))
        self.sm2_encryptions = 1
        self.sealed = 0
        self._header = bytes([ESCROW_VERSION]) + self.fingerprint + self.wrapped_key

    def seal(self, payload: EscrowPayload, commitment: Commitment) -> bytes:
        """Return the escrow of ``payload`` bound to the record commitment ``commitment``.

        Raises :class:`EscrowFormatError` unless ``commitment`` is 32 bytes, and
        :class:`EscrowError`-family :class:`EscrowFormatError` once the batch has sealed
        :data:`MAX_SEALS_PER_BATCH` escrows (random nonces would no longer be safe).
        """
        _check_commitment(commitment)
        if self.sealed >= MAX_SEALS_PER_BATCH:
            raise EscrowFormatError("batch sealed too many escrows under one key")
        self.sealed += 1
        return self._header + sm4_gcm_encrypt(self._key, payload.to_bytes(), commitment)

    def seal_record(
        self,
        record: PaymentRecord,
        commitment: Commitment,
        *,
        payer_kind: PartyKind | None = None,
        payee_kind: PartyKind | None = None,
    ) -> bytes:
        """Return the escrow of ``record`` (see :meth:`EscrowPayload.from_record` and
        :meth:`seal`, whose errors it raises)."""
        payload = EscrowPayload.from_record(record, payer_kind=payer_kind, payee_kind=payee_kind)
        return self.seal(payload, commitment)


class EscrowOpener:
    """The regulator's side: opens escrows with one or more private keys (old and rotated).

    ``keys`` maps each key's :func:`key_fingerprint` to the private key. Unwrapped batch keys
    are cached (least recently used first out, ``cache_size`` batches), so opening costs one
    SM2 decryption per batch; :attr:`sm2_decryptions` counts them. Construction raises
    :class:`EscrowFormatError` if a fingerprint does not match its key.
    """

    def __init__(
        self, keys: Mapping[Fingerprint, SM2PrivateKey], *, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        for fingerprint, key in keys.items():
            if key_fingerprint(key.public_key()) != fingerprint:
                raise EscrowFormatError(f"fingerprint {fingerprint.hex()} does not match its key")
        if cache_size < 1:
            raise ValueError("cache_size must be positive")
        self._keys = dict(keys)
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._cache_size = cache_size
        self.sm2_decryptions = 0

    @classmethod
    def from_keys(cls, *keys: SM2PrivateKey, cache_size: int = DEFAULT_CACHE_SIZE) -> EscrowOpener:
        """Return an opener holding ``keys``, each under its own fingerprint."""
        return cls({key_fingerprint(k.public_key()): k for k in keys}, cache_size=cache_size)

    @property
    def fingerprints(self) -> frozenset[Fingerprint]:
        """The fingerprints of the keys this opener holds."""
        return frozenset(self._keys)

    def _batch_key(self, fingerprint: bytes, wrapped: bytes) -> bytes:
        cache_key = fingerprint + wrapped
        cached = self._cache.get(cache_key)
        if cached is not None:
            self._cache.move_to_end(cache_key)
            return cached
        private_key = self._keys.get(fingerprint)
        if private_key is None:
            raise UnknownEscrowKey(fingerprint)
        self.sm2_decryptions += 1
        try:
            key = decrypt(private_key, _der_from_raw(wrapped))
        except DecryptionFailed as exc:
            raise EscrowKeyUnwrapFailed(f"wrapped batch key does not decrypt: {exc}") from None
        if len(key) != SM4_KEY_SIZE:  # pragma: no cover - C2 is fixed at 16 bytes
            raise EscrowKeyUnwrapFailed("wrapped batch key has the wrong size")
        self._cache[cache_key] = key
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return key

    def open(self, escrow: bytes, commitment: Commitment) -> EscrowPayload:
        """Return the payload sealed in ``escrow`` for the leaf whose commitment is given.

        Raises, in the order checked: :class:`EscrowFormatError` (empty, truncated or
        extended escrow; commitment not 32 bytes), :class:`EscrowVersionError` (unknown
        version), :class:`UnknownEscrowKey` (no key with the escrow's fingerprint),
        :class:`EscrowKeyUnwrapFailed` (the wrapped batch key was altered),
        :class:`EscrowAuthenticationFailed` (nonce, ciphertext or tag altered, or the escrow
        belongs to another leaf), and :class:`InvalidEscrowPayload` /
        :class:`EscrowVersionError` for a payload that authenticates but does not decode.
        """
        fingerprint = escrow_fingerprint(escrow)
        _check_commitment(commitment)
        wrapped = escrow[HEADER_SIZE:HEADER_SIZE + WRAPPED_KEY_SIZE]
        key = self._batch_key(fingerprint, wrapped)
        try:
            plaintext = sm4_gcm_decrypt(key, escrow[HEADER_SIZE + WRAPPED_KEY_SIZE:], commitment)
        except DecryptionFailed:
            raise EscrowAuthenticationFailed(
                "escrow does not authenticate under this commitment (altered, or another leaf's)"
            ) from None
        return EscrowPayload.from_bytes(plaintext)
