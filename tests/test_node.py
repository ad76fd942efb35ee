"""The platform node without HTTP: durable acks, idempotency, group commit, validation,
sealing and anchoring, restart recovery, corrupted stores, proofs in a large log.

Every test deploys its own ``JointLedger`` (threshold 1) on one embedded chain per module.
Waiting for the sealer polls a condition with a generous deadline; no test asserts a time.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger_node.chain.adapter import LedgerChain, Role
from ledger_node.crypto import gmcrypto
from ledger_node.demo.run import Party, new_party
from ledger_node.errors import (
    ChainError,
    Forbidden,
    InvalidBatch,
    InvalidCheckpoint,
    InvalidLeaf,
    NodeStopped,
    StoreCorrupted,
    StoreMismatch,
    UnknownCheckpoint,
    UnknownLeaf,
)
from ledger_node.log import merkle
from ledger_node.log.checkpoint import log_id_for
from ledger_node.log.leaf import Leaf, batch_digest
from ledger_node.log.merkle import SM3_HASHER, MerkleLog
from ledger_node.platform.node import (
    NodeConfig,
    PlatformNode,
)
from ledger_node.platform.store import NewBatch, SQLiteStore
from ledger_node.protocol.auth import BatchEvidence
from ledger_node.protocol.bundle import verify_bundle
from tests.test_merkle import CountingHasher

ETHER = 10**18
WAIT_S = 30.0


@dataclass
class Consortium:
    """A fresh deployment: two platforms and a regulator, threshold 1."""

    base: LedgerChain
    unionpay: Party
    wechatpay: Party
    pboc: Party
    chain: LedgerChain  # attached, sending as unionpay

    def as_(self, party: Party) -> LedgerChain:
        return self.chain.with_account(party.account)

    def reader(self) -> LedgerChain:
        return LedgerChain(self.base.w3).attach(self.chain.deployment)


@pytest.fixture(scope="module")
def base_chain() -> LedgerChain:
    return LedgerChain.embedded()


@pytest.fixture
def consortium(base_chain: LedgerChain) -> Consortium:
    parties = [new_party("unionpay", Role.PLATFORM), new_party("wechatpay", Role.PLATFORM),
               new_party("pboc", Role.REGULATOR)]
    faucet = base_chain.dev_faucet()
    for p in parties:
        base_chain.fund(p.account.address, 10 * ETHER, faucet)
    unionpay, wechatpay, pboc = parties
    deployment = base_chain.with_account(pboc.account).deploy(
        [p.as_member() for p in parties], threshold=1
    )
    chain = base_chain.with_account(unionpay.account).attach(deployment)
    return Consortium(base_chain, unionpay, wechatpay, pboc, chain)


def make_node(c: Consortium, path: Path, **overrides: Any) -> PlatformNode:
    config = NodeConfig(platform="unionpay", store_path=path, **overrides)
    return PlatformNode(config, c.chain, c.unionpay.sm2_key)


@pytest.fixture
def node(consortium: Consortium, tmp_path: Path) -> Iterator[PlatformNode]:
    n = make_node(consortium, tmp_path / "node.db")
    n.start()
    yield n
    n.stop()


_counter = iter(range(10**9))


def leaves(count: int) -> list[Leaf]:
    """``count`` distinct leaves (random commitments, some with match tags)."""
    out = []
    for _ in range(count):
        i = next(_counter)
        if i % 3 == 0:
            out.append(Leaf(os.urandom(32), b"e%d" % i, os.urandom(32), os.urandom(32)))
        else:
            out.append(Leaf(os.urandom(32), os.urandom(40)))
    return out


def sign(party: Party, log_id: bytes, batch: Sequence[Leaf]) -> BatchEvidence:
    digest = batch_digest(log_id, batch)
    return BatchEvidence(party.account.address, digest, gmcrypto.sign(party.sm2_key, digest))


def submit(node: PlatformNode, party: Party, batch: Sequence[Leaf]) -> list[Any]:
    return node.submit(batch, sign(party, node.log_id, batch))


def wait_for(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for: {what}")
        time.sleep(0.02)


def leaf_hash(leaf: Leaf) -> bytes:
    return SM3_HASHER.hash_leaf(leaf.leaf_data())


# ------------------------------------------------------------------ durable intake


def test_ack_is_durable_across_reopen(consortium: Consortium, tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    node = make_node(consortium, path, seal_interval=3600.0, seal_size=10**6)
    node.start()
    submitted: list[Leaf] = []
    for size in (1, 7, 300):
        batch = leaves(size)
        receipts = submit(node, consortium.unionpay, batch)
        assert [r.index for r in receipts] == list(range(len(submitted), len(submitted) + size))
        assert [r.leaf_hash for r in receipts] == [leaf_hash(x) for x in batch]
        assert not any(r.duplicate for r in receipts)
        submitted += batch
    root = node._head().root
    # Read the file while the node still runs: what was acknowledged is already there.
    other = SQLiteStore(path, platform="unionpay", log_id=node.log_id, hash_name="sm3",
                        read_only=True)  # the node is the store's one writer
    assert [other.leaf(i) for i in range(other.size())] == submitted
    other.close()
    node.stop()

    store = SQLiteStore(path, platform="unionpay", log_id=node.log_id, hash_name="sm3")
    assert store.size() == len(submitted)
    assert MerkleLog.from_leaf_hashes(SM3_HASHER, store.leaf_hashes()).root() == root
    batch = store.batch_of(len(submitted) - 1)
    assert batch.evidence.signer == consortium.unionpay.account.address
    assert batch.indexes == tuple(range(8, 308))
    # non-repudiation from the store alone: the signed digest recomputes and verifies
    signed_leaves = [store.leaf(i) for i in batch.indexes]
    assert batch_digest(node.log_id, signed_leaves) == batch.evidence.digest
    gmcrypto.verify(consortium.unionpay.sm2_key.public_key(), batch.evidence.digest,
                    batch.evidence.signature)
    store.close()

    again = make_node(consortium, path)
    assert again.size() == len(submitted) and again._head().root == root
    assert again.leaf(3) == submitted[3]
    again.store_for_tests.close()


def test_resending_is_idempotent(node: PlatformNode, consortium: Consortium) -> None:
    batch = leaves(5)
    first = submit(node, consortium.unionpay, batch)
    again = submit(node, consortium.unionpay, batch)
    assert [(r.index, r.leaf_hash) for r in again] == [(r.index, r.leaf_hash) for r in first]
    assert all(r.duplicate for r in again)
    # a batch mixing old and new leaves, and repeating a new one within itself
    new = leaves(2)
    mixed = [batch[1], new[0], new[1], new[0]]
    receipts = submit(node, consortium.unionpay, mixed)
    assert [(r.index, r.duplicate) for r in receipts] == [(1, True), (5, False), (6, False),
                                                         (5, True)]
    assert node.size() == 7 and node.store_for_tests.size() == 7
    assert node.find(leaf_hash(new[1])) == 6
    assert node.find(b"\x00" * 32) is None and node.find(b"short") is None
    assert node.store_for_tests.batch_of(6).indexes == (1, 5, 6, 5)
    m = node.metrics()
    assert m["leaves"] == 7 and m["duplicates"] == 7


def test_batch_evidence_and_the_risk_list_come_from_node_methods(
    node: PlatformNode, consortium: Consortium,
) -> None:
    """What the HTTP routes need comes from node methods: a leaf's signed batch (the
    evidence route) and the risk-device list copy the node builds with its own key."""
    batch = leaves(3)
    evidence = sign(consortium.unionpay, node.log_id, batch)
    node.submit(batch, evidence)
    stored = node.leaf_batch(2)
    assert stored.evidence == evidence and stored.indexes == (0, 1, 2)
    with pytest.raises(UnknownLeaf):
        node.leaf_batch(3)
    risk_list = node.risk_list()
    assert risk_list is node.risk_list()  # one copy per node, synced by its callers
    assert risk_list.member == consortium.unionpay.account.address
    assert not hasattr(node, "store") and not hasattr(node, "sm2_key")  # they stay inside


def test_queued_submissions_share_one_commit(node: PlatformNode, consortium: Consortium,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """While the writer is busy, 31 submitters queue up; the next commit takes them all."""
    results: list[list[Any]] = []
    batches = [leaves(1) for _ in range(32)]
    threads = [threading.Thread(target=lambda b=b: results.append(
        submit(node, consortium.unionpay, b))) for b in batches]
    writing = threading.Event()
    append = node.store_for_tests.append_batches

    def signalling_append(groups: Any) -> None:
        writing.set()
        append(groups)

    monkeypatch.setattr(node.store_for_tests, "append_batches", signalling_append)
    with node.store_for_tests._write_lock:  # the writer's first commit waits here
        threads[0].start()
        wait_for("the writer to start the first commit", writing.is_set)
        for t in threads[1:]:
            t.start()
        wait_for("31 queued submissions", lambda: node._queue.qsize() == 31)
    for t in threads:
        t.join()
    m = node.metrics()
    assert m["submissions"] == 32 and m["commits"] == 2 and m["leaves"] == 32
    assert sorted(r[0].index for r in results) == list(range(32))


def test_concurrent_submitters_share_commits(node: PlatformNode, consortium: Consortium) -> None:
    threads, per_thread = 32, 6
    shared = leaves(4)  # every thread also sends these: stored once
    results: dict[int, list[Any]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def worker(t: int) -> None:
        try:
            mine = leaves(per_thread)
            barrier.wait()
            out = []
            for leaf in mine:
                out += submit(node, consortium.unionpay, [leaf])
            out += submit(node, consortium.unionpay, shared)
            results[t] = out
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    submissions = threads * (per_thread + 1)
    m = node.metrics()
    assert m["submissions"] == submissions
    # never more transactions than submissions (that they share them, deterministically:
    # test_queued_submissions_share_one_commit)
    assert 1 <= m["commits"] <= submissions
    fresh = [r for rs in results.values() for r in rs if not r.duplicate]
    total = threads * per_thread + len(shared)
    assert len(fresh) == total and node.size() == total and node.store_for_tests.size() == total
    assert sorted(r.index for r in fresh) == list(range(total))
    for r in (r for rs in results.values() for r in rs):
        assert node.store_for_tests.leaf_hash(r.index) == r.leaf_hash
        assert node._log.leaf_hash(r.index) == r.leaf_hash
    shared_indexes = {tuple(r.index for r in rs[-len(shared):]) for rs in results.values()}
    assert len(shared_indexes) == 1  # every thread got the same receipts for the shared leaves


# ------------------------------------------------------------------ validation


def test_rejected_batches_store_nothing(consortium: Consortium, tmp_path: Path) -> None:
    node = make_node(consortium, tmp_path / "node.db", max_batch=4, member_cache_ttl=0.0)
    up, wp, pboc = consortium.unionpay, consortium.wechatpay, consortium.pboc
    batch = leaves(2)
    with pytest.raises(NodeStopped):
        submit(node, up, batch)
    node.start()
    log_id = node.log_id
    good = sign(up, log_id, batch)
    cases: list[tuple[Any, BatchEvidence, type[Exception], str]] = [
        ([], good, InvalidBatch, "1..4 leaves, got 0"),
        (leaves(5), sign(up, log_id, leaves(5)), InvalidBatch, "1..4 leaves, got 5"),
        ([batch[0], "not a leaf"], good, InvalidLeaf, "must be a Leaf"),
        (batch, sign(up, b"\x07" * 32, batch), InvalidBatch, "digest does not match"),
        (batch[:1], good, InvalidBatch, "digest does not match"),
        (batch, BatchEvidence(up.account.address, good.digest, b"\x30\x00"), InvalidBatch,
         "signature does not verify"),
        (batch, BatchEvidence(up.account.address, good.digest,
                              gmcrypto.sign(wp.sm2_key, good.digest)),
         InvalidBatch, "signature does not verify"),
        (batch, sign(wp, log_id, batch), Forbidden, "belongs to unionpay"),
        (batch, sign(pboc, log_id, batch), Forbidden, "belongs to unionpay"),
    ]
    for batch_, evidence, error, message in cases:
        with pytest.raises(error, match=message):
            node.submit(batch_, evidence)
    assert node.store_for_tests.size() == 0 and node.size() == 0
    assert node.metrics()["rejected"] == len(cases)

    # a platform removed by the consortium may no longer submit
    consortium.as_(pboc).propose_remove_member(up.account.address)
    with pytest.raises(Forbidden, match="not an active platform member"):
        submit(node, up, batch)
    assert node.store_for_tests.size() == 0
    node.stop()
    with pytest.raises(NodeStopped):
        submit(node, up, batch)


def test_start_refuses_a_key_that_is_not_registered(consortium: Consortium,
                                                    tmp_path: Path) -> None:
    config = NodeConfig(platform="unionpay", store_path=tmp_path / "node.db")
    node = PlatformNode(config, consortium.chain, gmcrypto.generate_private_key())
    with pytest.raises(Forbidden, match="not this node's key"):
        node.start()
    node.stop()
    regulator = PlatformNode(config, consortium.as_(consortium.pboc), consortium.pboc.sm2_key)
    with pytest.raises(Forbidden, match="not an active platform"):
        regulator.start()
    regulator.stop()


# ------------------------------------------------------------------ sealing and bundles


def test_sealer_anchors_and_bundles_verify(node: PlatformNode, consortium: Consortium) -> None:
    batch = leaves(50)
    receipts = submit(node, consortium.unionpay, batch)
    wait_for("anchoring", lambda: node.proof_bundle(receipts[-1].index) is not None)
    reader = consortium.reader()
    for r in receipts[::7]:
        bundle = node.proof_bundle(r.index)
        assert bundle is not None
        anchored = reader.checkpoint_at(node.log_id, bundle.tree_size)
        merkle.verify_inclusion(SM3_HASHER, r.index, bundle.tree_size, r.leaf_hash,
                                bundle.path, anchored.root)
        verdict = verify_bundle(bundle, chain=LedgerChain(consortium.base.w3))
        assert verdict.valid, verdict.to_json()
        status = node.leaf_status(r.index)
        assert status.anchored and status.checkpoint_size == bundle.tree_size
    assert node.leaf(0) == batch[0]
    with pytest.raises(UnknownLeaf):
        node.leaf(len(batch))
    with pytest.raises(UnknownLeaf):
        node.leaf_status(-1)
    with pytest.raises(UnknownLeaf):
        node.proof_bundle(len(batch))
    m = node.metrics()
    assert m["checkpoints_anchored"] >= 1 and m["anchoring_failures"] == 0
    assert m["anchor_latency_samples"] >= 1 and m["anchor_latency_p99_seconds"] > 0


def test_pending_leaves_have_no_bundle_until_anchored(consortium: Consortium,
                                                      tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    node = make_node(consortium, path, seal_interval=3600.0, seal_size=10**6)
    node.start()
    receipts = submit(node, consortium.unionpay, leaves(3))
    assert node.proof_bundle(0) is None
    status = node.leaf_status(2)
    assert not status.anchored and status.checkpoint_size is None
    assert node.checkpoints() == []
    node.stop()  # the final seal anchors the head
    assert consortium.reader().latest_checkpoint(node.log_id).tree_size == 3  # type: ignore
    again = make_node(consortium, path)
    bundle = again.proof_bundle(receipts[1].index)
    assert bundle is not None and bundle.tree_size == 3
    assert verify_bundle(bundle, chain=LedgerChain(consortium.base.w3)).valid
    again.store_for_tests.close()


def test_seal_size_triggers_a_checkpoint(consortium: Consortium, tmp_path: Path) -> None:
    node = make_node(consortium, tmp_path / "node.db", seal_interval=3600.0, seal_size=10)
    node.start()
    submit(node, consortium.unionpay, leaves(12))
    wait_for("a checkpoint after seal_size leaves",
             lambda: node.metrics()["checkpoints_anchored"] >= 1)
    assert node.checkpoints()[0].tree_size == 12
    node.stop()


def test_consistency_between_anchored_sizes(consortium: Consortium, tmp_path: Path) -> None:
    node = make_node(consortium, tmp_path / "node.db", seal_interval=3600.0, seal_size=5)
    node.start()
    for _ in range(3):
        submit(node, consortium.unionpay, leaves(5))
        target = node.size()
        wait_for(f"checkpoint {target}",
                 lambda t=target: [c.tree_size for c in node.checkpoints()][-1:] == [t])
    sizes = [c.tree_size for c in node.checkpoints()]
    assert sizes == [5, 10, 15]
    reader = consortium.reader()
    proof = node.consistency_proof(5, 15)
    merkle.verify_consistency(SM3_HASHER, 5, 15, proof.path,
                              reader.checkpoint_at(node.log_id, 5).root,
                              reader.checkpoint_at(node.log_id, 15).root)
    assert node.consistency_proof(10, 10).path == ()
    assert [c.tree_size for c in node.checkpoints(after=5, limit=1)] == [10]
    assert node.checkpoint(15).tx_hash == reader.checkpoints(node.log_id)[-1].tx_hash
    with pytest.raises(UnknownCheckpoint):
        node.checkpoint(6)
    with pytest.raises(UnknownCheckpoint, match="size 7"):
        node.consistency_proof(5, 7)
    with pytest.raises(UnknownCheckpoint, match="size 0"):
        node.consistency_proof(0, 5)
    with pytest.raises(InvalidCheckpoint, match="larger than"):
        node.consistency_proof(15, 5)
    node.stop()


# ------------------------------------------------------------------ failures and restarts


def test_anchoring_failures_are_retried_not_fatal(consortium: Consortium, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    node = make_node(consortium, tmp_path / "node.db", seal_interval=0.05)
    real = node.chain.anchor_checkpoint
    failures = {"left": 3}

    def flaky(*args: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise ChainError("chain unreachable (injected)")
        return real(*args)

    monkeypatch.setattr(node.chain, "anchor_checkpoint", flaky)
    node.start()
    submit(node, consortium.unionpay, leaves(4))
    wait_for("anchoring after failures", lambda: node.proof_bundle(0) is not None)
    m = node.metrics()
    assert m["anchoring_failures"] == 3 and m["anchoring_failing"] == 0.0
    history = consortium.reader().checkpoints(node.log_id)
    assert [c.tree_size for c in history] == [4]  # anchored once, despite the retries
    submit(node, consortium.unionpay, leaves(1))  # the node still takes submissions
    node.stop()


def test_restart_reanchors_a_signed_checkpoint_once(consortium: Consortium, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "node.db"
    node = make_node(consortium, path, seal_interval=0.05)

    def down(*args: Any) -> Any:
        raise ChainError("chain unreachable (injected)")

    monkeypatch.setattr(node.chain, "anchor_checkpoint", down)
    node.start()
    submit(node, consortium.unionpay, leaves(6))
    wait_for("a failed anchoring", lambda: node.metrics()["anchoring_failures"] >= 1)
    assert node.metrics()["anchoring_failing"] == 1.0
    status = node.sealer_status()
    assert status.failing and status.last_error == "ChainError: chain unreachable (injected)"
    node.stop()
    monkeypatch.undo()
    pending = SQLiteStore(path, platform="unionpay", log_id=node.log_id, hash_name="sm3")
    assert [c.tree_size for c in pending.pending_checkpoints()] == [6]
    pending.close()
    reader = consortium.reader()
    assert reader.latest_checkpoint(node.log_id) is None

    again = make_node(consortium, path, seal_interval=0.05)
    again.start()
    wait_for("re-anchoring at start", lambda: again.proof_bundle(5) is not None)
    again.stop()
    assert [c.tree_size for c in reader.checkpoints(node.log_id)] == [6]
    assert again.metrics()["anchoring_failures"] == 0


def test_restart_only_marks_a_checkpoint_the_chain_already_has(
    consortium: Consortium, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transaction was mined but the node died before recording it: no second anchor."""
    path = tmp_path / "node.db"
    node = make_node(consortium, path, seal_interval=0.05)
    real = node.chain.anchor_checkpoint

    def mined_then_lost(*args: Any) -> Any:
        real(*args)
        raise ChainError("connection lost after sending (injected)")

    def reads_down(*args: Any) -> Any:
        raise ChainError("chain unreachable (injected)")

    monkeypatch.setattr(node.chain, "anchor_checkpoint", mined_then_lost)
    node.start()  # compares the store with the chain's latest checkpoint: reads it once
    monkeypatch.setattr(node.chain, "latest_checkpoint", reads_down)
    submit(node, consortium.unionpay, leaves(3))
    wait_for("a lost anchoring", lambda: node.metrics()["anchoring_failures"] >= 1)
    node.stop()
    monkeypatch.undo()
    reader = consortium.reader()
    assert [c.tree_size for c in reader.checkpoints(node.log_id)] == [3]

    again = make_node(consortium, path, seal_interval=0.05)
    again.start()
    wait_for("recovery", lambda: again.proof_bundle(2) is not None)
    stored = again.checkpoints()
    again.stop()
    history = reader.checkpoints(node.log_id)
    assert [c.tree_size for c in history] == [3]  # marked, not anchored again
    assert stored[0].tx_hash == history[0].tx_hash
    assert stored[0].block_number == history[0].block_number


