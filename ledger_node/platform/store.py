"""The platform node's durable store: leaves, batch evidence and checkpoints (PROTOCOL §9, §10).

:class:`LeafStore` is the small interface the node needs (append a group of batches in one
durable transaction, look leaves up, save and mark checkpoints); :class:`SQLiteStore` is the
default backend: one SQLite file in WAL mode with ``synchronous=FULL``, so that a committed
transaction has been fsynced before :meth:`LeafStore.append_batches` returns.

Schema (version 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)           schema_version, log_id, platform, hash
    batches(id INTEGER PRIMARY KEY, signer TEXT, digest BLOB, signature BLOB,
            received_at REAL, leaf_count INTEGER, indexes BLOB)
    leaves(idx INTEGER PRIMARY KEY, leaf_hash BLOB UNIQUE, commitment BLOB, escrow BLOB,
           match_tag BLOB NULL, amount_tag BLOB NULL, batch_id INTEGER)
    checkpoints(tree_size INTEGER PRIMARY KEY, root BLOB, timestamp INTEGER, signature BLOB,
                status TEXT, tx_hash BLOB NULL, block_number INTEGER NULL,
                signed_at REAL, anchored_at REAL NULL)
    disclosure_responses(request_id INTEGER PRIMARY KEY, leaf_index INTEGER, response BLOB,
                         digest BLOB, stored_at REAL, tx_hash BLOB NULL,
                         block_number INTEGER NULL, fulfilled_at REAL NULL)

    merkle_levels(level INTEGER, chunk INTEGER, digests BLOB, crc32 INTEGER,
                  PRIMARY KEY (level, chunk))

``disclosure_responses`` (sealed answers to regulators' disclosure requests, PROTOCOL §6)
and ``merkle_levels`` were added after the first stores were made: opening a store without
them creates them (empty).

``merkle_levels`` persists the Merkle log's levels so that a start reads them instead of
rehashing every leaf (docs/node.md § Recovery): row ``(level, chunk)`` holds digests
``chunk * LEVEL_CHUNK`` to ``(chunk + 1) * LEVEL_CHUNK - 1`` of ``level`` (level 0: the leaf
hashes), concatenated, with their CRC-32. Only complete chunks are stored, so a row never
changes once written; they are written after the leaves they derive from commit, so they
never run ahead of the leaves. They are a cache of the leaves: a start that finds them
damaged or disagreeing rebuilds them from the leaf hashes (:meth:`SQLiteStore.load_log`).

``batches.indexes`` lists the log index of every leaf of the signed batch, in order and
duplicates included (8-byte big-endian each), so the signed digest can be recomputed from the
store alone: the platform cannot later deny what it submitted. A batch row with an empty
signature records leaves restored from the regulator's verified copy by ``jointledger fsck
--repair-from`` (their signed batch was lost with the store's tail).

**One writer.** A store opened for writing holds an exclusive ``flock`` on ``STORE.lock``
beside it for as long as it is open: a second writer (another node on the same file, an
fsck of a live store) is refused with :class:`~ledger_node.errors.StoreLocked`, because two
writers would each assign the next indexes from their own in-memory log, and levels saved
from one would disagree with the leaves the other wrote. Readers (``read_only=True``) take
no lock and never write; :meth:`SQLiteStore.load_log` reads the size, the levels and the
leaf hashes after them in one read transaction, so a reader sees one consistent snapshot
while a writer commits.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from ledger_node.errors import (
    BatchEvidenceLost,
    DisclosureConflict,
    DisclosureNotAnswered,
    InvalidBatch,
    InvalidLeaf,
    LeafDamaged,
    NodeStopped,
    StoreCorrupted,
    StoreLocked,
    StoreMismatch,
    UnknownCheckpoint,
    UnknownLeaf,
)
from ledger_node.log.checkpoint import Checkpoint, SignedCheckpoint
from ledger_node.log.leaf import Leaf
from ledger_node.log.merkle import Hasher, MerkleLog
from ledger_node.protocol.auth import BatchEvidence
from ledger_node.sqlite_readers import ThreadReaders, take_writer_lock

SCHEMA_VERSION: Final = 1
LEVEL_CHUNK: Final = 1024
"""Digests per ``merkle_levels`` row (32 KiB of SM3 digests)."""
CheckpointStatus = Literal["signed", "anchored"]

_CHECK_MMAP_BYTES: Final = 1 << 31  # SQLite caps it at its compile-time maximum (2 GB)
_LOOKUP_CHUNK: Final = 500  # bound parameters per IN (...) query (SQLite allows 32766)
_TABLES: Final = {
    "meta": ("key", "value"),
    "batches": ("id", "signer", "digest", "signature", "received_at", "leaf_count", "indexes"),
    "leaves": ("idx", "leaf_hash", "commitment", "escrow", "match_tag", "amount_tag",
               "batch_id"),
    "checkpoints": ("tree_size", "root", "timestamp", "signature", "status", "tx_hash",
                    "block_number", "signed_at", "anchored_at"),
}
_ADDED_TABLES: Final = {  # created in stores made before them
    "disclosure_responses": ("request_id", "leaf_index", "response", "digest", "stored_at",
                             "tx_hash", "block_number", "fulfilled_at"),
    "merkle_levels": ("level", "chunk", "digests", "crc32"),
}
_LEVELS_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS merkle_levels (
    level INTEGER NOT NULL,
    chunk INTEGER NOT NULL,
    digests BLOB NOT NULL,
    crc32 INTEGER NOT NULL,
    PRIMARY KEY (level, chunk)
);
"""
_log = logging.getLogger(__name__)
_DISCLOSURE_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS disclosure_responses (
    request_id INTEGER PRIMARY KEY,
    leaf_index INTEGER NOT NULL,
    response BLOB NOT NULL,
    digest BLOB NOT NULL,
    stored_at REAL NOT NULL,
    tx_hash BLOB,
    block_number INTEGER,
    fulfilled_at REAL
);
"""
_SCHEMA: Final = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE batches (
    id INTEGER PRIMARY KEY,
    signer TEXT NOT NULL,
    digest BLOB NOT NULL,
    signature BLOB NOT NULL,
    received_at REAL NOT NULL,
    leaf_count INTEGER NOT NULL,
    indexes BLOB NOT NULL
);
CREATE TABLE leaves (
    idx INTEGER PRIMARY KEY,
    leaf_hash BLOB NOT NULL UNIQUE,
    commitment BLOB NOT NULL,
    escrow BLOB NOT NULL,
    match_tag BLOB,
    amount_tag BLOB,
    batch_id INTEGER NOT NULL REFERENCES batches(id)
);
CREATE TABLE checkpoints (
    tree_size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    timestamp INTEGER NOT NULL,
    signature BLOB NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('signed', 'anchored')),
    tx_hash BLOB,
    block_number INTEGER,
    signed_at REAL NOT NULL,
    anchored_at REAL
);
""" + _DISCLOSURE_SCHEMA + _LEVELS_SCHEMA


