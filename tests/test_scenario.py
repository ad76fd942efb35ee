"""The scenario generator: determinism, identities, records, ground truth, scenario files.

The property that matters: run every record through the regulator's path (escrow payload,
traced payment, ``aml.detect`` with the default config) and the alerts are exactly the
planted ones, records and all, on every seed and size.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger_node.demo.scenario import (
    DEFAULT_PLANTED,
    LargeValue,
    PlantedKind,
    ReconciliationMismatch,
    ReconciliationMissing,
    Scenario,
    ScenarioSpec,
    StructuringRing,
    generate_scenario,
    load_scenario_spec,
    spec_from_document,
)
from ledger_node.errors import InvalidScenario
from ledger_node.protocol import aml
from ledger_node.protocol.aml import AmlConfig, Category, Direction, PartyKind, Rule
from ledger_node.protocol.escrow import (
    EscrowPayload,
    classify_identity,
    identity_key,
    is_resident_id,
    is_social_credit_code,
)
from ledger_node.protocol.record import FIELD_NAMES, PaymentRecord

ROOT = Path(__file__).resolve().parent.parent
SMALL = ScenarioSpec(payments=1_500, people=200, merchants=30, seed=7)


@pytest.fixture(scope="module")
def small() -> Scenario:
    return generate_scenario(SMALL)


@pytest.fixture(scope="module")
def default() -> Scenario:
    return generate_scenario()


def traced(scenario: Scenario) -> list[aml.TracedPayment]:
    """Every record as the regulator will see it after opening its escrow."""
    out = []
    for platform, record in scenario.all_records():
        payer_kind, payee_kind = scenario.kinds(record)
        payload = EscrowPayload.from_record(record, payer_kind=payer_kind, payee_kind=payee_kind)
        out.append(payload.traced(ref=f"{platform}/{record.local_tx_id}", platform=platform))
    return out


def assert_exact_alerts(scenario: Scenario) -> None:
    alerts = aml.detect(traced(scenario), AmlConfig())
    match = scenario.match_alerts(alerts)
    assert match.missed == ()
    assert match.unexpected == ()
    assert len(alerts) == len(scenario.expected_alerts)
    planted = {case.identity for case in scenario.planted if case.expected}
    assert {alert.identity for alert in alerts} == planted
    for case in scenario.planted:
        if case.kind in (PlantedKind.STRUCTURING, PlantedKind.LARGE_VALUE):
            assert case.rules, case
            assert any(alert.identity == case.identity and alert.rule in case.rules
                       for alert in alerts)


def canonical(scenario: Scenario) -> bytes:
    """Every record's canonical field bytes and JSON form, platform by platform."""
    out = bytearray()
    for platform, record in scenario.all_records():
        out += platform.encode() + b"".join(record.encoded_fields())
        out += json.dumps(record.to_json(), sort_keys=True, ensure_ascii=False).encode()
    return bytes(out)


# ----------------------------------------------------------------------------------------------
# Determinism
# ----------------------------------------------------------------------------------------------


def test_same_spec_gives_identical_scenarios_byte_for_byte(small: Scenario) -> None:
    again = generate_scenario(SMALL)
    assert canonical(again) == canonical(small)
    assert again.identities == small.identities
    assert again.planted == small.planted


def test_another_seed_gives_another_scenario(small: Scenario) -> None:
    other = generate_scenario(replace(SMALL, seed=8))
    assert canonical(other) != canonical(small)
    assert {i.identity for i in other.identities} != {i.identity for i in small.identities}


def test_output_does_not_depend_on_the_process_hash_seed() -> None:
    code = ("import hashlib, sys; sys.path.insert(0, '.'); from tests.test_scenario import "
            "canonical, SMALL; from ledger_node.demo.scenario import generate_scenario; "
            "print(hashlib.sha256(canonical(generate_scenario(SMALL))).hexdigest())")
    digests = set()
    for hash_seed in ("1", "2"):
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                                text=True, check=True,
                                env={**os.environ, "PYTHONHASHSEED": hash_seed})
        digests.add(result.stdout.strip())
    assert digests == {hashlib.sha256(canonical(generate_scenario(SMALL))).hexdigest()}


