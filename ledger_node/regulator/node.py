"""The regulator node (PROTOCOL §6): follow the chain, verify what platforms serve, trace.

* **Follow**: read every ``CheckpointAnchored`` event since the last block scanned; each
  names the log, its owning platform, the tree size and the root.
* **Ingest**: for each log, fetch the leaves (with escrows) between the verified size and the
  newest anchored size from the platform's node, rebuild the tree and compare its root with
  **every** anchored checkpoint in the range, whose SM2 signature is checked with a key the
  platform has registered (:class:`~ledger_node.client.log_follower.LogFollower`, which
  reconciliation uses too). A range that does not reproduce its anchored root, or that the
  node does not serve in full, is refused and reported as a :class:`~ledger_node.
  regulator_store.Fault` (platform, log, range); nothing of it is indexed. Verified leaves
  are decrypted (one SM2 decryption per sealed batch) and written with the new verified
  size in one transaction, so ingest resumes where it stopped.
* **Trace**: by identity key (both sides of every payment, every platform) and by
  commitment; each record comes with a proof bundle built from the regulator's own tree
  and the checkpoint read from the chain, not from the platform.
* **AML**: :func:`ledger_node.protocol.aml.detect` over the index, each alert with its evidence.
* **Disclosures**: requests logged on chain, answers fetched from the platform node,
  checked against the digest the platform logged on chain, the commitment and the escrow.
* **Integrity** (docs/regulator.md § Integrity): at open each log's tree is built from the
  records' own data (every leaf hash recomputed and compared with the stored one:
  :class:`~ledger_node.errors.LeafDamaged`) and must give the verified root the store
  recorded and every root anchored up to it (:class:`~ledger_node.errors.TreeMismatch`
  naming the log and the first bad index otherwise): the node does not start on a damaged
  store. Every record read is checked before it is
  served (its leaf hash recomputed from its commitment, escrow and tags, and its place in
  the tree; :class:`~ledger_node.errors.LeafDamaged` otherwise). A platform that lost its
  store reads its own verified leaves back (:meth:`RegulatorNode.own_leaves`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import httpx

from ledger_node.chain.adapter import LedgerChain
from ledger_node.client.log_follower import (
    FAULT_BAD_SIGNATURE,
    FAULT_ROOT_MISMATCH,
    FAULT_UNREACHABLE,
    FAULT_WITHHELD,
    MAX_PAGE,
    LogFault,
    LogFollower,
    RegisteredKeys,
    ServedPage,
    VerifiedRange,
)
from ledger_node.client.sdk import RegulatorClient
from ledger_node.crypto import gmcrypto
from ledger_node.crypto.hashes import sm3
from ledger_node.errors import (
    DisclosureRejected,
    EscrowError,
    IngestOff,
    InvalidLeaf,
    InvalidOpening,
    LeafDamaged,
    LeafRangeUnavailable,
    LedgerError,
    TreeMismatch,
    UnknownAlert,
    UnknownLeaf,
    UnknownPlatform,
)
from ledger_node.gcpause import gc_paused
from ledger_node.log.checkpoint import Checkpoint, SignedCheckpoint
from ledger_node.log.leaf import Leaf, LeafSummary, leaves_data
from ledger_node.log.merkle import MerkleLog, bisect_roots, hash_leaves, hasher_for
from ledger_node.protocol.aml import Alert, AmlConfig, detect, lasting_key
from ledger_node.protocol.auth import regulator_node_audience
from ledger_node.protocol.bundle import ChainAnchor, ProofBundle, build_bundle
from ledger_node.protocol.commitment import RecordOpening, verify_opening
from ledger_node.protocol.disclosure import case_reference, open_disclosure_response
from ledger_node.protocol.escrow import EscrowOpener, EscrowPayload, payload_mismatches
from ledger_node.regulator.casefile import CASE_FILE_FORMAT, CaseFile, CaseReport, verify_case_file
from ledger_node.regulator.open_store import open_regulator_store
from ledger_node.regulator.store import (
    ConsoleTable,
    Fault,
    IndexedRecord,
    IngestedLeaf,
    LogState,
    RegulatorStore,
    StoredAnchor,
    StoredDisclosure,
    parse_evidence_ref,
)

log = logging.getLogger(__name__)

DEFAULT_PAGE: Final = MAX_PAGE
_CURSOR: Final = "checkpoint_block"
_PAGES_AHEAD: Final = 2  # pages fetched while one is checked (the node builds the next)

# Fault kinds (stable strings: they appear in the API and in case files). Those of a served
# log that does not match the chain are the follower's (FAULT_ROOT_MISMATCH, FAULT_WITHHELD,
# FAULT_UNREACHABLE, FAULT_BAD_SIGNATURE); these are the regulator's own.
FAULT_ESCROW: Final = "unreadable-escrow"
FAULT_ESCROW_MISMATCH: Final = "escrow-mismatch"
FAULT_NO_ENDPOINT: Final = "no-endpoint"


@dataclass(frozen=True)
class ServedLeaves:
    """Leaves ``start..start+len(leaves)`` as a platform node served them."""

    hash_name: str
    size: int
    leaves: Sequence[Leaf]


class LeafSource(Protocol):
    """Where the regulator fetches one platform's leaves and disclosure answers."""

    def fetch(self, log_id: bytes, start: int, end: int) -> ServedLeaves:
        """Leaves ``[start, end)`` of ``log_id`` with their escrows."""

    def disclosure_response(self, log_id: bytes, request_id: int) -> bytes:
        """The sealed answer to disclosure request ``request_id``."""


