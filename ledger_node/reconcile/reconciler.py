"""Reconciliation against the chain and the nodes: keys in force, verified logs, a full run.

* **Keys in force.** :meth:`~ledger_node.chain.adapter.LedgerChain.key_history` reads a
  member's SM2 keys from the chain (the key registered now and every key a governance
  rotation replaced, with the block times of the rotations);
  :func:`pairwise_keys_in_force` derives the pairwise key of every pair of keys the two
  platforms had registered during the window (plus its grace period), with the platform's
  retired private keys, which it must keep for this.
* **Verified logs.** :class:`VerifiedLog` reads a platform's leaf summaries from any node
  (``GET /v1/logs/{log_id}/summaries``, public) up to the newest checkpoint anchored on chain
  and verifies them with the same follower as the regulator's ingest
  (:class:`~ledger_node.client.log_follower.LogFollower`): a node serving leaves that do not
  reproduce the anchored root, fewer leaves than anchored, another platform's log, or a
  checkpoint not signed with a key its platform registered is refused with
  :class:`LogVerificationFailed`. It then builds proof bundles from its own tree and the
  chain, trusting no node.
* **A run.** :func:`reconcile` puts it together in the platform's own process: its records
  (with their leaf indexes), its own log and the counterparty's, both verified, and a
  :class:`~ledger_node.protocol.reconciliation.ReconciliationReport`.
* **Across shards.** :func:`reconcile_shards` does the same for records on several own logs
  (shards) against every log of the counterparty at once (:class:`ShardLogs`): a half is
  found on whichever shard holds it. Its :class:`ShardedReport` names each item's shard.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

import httpx

from ledger_node.chain.adapter import LedgerChain, Member
from ledger_node.client.log_follower import (
    FAULT_BAD_SIGNATURE,
    FAULT_ROOT_MISMATCH,
    FAULT_UNREACHABLE,
    FAULT_WITHHELD,
    FAULT_WRONG_LOG,
    MAX_PAGE,
    AnchoredRootMismatch,
    HashChanged,
    LogFault,
    LogFollower,
    PageIncomplete,
    PageNotServed,
    RegisteredKeys,
    ServedPage,
    UnsignedCheckpoint,
    VerifiedRange,
)
from ledger_node.client.sdk import SummaryRange
from ledger_node.client.sharded import shard_number
from ledger_node.crypto import gmcrypto
from ledger_node.errors import (
    ApiError,
    InvalidLeaf,
    InvalidOpening,
    InvalidReconciliationInput,
    LogVerificationFailed,
    UnknownLeaf,
)
from ledger_node.log.checkpoint import SignedCheckpoint
from ledger_node.log.leaf import LeafSummary
from ledger_node.protocol.bundle import ChainAnchor, ProofBundle, build_bundle
from ledger_node.protocol.commitment import RecordOpening, verify_opening
from ledger_node.protocol.keys_in_force import pairwise_keys_in_force
from ledger_node.protocol.reconciliation import (
    EXCEPTIONS,
    CounterpartyTags,
    Expectation,
    LogView,
    OwnRecord,
    ReconciliationReport,
    ReportItem,
    Skipped,
    Status,
    Window,
    build_report,
    check_grace,
    expectations_for,
    match_expectations,
)
from ledger_node.protocol.record import format_time

PAGE: Final = MAX_PAGE

SHARDED_REPORT_FORMAT: Final = "jointledger/reconciliation-shards/v1"
"""The report of :func:`reconcile_shards` (``jointledger reconcile``)."""


# ---------------------------------------------------------------------------- verified logs


class SummarySource(Protocol):
    """Where a log's leaf summaries are read (a :class:`~ledger_node.client.sdk.NodeClient`)."""

    def summaries(self, log_id: bytes, start: int, end: int) -> SummaryRange:
        """Summaries ``[start, end)`` of ``log_id``."""


