"""Synthetic payment scenarios with ground truth, for the regulator's tests and the demo.

A :class:`ScenarioSpec` describes one simulated day (Beijing time): people with accounts on
one or every platform, merchants, payments within and across platforms (a cross-platform
payment is recorded by both platforms under one clearing reference), cash and cross-border
flags, and **planted cases**: structuring rings split across platforms, large-value
transfers and reconciliation faults. :func:`generate_scenario` turns it into per-platform
:class:`PaymentRecord` lists and the ground truth: every identity with its key, the records
of each identity, and for each planted case the exact AML alerts it must raise.

Clean traffic raises no AML alert with the default :class:`AmlConfig`, by construction, not
by luck: the generator keeps, for every (identity, direction, category), the total that the
regulator will sum (a cross-platform payment counts once per platform record) and never lets
clean traffic take it past half the category's threshold; a planted case's counterparties
stay under the threshold itself, and a planted subject has no clean traffic in the group its
case is about. No day's sum and no window's sum can exceed a group's total, so neither rule of
:mod:`ledger_node.protocol.aml` can fire outside the planted cases.

Deterministic: the same spec (seed included) gives the same records, byte for byte.
:func:`spec_from_document` / :func:`load_scenario_spec` read the YAML or JSON scenario file
format documented in ``docs/scenario.md``; every mistake raises :class:`InvalidScenario`
naming the place in the document.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from base64 import urlsafe_b64encode
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta, timezone
from enum import StrEnum
from operator import mul
from pathlib import Path
from random import Random
from typing import Any, ClassVar, Final, TypeVar

import yaml

from ledger_node.errors import InvalidScenario
from ledger_node.jsonlimits import JsonTextRefused, parse_json_text
from ledger_node.protocol.aml import Alert, AmlConfig, Category, Direction, PartyKind, Rule
from ledger_node.protocol.escrow import classify_identity, identity_key, is_resident_id
from ledger_node.protocol.record import FIELD_NAMES, Channel, PaymentRecord

__all__ = [
    "BEIJING",
    "DEFAULT_PLANTED",
    "AlertMatch",
    "ExpectedAlert",
    "Identity",
    "LargeValue",
    "PlantedCase",
    "PlantedKind",
    "PlantedSpec",
    "ReconciliationMismatch",
    "ReconciliationMissing",
    "RecordRef",
    "Scenario",
    "ScenarioSpec",
    "StructuringRing",
    "generate_scenario",
    "load_scenario_spec",
    "spec_from_document",
]

RecordRef = tuple[str, str]
"""A record's ground-truth reference: ``(platform, local_tx_id)``."""

BEIJING: Final = timezone(timedelta(hours=8), "CST")
"""China Standard Time: the simulated day runs from 00:00 to 24:00 here."""

_AML: Final = AmlConfig()
_PLATFORM_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_MAX_PAYMENTS: Final = 10_000_000
_MAX_PARTIES: Final = 10_000_000
_DAY_US: Final = 86_400_000_000
_MAX_DELTA_FEN: Final = 1_000_000
_MIN_AMOUNT_FEN: Final = 100
_MAX_ATTEMPTS: Final = 200

# ----------------------------------------------------------------------------------------------
# Validation helpers (``where`` is relative to the object being built)
# ----------------------------------------------------------------------------------------------


