"""Record commitments: hiding, binding (any field change), and selective disclosure."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_node.crypto.hashes import sm3
from ledger_node.errors import InvalidOpening, InvalidRecord
from ledger_node.protocol.commitment import (
    FIELD_SALT_SIZE,
    FieldDisclosure,
    RecordOpening,
    disclose_field,
    field_hash,
    field_salts,
    new_salt,
    record_commitment,
    record_field_hashes,
    verify_field_disclosure,
    verify_opening,
)
from ledger_node.protocol.record import FIELD_NAMES, Channel, PaymentRecord
from tests.strategies import records, salts
from tests.test_record import sample_record


def flip_bit(data: bytes, bit: int) -> bytes:
    """Return ``data`` with bit ``bit`` (0 = most significant of byte 0) flipped."""
    index, offset = divmod(bit % (8 * len(data)), 8)
    return data[:index] + bytes([data[index] ^ (0x80 >> offset)]) + data[index + 1 :]


def other_value(record: PaymentRecord, name: str) -> Any:
    """A valid value for field ``name`` that differs from ``record``'s."""
    current = getattr(record, name)
    match name:
        case "platform":
            return "wechatpay" if current != "wechatpay" else "unionpay"
        case "amount_fen":
            return current + 1 if current < 2**62 else current - 1
        case "currency":
            return "USD" if current != "USD" else "CNY"
        case "time":
            return current + timedelta(microseconds=1)
        case "channel":
            return Channel.APP if current != Channel.APP else Channel.QR
        case "cross_border":
            return not current
        case _:
            return current[:-1] + ("x" if current[-1:] != "x" else "y") if current else "x"


def test_commitment_matches_the_documented_construction() -> None:
    record, salt = sample_record(), bytes(range(32))
    tag_field = b"\x00\x00\x00\x0bjl:v1:field"
    tag_record = b"\x00\x00\x00\x0cjl:v1:record"
    tag_salt = b"\x00\x00\x00\x10jl:v1:field-salt"
    stream = b"".join(sm3(tag_salt + salt + bytes([i])) for i in range(6))
    expected_salts = tuple(stream[16 * i : 16 * (i + 1)] for i in range(12))
    assert field_salts(salt) == expected_salts
    expected_hashes = []
    for name, value, s_f in zip(FIELD_NAMES, record.encoded_fields(), expected_salts, strict=True):
        encoded = (
            tag_field + len(name).to_bytes(4, "big") + name.encode()
            + len(value).to_bytes(4, "big") + value + s_f
        )
        expected_hashes.append(sm3(encoded))
    assert record_field_hashes(record, salt) == tuple(expected_hashes)
    assert record_commitment(record, salt) == sm3(tag_record + b"".join(expected_hashes))


def test_commitments_stay_byte_identical() -> None:
    """Pinned outputs (computed before the hot path was inlined): the protocol never changes
    with an optimisation."""
    assert record_commitment(sample_record(), bytes(range(32))).hex() == (
        "aadb89184312fa11d45cc31186a4447563997bca50e4b491ba885c207de7ac65")
    other = sample_record(channel=Channel.CASH, cross_border=True, clearing_ref="参考-1")
    assert record_commitment(other, bytes(range(32, 64))).hex() == (
        "e5aaff87e142755134e86265bb4ab9dd97ec04f474b50341ea5f4518a019b161")


def test_field_salts_are_distinct_16_byte_blocks() -> None:
    derived = field_salts(new_salt())
    assert len(derived) == len(FIELD_NAMES)
    assert all(len(s) == FIELD_SALT_SIZE for s in derived)
    assert len(set(derived)) == len(derived)


@given(records, salts, salts)
def test_same_record_two_salts_gives_unrelated_commitments(
    record: PaymentRecord, salt1: bytes, salt2: bytes
) -> None:
    if salt1 == salt2:
        return
    c1, c2 = record_commitment(record, salt1), record_commitment(record, salt2)
    distance = bin(int.from_bytes(c1, "big") ^ int.from_bytes(c2, "big")).count("1")
    assert 48 <= distance <= 208  # ~128 expected; 10 standard deviations either side
    first, second = record_field_hashes(record, salt1), record_field_hashes(record, salt2)
    assert not set(first) & set(second)


@given(records, salts, st.sampled_from(FIELD_NAMES))
def test_changing_any_one_field_changes_the_commitment(
    record: PaymentRecord, salt: bytes, name: str
) -> None:
    changed = replace(record, **{name: other_value(record, name)})
    assert changed != record
    assert record_commitment(changed, salt) != record_commitment(record, salt)


@given(records, salts)
def test_whole_record_opening_verifies_and_round_trips(record: PaymentRecord, salt: bytes) -> None:
    commitment = record_commitment(record, salt)
    opening = RecordOpening(record, salt)
    verify_opening(commitment, opening)
    verify_opening(commitment, RecordOpening.from_json(opening.to_json()))


@given(records, salts, st.sampled_from(FIELD_NAMES), st.integers(0, 255))
def test_tampered_opening_is_rejected(
    record: PaymentRecord, salt: bytes, name: str, bit: int
) -> None:
    commitment = record_commitment(record, salt)
    changed = replace(record, **{name: other_value(record, name)})
    with pytest.raises(InvalidOpening, match="commit to"):
        verify_opening(commitment, RecordOpening(changed, salt))
    with pytest.raises(InvalidOpening):
        verify_opening(commitment, RecordOpening(record, flip_bit(salt, bit)))
    with pytest.raises(InvalidOpening):
        verify_opening(flip_bit(commitment, bit), RecordOpening(record, salt))


