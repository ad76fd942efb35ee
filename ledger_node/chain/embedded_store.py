"""A durable embedded chain: eth-tester / py-evm over a SQLite key-value store.

py-evm keeps every piece of chain data (headers, bodies, receipts, state-trie nodes, the
canonical-head pointer) in one flat key-value database behind its ``AtomicDatabaseAPI``.
eth-tester gives it an in-memory dict; :class:`SqliteKV` is the same interface over one
SQLite table ``kv(key BLOB PRIMARY KEY, value BLOB)`` in WAL mode with
``synchronous=FULL``, wrapped in py-evm's own :class:`~eth.db.atomic.AtomicDB`.

Writes go into one open SQLite transaction that :class:`DurablePyEVMBackend` commits after
each mined block, so a block (its state nodes, body, receipts and the new canonical head)
becomes durable all at once or not at all. eth-tester mines a block for every transaction
before returning its hash, so a transaction hash handed to a client names a committed block.

:func:`open_chain_store` creates the store on first use (the genesis eth-tester would make:
same chain id, same ten funded development accounts ``0x…01``–``0x…0a``, same genesis
parameters), written to a temporary file and renamed into place so a crash cannot leave a
half-created store; later opens resume the chain at its committed head. A file that is not
a complete store (truncated, overwritten, another program's SQLite file) raises
:class:`~ledger_node.errors.ChainStoreCorrupt`; a store already open in another process
raises :class:`~ledger_node.errors.ChainError`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import rlp  # type: ignore[import-untyped]
from eth.abc import BlockHeaderAPI
from eth.db.atomic import AtomicDB
from eth.db.backends.base import BaseDB
from eth.exceptions import CanonicalHeadNotFound, HeaderNotFound
from eth_tester import EthereumTester
from eth_tester.backends.pyevm.main import (
    generate_genesis_state_for_keys,
    get_default_account_keys,
    get_default_genesis_params,
)
from eth_typing import BlockNumber, Hash32
from eth_utils.crypto import keccak

from ledger_node.chain.tester_chain import TESTER_CHAIN_ID, TesterBackend, TesterChain
from ledger_node.errors import ChainError, ChainStoreCorrupt

__all__ = [
    "FORMAT_VERSION",
    "TESTER_CHAIN_ID",
    "ChainStore",
    "ChainStoreInfo",
    "DurablePyEVMBackend",
    "SqliteKV",
    "TesterChain",
    "close_chain_store",
    "open_chain_store",
    "verify_chain",
    "verify_state",
]

FORMAT_VERSION: Final = 1
"""Version of the store layout, kept in the ``meta`` table."""

_MAGIC: Final = b"jointledger-embedded-chain"
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
)


class SqliteKV(BaseDB):
    """py-evm's flat key-value ``DatabaseAPI`` over one SQLite table.

    Writes accumulate in an open transaction until :meth:`commit`; reads see them. Calls
    are serialised by an internal lock (py-evm itself is single-threaded; the chain server
    calls it from its request threads under its own lock). The connection takes SQLite's
    exclusive lock, so a second process cannot open the same store and fork the chain.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        """Wrap an open connection whose schema exists (see :func:`open_chain_store`)."""
        self._db = connection
        self._lock = threading.RLock()

    def __getitem__(self, key: bytes) -> bytes:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return bytes(row[0])

    def __setitem__(self, key: bytes, value: bytes) -> None:
        with self._lock:
            self._begin()
            self._db.execute(
                "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, bytes(value))
            )

    def __delitem__(self, key: bytes) -> None:
        with self._lock:
            self._begin()
            if self._db.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount == 0:
                raise KeyError(key)

    def _exists(self, key: bytes) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM kv WHERE key = ?", (key,)).fetchone() is not None

    def _begin(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        """Make every write so far durable (one SQLite commit, fsynced); no-op if none."""
        with self._lock:
            if self._db.in_transaction:
                self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM kv").fetchone()[0])

    def close(self) -> None:
        """Commit and close the connection (idempotent)."""
        with self._lock:
            try:
                self.commit()
            except sqlite3.ProgrammingError:  # already closed
                return
            self._db.close()


class DurablePyEVMBackend(TesterBackend):
    """eth-tester's py-evm backend over a given (stored) chain, committing every mined block.

    Everything else (serialisation, calls, estimates, receipts) is eth-tester's own code;
    block times follow the clock (:class:`~ledger_node.chain.tester_chain.TesterChain`).
    ``reset_to_genesis`` (it would swap the stored chain for an in-memory one) and
    ``revert_to_snapshot`` (it would drop mined blocks) are refused.
    """

    def __init__(self, chain: TesterChain, kv: SqliteKV) -> None:
        """Serve ``chain`` (stored in ``kv``) with eth-tester's ten funded dev keys."""
        super().__init__(chain)
        self._kv = kv

    def reset_to_genesis(self, *args: Any, **kwargs: Any) -> None:
        """Refused on a stored chain: raise :class:`ChainError`."""
        raise ChainError("a stored embedded chain cannot be reset to genesis: delete its file")

    def mine_blocks(self, num_blocks: int = 1, coinbase: bytes = b"\0" * 20) -> tuple[bytes, ...]:
        """Mine ``num_blocks`` blocks, committing each to disk before the next; their hashes."""
        hashes: list[bytes] = []
        for _ in range(num_blocks):
            hashes.extend(super().mine_blocks(1, coinbase))
            self._kv.commit()
        return tuple(hashes)

    def apply_withdrawals(self, withdrawals_list: list[dict[str, int | str]]) -> None:
        """Apply withdrawals in a new block (eth-tester's), then commit it."""
        super().apply_withdrawals(withdrawals_list)
        self._kv.commit()

    def close(self) -> None:
        """Commit what is pending and close the database (idempotent)."""
        self._kv.close()

    def revert_to_snapshot(self, snapshot: Any) -> None:
        """Refused on a stored chain: rewinding would drop mined, acknowledged blocks.

        Raises :class:`ChainError`.
        """
        raise ChainError("a stored embedded chain cannot be rewound to a snapshot")


@dataclass(frozen=True)
class ChainStoreInfo:
    """What :func:`open_chain_store` found: whether it created the store, and its head."""

    path: Path
    created: bool
    head_number: int
    head_hash: bytes
    genesis_hash: bytes


class ChainStore:
    """An open store: its ``tester`` (give it to ``EthereumTesterProvider``), ``kv``, ``info``.

    Made by :func:`open_chain_store`; :meth:`close` releases the file.
    """

    def __init__(self, tester: EthereumTester, kv: SqliteKV, info: ChainStoreInfo) -> None:
        self.tester = tester
        self.kv = kv
        self.info = info

    @property
    def chain(self) -> TesterChain:
        """The py-evm chain."""
        backend: DurablePyEVMBackend = self.tester.backend
        return backend.chain

    def close(self) -> None:
        """Commit what is pending and close the database (idempotent)."""
        self.kv.close()


def _connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode, fsyncing every commit, holding the file exclusively.

    Raises :class:`ChainError` if another connection holds the file, ``sqlite3`` errors
    for a file SQLite cannot read.
    """
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0.0)
    try:
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL mode (got {mode!r})")
        db.execute("PRAGMA synchronous = FULL")
    except sqlite3.OperationalError as exc:
        db.close()
        if "locked" in str(exc):
            raise ChainError(f"chain store {path} is open in another process") from exc
        raise
    except BaseException:
        db.close()
        raise
    return db


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create(path: Path) -> None:
    """Write a new store with eth-tester's genesis to a temporary file, then rename it."""
    tmp = path.with_name(path.name + ".creating")
    for stale in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        stale.unlink(missing_ok=True)
    db = _connect(tmp)
    try:
        for statement in _SCHEMA:
            db.execute(statement)
        kv = SqliteKV(db)
        genesis_state = generate_genesis_state_for_keys(get_default_account_keys())
        chain = TesterChain.from_genesis(
            AtomicDB(kv), get_default_genesis_params(), genesis_state
        )
        genesis = chain.get_canonical_block_header_by_number(BlockNumber(0))
        kv._begin()
        db.executemany(
            "INSERT INTO meta (name, value) VALUES (?, ?)",
            [
                ("magic", _MAGIC),
                ("format", str(FORMAT_VERSION).encode()),
                ("chain_id", str(TESTER_CHAIN_ID).encode()),
                ("genesis_hash", bytes(genesis.hash)),
            ],
        )
        kv.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _corrupt(path: Path, reason: str) -> ChainStoreCorrupt:
    return ChainStoreCorrupt(str(path), reason)


def _check_head(path: Path, chain: TesterChain, kv: SqliteKV, genesis_hash: bytes) -> None:
    """The canonical head, its header and its state root must be present and consistent."""
    try:
        head = chain.get_canonical_head()
        genesis = chain.get_canonical_block_header_by_number(BlockNumber(0))
    except (CanonicalHeadNotFound, HeaderNotFound, KeyError, rlp.DecodingError) as exc:
        raise _corrupt(path, f"canonical head unreadable: {exc!r}") from exc
    if bytes(genesis.hash) != genesis_hash:
        raise _corrupt(path, "genesis block differs from the one the store was created with")
    _check_header(path, chain, kv, head.block_number)


def _check_header(path: Path, chain: TesterChain, kv: SqliteKV, number: int) -> BlockHeaderAPI:
    try:
        expected = bytes(chain.chaindb.get_canonical_block_hash(BlockNumber(number)))
        if keccak(kv[expected]) != expected:  # py-evm keys a header's RLP by its hash
            raise _corrupt(path, f"block {number}'s header does not hash to its canonical hash")
        header = chain.get_block_header_by_hash(Hash32(expected))
    except (HeaderNotFound, KeyError, rlp.DecodingError) as exc:
        raise _corrupt(path, f"block {number} unreadable: {exc!r}") from exc
    if header.block_number != number:
        raise _corrupt(path, f"block {number}'s header carries number {header.block_number}")
    try:
        node = kv[bytes(header.state_root)]
    except KeyError:
        raise _corrupt(path, f"block {number}'s state root is missing") from None
    if keccak(node) != header.state_root:
        raise _corrupt(path, f"block {number}'s state root node does not hash to the root")
    return header


def open_chain_store(path: Path, *, integrity_check: bool = True) -> ChainStore:
    """Open (or create) the durable embedded chain stored at ``path``.

    Creates the file, with eth-tester's genesis, if ``path`` does not exist. Otherwise runs
    SQLite's ``quick_check`` (unless ``integrity_check`` is false), checks the store's
    format and that its canonical head, genesis and head state root are intact, and resumes
    the chain at that head. Raises :class:`ChainStoreCorrupt` for a file that is not an
    intact store, :class:`ChainError` if another process has it open.
    """
    path = Path(path)
    created = not path.exists()
    if created:
        _create(path)
    try:
        db = _connect(path)
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, f"not a readable SQLite database: {exc}") from exc
    try:
        try:
            db.execute("BEGIN IMMEDIATE")  # takes (and, in EXCLUSIVE mode, keeps) the lock
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise ChainError(f"chain store {path} is open in another process") from exc
            raise _corrupt(path, f"not a readable SQLite database: {exc}") from exc
        meta = _read_meta(path, db, integrity_check)
        kv = SqliteKV(db)
        chain = TesterChain(AtomicDB(kv))
        _check_head(path, chain, kv, meta["genesis_hash"])
    except sqlite3.DatabaseError as exc:
        db.close()
        raise _corrupt(path, f"SQLite reports: {exc}") from exc
    except BaseException:
        db.close()
        raise
    backend = DurablePyEVMBackend(chain, kv)
    tester = EthereumTester(backend)
    head = chain.get_canonical_head()
    info = ChainStoreInfo(
        path=path,
        created=created,
        head_number=int(head.block_number),
        head_hash=bytes(head.hash),
        genesis_hash=meta["genesis_hash"],
    )
    return ChainStore(tester, kv, info)


