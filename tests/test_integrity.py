"""Issue 18: nothing damaged is ever served, a store behind the chain never acknowledges, and
stored Merkle levels never disagree with the leaves unnoticed (docs/node.md § Integrity).

Each test fills its own log (a shard of unionpay's, so logs never share a chain history)
with a real :class:`PlatformNode` on the module's embedded chain, stops it, damages the
store with plain SQLite or byte edits, and checks that the damage is refused or reported,
never served: at open, on every read (over HTTP too), in ``jointledger fsck``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from ledger_node.errors import (
    LeafDamaged,
    StoreBehindChain,
    StoreCorrupted,
    StoreLocked,
    TreeMismatch,
)
from ledger_node.log.leaf import Leaf, batch_digest, leaves_data
from ledger_node.log.merkle import SM3_HASHER, MerkleLog
from ledger_node.platform.node import PlatformNode
from ledger_node.platform.store import LEVEL_CHUNK, SQLiteStore
from ledger_node.protocol.auth import BatchEvidence, sign_batch
from ledger_node.protocol.bundle import verify_bundle
from tests.api_support import Consortium, wait_for
from tests.regulator_support import start_node

_shards = itertools.count(100)


def _leaves(count: int) -> list[Leaf]:
    """Distinct leaves with escrows, every third with match tags."""
    return [Leaf(os.urandom(32), os.urandom(64), *((os.urandom(32), os.urandom(32))
                                                   if i % 3 == 0 else (None, None)))
            for i in range(count)]


def submit(node: PlatformNode, consortium: Consortium, batch: list[Leaf]) -> list[Any]:
    """``batch`` submitted to ``node``, signed by unionpay."""
    party = consortium.unionpay
    signature = sign_batch(party.sm2_key, node.log_id, batch)
    return node.submit(batch, BatchEvidence(party.account.address,
                                            batch_digest(node.log_id, batch), signature))


def anchored(node: PlatformNode, size: int) -> None:
    """Wait until ``node`` anchored a checkpoint of at least ``size`` leaves."""
    def covered() -> bool | None:
        latest = node.latest_checkpoint()
        return True if latest is not None and latest.tree_size >= size else None

    wait_for(covered)


def open_node(consortium: Consortium, path: Path, shard: int, **config: Any) -> PlatformNode:
    """A started node of unionpay's shard ``shard`` on ``path``."""
    return start_node(consortium, consortium.unionpay, path, shard=shard, **config)


def filled(consortium: Consortium, path: Path, count: int, *, batch: int = 700
           ) -> tuple[int, list[Leaf]]:
    """A cleanly stopped store of ``count`` anchored leaves on a fresh shard; the shard and
    the leaves."""
    shard = next(_shards)
    node = open_node(consortium, path, shard)
    written: list[Leaf] = []
    for start in range(0, count, batch):
        chunk = _leaves(min(batch, count - start))
        submit(node, consortium, chunk)
        written += chunk
    anchored(node, count)
    node.stop()
    return shard, written


def sql(path: Path, statement: str, params: tuple[Any, ...] = ()) -> None:
    db = sqlite3.connect(path)
    db.execute(statement, params)
    db.commit()
    db.close()


def xor(value: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in value)


def column(path: Path, name: str, index: int) -> bytes:
    db = sqlite3.connect(path)
    (value,) = db.execute(f"SELECT {name} FROM leaves WHERE idx = ?", (index,)).fetchone()
    db.close()
    return bytes(value)


def client_of(node: PlatformNode) -> TestClient:
    return TestClient(create_app(node))