def test_opening_with_wrong_salt_length_is_rejected() -> None:
    record = sample_record()
    with pytest.raises(InvalidOpening, match="salt must be 32 bytes, got 31"):
        verify_opening(bytes(32), RecordOpening(record, bytes(31)))


@given(records, salts, st.sampled_from(FIELD_NAMES))
def test_single_field_disclosure_verifies_and_round_trips(
    record: PaymentRecord, salt: bytes, name: str
) -> None:
    commitment = record_commitment(record, salt)
    disclosure = disclose_field(record, salt, name)
    verify_field_disclosure(commitment, disclosure)
    verify_field_disclosure(commitment, FieldDisclosure.from_json(disclosure.to_json()))


@given(records, salts, st.sampled_from(FIELD_NAMES))
def test_disclosure_reveals_only_its_own_field(
    record: PaymentRecord, salt: bytes, name: str
) -> None:
    disclosure = disclose_field(record, salt, name)
    position = FIELD_NAMES.index(name)
    others = [s for i, s in enumerate(field_salts(salt)) if i != position]
    published = repr(disclosure.to_json()).encode() + disclosure.field_salt
    assert salt.hex() not in published.decode(errors="ignore")
    assert not any(s.hex() in repr(disclosure.to_json()) for s in others)
    assert disclosure.other_field_hashes == tuple(
        h for i, h in enumerate(record_field_hashes(record, salt)) if i != position
    )


@settings(max_examples=60)
@given(records, salts, st.sampled_from(FIELD_NAMES), st.integers(0, 255), st.data())
def test_tampered_disclosure_is_rejected(
    record: PaymentRecord, salt: bytes, name: str, bit: int, data: st.DataObject
) -> None:
    commitment = record_commitment(record, salt)
    disclosure = disclose_field(record, salt, name)

    wrong_value = replace(disclosure, value=other_value(record, name))
    with pytest.raises(InvalidOpening, match="computes"):
        verify_field_disclosure(commitment, wrong_value)

    wrong_salt = replace(disclosure, field_salt=flip_bit(disclosure.field_salt, bit))
    with pytest.raises(InvalidOpening):
        verify_field_disclosure(commitment, wrong_salt)

    other_name = data.draw(st.sampled_from([n for n in FIELD_NAMES if n != name]))
    try:
        verify_field_disclosure(commitment, replace(disclosure, name=other_name))
    except (InvalidOpening, InvalidRecord):
        pass  # the value may not even be valid for the other field
    else:
        pytest.fail(f"disclosure of {name} accepted under the name {other_name}")

    sibling = data.draw(st.integers(0, len(disclosure.other_field_hashes) - 1))
    hashes = list(disclosure.other_field_hashes)
    hashes[sibling] = flip_bit(hashes[sibling], bit)
    with pytest.raises(InvalidOpening):
        verify_field_disclosure(commitment, replace(disclosure, other_field_hashes=tuple(hashes)))


def test_malformed_disclosures_are_rejected_with_reasons() -> None:
    record, salt = sample_record(), new_salt()
    commitment = record_commitment(record, salt)
    good = disclose_field(record, salt, "amount_fen")
    cases: list[tuple[FieldDisclosure, type[Exception], str]] = [
        (replace(good, other_field_hashes=good.other_field_hashes[:-1]), InvalidOpening,
         "expected 11 other field hashes, got 10"),
        (replace(good, other_field_hashes=good.other_field_hashes + (bytes(32),)),
         InvalidOpening, "got 12"),
        (replace(good, other_field_hashes=(bytes(31),) + good.other_field_hashes[1:]),
         InvalidOpening, "other_field_hashes must be 32 bytes, got 31"),
        (replace(good, field_salt=bytes(15)), InvalidOpening, "field_salt must be 16 bytes"),
        (replace(good, name="nickname"), InvalidRecord, "is not a record field"),
        (replace(good, value=-3), InvalidRecord, "must be in 1.."),
    ]
    for disclosure, error, message in cases:
        with pytest.raises(error, match=message):
            verify_field_disclosure(commitment, disclosure)


def test_disclosure_json_rejects_malformed_documents() -> None:
    good = disclose_field(sample_record(), new_salt(), "currency").to_json()
    bad_documents: list[tuple[object, type[Exception], str]] = [
        ([good], InvalidOpening, "exactly"),
        ({k: v for k, v in good.items() if k != "field_salt"}, InvalidOpening, "exactly"),
        (good | {"field": 7}, InvalidOpening, '"field" must be a field name'),
        (good | {"field_salt": "zz"}, InvalidOpening, "field_salt is not valid hex"),
        (good | {"field_salt": 5}, InvalidOpening, "field_salt must be a hex string"),
        (good | {"other_field_hashes": "ab"}, InvalidOpening, "must be a list"),
        (good | {"value": "XYZ"}, InvalidRecord, "ISO 4217"),
    ]
    for document, error, message in bad_documents:
        with pytest.raises(error, match=message):
            FieldDisclosure.from_json(document)
    with pytest.raises(InvalidOpening, match="exactly"):
        RecordOpening.from_json({"record": {}})


def test_field_hash_rejects_unknown_fields_and_bad_salts() -> None:
    with pytest.raises(InvalidRecord, match="is not a record field"):
        field_hash("nickname", b"x", bytes(16))
    with pytest.raises(InvalidOpening, match="field_salt must be 16 bytes"):
        field_hash("currency", b"CNY", bytes(32))
    with pytest.raises(InvalidOpening, match="salt must be 32 bytes"):
        field_salts(bytes(16))


def test_fresh_salts_differ() -> None:
    assert len({new_salt() for _ in range(100)}) == 100
