"""Record commitments and selective disclosure (PROTOCOL §4).

``C = SM3(tag_record ‖ h_1 ‖ … ‖ h_n)`` with ``h_f = SM3(tag_field ‖ name ‖ value ‖ s_f)``,
every variable-length part length-prefixed. The per-field salts ``s_f`` are derived from a
fresh 32-byte record salt with tagged SM3, so revealing one ``s_f`` reveals nothing about
the others.

- Hiding: without the salts, C and each h_f are SM3 outputs over 128-bit secrets.
- Binding: a second opening of C needs an SM3 collision (the encoding is injective).
- Selective: one field's value and salt plus the other fields' hashes recompute C.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Final

from ledger_node.crypto.encoding import domain_tag, length_prefixed
from ledger_node.crypto.hashes import DIGEST_SIZE, sm3_state, sm3_with_prefix
from ledger_node.errors import InvalidOpening, InvalidRecord
from ledger_node.protocol.record import (
    FIELD_NAMES,
    FIELD_SPECS,
    PaymentRecord,
    encode_field,
    field_spec,
)

Commitment = bytes
Salt = bytes

SALT_SIZE: Final = 32
FIELD_SALT_SIZE: Final = 16
_FIELD_COUNT: Final = len(FIELD_SPECS)

# One pre-fed SM3 context per field name: the tag and the name are absorbed once.
_FIELD_HASHERS: Final = {
    name: sm3_with_prefix(domain_tag("field") + length_prefixed(name.encode("ascii")))
    for name in FIELD_NAMES
}
_RECORD_HASHER: Final = sm3_with_prefix(domain_tag("record"))
_SALT_HASHER: Final = sm3_with_prefix(domain_tag("field-salt"))
_SALT_BLOCKS: Final = (_FIELD_COUNT * FIELD_SALT_SIZE + DIGEST_SIZE - 1) // DIGEST_SIZE
_SALT_OFFSETS: Final = tuple(range(0, _FIELD_COUNT * FIELD_SALT_SIZE, FIELD_SALT_SIZE))
# The same prefixes as SM3 states, for the per-record loop (record_field_hashes), which
# copies them inline: the same digests, without a Python call per hash.
_FIELD_STATES: Final = tuple(
    sm3_state(domain_tag("field") + length_prefixed(name.encode("ascii"))) for name in FIELD_NAMES
)
_RECORD_STATE: Final = sm3_state(domain_tag("record"))
_SALT_STATE: Final = sm3_state(domain_tag("field-salt"))
_BLOCK_INDEX: Final = tuple(bytes([i]) for i in range(_SALT_BLOCKS))


def new_salt() -> Salt:
    """Return a fresh 32-byte record salt from the operating system's CSPRNG."""
    return secrets.token_bytes(SALT_SIZE)


def field_salts(salt: Salt) -> tuple[bytes, ...]:
    """Return the 16-byte per-field salts derived from ``salt``, in field order.

    Block ``i`` of ``SM3(tag_salt ‖ salt ‖ i)`` (one byte ``i``) gives the salts of fields
    ``2i`` and ``2i+1``: six tagged SM3 calls for twelve fields.
    """
    _check_length("salt", salt, SALT_SIZE)
    return _derive_field_salts(salt)


def _derive_field_salts(salt: Salt) -> tuple[bytes, ...]:
    stream = b"".join(_SALT_HASHER(salt + bytes([i])) for i in range(_SALT_BLOCKS))
    return tuple(stream[i : i + FIELD_SALT_SIZE] for i in _SALT_OFFSETS)


def field_hash(name: str, value: bytes, field_salt: bytes) -> bytes:
    """Return ``h_f = SM3(tag_field ‖ name ‖ len(value) ‖ value ‖ s_f)``.

    ``value`` is the field's canonical bytes; ``s_f`` is fixed-size (16 bytes) and last,
    so it needs no length prefix.
    """
    hasher = _FIELD_HASHERS.get(name)
    if hasher is None:
        raise InvalidRecord(name, "is not a record field")
    if len(field_salt) != FIELD_SALT_SIZE:
        raise InvalidOpening(f"field_salt must be {FIELD_SALT_SIZE} bytes, got {len(field_salt)}")
    return hasher(length_prefixed(value) + field_salt)


def commitment_from_field_hashes(field_hashes: tuple[bytes, ...]) -> Commitment:
    """Return ``C = SM3(tag_record ‖ h_1 ‖ … ‖ h_n)`` over all n field hashes in order.

    The hashes are fixed-size (32 bytes) and their number is fixed, so plain concatenation
    is already unambiguous.
    """
    if len(field_hashes) != _FIELD_COUNT or any(len(h) != DIGEST_SIZE for h in field_hashes):
        raise InvalidOpening(f"expected {_FIELD_COUNT} field hashes of {DIGEST_SIZE} bytes")
    return _RECORD_HASHER(b"".join(field_hashes))


def record_field_hashes(record: PaymentRecord, salt: Salt) -> tuple[bytes, ...]:
    """Return the field hashes of ``record`` under ``salt``, in field order."""
    return tuple(_field_hashes(record, salt))


def _field_hashes(record: PaymentRecord, salt: Salt) -> list[bytes]:
    """The field hashes as :func:`field_salts` and :func:`field_hash` define them, inlined.

    The commitment's hot path (a platform commits to every record): the salt stream's six
    hashes and the twelve field hashes copy pre-fed SM3 states in one loop each, with no
    function call per hash; the same bytes as the spelled-out definitions (the vectors and
    ``tests/test_commitment.py`` check both).
    """
    _check_length("salt", salt, SALT_SIZE)
    stream = []
    for index in _BLOCK_INDEX:
        state = _SALT_STATE.copy()
        state.update(salt + index)
        stream.append(state.digest())
    salts = b"".join(stream)
    hashes = []
    for state, value, at in zip(_FIELD_STATES, record.encoded_fields(), _SALT_OFFSETS,
                                strict=True):
        state = state.copy()
        state.update(len(value).to_bytes(4, "big") + value + salts[at:at + FIELD_SALT_SIZE])
        hashes.append(state.digest())
    return hashes


