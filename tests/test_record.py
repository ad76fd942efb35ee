"""Payment records: validation names the field and the reason; encodings are canonical."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given

from ledger_node.errors import InvalidRecord
from ledger_node.protocol.record import (
    FIELD_NAMES,
    FIELD_SPECS,
    Channel,
    PaymentRecord,
    encode_field,
    format_time,
)
from tests.strategies import records

BEIJING = timezone(timedelta(hours=8))


def sample_record(**changes: Any) -> PaymentRecord:
    """A valid record; keyword arguments replace fields."""
    fields: dict[str, Any] = {
        "platform": "unionpay",
        "local_tx_id": "UP20261127-000001",
        "payer_identity": "110101199003077777",
        "payer_account": "tok_payer_1",
        "payee_identity": "91110000MA01ABCD2X",
        "payee_account": "tok_merchant_9",
        "amount_fen": 12_345,
        "currency": "CNY",
        "time": datetime(2026, 11, 27, 11, 0, tzinfo=BEIJING),
        "channel": Channel.QR,
        "cross_border": False,
        "clearing_ref": "",
    }
    fields.update(changes)
    return PaymentRecord(**fields)


def test_field_order_is_the_protocol_order() -> None:
    assert FIELD_NAMES == (
        "platform", "local_tx_id", "payer_identity", "payer_account", "payee_identity",
        "payee_account", "amount_fen", "currency", "time", "channel", "cross_border",
        "clearing_ref",
    )


def test_time_is_stored_in_utc_and_encoded_as_microseconds() -> None:
    record = sample_record()
    assert record.time == datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    assert format_time(record.time) == "2026-11-27T03:00:00.000000Z"
    assert encode_field("time", record.time) == (1_795_748_400 * 10**6).to_bytes(8, "big")


def test_text_is_nfc_normalised() -> None:
    decomposed = sample_record(payer_identity="e\u0301")
    composed = sample_record(payer_identity="\u00e9")
    assert decomposed == composed
    assert decomposed.encoded_fields() == composed.encoded_fields()


def test_cash_follows_the_channel() -> None:
    assert sample_record(channel="cash").cash
    assert not sample_record(channel="qr").cash


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("amount_fen", -1, "must be in 1.."),
        ("amount_fen", 0, "must be in 1.."),
        ("amount_fen", 2**63, "must be in 1.."),
        ("amount_fen", 12.5, "integer number of fen, got float"),
        ("amount_fen", "100", "integer number of fen, got str"),
        ("amount_fen", True, "integer number of fen, got bool"),
        ("currency", "XYZ", "not an ISO 4217 currency code"),
        ("currency", "cny", "not an ISO 4217 currency code"),
        ("currency", 156, "not an ISO 4217 currency code"),
        ("platform", "UnionPay", "must match"),
        ("platform", "", "must not be empty"),
        ("platform", "p" * 33, "at most 32 allowed"),
        ("local_tx_id", "x" * 65, "at most 64 allowed"),
        ("payer_identity", "身" * 43, "129 bytes in UTF-8; at most 128 allowed"),
        ("payer_identity", "", "must not be empty"),
        ("payee_account", 42, "must be a string, got int"),
        ("clearing_ref", "a\nb", "control characters"),
        ("payer_account", "\ud800", "not valid Unicode"),
        ("time", datetime(2026, 1, 1), "must carry a time zone"),
        ("time", "2026-01-01T00:00:00Z", "must be a datetime, got str"),
        ("channel", "telepathy", "is not one of qr, app"),
        ("channel", 1, "is not one of"),
        ("cross_border", 1, "must be a boolean, got int"),
    ],
)
def test_invalid_field_is_named_with_its_reason(field: str, value: object, reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason) as caught:
        sample_record(**{field: value})
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)


@given(records)
def test_json_round_trip(record: PaymentRecord) -> None:
    assert PaymentRecord.from_json(record.to_json()) == record


def test_from_json_rejects_unknown_missing_and_malformed() -> None:
    good = sample_record().to_json()
    with pytest.raises(InvalidRecord, match="'nickname': is not a record field"):
        PaymentRecord.from_json(good | {"nickname": "x"})
    with pytest.raises(InvalidRecord, match="'amount_fen': is missing"):
        PaymentRecord.from_json({k: v for k, v in good.items() if k != "amount_fen"})
    with pytest.raises(InvalidRecord, match="not an RFC 3339 timestamp"):
        PaymentRecord.from_json(good | {"time": "yesterday"})
    with pytest.raises(InvalidRecord, match="must be a JSON object"):
        PaymentRecord.from_json([good])
    without_ref = {k: v for k, v in good.items() if k != "clearing_ref"}
    assert PaymentRecord.from_json(without_ref).clearing_ref == ""


def test_encode_field_validates_and_rejects_unknown_fields() -> None:
    assert encode_field("amount_fen", 1) == (1).to_bytes(8, "big")
    with pytest.raises(InvalidRecord, match="is not a record field"):
        encode_field("salt", b"")
    with pytest.raises(InvalidRecord, match="amount_fen"):
        encode_field("amount_fen", -5)


@given(records)
def test_replace_revalidates(record: PaymentRecord) -> None:
    with pytest.raises(InvalidRecord):
        replace(record, amount_fen=-1)


@given(records)
def test_encoded_fields_are_each_specs_encoding(record: PaymentRecord) -> None:
    """The spelled-out encoder (the commitment's hot path) gives each spec's bytes."""
    assert record.encoded_fields() == tuple(
        spec.encode(getattr(record, spec.name)) for spec in FIELD_SPECS
    )
