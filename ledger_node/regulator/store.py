"""The regulator node's durable store: verified logs, decrypted payments, faults, disclosures.

One SQLite file in WAL mode (``synchronous=FULL``). A verified range of a platform's log is
written in **one transaction**: its leaves (with their escrows, kept as evidence), the
decrypted payment of each, and the log's new verified size and root. A crash therefore
leaves the store at the end of the last verified range, and ingest resumes from there.

Payments are indexed by payer and payee identity key and by commitment, so a trace is two
index lookups. Nothing here verifies anything: :mod:`ledger_node.regulator.node` decides what is
written, and checks every record it reads before serving it.

One writer: an open store holds an exclusive ``flock`` on ``STORE.lock`` beside it, so a
second regulator node (or ``jointledger fsck --role regulator``) on a live store is refused
with :class:`~ledger_node.errors.StoreLocked`. An API replica (``jointledger serve --role
regulator --ingest off``) opens the store with ``writer=False``: it takes no lock and never
ingests, so it runs beside the writer on the same file. What SQLite gives it (WAL): its
reads never block the writer nor wait for it, and each read sees the last committed
transaction; the few rows a replica does write (alert numbers, case keys, disclosure
requests) are short ``BEGIN IMMEDIATE`` transactions that wait their turn behind the
writer's (``busy_timeout``), so every process on the machine shares one file safely. Not
across machines: SQLite's WAL needs shared memory, so replicas on other machines need
the PostgreSQL store.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

from ledger_node.errors import NodeStopped, StoreCorrupted
from ledger_node.log.leaf import Leaf
from ledger_node.protocol.aml import PartyKind, TracedPayment
from ledger_node.protocol.escrow import EscrowPayload
from ledger_node.protocol.record import Channel
from ledger_node.sqlite_readers import ThreadReaders, take_writer_lock

SCHEMA_VERSION: Final = 3
"""Version 2 added ``alert_numbers``, version 3 ``console_sessions``; an older store is
upgraded when opened."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_KIND_CODE: Final = {PartyKind.PERSON: 1, PartyKind.INSTITUTION: 2}
_KIND_OF: Final = {code: kind for kind, code in _KIND_CODE.items()}

