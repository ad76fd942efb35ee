"""Cross-platform reconciliation (对账, PROTOCOL §7): windows, expectations, matching, reports.

Pure logic, no I/O. A platform reconciles its own records with one counterparty platform:

1. **Expectations.** For each of its own cross-platform records in the window (an
   :class:`OwnRecord`: the record, its leaf index and the match tag its anchored leaf carries),
   :func:`expectations_for` finds which side the record is (the own leaf's tag is the payer's
   or the payee's under one of the pairwise keys in force) and computes the tags the *other*
   half must carry under every pairwise key in force (a rotation may fall between the two
   halves' submissions).
2. **Matching.** :func:`match_expectations` looks each expected match tag up among the
   counterparty's verified leaves: found with the expected amount tag, ``matched``; found with
   another, ``amount_mismatch``; not found, ``missing`` once the grace period after the
   payment time has passed at ``as_of``, ``pending`` before (a late arrival is not missing).
3. **Report.** :func:`build_report` attaches each side's leaf and proof bundle (from a
   :class:`LogView`), so that a dispute can be settled from the ledger alone.

Each platform reports its own records missing on the other side; what is missing on its own
side shows in the other platform's report (a counterparty leaf tagged for a payment this
platform does not know is indistinguishable from one with a third platform: that is the
point of the tags).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol

from ledger_node.errors import InvalidWindow
from ledger_node.log.leaf import LeafSummary
from ledger_node.protocol.bundle import ProofBundle
from ledger_node.protocol.pairwise import PairwiseKey, Side, record_match_tags, record_tags
from ledger_node.protocol.record import PaymentRecord, format_time

REPORT_FORMAT: Final = "jointledger/reconciliation/v1"
DEFAULT_GRACE: Final = timedelta(hours=1)
MAX_WINDOW: Final = timedelta(days=31)
MAX_GRACE: Final = timedelta(days=7)


@dataclass(frozen=True)
class Window:
    """The half-open interval ``[start, end)`` of payment times to reconcile (UTC).

    Raises :class:`InvalidWindow` for a time without a zone, ``end <= start`` or a span
    longer than :data:`MAX_WINDOW`.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime):
                raise InvalidWindow(f"window {name} must be a datetime, got "
                                    f"{type(value).__name__}")
            if value.tzinfo is None or value.utcoffset() is None:
                raise InvalidWindow(f"window {name} {value.isoformat()} has no time zone")
            object.__setattr__(self, name, value.astimezone(UTC))
        if self.end <= self.start:
            raise InvalidWindow(f"window end {format_time(self.end)} is not after its start "
                                f"{format_time(self.start)}")
        if self.end - self.start > MAX_WINDOW:
            raise InvalidWindow(f"window spans {self.end - self.start}, at most {MAX_WINDOW} "
                                "is reconciled at once")

    def contains(self, when: datetime) -> bool:
        """Whether ``when`` lies in ``[start, end)``."""
        return self.start <= when < self.end

    def to_json(self) -> dict[str, str]:
        """``{"start", "end"}`` as RFC 3339 UTC."""
        return {"start": format_time(self.start), "end": format_time(self.end)}


def parse_time(text: str, what: str) -> datetime:
    """An RFC 3339 time with a zone (``Z`` or an offset); :class:`InvalidWindow` otherwise."""
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise InvalidWindow(f"{what} {text!r} is not an RFC 3339 time") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidWindow(f"{what} {text!r} has no time zone (add Z or an offset)")
    return value.astimezone(UTC)


def check_grace(grace: timedelta | float) -> timedelta:
    """``grace`` (a timedelta or seconds) if it lies in ``[0, MAX_GRACE]``; else
    :class:`InvalidWindow`."""
    if isinstance(grace, bool) or not isinstance(grace, timedelta | int | float):
        raise InvalidWindow(f"grace must be a duration, got {type(grace).__name__}")
    value = grace if isinstance(grace, timedelta) else timedelta(seconds=grace)
    if not timedelta(0) <= value <= MAX_GRACE:
        raise InvalidWindow(f"grace {value} must lie in 0..{MAX_GRACE}")
    return value


class Status(StrEnum):
    """What became of one own record."""

    MATCHED = "matched"
    AMOUNT_MISMATCH = "amount_mismatch"
    MISSING = "missing"
    PENDING = "pending"


EXCEPTIONS: Final = frozenset({Status.AMOUNT_MISMATCH, Status.MISSING})
"""The statuses that are findings (a dispute to settle)."""


@dataclass(frozen=True)
class TagPair:
    """The tags one half of a payment carries under one pairwise key."""

    match_tag: bytes
    amount_tag: bytes
    key_id: bytes = b""

    def to_json(self) -> dict[str, str]:
        """Hex form (the key id only when known)."""
        out = {"match_tag": self.match_tag.hex(), "amount_tag": self.amount_tag.hex()}
        if self.key_id:
            out["key_id"] = self.key_id.hex()
        return out


@dataclass(frozen=True)
class OwnRecord:
    """One of the platform's own records: its leaf index and the match tag that leaf
    carries (``None`` for an untagged leaf)."""

    index: int
    record: PaymentRecord
    match_tag: bytes | None


