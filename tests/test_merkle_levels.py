"""Stored Merkle levels: saved as the log grows, resumed at start, migrated, damage rebuilt.

The store part runs on :class:`SQLiteStore` alone; the node part restarts a real
:class:`PlatformNode` on the embedded chain (fixtures from ``tests/test_node.py``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger_node.chain.adapter import LedgerChain
from ledger_node.errors import NodeStopped, StoreCorrupted
from ledger_node.log.merkle import SM3_HASHER, MerkleLog
from ledger_node.platform.store import LEVEL_CHUNK, SQLiteStore
from ledger_node.protocol.bundle import verify_bundle
from tests.test_node import (  # noqa: F401  (base_chain and consortium are fixtures)
    Consortium,
    base_chain,
    consortium,
    leaves,
    make_node,
    submit,
    wait_for,
)
from tests.test_store import LOG_ID, _batch, _leaf

SIZE = 5000  # level 0: 4 stored chunks, level 1: 2, level 2: 1 (with LEVEL_CHUNK = 1024)


def _open(path: Path) -> SQLiteStore:
    return SQLiteStore(path, platform="unionpay", log_id=LOG_ID, hash_name="sm3")


def _rebuilt(store: SQLiteStore) -> MerkleLog:
    return MerkleLog.from_leaf_hashes(SM3_HASHER, store.leaf_hashes())


def _levels(log: MerkleLog) -> list[bytes]:
    return [log.level_digests(k, 0, log.size >> k) for k in range(log.size.bit_length())]


def _rows(path: Path) -> list[tuple[int, int]]:
    db = sqlite3.connect(path)
    try:
        return [(int(a), int(b)) for a, b in
                db.execute("SELECT level, chunk FROM merkle_levels ORDER BY level, chunk")]
    finally:
        db.close()


def _sql(path: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    db = sqlite3.connect(path)
    db.execute(sql, params)
    db.commit()
    db.close()


def _filled(path: Path, groups: tuple[int, ...] = (1000, 2500, 1500)) -> list[int]:
    """Append leaves in ``groups`` and save the levels after each, as the node's writer does."""
    store = _open(path)
    written, start = [], 0
    for count in groups:
        store.append_batches([_batch(start, [_leaf(i) for i in range(start, start + count)])])
        start += count
        written.append(store.save_levels(_rebuilt(store)))
    store.close()
    return written


EXPECTED_ROWS = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (2, 0)]


# ------------------------------------------------------------------ the store