_ALERT_NUMBERS: Final = """
CREATE TABLE alert_numbers (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, first_raised REAL NOT NULL
);
"""
_CONSOLE_SESSIONS: Final = """
CREATE TABLE console_sessions (
    digest BLOB PRIMARY KEY, kind TEXT NOT NULL, address TEXT NOT NULL, role INTEGER NOT NULL,
    name TEXT NOT NULL, expires_at REAL NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (kind, expires_at);
"""
_SCHEMA: Final = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE logs (
    num INTEGER PRIMARY KEY, log_id BLOB NOT NULL UNIQUE, platform TEXT NOT NULL,
    platform_address TEXT NOT NULL, hash_name TEXT NOT NULL, verified_size INTEGER NOT NULL,
    verified_root BLOB
);
CREATE TABLE records (
    id INTEGER PRIMARY KEY, log INTEGER NOT NULL, idx INTEGER NOT NULL,
    leaf_hash BLOB NOT NULL,
    commitment BLOB NOT NULL, escrow BLOB NOT NULL, match_tag BLOB, amount_tag BLOB,
    payer_key BLOB, payee_key BLOB, payer_kind INTEGER, payee_kind INTEGER,
    amount_fen INTEGER, currency TEXT, time_us INTEGER, channel TEXT,
    cross_border INTEGER, cash INTEGER, clearing_key BLOB
);
CREATE UNIQUE INDEX records_position ON records (log, idx);
CREATE INDEX records_payer ON records (payer_key);
CREATE INDEX records_payee ON records (payee_key);
CREATE INDEX records_commitment ON records (commitment);
CREATE TABLE checkpoints (
    log_id BLOB NOT NULL, tree_size INTEGER NOT NULL, root BLOB NOT NULL,
    timestamp INTEGER NOT NULL, signature BLOB NOT NULL, tx_hash BLOB NOT NULL,
    block_number INTEGER NOT NULL, block_time INTEGER NOT NULL,
    PRIMARY KEY (log_id, tree_size)
) WITHOUT ROWID;
CREATE TABLE faults (
    id INTEGER PRIMARY KEY, found_at REAL NOT NULL, last_seen REAL NOT NULL,
    platform TEXT NOT NULL, log_id BLOB NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
    kind TEXT NOT NULL, detail TEXT NOT NULL, UNIQUE (log_id, start, end, kind)
);
CREATE TABLE disclosures (
    request_id INTEGER PRIMARY KEY, platform TEXT NOT NULL, commitment BLOB NOT NULL,
    case_id BLOB NOT NULL, requested_tx BLOB NOT NULL, requested_at REAL NOT NULL,
    response BLOB, opening TEXT, verified_at REAL
);
CREATE TABLE follow (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE cases (case_id BLOB PRIMARY KEY, case_key BLOB NOT NULL);
""" + _ALERT_NUMBERS + _CONSOLE_SESSIONS
_UPGRADES: Final = {"1": _ALERT_NUMBERS, "2": _CONSOLE_SESSIONS}
"""Per schema version, the SQL that brings a store to the next version."""
LOG_COLUMNS: Final = ("log_id, platform, platform_address, hash_name, verified_size, "
                      "verified_root, num")
RECORD_COLUMNS: Final = (
    "log, idx, leaf_hash, commitment, escrow, match_tag, amount_tag, payer_key, payee_key, "
    "payer_kind, payee_kind, amount_fen, currency, time_us, channel, cross_border, cash, "
    "clearing_key")
_TABLES: Final = ("meta", "logs", "records", "checkpoints", "faults", "disclosures", "follow",
                  "cases", "alert_numbers", "console_sessions")


@dataclass(frozen=True)
class LogState:
    """How far the regulator has verified one platform log."""

    log_id: bytes
    platform: str
    platform_address: str
    hash_name: str
    verified_size: int
    verified_root: bytes | None
    number: int = 0
    """The store's number for the log, given in the order logs were first seen (from 1):
    how ingest workers share the logs out (round robin, and stable: it never changes)."""


@dataclass(frozen=True)
class StoredAnchor:
    """A checkpoint as read from the chain's ``CheckpointAnchored`` event."""

    log_id: bytes
    tree_size: int
    root: bytes
    timestamp: int
    signature: bytes
    tx_hash: bytes
    block_number: int
    block_time: int


@dataclass(frozen=True)
class IngestedLeaf:
    """One verified leaf as written: its escrow and, if it opened, the decrypted payment."""

    index: int
    leaf_hash: bytes
    commitment: bytes
    escrow: bytes
    match_tag: bytes | None
    amount_tag: bytes | None
    payment: EscrowPayload | None


@dataclass(frozen=True)
class IndexedRecord:
    """A verified leaf of a platform log with its decrypted payment (``None`` if unreadable)."""

    platform: str
    log_id: bytes
    index: int
    leaf_hash: bytes
    commitment: bytes
    escrow: bytes
    match_tag: bytes | None
    amount_tag: bytes | None
    payment: EscrowPayload | None

    @property
    def leaf(self) -> Leaf:
        """The leaf as the platform submitted it."""
        return Leaf(self.commitment, self.escrow, self.match_tag, self.amount_tag)

    @property
    def ref(self) -> str:
        """The evidence reference AML alerts carry: ``platform/log_id_hex/index``."""
        return evidence_ref(self.platform, self.log_id, self.index)

    def to_json(self) -> dict[str, Any]:
        """The JSON form (without a proof bundle): where it is, the leaf as submitted, and
        the decrypted payment (``null`` when the escrow could not be read)."""
        return {
            "ref": self.ref, "platform": self.platform, "log_id": self.log_id.hex(),
            "index": self.index, "leaf_hash": self.leaf_hash.hex(),
            "leaf": self.leaf.to_json(),
            "payment": None if self.payment is None else self.payment.to_json(),
        }

    def traced(self) -> TracedPayment | None:
        """This record as the AML module's input, or ``None`` without a readable escrow."""
        return None if self.payment is None else self.payment.traced(self.ref, self.platform)


@dataclass(frozen=True)
class Fault:
    """Data a platform node served that the regulator refused, or an unreadable escrow."""

    id: int
    found_at: float
    last_seen: float
    platform: str
    log_id: bytes
    start: int
    end: int
    kind: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        """JSON form (hex log id, ISO times)."""
        return {
            "id": self.id, "platform": self.platform, "log_id": self.log_id.hex(),
            "start": self.start, "end": self.end, "kind": self.kind, "detail": self.detail,
            "found_at": _iso(self.found_at), "last_seen": _iso(self.last_seen),
        }


@dataclass(frozen=True)
class StoredDisclosure:
    """A disclosure request this regulator made and, once collected, the verified opening."""

    request_id: int
    platform: str
    commitment: bytes
    case_id: bytes
    requested_tx: bytes
    requested_at: float
    response: bytes | None
    opening: str | None
    verified_at: float | None

    def to_json(self) -> dict[str, Any]:
        """The request as the regulator node's API shows it: id, platform, commitment, case
        id and the requesting transaction (``0x`` hash)."""
        return {"request_id": self.request_id, "platform": self.platform,
                "commitment": self.commitment.hex(), "case_id": self.case_id.hex(),
                "tx_hash": "0x" + self.requested_tx.hex()}


@dataclass(frozen=True)
class ConsoleEntry:
    """A console login token's or session's holder, as the store keeps it (by the SHA-256
    digest of the secret: the secret itself is never stored)."""

    address: str
    role: int
    """The member's :class:`~ledger_node.chain.adapter.Role` value at login."""
    name: str
    expires_at: float
    """Wall-clock seconds (every API process of one store shares that clock)."""


class ConsoleTable(Protocol):
    """Where the web console's login tokens (``kind`` ``"token"``) and sessions
    (``"session"``) live: in the regulator's store, so a request landing on any API process
    of that store finds them (:mod:`api.console_session` holds the rules)."""

    def console_put(self, kind: str, digest: bytes, entry: ConsoleEntry, *, now: float,
                    limit: int) -> None:
        """Keep ``entry`` under ``digest``; entries of ``kind`` expired at ``now`` go, and
        the soonest-expiring go while ``limit`` would be passed."""

    def console_take(self, kind: str, digest: bytes) -> ConsoleEntry | None:
        """Remove and return the entry (at most one caller ever gets it: a token is spent
        once), or ``None``."""

    def console_get(self, kind: str, digest: bytes) -> ConsoleEntry | None:
        """The entry, or ``None``."""

    def console_counts(self) -> tuple[int, int]:
        """How many tokens and sessions are held (expired ones included until swept)."""


def evidence_ref(platform: str, log_id: bytes, index: int) -> str:
    """The reference of leaf ``index`` of ``log_id``: ``platform/<log id hex>/<index>``."""
    return f"{platform}/{log_id.hex()}/{index}"


def parse_evidence_ref(ref: str) -> tuple[str, bytes, int]:
    """Split an :func:`evidence_ref`; raises ``ValueError`` if it is not one."""
    platform, log_hex, index = ref.split("/")
    log_id = bytes.fromhex(log_hex)
    if len(log_id) != 32 or not index.isdigit():
        raise ValueError(f"{ref!r} is not an evidence reference")
    return platform, log_id, int(index)


def record_row(log_number: int, leaf: IngestedLeaf) -> tuple[Any, ...]:
    """The values of :data:`RECORD_COLUMNS` for ``leaf`` of the log numbered ``log_number``
    (the payment's columns ``None`` when its escrow did not open). Both backends write
    these; :func:`record_from_row` reads them back."""
    p = leaf.payment
    head = (log_number, leaf.index, leaf.leaf_hash, leaf.commitment, leaf.escrow,
            leaf.match_tag, leaf.amount_tag)
    if p is None:
        return head + (None,) * 11
    return head + (p.payer_key, p.payee_key, _KIND_CODE[p.payer_kind], _KIND_CODE[p.payee_kind],
                   p.amount_fen, p.currency, _time_us(p.time), p.channel.value,
                   bool(p.cross_border), bool(p.cash), p.clearing_key)


def record_from_row(row: Sequence[Any], logs: dict[int, tuple[bytes, str]]) -> IndexedRecord:
    """The record of a row of :data:`RECORD_COLUMNS`; ``logs`` maps each log number to its
    ``(log_id, platform)``."""
    (number, idx, leaf_hash, commitment, escrow, match_tag, amount_tag, payer, payee,
     payer_kind, payee_kind, amount, currency, time_us, channel, cross_border, cash,
     clearing) = row
    log_id, platform = logs[int(number)]
    payment = None
    if payer is not None:
        payment = EscrowPayload(
            payer_key=bytes(payer), payee_key=bytes(payee),
            payer_kind=_KIND_OF[payer_kind], payee_kind=_KIND_OF[payee_kind],
            amount_fen=int(amount), currency=str(currency),
            time=_EPOCH + timedelta(microseconds=int(time_us)),
            channel=Channel(channel), cross_border=bool(cross_border), cash=bool(cash),
            clearing_key=bytes(clearing),
        )
    return IndexedRecord(platform, log_id, int(idx), bytes(leaf_hash),
                         bytes(commitment), bytes(escrow), _opt(match_tag), _opt(amount_tag),
                         payment)


def fault_from_row(row: Sequence[Any]) -> Fault:
    """The fault of a ``faults`` row (its columns in table order)."""
    return Fault(int(row[0]), float(row[1]), float(row[2]), str(row[3]), bytes(row[4]),
                 int(row[5]), int(row[6]), str(row[7]), str(row[8]))


def _opt(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat()


def _time_us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


class RegulatorStore(ConsoleTable, Protocol):
    """What the regulator node needs of its store, whichever backend holds it:
    :class:`SqliteRegulatorStore` (the default, one file) or
    :class:`~ledger_node.regulator.pg_store.PostgresRegulatorStore`;
    :func:`~ledger_node.regulator.open_store.open_regulator_store` picks one. The same
    behaviour suite runs over both (``tests/test_regulator*.py``, ``store_backend``)."""

    @property
    def location(self) -> str:
        """Where the store is, for messages (a path, or a URL without its password)."""

    def close(self) -> None:
        """Release every connection; later calls raise :class:`NodeStopped`."""

    def follow_value(self, key: str, default: int = 0) -> int:
        """A saved cursor (e.g. the last chain block scanned for checkpoints)."""

    def save_anchors(self, anchors: Sequence[StoredAnchor], cursor: tuple[str, int]) -> None:
        """Store checkpoints read from chain events and advance the scan cursor, together."""

    def anchors(self, log_id: bytes, *, above: int = 0) -> list[StoredAnchor]:
        """Checkpoints of ``log_id`` with a tree size above ``above``, smallest first."""

    def anchor_at(self, log_id: bytes, tree_size: int) -> StoredAnchor | None:
        """The checkpoint of ``log_id`` at ``tree_size``, if the chain has one."""

    def all_anchors(self) -> list[StoredAnchor]:
        """Every stored checkpoint, by log and size."""

    def ensure_log(self, log_id: bytes, platform: str, platform_address: str,
                   hash_name: str) -> LogState:
        """Register a platform log (idempotent) and return its state."""

    def log(self, log_id: bytes) -> LogState | None:
        """The verification state of ``log_id``, or ``None`` if it is not followed."""

    def logs(self) -> list[LogState]:
        """Every followed log, by platform."""

    def set_hash_name(self, log_id: bytes, hash_name: str) -> None:
        """Record the hash a log uses."""

    def append_verified(self, log_id: bytes, start: int, leaves: Sequence[IngestedLeaf],
                        root: bytes) -> None:
        """Write leaves ``start..start+len`` of ``log_id`` and its new verified size and
        root in ONE transaction; :class:`StoreCorrupted` unless ``start`` is the stored
        verified size (so no range is written twice or leaves a gap)."""

    def leaf_hashes(self, log_id: bytes) -> Iterator[bytes]:
        """The verified leaf hashes of ``log_id`` in index order."""

    def records_of_identity(self, identity_key: bytes) -> list[IndexedRecord]:
        """Every indexed record where ``identity_key`` is the payer or the payee, by time."""

    def records_of_commitment(self, commitment: bytes) -> list[IndexedRecord]:
        """The indexed record(s) with this commitment (normally one)."""

    def record(self, log_id: bytes, index: int) -> IndexedRecord | None:
        """Leaf ``index`` of ``log_id`` if it is verified and indexed."""

    def records(self, log_id: bytes, start: int, stop: int) -> list[IndexedRecord]:
        """The stored records of leaves ``start..stop-1`` of ``log_id`` in index order."""

    def leaf_rows(self, log_id: bytes, start: int, stop: int
                  ) -> list[tuple[int, bytes, bytes, bytes, bytes | None, bytes | None]]:
        """``(index, leaf_hash, commitment, escrow, match_tag, amount_tag)`` of leaves
        ``start..stop-1`` of ``log_id``, as stored."""

    def record_count(self) -> int:
        """How many verified leaves are indexed over all logs."""

    def traced_payments(self) -> Iterator[TracedPayment]:
        """Every readable indexed payment as AML input (streamed)."""

    def record_fault(self, platform: str, log_id: bytes, start: int, end: int, kind: str,
                     detail: str) -> None:
        """Record a fault; the same (log, range, kind) again only updates ``last_seen``."""

    def faults(self) -> list[Fault]:
        """Every recorded fault, oldest first."""

    def alert_numbers(self, keys: Sequence[str]) -> dict[str, int]:
        """The lasting number of each alert key (new keys numbered in the order listed)."""

    def alert_key(self, number: int) -> str | None:
        """The key numbered ``number``, or ``None``."""

    def case_key(self, case_id: bytes) -> bytes:
        """The secret key of case ``case_id``, drawn at random the first time."""

    def save_disclosure_request(self, request_id: int, platform: str, commitment: bytes,
                                case_id: bytes, requested_tx: bytes) -> None:
        """Remember a disclosure request this regulator logged on chain."""

    def save_disclosure_opening(self, request_id: int, response: bytes, opening: str) -> None:
        """Store a collected, verified answer."""

    def disclosure(self, request_id: int) -> StoredDisclosure | None:
        """A disclosure request this regulator made, or ``None``."""

    def disclosures(self) -> list[StoredDisclosure]:
        """Every disclosure request this regulator made, oldest first."""


class SharedReads:
    """The reads both backends answer with the same SQL, written once here with ``?``
    placeholders: SQLite takes them as they are, the PostgreSQL store's ``_query`` and
    ``_stream`` turn them into psycopg's ``%s``."""

    _numbers: dict[bytes, int]
    """Log id to the store's log number, filled as logs are looked up."""

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    def log(self, log_id: bytes) -> LogState | None:
        raise NotImplementedError

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        raise NotImplementedError

    def leaf_hashes(self, log_id: bytes) -> Iterator[bytes]:
        """The verified leaf hashes of ``log_id`` in index order (to rebuild its tree)."""
        for (leaf_hash,) in self._stream("SELECT leaf_hash FROM records WHERE log = ? "
                                         "ORDER BY idx", (self._log_number(log_id),)):
            yield bytes(leaf_hash)

    def traced_payments(self) -> Iterator[TracedPayment]:
        """Every readable indexed payment as AML input (streamed, for large indexes)."""
        logs = self._logs()
        for row in self._stream(f"SELECT {RECORD_COLUMNS} FROM records "
                                "WHERE payer_key IS NOT NULL", ()):
            traced = record_from_row(row, logs).traced()
            assert traced is not None
            yield traced

    def follow_value(self, key: str, default: int = 0) -> int:
        """A saved cursor (e.g. the last chain block scanned for checkpoints)."""
        rows = self._query("SELECT value FROM follow WHERE key = ?", (key,))
        return int(rows[0][0]) if rows else default

    def _log_number(self, log_id: bytes) -> int:
        number = self._numbers.get(log_id)
        if number is None:
            rows = self._query("SELECT num FROM logs WHERE log_id = ?", (log_id,))
            if not rows:
                raise StoreCorrupted(f"regulator store: log {log_id.hex()} is not followed")
            number = self._numbers[log_id] = int(rows[0][0])
        return number

    def _logs(self) -> dict[int, tuple[bytes, str]]:
        return {int(r[0]): (bytes(r[1]), str(r[2]))
                for r in self._query("SELECT num, log_id, platform FROM logs")}

    def record(self, log_id: bytes, index: int) -> IndexedRecord | None:
        """Leaf ``index`` of ``log_id`` if it is verified and indexed."""
        if self.log(log_id) is None:
            return None
        rows = self._query(f"SELECT {RECORD_COLUMNS} FROM records WHERE log = ? AND idx = ?",
                           (self._log_number(log_id), index))
        return record_from_row(rows[0], self._logs()) if rows else None

    def record_count(self) -> int:
        """How many verified leaves are indexed over all logs."""
        return int(self._query("SELECT COUNT(*) FROM records")[0][0])

    def faults(self) -> list[Fault]:
        """Every recorded fault, oldest first."""
        return [fault_from_row(r) for r in self._query("SELECT * FROM faults ORDER BY id")]

    def alert_key(self, number: int) -> str | None:
        """The key numbered ``number``, or ``None`` if no alert ever had that number."""
        rows = self._query("SELECT key FROM alert_numbers WHERE id = ?", (number,))
        return str(rows[0][0]) if rows else None

    def disclosure(self, request_id: int) -> StoredDisclosure | None:
        """A disclosure request this regulator made, or ``None``."""
        rows = self._query("SELECT * FROM disclosures WHERE request_id = ?", (request_id,))
        return disclosure_from_row(rows[0]) if rows else None

    def disclosures(self) -> list[StoredDisclosure]:
        """Every disclosure request this regulator made, oldest first."""
        return [disclosure_from_row(r) for r in
                self._query("SELECT * FROM disclosures ORDER BY request_id")]


class SqliteRegulatorStore(SharedReads):
    """The regulator's SQLite store (see the module docstring). Thread-safe."""

    def __init__(self, path: Path, *, regulator: str, writer: bool = True) -> None:
        """Open (or create) the store at ``path`` for the regulator named ``regulator``.

        ``writer=False`` opens it for an API replica: no writer lock is taken (the ingest
        process holds it), and the store must exist already, made and brought to this schema
        by the ingest process (:class:`StoreCorrupted` otherwise).

        Raises :class:`StoreCorrupted` for a damaged file, another schema, or a store made
        for another regulator; :class:`~ledger_node.errors.StoreLocked` if another writer
        has it.
        """
        self._path = Path(path)
        self._lock = threading.Lock()
        self._readers = ThreadReaders(self._path)
        self._closed = False
        self._numbers: dict[bytes, int] = {}
        self.writer = writer
        """Whether this opener is the store's one writer (holding ``STORE.lock``)."""
        if not writer and not self._path.is_file():
            raise StoreCorrupted(f"regulator store {self._path} does not exist: an API replica "
                                 "serves a store its ingest process made; start that first")
        self._lock_fd: int | None = self._take_lock() if writer else None
        try:
            self._db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            self._open_checked(regulator)
        except sqlite3.DatabaseError as exc:
            self._release_lock()
            raise StoreCorrupted(f"regulator store {self._path} is damaged or not a store: "
                                 f"{exc}") from exc
        except BaseException:
            self._release_lock()
            raise

    @property
    def path(self) -> Path:
        """The store's file."""
        return self._path

    @property
    def location(self) -> str:
        """The store's file, for messages."""
        return str(self._path)

    def _take_lock(self) -> int:
        """The one writer's exclusive lock on ``STORE.lock``; :class:`StoreLocked` if held."""
        return take_writer_lock(self._path, "regulator store")

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _open_checked(self, regulator: str) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA cache_size = -65536")
        problems = [str(r[0]) for r in db.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise StoreCorrupted(f"regulator store {self._path} failed its integrity check: "
                                 f"{'; '.join(problems[:5])}")
        tables = {str(r[0]) for r in
                  db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables and not self.writer:
            raise StoreCorrupted(f"regulator store {self._path} is empty: an API replica "
                                 "serves a store its ingest process made; start that first")
        if not tables:
            safe = regulator.replace("'", "")
            db.executescript(
                f"BEGIN IMMEDIATE;{_SCHEMA}"
                f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
                f"INSERT INTO meta VALUES ('regulator', '{safe}');COMMIT;"
            )
            return
        if "meta" in tables and self.writer:
            self._upgrade(tables)
        missing = sorted(set(_TABLES) - tables)
        if missing:
            raise StoreCorrupted(f"regulator store {self._path} lacks the table(s) {missing}")
        meta = {str(k): str(v) for k, v in db.execute("SELECT key, value FROM meta")}
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            raise StoreCorrupted(f"regulator store {self._path} has schema version "
                                 f"{meta.get('schema_version')!r}, expected {SCHEMA_VERSION}")
        if meta.get("regulator") != regulator.replace("'", ""):
            raise StoreCorrupted(f"regulator store {self._path} belongs to regulator "
                                 f"{meta.get('regulator')!r}, not {regulator!r}")

    def _upgrade(self, tables: set[str]) -> None:
        """Bring an older store to :data:`SCHEMA_VERSION`, one version per transaction;
        ``tables`` gains the tables made. A version this code does not know is left alone
        (the version check refuses it)."""
        db = self._db
        while True:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = None if row is None else str(row[0])
            upgrade = _UPGRADES.get(version or "")
            if upgrade is None:
                return
            db.executescript(
                f"BEGIN IMMEDIATE;{upgrade}"
                f"UPDATE meta SET value = '{int(version or 0) + 1}' "
                "WHERE key = 'schema_version';COMMIT;")
            tables.update(str(r[0]) for r in
                          db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))

    # ------------------------------------------------------------------ plumbing

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise NodeStopped(f"regulator store {self._path} is closed")
        return self._readers.get()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupted(f"regulator store {self._path}: read failed: {exc}") from exc

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """Rows of ``sql`` as the cursor yields them (for whole-log reads)."""
        yield from self._reader().execute(sql, params)

    def _write(self, statements: Iterable[tuple[str, Sequence[Any] | Iterable[Sequence[Any]],
                                               bool]]) -> None:
        """Run ``(sql, params, many)`` statements in one immediate transaction."""
        if self._closed:
            raise NodeStopped(f"regulator store {self._path} is closed")
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params, many in statements:
                    if many:
                        db.executemany(sql, params)
                    else:
                        db.execute(sql, params)  # type: ignore[arg-type]
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        """Close every connection; later calls raise :class:`NodeStopped`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._readers.close()
            self._db.close()
            self._release_lock()

    # ------------------------------------------------------------------ follow state

    def save_anchors(self, anchors: Sequence[StoredAnchor], cursor: tuple[str, int]) -> None:
        """Store checkpoints read from chain events and advance the scan cursor, together."""
        self._write([
            ("INSERT OR IGNORE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
             [(a.log_id, a.tree_size, a.root, a.timestamp, a.signature, a.tx_hash,
               a.block_number, a.block_time) for a in anchors], True),
            ("INSERT INTO follow VALUES (?, ?) "
             "ON CONFLICT(key) DO UPDATE SET value = excluded.value", cursor, False),
        ])

    def anchors(self, log_id: bytes, *, above: int = 0) -> list[StoredAnchor]:
        """Checkpoints of ``log_id`` with a tree size above ``above``, smallest first."""
        rows = self._query("SELECT * FROM checkpoints WHERE log_id = ? AND tree_size > ? "
                           "ORDER BY tree_size", (log_id, above))
        return [StoredAnchor(*row) for row in rows]

    def anchor_at(self, log_id: bytes, tree_size: int) -> StoredAnchor | None:
        """The checkpoint of ``log_id`` at ``tree_size``, if the chain has one."""
        rows = self._query("SELECT * FROM checkpoints WHERE log_id = ? AND tree_size = ?",
                           (log_id, tree_size))
        return StoredAnchor(*rows[0]) if rows else None

    def all_anchors(self) -> list[StoredAnchor]:
        """Every stored checkpoint, by log and size."""
        return [StoredAnchor(*row) for row in
                self._query("SELECT * FROM checkpoints ORDER BY log_id, tree_size")]

    # ------------------------------------------------------------------ logs

    def ensure_log(self, log_id: bytes, platform: str, platform_address: str,
                   hash_name: str) -> LogState:
        """Register a platform log (idempotent) and return its state."""
        self._write([("INSERT OR IGNORE INTO logs (log_id, platform, platform_address, "
                      "hash_name, verified_size, verified_root) VALUES (?, ?, ?, ?, 0, NULL)",
                      (log_id, platform, platform_address, hash_name), False)])
        state = self.log(log_id)
        assert state is not None
        return state

    def log(self, log_id: bytes) -> LogState | None:
        """The verification state of ``log_id``, or ``None`` if it is not followed."""
        rows = self._query(f"SELECT {LOG_COLUMNS} FROM logs WHERE log_id = ?", (log_id,))
        return LogState(*rows[0]) if rows else None

    def logs(self) -> list[LogState]:
        """Every followed log, by platform."""
        return [LogState(*row) for row in
                self._query(f"SELECT {LOG_COLUMNS} FROM logs ORDER BY platform, log_id")]

    def set_hash_name(self, log_id: bytes, hash_name: str) -> None:
        """Record the hash a log uses (learned from the platform node, checked by signature)."""
        self._write([("UPDATE logs SET hash_name = ? WHERE log_id = ?",
                      (hash_name, log_id), False)])

    def append_verified(self, log_id: bytes, start: int, leaves: Sequence[IngestedLeaf],
                        root: bytes) -> None:
        """Write leaves ``start..start+len`` of ``log_id`` and its new verified root, at once.

        Refuses (``StoreCorrupted``) a range that does not start at the verified size, so a
        range can never be written twice or leave a gap.
        """
        state = self.log(log_id)
        if state is None or state.verified_size != start:
            raise StoreCorrupted(f"regulator store: log {log_id.hex()} is verified to "
                                 f"{None if state is None else state.verified_size}, "
                                 f"cannot append at {start}")
        number = self._log_number(log_id)
        rows = [record_row(number, leaf) for leaf in leaves]
        self._write([
            (f"INSERT INTO records ({RECORD_COLUMNS}) "
             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
             rows, True),
            ("UPDATE logs SET verified_size = ?, verified_root = ? WHERE log_id = ?",
             (start + len(leaves), root, log_id), False),
        ])

    # ------------------------------------------------------------------ records

    def records_of_identity(self, identity_key: bytes) -> list[IndexedRecord]:
        """Every indexed record where ``identity_key`` is the payer or the payee, by time."""
        rows = self._query(
            f"SELECT {RECORD_COLUMNS} FROM records WHERE payer_key = ?1 UNION "
            f"SELECT {RECORD_COLUMNS} FROM records WHERE payee_key = ?1 "
            "ORDER BY time_us, log, idx",
            (identity_key,))
        logs = self._logs()
        return [record_from_row(row, logs) for row in rows]

    def records_of_commitment(self, commitment: bytes) -> list[IndexedRecord]:
        """The indexed record(s) with this commitment (normally one)."""
        rows = self._query(f"SELECT {RECORD_COLUMNS} FROM records WHERE commitment = ? "
                           "ORDER BY log, idx",
                           (commitment,))
        logs = self._logs()
        return [record_from_row(row, logs) for row in rows]

    def records(self, log_id: bytes, start: int, stop: int) -> list[IndexedRecord]:
        """The records of leaves ``start..stop-1`` of ``log_id`` in index order, unchecked
        (those that are verified and stored: fewer when ``stop`` passes the verified size)."""
        if self.log(log_id) is None or stop <= start:
            return []
        rows = self._query(f"SELECT {RECORD_COLUMNS} FROM records WHERE log = ? AND idx >= ? "
                           "AND idx < ? ORDER BY idx", (self._log_number(log_id), start, stop))
        logs = self._logs()
        return [record_from_row(row, logs) for row in rows]

    def leaf_rows(self, log_id: bytes, start: int, stop: int
                  ) -> list[tuple[int, bytes, bytes, bytes, bytes | None, bytes | None]]:
        """``(index, leaf_hash, commitment, escrow, match_tag, amount_tag)`` of the records of
        leaves ``start..stop-1`` of ``log_id`` in index order, as stored (what the node's open
        check rehashes; lighter than :meth:`records`, which decodes the payments too)."""
        if stop <= start:
            return []
        rows = self._query("SELECT idx, leaf_hash, commitment, escrow, match_tag, amount_tag "
                           "FROM records WHERE log = ? AND idx >= ? AND idx < ? ORDER BY idx",
                           (self._log_number(log_id), start, stop))
        return [(int(i), bytes(h), bytes(c), bytes(e), _opt(m), _opt(a))
                for i, h, c, e, m, a in rows]

    # ------------------------------------------------------------------ faults

    def record_fault(self, platform: str, log_id: bytes, start: int, end: int, kind: str,
                     detail: str) -> None:
        """Record a fault; the same (log, range, kind) seen again only updates ``last_seen``."""
        now = time.time()
        self._write([(
            "INSERT INTO faults (found_at, last_seen, platform, log_id, start, end, kind, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (log_id, start, end, kind) "
            "DO UPDATE SET last_seen = excluded.last_seen, detail = excluded.detail",
            (now, now, platform, log_id, start, end, kind, detail), False)])

    # ------------------------------------------------------------------ alert numbers

    def alert_numbers(self, keys: Sequence[str]) -> dict[str, int]:
        """The number of each alert key, giving the keys not seen before the next numbers
        in the order listed (1 for the first alert this store ever numbers). Numbers are
        never reused: an alert that is no longer raised keeps its number to itself."""
        wanted = list(dict.fromkeys(keys))
        known = self._numbers_of(wanted)
        new = [k for k in wanted if k not in known]
        if new:
            # Another process (an API replica) may number the same keys between the read
            # above and this write: insert only what is absent inside the write transaction.
            # Not INSERT OR IGNORE: each row it ignores burns an AUTOINCREMENT number.
            now = time.time()
            self._write([("INSERT INTO alert_numbers (key, first_raised) SELECT ?1, ?2 "
                          "WHERE NOT EXISTS (SELECT 1 FROM alert_numbers WHERE key = ?1)",
                          [(k, now) for k in new], True)])
            known.update(self._numbers_of(new))
        return known

    def _numbers_of(self, keys: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            chunk = keys[start:start + 500]
            marks = ", ".join("?" * len(chunk))
            found.update((str(k), int(n)) for k, n in self._query(
                f"SELECT key, id FROM alert_numbers WHERE key IN ({marks})", chunk))
        return found

    # ------------------------------------------------------------------ disclosures

    def case_key(self, case_id: bytes) -> bytes:
        """The secret key of case ``case_id``, drawn at random the first time it is asked for.

        On chain each request of the case carries ``case_reference(case_key, commitment)``,
        not the case id, so requests of one case cannot be linked by anyone without the key.
        """
        rows = self._query("SELECT case_key FROM cases WHERE case_id = ?", (case_id,))
        if rows:
            return bytes(rows[0][0])
        self._write([("INSERT OR IGNORE INTO cases VALUES (?, ?)",
                      (case_id, secrets.token_bytes(32)), False)])
        return bytes(self._query("SELECT case_key FROM cases WHERE case_id = ?",
                                 (case_id,))[0][0])

    def save_disclosure_request(self, request_id: int, platform: str, commitment: bytes,
                                case_id: bytes, requested_tx: bytes) -> None:
        """Remember a disclosure request this regulator logged on chain."""
        self._write([("INSERT OR IGNORE INTO disclosures VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, "
                      "NULL)", (request_id, platform, commitment, case_id, requested_tx,
                                time.time()), False)])

    def save_disclosure_opening(self, request_id: int, response: bytes, opening: str) -> None:
        """Store a collected, verified answer: the sealed response and the opening's JSON."""
        self._write([("UPDATE disclosures SET response = ?, opening = ?, verified_at = ? "
                      "WHERE request_id = ?", (response, opening, time.time(), request_id),
                      False)])

    # ------------------------------------------------------------------ console sessions

    def console_put(self, kind: str, digest: bytes, entry: ConsoleEntry, *, now: float,
                    limit: int) -> None:
        """See :meth:`ConsoleTable.console_put`."""
        self._write([
            ("DELETE FROM console_sessions WHERE kind = ? AND expires_at <= ?", (kind, now),
             False),
            ("DELETE FROM console_sessions WHERE digest IN (SELECT digest FROM "
             "console_sessions WHERE kind = ? ORDER BY expires_at DESC, rowid DESC "
             "LIMIT -1 OFFSET ?)",
             (kind, max(limit - 1, 0)), False),
            ("INSERT OR REPLACE INTO console_sessions (digest, kind, address, role, name, "
             "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
             (digest, kind, entry.address, entry.role, entry.name, entry.expires_at), False),
        ])

    def console_take(self, kind: str, digest: bytes) -> ConsoleEntry | None:
        """See :meth:`ConsoleTable.console_take`."""
        if self._closed:
            raise NodeStopped(f"regulator store {self._path} is closed")
        with self._lock:
            rows = self._db.execute(
                "DELETE FROM console_sessions WHERE digest = ? AND kind = ? "
                "RETURNING address, role, name, expires_at", (digest, kind)).fetchall()
        return console_entry(rows[0]) if rows else None

    def console_get(self, kind: str, digest: bytes) -> ConsoleEntry | None:
        """See :meth:`ConsoleTable.console_get`."""
        rows = self._query("SELECT address, role, name, expires_at FROM console_sessions "
                           "WHERE digest = ? AND kind = ?", (digest, kind))
        return console_entry(rows[0]) if rows else None

    def console_counts(self) -> tuple[int, int]:
        """See :meth:`ConsoleTable.console_counts`."""
        counts = dict(self._query("SELECT kind, COUNT(*) FROM console_sessions GROUP BY kind"))
        return int(counts.get("token", 0)), int(counts.get("session", 0))


def console_entry(row: Sequence[Any]) -> ConsoleEntry:
    """The entry of a ``(address, role, name, expires_at)`` row."""
    return ConsoleEntry(str(row[0]), int(row[1]), str(row[2]), float(row[3]))



def disclosure_from_row(row: Sequence[Any]) -> StoredDisclosure:
    """The disclosure of a ``disclosures`` row (its columns in table order)."""
    return StoredDisclosure(
        int(row[0]), str(row[1]), bytes(row[2]), bytes(row[3]), bytes(row[4]), float(row[5]),
        None if row[6] is None else bytes(row[6]), None if row[7] is None else str(row[7]),
        None if row[8] is None else float(row[8]),
    )
