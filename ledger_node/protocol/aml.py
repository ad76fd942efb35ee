"""Anti-money-laundering rules over decrypted, traced payments: pure functions, no I/O.

The regulator node decrypts each record's escrow (PROTOCOL §6) into a :class:`TracedPayment`
and calls :func:`detect` on them. Two rule families, documented with their legal basis in
``docs/aml.md``:

* **Large-value transactions** (PBoC Order 〔2016〕 No. 3, Article 5): per customer, per
  natural day (UTC+8 by default), income and spending summed separately; one alert per
  (customer, direction, category, day) whose total reaches the category threshold (``>=``).
* **Cross-platform structuring**: payments of one identity (as payer, and separately as
  payee), each under its category threshold, on at least two platforms, whose sum reaches the
  threshold within a sliding window; one alert per maximal window.

Everything is deterministic: the result does not depend on the order of the input, and
alerts come out sorted. The work is O(n log n) (one sort per identity group, then linear
two-pointer scans).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Final

from ledger_node.errors import InvalidAmlConfig, InvalidRecord

Fen = int
"""An amount in the currency's minor unit (fen for CNY)."""
IdentityKey = bytes
"""An opaque identity key: the same real-name identity has the same key on every platform."""
EvidenceRef = str
"""An opaque reference to the evidence record (platform / log / leaf index)."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_DAY_US: Final = 86_400_000_000
_CURRENCY: Final = re.compile(r"[A-Z]{3}")


class PartyKind(Enum):
    """Whether a party is a natural person or an institution (非自然人客户)."""

    PERSON = "person"
    INSTITUTION = "institution"


class Direction(StrEnum):
    """Which side of the payment the alerted identity is on: spending or income."""

    PAYER = "payer"
    PAYEE = "payee"


class Category(StrEnum):
    """The PBoC Article 5 category a payment falls in, from the customer's point of view."""

    CASH = "cash"
    INSTITUTION = "institution"
    PERSON_DOMESTIC = "person_domestic"
    PERSON_CROSS_BORDER = "person_cross_border"


class Rule(StrEnum):
    """Rule names carried by :attr:`Alert.rule` (``<family>.<category>``)."""

    LARGE_CASH = "large_value.cash"
    LARGE_INSTITUTION = "large_value.institution"
    LARGE_PERSON_DOMESTIC = "large_value.person_domestic"
    LARGE_PERSON_CROSS_BORDER = "large_value.person_cross_border"
    STRUCTURING_CASH = "structuring.cash"
    STRUCTURING_INSTITUTION = "structuring.institution"
    STRUCTURING_PERSON_DOMESTIC = "structuring.person_domestic"
    STRUCTURING_PERSON_CROSS_BORDER = "structuring.person_cross_border"


_LARGE_RULE: Final = {c: Rule(f"large_value.{c.value}") for c in Category}
_STRUCTURING_RULE: Final = {c: Rule(f"structuring.{c.value}") for c in Category}


@dataclass(frozen=True, slots=True)
class TracedPayment:
    """One decrypted, traced payment as the regulator sees it.

    ``amount_fen`` is in the minor unit of ``currency``; ``time`` must carry a time zone.
    Construction raises :class:`InvalidRecord` naming the field for a value of the wrong
    type, a naive time, a non-positive amount or a malformed currency code.
    """

    ref: EvidenceRef
    platform: str
    payer_key: IdentityKey
    payee_key: IdentityKey
    payer_kind: PartyKind
    payee_kind: PartyKind
    amount_fen: Fen
    currency: str
    time: datetime
    channel: str
    cross_border: bool
    cash: bool
    clearing_key: bytes | None = None

    def __post_init__(self) -> None:
        for name, kind in (("ref", str), ("platform", str), ("payer_key", bytes),
                           ("payee_key", bytes), ("payer_kind", PartyKind),
                           ("payee_kind", PartyKind), ("currency", str), ("time", datetime),
                           ("channel", str), ("cross_border", bool), ("cash", bool)):
            if not isinstance(getattr(self, name), kind):
                raise InvalidRecord(name, f"must be {kind.__name__}, "
                                    f"got {type(getattr(self, name)).__name__}")
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise InvalidRecord("time", "must carry a time zone")
        if isinstance(self.amount_fen, bool) or not isinstance(self.amount_fen, int):
            raise InvalidRecord("amount_fen", "must be an integer")
        if self.amount_fen <= 0:
            raise InvalidRecord("amount_fen", f"must be positive, got {self.amount_fen}")
        if not _CURRENCY.fullmatch(self.currency):
            raise InvalidRecord("currency", f"{self.currency!r} is not an ISO 4217 code")
        if self.clearing_key is not None and (
                not isinstance(self.clearing_key, bytes) or len(self.clearing_key) != 32):
            raise InvalidRecord("clearing_key", "must be 32 bytes or None")