class VerifiedLog:
    """A platform's log read from a node and verified against the newest anchored root.

    Keeps the tree (for proof bundles), every commitment, and the summaries of tagged
    leaves indexed by match tag. :meth:`sync` reads what was anchored since; a failed sync
    raises :class:`LogVerificationFailed` and leaves the object unusable.
    """

    def __init__(self, chain: LedgerChain, platform: Member, log_id: bytes,
                 source: SummarySource, *, page: int = PAGE) -> None:
        """``platform`` owns ``log_id`` (checked on chain at each sync)."""
        if not 1 <= page <= PAGE:
            raise ValueError(f"page must be in 1..{PAGE}")
        self.chain = chain
        self.member = platform
        self.platform = platform.name
        self.log_id = log_id
        self._source = source
        self._follower: LogFollower[LeafSummary] = LogFollower(
            platform.name, platform.address, log_id,
            RegisteredKeys(chain), _summaries_data, page_size=page)
        self._commitments = bytearray()
        self._tagged: dict[int, LeafSummary] = {}
        self._by_match: dict[bytes, list[tuple[int, bytes]]] = {}
        self._checkpoint: SignedCheckpoint | None = None
        self._anchor: ChainAnchor | None = None
        self._broken: str | None = None

    @property
    def anchored_size(self) -> int:
        """How many leaves are verified (the newest anchored size at the last sync)."""
        return 0 if self._checkpoint is None else self._checkpoint.checkpoint.tree_size

    @property
    def tags(self) -> CounterpartyTags:
        """Match tag -> [(index, amount tag)] of every verified tagged leaf."""
        return self._by_match

    def _refuse(self, kind: str, detail: str) -> LogVerificationFailed:
        self._broken = f"{kind}: {detail}"
        return LogVerificationFailed(self.platform, kind, detail)

    def sync(self) -> int:
        """Read and verify the leaves anchored since the last sync; return how many.

        Raises :class:`LogVerificationFailed` (see the module docstring).
        """
        if self._broken is not None:
            raise LogVerificationFailed(self.platform, "refused", f"an earlier sync failed "
                                        f"({self._broken})")
        owner = self.chain.log_owner(self.log_id)
        latest = self.chain.latest_checkpoint(self.log_id)
        if owner is None:
            return 0  # nothing anchored yet: an empty log as far as the chain knows
        if owner.lower() != self.member.address.lower():
            raise self._refuse(FAULT_WRONG_LOG, f"log {self.log_id.hex()} belongs to {owner} "
                                                f"on chain, not {self.member.address}")
        assert latest is not None  # the log has an owner, so it has a checkpoint
        target, verified = latest.tree_size, self.anchored_size
        if target <= verified:
            return 0
        events = self.chain.events("CheckpointAnchored", logId=self.log_id,
                                   treeSize=target)
        if not events:
            raise self._refuse(FAULT_WITHHELD, f"no CheckpointAnchored event for size {target}")
        event = events[-1]
        anchor = replace(latest, signature=bytes(event.args["signature"]),
                         tx_hash=event.tx_hash)
        parts: list[VerifiedRange[LeafSummary]] = []
        try:
            self._follower.follow([anchor], self._page, parts.append)
        except LogFault as fault:
            raise self._refuse(fault.kind, _refusal_detail(fault, self.platform)) from None
        for part in parts:
            for offset, summary in enumerate(part.items):
                self._commitments += summary.commitment
                if summary.match_tag is not None and summary.amount_tag is not None:
                    index = part.start + offset
                    self._tagged[index] = summary
                    self._by_match.setdefault(summary.match_tag, []).append(
                        (index, summary.amount_tag))
        self._anchor = ChainAnchor.of(self.chain.deployment, event.tx_hash, event.block_number)
        self._checkpoint = parts[-1].checkpoint
        return target - verified

    def _page(self, start: int, end: int) -> ServedPage[LeafSummary]:
        """Summaries ``[start, end)`` as the node serves them, with whose log it says."""
        served = self._source.summaries(self.log_id, start, end)
        return ServedPage(served.summaries, served.hash_name, served.size,
                          origin=(served.platform, served.log_id),
                          served=(served.start, served.end))

    def commitment(self, index: int) -> bytes:
        """The commitment of verified leaf ``index``; :class:`UnknownLeaf` past the size."""
        if not 0 <= index < self.anchored_size:
            raise UnknownLeaf(f"leaf {index} of {self.platform} is not verified (size "
                              f"{self.anchored_size})")
        return bytes(self._commitments[32 * index:32 * index + 32])

    def match_tag(self, index: int) -> bytes | None:
        """The match tag of verified leaf ``index`` (``None`` if untagged)."""
        self.commitment(index)
        summary = self._tagged.get(index)
        return None if summary is None else summary.match_tag

    def summary(self, index: int) -> LeafSummary:
        """The summary of a verified tagged leaf (the only ones a report shows)."""
        summary = self._tagged.get(index)
        if summary is None:
            raise UnknownLeaf(f"leaf {index} of {self.platform} is not a verified tagged leaf")
        return summary

    def bundle(self, index: int) -> ProofBundle | None:
        """The proof bundle of verified tagged leaf ``index`` at the verified checkpoint."""
        assert self._checkpoint is not None and self._anchor is not None
        assert self._follower.tree is not None
        return build_bundle(self.summary(index), index, self._checkpoint, self._anchor,
                            log=self._follower.tree)

    def describe(self) -> dict[str, Any]:
        """Platform, log id, verified size and the checkpoint's root and anchoring."""
        out: dict[str, Any] = {"platform": self.platform, "log_id": self.log_id.hex(),
                               "verified_size": self.anchored_size}
        if self._checkpoint is not None and self._anchor is not None:
            out["root"] = self._checkpoint.checkpoint.root.hex()
            out["anchor"] = self._anchor.to_json()
        return out


