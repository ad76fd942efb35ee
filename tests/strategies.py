"""Hypothesis strategies shared by the test modules: valid payment records and salts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st

from ledger_node.protocol.record import ISO_4217, MAX_AMOUNT_FEN, Channel, PaymentRecord

_TEXT_ALPHABET = st.characters(
    codec="utf-8", exclude_categories=("Cc", "Cs"), min_codepoint=0x20
)


def text_field(max_bytes: int, *, allow_empty: bool = False) -> st.SearchStrategy[str]:
    """Printable text that fits ``max_bytes`` in UTF-8 after NFC normalisation."""
    return st.text(_TEXT_ALPHABET, min_size=0 if allow_empty else 1, max_size=max_bytes // 4)


platforms = st.from_regex(r"[a-z][a-z0-9_-]{0,31}", fullmatch=True)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.builds(
    lambda dt, hours: dt.replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=hours))),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    st.integers(-12, 14),
)

records = st.builds(
    PaymentRecord,
    platform=platforms,
    local_tx_id=text_field(64),
    payer_identity=text_field(128),
    payer_account=text_field(128),
    payee_identity=text_field(128),
    payee_account=text_field(128),
    amount_fen=st.integers(1, MAX_AMOUNT_FEN),
    currency=st.sampled_from(sorted(ISO_4217)),
    time=times,
    channel=st.sampled_from(list(Channel)),
    cross_border=st.booleans(),
    clearing_ref=text_field(64, allow_empty=True),
)
salts = st.binary(min_size=32, max_size=32)