def test_levels_are_saved_as_chunks_complete_and_resumed(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    assert _filled(path) == [0, 4, 3]
    assert _rows(path) == EXPECTED_ROWS
    store = _open(path)
    log = store.load_log(SM3_HASHER)
    assert store.leaves_from_levels == 4 * LEVEL_CHUNK
    assert _levels(log) == _levels(_rebuilt(store))
    assert log.inclusion_proof(17) == _rebuilt(store).inclusion_proof(17)
    assert store.save_levels(log) == 0  # nothing new
    store.close()


def test_leaf_commits_stay_fully_synced_after_saving_levels(tmp_path: Path) -> None:
    """Levels commit with synchronous=NORMAL (a cache); the leaves' commits stay FULL."""
    store = _open(tmp_path / "log.db")
    store.append_batches([_batch(0, [_leaf(i) for i in range(LEVEL_CHUNK)])])
    assert store.save_levels(_rebuilt(store)) == 1
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_saving_waits_for_a_complete_chunk(tmp_path: Path) -> None:
    assert _filled(tmp_path / "log.db", (1000, 23, 1, 1023, 1)) == [0, 0, 1, 0, 2]
    assert _rows(tmp_path / "log.db") == [(0, 0), (0, 1), (1, 0)]


def test_a_store_without_levels_is_migrated(tmp_path: Path) -> None:
    """A store written before ``merkle_levels`` existed opens, rebuilds them once, keeps them."""
    path = tmp_path / "log.db"
    _filled(path)
    _sql(path, "DROP TABLE merkle_levels")  # what an older version wrote
    store = _open(path)
    assert _rows(path) == []  # the table is back, empty
    log = store.load_log(SM3_HASHER)
    assert store.leaves_from_levels == 0
    assert log.root() == _rebuilt(store).root()
    assert store.save_levels(log) == len(EXPECTED_ROWS)
    store.close()
    assert _rows(path) == EXPECTED_ROWS
    store = _open(path)
    assert store.load_log(SM3_HASHER).root() == log.root()
    assert store.leaves_from_levels == 4 * LEVEL_CHUNK
    store.close()


def _flip_a_digest(path: Path) -> None:
    _sql(path, "UPDATE merkle_levels SET digests = ? WHERE level = 1 AND chunk = 1",
         (b"\x07" * 32 * LEVEL_CHUNK,))


def _drop_a_chunk(path: Path) -> None:
    _sql(path, "DELETE FROM merkle_levels WHERE level = 0 AND chunk = 1")


def _shorten_a_chunk(path: Path) -> None:
    db = sqlite3.connect(path)
    digests = db.execute("SELECT digests FROM merkle_levels WHERE level = 2").fetchone()[0]
    db.execute("UPDATE merkle_levels SET digests = ?, crc32 = ? WHERE level = 2",
               (digests[:-32], zlib.crc32(digests[:-32])))
    db.commit()
    db.close()


def _add_a_level_too_many(path: Path) -> None:
    digests = b"\x05" * 32 * LEVEL_CHUNK
    _sql(path, "INSERT INTO merkle_levels VALUES (3, 0, ?, ?)", (digests, zlib.crc32(digests)))


def _alter_the_last_covered_leaf(path: Path) -> None:
    _sql(path, "UPDATE leaves SET leaf_hash = ? WHERE idx = ?",
         (b"\x09" * 32, 4 * LEVEL_CHUNK - 1))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [(_flip_a_digest, "chunk 1 of level 1 fails its CRC-32"),
     (_drop_a_chunk, "chunk 2 of level 0 is out of sequence"),
     (_shorten_a_chunk, "chunk 0 of level 2 fails its CRC-32 or length"),
     (_add_a_level_too_many, "level 3 holds more digests than 5000 leaves give"),
     (_alter_the_last_covered_leaf, "leaf hash 4095 differs from the leaves table")],
    ids=["crc", "gap", "length", "too-many", "leaf-differs"],
)
def test_damaged_levels_are_rebuilt_from_the_leaves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Callable[[Path], None],
    reason: str,
) -> None:
    path = tmp_path / "log.db"
    _filled(path)
    damage(path)
    store = _open(path)
    with caplog.at_level(logging.WARNING, logger="ledger_node.platform.store"):
        log = store.load_log(SM3_HASHER)
    assert reason in caplog.text and "rebuilding them from the leaf hashes" in caplog.text
    assert store.leaves_from_levels == 0
    assert _levels(log) == _levels(_rebuilt(store))
    assert store.save_levels(log) == len(EXPECTED_ROWS)  # every chunk rewritten
    store.close()
    assert _rows(path) == EXPECTED_ROWS
    store = _open(path)
    assert store.load_log(SM3_HASHER).root() == log.root()
    assert store.leaves_from_levels == 4 * LEVEL_CHUNK
    store.close()


def test_levels_ahead_of_the_leaves_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    _filled(path)
    _sql(path, "DELETE FROM leaves WHERE idx >= 3000")
    store = _open(path)
    with pytest.raises(StoreCorrupted, match="levels cover 4096 leaves but only 3000 are stored"):
        store.load_log(SM3_HASHER)
    store.close()


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_a_truncated_store_with_levels_is_refused(tmp_path: Path, keep: float) -> None:
    path = tmp_path / "log.db"
    _filled(path)
    db = sqlite3.connect(path)  # fold the WAL into the file: the cut hits leaves and levels
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    os.truncate(path, int(path.stat().st_size * keep))
    with pytest.raises(StoreCorrupted, match="damaged|integrity"):
        _open(path)