# ----------------------------------------------------------------------------------------------
# Identities and accounts
# ----------------------------------------------------------------------------------------------


def luhn_valid(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def gb11714_check(org: str) -> str:
    """The organisation-code check character, letters valued A=10 ... Z=35 (GB 11714)."""
    values = {c: i for i, c in enumerate("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")}
    total = sum(values[c] * w for c, w in zip(org, (3, 7, 9, 10, 5, 8, 4, 2), strict=True))
    return {10: "X", 11: "0"}.get(11 - total % 11, str(11 - total % 11))


def test_identities_are_valid_unique_and_keyed(default: Scenario) -> None:
    spec = default.spec
    people = [i for i in default.identities if i.kind is PartyKind.PERSON]
    merchants = [i for i in default.identities if i.kind is PartyKind.INSTITUTION]
    assert (len(people), len(merchants)) == (spec.people, spec.merchants)
    assert all(is_resident_id(p.identity) for p in people)
    assert all(is_social_credit_code(m.identity) for m in merchants)
    assert all(gb11714_check(m.identity[8:16]) == m.identity[16] for m in merchants)
    assert all(m.identity.startswith("91") and not is_resident_id(m.identity)
               for m in merchants)
    for identity in default.identities:
        assert classify_identity(identity.identity) is identity.kind
        assert identity.key == identity_key(identity.identity)
        assert identity.name
        assert default.identity(identity.key) is identity
    assert len({i.identity for i in default.identities}) == len(default.identities)
    assert len({i.key for i in default.identities}) == len(default.identities)
    everywhere = [p for p in people if len(p.platforms) == len(spec.platforms)]
    assert len(everywhere) == round(spec.people * spec.both_platforms)
    assert all(len(p.platforms) in (1, len(spec.platforms)) for p in people)


def test_accounts_are_per_platform_and_unique(default: Scenario) -> None:
    tokens = [token for i in default.identities for _, token in i.accounts]
    assert len(set(tokens)) == len(tokens)
    for identity in default.identities:
        for platform, token in identity.accounts:
            assert identity.account_on(platform) == token
            if platform == "unionpay" and identity.kind is PartyKind.PERSON:
                assert re.fullmatch(r"62\d{17}", token) and luhn_valid(token)
            if platform == "wechatpay" and identity.kind is PartyKind.PERSON:
                assert re.fullmatch(r"o[A-Za-z0-9_-]{27}", token)
        assert identity.account_on("nowhere") is None


def test_three_platforms_and_generic_account_tokens() -> None:
    spec = ScenarioSpec(payments=600, people=90, merchants=12, seed=3,
                        platforms=("unionpay", "wechatpay", "alipay"))
    scenario = generate_scenario(spec)
    assert set(scenario.records) == {"unionpay", "wechatpay", "alipay"}
    alipay = [i.account_on("alipay") for i in scenario.identities if i.account_on("alipay")]
    assert alipay and all(re.fullmatch(r"alipay-[pm]-[0-9a-f]{16}", t) for t in alipay)
    assert_exact_alerts(scenario)


# ----------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------


def test_records_pass_the_validating_constructor(default: Scenario) -> None:
    for _, record in default.all_records():
        rebuilt = PaymentRecord(*(getattr(record, name) for name in FIELD_NAMES))
        assert rebuilt == record
        assert rebuilt.encoded_fields() == record.encoded_fields()
        assert PaymentRecord.from_json(record.to_json()) == record


def test_records_are_in_time_order_within_the_day(default: Scenario) -> None:
    start = default.spec.day_start
    for platform, records in default.records.items():
        assert [r.time for r in records] == sorted(r.time for r in records)
        ids = [r.local_tx_id for r in records]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert all(r.platform == platform for r in records)
        assert all(start <= r.time < start + timedelta(days=1) for r in records)
        assert all(r.currency == "CNY" for r in records)


def test_accounts_in_records_belong_to_their_parties(small: Scenario) -> None:
    by_identity = {i.identity: i for i in small.identities}
    for platform, record in small.all_records():
        payer = by_identity[record.payer_identity]
        payee = by_identity[record.payee_identity]
        assert record.payer_account in dict(payer.accounts).values()
        assert record.payee_account in dict(payee.accounts).values()
        if not record.clearing_ref:  # within one platform
            assert payer.account_on(platform) == record.payer_account
            assert payee.account_on(platform) == record.payee_account


def test_cross_platform_payments_are_recorded_on_both_sides(default: Scenario) -> None:
    faults = {case.clearing_ref: case for case in default.planted if case.clearing_ref}
    by_ref: dict[str, list[tuple[str, PaymentRecord]]] = defaultdict(list)
    within = 0
    for platform, record in default.all_records():
        if record.clearing_ref:
            by_ref[record.clearing_ref].append((platform, record))
        else:
            within += 1
    assert within + len(by_ref) == default.spec.payments
    fraction = len(by_ref) / default.spec.payments
    assert 0.5 * default.spec.cross_platform < fraction < 1.5 * default.spec.cross_platform
    for ref, sides in by_ref.items():
        fault = faults.get(ref)
        if fault is not None and fault.kind is PlantedKind.RECONCILIATION_MISSING:
            assert len(sides) == 1
            continue
        assert len(sides) == 2, ref
        (p, a), (q, b) = sides
        assert p != q
        assert not a.cash and not b.cash
        same = ("payer_identity", "payer_account", "payee_identity", "payee_account",
                "currency", "time", "channel", "cross_border")
        assert all(getattr(a, name) == getattr(b, name) for name in same)
        if fault is None:
            assert a.amount_fen == b.amount_fen
        else:
            assert a.amount_fen != b.amount_fen


def test_summary_counts(default: Scenario) -> None:
    summary = default.summary()
    assert summary["payments"] == 20_000
    assert summary["records.unionpay"] == len(default.records["unionpay"])
    assert summary["records.unionpay"] + summary["records.wechatpay"] == (
        20_000 + summary["cross_platform_payments"] - 1)  # one record missing (planted)
    assert 0 < summary["cash_records"] and 0 < summary["cross_border_records"]


# ----------------------------------------------------------------------------------------------
# Ground truth
# ----------------------------------------------------------------------------------------------


def test_default_scenario_alerts_are_exactly_the_planted_ones(default: Scenario) -> None:
    assert [case.kind for case in default.planted] == [
        PlantedKind.STRUCTURING, PlantedKind.STRUCTURING, PlantedKind.STRUCTURING,
        PlantedKind.LARGE_VALUE, PlantedKind.RECONCILIATION_MISSING,
        PlantedKind.RECONCILIATION_MISMATCH]
    assert [case.rules for case in default.planted] == [
        (Rule.STRUCTURING_PERSON_DOMESTIC,), (Rule.STRUCTURING_PERSON_DOMESTIC,),
        (Rule.STRUCTURING_PERSON_CROSS_BORDER,), (Rule.LARGE_PERSON_CROSS_BORDER,), (), ()]
    assert_exact_alerts(default)


specs = st.builds(
    ScenarioSpec,
    payments=st.integers(100, 2_500),
    seed=st.integers(0, 2**64),
    platforms=st.sampled_from([("unionpay", "wechatpay"), ("wechatpay", "unionpay"),
                               ("unionpay", "wechatpay", "alipay")]),
    people=st.integers(60, 400),
    merchants=st.integers(20, 80),
    both_platforms=st.floats(0.05, 1.0),
    cross_platform=st.floats(0.0, 1.0),
    person_to_person=st.floats(0.0, 1.0),
    cash=st.floats(0.0, 0.1),
    cross_border=st.floats(0.0, 0.2),
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_alerts_are_exactly_the_planted_ones_on_any_seed_and_size(spec: ScenarioSpec) -> None:
    assert_exact_alerts(generate_scenario(spec))


def test_every_category_and_direction_can_be_planted() -> None:
    planted = (
        StructuringRing((1_900_000, 1_800_000, 1_700_000), Direction.PAYEE, Category.CASH),
        StructuringRing((1_800_000, 1_900_000, 1_700_000), Direction.PAYER, Category.CASH),
        StructuringRing((90_000_000, 80_000_000, 70_000_000), Direction.PAYER,
                        Category.INSTITUTION, span_minutes=1_439),
        StructuringRing((6_000_000, 7_000_000, 8_000_000), Direction.PAYEE,
                        Category.PERSON_CROSS_BORDER, span_minutes=1),
        LargeValue(50_000_000, Direction.PAYEE, Category.PERSON_DOMESTIC, platform="wechatpay"),
        LargeValue(199_999_999, Direction.PAYER, Category.PERSON_DOMESTIC),
        ReconciliationMissing(Direction.PAYER),
        ReconciliationMismatch(Direction.PAYER, delta_fen=1_000_000),
        ReconciliationMismatch(Direction.PAYEE, delta_fen=-1_000_000),
    )
    scenario = generate_scenario(ScenarioSpec(payments=800, people=80, merchants=20, seed=5,
                                              planted=planted))
    assert_exact_alerts(scenario)
    by_id = {(p, r.local_tx_id): r for p, r in scenario.all_records()}
    for spec, case in zip(planted, scenario.planted, strict=True):
        assert case.kind is spec.kind
        records = [by_id[ref] for ref in case.records]
        if isinstance(spec, StructuringRing):
            assert sorted(r.amount_fen for r in records) == sorted(spec.parts_fen)
            assert len({r.platform for r in records}) == 2
            times = sorted(r.time for r in records)
            assert times[-1] - times[0] < timedelta(minutes=spec.span_minutes)
        elif isinstance(spec, LargeValue):
            assert [r.amount_fen for r in records] == [spec.amount_fen]
            assert spec.platform in ("", records[0].platform)
        else:
            assert {r.clearing_ref for r in records} == {case.clearing_ref}
            party = [r.payer_identity if spec.side is Direction.PAYER else r.payee_identity
                     for r in records]
            assert {identity_key(p) for p in party} == {case.identity}
            if isinstance(spec, ReconciliationMissing):
                assert len(records) == 1
            else:
                amounts = {r.platform: r.amount_fen for r in records}
                assert len(amounts) == 2 and len(set(amounts.values())) == 2
                assert abs(amounts["unionpay"] - amounts["wechatpay"]) == abs(spec.delta_fen)


def test_a_ring_share_over_the_threshold_on_one_platform_is_also_a_large_value() -> None:
    ring = StructuringRing((40_000_000, 1_000_000, 45_000_000, 1_000_000, 30_000_000))
    scenario = generate_scenario(ScenarioSpec(payments=300, people=60, merchants=10, seed=2,
                                              planted=(ring,)))
    (case,) = scenario.planted
    assert set(case.rules) == {Rule.STRUCTURING_PERSON_DOMESTIC, Rule.LARGE_PERSON_DOMESTIC}
    large = [e for e in case.expected if e.rule is Rule.LARGE_PERSON_DOMESTIC]
    assert len(large) == 1 and len(large[0].records) == 3
    assert_exact_alerts(scenario)


def test_clean_traffic_keeps_half_the_thresholds_as_headroom(default: Scenario) -> None:
    """Clean groups stay at or under half a threshold, even summed across platforms."""
    base = AmlConfig()
    tight = AmlConfig(
        cash_threshold_fen=base.cash_threshold_fen // 2 + 1,
        person_domestic_threshold_fen=base.person_domestic_threshold_fen // 2 + 1,
        person_cross_border_threshold_fen=base.person_cross_border_threshold_fen // 2 + 1,
        institution_threshold_fen=base.institution_threshold_fen // 2 + 1,
        cumulate_across_platforms=True, structuring_window=timedelta(days=2))
    involved = set()
    for case in default.planted:
        for platform, tx_id in case.records:
            record = next(r for r in default.records[platform] if r.local_tx_id == tx_id)
            involved |= {identity_key(record.payer_identity), identity_key(record.payee_identity)}
    alerts = aml.detect(traced(default), tight)
    assert alerts
    assert {alert.identity for alert in alerts} <= involved


def test_records_of_is_exactly_every_record_of_the_identity(small: Scenario) -> None:
    truth: dict[bytes, set[tuple[str, str]]] = defaultdict(set)
    for platform, record in small.all_records():
        for identity in (record.payer_identity, record.payee_identity):
            truth[identity_key(identity)].add((platform, record.local_tx_id))
    for identity in small.identities:
        assert small.records_of(identity.key) == truth.get(identity.key, set())
    assert small.records_of(b"\x00" * 32) == frozenset()
    both = [i for i in small.identities if len(i.platforms) == 2 and small.records_of(i.key)]
    assert any(len({p for p, _ in small.records_of(i.key)}) == 2 for i in both)


def test_kinds_feed_the_sdk(small: Scenario) -> None:
    for _, record in small.all_records():
        assert small.kinds(record) == (classify_identity(record.payer_identity),
                                       classify_identity(record.payee_identity))
    outsider = replace(small.records["unionpay"][0], payer_identity="91350100M000100Y43",
                       payee_identity="11010519491231002X")
    assert small.kinds(outsider) == (PartyKind.INSTITUTION, PartyKind.PERSON)


def test_match_alerts_reports_missed_and_unexpected(small: Scenario) -> None:
    alerts = aml.detect(traced(small))
    assert small.match_alerts(alerts).exact
    match = small.match_alerts(alerts[1:] + [replace(alerts[0], identity=b"\x01" * 32)])
    assert not match.exact
    assert [e.rule for e in match.missed] == [alerts[0].rule]
    assert [a.identity for a in match.unexpected] == [b"\x01" * 32]
    assert len(match.found) == len(alerts) - 1


def test_payments_include_the_planted_ones(small: Scenario) -> None:
    refs = Counter(r.clearing_ref or (p, r.local_tx_id) for p, r in small.all_records())
    assert len(refs) == SMALL.payments
    planted_payments = sum(case.payment_count for case in DEFAULT_PLANTED)
    assert planted_payments == 21
    assert sum(len(case.records) for case in small.planted) == planted_payments + 1


# ----------------------------------------------------------------------------------------------
# Scenario files
# ----------------------------------------------------------------------------------------------


def test_the_shipped_example_is_the_default_spec() -> None:
    assert load_scenario_spec(ROOT / "scenarios" / "default.yaml") == ScenarioSpec()


def test_the_documented_example_loads(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "scenario.md").read_text(encoding="utf-8")
    example = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert example is not None
    path = tmp_path / "example.yaml"
    path.write_text(example.group(1), encoding="utf-8")
    spec = load_scenario_spec(path)
    assert spec.payments == 5_000 and len(spec.planted) == 5
    assert_exact_alerts(generate_scenario(spec))


def test_json_and_yaml_give_the_same_spec(tmp_path: Path) -> None:
    document = {"payments": 900, "seed": 11, "day": "2026-12-31", "people": 100,
                "merchants": 10, "planted": [
                    {"kind": "structuring", "parts_fen": [20_000_000] * 3,
                     "platforms": ["wechatpay", "unionpay"]},
                    {"kind": "large_value", "amount_fen": 20_000_000, "platform": "unionpay"},
                    {"kind": "reconciliation_mismatch", "side": "payer", "delta_fen": 5}]}
    (tmp_path / "s.json").write_text(json.dumps(document), encoding="utf-8")
    (tmp_path / "s.yml").write_text(json.dumps(document), encoding="utf-8")  # YAML ⊇ JSON
    spec = load_scenario_spec(tmp_path / "s.json")
    assert load_scenario_spec(str(tmp_path / "s.yml")) == spec
    assert spec.planted == (StructuringRing((20_000_000,) * 3,
                                            platforms=("wechatpay", "unionpay")),
                            LargeValue(20_000_000, platform="unionpay"),
                            ReconciliationMismatch(Direction.PAYER, 5))
    assert spec_from_document({"planted": []}).planted == ()
    assert spec_from_document({}) == ScenarioSpec()


RING = {"kind": "structuring", "parts_fen": [20_000_000, 20_000_000, 20_000_000]}

# (document, where, message fragment)
DOCUMENT_MISTAKES = [
    ([], "$", "must be a mapping of scenario fields, got list"),
    (None, "$", "the document is empty"),
    ({"paymnets": 10}, "$.paymnets", "unknown key for a scenario; did you mean 'payments'?"),
    ({"colour": 1}, "$.colour", "unknown key for a scenario; expected one of payments, seed"),
    ({1: 2}, "$", "keys must be strings, got int 1"),
    ({"payments": "many"}, "$.payments", "must be an integer, got str 'many'"),
    ({"payments": True}, "$.payments", "must be an integer, got bool True"),
    ({"payments": 100.0}, "$.payments", "must be an integer, got float 100.0"),
    ({"payments": -5}, "$.payments", "must be at least 1, got -5"),
    ({"payments": 10**9}, "$.payments", "must be at most 10000000"),
    ({"payments": 20}, "$.payments", "20 is fewer than the 21 payments of the planted cases"),
    ({"seed": "x"}, "$.seed", "must be an integer, got str 'x'"),
    ({"day": "2026-13-01"}, "$.day", "'2026-13-01' is not a date (YYYY-MM-DD)"),
    ({"day": 20261127}, "$.day", "must be a calendar date, got int 20261127"),
    ({"platforms": "unionpay"}, "$.platforms", "must be a list, got str 'unionpay'"),
    ({"platforms": ["unionpay"]}, "$.platforms", "must name at least 2 platforms, got 1"),
    ({"platforms": ["unionpay", "UnionPay"]}, "$.platforms[1]",
     "'UnionPay' is not a platform name"),
    ({"platforms": ["unionpay", 7]}, "$.platforms[1]", "7 is not a platform name"),
    ({"platforms": ["unionpay", "unionpay"]}, "$.platforms[1]",
     "platform 'unionpay' is listed twice"),
    ({"people": 3}, "$.people", "must be at least 4, got 3"),
    ({"merchants": 0}, "$.merchants", "must be at least 1, got 0"),
    ({"cash": 1.5}, "$.cash", "must lie in [0, 1], got 1.5"),
    ({"cross_border": -0.1}, "$.cross_border", "must lie in [0, 1], got -0.1"),
    ({"both_platforms": "30%"}, "$.both_platforms", "must be a number in [0, 1], got str"),
    ({"cross_platform": math.nan}, "$.cross_platform", "must lie in [0, 1], got nan"),
    ({"person_to_person": None}, "$.person_to_person", "must be a number in [0, 1], got None"),
    ({"both_platforms": 0.0}, "$.both_platforms",
     "3 structuring rings need as many people with accounts on every platform"),
    ({"people": 6, "both_platforms": 1.0}, "$.people",
     "4 planted people need at least 8 people, got 6"),
    ({"merchants": 1, "planted": [RING | {"category": "institution",
                                          "parts_fen": [100_000_000] * 3}] * 2},
     "$.merchants", "2 institution rings need as many merchants on every platform"),
    ({"planted": {"kind": "structuring"}}, "$.planted", "must be a list, got dict"),
    ({"planted": ["structuring"]}, "$.planted[0]", "a planted case must be a mapping"),
    ({"planted": [{"parts_fen": [1]}]}, "$.planted[0]", "missing key 'kind'"),
    ({"planted": [{"kind": "smurfing"}]}, "$.planted[0].kind",
     "unknown planted kind 'smurfing' (expected one of structuring, large_value, "
     "reconciliation_missing, reconciliation_mismatch)"),
    ({"planted": [{"kind": "structuring"}]}, "$.planted[0]",
     "missing key 'parts_fen' for a structuring case"),
    ({"planted": [{"kind": "large_value"}]}, "$.planted[0]",
     "missing key 'amount_fen' for a large_value case"),
    ({"planted": [RING | {"part_fen": 1}]}, "$.planted[0].part_fen",
     "unknown key for a structuring case; did you mean 'parts_fen'?"),
    ({"planted": [RING, {"kind": "reconciliation_missing", "delta_fen": 3}]},
     "$.planted[1].delta_fen", "unknown key for a reconciliation_missing case"),
    ({"planted": [RING | {"parts_fen": 60_000_000}]}, "$.planted[0].parts_fen",
     "must be a list, got int"),
    ({"planted": [RING | {"parts_fen": [20_000_000, "x", 20_000_000]}]},
     "$.planted[0].parts_fen[1]", "must be an integer, got str 'x'"),
    ({"planted": [RING | {"parts_fen": [20_000_000, 0, 40_000_000]}]},
     "$.planted[0].parts_fen[1]", "must be at least 1, got 0"),
    ({"planted": [RING | {"parts_fen": [20_000_000, 50_000_000, 1]}]},
     "$.planted[0].parts_fen[1]",
     "50000000 fen is not under the person_domestic threshold 50000000 fen"),
    ({"planted": [RING | {"parts_fen": [30_000_000, 30_000_000]}]}, "$.planted[0].parts_fen",
     "a ring needs at least 3 parts, got 2"),
    ({"planted": [RING | {"parts_fen": [10_000_000, 10_000_000, 10_000_000]}]},
     "$.planted[0].parts_fen", "the parts add up to 30000000 fen, under the person_domestic "
     "threshold 50000000 fen: the ring would raise no alert"),
    ({"planted": [RING | {"category": "cash"}]}, "$.planted[0].parts_fen[0]",
     "20000000 fen is not under the cash threshold 5000000 fen"),
    ({"planted": [RING | {"direction": "sideways"}]}, "$.planted[0].direction",
     "'sideways' is not one of payer, payee"),
    ({"planted": [RING | {"direction": 1}]}, "$.planted[0].direction",
     "must be one of payer, payee, got int 1"),
    ({"planted": [RING | {"category": "crypto"}]}, "$.planted[0].category",
     "'crypto' is not one of cash, institution, person_domestic, person_cross_border"),
    ({"planted": [RING | {"span_minutes": 1440}]}, "$.planted[0].span_minutes",
     "must be at most 1439, got 1440"),
    ({"planted": [RING | {"span_minutes": 0}]}, "$.planted[0].span_minutes",
     "must be at least 1, got 0"),
    ({"planted": [RING | {"platforms": ["unionpay"]}]}, "$.planted[0].platforms",
     "must name at least 2 platforms, got 1"),
    ({"planted": [RING | {"platforms": ["unionpay", "alipay"]}]},
     "$.planted[0].platforms[1]",
     "'alipay' is not one of the scenario's platforms (unionpay, wechatpay)"),
    ({"planted": [{"kind": "large_value", "amount_fen": 19_999_999}]},
     "$.planted[0].amount_fen", "19999999 fen is under the person_cross_border threshold "
     "20000000 fen: it would raise no large-value alert"),
    ({"planted": [{"kind": "large_value", "amount_fen": 200_000_000}]},
     "$.planted[0].amount_fen", "would put its merchant counterparty at the institution "
     "threshold 200000000 fen too"),
    ({"planted": [{"kind": "large_value", "amount_fen": 9_000_000, "category": "cash"}]},
     "$.planted[0].category", "'cash': a planted large value must be person_domestic or "
     "person_cross_border"),
    ({"planted": [{"kind": "large_value", "amount_fen": "lots"}]},
     "$.planted[0].amount_fen", "must be an integer, got str 'lots'"),
    ({"planted": [{"kind": "large_value", "amount_fen": 30_000_000, "platform": 5}]},
     "$.planted[0].platform", "5 is not a platform name"),
    ({"planted": [{"kind": 3}]}, "$.planted[0].kind", "unknown planted kind 3"),
    ({"planted": [{"kind": "large_value", "amount_fen": 30_000_000, "platform": "Alipay"}]},
     "$.planted[0].platform", "'Alipay' is not a platform name"),
    ({"planted": [{"kind": "large_value", "amount_fen": 30_000_000, "platform": "alipay"}]},
     "$.planted[0].platform", "'alipay' is not one of the scenario's platforms"),
    ({"planted": [{"kind": "reconciliation_missing", "side": "both"}]},
     "$.planted[0].side", "'both' is not one of payer, payee"),
    ({"planted": [{"kind": "reconciliation_mismatch", "delta_fen": 0}]},
     "$.planted[0].delta_fen", "must not be 0 (that is no mismatch)"),
    ({"planted": [{"kind": "reconciliation_mismatch", "delta_fen": 1_000_001}]},
     "$.planted[0].delta_fen", "must lie within ±1000000, got 1000001"),
    ({"planted": [{"kind": "reconciliation_mismatch", "delta_fen": 0.5}]},
     "$.planted[0].delta_fen", "must be an integer, got float 0.5"),
]


@pytest.mark.parametrize(("document", "where", "fragment"), DOCUMENT_MISTAKES)
def test_every_document_mistake_is_named(document: object, where: str, fragment: str) -> None:
    with pytest.raises(InvalidScenario) as caught:
        spec_from_document(document)
    assert caught.value.where == where
    assert fragment in caught.value.reason
    assert str(caught.value).startswith(f"invalid scenario at {where}: ")


# (file name, content or None for no file, where, message fragment)
FILE_MISTAKES = [
    ("s.txt", "payments: 10", "$", "unknown file type '.txt': use .yaml, .yml or .json"),
    ("absent.yaml", None, "$", "cannot read the file: No such file or directory"),
    ("s.yaml", b"payments: \xff\n", "$", "the file is not UTF-8 text"),
    ("s.yaml", "payments: 10\nseed: [1, 2\n", "line 3", "not valid YAML"),
    ("s.yaml", "payments: 100\nseed: 1\npayments: 200\n", "line 3", "duplicate key 'payments'"),
    ("s.yaml", "planted:\n  - kind: structuring\n    kind: large_value\n", "line 3",
     "duplicate key 'kind'"),
    ("s.yaml", "? [1, 2]\n: 3\n", "line 1", "a key must be a scalar, got list [1, 2]"),
    ("s.yaml", "day: 2026-11-27 10:00:00\n", "$.day", "must be a calendar date, got datetime"),
    ("s.yaml", "", "$", "the document is empty"),
    ("s.json", '{"payments": 10,\n "seed": }', "line 2", "not valid JSON: Expecting value"),
    ("s.json", '{"seed": 1, "seed": 2}', "$", "duplicate key 'seed'"),
    ("s.json", '{"cash": NaN}', "$.cash", "must lie in [0, 1], got nan"),
]


@pytest.mark.parametrize(("name", "content", "where", "fragment"), FILE_MISTAKES)
def test_every_file_mistake_is_named(tmp_path: Path, name: str, content: str | bytes | None,
                                     where: str, fragment: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidScenario) as caught:
        load_scenario_spec(path)
    assert (caught.value.where, caught.value.source) == (where, str(path))
    assert fragment in caught.value.reason
    assert str(caught.value).startswith(f"invalid scenario {path} at {where}: ")


def test_spec_errors_from_code_name_the_field() -> None:
    with pytest.raises(InvalidScenario, match=r"^invalid scenario at parts_fen: a ring needs "
                                              r"at least 3 parts, got 2$"):
        StructuringRing((1, 1))
    with pytest.raises(InvalidScenario, match=r"at planted\[0\]: is not a planted case spec"):
        ScenarioSpec(planted=("structuring",))  # type: ignore[arg-type]
    with pytest.raises(InvalidScenario, match=r"at day: must be a calendar date"):
        ScenarioSpec(day="2026-11-27")  # type: ignore[arg-type]
    with pytest.raises(InvalidScenario, match=r"at planted\[1\]\.platform: 'x' is not one of"):
        ScenarioSpec(planted=(ReconciliationMissing(), LargeValue(30_000_000, platform="x")))
    with pytest.raises(InvalidScenario, match=r"^invalid scenario here\.yaml at "
                                              r"\$\.planted\[0\]\.parts_fen\[2\]: "):
        spec_from_document({"planted": [RING | {"parts_fen": [1, 2, 60_000_000]}]},
                           source="here.yaml")


def test_too_many_payments_for_too_few_parties_is_refused() -> None:
    spec = ScenarioSpec(payments=5_000, people=4, merchants=1, cash=1.0, planted=())
    with pytest.raises(InvalidScenario) as caught:
        generate_scenario(spec)
    assert caught.value.where == "payments"
    assert "5000 payments cannot be spread over 4 people and 1 merchants" in caught.value.reason


def test_a_ring_without_enough_counterparties_is_refused() -> None:
    ring = StructuringRing((40_000_000,) * 6)
    spec = ScenarioSpec(payments=10, people=4, merchants=1, both_platforms=0.5, planted=(ring,))
    with pytest.raises(InvalidScenario) as caught:
        generate_scenario(spec)
    assert caught.value.where == "planted[0]"
    assert "no counterparty can take a part of this case" in caught.value.reason
