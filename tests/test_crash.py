"""Crash safety of real processes (issue 5): SIGKILL under load, and damaged stores at start.

``test_sigkill_under_load_loses_nothing`` runs ``jointledger chain --data`` and ``jointledger
serve`` as separate processes, feeds the node from a client thread through the SDK (a batch
is re-sent until it is acknowledged) and SIGKILLs the node (and, separately, the chain) at
random moments and in the sealing/anchoring window, restarting it each time. Afterwards the
node's store, its log and the chain's ``CheckpointAnchored`` history must agree on
everything that was acknowledged.

How a kill is known to have hit sealing or anchoring: the test polls the node's SQLite
store (WAL: a reader never blocks the writer) and kills the moment a checkpoint is stored
``signed`` but not yet ``anchored``: the sealer has signed and saved it and is anchoring
it. Right after the kill the store and the chain tell which side of the anchoring
transaction the kill fell on (chain without that size: before the transaction landed;
chain with it: after it landed, before the store was updated).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger_node.chain.adapter import Deployment, LedgerChain
from ledger_node.client.sdk import PlatformClient
from ledger_node.demo.localsite import LocalSite, free_port
from ledger_node.errors import ApiError
from ledger_node.log.checkpoint import log_id_for
from ledger_node.log.leaf import Leaf, leaves_data
from ledger_node.log.merkle import MerkleLog, hasher_for, root_from_inclusion_proof
from ledger_node.protocol.bundle import ProofBundle, verify_bundle
from tests.api_support import random_leaves

pytestmark = pytest.mark.slow

_CLI = [sys.executable, "-m", "ledger_node.cli"]
NODE_KILLS = 20  # at least 20 (issue 5)
CHAIN_KILLS = 2
WINDOW_KILLS_MIN = 6  # kills that must land with a checkpoint signed but not anchored


# ---------------------------------------------------------------------- processes


class Proc:
    """One restartable ``jointledger`` process, output appended to ``<name>.log``."""

    def __init__(self, root: Path, name: str, args: list[str], ready: Callable[[], bool]
                 ) -> None:
        self.root, self.name, self.args, self.ready = root, name, args, ready
        self.process: subprocess.Popen[bytes] | None = None
        self.start_times: list[float] = []  # seconds from launch to ready, per start

    def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait until it is ready."""
        with (self.root / f"{self.name}.log").open("ab") as log:
            self.process = subprocess.Popen([*_CLI, *self.args], cwd=self.root, stdout=log,
                                            stderr=subprocess.STDOUT)
        began = time.monotonic()
        deadline = began + timeout
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.root / f"{self.name}.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"{self.name} did not start:\n{tail}")
            time.sleep(0.05)
        self.start_times.append(time.monotonic() - began)

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM (a clean stop), SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _rpc_up(url: str) -> bool:
    try:
        answer = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber",
                                       "params": []}, timeout=2)
        return answer.status_code == 200
    except httpx.HTTPError:
        return False


def _node_config(root: Path, name: str, port: int, rpc_url: str, seal_interval: float) -> str:
    """Write platform ``name``'s serve config (as LocalSite does); return its file name."""
    (root / f"{name}.toml").write_text(
        f'[node]\nplatform = "{name}"\nstore = "{name}.db"\n'
        f"seal_interval = {seal_interval}\nseal_size = 10000\n\n"
        f"[http]\nport = {port}\n\n"
        f'[keys]\nsm2 = "keys/{name}.sm2.pem"\naccount = "keys/{name}.account.key"\n\n'
        f'[chain]\ndeployment = "deployment.json"\nrpc_url = "{rpc_url}"\n')
    return f"{name}.toml"


def _serve_args(config: str) -> list[str]:
    return ["serve", "--role", "platform", "--name", "unionpay", "--config", config]


# ---------------------------------------------------------------------- the client