def _summaries_data(summaries: Sequence[LeafSummary]) -> list[bytes]:
    """The bytes each summary's leaf hash is taken over."""
    return [summary.leaf_data() for summary in summaries]


def _refusal_detail(fault: LogFault, platform: str) -> str:
    """The detail :class:`LogVerificationFailed` gives for ``fault``: this module's wording
    (stable in reports, CLI output and HTTP answers) where it differs from the regulator's
    (:attr:`LogFault.detail`)."""
    if isinstance(fault, PageNotServed):
        (start, end), error = fault.page, fault.error
        if isinstance(error, ApiError):
            return (f"the node did not serve leaves [{start}, {end}) that the chain anchors: "
                    f"{error}")
        if isinstance(error, InvalidLeaf):
            return f"leaves [{start}, {end}): {error}"
        if isinstance(error, httpx.TransportError):
            return f"leaves [{start}, {end}): {type(error).__name__}: {error}"
    elif isinstance(fault, PageIncomplete) and fault.served_range is not None:
        (start, end), (served_start, served_end) = fault.page, fault.served_range
        return (f"asked for leaves [{start}, {end}), the node served {fault.served_count} "
                f"for [{served_start}, {served_end})")
    elif isinstance(fault, HashChanged):
        return f"the node now says hash {fault.now!r}, the log was read with {fault.was!r}"
    elif isinstance(fault, AnchoredRootMismatch):  # the root is over the whole log
        return (f"leaves [0, {fault.end}) as served give root {fault.computed.hex()}, the "
                f"chain anchors {fault.anchor.root.hex()} (block {fault.anchor.block_number})")
    elif isinstance(fault, UnsignedCheckpoint):
        if fault.malformed is not None:
            return str(fault.malformed)
        return f"the checkpoint at size {fault.end} is not signed by a key {platform} registered"
    return fault.detail


# ---------------------------------------------------------------------------- a run