def assert_problem(answer: Any, status: int, slug: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["type"].endswith(f"/{slug}"), body
    return body


# ------------------------------------------------------------------ 1. nothing damaged is served


def test_issue_18a_a_commitment_xored_in_the_last_chunk_is_refused_at_start(
    consortium: Consortium, tmp_path: Path,
) -> None:
    """The issue's case: ~2,000 leaves stopped cleanly, leaf 1500's commitment XORed. The
    node used to start, say ok and serve it; the rows after the last complete level chunk
    (1024..1999) are now checked at open."""
    path = tmp_path / "store.db"
    shard, _ = filled(consortium, path, 2000)
    sql(path, "UPDATE leaves SET commitment = ? WHERE idx = 1500",
        (xor(column(path, "commitment", 1500)),))
    with pytest.raises(LeafDamaged, match="leaf 1500 is damaged") as refused:
        open_node(consortium, path, shard)
    assert refused.value.index == 1500


DAMAGES: dict[str, Callable[[Path, int], None]] = {
    "commitment": lambda path, i: sql(path, "UPDATE leaves SET commitment = ? WHERE idx = ?",
                                      (xor(column(path, "commitment", i)), i)),
    "escrow": lambda path, i: sql(path, "UPDATE leaves SET escrow = ? WHERE idx = ?",
                                  (xor(column(path, "escrow", i)), i)),
    "match-tag": lambda path, i: sql(path, "UPDATE leaves SET match_tag = ? WHERE idx = ?",
                                     (os.urandom(32), i)),
    "leaf-hash": lambda path, i: sql(path, "UPDATE leaves SET leaf_hash = ? WHERE idx = ?",
                                     (xor(column(path, "leaf_hash", i)), i)),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_leaf_row_is_never_served(consortium: Consortium, tmp_path: Path,
                                            damage: str) -> None:
    """A row inside a complete level chunk is not re-hashed at open (that would be O(n)):
    the node starts, and refuses the row on every read, stops intake and says so in health."""
    path = tmp_path / "store.db"
    shard, written = filled(consortium, path, 2100)
    DAMAGES[damage](path, 102)  # index 102 carries match tags
    node = open_node(consortium, path, shard)
    try:
        with pytest.raises(LeafDamaged, match="leaf 102 is damaged"):
            node.leaf(102)
        with pytest.raises(LeafDamaged):
            node.leaves(100, 110)
        assert node.leaf(5) == written[5]  # good rows are still served
        http = client_of(node)
        for url in ("/v1/leaves/102", "/v1/leaves/102/bundle",
                    f"/v1/logs/{node.log_id.hex()}/summaries?start=0&end=200"):
            body = assert_problem(http.get(url), 503, "store-damaged")
            assert body["index"] == 102
        assert http.get("/v1/leaves/5").status_code == 200
        health = assert_problem(http.get("/v1/health"), 503, "store-damaged")
        assert health["health"]["intake_halted"].startswith("store ")
        with pytest.raises(LeafDamaged):  # nothing is acknowledged on a damaged store
            submit(node, consortium, _leaves(1))
        assert node.size() == 2100
    finally:
        node.stop()


def _rewrite_level(path: Path, level: int, chunk: int, edit: Callable[[bytes], bytes]) -> None:
    db = sqlite3.connect(path)
    (digests,) = db.execute("SELECT digests FROM merkle_levels WHERE level = ? AND chunk = ?",
                            (level, chunk)).fetchone()
    changed = edit(bytes(digests))
    db.execute("UPDATE merkle_levels SET digests = ?, crc32 = ? WHERE level = ? AND chunk = ?",
               (changed, zlib.crc32(changed), level, chunk))
    db.commit()
    db.close()


def test_a_damaged_level_digest_off_the_root_path_is_never_served(
    consortium: Consortium, tmp_path: Path,
) -> None:
    """Leaf 6's level-0 digest altered in merkle_levels with a matching CRC: the roots the
    node checks at open do not read it (level 1 above it is intact), so it starts; leaf 6
    and the proof of its sibling 7, which carries the digest, are refused."""
    path = tmp_path / "store.db"
    shard, _ = filled(consortium, path, 2100)
    _rewrite_level(path, 0, 0, lambda d: d[:6 * 32] + os.urandom(32) + d[7 * 32:])
    node = open_node(consortium, path, shard)
    try:
        with pytest.raises(LeafDamaged, match="leaf 6 is damaged.*not the one the Merkle tree"):
            node.leaf(6)
        with pytest.raises(LeafDamaged, match="leaf 7 is damaged.*inclusion proof"):
            node.proof_bundle(7)
        bundle = node.proof_bundle(700)
        assert bundle is not None
        assert verify_bundle(bundle, chain=consortium.chain).valid
    finally:
        node.stop()


def test_a_mismatch_at_start_names_the_first_bad_index(consortium: Consortium,
                                                       tmp_path: Path) -> None:
    """Leaf 1030's stored hash altered and the levels gone (so the tree comes from the leaf
    hashes): the anchored root differs, and descending the tree names index 1030."""
    path = tmp_path / "store.db"
    shard, _ = filled(consortium, path, 2100)
    DAMAGES["leaf-hash"](path, 1030)
    sql(path, "DELETE FROM merkle_levels")
    with pytest.raises(TreeMismatch, match="do not produce the root of the anchored checkpoint"
                       ".*first bad index 1030") as refused:
        open_node(consortium, path, shard)
    assert refused.value.first_bad == 1030


def _fold_wal(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def test_a_damaged_page_header_is_refused(consortium: Consortium, tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    shard, _ = filled(consortium, path, 2100)
    _fold_wal(path)
    data = bytearray(path.read_bytes())
    page = 4096
    for number in range(3, len(data) // page, 7):  # b-tree page headers of several pages
        data[number * page:number * page + 8] = xor(bytes(data[number * page:number * page + 8]))
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorrupted, match="damaged|integrity"):
        open_node(consortium, path, shard)


# ------------------------------------------------------------------ 2. a store behind the chain


def test_issue_18b_an_old_copy_restored_never_acknowledges(consortium: Consortium,
                                                           tmp_path: Path) -> None:
    """An old copy of the store restored while the chain anchored more: the node starts,
    but acknowledges nothing (it used to hand out indexes the chain holds for other leaves)
    and health answers 503 store-behind-chain with both sizes."""
    path = tmp_path / "store.db"
    shard, _ = filled(consortium, path, 300)
    shutil.copy(path, tmp_path / "old.db")
    node = open_node(consortium, path, shard)
    submit(node, consortium, _leaves(300))
    anchored(node, 600)
    node.stop()
    shutil.copy(tmp_path / "old.db", path)

    node = open_node(consortium, path, shard)
    try:
        halted = node.intake_halted()
        assert isinstance(halted, StoreBehindChain)
        assert (halted.chain_size, halted.store_size) == (600, 300)
        with pytest.raises(StoreBehindChain, match="holds 300 leaves but the chain's latest "
                           "anchored checkpoint .* is at size 600"):
            submit(node, consortium, _leaves(2))
        assert node.size() == 300
        http = client_of(node)
        health = assert_problem(http.get("/v1/health"), 503, "store-behind-chain")
        assert (health["chain_size"], health["store_size"]) == (600, 300)
        assert health["health"]["store_size"] == 300
        node._sealer.seal_once()  # never anchors over the chain's history
        assert consortium.chain.latest_checkpoint(node.log_id).tree_size == 600  # type: ignore[union-attr]
    finally:
        node.stop()


def test_a_store_that_lost_its_wal_never_acknowledges(consortium: Consortium,
                                                      tmp_path: Path) -> None:
    """The WAL holding the latest commits is lost (wiped after a crash): the store is back at
    its last checkpoint of the WAL, behind the chain, and acknowledges nothing."""
    path = tmp_path / "store.db"
    shard, _ = filled(consortium, path, 300)  # a clean stop folds the WAL into the file
    holder = sqlite3.connect(path)  # keeps the WAL from being folded in at the next stop
    holder.execute("SELECT 1 FROM meta").fetchall()
    node = open_node(consortium, path, shard)
    submit(node, consortium, _leaves(200))
    anchored(node, 500)
    node.stop()
    assert (tmp_path / "store.db-wal").stat().st_size > 0
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    shutil.copy(path, crashed / "store.db")  # the file without its WAL
    holder.close()
    node = open_node(consortium, crashed / "store.db", shard)
    try:
        halted = node.intake_halted()
        assert isinstance(halted, StoreBehindChain)
        assert (halted.chain_size, halted.store_size) == (500, 300)
        with pytest.raises(StoreBehindChain):
            submit(node, consortium, _leaves(1))
    finally:
        node.stop()


def test_damaged_wal_frames_lose_the_tail_which_is_refused(consortium: Consortium,
                                                           tmp_path: Path) -> None:
    """Bytes flipped inside the WAL: SQLite drops the frame whose checksum fails and every
    later one, so the store comes back shorter; the chain is ahead and intake stays shut."""
    path = tmp_path / "store.db"
    shard, _ = filled(consortium, path, 300)
    holder = sqlite3.connect(path)
    holder.execute("SELECT 1 FROM meta").fetchall()
    node = open_node(consortium, path, shard)
    submit(node, consortium, _leaves(200))
    anchored(node, 500)
    node.stop()
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    shutil.copy(path, crashed / "store.db")
    shutil.copy(tmp_path / "store.db-wal", crashed / "store.db-wal")
    holder.close()
    wal = bytearray((crashed / "store.db-wal").read_bytes())
    middle = 32 + 24 + 8  # the WAL header, the first frame's header, into its page
    wal[middle:middle + 64] = xor(bytes(wal[middle:middle + 64]))
    (crashed / "store.db-wal").write_bytes(bytes(wal))
    node = open_node(consortium, crashed / "store.db", shard)
    try:
        halted = node.intake_halted()
        assert isinstance(halted, StoreBehindChain), halted
        assert halted.chain_size == 500 and halted.store_size == 300
    finally:
        node.stop()


def test_a_running_node_stops_intake_when_the_chain_moves_past_it(
    consortium: Consortium, tmp_path: Path,
) -> None:
    """Two copies of one store run as two nodes (the split the issue describes): the second
    anchors first; the first's next anchoring fails, its reconciliation finds the chain past
    its store, and it acknowledges nothing more."""
    path = tmp_path / "a.db"
    shard, _ = filled(consortium, path, 100)
    shutil.copy(path, tmp_path / "b.db")
    first = open_node(consortium, path, shard)
    second = open_node(consortium, tmp_path / "b.db", shard)
    try:
        submit(second, consortium, _leaves(20))
        anchored(second, 120)
        submit(first, consortium, _leaves(5))  # before it can know: acknowledged
        wait_for(lambda: first.intake_halted())
        assert isinstance(first.intake_halted(), StoreBehindChain)
        with pytest.raises(StoreBehindChain):
            submit(first, consortium, _leaves(1))
    finally:
        first.stop()
        second.stop()


# ------------------------------------------------------------------ 3. one writer, one snapshot


def test_a_second_writer_of_a_store_is_refused(consortium: Consortium, tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    shard, written = filled(consortium, path, 50)
    node = open_node(consortium, path, shard)
    try:
        with pytest.raises(StoreLocked, match=f"process {os.getpid()}"):
            open_node(consortium, path, shard)
        with pytest.raises(StoreLocked):
            SQLiteStore(path, platform="unionpay", log_id=node.log_id, hash_name="sm3")
        reader = SQLiteStore(path, platform="unionpay", log_id=node.log_id, hash_name="sm3",
                             read_only=True)
        assert reader.leaf(3) == written[3]
        with pytest.raises(StoreLocked, match="read-only"):
            reader.save_levels(reader.load_log(SM3_HASHER), rewrite=True)
        reader.close()
    finally:
        node.stop()
    SQLiteStore(path, platform="unionpay", log_id=node.log_id, hash_name="sm3").close()


def test_a_level_load_is_one_snapshot_while_a_writer_commits(tmp_path: Path) -> None:
    """A reader loading the log from the levels while the writer appends leaves and levels
    sees one consistent snapshot: size, levels and leaf hashes agree, every time."""
    path = tmp_path / "store.db"
    log_id = b"\x01" * 32
    writer = SQLiteStore(path, platform="unionpay", log_id=log_id, hash_name="sm3")
    reader = SQLiteStore(path, platform="unionpay", log_id=log_id, hash_name="sm3",
                         read_only=True)
    log = MerkleLog(SM3_HASHER)
    stop = threading.Event()

    def write() -> None:
        from tests.test_store import _batch

        start = 0
        while not stop.is_set() and start < 60 * LEVEL_CHUNK:
            batch = [Leaf(os.urandom(32), os.urandom(16)) for _ in range(700)]
            new = _batch(start, batch)
            writer.append_batches([new])
            log.extend_leaf_hashes(new.leaf_hashes)
            writer.save_levels(log)
            start += len(batch)

    thread = threading.Thread(target=write)
    thread.start()
    loads = 0
    try:
        while thread.is_alive() and loads < 40:
            loaded = reader.load_log(SM3_HASHER)
            hashes = [row.leaf_hash for row in reader.leaf_rows(0, loaded.size)]
            assert loaded.root() == MerkleLog.from_leaf_hashes(SM3_HASHER, hashes).root()
            loads += 1
    finally:
        stop.set()
        thread.join()
        reader.close()
        writer.close()
    assert loads >= 5


_LEVEL_KILL_CHILD = r"""
import os, sys, json
from pathlib import Path
from ledger_node.crypto import gmcrypto
from ledger_node.chain.adapter import Deployment, LedgerChain
from ledger_node.crypto.keyfiles import load_member_keys
from ledger_node.log.leaf import Leaf, batch_digest
from ledger_node.platform import store as store_module
from ledger_node.platform.node import NodeConfig, PlatformNode
from ledger_node.protocol.auth import BatchEvidence

root = Path(sys.argv[1])
keys = load_member_keys(root / "up.sm2.pem", root / "up.account.key")
chain = LedgerChain.embedded_on_disk(root / "chain.db")
deployment = Deployment.load(root / "deployment.json")
real = store_module.SQLiteStore.save_levels

def announced(self, log, *, rewrite=False):
    size = log.size
    if rewrite or size // 1024 != self._levels_saved_at // 1024:
        print("saving", size, flush=True)
    return real(self, log, rewrite=rewrite)

store_module.SQLiteStore.save_levels = announced
node = PlatformNode(NodeConfig("unionpay", root / "store.db", seal_interval=0.02),
                    chain.with_account(keys.account).attach(deployment), keys.sm2_key)
node.start()
while True:
    batch = [Leaf(os.urandom(32), os.urandom(40)) for _ in range(1500)]
    digest = batch_digest(node.log_id, batch)
    node.submit(batch, BatchEvidence(keys.address, digest, gmcrypto.sign(keys.sm2_key, digest)))
    print("acked", node.size(), flush=True)
"""


def test_sigkill_while_saving_levels_keeps_the_anchored_root(tmp_path: Path) -> None:
    """A real node process on a durable chain, SIGKILLed the moment it starts saving level
    chunks, five times: every next start resumes from the stored levels and gives the root
    the chain anchored; a read-only load and a full rebuild agree."""
    import random
    import signal
    import subprocess
    import sys
    import time

    from ledger_node.chain.adapter import LedgerChain, Role
    from ledger_node.chain.embedded_store import close_chain_store
    from ledger_node.crypto.keyfiles import load_member_keys, new_member_keys
    from ledger_node.demo.run import new_party
    from ledger_node.log.checkpoint import log_id_for
    from ledger_node.platform.node import NodeConfig

    up = new_member_keys(tmp_path, "up")
    pboc = new_party("pboc", Role.REGULATOR)
    chain = LedgerChain.embedded_on_disk(tmp_path / "chain.db")
    faucet = chain.dev_faucet()
    for address in (up.address, pboc.account.address):
        chain.fund(address, 10**19, faucet)
    from ledger_node.chain.adapter import Member

    deployment = chain.with_account(pboc.account).deploy(
        [Member(up.address, Role.PLATFORM, "unionpay", up.sm2_key.public_key().raw),
         pboc.as_member()], 1)
    deployment.save(tmp_path / "deployment.json")
    close_chain_store(chain.w3)
    repo = Path(__file__).resolve().parent.parent
    rng = random.Random(18)
    log_id = log_id_for("unionpay", 0)
    from_levels: list[int] = []
    for kill in range(5):
        child = subprocess.Popen([sys.executable, "-c", _LEVEL_KILL_CHILD, str(tmp_path)],
                                 cwd=repo, stdout=subprocess.PIPE, text=True)
        saves = 0
        try:
            assert child.stdout is not None
            for line in child.stdout:
                if line.startswith("saving"):
                    saves += 1
                    if saves >= 2:  # the first is the start's own save
                        time.sleep(rng.choice([0.0, 0.0005, 0.002]))
                        break
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        assert saves >= 2, f"kill {kill}: the child saved no levels"
        keys = load_member_keys(tmp_path / "up.sm2.pem", tmp_path / "up.account.key")
        chain = LedgerChain.embedded_on_disk(tmp_path / "chain.db")
        try:
            bound = chain.with_account(keys.account).attach(deployment)
            latest = bound.latest_checkpoint(log_id)
            reader = SQLiteStore(tmp_path / "store.db", platform="unionpay", log_id=log_id,
                                 hash_name="sm3", read_only=True)
            loaded = reader.load_log(SM3_HASHER)
            rebuilt = MerkleLog.from_leaf_hashes(SM3_HASHER, reader.leaf_hashes())
            reader.close()
            assert loaded.root() == rebuilt.root()
            if latest is not None:
                assert loaded.root(latest.tree_size) == latest.root
            node = PlatformNode(NodeConfig("unionpay", tmp_path / "store.db"), bound,
                                keys.sm2_key)
            try:
                node.start()
                assert node.intake_halted() is None
                from_levels.append(node.store_for_tests.leaves_from_levels)
                if latest is not None:
                    assert node._log.root(latest.tree_size) == latest.root
            finally:
                node.stop()
        finally:
            close_chain_store(chain.w3)
    assert max(from_levels) > 0, from_levels  # some starts resumed from stored levels


def test_leaves_hash_like_the_node() -> None:
    """The checks recompute leaf hashes with the one encoder (log/leaf.py)."""
    leaf = Leaf(os.urandom(32), os.urandom(10), os.urandom(32), os.urandom(32))
    assert leaves_data([leaf]) == [leaf.leaf_data()]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 13, 64, 100])
def test_the_remembering_inclusion_verifier_accepts_and_refuses_as_the_plain_one(
    size: int,
) -> None:
    """Every leaf's proof verifies; with the cache warm, any one altered path element, leaf
    hash or a root of another size is still refused."""
    from ledger_node.errors import InvalidProof
    from ledger_node.log.merkle import InclusionVerifier, verify_inclusion

    log = MerkleLog.from_leaves(SM3_HASHER, [os.urandom(8) for _ in range(size)])
    verifier = InclusionVerifier(SM3_HASHER)
    for at in (size, max(1, size - 1)):
        root = log.root(at)
        for index in range(at):
            proof = log.inclusion_proof(index, at).path
            verify_inclusion(SM3_HASHER, index, at, log.leaf_hash(index), proof, root)
            verifier.verify(index, at, log.leaf_hash(index), proof, root)
        for index in range(at):
            proof = list(log.inclusion_proof(index, at).path)
            for position in range(len(proof)):
                forged = proof.copy()
                forged[position] = os.urandom(32)
                with pytest.raises(InvalidProof):
                    verifier.verify(index, at, log.leaf_hash(index), forged, root)
            with pytest.raises(InvalidProof):
                verifier.verify(index, at, os.urandom(32), proof, root)


def test_reader_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    """Each reading thread gets its own connection; a web server's worker threads come and
    go (anyio's idle workers exit after 10 s, Starlette's TestClient uses a new one per
    request), so connections of ended threads are closed when the next one opens, instead
    of staying open (with their file descriptors) until the store closes."""
    store = SQLiteStore(tmp_path / "s.db", platform="unionpay", log_id=b"\x02" * 32,
                        hash_name="sm3")
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        thread = threading.Thread(target=store.size)
        thread.start()
        thread.join()
    store.size()
    assert len(os.listdir("/proc/self/fd")) - fds < 10
    store.close()
