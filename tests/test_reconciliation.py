"""Reconciliation, the pure parts (PROTOCOL §7): pairwise keys, tags, windows, matching.

The pairwise key is checked against an independent computation (textbook affine SM2 point
arithmetic and the GB/T 32918 KDF written out here), HMAC-SM3 against OpenSSL's command
line and RFC 2104 written out, and the matching rules on synthetic expectations.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ledger_node.crypto.gmcrypto import (
    SM2_A,
    SM2_B,
    SM2_GX,
    SM2_GY,
    SM2_N,
    SM2_P,
    SM2PrivateKey,
    generate_private_key,
)
from ledger_node.crypto.hashes import sm3
from ledger_node.errors import InvalidKey, InvalidPeerKey, InvalidRecord, InvalidWindow
from ledger_node.protocol.pairwise import (
    CrossPlatform,
    PairwiseKey,
    Side,
    amount_tag,
    hmac_sm3,
    match_tag,
    pairwise_key,
    peer_public_key,
    record_match_tags,
    record_tags,
)
from ledger_node.protocol.reconciliation import (
    DEFAULT_GRACE,
    MAX_GRACE,
    MAX_WINDOW,
    Expectation,
    OwnRecord,
    Status,
    TagPair,
    Window,
    check_grace,
    expectations_for,
    match_expectations,
    own_side,
    parse_time,
    report_record_json,
)
from ledger_node.protocol.record import Channel, PaymentRecord

A_ADDRESS = "0x" + "a1" * 20
B_ADDRESS = "0x" + "0b" * 20  # lower than A's: the canonical order puts B first
C_ADDRESS = "0x" + "c3" * 20
T0 = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
VECTORS = Path(__file__).parent / "vectors" / "crypto" / "pairwise.json"

# ---------------------------------------------------------------------- an independent SM2


def _add(p: tuple[int, int] | None, q: tuple[int, int] | None) -> tuple[int, int] | None:
    """Textbook affine addition on y^2 = x^3 + ax + b over F_p (None: infinity)."""
    if p is None:
        return q
    if q is None:
        return p
    if p[0] == q[0] and (p[1] + q[1]) % SM2_P == 0:
        return None
    if p == q:
        slope = (3 * p[0] * p[0] + SM2_A) * pow(2 * p[1], -1, SM2_P) % SM2_P
    else:
        slope = (q[1] - p[1]) * pow(q[0] - p[0], -1, SM2_P) % SM2_P
    x = (slope * slope - p[0] - q[0]) % SM2_P
    return x, (slope * (p[0] - x) - p[1]) % SM2_P


def _mul(k: int, point: tuple[int, int]) -> tuple[int, int] | None:
    result: tuple[int, int] | None = None
    addend: tuple[int, int] | None = point
    while k:
        if k & 1:
            result = _add(result, addend)
        addend = _add(addend, addend)
        k >>= 1
    return result


def _reference_key(d: int, peer_d: int, own: str, peer: str) -> bytes:
    """The pairwise key, computed from the spec in docs/reconciliation.md alone."""
    g = (SM2_GX, SM2_GY)
    shared = _mul(d, _mul(peer_d, g))  # type: ignore[arg-type]
    assert shared is not None

    def raw(k: int) -> bytes:
        point = _mul(k, g)
        assert point is not None
        return point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")

    def lp(value: bytes) -> bytes:
        return struct.pack(">I", len(value)) + value

    parties = sorted([(bytes.fromhex(own[2:]), raw(d)), (bytes.fromhex(peer[2:]), raw(peer_d))])
    z = (lp(b"jl:v1:pairwise-key") + lp(shared[0].to_bytes(32, "big"))
         + lp(shared[1].to_bytes(32, "big")) + b"".join(lp(a) + lp(k) for a, k in parties))
    return sm3(z + (1).to_bytes(4, "big"))


def _hmac_reference(key: bytes, data: bytes) -> bytes:
    """RFC 2104 with SM3 (64-byte blocks), written out."""
    block = key.ljust(64, b"\0") if len(key) <= 64 else sm3(key).ljust(64, b"\0")
    inner = sm3(bytes(b ^ 0x36 for b in block) + data)
    return sm3(bytes(b ^ 0x5C for b in block) + inner)


# ---------------------------------------------------------------------- pairwise keys


def test_both_platforms_derive_the_same_key() -> None:
    a, b = generate_private_key(), generate_private_key()
    ab = pairwise_key(a, A_ADDRESS, B_ADDRESS, b.public_key().raw)
    ba = pairwise_key(b, B_ADDRESS, A_ADDRESS, a.public_key())
    assert ab.secret == ba.secret and len(ab.secret) == 32
    assert ab.parties == ba.parties  # the canonical order: the lower address first
    assert ab.parties[0][0] == B_ADDRESS and ab.key_id == ba.key_id


def test_key_matches_an_independent_computation() -> None:
    d_a, d_b = 0x1D2C3B4A59687766554433221100FFEEDDCCBBAA99887766554433221100FFEE, 7
    key = pairwise_key(SM2PrivateKey(d_a), A_ADDRESS, B_ADDRESS,
                       SM2PrivateKey(d_b).public_key().raw)
    assert key.secret == _reference_key(d_a, d_b, A_ADDRESS, B_ADDRESS)
    assert key.secret == pairwise_key(SM2PrivateKey(d_b), B_ADDRESS, A_ADDRESS,
                                      SM2PrivateKey(d_a).public_key()).secret


def _vectors() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(VECTORS.read_text(encoding="utf-8"))["cases"]
    return data


@pytest.mark.parametrize("case", _vectors(), ids=lambda case: case["name"])
def test_vectors(case: dict[str, Any]) -> None:
    """tests/vectors/crypto/pairwise.json, made by the independent code above, both ways."""
    d_a, d_b = SM2PrivateKey(int(case["d_a"], 16)), SM2PrivateKey(int(case["d_b"], 16))
    ab = pairwise_key(d_a, case["address_a"], case["address_b"], d_b.public_key().raw)
    ba = pairwise_key(d_b, case["address_b"], case["address_a"], d_a.public_key().raw)
    assert ab.secret.hex() == ba.secret.hex() == case["key"]
    assert _reference_key(d_a.d, d_b.d, case["address_a"], case["address_b"]).hex() == case["key"]
    for tag in case["tags"]:
        side = Side(tag["side"])
        assert match_tag(ab, side, tag["clearing_ref"]).hex() == tag["match_tag"]
        assert amount_tag(ba, side, tag["clearing_ref"], tag["amount_fen"],
                          tag["currency"]).hex() == tag["amount_tag"]


def test_rotation_and_other_pairs_change_the_key() -> None:
    a, b, b_rotated, c = (generate_private_key() for _ in range(4))
    ab = pairwise_key(a, A_ADDRESS, B_ADDRESS, b.public_key().raw).secret
    assert pairwise_key(a, A_ADDRESS, B_ADDRESS, b_rotated.public_key().raw).secret != ab
    assert pairwise_key(generate_private_key(), A_ADDRESS, B_ADDRESS,
                        b.public_key().raw).secret != ab
    ac = pairwise_key(a, A_ADDRESS, C_ADDRESS, c.public_key().raw).secret
    bc = pairwise_key(b, B_ADDRESS, C_ADDRESS, c.public_key().raw).secret
    assert len({ab, ac, bc}) == 3
    # The same keys under other addresses: another key (the addresses are bound in).
    assert pairwise_key(a, A_ADDRESS, C_ADDRESS, b.public_key().raw).secret != ab


@pytest.mark.parametrize(("raw", "reason"), [
    (bytes(64), "point at infinity"),
    (b"\x00", "point at infinity"),
    (b"\x04" + bytes(64), "point at infinity"),
    (b"\x01" * 63, "must be 64 bytes"),
    (b"", "must be 64 bytes"),
    ((1).to_bytes(32, "big") + (2).to_bytes(32, "big"), "not a point on the SM2 curve"),
    (SM2_P.to_bytes(32, "big") + SM2_GY.to_bytes(32, "big"), "not a point on the SM2 curve"),
])
def test_peer_keys_off_the_curve_or_the_identity_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidPeerKey, match=reason) as caught:
        pairwise_key(generate_private_key(), A_ADDRESS, B_ADDRESS, raw)
    assert isinstance(caught.value, InvalidKey)
    with pytest.raises(InvalidPeerKey, match=reason):
        peer_public_key(raw)


def test_peer_point_checks_are_real() -> None:
    # (1, 2) satisfies no curve equation by accident: the test above is not vacuous.
    assert (2 * 2 - (1 + SM2_A + SM2_B)) % SM2_P != 0
    g = peer_public_key(b"\x04" + SM2_GX.to_bytes(32, "big") + SM2_GY.to_bytes(32, "big"))
    assert (g.x, g.y) == (SM2_GX, SM2_GY)


def test_a_key_with_itself_or_a_bad_address_is_refused() -> None:
    a = generate_private_key()
    with pytest.raises(InvalidPeerKey, match="own key"):
        pairwise_key(a, A_ADDRESS, B_ADDRESS, a.public_key().raw)
    b = generate_private_key().public_key().raw
    with pytest.raises(ValueError, match="two different addresses"):
        pairwise_key(a, A_ADDRESS, A_ADDRESS.upper().replace("0X", "0x"), b)
    for bad in ("0x1234", "nothex", A_ADDRESS + "00"):
        with pytest.raises(ValueError, match="20-byte chain address"):
            pairwise_key(a, A_ADDRESS, bad, b)


def test_the_key_is_never_printed() -> None:
    key = pairwise_key(generate_private_key(), A_ADDRESS, B_ADDRESS,
                       generate_private_key().public_key().raw)
    assert key.secret.hex() not in repr(key) and "<secret>" in repr(key)


def test_group_order_edge_scalars_still_agree() -> None:
    low, high = SM2PrivateKey(1), SM2PrivateKey(SM2_N - 2)
    one = pairwise_key(low, A_ADDRESS, B_ADDRESS, high.public_key().raw)
    two = pairwise_key(high, B_ADDRESS, A_ADDRESS, low.public_key().raw)
    assert one.secret == two.secret == _reference_key(1, SM2_N - 2, A_ADDRESS, B_ADDRESS)


# ---------------------------------------------------------------------- HMAC-SM3 and tags


@pytest.mark.parametrize("key", [b"key", b"k" * 32, b"x" * 64, b"long" * 40])
def test_hmac_sm3_is_rfc_2104(key: bytes) -> None:
    data = b"what do ya want for nothing?" * 3
    assert hmac_sm3(key, data) == _hmac_reference(key, data)


def test_hmac_sm3_matches_openssl() -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed: the cross-check needs its command line")
    result = subprocess.run([openssl, "dgst", "-sm3", "-hmac", "jointledger"],
                            input=b"abc", capture_output=True, check=True)
    assert result.stdout.decode().split("= ")[-1].strip() == hmac_sm3(b"jointledger",
                                                                      b"abc").hex()


def _key() -> PairwiseKey:
    return pairwise_key(SM2PrivateKey(11), A_ADDRESS, B_ADDRESS, SM2PrivateKey(13).public_key())


def test_tags_are_side_specific_and_keyed() -> None:
    key, other = _key(), pairwise_key(SM2PrivateKey(11), A_ADDRESS, C_ADDRESS,
                                      SM2PrivateKey(17).public_key())
    payer, payee = match_tag(key, Side.PAYER, "CR1"), match_tag(key, Side.PAYEE, "CR1")
    assert payer != payee and len(payer) == 32
    assert match_tag(key, Side.PAYER, "CR2") != payer
    assert match_tag(other, Side.PAYER, "CR1") != payer
    amounts = {amount_tag(key, Side.PAYER, "CR1", fen, cur)
               for fen, cur in ((100, "CNY"), (101, "CNY"), (100, "HKD"))}
    assert len(amounts) == 3 and payer not in amounts
    assert amount_tag(key, Side.PAYEE, "CR1", 100, "CNY") not in amounts
    # Not an unkeyed hash of the same input, nor the HMAC under a public value.
    assert payer not in {sm3(b"CR1"), sm3(b"payerCR1"), hmac_sm3(b"", b"CR1"),
                         hmac_sm3(bytes(32), b"CR1")}


def test_tags_of_a_record_are_its_halfs() -> None:
    record = _record("unionpay", 1, clearing_ref="CR0001", amount_fen=12_345)
    assert record_tags(_key(), Side.PAYEE, record) == (
        match_tag(_key(), Side.PAYEE, "CR0001"),
        amount_tag(_key(), Side.PAYEE, "CR0001", 12_345, "CNY"))


@pytest.mark.parametrize(("call", "field"), [
    (lambda k: match_tag(k, Side.PAYER, ""), "clearing_ref"),
    (lambda k: match_tag(k, Side.PAYER, "x" * 65), "clearing_ref"),
    (lambda k: amount_tag(k, Side.PAYER, "CR1", 0, "CNY"), "amount_fen"),
    (lambda k: amount_tag(k, Side.PAYER, "CR1", 100, "XXX"), "currency"),
])
def test_bad_tag_inputs_are_refused(call: object, field: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        call(_key())  # type: ignore[operator]
    assert caught.value.field == field


def test_cross_platform_hint_is_checked() -> None:
    assert CrossPlatform("wechatpay", "payee").side is Side.PAYEE  # type: ignore[arg-type]
    assert Side.PAYER.other is Side.PAYEE and Side.PAYEE.other is Side.PAYER
    with pytest.raises(ValueError):
        CrossPlatform("wechatpay", "both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="platform name"):
        CrossPlatform("", Side.PAYER)


# ---------------------------------------------------------------------- windows


def test_window_is_half_open_and_in_utc() -> None:
    beijing = timezone(timedelta(hours=8))
    window = Window(datetime(2026, 11, 27, tzinfo=beijing), datetime(2026, 11, 28, tzinfo=beijing))
    assert window.start == datetime(2026, 11, 26, 16, tzinfo=UTC)
    assert window.contains(window.start) and not window.contains(window.end)
    assert window.to_json() == {"start": "2026-11-26T16:00:00.000000Z",
                                "end": "2026-11-27T16:00:00.000000Z"}


@pytest.mark.parametrize(("start", "end", "message"), [
    (T0, T0, "not after"),
    (T0, T0 - timedelta(seconds=1), "not after"),
    (T0, T0 + MAX_WINDOW + timedelta(seconds=1), "at most"),
    (T0.replace(tzinfo=None), T0 + timedelta(hours=1), "no time zone"),
    (T0, (T0 + timedelta(hours=1)).replace(tzinfo=None), "no time zone"),
    ("2026-11-27", T0, "must be a datetime"),
])
def test_bad_windows_are_refused(start: object, end: object, message: str) -> None:
    with pytest.raises(InvalidWindow, match=message):
        Window(start, end)  # type: ignore[arg-type]


def test_times_and_grace_are_parsed_strictly() -> None:
    assert parse_time("2026-11-27T09:00:00+08:00", "start") == T0
    assert parse_time("2026-11-27T01:00:00Z", "start") == T0
    with pytest.raises(InvalidWindow, match="no time zone"):
        parse_time("2026-11-27T01:00:00", "start")
    with pytest.raises(InvalidWindow, match="not an RFC 3339"):
        parse_time("yesterday", "start")
    assert check_grace(90) == timedelta(seconds=90) and check_grace(MAX_GRACE) == MAX_GRACE
    for bad in (-1, MAX_GRACE + timedelta(seconds=1), True, "60"):
        with pytest.raises(InvalidWindow):
            check_grace(bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- matching


def _record(platform: str, n: int, **fields: object) -> PaymentRecord:
    values: dict[str, object] = {
        "platform": platform, "local_tx_id": f"{platform[:2]}-{n}",
        "payer_identity": "110105198503142534", "payer_account": "6217000010085123456",
        "payee_identity": "91110000101107370X", "payee_account": "wxmch-1230000109",
        "amount_fen": 10_000 + n, "currency": "CNY", "time": T0 + timedelta(minutes=n),
        "channel": Channel.QR, "cross_border": False, "clearing_ref": f"CR{n:06d}",
    } | fields
    return PaymentRecord(**values)  # type: ignore[arg-type]


def _own(n: int, side: Side = Side.PAYER, key: PairwiseKey | None = None, **fields: object
         ) -> OwnRecord:
    record = _record("unionpay", n, **fields)
    tag = match_tag(key or _key(), side, record.clearing_ref) if record.clearing_ref else None
    return OwnRecord(100 + n, record, tag)


def _counterparty(records: list[tuple[int, PaymentRecord, Side]], key: PairwiseKey
                  ) -> dict[bytes, list[tuple[int, bytes]]]:
    out: dict[bytes, list[tuple[int, bytes]]] = {}
    for index, record, side in records:
        tag, amount = record_tags(key, side, record)
        out.setdefault(tag, []).append((index, amount))
    return out


def test_side_is_read_from_the_own_leaf() -> None:
    key = _key()
    own = _own(1, Side.PAYEE)
    assert own.match_tag is not None
    assert own_side([key], own.record, own.match_tag) == (Side.PAYEE, key)
    assert own_side([key], own.record, bytes(32)) is None


def test_expectations_skip_what_is_not_reconciled_here() -> None:
    key, third = _key(), pairwise_key(SM2PrivateKey(11), A_ADDRESS, C_ADDRESS,
                                      SM2PrivateKey(19).public_key())
    window = Window(T0, T0 + timedelta(hours=1))
    own = [
        _own(1),                                      # reconciled
        _own(2, Side.PAYEE),                          # reconciled, the payee's half
        _own(3, time=T0 - timedelta(seconds=1)),      # outside the window
        _own(4, time=T0 + timedelta(hours=1)),        # outside (half-open)
        _own(5, clearing_ref=""),                     # not cross-platform
        OwnRecord(106, _record("unionpay", 6), None),  # a reference but an untagged leaf
        _own(7, key=third),                           # a payment with a third platform
        OwnRecord(900, _record("unionpay", 8), None),  # not anchored yet
    ]
    expectations, skipped = expectations_for(own, [key], window, own_anchored_size=200)
    assert [e.index for e in expectations] == [101, 102]
    assert skipped.to_json() == {"outside_window": 2, "unanchored": 1, "not_cross_platform": 1,
                                 "untagged": 1, "other_counterparty": 1}
    first = expectations[0]
    assert first.side is Side.PAYER
    assert first.tags == (TagPair(*record_tags(key, Side.PAYEE, own[0].record), key.key_id),)


def test_matching_finds_matched_mismatched_missing_and_pending() -> None:
    key = _key()
    window = Window(T0, T0 + timedelta(hours=2))
    own = [_own(n) for n in range(1, 6)]
    theirs = _counterparty([
        (7, own[0].record, Side.PAYEE),                                       # matched
        (8, _record("wechatpay", 2, amount_fen=own[1].record.amount_fen - 100), Side.PAYEE),
        (9, own[4].record, Side.PAYER),   # the same side as ours: not the other half
        (10, own[3].record, Side.PAYEE), (11, own[3].record, Side.PAYEE),     # twice
    ], key)
    expectations, _ = expectations_for(own, [key], window, own_anchored_size=200)
    at = own[2].record.time + DEFAULT_GRACE  # exactly the end of 3's grace period
    outcomes = match_expectations(expectations, theirs, as_of=at, grace=DEFAULT_GRACE)
    assert [(o.expectation.index, o.status, o.found) for o in outcomes] == [
        (101, Status.MATCHED, (7,)),
        (102, Status.AMOUNT_MISMATCH, (8,)),
        (103, Status.MISSING, ()),
        (104, Status.MATCHED, (10, 11)),
        (105, Status.PENDING, ()),  # its grace period runs a minute longer
    ]
    assert outcomes[0].key_id == key.key_id
    first_due = own[0].record.time + DEFAULT_GRACE
    earlier = match_expectations(expectations, {}, as_of=first_due - timedelta(microseconds=1),
                                 grace=DEFAULT_GRACE)
    assert {o.status for o in earlier} == {Status.PENDING}
    assert match_expectations(expectations[:1], {}, as_of=first_due,
                              grace=DEFAULT_GRACE)[0].status is Status.MISSING


def test_matching_tries_every_key_in_force() -> None:
    """A rotation between the two halves' submissions: the counterparty's half carries the
    tags of the newer key pair, ours those of the older."""
    old = _key()
    new = pairwise_key(SM2PrivateKey(11), A_ADDRESS, B_ADDRESS, SM2PrivateKey(23).public_key())
    window = Window(T0, T0 + timedelta(hours=1))
    own = [_own(1, key=old), _own(2, key=new)]
    theirs = _counterparty([(5, own[0].record, Side.PAYEE)], new) | _counterparty(
        [(6, own[1].record, Side.PAYEE)], old)
    expectations, skipped = expectations_for(own, [new, old], window, own_anchored_size=200)
    assert skipped.other_counterparty == 0
    outcomes = match_expectations(expectations, theirs, as_of=T0, grace=DEFAULT_GRACE)
    assert [(o.status, o.found, o.key_id) for o in outcomes] == [
        (Status.MATCHED, (5,), new.key_id), (Status.MATCHED, (6,), old.key_id)]
    only_new, _ = expectations_for(own, [new], window, own_anchored_size=200)
    assert [e.index for e in only_new] == [102]


def test_hashlib_and_openssl_agree_on_sm3() -> None:
    """The tag code uses OpenSSL through ``cryptography``; hashlib's SM3 is another path."""
    try:
        digest = hashlib.new("sm3", b"abc").digest()
    except ValueError:
        pytest.fail("this Python's OpenSSL lacks SM3")
    assert digest == sm3(b"abc")


def test_an_expectation_holds_what_the_endpoint_needs() -> None:
    e = Expectation(3, T0, (TagPair(bytes(32), bytes(32)),))
    assert e.side is None and e.record is None
    assert TagPair(b"\x01" * 32, b"\x02" * 32).to_json() == {"match_tag": "01" * 32,
                                                           "amount_tag": "02" * 32}


def test_a_record_without_reference_has_no_tags() -> None:
    record = _record("unionpay", 9, clearing_ref="")
    for call in (lambda: record_tags(_key(), Side.PAYER, record),
                 lambda: record_match_tags(_key(), record)):
        with pytest.raises(InvalidRecord) as caught:
            call()
        assert caught.value.field == "clearing_ref"
    full = _record("unionpay", 9)
    assert record_match_tags(_key(), full) == {
        side: match_tag(_key(), side, full.clearing_ref) for side in Side}


def test_a_report_shows_an_own_records_references_and_amount_only() -> None:
    record = _record("unionpay", 7)
    document = report_record_json(record)
    assert document == {"local_tx_id": "un-7", "clearing_ref": "CR000007",
                        "amount_fen": 10_007, "currency": "CNY"}
    assert list(document) == ["local_tx_id", "clearing_ref", "amount_fen", "currency"]