@dataclass
class Feed:
    """What the submitting thread did: every leaf sent, every receipt got."""

    leaves: dict[bytes, Leaf] = field(default_factory=dict)  # leaf hash -> leaf, all sent
    acked: dict[bytes, int] = field(default_factory=dict)  # leaf hash -> acknowledged index
    batches: int = 0
    retried_batches: int = 0  # batches re-sent after an unacknowledged attempt
    recovered: int = 0  # leaves of a re-sent batch that the lost attempt had stored
    failures: dict[str, int] = field(default_factory=dict)
    in_flight: bool = False
    error: BaseException | None = None


def _feed(client: PlatformClient, feed: Feed, stop: threading.Event, seed: int) -> None:
    """Submit batches of fresh leaves until ``stop``; re-send each until acknowledged."""
    rng = random.Random(seed)
    hasher = hasher_for("sm3")
    try:
        while not stop.is_set():
            batch = random_leaves(rng.randint(1, 12), seed=rng.randrange(2**32))
            hashes = [hasher.hash_leaf(d) for d in leaves_data(batch)]
            feed.leaves.update(zip(hashes, batch, strict=True))
            attempts = 0
            while True:
                attempts += 1
                feed.in_flight = True
                try:
                    receipts = client.submit_leaves(batch)
                    break
                except Exception as exc:  # the node is down or died mid-request: re-send
                    kind = type(exc).__name__
                    if isinstance(exc, ApiError):
                        kind += f" {exc.status} {exc.problem_type.rsplit('/', 1)[-1]}"
                    feed.failures[kind] = feed.failures.get(kind, 0) + 1
                    time.sleep(0.05)
                finally:
                    feed.in_flight = False
            feed.batches += 1
            if attempts > 1:
                feed.retried_batches += 1
                feed.recovered += sum(r.duplicate for r in receipts)
            for leaf_hash, receipt in zip(hashes, receipts, strict=True):
                assert receipt.leaf_hash == leaf_hash
                assert leaf_hash not in feed.acked
                feed.acked[leaf_hash] = receipt.index
    except BaseException as exc:  # reported by the test thread
        feed.error = exc


# ---------------------------------------------------------------------- store probes


def _read(store: Path, sql: str) -> list[Any]:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _signed_sizes(store: Path) -> list[int]:
    try:
        return [int(r[0]) for r in _read(
            store, "SELECT tree_size FROM checkpoints WHERE status = 'signed'")]
    except sqlite3.Error:  # the store may not exist yet or be mid-creation
        return []


def _anchored(store: Path) -> list[tuple[int, bytes, bytes]]:
    return [(int(size), bytes(root), bytes(tx)) for size, root, tx in _read(
        store, "SELECT tree_size, root, tx_hash FROM checkpoints WHERE status = 'anchored'"
               " ORDER BY tree_size")]