def record_commitment(record: PaymentRecord, salt: Salt) -> Commitment:
    """Return the 32-byte commitment C to ``record`` under its 32-byte ``salt``."""
    # The field hashes are ours and well formed: skip commitment_from_field_hashes' checks.
    state = _RECORD_STATE.copy()
    state.update(b"".join(_field_hashes(record, salt)))
    return state.digest()


@dataclass(frozen=True, slots=True)
class RecordOpening:
    """A whole-record opening: the record and its salt, which recompute the commitment."""

    record: PaymentRecord
    salt: Salt

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form ``{"record": {...}, "salt": hex}``."""
        return {"record": self.record.to_json(), "salt": self.salt.hex()}

    @classmethod
    def from_json(cls, data: object) -> RecordOpening:
        """Parse the :meth:`to_json` form; raise InvalidRecord or InvalidOpening when malformed."""
        if not isinstance(data, dict) or set(data) != {"record", "salt"}:
            raise InvalidOpening('an opening is an object with exactly "record" and "salt"')
        return cls(PaymentRecord.from_json(data["record"]), _hex_field("salt", data["salt"]))


def verify_opening(commitment: Commitment, opening: RecordOpening) -> None:
    """Check that ``opening`` opens ``commitment``; raise :class:`InvalidOpening` if not."""
    _check_length("salt", opening.salt, SALT_SIZE)
    calculated = record_commitment(opening.record, opening.salt)
    if not hmac.compare_digest(calculated, commitment):
        raise InvalidOpening(
            f"record and salt commit to {calculated.hex()}, not {commitment.hex()}"
        )


@dataclass(frozen=True, slots=True)
class FieldDisclosure:
    """Proof of one field's value: its value and salt, and the other fields' hashes.

    It reveals that field and nothing else: the other fields stay behind their hashes.
    ``value`` is the field's typed value (as in :class:`PaymentRecord`).
    """

    name: str
    value: Any
    field_salt: bytes
    other_field_hashes: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (hex digests, the value in its record JSON form)."""
        spec = field_spec(self.name)
        return {
            "field": self.name,
            "value": spec.to_json(self.value),
            "field_salt": self.field_salt.hex(),
            "other_field_hashes": [h.hex() for h in self.other_field_hashes],
        }

    @classmethod
    def from_json(cls, data: object) -> FieldDisclosure:
        """Parse the :meth:`to_json` form; raise InvalidRecord or InvalidOpening when malformed."""
        keys = {"field", "value", "field_salt", "other_field_hashes"}
        if not isinstance(data, dict) or set(data) != keys:
            raise InvalidOpening(f"a field disclosure is an object with exactly {sorted(keys)}")
        name = data["field"]
        if not isinstance(name, str):
            raise InvalidOpening('"field" must be a field name')
        spec = field_spec(name)
        others = data["other_field_hashes"]
        if not isinstance(others, list):
            raise InvalidOpening('"other_field_hashes" must be a list of hex digests')
        return cls(
            name=name,
            value=spec.validate(spec.from_json(data["value"])),
            field_salt=_hex_field("field_salt", data["field_salt"]),
            other_field_hashes=tuple(_hex_field("other_field_hashes", h) for h in others),
        )


def disclose_field(record: PaymentRecord, salt: Salt, name: str) -> FieldDisclosure:
    """Return the disclosure of field ``name`` of ``record`` (committed under ``salt``)."""
    spec = field_spec(name)
    position = FIELD_NAMES.index(name)
    hashes = record_field_hashes(record, salt)
    return FieldDisclosure(
        name=name,
        value=getattr(record, spec.name),
        field_salt=field_salts(salt)[position],
        other_field_hashes=hashes[:position] + hashes[position + 1 :],
    )


def verify_field_disclosure(commitment: Commitment, disclosure: FieldDisclosure) -> None:
    """Check that ``disclosure`` proves its field's value under ``commitment``.

    Raises :class:`InvalidRecord` for an unknown field or invalid value and
    :class:`InvalidOpening` for wrong sizes or a commitment that does not match.
    """
    position = FIELD_NAMES.index(field_spec(disclosure.name).name)
    _check_length("field_salt", disclosure.field_salt, FIELD_SALT_SIZE)
    others = disclosure.other_field_hashes
    if len(others) != _FIELD_COUNT - 1:
        raise InvalidOpening(f"expected {_FIELD_COUNT - 1} other field hashes, got {len(others)}")
    for other in others:
        _check_length("other_field_hashes", other, DIGEST_SIZE)
    own = field_hash(
        disclosure.name, encode_field(disclosure.name, disclosure.value), disclosure.field_salt
    )
    calculated = commitment_from_field_hashes(others[:position] + (own,) + others[position:])
    if not hmac.compare_digest(calculated, commitment):
        raise InvalidOpening(
            f"disclosure of {disclosure.name!r} computes {calculated.hex()}, "
            f"not {commitment.hex()}"
        )


def _check_length(name: str, value: bytes, size: int) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        got = len(value) if isinstance(value, bytes) else type(value).__name__
        raise InvalidOpening(f"{name} must be {size} bytes, got {got}")


def _hex_field(name: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise InvalidOpening(f"{name} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidOpening(f"{name} is not valid hex") from None
