"""The typed payment record of PROTOCOL §4 and its canonical, versioned field encoding.

Each field has one spec: a validator that normalises the typed value (NFC text, UTC time)
and an encoder that gives its only byte form, which is what the commitment hashes. Invalid
input raises :class:`InvalidRecord` naming the field and the reason.
"""

from __future__ import annotations

import re
import struct
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from ledger_node.errors import InvalidRecord

MAX_AMOUNT_FEN: Final = 2**63 - 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_U64: Final = struct.Struct(">Q").pack
_I64: Final = struct.Struct(">q").pack
_PLATFORM_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")

# ISO 4217 active alphabetic codes (the list in force in 2025, funds codes and X-codes excluded).
ISO_4217: Final = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
    GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
    KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK
    MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR
    SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()
)


class Channel(StrEnum):
    """How the payment was made; ``cash`` marks cash deposits and withdrawals for AML."""

    QR = "qr"
    APP = "app"
    POS = "pos"
    ONLINE = "online"
    TRANSFER = "transfer"
    CASH = "cash"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one record field is validated, encoded to bytes and written to / read from JSON."""

    name: str
    validate: Callable[[object], Any]
    encode: Callable[[Any], bytes]
    to_json: Callable[[Any], Any] = lambda value: value
    from_json: Callable[[Any], Any] = lambda value: value


def _text(name: str, limit: int, *, required: bool = True) -> Callable[[object], str]:
    def validate(value: object) -> str:
        if not isinstance(value, str):
            raise InvalidRecord(name, f"must be a string, got {type(value).__name__}")
        text = unicodedata.normalize("NFC", value)
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidRecord(name, "is not valid Unicode text") from None
        if size > limit:
            raise InvalidRecord(name, f"is {size} bytes in UTF-8; at most {limit} allowed")
        if required and not text:
            raise InvalidRecord(name, "must not be empty")
        if any(unicodedata.category(ch) == "Cc" for ch in text):
            raise InvalidRecord(name, "must not contain control characters")
        return text

    return validate


def _platform(value: object) -> str:
    text = _text("platform", 32)(value)
    if not _PLATFORM_NAME.fullmatch(text):
        raise InvalidRecord("platform", "must match [a-z][a-z0-9_-]{0,31}")
    return text


def _amount(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        kind = type(value).__name__
        raise InvalidRecord("amount_fen", f"must be an integer number of fen, got {kind}")
    if not 0 < value <= MAX_AMOUNT_FEN:
        raise InvalidRecord("amount_fen", f"must be in 1..{MAX_AMOUNT_FEN}, got {value}")
    return value


def _currency(value: object) -> str:
    if not isinstance(value, str) or value not in ISO_4217:
        raise InvalidRecord("currency", f"{value!r} is not an ISO 4217 currency code")
    return value


def _time(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidRecord("time", f"must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRecord("time", "must carry a time zone (it is stored in UTC)")
    return value.astimezone(UTC)


def _time_from_json(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # _time names the type problem
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRecord("time", f"{value!r} is not an RFC 3339 timestamp") from None


def _channel(value: object) -> Channel:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return Channel(value)
    except ValueError:
        allowed = ", ".join(c.value for c in Channel)
        raise InvalidRecord("channel", f"{value!r} is not one of {allowed}") from None


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidRecord("cross_border", f"must be a boolean, got {type(value).__name__}")
    return value


def format_time(value: datetime) -> str:
    """Return ``value`` in UTC as RFC 3339 with microseconds and a ``Z`` suffix."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utf8(value: str) -> bytes:
    return value.encode("utf-8")