@dataclass(frozen=True)
class NewBatch:
    """One accepted batch as the writer hands it to the store.

    ``indexes`` holds the log index of every leaf of the signed batch in order (duplicates
    by their existing index); ``leaves`` and ``leaf_hashes`` are only the new ones, which get
    the next indexes of the log in order.
    """

    evidence: BatchEvidence
    received_at: float
    indexes: tuple[int, ...]
    leaves: tuple[Leaf, ...]
    leaf_hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class StoredBatch:
    """A stored batch: its evidence, when it arrived and the log indexes it covers."""

    id: int
    evidence: BatchEvidence
    received_at: float
    indexes: tuple[int, ...]


@dataclass(frozen=True)
class StoredCheckpoint:
    """A checkpoint the sealer signed, and where it was anchored once it was.

    ``status`` is ``"signed"`` (durably saved, anchoring not yet confirmed) or
    ``"anchored"`` (``tx_hash`` and ``block_number`` set).
    """

    checkpoint: Checkpoint
    signature: bytes
    status: CheckpointStatus
    signed_at: float
    tx_hash: bytes | None = None
    block_number: int | None = None
    anchored_at: float | None = None

    @property
    def tree_size(self) -> int:
        """The checkpoint's tree size."""
        return self.checkpoint.tree_size

    @property
    def root(self) -> bytes:
        """The checkpoint's root."""
        return self.checkpoint.root

    @property
    def anchored(self) -> bool:
        """Whether the anchoring transaction is known."""
        return self.status == "anchored"

    def signed(self) -> SignedCheckpoint:
        """The checkpoint with the platform's SM2 signature."""
        return SignedCheckpoint(self.checkpoint, self.signature)

    def to_json(self) -> dict[str, Any]:
        """The JSON form: the checkpoint, its signature and its anchoring (hex for bytes)."""
        return self.signed().to_json() | {
            "status": self.status,
            "tx_hash": self.tx_hash.hex() if self.tx_hash is not None else None,
            "block_number": self.block_number,
        }


@dataclass(frozen=True)
class StoredDisclosureResponse:
    """A sealed answer to a regulator's disclosure request (PROTOCOL §6) kept by the node.

    ``leaf_index`` is the leaf whose commitment was requested, ``digest`` is
    ``SM3(response)``; ``tx_hash`` and ``block_number`` say where ``fulfilDisclosure``
    logged the digest on chain, once it has.
    """

    request_id: int
    leaf_index: int
    response: bytes
    digest: bytes
    stored_at: float
    tx_hash: bytes | None = None
    block_number: int | None = None
    fulfilled_at: float | None = None

    @property
    def fulfilled(self) -> bool:
        """Whether the fulfilment transaction is known."""
        return self.tx_hash is not None


@dataclass(frozen=True, slots=True)
class StoredLeaf:
    """A leaf row as read from the store, not yet checked: the leaf and the leaf hash
    stored beside it (:mod:`ledger_node.platform.integrity` checks both before a leaf
    leaves the node)."""

    index: int
    leaf: Leaf
    leaf_hash: bytes


class _LevelsDamaged(Exception):
    """The stored Merkle levels failed a check: they are rebuilt from the leaves."""