class HttpLeafSource:
    """A platform node reached over its HTTP API with the regulator's signed requests."""

    def __init__(self, client: RegulatorClient) -> None:
        self.client = client

    @property
    def log_id(self) -> bytes:
        """The log the node serves (read once from its ``/v1/health``; raises if unreachable).

        A platform with several shards has one node per log: the regulator routes each log
        to the node serving it by this id.
        """
        return self.client.log_id

    def fetch(self, log_id: bytes, start: int, end: int) -> ServedLeaves:
        """``GET /v1/logs/{log_id}/leaves?start&end`` (see :meth:`RegulatorClient.leaf_range`)."""
        served = self.client.leaf_range(log_id, start, end)
        return ServedLeaves(served.hash_name, served.size, served.leaves)

    def disclosure_response(self, log_id: bytes, request_id: int) -> bytes:
        """``GET /v1/disclosures/{request_id}/response``."""
        return self.client.disclosure_response(request_id)


def log_share(log_number: int, shares: int) -> int:
    """Which of ``shares`` ingest workers verifies and indexes the log the store numbers
    ``log_number`` (0-based): round robin over the order the logs were first seen, so
    ``shares`` workers get the logs evenly, and stable (a log's number never changes), so a
    restarted worker follows the same logs and a log's records are only ever written by one
    worker at a time. (Not by log id: hashing a few ids into a few shares is uneven; four
    logs put three on one of two workers here.)"""
    if shares < 1:
        raise ValueError(f"shares must be at least 1, got {shares}")
    return log_number % shares


@dataclass(frozen=True)
class IngestShare:
    """The logs one regulator process ingests: those with
    ``log_share(number, of) == index``."""

    index: int
    of: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.of:
            raise ValueError(f"ingest share {self.index} of {self.of} does not exist")

    def owns(self, log_number: int) -> bool:
        """Whether this share ingests the log numbered ``log_number`` in the store."""
        return log_share(log_number, self.of) == self.index

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.of}"


ALL_LOGS: Final = IngestShare(0, 1)
"""The one process ingests every log (SQLite; or PostgreSQL with one worker)."""


@dataclass(frozen=True)
class RegulatorConfig:
    """What a regulator node needs besides its chain, keys and platform endpoints."""

    name: str
    store_path: Path | None
    """The SQLite store's file (used unless ``store_url`` is given)."""
    page_size: int = DEFAULT_PAGE
    follow_interval: float = 1.0
    aml: AmlConfig = field(default_factory=AmlConfig)
    store_url: str | None = None
    """A ``postgresql://`` URL: the store is that database instead of ``store_path``."""

    def __post_init__(self) -> None:
        if self.store_path is None and self.store_url is None:
            raise ValueError("a regulator node needs a store: store_path or store_url")

    @property
    def store_location(self) -> Path | str:
        """Where the store is: ``store_url`` if given, else ``store_path``."""
        location = self.store_url if self.store_url is not None else self.store_path
        assert location is not None
        return location
    ingest: IngestShare | None = ALL_LOGS
    """The logs this process verifies and indexes; ``None`` for a process that ingests
    nothing (an API replica, ``--ingest off``, or a supervisor whose workers ingest). The
    trees of logs it does not ingest are read from the store as others commit to it."""
    follow_chain: bool = True
    """Whether this process reads anchored checkpoints and new logs from the chain into the
    store. Exactly one process per store does: the single node, or the supervisor of
    ingest workers; API replicas and workers read what it stored."""

    @property
    def store_writer(self) -> bool:
        """Whether this process opens the store as its one writer (holding its lock)."""
        return self.ingest is not None or self.follow_chain


@dataclass(frozen=True)
class LogProgress:
    """One log's ingest state: verified size against the newest anchored size."""

    platform: str
    log_id: bytes
    verified_size: int
    anchored_size: int
    hash_name: str

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"platform": self.platform, "log_id": self.log_id.hex(),
                "verified_size": self.verified_size, "anchored_size": self.anchored_size,
                "behind": self.anchored_size - self.verified_size, "hash": self.hash_name}


@dataclass(frozen=True)
class TracedRecord:
    """One indexed record with its proof bundle (what a trace answers)."""

    record: IndexedRecord
    bundle: ProofBundle

    def to_json(self) -> dict[str, Any]:
        """JSON form: where it is, what the escrow says (:meth:`IndexedRecord.to_json`), and
        the proof bundle."""
        return self.record.to_json() | {"bundle": self.bundle.to_json()}