@dataclass(frozen=True)
class Expectation:
    """What the counterparty's half of an own record must carry.

    ``tags`` holds one :class:`TagPair` per pairwise key in force; ``side`` and ``record``
    are the own record's (local context, absent when only tags were supplied).
    """

    index: int
    time: datetime
    tags: tuple[TagPair, ...]
    side: Side | None = None
    record: PaymentRecord | None = None


@dataclass
class Skipped:
    """Own records that are not reconciled with this counterparty, by reason."""

    outside_window: int = 0
    unanchored: int = 0  # the own leaf is not under an anchored checkpoint yet
    not_cross_platform: int = 0  # no clearing reference
    untagged: int = 0  # a clearing reference, but the leaf carries no tags
    other_counterparty: int = 0  # tagged, but not under a key shared with this counterparty

    def to_json(self) -> dict[str, int]:
        """Counts by reason."""
        return dict(self.__dict__)


def own_side(keys: Sequence[PairwiseKey], record: PaymentRecord, leaf_tag: bytes
             ) -> tuple[Side, PairwiseKey] | None:
    """The side and key under which ``leaf_tag`` is ``record``'s match tag, if any."""
    for key in keys:
        for side, tag in record_match_tags(key, record).items():
            if tag == leaf_tag:
                return side, key
    return None


def expectations_for(own: Iterable[OwnRecord], keys: Sequence[PairwiseKey], window: Window,
                     *, own_anchored_size: int) -> tuple[list[Expectation], Skipped]:
    """The expectations of the own records in ``window`` tagged for this counterparty.

    ``keys`` are the pairwise keys in force with the counterparty. Records outside the
    window, at or past ``own_anchored_size`` (nothing about them is provable yet), without
    a clearing reference, with an untagged leaf or tagged under no key in ``keys`` are
    counted in :class:`Skipped`, not reconciled.
    """
    skipped = Skipped()
    out = []
    for item in own:
        record = item.record
        if not window.contains(record.time):
            skipped.outside_window += 1
        elif item.index >= own_anchored_size:
            skipped.unanchored += 1
        elif not record.clearing_ref:
            skipped.not_cross_platform += 1
        elif item.match_tag is None:
            skipped.untagged += 1
        else:
            found = own_side(keys, record, item.match_tag)
            if found is None:
                skipped.other_counterparty += 1
                continue
            side = found[0]
            tags = tuple(TagPair(*record_tags(key, side.other, record), key.key_id)
                         for key in keys)
            out.append(Expectation(item.index, record.time, tags, side, record))
    return out, skipped


CounterpartyTags = Mapping[bytes, Sequence[tuple[int, bytes]]]
"""The counterparty's verified tagged leaves: match tag -> [(leaf index, amount tag)]."""


@dataclass(frozen=True)
class Outcome:
    """An expectation's result: its status and the counterparty leaves carrying its match
    tag (more than one: the counterparty recorded the payment twice)."""

    expectation: Expectation
    status: Status
    found: tuple[int, ...] = ()
    key_id: bytes = b""


def match_expectations(
    expectations: Iterable[Expectation],
    counterparty: CounterpartyTags,
    *,
    as_of: datetime,
    grace: timedelta,
) -> list[Outcome]:
    """Match each expectation against the counterparty's tags (see the module docstring);
    outcomes come in the order of ``expectations``."""
    out = []
    for expected in expectations:
        outcome = None
        for pair in expected.tags:
            hits = counterparty.get(pair.match_tag)
            if not hits:
                continue
            found = tuple(index for index, _ in hits)
            status = (Status.MATCHED if any(tag == pair.amount_tag for _, tag in hits)
                      else Status.AMOUNT_MISMATCH)
            outcome = Outcome(expected, status, found, pair.key_id)
            break
        if outcome is None:
            late = as_of < expected.time + grace
            outcome = Outcome(expected, Status.PENDING if late else Status.MISSING)
        out.append(outcome)
    return out


def report_record_json(record: PaymentRecord) -> dict[str, Any]:
    """What a report shows of one of the platform's own records, in its own report only:
    its references, amount and currency (never the parties)."""
    return {"local_tx_id": record.local_tx_id, "clearing_ref": record.clearing_ref,
            "amount_fen": record.amount_fen, "currency": record.currency}


class LogView(Protocol):
    """A verified view of one platform's log: leaves and proof bundles by index."""

    platform: str
    log_id: bytes

    @property
    def anchored_size(self) -> int:
        """How many leaves are verified against an anchored root."""

    def summary(self, index: int) -> LeafSummary:
        """The summary of leaf ``index``."""

    def bundle(self, index: int) -> ProofBundle | None:
        """The proof bundle of leaf ``index`` (``None`` while it is not anchored)."""

    def describe(self) -> dict[str, Any]:
        """JSON description: platform, log id, verified size, checkpoint."""