def reconcile(
    chain: LedgerChain,
    *,
    own: Member,
    own_keys: Sequence[gmcrypto.SM2PrivateKey],
    own_log: VerifiedLog,
    counterparty: Member,
    counterparty_log: VerifiedLog,
    records: Iterable[tuple[int, RecordOpening]],
    window: Window,
    grace: timedelta | float,
    as_of: datetime | None = None,
    matched_bundles: bool = True,
) -> ReconciliationReport:
    """Reconcile ``own``'s records in ``window`` with ``counterparty``; return the report.

    ``records`` are ``(leaf index, opening)`` pairs of the platform's own records (what
    ``jointledger submit`` writes to its receipts). Both logs are synced and verified first;
    each opening must open the commitment of its anchored leaf. ``as_of`` (default now)
    decides which missing halves are still within ``grace`` after their payment time;
    without ``matched_bundles`` only findings get proof bundles. Raises
    :class:`~ledger_node.errors.InvalidWindow`, :class:`PairwiseKeyUnavailable`,
    :class:`LogVerificationFailed`, and :class:`InvalidReconciliationInput` for a record of
    another platform or one that does not open its leaf's commitment.
    """
    grace = check_grace(grace)
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    keys = pairwise_keys_in_force(chain, own, own_keys, counterparty, window.start,
                                  window.end + grace)
    own_log.sync()
    counterparty_log.sync()
    own_records = _own_records(own, own_log, records, window)
    expectations, skipped = expectations_for(own_records, keys, window,
                                             own_anchored_size=own_log.anchored_size)
    outcomes = match_expectations(expectations, counterparty_log.tags, as_of=as_of, grace=grace)
    return build_report(outcomes, own_log, counterparty_log, counterparty_name=counterparty.name,
                        window=window, grace=grace, as_of=as_of, skipped=skipped,
                        key_ids=[k.key_id for k in keys], matched_bundles=matched_bundles)


def _own_records(own: Member, own_log: VerifiedLog, records: Iterable[tuple[int, RecordOpening]],
                 window: Window) -> list[OwnRecord]:
    """``records`` (leaf index, opening) of ``own_log`` with the match tags their anchored
    leaves carry; each opening in the window must open its leaf's commitment."""
    out = []
    for index, opening in records:
        record = opening.record
        if record.platform != own.name:
            raise InvalidReconciliationInput(f"leaf {index}", f"is a record of "
                                             f"{record.platform!r}, not {own.name!r}")
        tag = None
        if 0 <= index < own_log.anchored_size and window.contains(record.time):
            try:
                verify_opening(own_log.commitment(index), opening)
            except InvalidOpening:
                raise InvalidReconciliationInput(
                    f"leaf {index}", f"record {record.local_tx_id!r} does not open the "
                    f"commitment of {own.name}'s leaf {index} in log "
                    f"{own_log.log_id.hex()[:16]}: not this log's receipt") from None
            tag = own_log.match_tag(index)
        out.append(OwnRecord(index, record, tag))
    return out


def reconcile_expectations(
    own: LogView,
    counterparty_log: VerifiedLog,
    expectations: Sequence[Expectation],
    *,
    window: Window,
    grace: timedelta | float,
    as_of: datetime | None = None,
    matched_bundles: bool = True,
) -> ReconciliationReport:
    """Match expectations the platform computed itself (tags only: the node holds neither
    records nor pairwise keys) against the verified counterparty log; the node's side of
    ``POST /v1/reconciliation``. Own leaves not yet anchored are counted as skipped."""
    grace = check_grace(grace)
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    counterparty_log.sync()
    skipped = Skipped()
    anchored = []
    for expected in expectations:
        if expected.index < own.anchored_size:
            anchored.append(expected)
        else:
            skipped.unanchored += 1
    outcomes = match_expectations(anchored, counterparty_log.tags, as_of=as_of, grace=grace)
    return build_report(outcomes, own, counterparty_log,
                        counterparty_name=counterparty_log.platform, window=window,
                        grace=grace, as_of=as_of, skipped=skipped,
                        matched_bundles=matched_bundles)


# ---------------------------------------------------------------------------- across shards