def _wait_signed(store: Path, timeout: float = 5.0) -> bool:
    """Poll the store until a checkpoint is signed but not anchored; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _signed_sizes(store):
            return True
        time.sleep(0.001)
    return False


# ---------------------------------------------------------------------- the crash test


def test_sigkill_under_load_loses_nothing(tmp_path: Path) -> None:
    site = LocalSite(tmp_path)
    root = site.root
    chain_port, node_port = free_port(), free_port()
    rpc_url, url = f"http://127.0.0.1:{chain_port}", f"http://127.0.0.1:{node_port}"
    store = root / "unionpay.db"
    chain_proc = Proc(root, "chain", [
        "chain", "--port", str(chain_port), "--consortium", "consortium.toml",
        "--deployment", "deployment.json", "--data", "chain.db"],
        ready=lambda: (root / "deployment.json").exists() and _rpc_up(rpc_url))
    # a short seal interval: a checkpoint is in the making most of the time
    node = Proc(root, "unionpay", _serve_args(_node_config(root, "unionpay", node_port, rpc_url,
                                                           0.05)),
                ready=lambda: _healthy(url))
    feed, stop = Feed(), threading.Event()
    keys = site.keys("unionpay")
    client = PlatformClient(url, "unionpay", keys.address, keys.sm2_key, retries=1,
                            backoff=0.05, timeout=10)
    rng = random.Random(5)
    phases = {"random": 0, "signed, anchor not on chain": 0, "anchor on chain, store not marked": 0,
              "submission in flight": 0}
    anchored_seen: set[tuple[int, bytes, bytes]] = set()
    chain_kills = 0
    t_start = time.monotonic()
    chain_proc.start()
    node.start()
    feeder = threading.Thread(target=_feed, args=(client, feed, stop, 7), daemon=True)
    feeder.start()
    try:
        for kill in range(NODE_KILLS):
            if kill % 8 == 4 and chain_kills < CHAIN_KILLS:
                time.sleep(rng.uniform(0.05, 0.3))
                chain_proc.kill()  # the node keeps taking submissions; anchoring fails
                chain_kills += 1
                time.sleep(rng.uniform(0.1, 0.5))
                chain_proc.start()
            aimed = kill % 2 == 1  # every other kill aims at the sealing/anchoring window
            time.sleep(rng.uniform(0.05, 0.3))
            if aimed:
                _wait_signed(store)
                time.sleep(rng.choice([0.0, 0.0, rng.uniform(0.0, 0.05)]))
            in_flight = feed.in_flight
            node.kill()
            signed = _signed_sizes(store)
            if signed:
                time.sleep(0.2)  # a transaction the node had sent is mined by now
                chain = LedgerChain.from_rpc(rpc_url).attach(site.deployment)
                latest = chain.latest_checkpoint(log_id_for("unionpay", 0))
                on_chain = latest is not None and latest.tree_size >= max(signed)
                phases["anchor on chain, store not marked" if on_chain
                       else "signed, anchor not on chain"] += 1
            elif in_flight:
                phases["submission in flight"] += 1
            else:
                phases["random"] += 1
            anchored_seen.update(_anchored(store))
            assert feed.error is None, feed.error
            node.start()
        time.sleep(0.5)
    finally:
        stop.set()
        feeder.join(timeout=120)
    assert feed.error is None, feed.error
    assert not feeder.is_alive()

    t_check = time.monotonic()
    try:
        _check_outcome(site, url, rpc_url, store, feed, anchored_seen)
    finally:
        node.stop()
        chain_proc.stop()
    window = phases["signed, anchor not on chain"] + phases["anchor on chain, store not marked"]
    print(f"\ncrash test: {NODE_KILLS} node kills ({window} while a checkpoint was signed and "
          f"being anchored: {phases}), {chain_kills} chain kills; {feed.batches} batches, "
          f"acknowledged {len(feed.acked)} leaves, re-sent {feed.retried_batches} "
          f"unacknowledged batches, recovered {feed.recovered} leaves the lost attempts had "
          f"stored, lost 0; failures seen by the client {feed.failures}; "
          f"node restarts {sum(node.start_times) / len(node.start_times):.1f} s on average, "
          f"kill phase {t_check - t_start:.1f} s, checks {time.monotonic() - t_check:.1f} s")
    assert window >= WINDOW_KILLS_MIN, phases
    # a dead node is a connection error or a 5xx; a 4xx would be a refusal of a valid batch
    assert not [k for k in feed.failures if k.startswith("ApiError 4")], feed.failures


def _check_outcome(site: LocalSite, url: str, rpc_url: str, store: Path, feed: Feed,
                   anchored_seen: set[tuple[int, bytes, bytes]]) -> None:
    """Everything acknowledged is in the log exactly once, anchored, and provable."""
    log_id = log_id_for("unionpay", 0)
    size = len(feed.leaves)
    assert len(feed.acked) == size  # the feeder stops only after an acknowledgement
    # the head gets anchored (the sealer runs every 0.05 s)
    deadline = time.monotonic() + 60
    while not (_anchored(store) and _anchored(store)[-1][0] == size):
        assert time.monotonic() < deadline, "the head was not anchored"
        time.sleep(0.1)
    # the log holds each leaf once, at the acknowledged index: no duplicates, no loss
    rows = _read(store, "SELECT idx, leaf_hash FROM leaves ORDER BY idx")
    assert [int(i) for i, _ in rows] == list(range(size))
    hashes = [bytes(h) for _, h in rows]
    assert len(set(hashes)) == size
    assert {h: i for i, h in enumerate(hashes)} == feed.acked
    # checkpoints: none lost, none twice, in order, the same on the chain and in the store
    deployment = Deployment.load(site.root / "deployment.json")
    chain = LedgerChain.from_rpc(rpc_url).attach(deployment)
    history = chain.checkpoints(log_id)
    on_chain = [(c.tree_size, c.root, c.tx_hash) for c in history]
    stored = _anchored(store)
    assert _signed_sizes(store) == []
    assert on_chain == stored
    sizes = [s for s, _, _ in on_chain]
    assert sizes == sorted(set(sizes))
    assert anchored_seen <= set(stored)  # nothing anchored before a kill went missing
    log = MerkleLog.from_leaf_hashes(hasher_for("sm3"), hashes)
    for tree_size, root, _ in on_chain:
        assert log.root(tree_size) == root
    # every acknowledged leaf's proof bundle verifies against the chain: a full verification
    # (chain, contract, anchored root, signature) of a sample; every other bundle carries the
    # same signed checkpoint, and its own leaf and path must give the anchored root.
    keys = site.keys("unionpay")
    client = PlatformClient(url, "unionpay", keys.address, keys.sm2_key)
    hasher = hasher_for("sm3")
    final_root = on_chain[-1][1]
    sample = set(random.Random(1).sample(range(size), min(size, 25))) | {0, size - 1}
    reference = None
    for index in range(size):
        bundle = ProofBundle.from_json(client.bundle_json(index))
        assert (bundle.index, bundle.tree_size) == (index, size)
        assert hasher.hash_leaf(bundle.leaf.leaf_data()) == hashes[index]
        assert root_from_inclusion_proof(hasher, index, size, hashes[index],
                                         bundle.path) == final_root
        if reference is None:
            reference = bundle.checkpoint
        assert bundle.checkpoint == reference
        if index in sample:
            verdict = verify_bundle(bundle, chain=chain)
            assert verdict.valid and verdict.anchoring_checked, (index, verdict.reasons)


# ---------------------------------------------------------------------- damaged stores


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for offset in range(4096 * 2, len(data), 4096 * 3):  # past the schema page
        for i in range(offset, min(offset + 256, len(data))):
            data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip], ids=["truncated", "flipped-bytes"])
def test_serve_refuses_a_damaged_store(tmp_path: Path, damage: Callable[[Path], None]) -> None:
    site = LocalSite(tmp_path)
    chain_port, node_port = free_port(), free_port()
    rpc_url, url = f"http://127.0.0.1:{chain_port}", f"http://127.0.0.1:{node_port}"
    chain = Proc(tmp_path, "chain", [
        "chain", "--port", str(chain_port), "--consortium", "consortium.toml",
        "--deployment", "deployment.json"],
        ready=lambda: (tmp_path / "deployment.json").exists() and _rpc_up(rpc_url))
    config = _node_config(tmp_path, "unionpay", node_port, rpc_url, 0.05)
    node = Proc(tmp_path, "unionpay", _serve_args(config), ready=lambda: _healthy(url))
    chain.start()
    try:
        node.start()
        keys = site.keys("unionpay")
        client = PlatformClient(url, "unionpay", keys.address, keys.sm2_key)
        for seed in range(8):
            client.submit_leaves(random_leaves(200, seed=seed))
        node.stop()
        store = tmp_path / "unionpay.db"
        db = sqlite3.connect(store)  # fold the WAL into the file: the damage hits the leaves
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        assert not (tmp_path / "unionpay.db-wal").exists()
        assert store.stat().st_size > 100_000
        damage(store)
        done = subprocess.run([*_CLI, *_serve_args(config)], cwd=tmp_path, capture_output=True,
                              timeout=60)
        assert done.returncode != 0
        err = done.stderr.decode(errors="replace")
        assert "StoreCorrupted" in err, err
        assert "unionpay.db" in err and ("damaged" in err or "integrity" in err), err
        assert not _healthy(url)
    finally:
        node.stop()
        chain.stop()
