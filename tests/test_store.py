"""The node's durable store: append/lookup, checkpoints, meta checks and corruption detection.

The behaviour suite is a class over a ``store`` fixture so that another backend can subclass
it (STYLE §6, §8); :class:`TestSQLiteStore` runs it over the default SQLite backend.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ledger_node.errors import (
    InvalidBatch,
    NodeStopped,
    StoreCorrupted,
    StoreMismatch,
    UnknownCheckpoint,
    UnknownLeaf,
)
from ledger_node.log.checkpoint import Checkpoint, log_id_for
from ledger_node.log.leaf import Leaf
from ledger_node.log.merkle import SM3_HASHER
from ledger_node.platform.store import LeafStore, NewBatch, SQLiteStore, StoredCheckpoint
from ledger_node.protocol.auth import BatchEvidence

LOG_ID = log_id_for("unionpay")
SIGNER = "0x" + "11" * 20


def _leaf(i: int, tagged: bool = False) -> Leaf:
    commitment = i.to_bytes(32, "big")
    if tagged:
        return Leaf(commitment, b"escrow-%d" % i, b"\x01" * 32, b"\x02" * 32)
    return Leaf(commitment, b"escrow-%d" % i)


def _batch(start: int, leaves: list[Leaf], indexes: tuple[int, ...] | None = None) -> NewBatch:
    hashes = tuple(SM3_HASHER.hash_leaf(leaf.leaf_data()) for leaf in leaves)
    if indexes is None:
        indexes = tuple(range(start, start + len(leaves)))
    return NewBatch(BatchEvidence(SIGNER, b"d" * 32, b"sig-%d" % start), 1.5e9, indexes,
                    tuple(leaves), hashes)


def _checkpoint(size: int, root: bytes = b"r" * 32) -> StoredCheckpoint:
    return StoredCheckpoint(Checkpoint("unionpay", LOG_ID, size, root, 1_700_000_000), b"sig",
                            "signed", 1.0)


class StoreBehaviour:
    """What every :class:`LeafStore` backend must do; subclasses provide ``store``."""

    def test_starts_empty(self, store: LeafStore) -> None:
        assert store.size() == 0
        assert list(store.leaf_hashes()) == []
        assert store.checkpoints() == []
        assert store.latest_checkpoint() is None
        with pytest.raises(UnknownLeaf):
            store.leaf(0)
        with pytest.raises(UnknownLeaf):
            store.leaf_hash(0)

    def test_appends_batches_in_order(self, store: LeafStore) -> None:
        first = [_leaf(i) for i in range(3)]
        second = [_leaf(i, tagged=True) for i in range(3, 5)]
        store.append_batches([_batch(0, first), _batch(3, second)])
        assert store.size() == 5
        assert [store.leaf(i) for i in range(5)] == first + second
        hashes = [SM3_HASHER.hash_leaf(leaf.leaf_data()) for leaf in first + second]
        assert list(store.leaf_hashes()) == hashes
        assert store.leaf_hash(4) == hashes[4]
        assert store.index_of(hashes[3]) == 3
        assert store.index_of(b"\x00" * 32) is None
        assert store.indexes_of([hashes[1], b"\x00" * 32, hashes[4]]) == {
            hashes[1]: 1, hashes[4]: 4}

    def test_keeps_batch_evidence_with_every_index(self, store: LeafStore) -> None:
        store.append_batches([_batch(0, [_leaf(0), _leaf(1)])])
        # a later batch signed over [leaf 1 (duplicate), leaf 2 (new)]
        store.append_batches([_batch(2, [_leaf(2)], indexes=(1, 2))])
        batch = store.batch_of(2)
        assert batch.evidence == BatchEvidence(SIGNER, b"d" * 32, b"sig-2")
        assert batch.indexes == (1, 2)
        assert store.batch_of(0).indexes == (0, 1)
        with pytest.raises(UnknownLeaf):
            store.batch_of(3)

    def test_a_stored_leaf_hash_is_refused_and_nothing_is_written(self, store: LeafStore) -> None:
        store.append_batches([_batch(0, [_leaf(0)])])
        with pytest.raises(InvalidBatch, match="already stored"):
            store.append_batches([_batch(1, [_leaf(1)]), _batch(2, [_leaf(0)])])
        assert store.size() == 1  # the whole group was rolled back

    def test_checkpoint_lifecycle(self, store: LeafStore) -> None:
        store.save_checkpoint(_checkpoint(3))
        store.save_checkpoint(_checkpoint(7))
        assert [c.tree_size for c in store.pending_checkpoints()] == [3, 7]
        marked = store.mark_anchored(3, b"t" * 32, 12, 2.0)
        assert marked.anchored and marked.tx_hash == b"t" * 32 and marked.block_number == 12
        assert [c.tree_size for c in store.checkpoints("anchored")] == [3]
        assert [c.tree_size for c in store.pending_checkpoints()] == [7]
        assert [c.status for c in store.checkpoints()] == ["anchored", "signed"]
        assert marked.signed().checkpoint.tree_size == 3
        assert marked.to_json()["tx_hash"] == "74" * 32

    def test_checkpoints_page_by_size(self, store: LeafStore) -> None:
        for size in (2, 4, 6, 8):
            store.save_checkpoint(_checkpoint(size))
        store.mark_anchored(4, b"t" * 32, 1, 1.0)
        store.mark_anchored(6, b"u" * 32, 2, 1.0)
        assert [c.tree_size for c in store.checkpoints(after=2, limit=2)] == [4, 6]
        assert [c.tree_size for c in store.checkpoints("anchored", after=4)] == [6]
        assert [c.tree_size for c in store.checkpoints(limit=0)] == []
        assert store.checkpoint_at(8).status == "signed"
        assert store.latest_checkpoint().tree_size == 6  # type: ignore[union-attr]
        assert store.latest_checkpoint("signed").tree_size == 8  # type: ignore[union-attr]
        with pytest.raises(UnknownCheckpoint):
            store.checkpoint_at(5)

    def test_checkpoint_sizes_are_unique(self, store: LeafStore) -> None:
        store.save_checkpoint(_checkpoint(3))
        with pytest.raises(StoreMismatch, match="size 3 is already stored"):
            store.save_checkpoint(_checkpoint(3, root=b"x" * 32))

    def test_marking_an_unknown_checkpoint_fails(self, store: LeafStore) -> None:
        with pytest.raises(UnknownCheckpoint):
            store.mark_anchored(9, b"t" * 32, 1, 1.0)


class TestSQLiteStore(StoreBehaviour):
    """The behaviour suite over SQLite, plus what only a file-backed store has."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLiteStore]:
        s = SQLiteStore(tmp_path / "log.db", platform="unionpay", log_id=LOG_ID,
                        hash_name="sm3")
        yield s
        s.close()

    def _open(self, path: Path, **kw: str | bytes) -> SQLiteStore:
        args: dict[str, object] = {"platform": "unionpay", "log_id": LOG_ID, "hash_name": "sm3"}
        args.update(kw)
        return SQLiteStore(path, **args)  # type: ignore[arg-type]

    def _filled(self, path: Path, count: int = 2000) -> None:
        s = self._open(path)
        s.append_batches([_batch(0, [_leaf(i) for i in range(count)])])
        s.save_checkpoint(_checkpoint(count))
        s.close()

    def test_uses_wal_and_full_sync(self, store: SQLiteStore, tmp_path: Path) -> None:
        db = sqlite3.connect(tmp_path / "log.db")
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL

    def test_reopens_with_everything(self, tmp_path: Path) -> None:
        path = tmp_path / "log.db"
        self._filled(path)
        s = self._open(path)
        assert s.size() == 2000
        assert s.leaf(1999) == _leaf(1999)
        assert [c.tree_size for c in s.pending_checkpoints()] == [2000]
        s.close()

    @pytest.mark.parametrize(
        ("field", "value", "named"),
        [("platform", "wechatpay", "platform"), ("log_id", log_id_for("unionpay", 1), "log_id"),
         ("hash_name", "sha256", "hash")],
    )
    def test_refuses_a_store_made_for_another_log(
        self, tmp_path: Path, field: str, value: str | bytes, named: str
    ) -> None:
        path = tmp_path / "log.db"
        self._filled(path, 3)
        with pytest.raises(StoreMismatch, match=f"made for {named}"):
            self._open(path, **{field: value})

    def _corrupt_and_expect(self, path: Path, damage: Callable[[Path], None], match: str) -> None:
        self._filled(path)
        damage(path)
        with pytest.raises(StoreCorrupted, match=match):
            self._open(path)

    def test_detects_a_truncated_file(self, tmp_path: Path) -> None:
        def truncate(p: Path) -> None:
            os.truncate(p, p.stat().st_size // 2)

        self._corrupt_and_expect(tmp_path / "log.db", truncate, "damaged|integrity")

    def test_detects_a_garbled_header(self, tmp_path: Path) -> None:
        def garble(p: Path) -> None:
            with p.open("r+b") as f:
                f.write(b"this is not SQLite")

        self._corrupt_and_expect(tmp_path / "log.db", garble, "damaged or not a store")

    def test_detects_garbled_pages(self, tmp_path: Path) -> None:
        def garble(p: Path) -> None:
            size = p.stat().st_size
            with p.open("r+b") as f:
                for offset in range(4096 * 2, size, 4096 * 3):  # past the schema page
                    f.seek(offset)
                    f.write(os.urandom(512))

        self._corrupt_and_expect(tmp_path / "log.db", garble, "damaged|integrity")

    def test_detects_another_schema(self, tmp_path: Path) -> None:
        path = tmp_path / "other.db"
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE something (x INTEGER)")
        db.commit()
        db.close()
        with pytest.raises(StoreCorrupted, match="lacks the table"):
            self._open(path)

    def test_detects_a_wrong_schema_version(self, tmp_path: Path) -> None:
        path = tmp_path / "log.db"
        self._filled(path, 1)
        db = sqlite3.connect(path)
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        db.commit()
        db.close()
        with pytest.raises(StoreCorrupted, match="schema version '99'"):
            self._open(path)

    def test_detects_a_gap_in_the_leaf_indexes(self, tmp_path: Path) -> None:
        path = tmp_path / "log.db"
        self._filled(path, 5)
        db = sqlite3.connect(path)
        db.execute("DELETE FROM leaves WHERE idx = 2")
        db.commit()
        db.close()
        with pytest.raises(StoreCorrupted, match="not contiguous"):
            self._open(path)

    def test_a_closed_store_refuses_work(self, store: SQLiteStore) -> None:
        store.close()
        with pytest.raises(NodeStopped, match="closed"):
            store.size()
        with pytest.raises(NodeStopped, match="closed"):
            store.append_batches([_batch(0, [_leaf(0)])])