def _read_meta(path: Path, db: sqlite3.Connection, integrity_check: bool) -> dict[str, bytes]:
    if integrity_check:
        problems = [str(r[0]) for r in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise _corrupt(path, "SQLite quick_check: " + "; ".join(problems[:5]))
    tables = {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not {"kv", "meta"} <= tables:
        raise _corrupt(path, "not a JointLedger chain store (tables kv and meta missing)")
    meta = {str(n): bytes(v) for n, v in db.execute("SELECT name, value FROM meta")}
    if meta.get("magic") != _MAGIC:
        raise _corrupt(path, "not a JointLedger chain store (no magic)")
    if meta.get("format") != str(FORMAT_VERSION).encode():
        raise _corrupt(path, f"unsupported store format {meta.get('format')!r}")
    if meta.get("chain_id") != str(TESTER_CHAIN_ID).encode() or "genesis_hash" not in meta:
        raise _corrupt(path, "store metadata incomplete")
    return meta


def verify_chain(store: ChainStore) -> Iterator[int]:
    """Check every canonical block from genesis to head; yield each number as it passes.

    Each header must hash to its canonical hash, link to its parent, have its state root
    node present, and its transactions and receipts must match the header's roots. Raises
    :class:`ChainStoreCorrupt` at the first block that fails.
    """
    chain = store.chain
    head = chain.get_canonical_head().block_number
    parent: BlockHeaderAPI | None = None
    for number in range(head + 1):
        header = _check_header(store.info.path, chain, store.kv, number)
        if parent is not None and header.parent_hash != parent.hash:
            raise _corrupt(store.info.path, f"block {number} does not link to block {number - 1}")
        try:
            block = chain.get_block_by_header(header)
            receipts = block.get_receipts(chain.chaindb)
        except (HeaderNotFound, KeyError, rlp.DecodingError) as exc:
            raise _corrupt(store.info.path, f"block {number}'s body unreadable: {exc!r}") from exc
        if len(receipts) != len(block.transactions):
            raise _corrupt(store.info.path, f"block {number} lacks receipts")
        parent = header
        yield number


def is_stored_chain(w3: Any) -> bool:
    """Whether ``w3`` is backed by a stored embedded chain (``embedded_on_disk``)."""
    tester = getattr(w3.provider, "ethereum_tester", None)
    return isinstance(getattr(tester, "backend", None), DurablePyEVMBackend)


def close_chain_store(w3: Any) -> None:
    """Close the durable chain behind ``w3`` (a ``Web3`` from ``embedded_on_disk``).

    Raises ``TypeError`` if ``w3`` is not backed by a stored embedded chain.
    """
    tester = getattr(w3.provider, "ethereum_tester", None)
    backend = getattr(tester, "backend", None)
    if not isinstance(backend, DurablePyEVMBackend):
        raise TypeError("w3 is not backed by a stored embedded chain")
    backend.close()


_BLANK_ROOT: Final = keccak(rlp.encode(b""))
_EMPTY_CODE_HASH: Final = keccak(b"")


def _lookup(kv: SqliteKV, key: bytes) -> bytes | None:
    try:
        return kv[key]
    except KeyError:
        return None


def verify_state(store: ChainStore, block_number: int | None = None) -> int:
    """Walk the whole state of ``block_number`` (default: the head); return nodes checked.

    Every account-trie node, every contract's storage-trie nodes and every contract's code
    must be present and hash to the reference that names it. Raises
    :class:`ChainStoreCorrupt` at the first node that does not.
    """
    chain, kv, path = store.chain, store.kv, store.info.path
    number = chain.get_canonical_head().block_number if block_number is None else block_number
    header = _check_header(path, chain, kv, number)
    checked = 0

    def account(value: bytes) -> None:
        nonlocal checked
        try:
            _nonce, _balance, storage_root, code_hash = rlp.decode(value)
        except (rlp.DecodingError, ValueError) as exc:
            raise _corrupt(path, f"undecodable account in block {number}'s state") from exc
        checked += walk(bytes(storage_root), None)
        if code_hash != _EMPTY_CODE_HASH:
            code = _lookup(kv, bytes(code_hash))
            if code is None or keccak(code) != code_hash:
                raise _corrupt(path, f"contract code {bytes(code_hash).hex()} missing or altered")

    def walk(root: bytes, on_leaf: Any) -> int:
        nodes, stack, seen = 0, [root], set()
        while stack:
            ref = stack.pop()
            if ref == _BLANK_ROOT or ref in seen:
                continue
            seen.add(ref)
            raw = _lookup(kv, ref)
            if raw is None or keccak(raw) != ref:
                raise _corrupt(path, f"state node {ref.hex()} of block {number} missing or altered")
            nodes += 1
            try:
                pending = [rlp.decode(raw)]
            except rlp.DecodingError as exc:
                raise _corrupt(path, f"state node {ref.hex()} undecodable") from exc
            while pending:  # a node and the small nodes inlined in it
                node = pending.pop()
                if len(node) == 17:
                    children = list(node[:16])
                elif len(node) == 2 and node[0] and node[0][0] >> 4 in (2, 3):  # leaf
                    if on_leaf is not None:
                        on_leaf(bytes(node[1]))
                    children = []
                elif len(node) == 2:  # extension
                    children = [node[1]]
                else:
                    children = []
                for child in children:
                    if isinstance(child, list):
                        pending.append(child)
                    elif len(child) == 32:
                        stack.append(bytes(child))
        return nodes

    checked += walk(bytes(header.state_root), account)
    return checked