@dataclass(frozen=True)
class ReportItem:
    """One own record's result with both sides' leaves and bundles."""

    outcome: Outcome
    own_leaf: LeafSummary
    own_bundle: ProofBundle | None
    counterparty: tuple[tuple[int, LeafSummary, ProofBundle | None], ...]

    @property
    def status(self) -> Status:
        """The outcome's status."""
        return self.outcome.status

    def to_json(self, *, bundles: bool = True) -> dict[str, Any]:
        """JSON form; without ``bundles`` the proof bundles are left out."""
        expected = self.outcome.expectation
        out: dict[str, Any] = {"status": self.status.value, "index": expected.index,
                               "time": format_time(expected.time)}
        if expected.side is not None:
            out["side"] = expected.side.value
        record = expected.record
        if record is not None:  # the platform's own data, in its own report
            out["record"] = report_record_json(record)
        if self.outcome.key_id:
            out["key_id"] = self.outcome.key_id.hex()
        out["expected"] = [pair.to_json() for pair in expected.tags]
        out["leaf"] = self.own_leaf.to_json()
        if bundles:
            out["bundle"] = None if self.own_bundle is None else self.own_bundle.to_json()
        out["counterparty"] = [
            {"index": index, "leaf": leaf.to_json()}
            | ({"bundle": None if bundle is None else bundle.to_json()} if bundles else {})
            for index, leaf, bundle in self.counterparty
        ]
        return out


@dataclass
class ReconciliationReport:
    """A platform's reconciliation with one counterparty over one window."""

    platform: str
    counterparty: str
    window: Window
    grace: timedelta
    as_of: datetime
    own_log: dict[str, Any]
    counterparty_log: dict[str, Any]
    items: list[ReportItem]
    skipped: Skipped = field(default_factory=Skipped)
    key_ids: tuple[bytes, ...] = ()
    matched_bundles: bool = True  # whether matched items carry their bundles

    def with_status(self, status: Status) -> list[ReportItem]:
        """The items of one status."""
        return [item for item in self.items if item.status is status]

    def counts(self) -> dict[str, int]:
        """How many items of each status (every status listed), and duplicates found."""
        out = {status.value: 0 for status in Status}
        for item in self.items:
            out[item.status.value] += 1
        out["duplicated_on_counterparty"] = sum(len(i.outcome.found) > 1 for i in self.items)
        return out

    @property
    def clean(self) -> bool:
        """Whether nothing is missing or mismatched."""
        return not any(item.status in EXCEPTIONS for item in self.items)

    def to_json(self, *, matched_bundles: bool = True) -> dict[str, Any]:
        """The report document (``format`` :data:`REPORT_FORMAT`).

        Findings always carry both sides' proof bundles; ``matched_bundles=False`` (or a
        report built without them) leaves them out of the other items, which keeps a large
        window's report small.
        """
        matched_bundles = matched_bundles and self.matched_bundles
        return {
            "format": REPORT_FORMAT,
            "platform": self.platform,
            "counterparty": self.counterparty,
            "window": self.window.to_json(),
            "grace_s": self.grace.total_seconds(),
            "as_of": format_time(self.as_of),
            "own_log": self.own_log,
            "counterparty_log": self.counterparty_log,
            "pairwise_keys": [key_id.hex() for key_id in self.key_ids],
            "counts": self.counts(),
            "skipped": self.skipped.to_json(),
            "clean": self.clean,
            "items": [item.to_json(bundles=matched_bundles or item.status in EXCEPTIONS)
                      for item in self.items],
        }


def build_report(
    outcomes: Sequence[Outcome],
    own: LogView,
    counterparty: LogView,
    *,
    counterparty_name: str,
    window: Window,
    grace: timedelta,
    as_of: datetime,
    skipped: Skipped | None = None,
    key_ids: Sequence[bytes] = (),
    matched_bundles: bool = True,
) -> ReconciliationReport:
    """The report of ``outcomes`` (own leaves all anchored), each with both sides' leaves
    and proof bundles (findings always; the rest only with ``matched_bundles``)."""
    items = []
    for outcome in outcomes:
        index = outcome.expectation.index
        bundles = matched_bundles or outcome.status in EXCEPTIONS
        items.append(ReportItem(
            outcome, own.summary(index), own.bundle(index) if bundles else None,
            tuple((i, counterparty.summary(i), counterparty.bundle(i) if bundles else None)
                  for i in outcome.found),
        ))
    return ReconciliationReport(own.platform, counterparty_name, window, grace, as_of,
                                own.describe(), counterparty.describe(), items,
                                skipped or Skipped(), tuple(key_ids), matched_bundles)


__all__ = [
    "DEFAULT_GRACE",
    "EXCEPTIONS",
    "MAX_GRACE",
    "MAX_WINDOW",
    "REPORT_FORMAT",
    "CounterpartyTags",
    "Expectation",
    "LogView",
    "Outcome",
    "OwnRecord",
    "ReconciliationReport",
    "ReportItem",
    "Skipped",
    "Status",
    "TagPair",
    "Window",
    "build_report",
    "check_grace",
    "expectations_for",
    "match_expectations",
    "own_side",
    "parse_time",
    "report_record_json",
]