class LeafStore(ABC):
    """What the node needs from a durable store; any backend implements these."""

    @abstractmethod
    def size(self) -> int:
        """The number of stored leaves (indexes are 0..size-1, contiguous)."""

    @abstractmethod
    def append_batches(self, batches: Sequence[NewBatch]) -> None:
        """Store ``batches`` durably in ONE transaction (all or nothing).

        The new leaves of each batch get the next indexes in order; their ``indexes``
        must say so. Returns after the data is on disk. Raises :class:`InvalidBatch` if a
        leaf hash is already stored and :class:`StoreCorrupted` if the write fails; nothing
        is stored then.
        """

    @abstractmethod
    def leaf(self, index: int) -> Leaf:
        """The leaf at ``index``; raise :class:`UnknownLeaf` if there is none."""

    @abstractmethod
    def leaves(self, start: int, stop: int) -> list[Leaf]:
        """The leaves at ``start..stop-1`` in index order, read at once.

        Raises :class:`UnknownLeaf` unless every one of them is stored.
        """

    @abstractmethod
    def leaf_hash(self, index: int) -> bytes:
        """The leaf hash at ``index``; raise :class:`UnknownLeaf` if there is none."""

    @abstractmethod
    def leaf_rows(self, start: int, stop: int) -> list[StoredLeaf]:
        """The rows of leaves ``start..stop-1`` (leaf and stored leaf hash), read at once.

        Raises :class:`UnknownLeaf` unless every one is stored and :class:`LeafDamaged` for
        a row that is not even a leaf (a digest of the wrong length).
        """

    @abstractmethod
    def index_of(self, leaf_hash: bytes) -> int | None:
        """The index of the leaf with ``leaf_hash``, or ``None``."""

    @abstractmethod
    def indexes_of(self, leaf_hashes: Iterable[bytes]) -> dict[bytes, int]:
        """The indexes of those of ``leaf_hashes`` that are stored (others are absent)."""

    @abstractmethod
    def leaf_hashes(self, start: int = 0) -> Iterator[bytes]:
        """Every leaf hash from index ``start`` on, in index order (to rebuild the log)."""

    @abstractmethod
    def load_log(self, hasher: Hasher, *, use_levels: bool = True) -> MerkleLog:
        """The Merkle log of the stored leaves, resumed from the stored levels if any.

        With ``use_levels=False``, or when the stored levels fail their checks, the log is
        rebuilt from every leaf hash. Raises :class:`StoreCorrupted` if the stored levels
        cover more leaves than are stored (acknowledged leaves were lost).
        """

    @property
    @abstractmethod
    def leaves_from_levels(self) -> int:
        """How many leaves the last :meth:`load_log` took from the stored levels (0: none)."""

    @abstractmethod
    def save_levels(self, log: MerkleLog, *, rewrite: bool = False) -> int:
        """Durably store the chunks of ``log``'s levels completed since the last save.

        ``log`` must be the log of this store's leaves. With ``rewrite``, every stored level
        is replaced. Returns the number of chunks written; raises :class:`StoreCorrupted`
        if the write fails.
        """

    @abstractmethod
    def batch_of(self, index: int) -> StoredBatch:
        """The batch that brought leaf ``index``; raise :class:`UnknownLeaf` if none."""

    @abstractmethod
    def save_checkpoint(self, stored: StoredCheckpoint) -> None:
        """Durably save a signed checkpoint (status ``"signed"``).

        Raises :class:`StoreMismatch` if another checkpoint is stored at the same size.
        """

    @abstractmethod
    def mark_anchored(
        self, tree_size: int, tx_hash: bytes, block_number: int, anchored_at: float
    ) -> StoredCheckpoint:
        """Record the anchoring of the checkpoint at ``tree_size``; return it updated.

        Raises :class:`UnknownCheckpoint` if no checkpoint of that size is stored.
        """

    @abstractmethod
    def checkpoints(
        self, status: CheckpointStatus | None = None, *, after: int = 0, limit: int | None = None
    ) -> list[StoredCheckpoint]:
        """Stored checkpoints (optionally of one status), smallest tree size first.

        Only those with ``tree_size > after``, at most ``limit`` of them.
        """

    @abstractmethod
    def latest_checkpoint(self, status: CheckpointStatus = "anchored") -> StoredCheckpoint | None:
        """The stored checkpoint of ``status`` with the largest tree size, or ``None``."""

    @abstractmethod
    def checkpoint_at(self, tree_size: int) -> StoredCheckpoint:
        """The stored checkpoint of ``tree_size``; raise :class:`UnknownCheckpoint` if none."""

    def pending_checkpoints(self) -> list[StoredCheckpoint]:
        """Checkpoints saved as signed whose anchoring is not confirmed, oldest first."""
        return self.checkpoints("signed")

    @abstractmethod
    def index_of_commitment(self, commitment: bytes) -> int | None:
        """The smallest index of a leaf with ``commitment``, or ``None``.

        May scan the log (commitments are not indexed: that would slow every intake down
        for the rare disclosure).
        """

    @abstractmethod
    def save_disclosure_response(self, request_id: int, leaf_index: int, response: bytes,
                                 digest: bytes, stored_at: float) -> StoredDisclosureResponse:
        """Durably store the response to ``request_id``; return what is stored.

        Storing the same response again returns the stored one unchanged. Raises
        :class:`DisclosureConflict` if a response with another digest is stored.
        """

    @abstractmethod
    def mark_disclosure_fulfilled(self, request_id: int, tx_hash: bytes, block_number: int,
                                  fulfilled_at: float) -> StoredDisclosureResponse:
        """Record where the response's digest was logged; return the response updated.

        Raises :class:`DisclosureNotAnswered` if no response to ``request_id`` is stored.
        """

    @abstractmethod
    def disclosure_response(self, request_id: int) -> StoredDisclosureResponse | None:
        """The stored response to ``request_id``, or ``None``."""

    @abstractmethod
    def disclosure_responses(self) -> list[StoredDisclosureResponse]:
        """Every stored response, by request id."""

    @abstractmethod
    def close(self) -> None:
        """Release the store's resources; later calls fail."""