# The protocol's field order: commitments hash the fields in exactly this order.
FIELD_SPECS: Final[tuple[FieldSpec, ...]] = (
    FieldSpec("platform", _platform, _utf8),
    FieldSpec("local_tx_id", _text("local_tx_id", 64), _utf8),
    FieldSpec("payer_identity", _text("payer_identity", 128), _utf8),
    FieldSpec("payer_account", _text("payer_account", 128), _utf8),
    FieldSpec("payee_identity", _text("payee_identity", 128), _utf8),
    FieldSpec("payee_account", _text("payee_account", 128), _utf8),
    FieldSpec("amount_fen", _amount, lambda v: struct.pack(">Q", v)),
    FieldSpec("currency", _currency, lambda v: v.encode("ascii")),
    FieldSpec(
        "time",
        _time,
        lambda v: struct.pack(">q", (v - _EPOCH) // timedelta(microseconds=1)),
        format_time,
        _time_from_json,
    ),
    FieldSpec("channel", _channel, lambda v: v.value.encode("ascii"), lambda v: v.value),
    FieldSpec("cross_border", _flag, lambda v: b"\x01" if v else b"\x00"),
    FieldSpec("clearing_ref", _text("clearing_ref", 64, required=False), _utf8),
)
FIELD_NAMES: Final[tuple[str, ...]] = tuple(spec.name for spec in FIELD_SPECS)
_SPEC_BY_NAME: Final[dict[str, FieldSpec]] = {spec.name: spec for spec in FIELD_SPECS}


def field_spec(name: str) -> FieldSpec:
    """Return the spec of field ``name``; raise :class:`InvalidRecord` for an unknown name."""
    try:
        return _SPEC_BY_NAME[name]
    except KeyError:
        raise InvalidRecord(name, "is not a record field") from None


def encode_field(name: str, value: object) -> bytes:
    """Validate one field's typed value and return its canonical bytes."""
    spec = field_spec(name)
    return spec.encode(spec.validate(value))


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """One payment as a platform holds it in its own domain; it never leaves in plaintext.

    Construction validates and normalises every field; invalid input raises
    :class:`InvalidRecord`.
    """

    platform: str
    local_tx_id: str
    payer_identity: str
    payer_account: str
    payee_identity: str
    payee_account: str
    amount_fen: int
    currency: str
    time: datetime
    channel: Channel
    cross_border: bool
    clearing_ref: str = ""

    def __post_init__(self) -> None:
        for spec in FIELD_SPECS:
            object.__setattr__(self, spec.name, spec.validate(getattr(self, spec.name)))

    @property
    def cash(self) -> bool:
        """Whether this is a cash payment (AML counts cash separately)."""
        return self.channel is Channel.CASH

    def encoded_fields(self) -> tuple[bytes, ...]:
        """Return each field's canonical value bytes, in protocol order.

        Each spec's encoder, spelled out (a commitment encodes every record once, and the
        generic loop over the specs was a quarter of it); ``tests/test_record.py`` checks
        it against the specs.
        """
        return (
            self.platform.encode("utf-8"),
            self.local_tx_id.encode("utf-8"),
            self.payer_identity.encode("utf-8"),
            self.payer_account.encode("utf-8"),
            self.payee_identity.encode("utf-8"),
            self.payee_account.encode("utf-8"),
            _U64(self.amount_fen),
            self.currency.encode("ascii"),
            _I64((self.time - _EPOCH) // _MICROSECOND),
            self.channel.value.encode("ascii"),
            b"\x01" if self.cross_border else b"\x00",
            self.clearing_ref.encode("utf-8"),
        )

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (time as RFC 3339 UTC with microseconds)."""
        return {spec.name: spec.to_json(getattr(self, spec.name)) for spec in FIELD_SPECS}

    @classmethod
    def from_json(cls, data: object) -> PaymentRecord:
        """Parse the :meth:`to_json` form; raise :class:`InvalidRecord` on any problem."""
        if not isinstance(data, dict):
            raise InvalidRecord("record", "must be a JSON object")
        unknown = sorted(set(data) - set(FIELD_NAMES))
        if unknown:
            raise InvalidRecord(str(unknown[0]), "is not a record field")
        values: dict[str, Any] = {}
        for spec in FIELD_SPECS:
            if spec.name not in data:
                if spec.name == "clearing_ref":
                    continue
                raise InvalidRecord(spec.name, "is missing")
            values[spec.name] = spec.from_json(data[spec.name])
        return cls(**values)
