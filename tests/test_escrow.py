"""Tests for ledger_node.protocol.escrow: identity keys, the payload codec and the sealed
envelope."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledger_node.crypto.gmcrypto import SM2PrivateKey, generate_private_key
from ledger_node.crypto.hashes import sm3
from ledger_node.errors import (
    EscrowAuthenticationFailed,
    EscrowError,
    EscrowFormatError,
    EscrowKeyUnwrapFailed,
    EscrowVersionError,
    InvalidEscrowPayload,
    InvalidIdentity,
    UnknownEscrowKey,
)
from ledger_node.log.leaf import MAX_ESCROW_BYTES
from ledger_node.protocol.aml import PartyKind, TracedPayment
from ledger_node.protocol.commitment import record_commitment
from ledger_node.protocol.escrow import (
    ESCROW_SIZE,
    HEADER_SIZE,
    NO_CLEARING_KEY,
    PAYLOAD_SIZE,
    EscrowOpener,
    EscrowPayload,
    EscrowSealer,
    classify_identity,
    clearing_key,
    escrow_fingerprint,
    identity_key,
    is_social_credit_code,
    key_fingerprint,
    normalise_identity,
    payload_mismatches,
)
from ledger_node.protocol.record import Channel, PaymentRecord
from tests.strategies import records, salts

PERSON_ID = "11010519491231002X"  # valid resident ID (check character X)
PERSON_ID_2 = "440304199001011233"
COMPANY_ID = "91350100M000100Y43"  # valid unified social credit code
AMBIGUOUS_ID = "110105196904199674"  # passes both the resident-ID and credit-code checks
PAYER_ACCOUNT = "6222020200112233445"
PAYEE_ACCOUNT = "merchant-acct-77821"
LOCAL_TX = "wx-tx-20250101-000042"


@pytest.fixture(scope="module")
def regulator_key() -> SM2PrivateKey:
    return generate_private_key()


@pytest.fixture(scope="module")
def rotated_key() -> SM2PrivateKey:
    return generate_private_key()


def make_record(
    payer: str = PERSON_ID,
    payee: str = COMPANY_ID,
    amount: int = 123_456,
    channel: Channel = Channel.QR,
    tx: str = LOCAL_TX,
) -> PaymentRecord:
    return PaymentRecord(
        platform="wechatpay",
        local_tx_id=tx,
        payer_identity=payer,
        payer_account=PAYER_ACCOUNT,
        payee_identity=payee,
        payee_account=PAYEE_ACCOUNT,
        amount_fen=amount,
        currency="CNY",
        time=datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=UTC),
        channel=channel,
        cross_border=False,
        clearing_ref="CLR-9",
    )


def commit(record: PaymentRecord) -> tuple[bytes, bytes]:
    salt = secrets.token_bytes(32)
    return record_commitment(record, salt), salt


# --- identity keys and party kinds -----------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        PERSON_ID,
        " 11010519491231002x ",  # lower-case check letter, surrounding spaces (other platform)
        "１１０１０５１９４９１２３１００２Ｘ",  # full-width digits and letter
        "\t11010519491231002X\n",
    ],
)
def test_identity_key_same_person_same_key(variant: str) -> None:
    assert identity_key(variant) == identity_key(PERSON_ID)
    assert normalise_identity(variant) == PERSON_ID


def test_identity_key_nfc_for_names() -> None:
    composed = "张三 Zoë"
    decomposed = "张三 Zoe\u0308"
    assert identity_key(composed) == identity_key(decomposed)
    assert identity_key("Alice") != identity_key("alice")  # non-ID identities keep their case


def test_identity_key_differs_between_people() -> None:
    keys = {identity_key(i) for i in (PERSON_ID, PERSON_ID_2, COMPANY_ID, AMBIGUOUS_ID)}
    assert len(keys) == 4
    assert all(len(k) == 32 for k in keys)


@pytest.mark.parametrize("bad", ["", "   ", "\u3000"])
def test_identity_key_rejects_empty(bad: str) -> None:
    with pytest.raises(InvalidIdentity):
        identity_key(bad)


def test_identity_key_rejects_non_string() -> None:
    with pytest.raises(InvalidIdentity):
        identity_key(12345)  # type: ignore[arg-type]
    with pytest.raises(InvalidIdentity):  # unhashable: refused before the cache sees it
        identity_key(["110105194912310029"])  # type: ignore[arg-type]


def test_classify() -> None:
    assert classify_identity(PERSON_ID) is PartyKind.PERSON
    assert classify_identity("11010519491231002x") is PartyKind.PERSON
    assert classify_identity(PERSON_ID_2) is PartyKind.PERSON
    assert classify_identity(COMPANY_ID) is PartyKind.INSTITUTION
    assert classify_identity("91110000802100433B") is PartyKind.INSTITUTION
    assert classify_identity(AMBIGUOUS_ID) is PartyKind.PERSON  # the conservative guess


def _uscc(prefix8: str, org8: str, *, org_values: str) -> str:
    """A credit code with the organisation-code check computed over ``org_values``."""
    uscc_chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    total = sum(org_values.index(c) * w for c, w in zip(org8, (3, 7, 9, 10, 5, 8, 4, 2),
                                                         strict=True))
    check = 11 - total % 11
    body = prefix8 + org8 + {10: "X", 11: "0"}.get(check, str(check))
    weights = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    last = (31 - sum(uscc_chars.index(c) * w for c, w in zip(body, weights,
                                                            strict=True)) % 31) % 31
    return body + uscc_chars[last]


def test_credit_code_org_check_values_letters_as_gb_11714_does() -> None:
    """GB 11714 values A..Z as 10..35; GB 32100's alphabet skips I and O, so letters after H
    differ (J is 19 in GB 11714, 18 in the credit-code alphabet)."""
    gb11714 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    right = _uscc("91110108", "MA01JK7R", org_values=gb11714)
    wrong = _uscc("91110108", "MA01JK7R", org_values="0123456789ABCDEFGHJKLMNPQRTUWXY")
    assert right != wrong
    assert is_social_credit_code(right)
    assert not is_social_credit_code(wrong)
    assert classify_identity(right) is PartyKind.INSTITUTION


@pytest.mark.parametrize(
    "bad",
    [
        "91350100M000110Y43",  # credit code with a wrong organisation-code check
        "110105194912310021",  # resident ID with a wrong check digit
        "110105194902300028",  # 30 February
        "91350100M000100Y44",  # credit code with a wrong check character
        "person-000001",
    ],
)
def test_classify_refuses(bad: str) -> None:
    with pytest.raises(InvalidIdentity):
        classify_identity(bad)


def test_explicit_kind_overrides_classification() -> None:
    record = make_record(payer=AMBIGUOUS_ID, payee="merchant-0042")
    with pytest.raises(InvalidIdentity):
        EscrowPayload.from_record(record)  # the payee cannot be classified
    with pytest.raises(InvalidIdentity):
        EscrowPayload.from_record(record, payer_kind=PartyKind.PERSON)
    payload = EscrowPayload.from_record(
        record, payer_kind=PartyKind.INSTITUTION, payee_kind=PartyKind.INSTITUTION
    )
    assert payload.payer_kind is PartyKind.INSTITUTION
    assert payload.payee_kind is PartyKind.INSTITUTION


def test_from_record_gives_what_the_checked_constructor_gives() -> None:
    """from_record skips the constructor's checks (the record was checked by the same
    rules); the payload is equal, field for field, to the one the constructor builds."""
    for record in (make_record(), make_record(channel=Channel.CASH),
                   replace(make_record(), cross_border=True, clearing_ref="CR-9",
                           time=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC))):
        kinds = {"payer_kind": PartyKind.PERSON, "payee_kind": PartyKind.INSTITUTION}
        fast = EscrowPayload.from_record(record, **kinds)
        checked = EscrowPayload(
            payer_key=identity_key(record.payer_identity),
            payee_key=identity_key(record.payee_identity), amount_fen=record.amount_fen,
            currency=record.currency, time=record.time, channel=record.channel,
            cross_border=record.cross_border, cash=record.cash,
            clearing_key=clearing_key(record.clearing_ref), **kinds)
        assert fast == checked and fast.to_bytes() == checked.to_bytes()


def test_from_record_refuses_a_kind_that_is_not_a_party_kind() -> None:
    with pytest.raises(InvalidEscrowPayload, match="payer_kind"):
        EscrowPayload.from_record(make_record(), payer_kind="person",  # type: ignore[arg-type]
                                  payee_kind=PartyKind.INSTITUTION)
    with pytest.raises(InvalidEscrowPayload, match="payee_kind"):
        EscrowPayload.from_record(make_record(), payee_kind=1)  # type: ignore[arg-type]


# --- payload codec ---------------------------------------------------------------------------


def test_payload_from_record() -> None:
    record = make_record(channel=Channel.CASH)
    payload = EscrowPayload.from_record(record)
    assert payload.payer_key == identity_key(PERSON_ID)
    assert payload.payee_key == identity_key(COMPANY_ID)
    assert payload.payer_kind is PartyKind.PERSON
    assert payload.payee_kind is PartyKind.INSTITUTION
    assert payload.amount_fen == 123_456 and payload.currency == "CNY"
    assert payload.time == record.time and payload.channel is Channel.CASH
    assert payload.cash is True and payload.cross_border is False
    assert EscrowPayload.from_bytes(payload.to_bytes()) == payload
    assert len(payload.to_bytes()) == PAYLOAD_SIZE


def test_payload_mismatches_against_an_opening() -> None:
    record = make_record()
    payload = EscrowPayload.from_record(record)
    assert payload_mismatches(payload, record) == ()
    assert payload_mismatches(replace(payload, payer_kind=PartyKind.INSTITUTION), record) == ()
    lied = replace(payload, amount_fen=1, payee_key=identity_key(PERSON_ID_2))
    assert payload_mismatches(lied, record) == ("payee_key", "amount_fen")


def test_clearing_key_pairs_the_two_records_of_a_cross_platform_payment() -> None:
    local = EscrowPayload.from_record(replace(make_record(), clearing_ref=""))
    assert local.clearing_key == NO_CLEARING_KEY == bytes(32)
    payer_side = EscrowPayload.from_record(replace(make_record(), clearing_ref="CUP-20261127-0001"))
    payee_side = EscrowPayload.from_record(replace(make_record(), platform="wechatpay",
                                                   clearing_ref="CUP-20261127-0001"))
    assert payer_side.clearing_key == payee_side.clearing_key == clearing_key(
        "CUP-20261127-0001")
    assert payer_side.clearing_key not in (NO_CLEARING_KEY, sm3(b"CUP-20261127-0001"))
    assert clearing_key("CUP-20261127-0002") != payer_side.clearing_key
    assert EscrowPayload.from_bytes(payer_side.to_bytes()) == payer_side
    assert payer_side.traced("a/1", "unionpay").clearing_key == payer_side.clearing_key
    assert local.traced("a/1", "unionpay").clearing_key is None
    assert payload_mismatches(local, replace(make_record(), clearing_ref="X")) == (
        "clearing_key",)
    with pytest.raises(InvalidEscrowPayload, match="clearing_key"):
        replace(local, clearing_key=b"short")


def test_payload_time_normalised_to_utc() -> None:
    payload = EscrowPayload.from_record(make_record())
    east8 = payload.time.astimezone(timezone(timedelta(hours=8)))
    assert replace(payload, time=east8) == payload
    assert replace(payload, time=east8).time.tzinfo is UTC


def test_payload_traced_matches_aml_fields() -> None:
    payload = EscrowPayload.from_record(make_record())
    traced = payload.traced("wechatpay/0/7", "wechatpay")
    assert isinstance(traced, TracedPayment)
    assert traced.payer_key == payload.payer_key and traced.channel == "qr"
    assert (traced.amount_fen, traced.cash, traced.payee_kind) == (
        123_456, False, PartyKind.INSTITUTION)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("payer_key", b"\x00" * 31),
        ("payee_key", "k" * 32),
        ("payer_kind", "person"),
        ("amount_fen", 0),
        ("amount_fen", True),
        ("amount_fen", 2**63),
        ("currency", "XXX"),
        ("time", datetime(2025, 1, 1)),
        ("channel", "pigeon"),
        ("cross_border", 1),
        ("cash", True),  # not the cash channel
    ],
)
def test_payload_constructor_refuses(field: str, value: object) -> None:
    payload = EscrowPayload.from_record(make_record())
    with pytest.raises(InvalidEscrowPayload) as info:
        replace(payload, **{field: value})
    assert info.value.field == field


def _mutate(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value):]


@pytest.mark.parametrize(
    ("name", "offset", "value", "error"),
    [
        ("wrong-version", 0, b"\x02", EscrowVersionError),
        ("payer-kind-0", 65, b"\x00", InvalidEscrowPayload),
        ("payee-kind-3", 66, b"\x03", InvalidEscrowPayload),
        ("amount-zero", 67, b"\x00" * 8, InvalidEscrowPayload),
        ("amount-high-bit", 67, b"\x80", InvalidEscrowPayload),
        ("currency-unknown", 75, b"ZZZ", InvalidEscrowPayload),
        ("currency-non-ascii", 75, b"\xff\xff\xff", InvalidEscrowPayload),
        ("time-overflow", 78, b"\x7f" * 8, InvalidEscrowPayload),
        ("channel-unknown", 86, b"abc", InvalidEscrowPayload),
        ("channel-not-zero-padded", 86 + 4, b"x", InvalidEscrowPayload),
        ("channel-non-ascii", 86, b"\xc3\xa9", InvalidEscrowPayload),
        ("cross-border-2", PAYLOAD_SIZE - 2, b"\x02", InvalidEscrowPayload),
        ("cash-inconsistent", PAYLOAD_SIZE - 1, b"\x01", InvalidEscrowPayload),
    ],
)
def test_payload_decoder_is_strict(
    name: str, offset: int, value: bytes, error: type[Exception]
) -> None:
    data = EscrowPayload.from_record(make_record()).to_bytes()
    with pytest.raises(error):
        EscrowPayload.from_bytes(_mutate(data, offset, value))


@pytest.mark.parametrize("size", [0, 1, PAYLOAD_SIZE - 1, PAYLOAD_SIZE + 1])
def test_payload_decoder_refuses_lengths(size: int) -> None:
    data = EscrowPayload.from_record(make_record()).to_bytes()
    data = (data + b"\x00")[:size]
    with pytest.raises(InvalidEscrowPayload):
        EscrowPayload.from_bytes(data)


def test_payload_holds_no_salt_account_or_raw_identity(regulator_key: SM2PrivateKey) -> None:
    record = make_record()
    commitment, salt = commit(record)
    plaintext = EscrowPayload.from_record(record).to_bytes()
    escrow = EscrowSealer(regulator_key.public_key()).seal_record(record, commitment)
    secrets_ = [PERSON_ID, COMPANY_ID, PAYER_ACCOUNT, PAYEE_ACCOUNT, LOCAL_TX, "CLR-9",
                "wechatpay"]
    forms: list[bytes] = [salt, salt[:8], salt[-8:]]
    for text in secrets_:
        raw = text.encode("utf-8")
        forms += [raw, text.encode("gbk"), raw.hex().encode(), raw.hex().upper().encode()]
    # Also a Chinese name, which UTF-8 and GBK encode differently.
    named = make_record(payer="张三丰")
    named_plain = EscrowPayload.from_record(
        named, payer_kind=PartyKind.PERSON).to_bytes()
    for text in (PERSON_ID, COMPANY_ID, PAYER_ACCOUNT, PAYEE_ACCOUNT):  # plain hashes too
        forms += [sm3(text.encode()), hashlib.sha256(text.encode()).digest()]
    for form in [*forms, "张三丰".encode(), "张三丰".encode("gbk")]:
        assert form not in plaintext and form not in escrow and form not in named_plain


# --- envelope --------------------------------------------------------------------------------


def test_round_trip(regulator_key: SM2PrivateKey) -> None:
    sealer = EscrowSealer(regulator_key.public_key())
    opener = EscrowOpener.from_keys(regulator_key)
    for i, channel in enumerate(Channel):
        record = make_record(amount=1000 + i, channel=channel, tx=f"t{i}")
        commitment, _ = commit(record)
        escrow = sealer.seal_record(record, commitment)
        assert len(escrow) == ESCROW_SIZE <= MAX_ESCROW_BYTES
        assert escrow_fingerprint(escrow) == key_fingerprint(regulator_key.public_key())
        assert opener.open(escrow, commitment) == EscrowPayload.from_record(record)
    assert opener.sm2_decryptions == 1


@pytest.mark.parametrize("batch_size", [1, 10, 1000])
def test_sm2_operations_per_batch_are_constant(
    regulator_key: SM2PrivateKey, batch_size: int
) -> None:
    opener = EscrowOpener.from_keys(regulator_key)
    payload = EscrowPayload.from_record(make_record())
    for batch in range(2):
        sealer = EscrowSealer(regulator_key.public_key())
        sealed = []
        for _ in range(batch_size):
            commitment = secrets.token_bytes(32)
            sealed.append((sealer.seal(payload, commitment), commitment))
        assert sealer.sm2_encryptions == 1 and sealer.sealed == batch_size
        assert all(e[HEADER_SIZE:HEADER_SIZE + 112] == sealer.wrapped_key for e, _ in sealed)
        for escrow, commitment in sealed:
            assert opener.open(escrow, commitment) == payload
        assert opener.sm2_decryptions == batch + 1


def test_cache_eviction_costs_one_more_unwrap(regulator_key: SM2PrivateKey) -> None:
    opener = EscrowOpener.from_keys(regulator_key, cache_size=1)
    payload = EscrowPayload.from_record(make_record())
    c = secrets.token_bytes(32)
    first = EscrowSealer(regulator_key.public_key()).seal(payload, c)
    second = EscrowSealer(regulator_key.public_key()).seal(payload, c)
    for escrow in (first, first, second, second, first):
        assert opener.open(escrow, c) == payload
    assert opener.sm2_decryptions == 3


def test_rotation(regulator_key: SM2PrivateKey, rotated_key: SM2PrivateKey) -> None:
    payload = EscrowPayload.from_record(make_record())
    c = secrets.token_bytes(32)
    old = EscrowSealer(regulator_key.public_key()).seal(payload, c)
    new_sealer = EscrowSealer(rotated_key.public_key())  # governance rotated the key
    new = new_sealer.seal(payload, c)
    assert escrow_fingerprint(new) == new_sealer.fingerprint
    assert escrow_fingerprint(new) == key_fingerprint(rotated_key.public_key())
    assert escrow_fingerprint(old) != escrow_fingerprint(new)

    both = EscrowOpener.from_keys(regulator_key, rotated_key)
    assert both.open(old, c) == payload and both.open(new, c) == payload
    assert both.fingerprints == {escrow_fingerprint(old), escrow_fingerprint(new)}

    only_new = EscrowOpener.from_keys(rotated_key)
    assert only_new.open(new, c) == payload
    with pytest.raises(UnknownEscrowKey) as info:
        only_new.open(old, c)
    assert info.value.fingerprint == escrow_fingerprint(old)
    assert only_new.sm2_decryptions == 1


def test_opener_refuses_mismatched_fingerprint(
    regulator_key: SM2PrivateKey, rotated_key: SM2PrivateKey
) -> None:
    with pytest.raises(EscrowFormatError):
        EscrowOpener({key_fingerprint(rotated_key.public_key()): regulator_key})
    with pytest.raises(ValueError):
        EscrowOpener.from_keys(regulator_key, cache_size=0)


def test_escrows_of_two_batches_share_no_run_beyond_header(regulator_key: SM2PrivateKey) -> None:
    payload = EscrowPayload.from_record(make_record())
    c = secrets.token_bytes(32)
    a = EscrowSealer(regulator_key.public_key()).seal(payload, c)
    b = EscrowSealer(regulator_key.public_key()).seal(payload, c)
    assert a[:HEADER_SIZE] == b[:HEADER_SIZE]  # the fixed structure: version + fingerprint
    runs_a = {a[i:i + 8] for i in range(HEADER_SIZE - 7, len(a) - 7)}
    assert not any(b[i:i + 8] in runs_a for i in range(HEADER_SIZE - 7, len(b) - 7))
    # Within one batch too, beyond the header and the batch's wrapped key.
    sealer = EscrowSealer(regulator_key.public_key())
    x, y = sealer.seal(payload, c), sealer.seal(payload, c)
    start = HEADER_SIZE + 112
    runs_x = {x[i:i + 8] for i in range(start - 7, len(x) - 7)}
    assert not any(y[i:i + 8] in runs_x for i in range(start - 7, len(y) - 7))


# --- tampering -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sealed_pair(regulator_key: SM2PrivateKey) -> tuple[bytes, bytes, bytes, bytes]:
    sealer = EscrowSealer(regulator_key.public_key())
    c1, c2 = secrets.token_bytes(32), secrets.token_bytes(32)
    p1 = EscrowPayload.from_record(make_record(amount=1))
    p2 = EscrowPayload.from_record(make_record(amount=2))
    return sealer.seal(p1, c1), c1, sealer.seal(p2, c2), c2


def _flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1:]


def _expected_error(index: int) -> type[EscrowError]:
    if index == 0:
        return EscrowVersionError
    if index < HEADER_SIZE:
        return UnknownEscrowKey
    if index < HEADER_SIZE + 112:
        return EscrowKeyUnwrapFailed
    return EscrowAuthenticationFailed


def test_flipped_byte_anywhere_is_rejected(
    regulator_key: SM2PrivateKey, sealed_pair: tuple[bytes, bytes, bytes, bytes]
) -> None:
    escrow, commitment, _, _ = sealed_pair
    opener = EscrowOpener.from_keys(regulator_key)
    opener.open(escrow, commitment)  # cache the genuine batch key first
    for index in range(len(escrow)):
        mask = 0x80 if index == 0 else 1 << (index % 8)
        with pytest.raises(_expected_error(index)):
            opener.open(_flip(escrow, index, mask), commitment)
    assert opener.open(escrow, commitment).amount_fen == 1


def test_swapped_escrows_between_leaves_are_rejected(
    regulator_key: SM2PrivateKey, sealed_pair: tuple[bytes, bytes, bytes, bytes]
) -> None:
    e1, c1, e2, c2 = sealed_pair
    opener = EscrowOpener.from_keys(regulator_key)
    assert opener.open(e1, c1).amount_fen == 1 and opener.open(e2, c2).amount_fen == 2
    with pytest.raises(EscrowAuthenticationFailed):
        opener.open(e2, c1)
    with pytest.raises(EscrowAuthenticationFailed):
        opener.open(e1, c2)


def test_escrow_of_another_batch_swapped_in_is_rejected(
    regulator_key: SM2PrivateKey, sealed_pair: tuple[bytes, bytes, bytes, bytes]
) -> None:
    e1, c1, _, _ = sealed_pair
    other = EscrowSealer(regulator_key.public_key()).seal(
        EscrowPayload.from_record(make_record()), secrets.token_bytes(32))
    opener = EscrowOpener.from_keys(regulator_key)
    with pytest.raises(EscrowAuthenticationFailed):
        opener.open(other, c1)
    # Grafting one batch's wrapped key onto another batch's ciphertext fails too.
    grafted = other[:HEADER_SIZE + 112] + e1[HEADER_SIZE + 112:]
    with pytest.raises(EscrowAuthenticationFailed):
        opener.open(grafted, c1)


@pytest.mark.parametrize(
    "cut", [0, 1, HEADER_SIZE, HEADER_SIZE + 112, ESCROW_SIZE - 16, ESCROW_SIZE - 1]
)
def test_truncated_escrow_is_rejected(
    regulator_key: SM2PrivateKey, sealed_pair: tuple[bytes, bytes, bytes, bytes], cut: int
) -> None:
    escrow, commitment, _, _ = sealed_pair
    with pytest.raises(EscrowFormatError):
        EscrowOpener.from_keys(regulator_key).open(escrow[:cut], commitment)


def test_extended_escrow_is_rejected(
    regulator_key: SM2PrivateKey, sealed_pair: tuple[bytes, bytes, bytes, bytes]
) -> None:
    escrow, commitment, _, _ = sealed_pair
    with pytest.raises(EscrowFormatError):
        EscrowOpener.from_keys(regulator_key).open(escrow + b"\x00", commitment)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_wrong_version_is_rejected(
    regulator_key: SM2PrivateKey, sealed_pair: tuple[bytes, bytes, bytes, bytes], version: int
) -> None:
    escrow, commitment, _, _ = sealed_pair
    with pytest.raises(EscrowVersionError) as info:
        EscrowOpener.from_keys(regulator_key).open(bytes([version]) + escrow[1:], commitment)
    assert info.value.version == version
    with pytest.raises(EscrowVersionError):
        escrow_fingerprint(bytes([version]) + escrow[1:5])  # truncated too: version first


@pytest.mark.parametrize("bad", [b"", b"\x00" * 31, b"\x00" * 33])
def test_commitment_must_be_32_bytes(
    regulator_key: SM2PrivateKey, sealed_pair: tuple[bytes, bytes, bytes, bytes], bad: bytes
) -> None:
    escrow, _, _, _ = sealed_pair
    payload = EscrowPayload.from_record(make_record())
    with pytest.raises(EscrowFormatError):
        EscrowSealer(regulator_key.public_key()).seal(payload, bad)
    with pytest.raises(EscrowFormatError):
        EscrowOpener.from_keys(regulator_key).open(escrow, bad)


def test_escrow_must_be_bytes(regulator_key: SM2PrivateKey) -> None:
    with pytest.raises(EscrowFormatError):
        escrow_fingerprint("01" * ESCROW_SIZE)  # type: ignore[arg-type]


def test_failed_unwrap_is_not_cached(
    regulator_key: SM2PrivateKey, sealed_pair: tuple[bytes, bytes, bytes, bytes]
) -> None:
    escrow, commitment, _, _ = sealed_pair
    opener = EscrowOpener.from_keys(regulator_key)
    bad = _flip(escrow, HEADER_SIZE + 100)
    for _ in range(2):
        with pytest.raises(EscrowKeyUnwrapFailed):
            opener.open(bad, commitment)
    assert opener.sm2_decryptions == 2
    assert opener.open(escrow, commitment).amount_fen == 1


# --- properties ------------------------------------------------------------------------------


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(record=records, salt=salts, payer_kind=st.sampled_from(list(PartyKind)),
       payee_kind=st.sampled_from(list(PartyKind)))
def test_property_round_trip_and_no_salt(
    regulator_key: SM2PrivateKey, record: PaymentRecord, salt: bytes,
    payer_kind: PartyKind, payee_kind: PartyKind,
) -> None:
    assume(record.payer_identity.strip() and record.payee_identity.strip())
    assume(any(salt))  # an all-zero salt would match the zero clearing key of local payments
    commitment = record_commitment(record, salt)
    payload = EscrowPayload.from_record(record, payer_kind=payer_kind, payee_kind=payee_kind)
    plaintext = payload.to_bytes()
    assert salt not in plaintext and len(plaintext) == PAYLOAD_SIZE
    sealer = EscrowSealer(regulator_key.public_key())
    escrow = sealer.seal(payload, commitment)
    opener = EscrowOpener.from_keys(regulator_key)
    assert opener.open(escrow, commitment) == payload
    assert payload_mismatches(payload, record) == ()


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, PAYLOAD_SIZE - 1), value=st.integers(0, 255))
def test_property_decoder_is_canonical(index: int, value: int) -> None:
    data = bytearray(EscrowPayload.from_record(make_record(channel=Channel.CASH)).to_bytes())
    data[index] = value
    try:
        decoded = EscrowPayload.from_bytes(bytes(data))
    except (InvalidEscrowPayload, EscrowVersionError):
        return
    assert decoded.to_bytes() == bytes(data)  # whatever decodes re-encodes to the same bytes


def test_payload_decoder_time_bounds() -> None:
    """The decoder's one-test fast path and its named checks meet at datetime's range."""
    payload = EscrowPayload.from_record(make_record())
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for edge in (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)):
        micros = (edge - epoch) // timedelta(microseconds=1)
        data = _mutate(payload.to_bytes(), 78, micros.to_bytes(8, "big", signed=True))
        assert EscrowPayload.from_bytes(data).time == edge
        beyond = micros + (1 if micros > 0 else -1)
        data = _mutate(payload.to_bytes(), 78, beyond.to_bytes(8, "big", signed=True))
        with pytest.raises(InvalidEscrowPayload, match="time"):
            EscrowPayload.from_bytes(data)