def test_corrupted_or_foreign_store_is_refused(consortium: Consortium, tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    node = make_node(consortium, path, seal_interval=3600.0)
    node.start()
    submit(node, consortium.unionpay, leaves(500))
    node.stop()
    with pytest.raises(StoreMismatch, match="made for platform 'unionpay'"):
        PlatformNode(NodeConfig(platform="wechatpay", store_path=path),
                     consortium.as_(consortium.wechatpay), consortium.wechatpay.sm2_key)
    os.truncate(path, path.stat().st_size // 3)
    with pytest.raises(StoreCorrupted):
        make_node(consortium, path)


def test_leaves_altered_after_anchoring_are_detected(consortium: Consortium,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    node = make_node(consortium, path, seal_interval=3600.0)
    node.start()
    submit(node, consortium.unionpay, leaves(8))
    node.stop()  # anchors size 8
    db = sqlite3.connect(path)
    db.execute("UPDATE leaves SET leaf_hash = ? WHERE idx = 3", (b"\x09" * 32,))
    db.commit()
    db.close()
    with pytest.raises(StoreCorrupted, match="do not produce the root of the anchored"):
        make_node(consortium, path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM leaves WHERE idx = 7")
    db.commit()
    db.close()
    with pytest.raises(StoreCorrupted, match="anchored checkpoint of size 8 but only 7"):
        make_node(consortium, path)


# ------------------------------------------------------------------ a larger log


def test_proofs_in_a_large_log_come_from_the_levels(consortium: Consortium,
                                                    tmp_path: Path) -> None:
    path, size = tmp_path / "node.db", 100_003
    store = SQLiteStore(path, platform="unionpay", log_id=log_id_for("unionpay"),
                        hash_name="sm3")
    batch = [Leaf(i.to_bytes(32, "big")) for i in range(size)]
    hashes = tuple(leaf_hash(x) for x in batch)
    evidence = BatchEvidence(consortium.unionpay.account.address, b"d" * 32, b"s")
    store.append_batches([NewBatch(evidence, 0.0, tuple(range(size)), tuple(batch), hashes)])
    store.close()

    node = make_node(consortium, path, seal_interval=0.05)
    node.start()
    wait_for("the first checkpoint", lambda: node.proof_bundle(0) is not None)
    counting = CountingHasher(inner=node._log.hasher, name=node._log.hasher.name)
    node._log._hasher = counting  # type: ignore[assignment]
    reader = consortium.reader()
    root = reader.checkpoint_at(node.log_id, size).root
    for index in (0, 1, 65_535, 99_999, size - 1):
        counting.calls = 0
        bundle = node.proof_bundle(index)
        assert bundle is not None and bundle.tree_size == size
        assert counting.calls <= 2 * size.bit_length()  # O(log n): no rebuild
        merkle.verify_inclusion(SM3_HASHER, index, size, hashes[index], bundle.path, root)
    node.stop()


_KILLED_CHILD = r"""
import os, sys
from pathlib import Path
from ledger_node.crypto import gmcrypto
from ledger_node.chain.adapter import LedgerChain, Role
from ledger_node.demo.run import new_party
from ledger_node.log.leaf import Leaf, batch_digest
from ledger_node.platform.node import NodeConfig, PlatformNode
from ledger_node.protocol.auth import BatchEvidence

chain = LedgerChain.embedded()
up, pboc = new_party("unionpay", Role.PLATFORM), new_party("pboc", Role.REGULATOR)
faucet = chain.dev_faucet()
for p in (up, pboc):
    chain.fund(p.account.address, 10**19, faucet)
deployment = chain.with_account(pboc.account).deploy([up.as_member(), pboc.as_member()], 1)
node = PlatformNode(NodeConfig("unionpay", Path(sys.argv[1])),
                    chain.with_account(up.account).attach(deployment), up.sm2_key)
node.start()
while True:
    batch = [Leaf(os.urandom(32), os.urandom(20)) for _ in range(50)]
    digest = batch_digest(node.log_id, batch)
    for r in node.submit(batch, BatchEvidence(up.account.address, digest,
                                              gmcrypto.sign(up.sm2_key, digest))):
        print(r.index, r.leaf_hash.hex(), flush=True)
"""


def test_acknowledged_leaves_survive_kill_9(tmp_path: Path) -> None:
    """A node process killed with SIGKILL mid-intake keeps every leaf it acknowledged."""
    path = tmp_path / "node.db"
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen([sys.executable, "-c", _KILLED_CHILD, str(path)], cwd=root,
                             stdout=subprocess.PIPE, text=True)
    acked: list[tuple[int, bytes]] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            index, digest = line.split()
            acked.append((int(index), bytes.fromhex(digest)))
            if len(acked) >= 2_000:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert len(acked) >= 2_000, f"child exited early with {child.returncode}"
    store = SQLiteStore(path, platform="unionpay", log_id=log_id_for("unionpay"),
                        hash_name="sm3")
    assert store.size() >= len(acked)
    for index, digest in acked:
        assert store.leaf_hash(index) == digest
    store.close()