class ShardLogs:
    """A platform's verified shard logs seen as one counterparty log for matching.

    A counterparty half may sit on any shard, so the expectations are matched against the
    tags of every shard at once (a half is missing only if no shard holds it, matched if any
    shard holds it with the expected amount, and duplicates count across shards). Leaves are
    addressed by a key local to this object; :meth:`locate` turns it back into (log, index).
    """

    def __init__(self, logs: Sequence[VerifiedLog]) -> None:
        """``logs``: every shard log of one platform (at least one)."""
        if not logs:
            raise ValueError("a platform has at least one log")
        self.logs = tuple(logs)
        self.platform = logs[0].platform
        self.log_id = b""  # several logs: see :meth:`locate`
        self._where: list[tuple[VerifiedLog, int]] = []
        self._tags: dict[bytes, list[tuple[int, bytes]]] = {}

    def sync(self) -> None:
        """Sync every shard log and index their tagged leaves together."""
        for log in self.logs:
            log.sync()
        self._where = []
        self._tags = {}
        for log in self.logs:
            for match_tag, hits in log.tags.items():
                for index, amount_tag in hits:
                    self._tags.setdefault(match_tag, []).append((len(self._where), amount_tag))
                    self._where.append((log, index))

    @property
    def tags(self) -> CounterpartyTags:
        """Match tag -> [(key, amount tag)] over every shard (keys: see :meth:`locate`)."""
        return self._tags

    @property
    def anchored_size(self) -> int:
        """The verified leaves of all shards together."""
        return sum(log.anchored_size for log in self.logs)

    def locate(self, key: int) -> tuple[VerifiedLog, int]:
        """The shard log and leaf index a key of :attr:`tags` stands for."""
        return self._where[key]

    def summary(self, key: int) -> LeafSummary:
        """The summary of the leaf ``key`` stands for."""
        log, index = self.locate(key)
        return log.summary(index)

    def bundle(self, key: int) -> ProofBundle | None:
        """The proof bundle of the leaf ``key`` stands for."""
        log, index = self.locate(key)
        return log.bundle(index)

    def describe(self) -> dict[str, Any]:
        """Each shard log's description."""
        return {"platform": self.platform, "logs": [log.describe() for log in self.logs]}


@dataclass
class ShardedReport:
    """A platform's reconciliation of records on any of its shards with every shard of the
    counterparty: one :class:`ReconciliationReport` per own log, all matched against
    :class:`ShardLogs` of the counterparty."""

    platform: str
    counterparty: str
    window: Window
    grace: timedelta
    as_of: datetime
    key_ids: tuple[bytes, ...]
    parts: list[tuple[VerifiedLog, ReconciliationReport]]
    counterparty_logs: ShardLogs
    matched_bundles: bool = True

    def items(self) -> list[tuple[VerifiedLog, ReportItem]]:
        """Every own record's item with the own log it is in."""
        return [(log, item) for log, part in self.parts for item in part.items]

    def counts(self) -> dict[str, int]:
        """How many items of each status, and duplicates, over every own log."""
        out = {status.value: 0 for status in Status} | {"duplicated_on_counterparty": 0}
        for _, part in self.parts:
            for name, count in part.counts().items():
                out[name] += count
        return out

    def skipped(self) -> dict[str, int]:
        """Own records not reconciled, by reason, over every own log."""
        out = Skipped().to_json()
        for _, part in self.parts:
            for reason, count in part.skipped.to_json().items():
                out[reason] += count
        return out

    @property
    def clean(self) -> bool:
        """Whether nothing is missing or mismatched on any shard."""
        return all(part.clean for _, part in self.parts)

    def to_json(self, *, matched_bundles: bool = True) -> dict[str, Any]:
        """The report document (``format`` :data:`SHARDED_REPORT_FORMAT`): like
        ``jointledger/reconciliation/v1`` with ``own_logs`` and ``counterparty_logs`` (one
        entry per shard log, with its ``shard``) instead of one log each; every item names
        its own ``shard`` and ``log_id``, every counterparty leaf its ``shard``, ``log_id``
        and ``index``."""
        matched_bundles = matched_bundles and self.matched_bundles
        items = []
        for log, item in self.items():
            document = item.to_json(bundles=matched_bundles or item.status in EXCEPTIONS)
            for entry, (key, _, _) in zip(document["counterparty"], item.counterparty,
                                          strict=True):
                peer_log, index = self.counterparty_logs.locate(key)
                entry.update({"shard": shard_number(peer_log.platform, peer_log.log_id),
                              "log_id": peer_log.log_id.hex(), "index": index})
            items.append({"shard": shard_number(log.platform, log.log_id),
                          "log_id": log.log_id.hex()} | document)
        return {
            "format": SHARDED_REPORT_FORMAT,
            "platform": self.platform,
            "counterparty": self.counterparty,
            "window": self.window.to_json(),
            "grace_s": self.grace.total_seconds(),
            "as_of": format_time(self.as_of),
            "own_logs": [describe_shard(log) for log, _ in self.parts],
            "counterparty_logs": [describe_shard(log) for log in self.counterparty_logs.logs],
            "pairwise_keys": [key_id.hex() for key_id in self.key_ids],
            "counts": self.counts(),
            "skipped": self.skipped(),
            "clean": self.clean,
            "items": items,
        }