class SQLiteStore(LeafStore):
    """:class:`LeafStore` on one SQLite file (WAL, ``synchronous=FULL``).

    Thread-safe: writes go through one connection under a lock; each reading thread gets
    its own connection, so reads proceed while the writer commits (WAL snapshot reads).
    """

    def __init__(self, path: Path, *, platform: str, log_id: bytes, hash_name: str,
                 read_only: bool = False) -> None:
        """Open (or create) the store at ``path`` for ``platform``'s log ``log_id``.

        A writer (the default) holds the store's lock file until :meth:`close`; with
        ``read_only`` nothing is locked, created or written (writes raise
        :class:`StoreLocked`), for tools that read a store a node may be running on.
        Raises :class:`StoreLocked` if another writer holds the store,
        :class:`StoreCorrupted` if the file is damaged or has an unexpected schema, and
        :class:`StoreMismatch` if it was made for another log, platform or hash.
        """
        self._path = Path(path)
        self._read_only = read_only
        self._meta = {
            "schema_version": str(SCHEMA_VERSION),
            "log_id": log_id.hex(),
            "platform": platform,
            "hash": hash_name,
        }
        self._write_lock = threading.Lock()
        self._readers = ThreadReaders(self._path)
        self._closed = False
        self._level_chunks: list[int] | None = None  # stored chunks per level, once known
        self._levels_saved_at = -1  # the log size at the last save_levels
        self._leaves_from_levels = 0
        self._lock_fd: int | None = None if read_only else self._lock()
        try:
            self._db = self._connect()
        except BaseException:
            self._unlock()
            raise
        try:
            self._open_checked()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            self._unlock()
            raise StoreCorrupted(f"store {self._path} is damaged or not a store: {exc}") from exc
        except BaseException:
            self._db.close()
            self._unlock()
            raise

    @property
    def path(self) -> Path:
        """The store's file."""
        return self._path

    def _lock(self) -> int:
        """Take the exclusive lock of the one writer; raise :class:`StoreLocked` if held."""
        return take_writer_lock(self._path, "store")

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def _writable(self) -> None:
        """Refuse a write through a read-only opener."""
        if self._read_only:
            raise StoreLocked(f"store {self._path} was opened read-only")

    # ------------------------------------------------------------------ opening

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreCorrupted(f"cannot open store {self._path}: {exc}") from exc
        return db

    def _open_checked(self) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout = 5000")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreCorrupted(f"store {self._path} cannot use WAL mode (got {mode!r})")
        db.execute("PRAGMA synchronous = FULL")
        # leaves.batch_id is written in the same transaction as its batch; enforcing the
        # foreign key would cost a lookup per leaf on the hot path.
        db.execute("PRAGMA foreign_keys = OFF")
        # the leaf-hash index takes random inserts: keep its pages in memory (64 MiB)
        db.execute("PRAGMA cache_size = -65536")
        # The check reads every page: through mmap it takes 0.3-0.4 s for a million-leaf
        # store here instead of 0.6-0.9 s with read() into the page cache. The mapping is
        # dropped after it, so that normal operation keeps SQLite's default read() I/O.
        db.execute(f"PRAGMA mmap_size = {_CHECK_MMAP_BYTES}")
        try:
            problems = [str(r[0]) for r in db.execute("PRAGMA quick_check").fetchall()]
        finally:
            db.execute("PRAGMA mmap_size = 0")
        if problems != ["ok"]:
            raise StoreCorrupted(
                f"store {self._path} failed its integrity check: {'; '.join(problems[:5])}"
            )
        tables = {
            str(r[0])
            for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not tables and self._read_only:
            raise StoreCorrupted(f"store {self._path} is empty: nothing to read")
        if not tables:
            # executescript commits any open transaction first, so the script carries its own
            # BEGIN/COMMIT: tables and meta appear together or not at all.
            inserts = "".join(
                f"INSERT INTO meta (key, value) VALUES ('{k}', '{v.replace(chr(39), '')}');"
                for k, v in sorted(self._meta.items())
            )
            db.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}{inserts}COMMIT;")
            return
        self._check_schema(tables)
        self._check_meta()
        if not set(_ADDED_TABLES) <= tables and not self._read_only:
            db.executescript(f"BEGIN IMMEDIATE;{_DISCLOSURE_SCHEMA}{_LEVELS_SCHEMA}COMMIT;")
        count, top = db.execute("SELECT COUNT(*), MAX(idx) FROM leaves").fetchone()
        if count and top != count - 1:
            raise StoreCorrupted(
                f"store {self._path} has {count} leaves but the largest index is {top}: "
                "the leaf indexes are not contiguous"
            )

    def _check_schema(self, tables: set[str]) -> None:
        missing = sorted(set(_TABLES) - tables)
        if missing:
            raise StoreCorrupted(f"store {self._path} lacks the table(s) {missing}")
        expected = _TABLES | {t: c for t, c in _ADDED_TABLES.items() if t in tables}
        for table, columns in expected.items():
            found = tuple(str(r[1]) for r in self._db.execute(f"PRAGMA table_info({table})"))
            if found != columns:
                raise StoreCorrupted(
                    f"store {self._path}: table {table} has columns {found}, "
                    f"expected {columns}"
                )

    def _check_meta(self) -> None:
        meta = {str(k): str(v) for k, v in self._db.execute("SELECT key, value FROM meta")}
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise StoreCorrupted(
                f"store {self._path} has schema version {version!r}, "
                f"this node reads version {SCHEMA_VERSION}"
            )
        for key in ("platform", "log_id", "hash"):
            if meta.get(key) != self._meta[key]:
                raise StoreMismatch(
                    f"store {self._path} was made for {key} {meta.get(key)!r}, not "
                    f"{self._meta[key]!r}: use another store path for this log"
                )

    # ------------------------------------------------------------------ plumbing

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self._db = db

        def __enter__(self) -> None:
            self._db.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            if exc_type is None:
                self._db.execute("COMMIT")
            else:
                self._db.execute("ROLLBACK")

    def _transaction(self) -> SQLiteStore._Tx:
        return SQLiteStore._Tx(self._db)

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise NodeStopped(f"store {self._path} is closed")
        return self._readers.get()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.ProgrammingError as exc:  # closed by close() in another thread
            raise NodeStopped(f"store {self._path} is closed") from exc
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupted(f"store {self._path}: read failed: {exc}") from exc

    # ------------------------------------------------------------------ leaves

    def size(self) -> int:
        """The number of stored leaves."""
        rows = self._query("SELECT MAX(idx) FROM leaves")
        top = rows[0][0]
        return 0 if top is None else int(top) + 1

    def append_batches(self, batches: Sequence[NewBatch]) -> None:
        """Store ``batches`` in one durable transaction; see :meth:`LeafStore.append_batches`."""
        if not batches:
            return
        self._writable()
        with self._write_lock:
            if self._closed:
                raise NodeStopped(f"store {self._path} is closed")
            db = self._db
            try:
                with self._transaction():
                    top = db.execute("SELECT MAX(idx) FROM leaves").fetchone()[0]
                    next_index = 0 if top is None else int(top) + 1
                    for batch in batches:
                        cur = db.execute(
                            "INSERT INTO batches (signer, digest, signature, received_at, "
                            "leaf_count, indexes) VALUES (?, ?, ?, ?, ?, ?)",
                            (batch.evidence.signer, batch.evidence.digest,
                             batch.evidence.signature, batch.received_at, len(batch.indexes),
                             b"".join(i.to_bytes(8, "big") for i in batch.indexes)),
                        )
                        batch_id = cur.lastrowid
                        rows = []
                        for leaf, leaf_hash in zip(batch.leaves, batch.leaf_hashes, strict=True):
                            rows.append((next_index, leaf_hash, leaf.commitment, leaf.escrow,
                                         leaf.match_tag, leaf.amount_tag, batch_id))
                            next_index += 1
                        db.executemany(
                            "INSERT INTO leaves (idx, leaf_hash, commitment, escrow, match_tag,"
                            " amount_tag, batch_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            rows,
                        )
            except sqlite3.IntegrityError as exc:  # a caller bug: leaves must be deduplicated
                raise InvalidBatch(f"leaf already stored, nothing written: {exc}") from exc
            except sqlite3.DatabaseError as exc:
                raise StoreCorrupted(f"store {self._path}: write failed: {exc}") from exc

    def leaf(self, index: int) -> Leaf:
        """The leaf at ``index``, unchecked; raise :class:`UnknownLeaf` if there is none."""
        return self.leaf_rows(index, index + 1)[0].leaf

    def leaf_rows(self, start: int, stop: int) -> list[StoredLeaf]:
        """The rows of leaves ``start..stop-1`` in one indexed range query; see
        :meth:`LeafStore.leaf_rows`. An empty range gives ``[]``."""
        if stop <= start:
            return []
        rows = self._query(
            "SELECT idx, commitment, escrow, match_tag, amount_tag, leaf_hash FROM leaves"
            " WHERE idx >= ? AND idx < ? ORDER BY idx", (start, stop)
        )
        if len(rows) != stop - start:
            if stop - start == 1:
                raise UnknownLeaf(f"no leaf at index {start}")
            raise UnknownLeaf(
                f"leaves {start}..{stop - 1} are not all stored ({len(rows)} of {stop - start})"
            )
        return [self._stored_leaf(row) for row in rows]

    def scan_leaf_rows(self, start: int = 0, *, page: int = 8192) -> Iterator[list[StoredLeaf]]:
        """Every leaf row from ``start`` on, ``page`` rows at a time, in index order (fsck)."""
        size = self.size()
        for first in range(start, size, page):
            yield self.leaf_rows(first, min(size, first + page))

    def _stored_leaf(self, row: Sequence[Any]) -> StoredLeaf:
        """A ``leaves`` row as a :class:`StoredLeaf`; :class:`LeafDamaged` if it cannot even
        be a leaf (a commitment, tag or leaf hash of the wrong length, a giant escrow)."""
        idx, commitment, escrow, match_tag, amount_tag, leaf_hash = row
        try:
            leaf = Leaf(bytes(commitment), bytes(escrow),
                        None if match_tag is None else bytes(match_tag),
                        None if amount_tag is None else bytes(amount_tag))
        except (InvalidLeaf, TypeError) as exc:
            raise LeafDamaged(str(self._path), int(idx), f"the row is not a leaf: {exc}"
                              ) from None
        return StoredLeaf(int(idx), leaf, bytes(leaf_hash))

    def leaves(self, start: int, stop: int) -> list[Leaf]:
        """The leaves at ``start..stop-1``, unchecked, in one indexed range query (see
        :meth:`LeafStore.leaves`); an empty range gives ``[]``."""
        return [row.leaf for row in self.leaf_rows(start, stop)]

    def leaf_hash(self, index: int) -> bytes:
        """The leaf hash at ``index``; raise :class:`UnknownLeaf` if there is none."""
        rows = self._query("SELECT leaf_hash FROM leaves WHERE idx = ?", (index,))
        if not rows:
            raise UnknownLeaf(f"no leaf at index {index}")
        return bytes(rows[0][0])

    def index_of(self, leaf_hash: bytes) -> int | None:
        """The index of the leaf with ``leaf_hash``, or ``None``."""
        rows = self._query("SELECT idx FROM leaves WHERE leaf_hash = ?", (leaf_hash,))
        return int(rows[0][0]) if rows else None

    def indexes_of(self, leaf_hashes: Iterable[bytes]) -> dict[bytes, int]:
        """The indexes of those of ``leaf_hashes`` that are stored."""
        wanted = list(dict.fromkeys(leaf_hashes))
        found: dict[bytes, int] = {}
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start:start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            for leaf_hash, idx in self._query(
                f"SELECT leaf_hash, idx FROM leaves WHERE leaf_hash IN ({marks})", chunk
            ):
                found[bytes(leaf_hash)] = int(idx)
        return found

    def leaf_hashes(self, start: int = 0) -> Iterator[bytes]:
        """Every leaf hash from index ``start`` on, in index order."""
        try:
            cur = self._reader().execute(
                "SELECT leaf_hash FROM leaves WHERE idx >= ? ORDER BY idx", (start,))
            while True:
                rows = cur.fetchmany(65536)
                if not rows:
                    return
                for (leaf_hash,) in rows:
                    yield bytes(leaf_hash)
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupted(f"store {self._path}: read failed: {exc}") from exc

    def batches(self, *, page: int = 1000) -> Iterator[StoredBatch]:
        """Every stored batch, by id, ``page`` rows per read (fsck); a restored batch has an
        empty signature."""
        after = 0
        while True:
            rows = self._query("SELECT id, signer, digest, signature, received_at, indexes "
                               "FROM batches WHERE id > ? ORDER BY id LIMIT ?", (after, page))
            for batch_id, signer, digest, signature, received_at, raw in rows:
                raw = bytes(raw)
                yield StoredBatch(int(batch_id),
                                  BatchEvidence(str(signer), bytes(digest), bytes(signature)),
                                  float(received_at),
                                  tuple(int.from_bytes(raw[i:i + 8], "big")
                                        for i in range(0, len(raw), 8)))
            if len(rows) < page:
                return
            after = int(rows[-1][0])

    def leaves_at(self, indexes: Iterable[int]) -> dict[int, Leaf]:
        """The leaves at ``indexes`` (those stored), unchecked, by index."""
        wanted = sorted(set(indexes))
        found: dict[int, Leaf] = {}
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start:start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in self._query(
                "SELECT idx, commitment, escrow, match_tag, amount_tag, leaf_hash FROM leaves"
                f" WHERE idx IN ({marks})", chunk
            ):
                stored = self._stored_leaf(row)
                found[stored.index] = stored.leaf
        return found

    def batch_of(self, index: int) -> StoredBatch:
        """The batch that brought leaf ``index``; raise :class:`UnknownLeaf` if none."""
        rows = self._query(
            "SELECT b.id, b.signer, b.digest, b.signature, b.received_at, b.indexes "
            "FROM leaves l JOIN batches b ON b.id = l.batch_id WHERE l.idx = ?", (index,)
        )
        if not rows:
            raise UnknownLeaf(f"no leaf at index {index}")
        batch_id, signer, digest, signature, received_at, raw = rows[0]
        if not signature:
            raise BatchEvidenceLost(
                f"leaf {index} was restored from the regulator's verified copy at "
                f"{received_at:.0f} (Unix time); the signed batch it arrived in was lost with "
                "the store's tail")
        raw = bytes(raw)
        indexes = tuple(int.from_bytes(raw[i:i + 8], "big") for i in range(0, len(raw), 8))
        return StoredBatch(int(batch_id), BatchEvidence(str(signer), bytes(digest),
                                                        bytes(signature)),
                           float(received_at), indexes)

    # ------------------------------------------------------------------ Merkle levels

    def load_log(self, hasher: Hasher, *, use_levels: bool = True) -> MerkleLog:
        """The log of the stored leaves, resumed from ``merkle_levels``; see
        :meth:`LeafStore.load_log`.

        Reads the stored chunks, then the leaf hashes after the last stored level-0 chunk
        (fewer than :data:`LEVEL_CHUNK` after a clean run), and hashes only what the stored
        levels lack. Levels that fail a check (a CRC, a missing chunk, more digests than the
        leaves give a level, a last stored leaf hash that differs from the leaves table) are
        logged and ignored: the log is then rebuilt from every leaf hash, and
        :meth:`save_levels` rewrites them.
        """
        db = self._reader()
        db.execute("BEGIN")  # one read snapshot: size, levels and tail agree with each other
        try:
            return self._load_log(hasher, use_levels)
        finally:
            if db.in_transaction:
                db.execute("COMMIT")

    def _load_log(self, hasher: Hasher, use_levels: bool) -> MerkleLog:
        size = self.size()
        prefixes: list[bytearray] = []
        if not use_levels:
            self._level_chunks = None
        else:
            try:
                prefixes = self._stored_levels(hasher.digest_size, size)
            except _LevelsDamaged as exc:
                _log.warning("store %s: the stored Merkle levels are not usable (%s); "
                             "rebuilding them from the leaf hashes", self._path, exc)
                self._level_chunks = None
                self._levels_saved_at = -1
        covered = len(prefixes[0]) // hasher.digest_size if prefixes else 0
        tail = b"".join(self.leaf_hashes(covered))
        try:
            log = MerkleLog.from_level_prefixes(hasher, prefixes, tail)
        except ValueError as exc:  # a leaf hash of another length: not this store's hash
            raise StoreCorrupted(f"store {self._path}: {exc}") from exc
        if log.size != size:
            raise StoreCorrupted(f"store {self._path}: read {log.size} leaf hashes, "
                                 f"expected {size}")
        self._leaves_from_levels = covered
        return log

    @property
    def leaves_from_levels(self) -> int:
        """How many leaves the last :meth:`load_log` took from the stored levels (0: none)."""
        return self._leaves_from_levels

    def level_rows(self) -> Iterator[tuple[int, int, bytes, int]]:
        """Every stored ``merkle_levels`` row as it is, ``(level, chunk, digests, crc32)``,
        by level and chunk, unchecked (fsck compares them with the rebuilt tree)."""
        for level, chunk, digests, crc in self._query(
            "SELECT level, chunk, digests, crc32 FROM merkle_levels ORDER BY level, chunk"
        ):
            yield int(level), int(chunk), bytes(digests), int(crc)

    def _stored_levels(self, digest_size: int, size: int) -> list[bytearray]:
        """The stored levels' digests, each level's chunks concatenated; checked."""
        chunk_bytes = LEVEL_CHUNK * digest_size
        levels: list[bytearray] = []
        for level, chunk, digests, crc in self._query(
            "SELECT level, chunk, digests, crc32 FROM merkle_levels ORDER BY level, chunk"
        ):
            if level == len(levels):
                levels.append(bytearray())
            if level != len(levels) - 1 or chunk != len(levels[level]) // chunk_bytes:
                raise _LevelsDamaged(f"chunk {chunk} of level {level} is out of sequence")
            if len(digests) != chunk_bytes or zlib.crc32(digests) != crc:
                raise _LevelsDamaged(f"chunk {chunk} of level {level} fails its CRC-32 or "
                                     "length check")
            levels[level] += digests
        if not levels:
            self._level_chunks = []
            return []
        covered = len(levels[0]) // digest_size
        if covered > size:
            raise StoreCorrupted(
                f"store {self._path}: the Merkle levels cover {covered} leaves but only {size} "
                "are stored: acknowledged leaves were lost"
            )
        for level, digests in enumerate(levels):
            if len(digests) // digest_size > size >> level:
                raise _LevelsDamaged(f"level {level} holds more digests than {size} leaves give")
        if levels[0][-digest_size:] != self.leaf_hash(covered - 1):
            raise _LevelsDamaged(f"leaf hash {covered - 1} differs from the leaves table")
        self._level_chunks = [len(digests) // chunk_bytes for digests in levels]
        return levels

    def save_levels(self, log: MerkleLog, *, rewrite: bool = False) -> int:
        """Store the level chunks ``log`` completed since the last save; see
        :meth:`LeafStore.save_levels`. Cheap when none did (the writer calls it per commit).
        """
        size = log.size
        if not rewrite and size // LEVEL_CHUNK == self._levels_saved_at // LEVEL_CHUNK:
            return 0
        self._writable()
        with self._write_lock:
            if self._closed:
                raise NodeStopped(f"store {self._path} is closed")
            # unknown stored chunks (no clean load_log before): replace them all
            rewrite = rewrite or self._level_chunks is None
            stored = [] if rewrite else self._level_chunks or []
            rows = []
            counts = []
            for level in range(size.bit_length()):
                complete = (size >> level) // LEVEL_CHUNK
                if not complete:
                    break
                counts.append(complete)
                for chunk in range(stored[level] if level < len(stored) else 0, complete):
                    digests = log.level_digests(level, chunk * LEVEL_CHUNK,
                                                (chunk + 1) * LEVEL_CHUNK)
                    rows.append((level, chunk, digests, zlib.crc32(digests)))
            if not rows and not rewrite:
                self._levels_saved_at = size
                return 0
            try:
                # Levels are a cache of durable leaves: their commit need not wait for an
                # fsync (synchronous=NORMAL keeps WAL consistent, only not yet durable); the
                # next leaf commit (FULL) syncs them too. A crash before loses only them.
                self._db.execute("PRAGMA synchronous = NORMAL")
                try:
                    with self._transaction():
                        if rewrite:
                            self._db.execute("DELETE FROM merkle_levels")
                        self._db.executemany(
                            "INSERT OR REPLACE INTO merkle_levels (level, chunk, digests, crc32)"
                            " VALUES (?, ?, ?, ?)", rows)
                finally:
                    self._db.execute("PRAGMA synchronous = FULL")
            except sqlite3.DatabaseError as exc:
                raise StoreCorrupted(f"store {self._path}: write failed: {exc}") from exc
            self._level_chunks = counts
            self._levels_saved_at = size
            return len(rows)

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, stored: StoredCheckpoint) -> None:
        """Durably save a signed checkpoint; see :meth:`LeafStore.save_checkpoint`."""
        cp = stored.checkpoint
        self._writable()
        with self._write_lock:
            try:
                with self._transaction():
                    self._db.execute(
                        "INSERT INTO checkpoints (tree_size, root, timestamp, signature, status,"
                        " tx_hash, block_number, signed_at, anchored_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (cp.tree_size, cp.root, cp.timestamp, stored.signature, stored.status,
                         stored.tx_hash, stored.block_number, stored.signed_at,
                         stored.anchored_at),
                    )
            except sqlite3.IntegrityError as exc:
                raise StoreMismatch(
                    f"a checkpoint of size {cp.tree_size} is already stored: {exc}"
                ) from exc
            except sqlite3.DatabaseError as exc:
                raise StoreCorrupted(f"store {self._path}: write failed: {exc}") from exc

    def mark_anchored(
        self, tree_size: int, tx_hash: bytes, block_number: int, anchored_at: float
    ) -> StoredCheckpoint:
        """Record where the checkpoint at ``tree_size`` was anchored; return it updated."""
        self._writable()
        with self._write_lock:
            try:
                with self._transaction():
                    cur = self._db.execute(
                        "UPDATE checkpoints SET status = 'anchored', tx_hash = ?,"
                        " block_number = ?, anchored_at = ? WHERE tree_size = ?",
                        (tx_hash, block_number, anchored_at, tree_size),
                    )
                    if cur.rowcount != 1:
                        raise UnknownCheckpoint(f"no stored checkpoint of size {tree_size}")
            except sqlite3.DatabaseError as exc:
                raise StoreCorrupted(f"store {self._path}: write failed: {exc}") from exc
        return self.checkpoint_at(tree_size)

    def checkpoint_at(self, tree_size: int) -> StoredCheckpoint:
        """The stored checkpoint of ``tree_size``; raise :class:`UnknownCheckpoint` if none."""
        found = self._checkpoint_rows("WHERE tree_size = ?", (tree_size,))
        if not found:
            raise UnknownCheckpoint(f"no stored checkpoint of size {tree_size}")
        return found[0]

    def checkpoints(
        self, status: CheckpointStatus | None = None, *, after: int = 0, limit: int | None = None
    ) -> list[StoredCheckpoint]:
        """Stored checkpoints (optionally of one status), smallest tree size first."""
        where = "WHERE tree_size > ?"
        params: list[Any] = [after]
        if status is not None:
            where += " AND status = ?"
            params.append(status)
        return self._checkpoint_rows(where, params, -1 if limit is None else max(0, limit))

    def latest_checkpoint(self, status: CheckpointStatus = "anchored") -> StoredCheckpoint | None:
        """The stored checkpoint of ``status`` with the largest tree size, or ``None``."""
        rows = self._query("SELECT MAX(tree_size) FROM checkpoints WHERE status = ?", (status,))
        return None if rows[0][0] is None else self.checkpoint_at(int(rows[0][0]))

    def _checkpoint_rows(
        self, where: str, params: Sequence[Any], limit: int = -1
    ) -> list[StoredCheckpoint]:
        meta = self._meta
        log_id = bytes.fromhex(meta["log_id"])
        out = []
        for (size, root, ts, sig, status, tx, block, signed_at, anchored_at) in self._query(
            "SELECT tree_size, root, timestamp, signature, status, tx_hash, block_number,"
            f" signed_at, anchored_at FROM checkpoints {where} ORDER BY tree_size LIMIT ?",
            [*params, limit],
        ):
            checkpoint = Checkpoint(meta["platform"], log_id, int(size), bytes(root), int(ts),
                                    meta["hash"])
            out.append(StoredCheckpoint(
                checkpoint, bytes(sig), "anchored" if status == "anchored" else "signed",
                float(signed_at), None if tx is None else bytes(tx),
                None if block is None else int(block),
                None if anchored_at is None else float(anchored_at),
            ))
        return out

    # ------------------------------------------------------------------ disclosures

    def index_of_commitment(self, commitment: bytes) -> int | None:
        """The smallest index of a leaf with ``commitment`` (a scan), or ``None``."""
        rows = self._query("SELECT MIN(idx) FROM leaves WHERE commitment = ?", (commitment,))
        return None if rows[0][0] is None else int(rows[0][0])

    def save_disclosure_response(self, request_id: int, leaf_index: int, response: bytes,
                                 digest: bytes, stored_at: float) -> StoredDisclosureResponse:
        """Durably store a response; see :meth:`LeafStore.save_disclosure_response`."""
        self._writable()
        with self._write_lock:
            if self._closed:
                raise NodeStopped(f"store {self._path} is closed")
            try:
                with self._transaction():
                    found = self._db.execute(
                        "SELECT digest FROM disclosure_responses WHERE request_id = ?",
                        (request_id,)).fetchone()
                    if found is None:
                        self._db.execute(
                            "INSERT INTO disclosure_responses (request_id, leaf_index, response,"
                            " digest, stored_at) VALUES (?, ?, ?, ?, ?)",
                            (request_id, leaf_index, response, digest, stored_at))
                    elif bytes(found[0]) != digest:
                        raise DisclosureConflict(
                            f"disclosure request {request_id} was already answered with a "
                            f"response of digest {bytes(found[0]).hex()}, not {digest.hex()}"
                        )
            except sqlite3.DatabaseError as exc:
                raise StoreCorrupted(f"store {self._path}: write failed: {exc}") from exc
        stored = self.disclosure_response(request_id)
        assert stored is not None
        return stored

    def mark_disclosure_fulfilled(self, request_id: int, tx_hash: bytes, block_number: int,
                                  fulfilled_at: float) -> StoredDisclosureResponse:
        """Record the fulfilment transaction; see :meth:`LeafStore.mark_disclosure_fulfilled`."""
        self._writable()
        with self._write_lock:
            if self._closed:
                raise NodeStopped(f"store {self._path} is closed")
            try:
                with self._transaction():
                    cur = self._db.execute(
                        "UPDATE disclosure_responses SET tx_hash = ?, block_number = ?,"
                        " fulfilled_at = ? WHERE request_id = ?",
                        (tx_hash, block_number, fulfilled_at, request_id))
                    if cur.rowcount != 1:
                        raise DisclosureNotAnswered(
                            f"no response to disclosure request {request_id} is stored")
            except sqlite3.DatabaseError as exc:
                raise StoreCorrupted(f"store {self._path}: write failed: {exc}") from exc
        stored = self.disclosure_response(request_id)
        assert stored is not None
        return stored

    def disclosure_response(self, request_id: int) -> StoredDisclosureResponse | None:
        """The stored response to ``request_id``, or ``None``."""
        found = self._disclosure_rows("WHERE request_id = ?", (request_id,))
        return found[0] if found else None

    def disclosure_responses(self) -> list[StoredDisclosureResponse]:
        """Every stored response, by request id."""
        return self._disclosure_rows("", ())

    def _disclosure_rows(self, where: str, params: Sequence[Any]
                         ) -> list[StoredDisclosureResponse]:
        return [
            StoredDisclosureResponse(
                int(request_id), int(index), bytes(response), bytes(digest), float(stored_at),
                None if tx is None else bytes(tx), None if block is None else int(block),
                None if fulfilled_at is None else float(fulfilled_at))
            for request_id, index, response, digest, stored_at, tx, block, fulfilled_at
            in self._query(
                "SELECT request_id, leaf_index, response, digest, stored_at, tx_hash,"
                f" block_number, fulfilled_at FROM disclosure_responses {where}"
                " ORDER BY request_id", params)
        ]

    # ------------------------------------------------------------------ repair (fsck)

    def repair(self, *, replaced: Sequence[StoredLeaf] = (),
               appended: Sequence[StoredLeaf] = (),
               checkpoints: Sequence[StoredCheckpoint] = (),
               dropped_checkpoints: Sequence[int] = (), restored_at: float = 0.0) -> None:
        """Write what ``jointledger fsck --repair-from`` verified, in ONE durable transaction.

        ``replaced``: damaged rows overwritten with verified copies (same index).
        ``appended``: leaves restored after the last stored one, in order from the store's
        size on; they get one batch row with an empty signature (their signed batch was lost
        with the tail; :meth:`batch_of` raises :class:`BatchEvidenceLost` for them).
        ``checkpoints``: anchored checkpoints read from the chain that the store lost (added,
        or replacing a stored one of the same size). ``dropped_checkpoints``: sizes of signed,
        never anchored checkpoints the chain has since passed (they can no longer be
        anchored, and were never served). The stored Merkle levels are dropped: the next
        start rebuilds them from the leaf hashes. The caller verified every row against the
        anchored roots; nothing is checked here.
        """
        self._writable()
        with self._write_lock:
            if self._closed:
                raise NodeStopped(f"store {self._path} is closed")
            db = self._db
            try:
                with self._transaction():
                    db.executemany(
                        "UPDATE leaves SET leaf_hash = ?, commitment = ?, escrow = ?,"
                        " match_tag = ?, amount_tag = ? WHERE idx = ?",
                        [(r.leaf_hash, r.leaf.commitment, r.leaf.escrow, r.leaf.match_tag,
                          r.leaf.amount_tag, r.index) for r in replaced])
                    if appended:
                        top = db.execute("SELECT MAX(idx) FROM leaves").fetchone()[0]
                        first = 0 if top is None else int(top) + 1
                        if [r.index for r in appended] != list(
                                range(first, first + len(appended))):
                            raise StoreCorrupted(f"store {self._path}: restored leaves must "
                                                 f"follow on from index {first}")
                        cur = db.execute(
                            "INSERT INTO batches (signer, digest, signature, received_at, "
                            "leaf_count, indexes) VALUES ('', X'', X'', ?, ?, ?)",
                            (restored_at, len(appended),
                             b"".join(r.index.to_bytes(8, "big") for r in appended)))
                        db.executemany(
                            "INSERT INTO leaves (idx, leaf_hash, commitment, escrow, match_tag,"
                            " amount_tag, batch_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [(r.index, r.leaf_hash, r.leaf.commitment, r.leaf.escrow,
                              r.leaf.match_tag, r.leaf.amount_tag, cur.lastrowid)
                             for r in appended])
                    db.executemany("DELETE FROM checkpoints WHERE tree_size = ?",
                                   [(size,) for size in dropped_checkpoints])
                    db.executemany(
                        "INSERT OR REPLACE INTO checkpoints (tree_size, root, timestamp,"
                        " signature, status, tx_hash, block_number, signed_at, anchored_at)"
                        " VALUES (?, ?, ?, ?, 'anchored', ?, ?, ?, ?)",
                        [(c.tree_size, c.root, c.checkpoint.timestamp, c.signature, c.tx_hash,
                          c.block_number, c.signed_at, c.anchored_at) for c in checkpoints])
                    db.execute("DELETE FROM merkle_levels")
            except sqlite3.DatabaseError as exc:
                raise StoreCorrupted(f"store {self._path}: write failed: {exc}") from exc
            self._level_chunks = None
            self._levels_saved_at = -1

    def close(self) -> None:
        """Close every connection of this store (idempotent)."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._readers.close()
            self._db.close()
            self._unlock()

    def mark_unanchored(self, tree_size: int) -> StoredCheckpoint:
        """Put the anchored checkpoint at ``tree_size`` back to ``"signed"`` (its anchoring
        transaction is no longer in the chain: a reorganisation or a rolled-back chain), so
        the sealer anchors it again; return it updated. A signed one is returned unchanged.

        Raises :class:`UnknownCheckpoint` if no checkpoint of that size is stored.
        """
        self._writable()
        with self._write_lock:
            try:
                with self._transaction():
                    self._db.execute(
                        "UPDATE checkpoints SET status = 'signed', tx_hash = NULL,"
                        " block_number = NULL, anchored_at = NULL WHERE tree_size = ?",
                        (tree_size,),
                    )
            except sqlite3.DatabaseError as exc:
                raise StoreCorrupted(f"store {self._path}: write failed: {exc}") from exc
        return self.checkpoint_at(tree_size)