def _check_threshold(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmlConfig(name, "must be an integer number of fen")
    if value <= 0:
        raise InvalidAmlConfig(name, f"must be positive, got {value}")


@dataclass(frozen=True, slots=True)
class AmlConfig:
    """Thresholds and windows; the defaults are the PBoC 2016 large-value rules.

    * thresholds are in CNY fen and inclusive (an amount ``>=`` the threshold is reported);
    * ``day_utc_offset`` fixes the natural day of the same-day rule (UTC+8, China Standard
      Time); it must lie strictly between -24 h and +24 h;
    * ``cumulate_across_platforms``: sum a customer's day over all platforms (the
      regulator's view) instead of per platform (what each institution must report);
    * ``structuring_window``: payments ``p, q`` can share a window iff
      ``|q.time - p.time| < structuring_window`` (half-open window ``[t, t + w)``);
    * ``fen_per_unit``: optional conversion table, currency -> CNY fen per minor unit of that
      currency; currencies not listed (other than CNY) are ignored by every rule.

    Construction raises :class:`InvalidAmlConfig` naming the bad field.
    """

    cash_threshold_fen: Fen = 5_000_000
    person_domestic_threshold_fen: Fen = 50_000_000
    person_cross_border_threshold_fen: Fen = 20_000_000
    institution_threshold_fen: Fen = 200_000_000
    day_utc_offset: timedelta = timedelta(hours=8)
    cumulate_across_platforms: bool = False
    structuring_window: timedelta = timedelta(hours=24)
    structuring_min_payments: int = 3
    structuring_min_platforms: int = 2
    fen_per_unit: Mapping[str, Fraction] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )

    def __post_init__(self) -> None:
        for name in ("cash_threshold_fen", "person_domestic_threshold_fen",
                     "person_cross_border_threshold_fen", "institution_threshold_fen"):
            _check_threshold(name, getattr(self, name))
        if not isinstance(self.day_utc_offset, timedelta):
            raise InvalidAmlConfig("day_utc_offset", "must be a timedelta")
        if abs(self.day_utc_offset) >= timedelta(hours=24):
            raise InvalidAmlConfig("day_utc_offset", "must lie strictly within ±24 hours")
        if self.day_utc_offset % _US:
            raise InvalidAmlConfig("day_utc_offset", "must be a whole number of microseconds")
        if not isinstance(self.structuring_window, timedelta):
            raise InvalidAmlConfig("structuring_window", "must be a timedelta")
        if self.structuring_window <= timedelta(0):
            raise InvalidAmlConfig("structuring_window", "must be positive")
        if self.structuring_window % _US:
            raise InvalidAmlConfig("structuring_window", "must be a whole number of microseconds")
        for name, least in (("structuring_min_payments", 2), ("structuring_min_platforms", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InvalidAmlConfig(name, f"must be an integer >= {least}, got {value!r}")
        rates: dict[str, Fraction] = {}
        for code, rate in dict(self.fen_per_unit).items():
            if not isinstance(code, str) or not _CURRENCY.fullmatch(code):
                raise InvalidAmlConfig("fen_per_unit", f"{code!r} is not an ISO 4217 code")
            if code == "CNY":
                raise InvalidAmlConfig("fen_per_unit", "CNY is always 1 fen per fen")
            if isinstance(rate, bool) or not isinstance(rate, int | Fraction) or rate <= 0:
                raise InvalidAmlConfig("fen_per_unit", f"rate for {code} must be a positive "
                                       f"int or Fraction, got {rate!r}")
            rates[code] = Fraction(rate)
        object.__setattr__(self, "fen_per_unit", MappingProxyType(rates))

    def to_json(self) -> dict[str, object]:
        """JSON form (windows and offsets in seconds, rates as ``"num/den"`` strings)."""
        return {
            "cash_threshold_fen": self.cash_threshold_fen,
            "person_domestic_threshold_fen": self.person_domestic_threshold_fen,
            "person_cross_border_threshold_fen": self.person_cross_border_threshold_fen,
            "institution_threshold_fen": self.institution_threshold_fen,
            "day_utc_offset_s": self.day_utc_offset.total_seconds(),
            "cumulate_across_platforms": self.cumulate_across_platforms,
            "structuring_window_s": self.structuring_window.total_seconds(),
            "structuring_min_payments": self.structuring_min_payments,
            "structuring_min_platforms": self.structuring_min_platforms,
            "fen_per_unit": {k: str(v) for k, v in sorted(self.fen_per_unit.items())},
        }

    @classmethod
    def from_json(cls, data: object) -> AmlConfig:
        """Parse :meth:`to_json`'s form; raises :class:`InvalidAmlConfig` naming the field."""
        if not isinstance(data, dict):
            raise InvalidAmlConfig("aml_config", "must be an object")
        known = set(cls().to_json())
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidAmlConfig(unknown[0], "is not an AML setting")
        values = dict(data)
        kwargs: dict[str, object] = {}
        for name in ("day_utc_offset", "structuring_window"):
            if f"{name}_s" in values:
                seconds = values.pop(f"{name}_s")
                if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                    raise InvalidAmlConfig(name, "must be a number of seconds")
                kwargs[name] = timedelta(seconds=seconds)
        if "fen_per_unit" in values:
            rates = values.pop("fen_per_unit")
            if not isinstance(rates, dict):
                raise InvalidAmlConfig("fen_per_unit", "must be an object")
            try:
                kwargs["fen_per_unit"] = {k: Fraction(str(v)) for k, v in rates.items()}
            except (ValueError, ZeroDivisionError):
                raise InvalidAmlConfig("fen_per_unit", "rates must be numbers or fractions") \
                    from None
        kwargs.update(values)
        return cls(**kwargs)  # type: ignore[arg-type]

    def threshold(self, category: Category) -> Fen:
        """Return the inclusive CNY threshold, in fen, of ``category``."""
        if category is Category.CASH:
            return self.cash_threshold_fen
        if category is Category.INSTITUTION:
            return self.institution_threshold_fen
        if category is Category.PERSON_DOMESTIC:
            return self.person_domestic_threshold_fen
        return self.person_cross_border_threshold_fen

    def to_cny_fen(self, amount: Fen, currency: str) -> Fen | None:
        """Return ``amount`` of ``currency`` in CNY fen (rounded down), or ``None`` if unknown."""
        if currency == "CNY":
            return amount
        rate = self.fen_per_unit.get(currency)
        return None if rate is None else int(amount * rate)


def categorize(kind: PartyKind, *, cash: bool, cross_border: bool) -> Category:
    """Return the Article 5 category of a payment for a customer of ``kind``.

    Cash takes precedence (Art. 5(1) covers every customer); otherwise an institution's
    transfer is Art. 5(2) whatever its direction, a person's is 5(3) or 5(4).
    """
    if cash:
        return Category.CASH
    if kind is PartyKind.INSTITUTION:
        return Category.INSTITUTION
    return Category.PERSON_CROSS_BORDER if cross_border else Category.PERSON_DOMESTIC


@dataclass(frozen=True, slots=True)
class Alert:
    """One finding with its evidence.

    ``window_start``/``window_end`` (UTC) are the natural day ``[start, end)`` for a
    large-value alert and the times of the first and last payment for a structuring alert.
    ``platforms`` is sorted; ``refs`` are the evidence records in time order (ties by ref).
    """

    rule: str
    identity: IdentityKey
    direction: str
    total_fen: Fen
    window_start: datetime
    window_end: datetime
    platforms: tuple[str, ...]
    refs: tuple[EvidenceRef, ...]
    detail: str

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form the regulator's API and case files show (hex identity key,
        window bounds as ISO 8601 UTC)."""
        return {
            "rule": self.rule, "identity": self.identity.hex(), "direction": self.direction,
            "total_fen": self.total_fen, "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(), "platforms": list(self.platforms),
            "refs": list(self.refs), "detail": self.detail,
        }

    def sort_key(self) -> tuple[datetime, str, bytes, str, tuple[str, ...]]:
        """Return the key :func:`detect` sorts by: start, rule, identity, direction, refs."""
        return (self.window_start, self.rule, self.identity, self.direction, self.refs)


def rule_category(rule: str) -> Category:
    """The Article 5 category an alert's ``rule`` (``<family>.<category>``) is about.

    Raises ``ValueError`` for a rule name :func:`detect` does not raise.
    """
    Rule(rule)  # a ValueError for a name no rule has
    return Category(rule.partition(".")[2])


def lasting_key(alert: Alert, config: AmlConfig) -> str:
    """What stays the same while an alert grows: its name across recomputations.

    :func:`detect` raises a large-value alert per identity, direction, category, natural day
    and (unless ``config.cumulate_across_platforms``) platform, and a structuring alert per
    identity, direction, category and maximal window, which new later payments only extend.
    So the key is the rule, identity, direction, window start and, for a per-platform
    large-value alert, its platform: more payments on the same day or in the same window
    keep the key; a late payment *before* a structuring window starts a new one.
    """
    per_platform = (alert.rule.startswith("large_value.")
                    and not config.cumulate_across_platforms)
    scope = alert.platforms[0] if per_platform and alert.platforms else "*"
    return "|".join((alert.rule, alert.identity.hex(), alert.direction,
                     alert.window_start.isoformat(), scope))


# One entry per (payment, direction): (time in µs since the epoch, ref, platform, CNY fen).
_Entry = tuple[int, str, str, int]


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


_CATEGORY_ORDER: Final = (Category.CASH, Category.INSTITUTION, Category.PERSON_DOMESTIC,
                          Category.PERSON_CROSS_BORDER)
_DIRECTION_ORDER: Final = (Direction.PAYER, Direction.PAYEE)


def _each_payment_once(payments: Iterable[TracedPayment]) -> Iterator[TracedPayment]:
    """The payments, each cross-platform payment once.

    Both platforms' records of one cross-platform payment carry the same clearing key; the
    record with the smallest evidence reference stands for the payment, so the choice does
    not depend on the input order.
    """
    chosen: dict[bytes, TracedPayment] = {}
    for p in payments:
        if not isinstance(p, TracedPayment):
            raise TypeError(f"expected TracedPayment, got {type(p).__name__}")
        key = p.clearing_key
        if key is None:
            yield p
            continue
        kept = chosen.get(key)
        if kept is None or p.ref < kept.ref:
            chosen[key] = p
    yield from chosen.values()


def _group(
    payments: Iterable[TracedPayment], config: AmlConfig
) -> dict[tuple[bytes, int, int], list[_Entry]]:
    """Index entries by (identity, direction index, category index); entries unsorted.

    Small ints instead of enums as key parts: this loop runs twice per payment, and an
    enum's ``__hash__`` is Python code. The indices follow ``_DIRECTION_ORDER`` and
    ``_CATEGORY_ORDER`` and agree with :func:`categorize`.
    """
    groups: dict[tuple[bytes, int, int], list[_Entry]] = {}
    institution = PartyKind.INSTITUTION
    for p in _each_payment_once(payments):
        amount = p.amount_fen if p.currency == "CNY" else config.to_cny_fen(
            p.amount_fen, p.currency)
        if amount is None:
            continue
        if p.cash:
            payer_cat = payee_cat = 0
        else:
            transfer = 3 if p.cross_border else 2
            payer_cat = 1 if p.payer_kind is institution else transfer
            payee_cat = 1 if p.payee_kind is institution else transfer
        td = p.time - _EPOCH
        entry = ((td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds,
                 p.ref, p.platform, amount)
        key = (p.payer_key, 0, payer_cat)
        bucket = groups.get(key)
        if bucket is None:
            groups[key] = [entry]
        else:
            bucket.append(entry)
        key = (p.payee_key, 1, payee_cat)
        bucket = groups.get(key)
        if bucket is None:
            groups[key] = [entry]
        else:
            bucket.append(entry)
    return groups


def _large_value(identity: bytes, direction: Direction, category: Category,
                 entries: list[_Entry], config: AmlConfig) -> list[Alert]:
    threshold = config.threshold(category)
    offset = config.day_utc_offset // _US
    days: dict[tuple[int, str], list[_Entry]] = {}
    for entry in entries:
        scope = "" if config.cumulate_across_platforms else entry[2]
        days.setdefault(((entry[0] + offset) // _DAY_US, scope), []).append(entry)
    alerts = []
    for (day, scope), members in days.items():
        total = sum(e[3] for e in members)
        if total < threshold:
            continue
        start_us = day * _DAY_US - offset
        local = (_at(day * _DAY_US)).date().isoformat()
        where = f"on {scope}" if scope else "across platforms"
        kind = "single" if len(members) == 1 else f"{len(members)} payments cumulative"
        alerts.append(Alert(
            rule=_LARGE_RULE[category], identity=identity, direction=direction.value,
            total_fen=total, window_start=_at(start_us), window_end=_at(start_us + _DAY_US),
            platforms=tuple(sorted({e[2] for e in members})),
            refs=tuple(e[1] for e in members),
            detail=(f"{category.value} {'income' if direction is Direction.PAYEE else 'spending'}"
                    f" {total} fen >= {threshold} fen ({kind}) on natural day {local} "
                    f"(UTC{_fmt_offset(config.day_utc_offset)}) {where}"),
        ))
    return alerts


def _fmt_offset(offset: timedelta) -> str:
    minutes = offset // timedelta(minutes=1)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _structuring(identity: bytes, direction: Direction, category: Category,
                 entries: list[_Entry], config: AmlConfig) -> list[Alert]:
    threshold = config.threshold(category)
    window = config.structuring_window // _US
    small = [e for e in entries if e[3] < threshold]
    n = len(small)
    if n < config.structuring_min_payments:
        return []
    alerts = []
    per_platform: dict[str, int] = {}
    left = 0
    total = 0
    for right in range(n):
        t, _ref, platform, amount = small[right]
        total += amount
        per_platform[platform] = per_platform.get(platform, 0) + 1
        while t - small[left][0] >= window:
            gone = small[left]
            total -= gone[3]
            count = per_platform[gone[2]] - 1
            if count:
                per_platform[gone[2]] = count
            else:
                del per_platform[gone[2]]
            left += 1
        # [left, right] cannot grow to the left; it is maximal iff the next payment cannot
        # join without dropping ``left``.
        if right + 1 < n and small[right + 1][0] - small[left][0] < window:
            continue
        if (right - left + 1 >= config.structuring_min_payments
                and len(per_platform) >= config.structuring_min_platforms
                and total >= threshold):
            members = small[left:right + 1]
            alerts.append(Alert(
                rule=_STRUCTURING_RULE[category], identity=identity, direction=direction.value,
                total_fen=total, window_start=_at(members[0][0]), window_end=_at(t),
                platforms=tuple(sorted(per_platform)),
                refs=tuple(e[1] for e in members),
                detail=(f"{len(members)} {category.value} payments as {direction.value}, each "
                        f"< {threshold} fen, total {total} fen >= {threshold} fen on "
                        f"{len(per_platform)} platforms within "
                        f"{config.structuring_window / timedelta(hours=1):g} h"),
            ))
    return alerts


def detect(payments: Iterable[TracedPayment], config: AmlConfig | None = None) -> list[Alert]:
    """Run every rule over ``payments`` and return the alerts sorted by :meth:`Alert.sort_key`.

    The result does not depend on the input order. Payments in a currency that is neither
    CNY nor in ``config.fen_per_unit`` are ignored. Raises :class:`TypeError` if an item is
    not a :class:`TracedPayment`.
    """
    config = config if config is not None else AmlConfig()
    thresholds = tuple(config.threshold(c) for c in _CATEGORY_ORDER)
    alerts: list[Alert] = []
    for (identity, side, cat), entries in _group(payments, config).items():
        # Neither a day's sum nor a window's sum can exceed the group's total: most groups
        # stop here, unsorted.
        if sum([e[3] for e in entries]) < thresholds[cat]:
            continue
        entries.sort()
        direction, category = _DIRECTION_ORDER[side], _CATEGORY_ORDER[cat]
        alerts.extend(_large_value(identity, direction, category, entries, config))
        alerts.extend(_structuring(identity, direction, category, entries, config))
    alerts.sort(key=Alert.sort_key)
    return alerts