def describe_shard(log: VerifiedLog) -> dict[str, Any]:
    """A verified log's description with its shard number (``None`` if not found)."""
    return {"shard": shard_number(log.platform, log.log_id)} | log.describe()


def reconcile_shards(
    chain: LedgerChain,
    *,
    own: Member,
    own_keys: Sequence[gmcrypto.SM2PrivateKey],
    own_logs: Sequence[tuple[VerifiedLog, Sequence[tuple[int, RecordOpening]]]],
    counterparty: Member,
    counterparty_logs: Sequence[VerifiedLog],
    window: Window,
    grace: timedelta | float,
    as_of: datetime | None = None,
    matched_bundles: bool = True,
) -> ShardedReport:
    """Reconcile ``own``'s records, on any of its logs, with every log of ``counterparty``.

    ``own_logs`` pairs each own log with its records (``(leaf index, opening)``, as in
    :func:`reconcile`); ``counterparty_logs`` are every log of the counterparty that may
    hold a half (the caller makes sure none is left out: :class:`ShardLogs`). Every log is
    synced and verified once; raises what :func:`reconcile` raises.
    """
    grace = check_grace(grace)
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    keys = pairwise_keys_in_force(chain, own, own_keys, counterparty, window.start,
                                  window.end + grace)
    peers = ShardLogs(counterparty_logs)
    for own_log, _ in own_logs:
        own_log.sync()
    peers.sync()
    parts = []
    for own_log, records in own_logs:
        own_records = _own_records(own, own_log, records, window)
        expectations, skipped = expectations_for(own_records, keys, window,
                                                 own_anchored_size=own_log.anchored_size)
        outcomes = match_expectations(expectations, peers.tags, as_of=as_of, grace=grace)
        parts.append((own_log, build_report(
            outcomes, own_log, peers, counterparty_name=counterparty.name, window=window,
            grace=grace, as_of=as_of, skipped=skipped, key_ids=[k.key_id for k in keys],
            matched_bundles=matched_bundles)))
    return ShardedReport(own.name, counterparty.name, window, grace, as_of,
                         tuple(k.key_id for k in keys), parts, peers, matched_bundles)


__all__ = [
    "FAULT_BAD_SIGNATURE",
    "FAULT_ROOT_MISMATCH",
    "FAULT_UNREACHABLE",
    "FAULT_WITHHELD",
    "FAULT_WRONG_LOG",
    "SHARDED_REPORT_FORMAT",
    "ShardLogs",
    "ShardedReport",
    "SummarySource",
    "VerifiedLog",
    "describe_shard",
    "reconcile",
    "reconcile_expectations",
    "reconcile_shards",
]
