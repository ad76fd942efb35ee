"""AML rules: PBoC large-value thresholds at the line, natural days in UTC+8, directions,
categories, cross-platform structuring (planted rings found exactly once), clean traffic,
determinism and configuration errors."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_node.errors import InvalidAmlConfig, InvalidRecord, LedgerError
from ledger_node.protocol.aml import (
    Alert,
    AmlConfig,
    Category,
    PartyKind,
    Rule,
    TracedPayment,
    categorize,
    detect,
    lasting_key,
    rule_category,
)

PERSON, INSTITUTION = PartyKind.PERSON, PartyKind.INSTITUTION
T0 = datetime(2024, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
_refs = itertools.count()


def pay(amount: int, *, payer: bytes = b"alice", payee: bytes | None = None, t: datetime = T0,
        platform: str = "alpha", **kw: Any) -> TracedPayment:
    """A CNY person-to-person domestic transfer (to a fresh payee) unless ``kw`` says otherwise."""
    n = next(_refs)
    fields: dict[str, Any] = dict(
        ref=f"{platform}/log/{n}", platform=platform, payer_key=payer,
        payee_key=payee if payee is not None else b"shop-%d" % n, payer_kind=PERSON,
        payee_kind=PERSON, amount_fen=amount, currency="CNY", time=t, channel="app",
        cross_border=False, cash=False,
    )
    fields.update(kw)
    return TracedPayment(**fields)


def rules_for(alerts: list[Alert], identity: bytes, direction: str) -> list[str]:
    return [a.rule for a in alerts if a.identity == identity and a.direction == direction]


# --- large-value thresholds -------------------------------------------------------------------

CASES = [  # (payment fields, threshold, rule for the payer)
    (dict(cash=True), 5_000_000, Rule.LARGE_CASH),
    (dict(cash=True, payer_kind=INSTITUTION), 5_000_000, Rule.LARGE_CASH),
    (dict(cash=True, cross_border=True), 5_000_000, Rule.LARGE_CASH),
    ({}, 50_000_000, Rule.LARGE_PERSON_DOMESTIC),
    (dict(cross_border=True), 20_000_000, Rule.LARGE_PERSON_CROSS_BORDER),
    (dict(payer_kind=INSTITUTION), 200_000_000, Rule.LARGE_INSTITUTION),
    (dict(payer_kind=INSTITUTION, cross_border=True), 200_000_000, Rule.LARGE_INSTITUTION),
]


@pytest.mark.parametrize(("fields", "threshold", "rule"), CASES)
@pytest.mark.parametrize(("delta", "reported"), [(-1, False), (0, True), (1, True)])
def test_single_payment_at_under_and_over_the_line(
    fields: dict[str, Any], threshold: int, rule: Rule, delta: int, reported: bool
) -> None:
    p = pay(threshold + delta, **fields)
    alerts = detect([p])
    assert rules_for(alerts, b"alice", "payer") == ([rule] if reported else [])
    if reported:
        (alert,) = [a for a in alerts if a.direction == "payer"]
        assert alert.total_fen == threshold + delta and alert.refs == (p.ref,)
        assert alert.platforms == ("alpha",)
        assert alert.window_start == datetime(2024, 2, 29, 16, tzinfo=UTC)
        assert alert.window_end == datetime(2024, 3, 1, 16, tzinfo=UTC)


@pytest.mark.parametrize(("fields", "threshold", "rule"), CASES)
def test_same_day_cumulative_reaches_the_line_exactly(
    fields: dict[str, Any], threshold: int, rule: Rule
) -> None:
    a = pay(threshold // 2, **fields)
    b = pay(threshold - threshold // 2, t=T0 + timedelta(hours=5), **fields)
    alerts = detect([a, b])
    assert rules_for(alerts, b"alice", "payer") == [rule]
    assert [x.refs for x in alerts if x.direction == "payer"] == [(a.ref, b.ref)]
    short = replace(b, amount_fen=b.amount_fen - 1)
    assert rules_for(detect([a, short]), b"alice", "payer") == []


def test_beijing_midnight_separates_one_utc_day() -> None:
    before = pay(3_000_000, cash=True, t=datetime(2024, 3, 1, 15, 59, 59, 999999, tzinfo=UTC))
    after = pay(3_000_000, cash=True, t=datetime(2024, 3, 1, 16, 0, tzinfo=UTC))
    assert detect([before, after]) == []
    utc_days = detect([before, after], AmlConfig(day_utc_offset=timedelta(0)))
    assert [(a.rule, a.identity, a.refs) for a in utc_days] == [
        (Rule.LARGE_CASH, b"alice", (before.ref, after.ref))
    ]


def test_one_beijing_day_spans_two_utc_days() -> None:
    late = pay(3_000_000, cash=True, t=datetime(2024, 3, 1, 16, 0, tzinfo=UTC))
    early = pay(2_000_000, cash=True, t=datetime(2024, 3, 2, 15, 59, 59, 999999, tzinfo=UTC))
    alerts = detect([early, late])
    payer = [a for a in alerts if a.direction == "payer"]
    assert [(a.rule, a.total_fen, a.refs) for a in payer] == [
        (Rule.LARGE_CASH, 5_000_000, (late.ref, early.ref))
    ]
    assert payer[0].window_start == datetime(2024, 3, 1, 16, tzinfo=UTC)
    assert "2024-03-02" in payer[0].detail
    assert detect([early, late], AmlConfig(day_utc_offset=timedelta(0))) == []


def test_income_and_spending_are_counted_separately() -> None:
    out = pay(3_000_000, cash=True, payer=b"alice", payee=b"bob")
    back = pay(3_000_000, cash=True, payer=b"bob", payee=b"alice", t=T0 + timedelta(hours=1))
    assert detect([out, back]) == []
    to_carol = pay(2_000_000, cash=True, payer=b"alice", payee=b"carol")
    alerts = detect([out, to_carol, back])
    assert [(a.identity, a.direction, a.total_fen) for a in alerts] == [
        (b"alice", "payer", 5_000_000)
    ]
    from_dave = pay(2_000_000, cash=True, payer=b"dave", payee=b"bob")
    alerts = detect([out, from_dave])
    assert [(a.identity, a.direction, a.total_fen) for a in alerts] == [
        (b"bob", "payee", 5_000_000)
    ]


def test_each_side_is_judged_by_its_own_kind() -> None:
    p = pay(60_000_000, payer=b"alice", payee=b"corp", payee_kind=INSTITUTION)
    alerts = detect([p])
    assert rules_for(alerts, b"alice", "payer") == [Rule.LARGE_PERSON_DOMESTIC]
    assert rules_for(alerts, b"corp", "payee") == []  # under the institution threshold
    big = pay(200_000_000, payer=b"corp", payee=b"alice", payer_kind=INSTITUTION)
    alerts = detect([big])
    assert rules_for(alerts, b"corp", "payer") == [Rule.LARGE_INSTITUTION]
    assert rules_for(alerts, b"alice", "payee") == [Rule.LARGE_PERSON_DOMESTIC]


def test_cash_transfers_and_cross_border_accumulate_apart() -> None:
    cash = pay(4_999_999, cash=True)
    domestic = pay(49_999_999, t=T0 + timedelta(hours=1))
    abroad = pay(19_999_999, cross_border=True, t=T0 + timedelta(hours=2))
    assert detect([cash, domestic, abroad]) == []
    abroad2 = pay(1, cross_border=True, t=T0 + timedelta(hours=3))
    alerts = detect([cash, domestic, abroad, abroad2])
    assert rules_for(alerts, b"alice", "payer") == [Rule.LARGE_PERSON_CROSS_BORDER]


def test_same_day_sum_is_per_platform_unless_configured() -> None:
    a = pay(3_000_000, cash=True, platform="alpha")
    b = pay(3_000_000, cash=True, platform="beta", t=T0 + timedelta(hours=1))
    assert detect([a, b]) == []
    alerts = detect([a, b], AmlConfig(cumulate_across_platforms=True))
    payer = [x for x in alerts if x.direction == "payer"]
    assert [(x.rule, x.platforms, x.refs) for x in payer] == [
        (Rule.LARGE_CASH, ("alpha", "beta"), (a.ref, b.ref))
    ]
    assert "across platforms" in payer[0].detail


def test_other_currencies_are_ignored_unless_a_rate_is_configured() -> None:
    usd = pay(1_000_000, cash=True, currency="USD")  # USD 10,000.00
    cny = pay(1, cash=True, t=T0 + timedelta(hours=1))
    assert detect([usd, cny]) == []
    config = AmlConfig(fen_per_unit={"USD": Fraction(72, 10)})  # 1 cent = 7.2 fen
    assert config.to_cny_fen(1_000_000, "USD") == 7_200_000
    alerts = detect([usd, cny], config)
    assert [(a.rule, a.direction, a.total_fen, a.refs) for a in alerts] == [
        (Rule.LARGE_CASH, "payer", 7_200_001, (usd.ref, cny.ref)),
        (Rule.LARGE_CASH, "payee", 7_200_000, (usd.ref,)),
    ]
    assert detect([replace(usd, currency="EUR")], config) == []


def test_categorize() -> None:
    assert categorize(INSTITUTION, cash=True, cross_border=True) is Category.CASH
    assert categorize(INSTITUTION, cash=False, cross_border=True) is Category.INSTITUTION
    assert categorize(PERSON, cash=False, cross_border=True) is Category.PERSON_CROSS_BORDER
    assert categorize(PERSON, cash=False, cross_border=False) is Category.PERSON_DOMESTIC


# --- cross-platform structuring ---------------------------------------------------------------

def _structuring(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.rule.startswith("structuring.")]


def test_two_platform_ring_across_beijing_midnight_is_found_once() -> None:
    start = datetime(2024, 3, 1, 10, tzinfo=UTC)  # 18:00 Beijing; ring ends after midnight
    ring = [
        pay(19_000_000, platform="alpha", payee=b"m1", t=start),
        pay(19_000_000, platform="beta", payee=b"m2", t=start + timedelta(hours=4)),
        pay(19_000_000, platform="alpha", payee=b"m3", t=start + timedelta(hours=9)),
    ]
    alerts = detect(ring)
    assert [a for a in alerts if not a.rule.startswith("structuring.")] == []
    (alert,) = alerts
    assert alert.rule == Rule.STRUCTURING_PERSON_DOMESTIC
    assert (alert.identity, alert.direction, alert.total_fen) == (b"alice", "payer", 57_000_000)
    assert alert.platforms == ("alpha", "beta")
    assert alert.refs == tuple(p.ref for p in ring)
    assert (alert.window_start, alert.window_end) == (start, start + timedelta(hours=9))


def test_ring_of_receipts_is_found_on_the_payee_side() -> None:
    ring = [pay(2_000_000, cash=True, payer=bytes([i]), payee=b"mule",
                platform=("alpha", "beta")[i % 2], t=T0 + timedelta(hours=10 * i))
            for i in range(3)]
    (alert,) = detect(ring)
    assert (alert.rule, alert.identity, alert.direction) == (
        Rule.STRUCTURING_CASH, b"mule", "payee")


def test_single_platform_splitting_is_not_cross_platform_structuring() -> None:
    start = datetime(2024, 3, 1, 10, tzinfo=UTC)
    split = [pay(19_000_000, payee=b"m%d" % i, t=start + timedelta(hours=4 * i))
             for i in range(3)]
    assert detect(split) == []  # two Beijing days, one platform: neither rule fires
    (alert,) = detect(split, AmlConfig(structuring_min_platforms=1))
    assert alert.rule == Rule.STRUCTURING_PERSON_DOMESTIC
    same_day = [pay(19_000_000, t=T0 + timedelta(hours=i)) for i in range(3)]
    assert rules_for(detect(same_day), b"alice", "payer") == [Rule.LARGE_PERSON_DOMESTIC]


def test_window_is_half_open() -> None:
    window = timedelta(hours=24)
    ring = [pay(2_000_000, cash=True, platform="alpha", t=T0),
            pay(2_000_000, cash=True, platform="beta", t=T0 + timedelta(hours=1)),
            pay(2_000_000, cash=True, platform="alpha", t=T0 + window)]
    assert _structuring(detect(ring)) == []
    ring[2] = replace(ring[2], time=T0 + window - timedelta(microseconds=1))
    assert len(_structuring(detect(ring))) == 1
    assert _structuring(detect(ring, AmlConfig(structuring_window=timedelta(hours=1)))) == []


def test_under_the_sum_or_too_few_payments_is_not_structuring() -> None:
    three = [pay(1_666_666, cash=True, platform=("alpha", "beta")[i % 2],
                 t=T0 + timedelta(hours=i)) for i in range(3)]
    assert detect(three) == []  # 4,999,998 < 5,000,000
    two = [pay(2_500_000, cash=True, platform="alpha"),  # 10:00 Beijing
           pay(2_500_000, cash=True, platform="beta", t=T0 + timedelta(hours=14))]  # 00:00
    assert detect(two) == []
    assert len(detect(two, AmlConfig(structuring_min_payments=2))) == 1


def test_payments_at_or_over_the_threshold_do_not_count_as_structuring() -> None:
    big = pay(5_000_000, cash=True, platform="alpha")
    small = [pay(1_000_000, cash=True, platform="beta", t=T0 + timedelta(hours=i + 1))
             for i in range(2)]
    alerts = detect([big, *small])
    assert _structuring(alerts) == []
    assert rules_for(alerts, b"alice", "payer") == [Rule.LARGE_CASH]


def test_one_alert_per_maximal_window_not_per_payment() -> None:
    many = [pay(1_000_000, cash=True, platform=("alpha", "beta")[i % 2],
                t=T0 + timedelta(hours=2 * i)) for i in range(10)]  # all within 18 h
    (alert,) = _structuring(detect(many))
    assert alert.refs == tuple(p.ref for p in many) and alert.total_fen == 10_000_000
    # Spread over 40 h: maximal 24 h windows are [0..11], [1..12], ... -> one alert each.
    spread = [pay(1_000_000, cash=True, platform=("alpha", "beta")[i % 2],
                  t=T0 + timedelta(hours=2 * i)) for i in range(21)]
    found = _structuring(detect(spread))
    assert [a.refs for a in found] == [
        tuple(p.ref for p in spread[i:i + 12]) for i in range(10)
    ]


# --- generated traffic ------------------------------------------------------------------------

THRESHOLDS = {cat: AmlConfig().threshold(cat) for cat in Category}
CATEGORY_FIELDS: dict[Category, dict[str, Any]] = {
    Category.CASH: dict(cash=True),
    Category.INSTITUTION: dict(payer_kind=INSTITUTION, payee_kind=INSTITUTION),
    Category.PERSON_DOMESTIC: {},
    Category.PERSON_CROSS_BORDER: dict(cross_border=True),
}


@st.composite
def clean_traffic(draw: st.DrawFn) -> list[TracedPayment]:
    """Customers paying at most once per 49 h, each amount under the lowest threshold,
    every counterparty a fresh key: nothing accumulates or clusters."""
    out = []
    for who in range(draw(st.integers(0, 6))):
        for k in range(draw(st.integers(0, 5))):
            cat = draw(st.sampled_from(list(Category)))
            t = T0 + timedelta(hours=49 * k, seconds=draw(st.integers(0, 3600)))
            out.append(pay(
                draw(st.integers(1, THRESHOLDS[Category.CASH] - 1)), t=t,
                payer=b"clean-%d" % who, payee=b"clean-shop-%d-%d" % (who, k),
                platform=draw(st.sampled_from(["alpha", "beta"])), **CATEGORY_FIELDS[cat],
            ))
    return out


@given(clean_traffic())
@settings(max_examples=60, deadline=None)
def test_clean_traffic_raises_no_alert(payments: list[TracedPayment]) -> None:
    assert detect(payments) == []


@st.composite
def planted_ring(draw: st.DrawFn, ident: bytes) -> tuple[bytes, str, int, list[TracedPayment]]:
    cat = draw(st.sampled_from(list(Category)))
    threshold = THRESHOLDS[cat]
    n = draw(st.integers(3, 8))
    total = draw(st.integers(threshold, n * (threshold - 1)))
    parts = [total // n + (k < total % n) for k in range(n)]
    for i, j, share in draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1),
                                               st.floats(0, 1)), max_size=10)):
        move = int(min(parts[i] - 1, threshold - 1 - parts[j]) * share)
        if i != j and move > 0:
            parts[i] -= move
            parts[j] += move
    assert sum(parts) == total and all(0 < x < threshold for x in parts)
    platforms = ["alpha", "beta"] + draw(
        st.lists(st.sampled_from(["alpha", "beta", "gamma"]), min_size=n - 2, max_size=n - 2))
    platforms = draw(st.permutations(platforms))
    start = T0 + timedelta(seconds=draw(st.integers(0, 10 * 86_400)))
    offsets = draw(st.lists(st.integers(0, 86_400_000_000 - 1), min_size=n, max_size=n))
    direction = draw(st.sampled_from(["payer", "payee"]))
    ring = []
    for k, (amount, platform, off) in enumerate(zip(parts, platforms, offsets, strict=True)):
        other = ident + b"-cp-%d" % k
        payer, payee = (ident, other) if direction == "payer" else (other, ident)
        ring.append(pay(amount, payer=payer, payee=payee, platform=platform,
                        t=start + timedelta(microseconds=off), **CATEGORY_FIELDS[cat]))
    return ident, direction, total, ring


@given(st.data(), clean_traffic(), st.integers(1, 3), st.randoms(use_true_random=False))
@settings(max_examples=60, deadline=None)
def test_every_planted_ring_is_found_once_with_exactly_its_refs(
    data: st.DataObject, clean: list[TracedPayment], rings: int, rnd: random.Random
) -> None:
    planted = [data.draw(planted_ring(b"ring-%d" % i)) for i in range(rings)]
    payments = clean + [p for *_, ring in planted for p in ring]
    rnd.shuffle(payments)
    found = _structuring(detect(payments))
    assert len(found) == rings
    for ident, direction, total, ring in planted:
        (alert,) = [a for a in found if a.identity == ident]
        assert alert.direction == direction and alert.total_fen == total
        ordered = sorted(ring, key=lambda p: (p.time, p.ref))
        assert alert.refs == tuple(p.ref for p in ordered)
        assert alert.platforms == tuple(sorted({p.platform for p in ring}))


@given(clean_traffic(), st.randoms(use_true_random=False))
@settings(max_examples=30, deadline=None)
def test_detection_is_deterministic(payments: list[TracedPayment], rnd: random.Random) -> None:
    extra = [pay(2_000_000, cash=True, platform=("alpha", "beta")[i % 2], payer=b"x",
                 t=T0 + timedelta(hours=i)) for i in range(4)]
    everything = payments + extra
    first = detect(everything)
    rnd.shuffle(everything)
    assert detect(everything) == first == detect(iter(everything))
    assert first == sorted(first, key=Alert.sort_key) and first


# --- input and configuration errors ----------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "field"), [
    (dict(cash_threshold_fen=-1), "cash_threshold_fen"),
    (dict(cash_threshold_fen=0), "cash_threshold_fen"),
    (dict(person_domestic_threshold_fen=-5), "person_domestic_threshold_fen"),
    (dict(person_cross_border_threshold_fen=1.5), "person_cross_border_threshold_fen"),
    (dict(institution_threshold_fen=True), "institution_threshold_fen"),
    (dict(structuring_window=timedelta(0)), "structuring_window"),
    (dict(structuring_window=timedelta(hours=-1)), "structuring_window"),
    (dict(structuring_window=24), "structuring_window"),
    (dict(structuring_window=timedelta(microseconds=0.4)), "structuring_window"),
    (dict(day_utc_offset=timedelta(hours=24)), "day_utc_offset"),
    (dict(day_utc_offset=timedelta(hours=-24)), "day_utc_offset"),
    (dict(day_utc_offset=8), "day_utc_offset"),
    (dict(structuring_min_payments=1), "structuring_min_payments"),
    (dict(structuring_min_platforms=0), "structuring_min_platforms"),
    (dict(structuring_min_platforms=2.0), "structuring_min_platforms"),
    (dict(fen_per_unit={"usd": 7}), "fen_per_unit"),
    (dict(fen_per_unit={"CNY": 1}), "fen_per_unit"),
    (dict(fen_per_unit={"USD": 0}), "fen_per_unit"),
    (dict(fen_per_unit={"USD": -7}), "fen_per_unit"),
    (dict(fen_per_unit={"USD": 7.2}), "fen_per_unit"),
])
def test_invalid_config_is_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidAmlConfig) as info:
        AmlConfig(**kwargs)
    assert info.value.field == field
    assert isinstance(info.value, LedgerError) and isinstance(info.value, ValueError)


def test_config_is_frozen_and_copies_the_rate_table() -> None:
    rates = {"USD": Fraction(72, 10)}
    config = AmlConfig(fen_per_unit=rates)
    rates["USD"] = Fraction(1)
    assert config.to_cny_fen(10, "USD") == 72
    with pytest.raises(AttributeError):
        config.cash_threshold_fen = 1  # type: ignore[misc]
    assert hash(config) == hash(AmlConfig(fen_per_unit={"USD": 1}))  # the table is unhashed


@pytest.mark.parametrize(("kwargs", "field"), [
    (dict(time=datetime(2024, 3, 1)), "time"),
    (dict(amount_fen=0), "amount_fen"),
    (dict(amount_fen=-3), "amount_fen"),
    (dict(amount_fen=1.0), "amount_fen"),
    (dict(currency="cny"), "currency"),
    (dict(currency=None), "currency"),
    (dict(time="2024-03-01T00:00Z"), "time"),
    (dict(payer_kind="person"), "payer_kind"),
    (dict(payee_kind=None), "payee_kind"),
    (dict(payer_key="alice"), "payer_key"),
    (dict(payee_key=bytearray(b"x")), "payee_key"),
    (dict(ref=1), "ref"),
    (dict(platform=None), "platform"),
    (dict(payer=None), "payer_key"),
    (dict(channel=b"app"), "channel"),
    (dict(cash=1), "cash"),
    (dict(cross_border="yes"), "cross_border"),
])
def test_invalid_payment_is_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        pay(1, **kwargs)
    assert info.value.field == field


def test_detect_refuses_other_objects() -> None:
    with pytest.raises(TypeError):
        detect([object()])  # type: ignore[list-item]


# --- cross-check against a naive reference ----------------------------------------------------

def reference_detect(payments: list[TracedPayment], config: AmlConfig) -> set[tuple[object, ...]]:
    """The rules straight from their definitions, quadratic: (rule, identity, direction,
    total, refs) of every alert."""
    found: set[tuple[object, ...]] = set()
    groups: dict[tuple[bytes, str, Category], list[TracedPayment]] = {}
    for p in payments:
        for direction, key, kind in (("payer", p.payer_key, p.payer_kind),
                                     ("payee", p.payee_key, p.payee_kind)):
            cat = categorize(kind, cash=p.cash, cross_border=p.cross_border)
            groups.setdefault((key, direction, cat), []).append(p)
    for (ident, direction, cat), members in groups.items():
        members.sort(key=lambda p: (p.time, p.ref))
        threshold = config.threshold(cat)
        days: dict[tuple[object, str], list[TracedPayment]] = {}
        for p in members:
            day = (p.time.astimezone(UTC) + config.day_utc_offset).date()
            scope = "" if config.cumulate_across_platforms else p.platform
            days.setdefault((day, scope), []).append(p)
        for ps in days.values():
            if sum(p.amount_fen for p in ps) >= threshold:
                found.add((f"large_value.{cat.value}", ident, direction,
                           sum(p.amount_fen for p in ps), tuple(p.ref for p in ps)))
        small = [p for p in members if p.amount_fen < threshold]
        windows = [(i, j) for i in range(len(small)) for j in range(i, len(small))
                   if small[j].time - small[i].time < config.structuring_window]
        for i, j in windows:
            if any((a, b) != (i, j) and a <= i and j <= b for a, b in windows):
                continue  # not maximal
            ps = small[i:j + 1]
            if (len(ps) >= config.structuring_min_payments
                    and len({p.platform for p in ps}) >= config.structuring_min_platforms
                    and sum(p.amount_fen for p in ps) >= threshold):
                found.add((f"structuring.{cat.value}", ident, direction,
                           sum(p.amount_fen for p in ps), tuple(p.ref for p in ps)))
    return found


@st.composite
def dense_traffic(draw: st.DrawFn) -> list[TracedPayment]:
    """Few identities, few amounts, times packed into a few days: everything collides."""
    out = []
    for _ in range(draw(st.integers(0, 40))):
        payer = draw(st.sampled_from([b"a", b"b", b"c"]))
        payee = draw(st.sampled_from([b"a", b"b"]))
        out.append(pay(
            draw(st.sampled_from([1, 1_000_000, 2_000_000, 4_999_999, 5_000_000, 19_999_999])),
            payer=payer, payee=payee, platform=draw(st.sampled_from(["alpha", "beta", "gamma"])),
            t=T0 + timedelta(minutes=draw(st.integers(0, 4 * 24 * 60))),
            cash=draw(st.booleans()), cross_border=draw(st.booleans()),
            payer_kind=draw(st.sampled_from([PERSON, INSTITUTION])),
            payee_kind=draw(st.sampled_from([PERSON, INSTITUTION])),
        ))
    return out


configs = st.builds(
    AmlConfig,
    cash_threshold_fen=st.sampled_from([5_000_000, 3_000_000]),
    person_domestic_threshold_fen=st.sampled_from([50_000_000, 6_000_000]),
    person_cross_border_threshold_fen=st.sampled_from([20_000_000, 4_000_000]),
    institution_threshold_fen=st.sampled_from([200_000_000, 10_000_000]),
    day_utc_offset=st.sampled_from([timedelta(hours=8), timedelta(0), timedelta(hours=-5)]),
    cumulate_across_platforms=st.booleans(),
    structuring_window=st.sampled_from([timedelta(hours=24), timedelta(hours=6)]),
    structuring_min_payments=st.integers(2, 4),
    structuring_min_platforms=st.integers(1, 3),
)


@given(dense_traffic(), configs)
@settings(max_examples=150, deadline=None)
def test_fast_detection_agrees_with_the_naive_reference(
    payments: list[TracedPayment], config: AmlConfig
) -> None:
    got = detect(payments, config)
    assert {(a.rule, a.identity, a.direction, a.total_fen, a.refs) for a in got} == (
        reference_detect(payments, config))
    assert len(got) == len(set(got))


def test_a_cross_platform_payment_seen_on_both_platforms_counts_once() -> None:
    """The payer's and the payee's platform both record a RMB 300,000 transfer; with the
    shared clearing key it is one payment (no RMB 500,000 report, even summing a customer's
    day over all platforms), without it two."""
    config = AmlConfig(cumulate_across_platforms=True)
    key = b"k" * 32
    both = [pay(30_000_000, payee=b"bob", platform=p, clearing_key=key)
            for p in ("alpha", "beta")]
    assert detect(both, config) == []
    assert detect(list(reversed(both)), config) == []
    unpaired = [replace(p, clearing_key=None) for p in both]
    assert rules_for(detect(unpaired, config), b"alice", "payer") == ["large_value.person_domestic"]
    # two real payments with different keys still add up
    two = [pay(30_000_000, payee=b"bob", platform="alpha", clearing_key=b"1" * 32),
           pay(30_000_000, payee=b"bob", platform="beta", clearing_key=b"2" * 32)]
    alerts = detect(two, config)
    assert rules_for(alerts, b"alice", "payer") == ["large_value.person_domestic"]
    # the record with the smaller reference stands for the payment, whatever the order
    big = [pay(60_000_000, payee=b"bob", platform=p, clearing_key=key) for p in ("beta",
                                                                                "alpha")]
    for order in (big, big[::-1]):
        (alert,) = [a for a in detect(order) if a.direction == "payer"]
        assert alert.refs == (min(p.ref for p in big),)


def test_clearing_key_must_be_32_bytes() -> None:
    with pytest.raises(InvalidRecord, match="clearing_key"):
        pay(100, clearing_key=b"short")


# --- lasting keys (the regulator's alert numbers) ----------------------------------------------


def test_an_alert_keeps_its_lasting_key_as_it_grows() -> None:
    """More payments on the same day, or later ones in the same window, keep the key; each
    platform's day is its own alert unless days are summed across platforms."""
    day = [pay(30_000_000, t=T0, platform="alpha"), pay(30_000_000, t=T0 + timedelta(hours=1),
                                                        platform="alpha")]
    (first,) = [a for a in detect(day) if a.direction == "payer"]
    grown = day + [pay(1_000, t=T0 + timedelta(hours=3), platform="alpha")]
    (second,) = [a for a in detect(grown) if a.direction == "payer"]
    config = AmlConfig()
    assert second.refs != first.refs
    assert lasting_key(second, config) == lasting_key(first, config)
    beta = pay(60_000_000, t=T0, platform="beta")
    keys = {lasting_key(a, config) for a in detect([*day, beta]) if a.direction == "payer"}
    assert len(keys) == 2 and any(k.endswith("|alpha") for k in keys)
    summed = AmlConfig(cumulate_across_platforms=True)
    (across,) = [a for a in detect([*day, beta], summed) if a.direction == "payer"]
    assert lasting_key(across, summed).endswith("|*")
    (alone,) = [a for a in detect(day, summed) if a.direction == "payer"]
    assert lasting_key(alone, summed) == lasting_key(across, summed)  # beta joined the day


def test_rule_category() -> None:
    assert rule_category("structuring.person_cross_border") is Category.PERSON_CROSS_BORDER
    assert rule_category(Rule.LARGE_CASH) is Category.CASH
    with pytest.raises(ValueError):
        rule_category("large_value.yachts")