@dataclass(frozen=True)
class CollectedDisclosure:
    """A verified disclosure answer: the opening, and any escrow field it contradicts."""

    request_id: int
    record: IndexedRecord
    opening: RecordOpening
    response: bytes
    escrow_mismatches: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON form: the request, the record opened, the verified opening and the escrow
        fields it contradicts (recorded as a fault too)."""
        return {"request_id": self.request_id, "ref": self.record.ref,
                "opening": self.opening.to_json(),
                "escrow_mismatches": list(self.escrow_mismatches)}


def node_audience(name: str) -> bytes:
    """The audience of requests signed for the regulator node ``name`` (as a platform
    node's log id is for its node): a request signed for one node cannot be replayed to
    another (:func:`~ledger_node.protocol.auth.regulator_node_audience`, which the SDK
    uses)."""
    return regulator_node_audience(name)


@dataclass(frozen=True)
class NumberedAlert:
    """An AML alert and its lasting number on this regulator node (from 1)."""

    id: int
    alert: Alert

    def to_json(self) -> dict[str, Any]:
        """JSON form: ``id`` first, then :meth:`Alert.to_json`."""
        return {"id": self.id} | self.alert.to_json()


class RegulatorNode:
    """A regulator's node: its store, its opener, the chain and the platform nodes."""

    def __init__(
        self,
        config: RegulatorConfig,
        chain: LedgerChain,
        keys: Sequence[gmcrypto.SM2PrivateKey],
        sources: Mapping[str, LeafSource | Sequence[LeafSource]],
    ) -> None:
        """``chain`` is bound to the deployment and sends as the regulator's account;
        ``keys`` are the regulator's SM2 keys, current and retired (old escrows stay
        readable); ``sources`` maps each platform name to its node, or to the nodes of its
        log shards (each log is read from the node whose ``log_id`` is that log's, see
        :meth:`source_for`).
        """
        if not keys:
            raise ValueError("a regulator node needs at least one SM2 key")
        self.config = config
        self.chain = chain
        self._keys = tuple(keys)
        self._opener = EscrowOpener.from_keys(*keys)
        self._sources: dict[str, list[LeafSource]] = {
            name: list(value) if isinstance(value, Sequence) else [value]
            for name, value in sources.items()}
        self.store: RegulatorStore = open_regulator_store(config.store_location,
                                                           regulator=config.name,
                                                           writer=config.store_writer)
        self._trees: dict[bytes, MerkleLog] = {}
        self._trees_lock = threading.Lock()
        self._log_numbers: dict[bytes, int] = {}
        self._ingest_lock = threading.Lock()
        self._alerts: tuple[int, list[NumberedAlert]] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self._platform_keys = RegisteredKeys(chain)
        try:
            for state in self.store.logs():
                if self.config.ingest not in (None, ALL_LOGS) and not self._ingests(
                        state.log_id):
                    continue  # another worker's log: its tree is read when first served
                tree = self._open_tree(state)
                self._check_tree(state, tree)
                self._trees[state.log_id] = tree
        except BaseException:
            self.store.close()
            raise

    @property
    def console_table(self) -> ConsoleTable:
        """Where the web console's logins live: this node's store (shared by every API
        process of it)."""
        return self.store

    # ------------------------------------------------------------------ integrity

    def _log_name(self, state: LogState) -> str:
        return f"{self.store.location} (log {state.platform}/{state.log_id.hex()})"

    def _open_tree(self, state: LogState, tree: MerkleLog | None = None) -> MerkleLog:
        """The tree of a followed log at open, built from the records' own data: each
        record's leaf hash is recomputed from its commitment, escrow and tags (the escrow
        against the digest the anchored root binds) and must be the stored one
        (:class:`LeafDamaged` naming the first that is not; :class:`TreeMismatch` if records
        are missing). O(n): one leaf encoding and two SM3 hashes per record. Given ``tree``
        (a prefix of the log) it is extended in place from its size to the verified size."""
        hasher = hasher_for(state.hash_name)
        name = self._log_name(state)
        tree = tree if tree is not None else MerkleLog(hasher)
        d = hasher.digest_size
        for first in range(tree.size, state.verified_size, MAX_PAGE):
            stop = min(state.verified_size, first + MAX_PAGE)
            rows = self.store.leaf_rows(state.log_id, first, stop)
            if [row[0] for row in rows] != list(range(first, stop)):
                missing = sorted(set(range(first, stop)) - {row[0] for row in rows})
                at = missing[0] if missing else first
                raise TreeMismatch(f"regulator store {name}: verified record {at} is missing",
                                   tree_size=state.verified_size, first_bad=at,
                                   detail="records missing")
            leaves = []
            for index, _, commitment, escrow, match_tag, amount_tag in rows:
                try:
                    leaves.append(Leaf(commitment, escrow, match_tag, amount_tag))
                except InvalidLeaf as exc:
                    raise LeafDamaged(name, index, f"the row is not a leaf: {exc}") from None
            hashes = hash_leaves(hasher, leaves_data(leaves))
            if hashes != b"".join(row[1] for row in rows):
                offset = next(i for i, row in enumerate(rows)
                              if hashes[i * d:(i + 1) * d] != row[1])
                raise LeafDamaged(name, first + offset, "its leaf hash recomputed from its "
                                  "commitment, escrow and tags is not the stored one")
            tree.extend_leaf_hashes(hashes[i:i + d] for i in range(0, len(hashes), d))
        return tree

    def _check_tree(self, state: LogState, tree: MerkleLog) -> None:
        """``tree`` must hold the verified size and give the verified root and every
        anchored root up to it; raise :class:`TreeMismatch` naming the first bad index
        otherwise (found by bisecting the anchored roots, then re-checking the rows between
        the last good and the first bad one)."""
        name = self._log_name(state)
        size = state.verified_size
        if tree.size != size:
            raise TreeMismatch(f"regulator store {name} holds {tree.size} verified leaves but "
                               f"records a verified size of {size}", tree_size=size,
                               first_bad=min(tree.size, size), detail="leaves lost")
        trusted = [(a.tree_size, a.root) for a in self.store.anchors(state.log_id)
                   if a.tree_size <= size]
        if size and state.verified_root is not None:
            trusted.append((size, state.verified_root))
        anchored = dict(trusted)
        if all(tree.root(at) == root for at, root in anchored.items()):
            return
        good, bad = bisect_roots(tree, list(anchored.items()))
        first = self._first_bad_row(state, tree, good, bad)
        where = (f"first bad index {first[0]}: {first[1]}" if first is not None else
                 f"the leaves {good}..{bad - 1} agree with their leaf hashes but do not give "
                 "the root: they were replaced")
        raise TreeMismatch(f"regulator store {name}: the stored leaves do not produce the "
                           f"root anchored at size {bad}; {where}", tree_size=bad,
                           first_bad=first[0] if first is not None else good,
                           detail=first[1] if first is not None else "replaced")

    def _first_bad_row(self, state: LogState, tree: MerkleLog, start: int,
                       stop: int) -> tuple[int, str] | None:
        """The first record in ``[start, stop)`` whose data, leaf hash and tree digest
        disagree, read 10,000 at a time."""
        for first in range(start, stop, MAX_PAGE):
            for record in self.store.records(state.log_id, first, min(stop, first + MAX_PAGE)):
                try:
                    self._check_record(record, tree)
                except LeafDamaged as exc:
                    return exc.index, exc.reason
        return None

    def _ingests(self, log_id: bytes) -> bool:
        """Whether this process verifies and indexes ``log_id`` itself (so its tree is the
        one ingest extends, not one read back from the store)."""
        share = self.config.ingest
        if share is None or share.of == 1:
            return share is not None
        number = self._log_numbers.get(log_id)
        if number is None:
            state = self.store.log(log_id)
            if state is None:
                return False
            number = self._log_numbers[log_id] = state.number
        return share.owns(number)

    def _tree(self, log_id: bytes) -> MerkleLog | None:
        """The verified tree of ``log_id`` to serve from, or ``None`` if it is not followed.

        A log another process ingests (this one is an API replica, a supervisor or another
        log's worker) has its tree brought up to the verified size the store holds now:
        the new records are checked as at open (leaf hashes recomputed, the verified root
        and every anchored root reproduced), so a replica serves nothing it has not
        checked. Records and verified size are committed together, so the size read first
        never runs ahead of the records read after it.
        """
        if self._ingests(log_id):
            return self._trees.get(log_id)
        with self._trees_lock:
            tree = self._trees.get(log_id)
            state = self.store.log(log_id)
            if state is None:
                return tree
            if tree is None or tree.size < state.verified_size:
                since = 0 if tree is None else tree.size
                self._trees.pop(log_id, None)  # not served from until the new part is checked
                tree = self._open_tree(state, tree)
                # the roots up to ``since`` were checked before: only the new ones now (a
                # log anchors every sealed batch, so a large log has thousands); on any
                # mismatch the whole check names the first bad leaf
                new = [(a.tree_size, a.root) for a in self.store.anchors(log_id, above=since)
                       if a.tree_size <= state.verified_size]
                if state.verified_root is not None:
                    new.append((state.verified_size, state.verified_root))
                if not all(tree.root(at) == root for at, root in new):
                    self._check_tree(state, tree)
                self._trees[log_id] = tree
            return tree

    def _check_record(self, record: IndexedRecord, tree: MerkleLog | None = None
                      ) -> IndexedRecord:
        """``record`` if its leaf hash, recomputed from its commitment, escrow and tags, is
        the stored one and the tree holds it at its index; else :class:`LeafDamaged`."""
        tree = tree if tree is not None else self._tree(record.log_id)
        state_name = f"{self.store.location} (log {record.platform}/{record.log_id.hex()})"
        try:
            leaf = record.leaf
        except InvalidLeaf as exc:
            raise LeafDamaged(state_name, record.index, f"the row is not a leaf: {exc}"
                              ) from None
        if tree is None:
            raise LeafDamaged(state_name, record.index, "its log is not followed")
        mine = tree.hasher.hash_leaf(leaves_data([leaf])[0])
        if mine != record.leaf_hash:
            raise LeafDamaged(state_name, record.index,
                              f"its leaf hash recomputed from its commitment, escrow and tags "
                              f"is {mine.hex()}, the stored one {record.leaf_hash.hex()}")
        if record.index >= tree.size or tree.leaf_hash(record.index) != record.leaf_hash:
            raise LeafDamaged(state_name, record.index, "its stored leaf hash is not the one "
                              "the verified tree holds at its index")
        return record

    def _checked(self, records: Iterable[IndexedRecord]) -> list[IndexedRecord]:
        return [self._check_record(r) for r in records]

    def own_leaves(self, log_id: bytes, start: int, end: int) -> tuple[LogState, list[Leaf]]:
        """Verified leaves ``[start, end)`` of ``log_id`` with their escrows, each checked:
        what the platform owning the log reads back to restore a lost or damaged store
        (``jointledger fsck --repair-from``). Raises :class:`UnknownPlatform` for a log not
        followed, :class:`LeafRangeUnavailable` past the verified size."""
        state = self.store.log(log_id)
        if state is None:
            raise UnknownPlatform(f"log {log_id.hex()} is not followed by this regulator")
        if end > state.verified_size:
            raise LeafRangeUnavailable(start, end, state.verified_size)
        records = self._checked(self.store.records(log_id, start, end))
        return state, [r.leaf for r in records]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Follow the chain and ingest in a background thread every ``follow_interval`` s
        (what this process's config gives it to do: nothing for an API replica)."""
        if self._thread is not None or not self.config.store_writer:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._follow_loop, name="regulator-follow",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following and close the store."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.store.close()

    def __enter__(self) -> RegulatorNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _follow_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
                self.last_error = None
            except Exception as exc:  # keep following; the status shows the error
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("regulator sync failed: %s", self.last_error)
            self._stop.wait(self.config.follow_interval)

    # ------------------------------------------------------------------ follow + ingest

    def sync(self) -> int:
        """Read new checkpoints from the chain, then ingest this process's logs (every log,
        unless it is one of several ingest workers); return leaves added.

        Raises :class:`IngestOff` in a process that does neither (an API replica).
        """
        if not self.config.store_writer:
            raise IngestOff(f"regulator {self.config.name}: this process serves the store "
                            "only (--ingest off); its ingest process follows the logs")
        with self._ingest_lock:
            if self.config.follow_chain:
                self.follow_chain()
            share = self.config.ingest
            if share is None:
                return 0
            added = 0
            for state in self.store.logs():
                if share.owns(state.number):
                    if state.log_id not in self._trees:  # a new log the supervisor stored
                        self._trees[state.log_id] = self._open_tree(state)
                    added += self._ingest_log(state)
            return added

    def follow_chain(self) -> int:
        """Store the checkpoints anchored since the last scan; return how many were new."""
        return self._follow_chain()

    def _follow_chain(self) -> int:
        head = self.chain.block_number()
        start = self.store.follow_value(_CURSOR, self.chain.deployment.deploy_block - 1) + 1
        if start > head:
            return 0
        events = self.chain.events("CheckpointAnchored", start, to_block=head)
        times: dict[int, int] = {}
        anchors = []
        for event in events:
            log_id = bytes(event.args["logId"])
            if self.store.log(log_id) is None:
                owner = str(event.args["platform"])
                member = self.chain.member(owner)
                self.store.ensure_log(log_id, member.name, owner, "sm3")
                if self._ingests(log_id):
                    self._trees[log_id] = MerkleLog(hasher_for("sm3"))
            if event.block_number not in times:
                times[event.block_number] = self.chain.block_time(event.block_number)
            assert event.tx_hash is not None
            anchors.append(StoredAnchor(
                log_id, int(event.args["treeSize"]), bytes(event.args["root"]),
                int(event.args["timestamp"]), bytes(event.args["signature"]), event.tx_hash,
                event.block_number, times[event.block_number]))
        self.store.save_anchors(anchors, (_CURSOR, head))
        return len(anchors)

    def _rebuild_tree(self, state: LogState) -> MerkleLog:
        tree = MerkleLog(hasher_for(state.hash_name))
        tree.extend_leaf_hashes(self.store.leaf_hashes(state.log_id))
        return tree

    def _fault(self, state: LogState, start: int, end: int, kind: str, detail: str) -> None:
        log.warning("refused %s log %s [%d, %d): %s: %s", state.platform,
                    state.log_id.hex()[:16], start, end, kind, detail)
        self.store.record_fault(state.platform, state.log_id, start, end, kind, detail)

    def source_for(self, platform: str, log_id: bytes) -> LeafSource | None:
        """The configured source of ``platform`` that serves ``log_id``, or ``None``.

        A source naming its log (a ``log_id`` attribute, e.g. :class:`HttpLeafSource`, which
        reads it from the node's health document) serves that log only; one that names none,
        or whose node cannot be asked now, is tried for a log no other source claims (its
        fetch then fails as ``unreachable`` rather than ``no-endpoint``).
        """
        fallback: LeafSource | None = None
        for source in self._sources.get(platform, []):
            try:
                served = getattr(source, "log_id", None)
            except (LedgerError, httpx.HTTPError, KeyError, ValueError):
                served = None
            if served is None:
                fallback = fallback or source
            elif served == log_id:
                return source
        return fallback

    def _ingest_log(self, state: LogState) -> int:
        """Ingest ``state``'s log up to its newest anchored checkpoint; return leaves added.

        The log's :class:`~ledger_node.client.log_follower.LogFollower` fetches pages ahead
        (the platform node builds the next page while this one is checked) and checks every
        anchored checkpoint each page reaches (root, then signature); everything up to the
        last good checkpoint of a page is committed at once. A fault is recorded and stops
        the log's ingest for this round.
        """
        anchors = self.store.anchors(state.log_id, above=state.verified_size)
        if not anchors:
            return 0
        source = self.source_for(state.platform, state.log_id)
        if source is None:
            self._fault(state, state.verified_size, anchors[-1].tree_size, FAULT_NO_ENDPOINT,
                        f"no configured node of platform {state.platform!r} serves log "
                        f"{state.log_id.hex()}")
            return 0
        follower: LogFollower[Leaf] = LogFollower(
            state.platform, state.platform_address, state.log_id, self._platform_keys,
            leaves_data, tree=self._trees[state.log_id], page_size=self.config.page_size,
            ahead=_PAGES_AHEAD, on_new_tree=lambda tree: self._new_tree(state.log_id, tree))
        added = 0

        def commit(verified: VerifiedRange[Leaf]) -> None:
            nonlocal added
            self._commit(state, verified.start, verified.items, verified.leaf_hashes,
                         verified.anchor.root)
            added += len(verified.items)

        def fetch(start: int, end: int) -> ServedPage[Leaf]:
            served = source.fetch(state.log_id, start, end)
            return ServedPage(served.leaves, served.hash_name, served.size)

        with gc_paused():
            try:
                follower.follow(anchors, fetch, commit)
            except LogFault as fault:
                self._discard(state, follower)
                self._fault(state, fault.start, fault.end, fault.kind, fault.detail)
        return added

    def _new_tree(self, log_id: bytes, tree: MerkleLog) -> None:
        """The node names another hash than assumed for a log with nothing verified yet:
        trace with the follower's new tree and remember the hash."""
        self._trees[log_id] = tree
        self.store.set_hash_name(log_id, tree.hasher.name)

    def _discard(self, state: LogState, follower: LogFollower[Leaf]) -> None:
        """Forget unverified leaves: rebuild the tree from the store (a rare, refused case)."""
        tree = follower.tree
        if tree is not None and tree.size > follower.verified_size:
            fresh = self.store.log(state.log_id)
            assert fresh is not None
            self._trees[state.log_id] = self._rebuild_tree(fresh)

    def _commit(self, state: LogState, start: int, leaves: Sequence[Leaf],
                hashes: Sequence[bytes], root: bytes) -> None:
        """Decrypt a verified range and write it with its verified root in one transaction."""
        ingested = []
        bad: list[tuple[int, str]] = []
        for offset, (leaf, leaf_hash) in enumerate(zip(leaves, hashes, strict=True)):
            index = start + offset
            payment: EscrowPayload | None = None
            if not leaf.escrow:
                bad.append((index, "the leaf carries no escrow"))
            else:
                try:
                    payment = self._opener.open(leaf.escrow, leaf.commitment)
                except EscrowError as exc:
                    bad.append((index, f"{type(exc).__name__}: {exc}"))
            ingested.append(IngestedLeaf(index, leaf_hash, leaf.commitment, leaf.escrow,
                                         leaf.match_tag, leaf.amount_tag, payment))
        self.store.append_verified(state.log_id, start, ingested, root)
        for index, reason in bad:
            self._fault(state, index, index + 1, FAULT_ESCROW,
                        f"leaf {index} is anchored but its escrow cannot be read: {reason}")

    # ------------------------------------------------------------------ status

    def progress(self) -> list[LogProgress]:
        """Every followed log's verified and anchored size."""
        out = []
        for state in self.store.logs():
            latest = self.store.anchors(state.log_id, above=state.verified_size)
            anchored = latest[-1].tree_size if latest else state.verified_size
            out.append(LogProgress(state.platform, state.log_id, state.verified_size, anchored,
                                   state.hash_name))
        return out

    def logs(self) -> list[LogState]:
        """Every followed log's state, as the store holds it."""
        return self.store.logs()

    def log_state(self, log_id: bytes) -> LogState | None:
        """The state of followed log ``log_id``, or ``None`` if it is not followed."""
        return self.store.log(log_id)

    def all_anchors(self) -> list[StoredAnchor]:
        """Every anchored checkpoint read from the chain, of every log."""
        return self.store.all_anchors()

    def record_count(self) -> int:
        """How many records are indexed."""
        return self.store.record_count()

    def faults(self) -> list[Fault]:
        """Every fault recorded against a platform's log."""
        return self.store.faults()

    def disclosure(self, request_id: int) -> StoredDisclosure | None:
        """The disclosure request ``request_id`` this regulator made, if any."""
        return self.store.disclosure(request_id)

    def disclosures(self) -> list[StoredDisclosure]:
        """Every disclosure request this regulator made."""
        return self.store.disclosures()

    @property
    def sm2_decryptions(self) -> int:
        """SM2 decryptions so far (one per sealed batch, not per record)."""
        return self._opener.sm2_decryptions

    # ------------------------------------------------------------------ trace

    def bundle_for(self, record: IndexedRecord) -> ProofBundle:
        """The proof bundle of ``record`` at its log's verified checkpoint (from the chain),
        after the record passed its check (:class:`LeafDamaged` otherwise)."""
        return self._bundle(record, *self._verified_checkpoint(record.log_id))

    def _verified_checkpoint(self, log_id: bytes
                             ) -> tuple[SignedCheckpoint, ChainAnchor, MerkleLog]:
        """``log_id``'s checkpoint at its verified size, where it was anchored, and the tree
        to prove against. The size is read before the tree, which is brought at least to
        it (an ingest process may commit in between): the tree always holds the
        checkpoint."""
        state = self.store.log(log_id)
        tree = self._tree(log_id)
        assert state is not None and tree is not None and tree.size >= state.verified_size
        anchor = self.store.anchor_at(log_id, state.verified_size)
        assert anchor is not None
        checkpoint = Checkpoint(state.platform, log_id, anchor.tree_size, anchor.root,
                                anchor.timestamp, state.hash_name)
        return (SignedCheckpoint(checkpoint, anchor.signature),
                ChainAnchor.of(self.chain.deployment, anchor.tx_hash, anchor.block_number),
                tree)

    def _bundle(self, record: IndexedRecord, checkpoint: SignedCheckpoint,
                anchor: ChainAnchor, tree: MerkleLog) -> ProofBundle:
        self._check_record(record, tree)
        assert record.index < checkpoint.checkpoint.tree_size
        return build_bundle(
            LeafSummary(record.commitment, sm3(record.escrow), record.match_tag,
                        record.amount_tag),
            record.index, checkpoint, anchor, log=tree)

    def _traced(self, records: Iterable[IndexedRecord]) -> list[TracedRecord]:
        """Each record with its bundle; each log's checkpoint read once (a trace's records
        are on a few logs; two store reads per record were most of a trace's time on
        PostgreSQL, where each read is a round trip)."""
        at: dict[bytes, tuple[SignedCheckpoint, ChainAnchor, MerkleLog]] = {}
        traced = []
        for record in records:
            if record.log_id not in at:
                at[record.log_id] = self._verified_checkpoint(record.log_id)
            traced.append(TracedRecord(record, self._bundle(record, *at[record.log_id])))
        return traced

    def trace_identity(self, identity_key: bytes) -> list[TracedRecord]:
        """Every record, on every platform, where ``identity_key`` pays or is paid, by time."""
        return self._traced(self.store.records_of_identity(identity_key))

    def trace_commitment(self, commitment: bytes) -> list[TracedRecord]:
        """The record(s) with ``commitment`` (their payments name the identities)."""
        return self._traced(self.store.records_of_commitment(commitment))

    def record_by_ref(self, ref: str) -> IndexedRecord:
        """The indexed record an alert's evidence reference names."""
        try:
            _, log_id, index = parse_evidence_ref(ref)
        except ValueError:
            raise UnknownLeaf(f"{ref!r} is not an evidence reference") from None
        record = self.store.record(log_id, index)
        if record is None:
            raise UnknownLeaf(f"no verified record {ref}")
        return self._check_record(record)

    # ------------------------------------------------------------------ AML

    def numbered_alerts(self) -> list[NumberedAlert]:
        """AML alerts over everything indexed, each with its number, in :func:`detect`'s
        order (recomputed only when the index grew).

        Numbers start at 1 and are kept in the store by each alert's
        :func:`~ledger_node.protocol.aml.lasting_key`: a restart, a recomputation or an
        alert growing with new payments keeps them; a new alert gets the next number.
        """
        count = self.store.record_count()
        cached = self._alerts
        if cached is None or cached[0] != count:
            found = detect(self.store.traced_payments(), self.config.aml)
            keys = [lasting_key(a, self.config.aml) for a in found]
            numbers = self.store.alert_numbers(keys)
            cached = (count, [NumberedAlert(numbers[k], a) for k, a in zip(keys, found,
                                                                            strict=True)])
            self._alerts = cached
        return cached[1]

    def alerts(self) -> list[Alert]:
        """AML alerts over everything indexed, in :func:`detect`'s order."""
        return [n.alert for n in self.numbered_alerts()]

    def alert(self, alert_id: int) -> Alert:
        """Alert number ``alert_id`` (see :meth:`numbered_alerts`).

        Raises :class:`UnknownAlert` if no alert ever had that number, or if the alert it
        named is no longer raised (a late payment moved the start of its window).
        """
        for numbered in self.numbered_alerts():
            if numbered.id == alert_id:
                return numbered.alert
        if self.store.alert_key(alert_id) is None:
            raise UnknownAlert(f"no alert {alert_id}: alerts are numbered from 1, and no "
                               "alert has had that number yet")
        raise UnknownAlert(f"alert {alert_id} is no longer raised over the records indexed "
                           "now (a later payment changed the start of its window or day)")

    def alert_evidence(self, alert: Alert) -> list[TracedRecord]:
        """The records an alert rests on, each with its proof bundle."""
        records = [self.record_by_ref(ref) for ref in alert.refs]
        return self._traced(records)

    # ------------------------------------------------------------------ disclosures

    def request_disclosure(self, commitment: bytes, case_id: bytes) -> int:
        """Log on chain a request that the commitment's platform open it; return its id.

        ``case_id`` is the regulator's own case number; the chain gets a per-request
        :func:`~ledger_node.protocol.disclosure.case_reference` under the case's secret key, so the
        requests of one case do not link the records they name.
        """
        records = self._checked(self.store.records_of_commitment(commitment))
        if not records:
            raise UnknownLeaf(f"commitment {commitment.hex()} is in no verified log")
        state = self.store.log(records[0].log_id)
        assert state is not None
        reference = case_reference(self.store.case_key(case_id), commitment)
        request_id, outcome = self.chain.request_disclosure(state.platform_address,
                                                            commitment, reference)
        self.store.save_disclosure_request(request_id, state.platform, commitment, case_id,
                                           outcome.tx_hash)
        return request_id

    def collect_disclosure(self, request_id: int) -> CollectedDisclosure | None:
        """Fetch and verify the platform's answer; ``None`` while it is not fulfilled on chain.

        Raises :class:`DisclosureRejected` if the answer does not match the digest the
        platform logged on chain, cannot be opened with this regulator's keys, or does not
        open the commitment. An answer that opens the commitment but contradicts the escrow
        is accepted (the opening is the truth) and the contradiction recorded as a fault.
        """
        stored = self.store.disclosure(request_id)
        if stored is None:
            raise UnknownLeaf(f"disclosure request {request_id} was not made by this node")
        request = self.chain.disclosure_request(request_id)
        if not request.fulfilled:
            return None
        records = self._checked(self.store.records_of_commitment(stored.commitment))
        record = next(r for r in records if r.platform == stored.platform)
        source = self.source_for(stored.platform, record.log_id)
        if source is None:
            raise UnknownPlatform(f"no configured node of {stored.platform!r} serves log "
                                  f"{record.log_id.hex()}")
        response = source.disclosure_response(record.log_id, request_id)
        if sm3(response) != request.response_digest:
            raise DisclosureRejected(request_id, "the answer served does not match the digest "
                                     f"{request.response_digest.hex()} logged on chain")
        opening = self._open_response(request_id, stored, response)
        try:
            verify_opening(stored.commitment, opening)
        except InvalidOpening as exc:
            raise DisclosureRejected(request_id, f"the opening does not open the commitment: "
                                     f"{exc}") from None
        if opening.record.platform != stored.platform:
            raise DisclosureRejected(request_id, f"the opening is a record of "
                                     f"{opening.record.platform!r}, not {stored.platform!r}")
        mismatches = (payload_mismatches(record.payment, opening.record)
                      if record.payment is not None else ())
        if mismatches:
            state = self.store.log(record.log_id)
            assert state is not None
            self._fault(state, record.index, record.index + 1, FAULT_ESCROW_MISMATCH,
                        f"disclosure {request_id}: the escrow of leaf {record.index} "
                        f"contradicts the opened record in {', '.join(mismatches)}")
        self.store.save_disclosure_opening(request_id, response,
                                           json.dumps(opening.to_json(), sort_keys=True))
        return CollectedDisclosure(request_id, record, opening, response, mismatches)

    def _open_response(self, request_id: int, stored: StoredDisclosure,
                       response: bytes) -> RecordOpening:
        try:
            return open_disclosure_response(
                self._keys, response, request_id, stored.commitment,
                chain_id=self.chain.chain_id, contract=self.chain.deployment.address)
        except LedgerError as exc:
            raise DisclosureRejected(request_id, f"the answer cannot be opened: {exc}") from None

    # ------------------------------------------------------------------ case files

    def case_file(self, case_id: bytes, *, identities: Iterable[bytes] = (),
                  refs: Iterable[str] = ()) -> dict[str, Any]:
        """A self-contained case file (``jointledger/case-file/v1``).

        It holds the alerts on ``identities``, the records they rest on plus ``refs``, each
        with its escrow, decrypted payment and proof bundle, and every collected disclosure
        of ``case_id`` with its sealed answer and opening. ``jointledger verify CASEFILE``
        checks it against the chain with no node running.
        """
        wanted = set(identities)
        alerts = [a for a in self.alerts() if a.identity in wanted]
        disclosures = [d for d in self.store.disclosures()
                       if d.case_id == case_id and d.opening is not None]
        chosen: dict[str, IndexedRecord] = {}
        for ref in [*refs, *(r for a in alerts for r in a.refs)]:
            chosen.setdefault(ref, self.record_by_ref(ref))
        for d in disclosures:
            for r in self._checked(self.store.records_of_commitment(d.commitment)):
                if r.platform == d.platform:
                    chosen.setdefault(r.ref, r)
        deployment = self.chain.deployment
        return {
            "format": CASE_FILE_FORMAT,
            "case_id": case_id.hex(),
            "case_key": self.store.case_key(case_id).hex(),
            "created_at": datetime.now(UTC).isoformat(),
            "regulator": {"name": self.config.name, "account": self.chain.address},
            "chain": {"chain_id": deployment.chain_id, "contract": deployment.address,
                      "deploy_block": deployment.deploy_block,
                      "abi_sha256": deployment.abi_sha256},
            "identities": [key.hex() for key in sorted(wanted)],
            "aml_config": self.config.aml.to_json(),
            "alerts": [a.to_json() for a in alerts],
            "records": [TracedRecord(r, self.bundle_for(r)).to_json()
                        for r in sorted(chosen.values(),
                                        key=lambda r: (r.platform, r.log_id, r.index))],
            "disclosures": [
                {"request_id": d.request_id, "platform": d.platform,
                 "commitment": d.commitment.hex(), "case_id": d.case_id.hex(),
                 "case_ref": case_reference(self.store.case_key(case_id), d.commitment).hex(),
                 "request_tx": "0x" + d.requested_tx.hex(),
                 "response": None if d.response is None else d.response.hex(),
                 "opening": json.loads(d.opening) if d.opening is not None else None}
                for d in disclosures
            ],
        }


    def verify_case_file(self, case: CaseFile, *, open_escrows: bool) -> CaseReport:
        """Check ``case`` against the chain, never against this node's store.

        With ``open_escrows`` the node's own SM2 keys (current and retired) decrypt its
        escrows and sealed answers; the keys never leave this object.
        """

        return verify_case_file(case, chain=self.chain,
                                regulator_keys=self._keys if open_escrows else ())

__all__ = [
    "ALL_LOGS",
    "FAULT_BAD_SIGNATURE",
    "FAULT_ESCROW",
    "FAULT_ESCROW_MISMATCH",
    "FAULT_NO_ENDPOINT",
    "FAULT_ROOT_MISMATCH",
    "FAULT_UNREACHABLE",
    "FAULT_WITHHELD",
    "CollectedDisclosure",
    "HttpLeafSource",
    "IngestShare",
    "LeafSource",
    "LogProgress",
    "NumberedAlert",
    "RegulatorConfig",
    "RegulatorNode",
    "ServedLeaves",
    "TracedRecord",
    "log_share",
]