def _describe(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _int(value: object, where: str, *, least: int, most: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidScenario(where, f"must be an integer, got {_describe(value)}")
    if value < least:
        raise InvalidScenario(where, f"must be at least {least}, got {value}")
    if most is not None and value > most:
        raise InvalidScenario(where, f"must be at most {most}, got {value}")
    return value


def _fraction(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidScenario(where, f"must be a number in [0, 1], got {_describe(value)}")
    if not 0 <= value <= 1:  # also refuses NaN
        raise InvalidScenario(where, f"must lie in [0, 1], got {value}")
    return float(value)


def _sequence(value: object, where: str) -> tuple[object, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidScenario(where, f"must be a list, got {_describe(value)}")
    return tuple(value)


_E = TypeVar("_E", bound=StrEnum)


def _choice(kind: type[_E], value: object, where: str) -> _E:
    allowed = ", ".join(member.value for member in kind)
    if not isinstance(value, str):
        raise InvalidScenario(where, f"must be one of {allowed}, got {_describe(value)}")
    try:
        return kind(value)
    except ValueError:
        raise InvalidScenario(where, f"{value!r} is not one of {allowed}") from None


def _platform_names(value: object, where: str, *, least: int) -> tuple[str, ...]:
    names = _sequence(value, where)
    for i, name in enumerate(names):
        if not isinstance(name, str) or not _PLATFORM_NAME.fullmatch(name):
            raise InvalidScenario(f"{where}[{i}]",
                                  f"{name!r} is not a platform name ([a-z][a-z0-9_-]{{0,31}})")
        if name in names[:i]:
            raise InvalidScenario(f"{where}[{i}]", f"platform {name!r} is listed twice")
    if len(names) < least:
        raise InvalidScenario(where, f"must name at least {least} platforms, got {len(names)}")
    return tuple(str(name) for name in names)


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


# ----------------------------------------------------------------------------------------------
# Planted cases (the spec side)
# ----------------------------------------------------------------------------------------------


class PlantedKind(StrEnum):
    """The kinds of planted case, as named in scenario files and in the ground truth."""

    STRUCTURING = "structuring"
    LARGE_VALUE = "large_value"
    RECONCILIATION_MISSING = "reconciliation_missing"
    RECONCILIATION_MISMATCH = "reconciliation_mismatch"


@dataclass(frozen=True, slots=True)
class StructuringRing:
    """One identity splits a large sum into parts, each under its category's threshold.

    The parts are spread round-robin over ``platforms`` (all of the scenario's when empty,
    at least two) within ``span_minutes`` (under 24 h, the AML window) of one simulated day.
    The subject is a person with accounts on every platform (a merchant for the
    ``institution`` category); each part goes to (``payer``) or comes from (``payee``) a
    different counterparty on that platform. Construction checks each part against the
    threshold and the sum against it, raising :class:`InvalidScenario`.
    """

    parts_fen: tuple[int, ...]
    direction: Direction = Direction.PAYER
    category: Category = Category.PERSON_DOMESTIC
    span_minutes: int = 360
    platforms: tuple[str, ...] = ()
    kind: ClassVar[PlantedKind] = PlantedKind.STRUCTURING

    def __post_init__(self) -> None:
        _set(self, "direction", _choice(Direction, self.direction, "direction"))
        _set(self, "category", _choice(Category, self.category, "category"))
        threshold = _AML.threshold(self.category)
        parts = [_int(part, f"parts_fen[{i}]", least=1)
                 for i, part in enumerate(_sequence(self.parts_fen, "parts_fen"))]
        for i, part in enumerate(parts):
            if part >= threshold:
                raise InvalidScenario(
                    f"parts_fen[{i}]",
                    f"{part} fen is not under the {self.category} threshold {threshold} fen "
                    "(a part at or over it is a large-value payment, not structuring)")
        least = _AML.structuring_min_payments
        if len(parts) < least:
            raise InvalidScenario("parts_fen", f"a ring needs at least {least} parts, "
                                  f"got {len(parts)}")
        total = sum(parts)
        if total < threshold:
            raise InvalidScenario(
                "parts_fen", f"the parts add up to {total} fen, under the {self.category} "
                f"threshold {threshold} fen: the ring would raise no alert")
        _set(self, "parts_fen", tuple(parts))
        _int(self.span_minutes, "span_minutes", least=1,
             most=_AML.structuring_window // timedelta(minutes=1) - 1)
        if self.platforms != ():
            _set(self, "platforms", _platform_names(self.platforms, "platforms", least=2))

    @property
    def payment_count(self) -> int:
        """The number of payments this case adds to the scenario."""
        return len(self.parts_fen)


_LARGE_VALUE_CATEGORIES: Final = (Category.PERSON_DOMESTIC, Category.PERSON_CROSS_BORDER)


@dataclass(frozen=True, slots=True)
class LargeValue:
    """One natural person's single payment at or over its category's threshold.

    The counterparty is a merchant on ``platform`` (chosen by the generator when empty), so
    ``amount_fen`` must stay under the institution threshold for the counterparty not to be
    alerted too; cash and institution categories are refused for the same reason.
    """

    amount_fen: int
    direction: Direction = Direction.PAYER
    category: Category = Category.PERSON_CROSS_BORDER
    platform: str = ""
    kind: ClassVar[PlantedKind] = PlantedKind.LARGE_VALUE

    def __post_init__(self) -> None:
        _set(self, "direction", _choice(Direction, self.direction, "direction"))
        _set(self, "category", _choice(Category, self.category, "category"))
        if self.category not in _LARGE_VALUE_CATEGORIES:
            raise InvalidScenario(
                "category", f"{self.category.value!r}: a planted large value must be "
                "person_domestic or person_cross_border (a cash or institution one would put "
                "its counterparty over a threshold too)")
        threshold = _AML.threshold(self.category)
        _int(self.amount_fen, "amount_fen", least=1)
        if self.amount_fen < threshold:
            raise InvalidScenario(
                "amount_fen", f"{self.amount_fen} fen is under the {self.category} threshold "
                f"{threshold} fen: it would raise no large-value alert")
        limit = _AML.institution_threshold_fen
        if self.amount_fen >= limit:
            raise InvalidScenario(
                "amount_fen", f"{self.amount_fen} fen would put its merchant counterparty at "
                f"the institution threshold {limit} fen too; keep it under")
        if not isinstance(self.platform, str) or (
                self.platform and not _PLATFORM_NAME.fullmatch(self.platform)):
            raise InvalidScenario("platform", f"{self.platform!r} is not a platform name")

    @property
    def payment_count(self) -> int:
        """The number of payments this case adds to the scenario."""
        return 1


def _side(value: object) -> Direction:
    return _choice(Direction, value, "side")


@dataclass(frozen=True, slots=True)
class ReconciliationMissing:
    """A cross-platform payment that one side's platform never recorded.

    ``side`` is the party whose platform's record is missing; the other platform's record
    stays, with its clearing reference. No AML effect.
    """

    side: Direction = Direction.PAYEE
    kind: ClassVar[PlantedKind] = PlantedKind.RECONCILIATION_MISSING

    def __post_init__(self) -> None:
        _set(self, "side", _side(self.side))

    @property
    def payment_count(self) -> int:
        """The number of payments this case adds to the scenario."""
        return 1


@dataclass(frozen=True, slots=True)
class ReconciliationMismatch:
    """A cross-platform payment whose two records disagree on the amount.

    ``side``'s platform records the amount plus ``delta_fen`` (non-zero, at most RMB 10,000
    either way); the other platform records the true amount. No AML effect.
    """

    side: Direction = Direction.PAYEE
    delta_fen: int = -100
    kind: ClassVar[PlantedKind] = PlantedKind.RECONCILIATION_MISMATCH

    def __post_init__(self) -> None:
        _set(self, "side", _side(self.side))
        if isinstance(self.delta_fen, bool) or not isinstance(self.delta_fen, int):
            raise InvalidScenario("delta_fen", f"must be an integer, got "
                                  f"{_describe(self.delta_fen)}")
        if self.delta_fen == 0:
            raise InvalidScenario("delta_fen", "must not be 0 (that is no mismatch)")
        if abs(self.delta_fen) > _MAX_DELTA_FEN:
            raise InvalidScenario("delta_fen", f"must lie within ±{_MAX_DELTA_FEN}, got "
                                  f"{self.delta_fen}")

    @property
    def payment_count(self) -> int:
        """The number of payments this case adds to the scenario."""
        return 1


PlantedSpec = StructuringRing | LargeValue | ReconciliationMissing | ReconciliationMismatch
_PLANTED_TYPES: Final[dict[PlantedKind, type[PlantedSpec]]] = {
    PlantedKind.STRUCTURING: StructuringRing,
    PlantedKind.LARGE_VALUE: LargeValue,
    PlantedKind.RECONCILIATION_MISSING: ReconciliationMissing,
    PlantedKind.RECONCILIATION_MISMATCH: ReconciliationMismatch,
}

DEFAULT_PLANTED: Final[tuple[PlantedSpec, ...]] = (
    # Outgoing transfers split over both platforms: RMB 585,300 against RMB 500,000.
    StructuringRing((9_800_000, 9_650_000, 9_900_000, 9_780_000, 9_520_000, 9_880_000),
                    Direction.PAYER, Category.PERSON_DOMESTIC, span_minutes=300),
    # Collection from seven payers over both platforms: RMB 550,500 against RMB 500,000.
    StructuringRing((7_950_000, 7_800_000, 8_000_000, 7_680_000, 7_990_000, 7_770_000,
                     7_860_000), Direction.PAYEE, Category.PERSON_DOMESTIC, span_minutes=480),
    # Cross-border purchases split to stay under RMB 200,000: RMB 226,500.
    StructuringRing((4_580_000, 4_420_000, 4_690_000, 4_510_000, 4_450_000),
                    Direction.PAYER, Category.PERSON_CROSS_BORDER, span_minutes=180),
    # One cross-border transfer of RMB 268,800 by a natural person.
    LargeValue(26_880_000, Direction.PAYER, Category.PERSON_CROSS_BORDER),
    ReconciliationMissing(Direction.PAYEE),
    ReconciliationMismatch(Direction.PAYEE, delta_fen=-100),
)


# ----------------------------------------------------------------------------------------------
# The spec
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """What to generate; construction validates everything and raises :class:`InvalidScenario`.

    * ``payments``: payments in the day, planted ones included (a cross-platform payment is
      one payment and two records);
    * ``day``: the simulated calendar day in Beijing time;
    * ``people`` / ``merchants``: natural persons and institutions; ``both_platforms`` of the
      people (rounded) hold an account on every platform, the others on one; every other
      merchant accepts payments on every platform;
    * ``cash``: fraction of clean payments in cash (always within one platform);
      ``cross_border``, ``cross_platform`` (payer and payee on different platforms) and
      ``person_to_person`` (the rest pay a merchant): fractions of the non-cash ones;
    * ``planted``: the planted cases, in order (:data:`DEFAULT_PLANTED` by default).
    """

    payments: int = 20_000
    seed: int = 0
    day: date = date(2026, 11, 27)
    platforms: tuple[str, ...] = ("unionpay", "wechatpay")
    people: int = 5_000
    merchants: int = 500
    both_platforms: float = 0.3
    cross_platform: float = 0.15
    person_to_person: float = 0.25
    cash: float = 0.05
    cross_border: float = 0.02
    planted: tuple[PlantedSpec, ...] = DEFAULT_PLANTED

    def __post_init__(self) -> None:
        _int(self.payments, "payments", least=1, most=_MAX_PAYMENTS)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InvalidScenario("seed", f"must be an integer, got {_describe(self.seed)}")
        if not isinstance(self.day, date) or isinstance(self.day, datetime):
            raise InvalidScenario("day", f"must be a calendar date, got {_describe(self.day)}")
        _set(self, "platforms", _platform_names(self.platforms, "platforms", least=2))
        k = len(self.platforms)
        _int(self.people, "people", least=2 * k, most=_MAX_PARTIES)
        _int(self.merchants, "merchants", least=1, most=_MAX_PARTIES)
        for name in ("both_platforms", "cross_platform", "person_to_person", "cash",
                     "cross_border"):
            _set(self, name, _fraction(getattr(self, name), name))
        planted = _sequence(self.planted, "planted")
        for i, case in enumerate(planted):
            if not isinstance(case, StructuringRing | LargeValue | ReconciliationMissing
                              | ReconciliationMismatch):
                raise InvalidScenario(f"planted[{i}]", f"is not a planted case spec: "
                                      f"{_describe(case)}")
        _set(self, "planted", planted)
        self._check_planted()

    def _check_planted(self) -> None:
        planted: tuple[PlantedSpec, ...] = self.planted
        for i, case in enumerate(planted):
            names: tuple[str, ...] = ()
            if isinstance(case, StructuringRing):
                names = case.platforms
            elif isinstance(case, LargeValue) and case.platform:
                names = (case.platform,)
            for j, name in enumerate(names):
                if name not in self.platforms:
                    where = f"planted[{i}].platforms[{j}]" if isinstance(
                        case, StructuringRing) else f"planted[{i}].platform"
                    raise InvalidScenario(where, f"{name!r} is not one of the scenario's "
                                          f"platforms ({', '.join(self.platforms)})")
        needed = sum(case.payment_count for case in planted)
        if self.payments < needed:
            raise InvalidScenario("payments", f"{self.payments} is fewer than the {needed} "
                                  "payments of the planted cases")
        rings = [c for c in planted if isinstance(c, StructuringRing)]
        person_rings = sum(1 for c in rings if c.category is not Category.INSTITUTION)
        if person_rings > self.people_on_every_platform:
            raise InvalidScenario(
                "both_platforms", f"{person_rings} structuring rings need as many people with "
                f"accounts on every platform, but {self.both_platforms} of {self.people} gives "
                f"{self.people_on_every_platform}")
        merchant_rings = len(rings) - person_rings
        if merchant_rings > self.merchants_on_every_platform:
            raise InvalidScenario(
                "merchants", f"{merchant_rings} institution rings need as many merchants on "
                f"every platform; {self.merchants} merchants give "
                f"{self.merchants_on_every_platform}")
        subjects = person_rings + sum(1 for c in planted if isinstance(c, LargeValue))
        if subjects > self.people // 2:
            raise InvalidScenario("people", f"{subjects} planted people need at least "
                                  f"{2 * subjects} people, got {self.people}")

    @property
    def people_on_every_platform(self) -> int:
        """How many people hold an account on every platform."""
        return round(self.people * self.both_platforms)

    @property
    def merchants_on_every_platform(self) -> int:
        """How many merchants accept payments on every platform (every other one)."""
        return (self.merchants + 1) // 2

    @property
    def day_start(self) -> datetime:
        """00:00 of ``day`` in Beijing time, in UTC."""
        return datetime.combine(self.day, time(0), tzinfo=BEIJING).astimezone(UTC)


# ----------------------------------------------------------------------------------------------
# Ground truth
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """One party: display name, real-name identity (ID number or credit code) and its key."""

    name: str
    identity: str
    key: bytes
    kind: PartyKind
    accounts: tuple[tuple[str, str], ...]
    """(platform, account token) for each platform the party uses, in platform order."""

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms this party has an account on."""
        return tuple(platform for platform, _ in self.accounts)

    def account_on(self, platform: str) -> str | None:
        """This party's account token on ``platform``, or ``None``."""
        return next((token for name, token in self.accounts if name == platform), None)


@dataclass(frozen=True, slots=True)
class ExpectedAlert:
    """An AML alert a planted case must raise: rule, identity, direction and exact records."""

    rule: Rule
    identity: bytes
    direction: Direction
    records: frozenset[RecordRef]


@dataclass(frozen=True, slots=True)
class PlantedCase:
    """A planted case as generated: its subject, records and the alerts it must raise.

    ``identity``/``direction``: the subject and the side it acts on (for a reconciliation
    fault, the party whose platform's record is missing or differs). ``records``: every
    record of the case. ``expected``: the alerts of the default :class:`AmlConfig` (none for
    reconciliation faults). ``clearing_ref`` is set for reconciliation faults.
    """

    kind: PlantedKind
    identity: bytes
    direction: Direction
    records: frozenset[RecordRef]
    expected: tuple[ExpectedAlert, ...]
    clearing_ref: str = ""
    detail: str = ""

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The AML rules this case must trigger, without repeats."""
        return tuple(dict.fromkeys(alert.rule for alert in self.expected))


@dataclass(frozen=True, slots=True)
class AlertMatch:
    """Alerts compared with the ground truth: found, missed and unexpected."""

    found: tuple[tuple[ExpectedAlert, Alert], ...]
    missed: tuple[ExpectedAlert, ...]
    unexpected: tuple[Alert, ...]

    @property
    def exact(self) -> bool:
        """Whether every expected alert was raised and nothing else."""
        return not self.missed and not self.unexpected


def _split_ref(ref: str) -> RecordRef:
    platform, _, local_tx_id = ref.partition("/")
    return platform, local_tx_id


@dataclass(frozen=True, eq=False)
class Scenario:
    """A generated scenario and its ground truth (treat every container as read-only).

    ``records`` maps each platform to its records in time order; ``identities`` lists the
    people, then the merchants; ``planted`` follows the spec's order.
    """

    spec: ScenarioSpec
    records: dict[str, list[PaymentRecord]]
    identities: list[Identity]
    planted: list[PlantedCase]
    _kinds: dict[str, PartyKind] = field(repr=False)
    _by_key: dict[bytes, Identity] = field(repr=False)
    _records_of: dict[bytes, frozenset[RecordRef]] = field(repr=False)

    def kinds(self, record: PaymentRecord) -> tuple[PartyKind, PartyKind]:
        """The (payer, payee) party kinds of ``record``, for ``PlatformClient.submit_records``.

        Identities outside the scenario fall back to :func:`classify_identity` (which raises
        :class:`~ledger_node.errors.InvalidIdentity` if it cannot tell).
        """
        payer = self._kinds.get(record.payer_identity)
        payee = self._kinds.get(record.payee_identity)
        return (classify_identity(record.payer_identity) if payer is None else payer,
                classify_identity(record.payee_identity) if payee is None else payee)

    def records_of(self, key: bytes) -> frozenset[RecordRef]:
        """Every record (platform, local_tx_id) where the identity ``key`` is payer or payee."""
        return self._records_of.get(key, frozenset())

    def identity(self, key: bytes) -> Identity:
        """The identity with key ``key``; raises ``KeyError`` if it is not in the scenario."""
        return self._by_key[key]

    def all_records(self) -> Iterator[tuple[str, PaymentRecord]]:
        """Every (platform, record), platform by platform in spec order."""
        for platform, records in self.records.items():
            for record in records:
                yield platform, record

    @property
    def expected_alerts(self) -> tuple[ExpectedAlert, ...]:
        """Every alert the planted cases must raise, in case order."""
        return tuple(alert for case in self.planted for alert in case.expected)

    def match_alerts(
        self, alerts: Iterable[Alert], record_of: Callable[[str], RecordRef] = _split_ref
    ) -> AlertMatch:
        """Compare ``alerts`` with :attr:`expected_alerts`, records and all.

        ``record_of`` maps an alert's evidence ref to ``(platform, local_tx_id)``; the default
        reads refs of the form ``"platform/local_tx_id"``. An alert is found when an expected
        alert has its rule, identity, direction and exactly its records.
        """
        waiting: dict[tuple[str, bytes, str, frozenset[RecordRef]], ExpectedAlert] = {
            (e.rule.value, e.identity, e.direction.value, e.records): e
            for e in self.expected_alerts
        }
        found: list[tuple[ExpectedAlert, Alert]] = []
        unexpected: list[Alert] = []
        for alert in alerts:
            key = (str(alert.rule), alert.identity, str(alert.direction),
                   frozenset(record_of(ref) for ref in alert.refs))
            expected = waiting.pop(key, None)
            if expected is None:
                unexpected.append(alert)
            else:
                found.append((expected, alert))
        return AlertMatch(tuple(found), tuple(waiting.values()), tuple(unexpected))

    def summary(self) -> dict[str, int]:
        """Counts for a report: payments, records per platform, cross-platform, cash, ..."""
        counts = {"payments": self.spec.payments, "people": self.spec.people,
                  "merchants": self.spec.merchants, "planted": len(self.planted)}
        refs: set[str] = set()
        cash = cross_border = 0
        for platform, records in self.records.items():
            counts[f"records.{platform}"] = len(records)
            for record in records:
                if record.clearing_ref:
                    refs.add(record.clearing_ref)
                cash += record.cash
                cross_border += record.cross_border
        counts["cross_platform_payments"] = len(refs)
        counts["cash_records"] = cash
        counts["cross_border_records"] = cross_border
        return counts


# ----------------------------------------------------------------------------------------------
# Synthetic identities and accounts
# ----------------------------------------------------------------------------------------------

_AREAS: Final = (
    ("110101", "北京"), ("110105", "北京"), ("110108", "北京"), ("310101", "上海"),
    ("310104", "上海"), ("310115", "上海"), ("440104", "广州"), ("440106", "广州"),
    ("440304", "深圳"), ("440305", "深圳"), ("330106", "杭州"), ("330110", "杭州"),
    ("320106", "南京"), ("320506", "苏州"), ("510107", "成都"), ("420106", "武汉"),
    ("610113", "西安"), ("500103", "重庆"), ("120101", "天津"), ("370202", "青岛"),
    ("350203", "厦门"), ("430104", "长沙"), ("410105", "郑州"), ("210102", "沈阳"),
    ("230103", "哈尔滨"), ("530102", "昆明"), ("450103", "南宁"), ("340104", "合肥"),
)
_SURNAMES: Final = tuple(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
_GIVEN: Final = tuple(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂英华玉兰萍红建国文辉鑫宇浩然晨雪婷欣怡子轩梓涵一诺佳琪思远"
)
_TRADE_NAMES: Final = tuple(
    "鑫源 恒通 华美 新世纪 佳乐 盛达 金峰 瑞丰 汇通 永兴 "
    "天润 宏图 优选 百味 晨光 嘉禾 锦程 东方 万家 星辰".split()
)
_INDUSTRIES: Final = tuple(
    "餐饮管理 商贸 便利店 超市 科技 电子商务 文化传媒 物流 服饰 大药房 跨境贸易 教育咨询".split()
)
_RESIDENT_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_USCC_CHARS: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100: no I, O, S, V, Z
_ORG_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_CHARS: Final = "0123456789ABCDEFGH"
_USCC_WEIGHTS: Final = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_BIRTH_FIRST: Final = date(1951, 1, 1).toordinal()
_BIRTH_DAYS: Final = date(2007, 12, 31).toordinal() - _BIRTH_FIRST + 1
_LUHN_DOUBLE: Final = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


_T = TypeVar("_T")


def _pick(rng: Random, items: Sequence[_T]) -> _T:
    """A uniform choice (cheaper than ``Random.choice``, and as deterministic)."""
    return items[int(rng.random() * len(items))]


def _resident_id(rng: Random) -> str:
    """A GB 11643 resident identity number: area, birth date, sequence, MOD 11-2 check."""
    born = date.fromordinal(_BIRTH_FIRST + int(rng.random() * _BIRTH_DAYS))
    body = (f"{_pick(rng, _AREAS)[0]}{born.year}{born.month:02d}{born.day:02d}"
            f"{1 + int(rng.random() * 999):03d}")
    total = sum(map(mul, map(int, body), _RESIDENT_WEIGHTS))
    return body + "10X98765432"[total % 11]


def _credit_code(rng: Random, area: str) -> str:
    """A GB 32100 unified social credit code of a company registered in ``area``."""
    # Letters only from A-H: their value is the same in GB 11714 (A=10 ... Z=35) and in the
    # GB 32100 alphabet, so the organisation-code check holds whichever a validator uses.
    if rng.random() < 0.4:
        org = "".join(_pick(rng, _ORG_CHARS) for _ in range(8))
    else:
        org = f"{int(rng.random() * 10**8):08d}"
    org_total = sum(_USCC_CHARS.index(ch) * w for ch, w in zip(org, _ORG_WEIGHTS, strict=True))
    org_check = 11 - org_total % 11
    body = "91" + area + org + {10: "X", 11: "0"}.get(org_check, str(org_check))
    total = sum(_USCC_CHARS.index(ch) * w for ch, w in zip(body, _USCC_WEIGHTS, strict=True))
    return body + _USCC_CHARS[(31 - total % 31) % 31]


def _person_name(rng: Random) -> str:
    given = _pick(rng, _GIVEN) + (_pick(rng, _GIVEN) if rng.random() < 0.7 else "")
    return _pick(rng, _SURNAMES) + given


def _luhn(digits: str) -> str:
    """The Luhn check digit of ``digits`` (bank card numbers)."""
    backwards = digits[::-1]
    total = sum(_LUHN_DOUBLE[d] for d in map(int, backwards[::2])) + sum(
        map(int, backwards[1::2]))
    return str(-total % 10)


def _digits(rng: Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n) % 10**n:0{n}d}"


def _account_token(rng: Random, platform: str, person: bool) -> str:
    """A platform-style account token: card or merchant number, open id, or a generic one."""
    if platform == "unionpay":
        if person:  # a 19-digit UnionPay card number
            body = "62" + _digits(rng, 16)
            return body + _luhn(body)
        return "898" + _digits(rng, 12)  # a 15-digit UnionPay merchant number
    if platform == "wechatpay":
        if person:  # an open id: "o" and 27 base64url characters
            return "o" + urlsafe_b64encode(rng.getrandbits(168).to_bytes(21, "big")).decode()[:27]
        return "1" + _digits(rng, 9)  # a 10-digit merchant id
    return f"{platform}-{'p' if person else 'm'}-{rng.getrandbits(64):016x}"


@dataclass
class _Parties:
    """The identities of a scenario as indices: people first, then merchants."""

    identities: list[Identity]
    platforms: list[tuple[int, ...]]  # platform indices per party
    people: int

    def is_person(self, party: int) -> bool:
        return party < self.people


def _make_parties(spec: ScenarioSpec) -> _Parties:
    rng = Random(f"jointledger-scenario/{spec.seed}/parties")
    k = len(spec.platforms)
    everywhere = tuple(range(k))
    seen: set[str] = set()
    tokens: set[str] = set()
    identities: list[Identity] = []
    platforms: list[tuple[int, ...]] = []

    def add(name: str, number: str, kind: PartyKind, plats: tuple[int, ...]) -> None:
        accounts = []
        for p in plats:
            token = _account_token(rng, spec.platforms[p], kind is PartyKind.PERSON)
            while token in tokens:
                token = _account_token(rng, spec.platforms[p], kind is PartyKind.PERSON)
            tokens.add(token)
            accounts.append((spec.platforms[p], token))
        seen.add(number)
        identities.append(Identity(name, number, identity_key(number), kind, tuple(accounts)))
        platforms.append(plats)

    both = spec.people_on_every_platform
    for i in range(spec.people):
        number = _resident_id(rng)
        while number in seen:
            number = _resident_id(rng)
        add(_person_name(rng), number, PartyKind.PERSON,
            everywhere if i < both else (i % k,))
    for i in range(spec.merchants):
        area, city = _pick(rng, _AREAS)
        number = _credit_code(rng, area)
        # A code that also reads as a resident ID would be classified as a person.
        while number in seen or is_resident_id(number):
            number = _credit_code(rng, area)
        name = f"{city}{_pick(rng, _TRADE_NAMES)}{_pick(rng, _INDUSTRIES)}有限公司"
        add(name, number, PartyKind.INSTITUTION,
            everywhere if i % 2 == 0 else ((i // 2) % k,))
    return _Parties(identities, platforms, spec.people)


# ----------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------

_CATEGORIES: Final = (Category.CASH, Category.INSTITUTION, Category.PERSON_DOMESTIC,
                      Category.PERSON_CROSS_BORDER)
_CASH, _INSTITUTION, _DOMESTIC, _CROSS_BORDER = range(4)
_CAT_INDEX: Final = {c: i for i, c in enumerate(_CATEGORIES)}
_THRESHOLDS: Final = tuple(_AML.threshold(c) for c in _CATEGORIES)
_CLEAN_CAPS: Final = tuple(t // 2 for t in _THRESHOLDS)
"""Clean traffic keeps every group's total at or under half its threshold."""
_PLANTED_CAPS: Final = tuple(t - 1 for t in _THRESHOLDS)
"""A planted case's counterparties stay under the threshold."""
_PAYER, _PAYEE = 0, 1
_SIDE: Final = {Direction.PAYER: _PAYER, Direction.PAYEE: _PAYEE}
# Relative traffic per Beijing hour 00..23.
_HOURS: Final = (2, 1.2, 0.7, 0.5, 0.5, 0.8, 1.5, 3, 5, 6, 6, 7, 9, 7, 6, 6, 6, 7, 9, 10, 9,
                 7, 5, 3)
_HOUR_US: Final = 3_600_000_000
_PURCHASE_CHANNELS: Final = (Channel.QR,) * 5 + (Channel.APP,) * 2 + (Channel.POS,) * 2 + (
    Channel.ONLINE,)
_TRANSFER_CHANNELS: Final = (Channel.TRANSFER,) * 3 + (Channel.APP,)
_CROSS_BORDER_CHANNELS: Final = (Channel.ONLINE,) * 3 + (Channel.TRANSFER,) * 2

# (time µs since the day's start, payer, payee, payer's platform, payee's platform,
#  amount on the payer's platform, amount on the payee's platform, channel, cross-border);
# an amount of 0 means that platform has no record (a planted reconciliation fault).
_Payment = tuple[int, int, int, int, int, int, int, Channel, bool]


def _cumulative(weights: Iterable[float]) -> list[float]:
    total = 0.0
    out = []
    for w in weights:
        total += w
        out.append(total)
    return out


class _Generator:
    """Draws the payments of one scenario; every random choice comes from seeded streams."""

    def __init__(self, spec: ScenarioSpec) -> None:
        self.spec = spec
        self.parties = _make_parties(spec)
        self.k = len(spec.platforms)
        self.rng = Random(f"jointledger-scenario/{spec.seed}/payments")
        n = len(self.parties.identities)
        self.used = [0] * (n * 8)  # (party * 2 + side) * 4 + category -> total fen
        self.payments: list[_Payment] = []
        people = range(spec.people)
        merchants = range(spec.people, n)
        rng = Random(f"jointledger-scenario/{spec.seed}/activity")
        activity = [rng.lognormvariate(0, 0.8) for _ in people]
        popularity = [1 / (1 + rank) ** 0.9 for rank in rng.sample(range(len(merchants)),
                                                                       len(merchants))]
        self.person_cum = _cumulative(activity)
        plats = self.parties.platforms
        self.persons_on = [[p for p in people if q in plats[p]] for q in range(self.k)]
        self.person_cum_on = [_cumulative(activity[p] for p in self.persons_on[q])
                              for q in range(self.k)]
        self.merchants_on = [[m for m in merchants if q in plats[m]] for q in range(self.k)]
        self.merchant_cum_on = [
            _cumulative(popularity[m - spec.people] for m in self.merchants_on[q])
            for q in range(self.k)]
        self.others = [[q for q in range(self.k) if q != p] for p in range(self.k)]
        self.hour_cum = _cumulative(_HOURS)
        self.subjects: set[int] = set()

    # -- drawing ------------------------------------------------------------------------------

    def _pick(self, pool: list[int], cum: list[float]) -> int:
        return pool[bisect_right(cum, self.rng.random() * cum[-1])]

    def _time(self) -> int:
        hour = bisect_right(self.hour_cum, self.rng.random() * self.hour_cum[-1])
        return hour * _HOUR_US + int(self.rng.random() * _HOUR_US)

    def _amount(self, median_fen: float, sigma: float, low: int, high: int) -> int:
        value = int(median_fen * math.exp(sigma * self.rng.gauss()))
        return min(max(value, low), high)

    def _category(self, party: int, cash: bool, cross_border: bool) -> int:
        if cash:
            return _CASH
        if not self.parties.is_person(party):
            return _INSTITUTION
        return _CROSS_BORDER if cross_border else _DOMESTIC

    def _draw(self, force_cross: bool) -> tuple[int, int, int, int, int, Channel, bool] | None:
        """One candidate payment (payer, payee, platforms, amount, channel, cross-border)."""
        spec, rng = self.spec, self.rng
        cash = not force_cross and rng.random() < spec.cash
        cross_border = not force_cross and not cash and rng.random() < spec.cross_border
        cross = force_cross or (not cash and rng.random() < spec.cross_platform)
        person = self._payer_person()
        plats = self.parties.platforms[person]
        p = _pick(rng, plats)
        q = _pick(rng, self.others[p]) if cross else p
        payer = person
        if cash:
            merchant = self._pick(self.merchants_on[p], self.merchant_cum_on[p])
            # Cash paid in at a merchant or agent, or (3 in 10) paid out by one.
            payer, payee = (person, merchant) if rng.random() < 0.7 else (merchant, person)
            amount = self._amount(30_000, 0.9, 1_000, 500_000) // 100 * 100
            channel = Channel.CASH
        elif cross_border:
            if rng.random() < 0.8:
                payee = self._pick(self.merchants_on[q], self.merchant_cum_on[q])
            else:
                payee = self._pick(self.persons_on[q], self.person_cum_on[q])
            amount = self._amount(120_000, 1.0, 1_000, 3_000_000)
            channel = _pick(rng, _CROSS_BORDER_CHANNELS)
        elif rng.random() < spec.person_to_person:
            payee = self._pick(self.persons_on[q], self.person_cum_on[q])
            amount = self._amount(20_000, 1.4, 100, 5_000_000)
            if rng.random() < 0.6:
                amount = max(amount // 100 * 100, 100)
            channel = _pick(rng, _TRANSFER_CHANNELS)
        else:
            payee = self._pick(self.merchants_on[q], self.merchant_cum_on[q])
            amount = self._amount(4_500, 1.1, 100, 2_000_000)
            channel = _pick(rng, _PURCHASE_CHANNELS)
        if payer == payee:
            return None
        return payer, payee, p, q, amount, channel, cross_border

    def _payer_person(self) -> int:
        return bisect_right(self.person_cum, self.rng.random() * self.person_cum[-1])

    def add_clean(self, fault: ReconciliationMissing | ReconciliationMismatch | None
                       = None) -> int:
        """Add one payment that keeps every group within its clean cap; return its index."""
        for _ in range(_MAX_ATTEMPTS):
            draft = self._draw(force_cross=fault is not None)
            if draft is None:
                continue
            payer, payee, p, q, amount, channel, cross_border = draft
            cash = channel is Channel.CASH
            gp = payer * 8 + self._category(payer, cash, cross_border)
            gq = payee * 8 + 4 + self._category(payee, cash, cross_border)
            room = min(_CLEAN_CAPS[gp % 4] - self.used[gp], _CLEAN_CAPS[gq % 4] - self.used[gq])
            # A cross-platform payment is recorded on both platforms; the regulator counts it
            # once (clearing key), but budgeting both copies keeps a margin.
            copies = 1 if p == q else 2
            if isinstance(fault, ReconciliationMismatch):
                amount = max(amount, -fault.delta_fen + _MIN_AMOUNT_FEN)
                wrong = amount + fault.delta_fen
                amounts = (wrong, amount) if fault.side is Direction.PAYER else (amount, wrong)
            elif isinstance(fault, ReconciliationMissing):
                amounts = (0, amount) if fault.side is Direction.PAYER else (amount, 0)
            else:
                amount = min(amount, room // copies)
                if amount < _MIN_AMOUNT_FEN:
                    continue
                amounts = (amount, amount)
            cost = sum(amounts) if p != q else amount
            if cost > room:
                continue
            self.used[gp] += cost
            self.used[gq] += cost
            self.payments.append((self._time(), payer, payee, p, q, *amounts, channel,
                                  cross_border))
            return len(self.payments) - 1
        raise InvalidScenario(
            "payments", f"{self.spec.payments} payments cannot be spread over "
            f"{self.spec.people} people and {self.spec.merchants} merchants without clean "
            "traffic reaching an AML threshold: add people or merchants")

    # -- planted cases ------------------------------------------------------------------------

    def _subject(self, pool: Sequence[int], where: str) -> int:
        free = [party for party in pool if party not in self.subjects]
        if not free:  # pragma: no cover - the spec's own checks leave enough
            raise InvalidScenario(where, "no party left to be this case's subject")
        subject = free[self.rng.randrange(len(free))]
        self.subjects.add(subject)
        return subject

    def _counterparty(self, pool: list[int], amount: int, side: int, cash: bool,
                      cross_border: bool, taken: set[int], where: str) -> int:
        """A party of ``pool`` that can take ``amount`` on ``side`` and stay under threshold."""
        start = self.rng.randrange(len(pool))
        for avoid_taken in (True, False):
            for j in range(len(pool)):
                party = pool[(start + j) % len(pool)]
                if party in self.subjects or (avoid_taken and party in taken):
                    continue
                g = party * 8 + side * 4 + self._category(party, cash, cross_border)
                if self.used[g] + amount <= _PLANTED_CAPS[g % 4]:
                    self.used[g] += amount
                    taken.add(party)
                    return party
        raise InvalidScenario(where, "no counterparty can take a part of this case without "
                              "reaching an AML threshold: add people or merchants")

    def _block(self, party: int, side: int, category: Category) -> None:
        """Keep clean traffic out of the group a planted case is about."""
        self.used[party * 8 + side * 4 + _CAT_INDEX[category]] = _THRESHOLDS[
            _CAT_INDEX[category]]

    def plant_ring(self, ring: StructuringRing, subject: int, where: str) -> list[int]:
        rng = self.rng
        names = ring.platforms or self.spec.platforms
        plats = [self.spec.platforms.index(name) for name in names]
        shift = rng.randrange(len(plats))
        side = _SIDE[ring.direction]
        self._block(subject, side, ring.category)
        cash = ring.category is Category.CASH
        cross_border = ring.category is Category.PERSON_CROSS_BORDER
        span = ring.span_minutes * 60_000_000
        start = rng.randrange(_DAY_US - span + 1)
        times = sorted(start + rng.randrange(span) for _ in ring.parts_fen)
        channel = (Channel.CASH if cash else Channel.ONLINE if cross_border
                   else Channel.TRANSFER)
        taken: set[int] = set()
        indices = []
        for j, (amount, at) in enumerate(zip(ring.parts_fen, times, strict=True)):
            p = plats[(j + shift) % len(plats)]
            pool = (self.persons_on[p] if ring.category is Category.PERSON_DOMESTIC
                    else self.merchants_on[p])
            other = self._counterparty(pool, amount, 1 - side, cash, cross_border, taken, where)
            payer, payee = (subject, other) if side == _PAYER else (other, subject)
            self.payments.append((at, payer, payee, p, p, amount, amount, channel,
                                  cross_border))
            indices.append(len(self.payments) - 1)
        return indices

    def plant_large_value(self, case: LargeValue, subject: int, where: str) -> int:
        rng = self.rng
        plats = self.parties.platforms[subject]
        p = (self.spec.platforms.index(case.platform) if case.platform
             else plats[rng.randrange(len(plats))])
        side = _SIDE[case.direction]
        self._block(subject, side, case.category)
        cross_border = case.category is Category.PERSON_CROSS_BORDER
        other = self._counterparty(self.merchants_on[p], case.amount_fen, 1 - side, False,
                                   cross_border, set(), where)
        payer, payee = (subject, other) if side == _PAYER else (other, subject)
        self.payments.append((self._time(), payer, payee, p, p, case.amount_fen,
                              case.amount_fen, Channel.TRANSFER, cross_border))
        return len(self.payments) - 1

    def subject_for(self, case: PlantedSpec, where: str) -> int | None:
        if isinstance(case, StructuringRing):
            if case.category is Category.INSTITUTION:
                pool = [m for m in range(self.spec.people, len(self.parties.identities))
                        if len(self.parties.platforms[m]) == self.k]
            else:
                pool = list(range(self.spec.people_on_every_platform))
            return self._subject(pool, where)
        if isinstance(case, LargeValue):
            if case.platform:
                return self._subject(self.persons_on[self.spec.platforms.index(case.platform)],
                                     where)
            return self._subject(range(self.spec.people), where)
        return None


@dataclass(frozen=True)
class _PlantedDraft:
    case: PlantedSpec
    subject: int | None
    payments: list[int]


# Records are built without re-running PaymentRecord's validators (about 30 µs a record):
# every value is made valid by construction, and the tests check generated records against
# the validating constructor. Fail at import if the record's fields ever change.
_RECORD_SETTERS: Final = tuple(getattr(PaymentRecord, name).__set__ for name in FIELD_NAMES)
if FIELD_NAMES != ("platform", "local_tx_id", "payer_identity", "payer_account",
                   "payee_identity", "payee_account", "amount_fen", "currency", "time",
                   "channel", "cross_border", "clearing_ref"):  # pragma: no cover
    raise ImportError("ledger_node.demo.scenario must be updated for PaymentRecord's new fields")


(_SET_PLATFORM, _SET_TX_ID, _SET_PAYER, _SET_PAYER_ACCOUNT, _SET_PAYEE, _SET_PAYEE_ACCOUNT,
 _SET_AMOUNT, _SET_CURRENCY, _SET_TIME, _SET_CHANNEL, _SET_CROSS_BORDER,
 _SET_CLEARING_REF) = _RECORD_SETTERS


def _record(platform: str, local_tx_id: str, payer: str, payer_account: str, payee: str,
            payee_account: str, amount_fen: int, when: datetime, channel: Channel,
            cross_border: bool, clearing_ref: str) -> PaymentRecord:
    """A CNY :class:`PaymentRecord` of values valid by construction, not re-validated."""
    record: PaymentRecord = object.__new__(PaymentRecord)
    _SET_PLATFORM(record, platform)
    _SET_TX_ID(record, local_tx_id)
    _SET_PAYER(record, payer)
    _SET_PAYER_ACCOUNT(record, payer_account)
    _SET_PAYEE(record, payee)
    _SET_PAYEE_ACCOUNT(record, payee_account)
    _SET_AMOUNT(record, amount_fen)
    _SET_CURRENCY(record, "CNY")
    _SET_TIME(record, when)
    _SET_CHANNEL(record, channel)
    _SET_CROSS_BORDER(record, cross_border)
    _SET_CLEARING_REF(record, clearing_ref)
    return record


def generate_scenario(spec: ScenarioSpec | None = None) -> Scenario:
    """Generate the scenario of ``spec`` (the default spec if omitted) with its ground truth.

    Deterministic in the spec. Raises :class:`InvalidScenario` when the spec cannot be met
    without clean traffic (or a planted case's counterparties) reaching an AML threshold:
    too many payments for too few people or merchants.
    """
    spec = spec if spec is not None else ScenarioSpec()
    gen = _Generator(spec)
    parties = gen.parties
    # Subjects first, so that no counterparty of one case is the subject of a later one;
    # rings first, as they need people with accounts on every platform.
    subjects: list[int | None] = [None] * len(spec.planted)
    for rings in (True, False):
        for i, case in enumerate(spec.planted):
            if isinstance(case, StructuringRing) == rings:
                subjects[i] = gen.subject_for(case, f"planted[{i}]")
    drafts: list[_PlantedDraft] = []
    for i, (case, subject) in enumerate(zip(spec.planted, subjects, strict=True)):
        where = f"planted[{i}]"
        if isinstance(case, StructuringRing):
            assert subject is not None
            indices = gen.plant_ring(case, subject, where)
        elif isinstance(case, LargeValue):
            assert subject is not None
            indices = [gen.plant_large_value(case, subject, where)]
        else:
            indices = []
        drafts.append(_PlantedDraft(case, subject, indices))
    clean = spec.payments - sum(case.payment_count for case in spec.planted)
    for _ in range(clean):
        gen.add_clean()
    for draft in drafts:  # reconciliation faults, drawn like clean cross-platform payments
        if isinstance(draft.case, ReconciliationMissing | ReconciliationMismatch):
            draft.payments.append(gen.add_clean(draft.case))
    return _assemble(spec, parties, gen.payments, drafts)


def _assemble(spec: ScenarioSpec, parties: _Parties, payments: list[_Payment],
              drafts: list[_PlantedDraft]) -> Scenario:
    """Sort into per-platform time order, number, build records and the ground truth."""
    platforms = spec.platforms
    ymd = f"{spec.day:%Y%m%d}"
    day_start = spec.day_start
    per_platform: list[list[tuple[int, int, int]]] = [[] for _ in platforms]
    crossing: list[tuple[int, int]] = []
    for index, (at, _, _, p, q, amount_p, amount_q, _, _) in enumerate(payments):
        if p == q:
            per_platform[p].append((at, index, _PAYER))
            continue
        crossing.append((at, index))
        if amount_p:
            per_platform[p].append((at, index, _PAYER))
        if amount_q:
            per_platform[q].append((at, index, _PAYEE))
    crossing.sort()
    clearing = {index: f"CR{ymd}{n:010d}" for n, (_, index) in enumerate(crossing, 1)}
    identities = parties.identities
    numbers = [identity.identity for identity in identities]
    accounts = [{platforms.index(name): token for name, token in identity.accounts}
                for identity in identities]
    refs_of: list[list[RecordRef]] = [[] for _ in identities]
    payment_refs: dict[int, list[RecordRef]] = {
        index: [] for draft in drafts for index in draft.payments}
    records: dict[str, list[PaymentRecord]] = {}
    times: dict[int, datetime] = {}
    for p, entries in enumerate(per_platform):
        name = platforms[p]
        prefix = name[:2].upper() + ymd
        entries.sort()
        out = []
        for seq, (at, index, side) in enumerate(entries, 1):
            _, payer, payee, pp, qp, amount_p, amount_q, channel, cross_border = payments[index]
            if pp == qp:
                when = day_start + timedelta(microseconds=at)
            else:  # the same time object on both platforms' records
                when = times.get(index) or times.setdefault(
                    index, day_start + timedelta(microseconds=at))
            tx_id = f"{prefix}{seq:010d}"
            out.append(_record(
                name, tx_id, numbers[payer], accounts[payer][pp], numbers[payee],
                accounts[payee][qp], amount_p if side == _PAYER else amount_q, when, channel,
                cross_border, clearing.get(index, "")))
            ref = (name, tx_id)
            refs_of[payer].append(ref)
            refs_of[payee].append(ref)
            if index in payment_refs:
                payment_refs[index].append(ref)
        records[name] = out
    planted = [_planted_case(d, identities, payments, payment_refs, clearing) for d in drafts]
    return Scenario(
        spec=spec,
        records=records,
        identities=identities,
        planted=planted,
        _kinds={identity.identity: identity.kind for identity in identities},
        _by_key={identity.key: identity for identity in identities},
        _records_of={identity.key: frozenset(refs)
                     for identity, refs in zip(identities, refs_of, strict=True)},
    )


def _planted_case(draft: _PlantedDraft, identities: list[Identity], payments: list[_Payment],
                  payment_refs: dict[int, list[RecordRef]],
                  clearing: dict[int, str]) -> PlantedCase:
    case = draft.case
    refs = [ref for index in draft.payments for ref in payment_refs[index]]
    if isinstance(case, ReconciliationMissing | ReconciliationMismatch):
        index = draft.payments[0]
        _, payer, payee, *_rest = payments[index]
        party = payer if case.side is Direction.PAYER else payee
        if isinstance(case, ReconciliationMissing):
            detail = f"the {case.side.value}'s platform has no record of this payment"
        else:
            detail = (f"the {case.side.value}'s platform records {case.delta_fen:+d} fen "
                      "against the other side")
        return PlantedCase(case.kind, identities[party].key, case.side, frozenset(refs), (),
                           clearing[index], detail)
    assert draft.subject is not None
    key = identities[draft.subject].key
    if isinstance(case, LargeValue):
        rule = Rule(f"large_value.{case.category.value}")
        expected = (ExpectedAlert(rule, key, case.direction, frozenset(refs)),)
        detail = f"one {case.category.value} payment of {case.amount_fen} fen"
        return PlantedCase(case.kind, key, case.direction, frozenset(refs), expected,
                           detail=detail)
    expected_list = [ExpectedAlert(Rule(f"structuring.{case.category.value}"), key,
                                   case.direction, frozenset(refs))]
    # A platform's share reaching the threshold on its own is also a large-value report.
    threshold = _AML.threshold(case.category)
    for platform in dict.fromkeys(ref[0] for ref in refs):
        share = [(index, ref) for index in draft.payments for ref in payment_refs[index]
                 if ref[0] == platform]
        if sum(payments[index][5] for index, _ in share) >= threshold:
            expected_list.append(ExpectedAlert(Rule(f"large_value.{case.category.value}"),
                                               key, case.direction,
                                               frozenset(ref for _, ref in share)))
    detail = (f"{len(case.parts_fen)} {case.category.value} payments as {case.direction.value}"
              f", {sum(case.parts_fen)} fen in {case.span_minutes} min")
    return PlantedCase(case.kind, key, case.direction, frozenset(refs), tuple(expected_list),
                       detail=detail)


# ----------------------------------------------------------------------------------------------
# Scenario files
# ----------------------------------------------------------------------------------------------

_SPEC_KEYS: Final = tuple(f.name for f in fields(ScenarioSpec))


def _planted_keys(kind: type[PlantedSpec]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(kind))


def _required_keys(kind: type[PlantedSpec]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(kind) if f.default is MISSING)


def _unknown_key(key: object, allowed: Sequence[str], where: str, what: str) -> InvalidScenario:
    if not isinstance(key, str):
        return InvalidScenario(where, f"keys must be strings, got {_describe(key)}")
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of {', '.join(allowed)}"
    return InvalidScenario(f"{where}.{key}", f"unknown key for {what}{hint}")


def _planted_from_document(item: object, where: str) -> PlantedSpec:
    if not isinstance(item, dict):
        raise InvalidScenario(where, f"a planted case must be a mapping, got {_describe(item)}")
    if "kind" not in item:
        raise InvalidScenario(where, "missing key 'kind' (one of "
                              f"{', '.join(k.value for k in PlantedKind)})")
    raw_kind = item["kind"]
    try:
        kind = PlantedKind(raw_kind)
    except ValueError:
        raise InvalidScenario(f"{where}.kind", f"unknown planted kind {raw_kind!r} (expected "
                              f"one of {', '.join(k.value for k in PlantedKind)})") from None
    cls = _PLANTED_TYPES[kind]
    allowed = _planted_keys(cls)
    values: dict[str, Any] = {}
    for key, value in item.items():
        if key == "kind":
            continue
        if key not in allowed:
            raise _unknown_key(key, ("kind", *allowed), where, f"a {kind.value} case")
        values[key] = value
    for key in _required_keys(cls):
        if key not in values:
            raise InvalidScenario(where, f"missing key {key!r} for a {kind.value} case")
    try:
        return cls(**values)
    except InvalidScenario as exc:
        raise InvalidScenario(f"{where}.{exc.where}", exc.reason) from None


def spec_from_document(document: object, *, source: str | None = None) -> ScenarioSpec:
    """Build a :class:`ScenarioSpec` from a parsed scenario document (see docs/scenario.md).

    Keys are the spec's field names; missing keys take their defaults (``planted`` absent
    means :data:`DEFAULT_PLANTED`, ``planted: []`` means none). ``day`` may be a date or a
    ``YYYY-MM-DD`` string. Raises :class:`InvalidScenario` whose ``where`` is a path such as
    ``$.planted[2].parts_fen[1]`` and whose message names the mistake.
    """
    try:
        return _spec_from_document(document)
    except InvalidScenario as exc:
        if source is None:
            raise
        raise InvalidScenario(exc.where, exc.reason, source=source) from None


def _spec_from_document(document: object) -> ScenarioSpec:
    if document is None:
        raise InvalidScenario("$", "the document is empty")
    if not isinstance(document, dict):
        raise InvalidScenario("$", "the document must be a mapping of scenario fields, got "
                              f"{_describe(document)}")
    values: dict[str, Any] = {}
    for key, value in document.items():
        if key not in _SPEC_KEYS:
            raise _unknown_key(key, _SPEC_KEYS, "$", "a scenario")
        values[key] = value
    day = values.get("day")
    if isinstance(day, str):
        try:
            values["day"] = date.fromisoformat(day)
        except ValueError:
            raise InvalidScenario("$.day", f"{day!r} is not a date (YYYY-MM-DD)") from None
    if "planted" in values:
        items = values["planted"]
        if not isinstance(items, list):
            raise InvalidScenario("$.planted", f"must be a list, got {_describe(items)}")
        values["planted"] = tuple(_planted_from_document(item, f"$.planted[{i}]")
                                  for i, item in enumerate(items))
    try:
        return ScenarioSpec(**values)
    except InvalidScenario as exc:
        raise InvalidScenario(f"$.{exc.where}", exc.reason) from None


class _StrictYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (which it would silently overwrite)."""


def _strict_mapping(loader: _StrictYamlLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            raise InvalidScenario(f"line {key_node.start_mark.line + 1}",
                                  f"a key must be a scalar, got {_describe(key)}") from None
        if duplicate:
            raise InvalidScenario(f"line {key_node.start_mark.line + 1}",
                                  f"duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node)


_StrictYamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                  _strict_mapping)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidScenario("$", f"duplicate key {key!r}")
        out[key] = value
    return out


def _parse(text: str, suffix: str) -> object:
    if suffix == ".json":
        try:
            return parse_json_text(text, object_pairs_hook=_json_object)
        except JsonTextRefused as refused:
            raise InvalidScenario("$", refused.reason) from None
        except json.JSONDecodeError as exc:
            raise InvalidScenario(f"line {exc.lineno}", f"not valid JSON: {exc.msg}") from None
    try:
        return yaml.load(text, Loader=_StrictYamlLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}" if mark is not None else "$"
        raise InvalidScenario(where, f"not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:  # pragma: no cover - every parser error carries a mark
        raise InvalidScenario("$", f"not valid YAML: {exc}") from None


def load_scenario_spec(path: str | Path) -> ScenarioSpec:
    """Read a scenario file (``.yaml``, ``.yml`` or ``.json``) and return its spec.

    Raises :class:`InvalidScenario` (``source`` = the path) if the file cannot be read, is
    not valid YAML/JSON, or describes an invalid spec (see :func:`spec_from_document`).
    """
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    try:
        if suffix not in (".yaml", ".yml", ".json"):
            raise InvalidScenario("$", f"unknown file type {path.suffix!r}: use .yaml, .yml "
                                  "or .json")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InvalidScenario("$", "the file is not UTF-8 text") from None
        except OSError as exc:
            raise InvalidScenario("$", f"cannot read the file: {exc.strerror}") from None
        return spec_from_document(_parse(text, suffix))
    except InvalidScenario as exc:
        raise InvalidScenario(exc.where, exc.reason, source=source) from None