def test_a_closed_store_saves_no_levels(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    _filled(path, (LEVEL_CHUNK - 1,))
    store = _open(path)
    log = store.load_log(SM3_HASHER)
    log.append_leaf_hash(b"\x01" * 32)
    store.close()
    with pytest.raises(NodeStopped, match="closed"):
        store.save_levels(log)


# ------------------------------------------------------------------ the node


def _run_node(c: Consortium, path: Path, count: int) -> bytes:
    """Submit ``count`` leaves to a node on ``path``, let it anchor, stop it; return the root."""
    node = make_node(c, path, seal_interval=0.05)
    node.start()
    for start in range(0, count, 700):
        submit(node, c.unionpay, leaves(min(700, count - start)))
    wait_for("anchoring", lambda: node.proof_bundle(count - 1) is not None)
    root = node._head().root
    node.stop()
    return root


def test_a_restarted_node_resumes_from_its_levels_and_migrates_an_old_store(
    consortium: Consortium, tmp_path: Path,  # noqa: F811
) -> None:
    path = tmp_path / "node.db"
    root = _run_node(consortium, path, 2100)
    assert _rows(path) == [(0, 0), (0, 1), (1, 0)]  # saved by the writer
    node = make_node(consortium, path)
    assert node.store_for_tests.leaves_from_levels == 2 * LEVEL_CHUNK
    assert node._head().root == root
    bundle = node.proof_bundle(5)
    assert bundle is not None
    assert verify_bundle(bundle, chain=LedgerChain(consortium.base.w3)).valid
    node.store_for_tests.close()

    _sql(path, "DROP TABLE merkle_levels")  # a store an older version wrote
    node = make_node(consortium, path)
    assert node.store_for_tests.leaves_from_levels == 0
    assert node._head().root == root
    node.store_for_tests.close()
    assert _rows(path) == [(0, 0), (0, 1), (1, 0)]  # built once, at that start
    node = make_node(consortium, path)
    assert node.store_for_tests.leaves_from_levels == 2 * LEVEL_CHUNK
    node.store_for_tests.close()


def _rewrite_chunk(path: Path, level: int, chunk: int, edit: Callable[[bytes], bytes]) -> bytes:
    """Replace a stored chunk by ``edit`` of it with a matching CRC; return the original."""
    db = sqlite3.connect(path)
    (digests,) = db.execute("SELECT digests FROM merkle_levels WHERE level = ? AND chunk = ?",
                            (level, chunk)).fetchone()
    changed = edit(digests)
    db.execute("UPDATE merkle_levels SET digests = ?, crc32 = ? WHERE level = ? AND chunk = ?",
               (changed, zlib.crc32(changed), level, chunk))
    db.commit()
    db.close()
    return bytes(digests)


def test_levels_giving_another_root_are_rebuilt_by_the_node(
    consortium: Consortium, tmp_path: Path, caplog: pytest.LogCaptureFixture,  # noqa: F811
) -> None:
    path = tmp_path / "node.db"
    root = _run_node(consortium, path, 2100)
    original = _rewrite_chunk(path, 1, 0, lambda d: b"\x03" * 32 + d[32:])
    with caplog.at_level(logging.WARNING, logger="ledger_node.platform.node"):
        node = make_node(consortium, path)
    assert "do not give the checkpoints' roots" in caplog.text
    assert node._head().root == root
    node.store_for_tests.close()
    db = sqlite3.connect(path)
    stored = db.execute("SELECT digests FROM merkle_levels WHERE level = 1").fetchone()[0]
    db.close()
    assert stored == original  # rewritten from the leaves
    node = make_node(consortium, path)
    assert node.store_for_tests.leaves_from_levels == 2 * LEVEL_CHUNK
    node.store_for_tests.close()


def test_leaves_and_levels_altered_together_are_refused(
    consortium: Consortium, tmp_path: Path,  # noqa: F811
) -> None:
    """Levels rebuilt from altered leaves fail the anchored root; so do the leaves: refused."""
    path = tmp_path / "node.db"
    _run_node(consortium, path, 2100)
    forged = b"\x09" * 32
    _sql(path, "UPDATE leaves SET leaf_hash = ? WHERE idx = 3", (forged,))
    _rewrite_chunk(path, 0, 0, lambda d: d[:96] + forged + d[128:])
    _sql(path, "DELETE FROM merkle_levels WHERE level > 0")  # the levels above: recomputed
    with pytest.raises(StoreCorrupted, match="do not produce the root of the anchored"):
        make_node(consortium, path)
