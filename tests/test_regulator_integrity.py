"""Issue 18 on the regulator's side, and the platform's way back: the regulator checks every
record it serves and its trees at open, serves a platform its own verified leaves (signed),
and ``jointledger fsck --repair-from`` restores a platform store from that copy, checked
against the chain (docs/regulator.md § Integrity, docs/node.md § Integrity).
"""

from __future__ import annotations

import itertools
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.regulator_app import create_regulator_app
from ledger_node.cli.fsck import run_platform_fsck, run_regulator_fsck
from ledger_node.client.sdk import RegulatorCopyClient
from ledger_node.crypto.keyfiles import MemberKeys
from ledger_node.demo.postgres_cluster import PostgresCluster
from ledger_node.demo.run import Party
from ledger_node.errors import (
    BatchEvidenceLost,
    LeafDamaged,
    StoreBehindChain,
    StoreLocked,
    TreeMismatch,
)
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.auth import sign_request
from ledger_node.protocol.bundle import verify_bundle
from ledger_node.regulator.node import RegulatorNode, node_audience
from tests.api_support import Consortium
from tests.regulator_support import (
    PERSON_TO_MERCHANT,
    payment,
    platform_client,
    regulator_for,
    start_node,
    wait_anchored,
)

_shards = itertools.count(1)


@dataclass
class Log:
    """One unionpay shard's node, its store, the regulator that follows it."""

    consortium: Consortium
    shard: int
    path: Path
    node: PlatformNode

    def submit(self, count: int, first: int = 0) -> None:
        client = platform_client(self.consortium, self.consortium.unionpay, self.node,
                                 shard=self.shard)
        client.submit_records([payment("unionpay", n, "alice", f"shop{n}", 100 + n)
                               for n in range(first, first + count)],
                              kinds=lambda record: PERSON_TO_MERCHANT)
        wait_anchored(self.node, self.node.size())

    def restart(self) -> None:
        self.node.stop()
        self.node = start_node(self.consortium, self.consortium.unionpay, self.path,
                               shard=self.shard)


@pytest.fixture
def log(consortium: Consortium, tmp_path: Path) -> Iterator[Log]:
    shard = next(_shards)
    path = tmp_path / "unionpay.db"
    opened = Log(consortium, shard, path,
                 start_node(consortium, consortium.unionpay, path, shard=shard))
    yield opened
    opened.node.stop()


def _regulator(consortium: Consortium, tmp_path: Path, node: PlatformNode) -> RegulatorNode:
    return regulator_for(consortium, tmp_path / "pboc.db", {"unionpay": node})


def _sql(path: Path, statement: str, params: tuple[Any, ...] = ()) -> None:
    db = sqlite3.connect(path)
    db.execute(statement, params)
    db.commit()
    db.close()


def _signed_get(app: TestClient, party: Party, target: str) -> httpx.Response:
    headers = sign_request(party.sm2_key, party.account.address, "GET", target,
                           audience=node_audience("pboc"))
    return app.get(target, headers=headers)


def _copy_client(consortium: Consortium, regulator: RegulatorNode) -> RegulatorCopyClient:
    app = TestClient(create_regulator_app(regulator))
    party = consortium.unionpay
    return RegulatorCopyClient("http://testserver", party.account.address, party.sm2_key,
                               node_audience("pboc"), retries=0,
                               http=httpx.Client(transport=app._transport,
                                                 base_url="http://testserver"))


def _keys(party: Party) -> MemberKeys:
    return MemberKeys(party.sm2_key, party.account)


# ------------------------------------------------------------------ the regulator's copy


def test_a_platform_reads_its_own_verified_leaves_back(consortium: Consortium, tmp_path: Path,
                                                       log: Log) -> None:
    log.submit(12)
    regulator = _regulator(consortium, tmp_path, log.node)
    try:
        regulator.sync()
        app = TestClient(create_regulator_app(regulator))
        target = f"/v1/logs/{log.node.log_id.hex()}/leaves?start=0&end=12"
        answer = _signed_get(app, consortium.unionpay, target)
        assert answer.status_code == 200, answer.text
        assert answer.json()["size"] == 12
        assert answer.json()["leaves"] == [leaf.to_json() for leaf in log.node.leaves(0, 12)]
        assert _signed_get(app, consortium.pboc, target).status_code == 200
        refused = _signed_get(app, consortium.wechatpay, target)
        assert refused.status_code == 403, refused.text
        assert app.get(target).status_code == 401
        past = _signed_get(app, consortium.unionpay,
                           f"/v1/logs/{log.node.log_id.hex()}/leaves?start=0&end=13")
        assert past.status_code == 416 and past.json()["size"] == 12
        served = _copy_client(consortium, regulator).leaf_range(log.node.log_id, 3, 9)
        assert served.leaves == log.node.leaves(3, 9)
    finally:
        regulator.stop()


def test_a_damaged_record_is_never_served_by_the_regulator(
    consortium: Consortium, tmp_path: Path, log: Log,
) -> None:
    log.submit(8)
    regulator = _regulator(consortium, tmp_path, log.node)
    try:
        regulator.sync()
        record = regulator.store.records(log.node.log_id, 4, 5)[0]
        _sql(regulator.store.path, "UPDATE records SET escrow = ? WHERE idx = 4 AND leaf_hash = ?",
             (bytes(b ^ 1 for b in record.escrow), record.leaf_hash))
        with pytest.raises(LeafDamaged, match="leaf 4 is damaged"):
            regulator.trace_commitment(record.commitment)
        with pytest.raises(LeafDamaged):
            regulator.own_leaves(log.node.log_id, 0, 8)
        app = TestClient(create_regulator_app(regulator))
        answer = _signed_get(app, consortium.pboc,
                             f"/v1/trace/commitment/{record.commitment.hex()}")
        assert answer.status_code == 503 and answer.json()["type"].endswith("/store-damaged")
        assert answer.json()["index"] == 4
    finally:
        regulator.stop()
    lines: list[str] = []
    assert run_regulator_fsck(tmp_path / "pboc.db", "pboc", chain=consortium.chain,
                              echo=lines.append) == 1
    assert any(line.startswith("  leaf 4: damaged") for line in lines), lines
    with pytest.raises(LeafDamaged, match="leaf 4 is damaged"):  # at open: every row rehashed
        _regulator(consortium, tmp_path, log.node)


def test_a_regulator_store_whose_leaf_hashes_changed_does_not_start(
    consortium: Consortium, tmp_path: Path, log: Log,
) -> None:
    log.submit(8)
    regulator = _regulator(consortium, tmp_path, log.node)
    regulator.sync()
    with pytest.raises(StoreLocked):  # one regulator node per store
        _regulator(consortium, tmp_path, log.node)
    regulator.stop()
    _sql(tmp_path / "pboc.db", "UPDATE records SET leaf_hash = ? WHERE idx = 6",
         (b"\x06" * 32,))
    with pytest.raises(LeafDamaged, match="leaf 6 is damaged") as refused:
        _regulator(consortium, tmp_path, log.node)
    assert refused.value.index == 6
    _sql(tmp_path / "pboc.db", "DELETE FROM records WHERE idx = 7")
    with pytest.raises(TreeMismatch, match="verified record 7 is missing"):
        _regulator(consortium, tmp_path, log.node)
    lines: list[str] = []
    assert run_regulator_fsck(tmp_path / "pboc.db", "pboc", echo=lines.append) == 1
    assert any("leaf 6: damaged" in line for line in lines), lines


def test_a_clean_regulator_store_passes_fsck(consortium: Consortium, tmp_path: Path,
                                             log: Log) -> None:
    log.submit(5)
    regulator = _regulator(consortium, tmp_path, log.node)
    regulator.sync()
    regulator.stop()
    lines: list[str] = []
    assert run_regulator_fsck(tmp_path / "pboc.db", "pboc", chain=consortium.chain,
                              echo=lines.append) == 0
    assert lines[-1] == "clean"
    from ledger_node.cli.main import main

    assert main(["fsck", "--role", "regulator", str(tmp_path / "pboc.db"), "--name",
                 "pboc"]) == 0


# ------------------------------------------------------------------ the platform restored


def test_a_store_behind_the_chain_is_restored_from_the_regulator(
    consortium: Consortium, tmp_path: Path, log: Log,
) -> None:
    """Issue 18, part 2, end to end: an old copy restored, the node stops intake, fsck
    --repair-from restores the lost tail from the regulator's copy after checking it
    against every anchored root, and the node goes on from there."""
    log.submit(30)
    log.node.stop()
    shutil.copy(log.path, tmp_path / "old.db")
    log.node = start_node(consortium, consortium.unionpay, log.path, shard=log.shard)
    log.submit(30, first=30)
    lost = log.node.leaves(30, 60)
    regulator = _regulator(consortium, tmp_path, log.node)
    try:
        regulator.sync()
        assert regulator.log_state(log.node.log_id).verified_size == 60  # type: ignore[union-attr]
        log.node.stop()
        shutil.copy(tmp_path / "old.db", log.path)
        log.node = start_node(consortium, consortium.unionpay, log.path, shard=log.shard)
        assert isinstance(log.node.intake_halted(), StoreBehindChain)
        log.node.stop()

        lines: list[str] = []
        assert run_platform_fsck(log.path, chain=consortium.chain, echo=lines.append) == 1
        assert any("behind the chain: the chain anchored the log up to size 60, the store "
                   "holds 30 leaves" in line for line in lines), lines
        lines.clear()
        status = run_platform_fsck(log.path, chain=consortium.chain,
                                   keys=_keys(consortium.unionpay),
                                   regulator=_copy_client(consortium, regulator),
                                   echo=lines.append)
        assert status == 0, lines
        assert any(line.startswith("repaired: 0 damaged row(s) replaced, leaves 30..59 "
                                   "restored") for line in lines), lines
    finally:
        regulator.stop()
    log.node = start_node(consortium, consortium.unionpay, log.path, shard=log.shard)
    node = log.node
    assert node.intake_halted() is None and node.size() == 60
    assert node.leaves(30, 60) == lost
    bundle = node.proof_bundle(45)
    assert bundle is not None and verify_bundle(bundle, chain=consortium.chain).valid
    with pytest.raises(BatchEvidenceLost, match="restored from the regulator's verified copy"):
        node.leaf_batch(45)
    assert node.leaf_batch(3).evidence.signer == consortium.unionpay.account.address
    http = TestClient(create_app(node))
    target = "/v1/leaves/45/evidence"
    evidence = http.get(target, headers=sign_request(
        consortium.unionpay.sm2_key, consortium.unionpay.account.address, "GET", target,
        audience=node.log_id))
    assert evidence.status_code == 410 and evidence.json()["type"].endswith("/evidence-lost")
    log.submit(3, first=60)  # intake goes on from the restored size
    assert node.size() == 63


def test_fsck_repairs_damaged_rows_from_the_regulator(consortium: Consortium, tmp_path: Path,
                                                      log: Log) -> None:
    log.submit(20)
    original = log.node.leaves(0, 20)
    regulator = _regulator(consortium, tmp_path, log.node)
    try:
        regulator.sync()
        log.node.stop()
        _sql(log.path, "UPDATE leaves SET commitment = ? WHERE idx = 5", (b"\x05" * 32,))
        _sql(log.path, "UPDATE leaves SET escrow = ? WHERE idx = 11", (b"forged",))
        lines: list[str] = []
        status = run_platform_fsck(log.path, chain=consortium.chain,
                                   keys=_keys(consortium.unionpay),
                                   regulator=_copy_client(consortium, regulator),
                                   echo=lines.append)
        assert status == 0, lines
        assert any(line.startswith("repaired: 2 damaged row(s) replaced") for line in lines)
    finally:
        regulator.stop()
    log.node = start_node(consortium, consortium.unionpay, log.path, shard=log.shard)
    assert log.node.leaves(0, 20) == original
    assert log.node.intake_halted() is None


# ------------------------------------------------------------------ the documented commands


@pytest.mark.slow
def test_the_documented_recovery_with_real_processes(tmp_path: Path) -> None:
    """docs/node.md § Integrity, as an operator runs it: jointledger chain, serve (platform
    and regulator), an old copy of the platform's store restored, serve answering 503
    store-behind-chain, jointledger fsck --config --repair-from, serve again."""
    import subprocess
    import sys
    import time

    from ledger_node.client.sdk import PlatformClient
    from ledger_node.demo.localsite import LocalSite

    cli = [sys.executable, "-m", "ledger_node.cli"]
    with LocalSite(tmp_path) as site:
        site.start_chain()
        urls = site.start_nodes(["unionpay"], "pboc", seal_interval=0.05, follow_interval=0.1)
        keys, pboc = site.keys("unionpay"), site.keys("pboc")
        client = PlatformClient(urls["unionpay"], "unionpay", keys.address, keys.sm2_key,
                                regulator_key=pboc.sm2_key.public_key(), tls=site.client_tls)
        verify = site.client_tls.ssl_context()  # the site serves https with mutual TLS

        def submit(first: int) -> None:
            client.submit_records([payment("unionpay", n, "alice", f"s{n}", 100 + n)
                                   for n in range(first, first + 30)],
                                  kinds=lambda record: PERSON_TO_MERCHANT)
            size = first + 30
            deadline = time.monotonic() + 60
            while True:  # anchored, and verified by the regulator
                health = httpx.get(f"{urls['pboc']}/v1/health", verify=verify).json()
                node = httpx.get(f"{urls['unionpay']}/v1/health", verify=verify).json()
                anchored = (node["last_anchored"] or {}).get("tree_size", 0)
                if anchored == size and health["logs"] == 1 and health["behind"] == 0:
                    break
                assert time.monotonic() < deadline, (health, node)
                time.sleep(0.1)

        store = tmp_path / "unionpay.db"
        submit(0)
        backup = sqlite3.connect(tmp_path / "old.db")
        with sqlite3.connect(store) as live:
            live.backup(backup)  # an operator's online copy
        backup.close()
        submit(30)
        site.stop_process("unionpay")
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"unionpay.db{suffix}").unlink(missing_ok=True)
        shutil.copy(tmp_path / "old.db", store)
        serve = ["serve", "--role", "platform", "--name", "unionpay", "--config",
                 "unionpay.toml"]
        node = subprocess.Popen([*cli, *serve], cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    answer = httpx.get(f"{urls['unionpay']}/v1/health", timeout=2, verify=verify)
                    break
                except httpx.HTTPError:
                    assert node.poll() is None and time.monotonic() < deadline
                    time.sleep(0.1)
            assert answer.status_code == 503, answer.text
            problem = answer.json()
            assert problem["type"].endswith("/store-behind-chain")
            assert (problem["chain_size"], problem["store_size"]) == (60, 30)
        finally:
            node.terminate()
            node.wait(timeout=30)
        check = subprocess.run([*cli, "fsck", "--config", "unionpay.toml"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=120)
        assert check.returncode == 1, check.stdout + check.stderr
        assert "behind the chain" in check.stdout
        repair = subprocess.run([*cli, "fsck", "--config", "unionpay.toml", "--repair-from",
                                 urls["pboc"]], cwd=tmp_path, capture_output=True, text=True,
                                timeout=120)
        assert repair.returncode == 0, repair.stdout + repair.stderr
        assert "leaves 30..59 restored" in repair.stdout
        site.start_node("unionpay", seal_interval=0.05)
        health = httpx.get(f"{site.node_urls['unionpay']}/v1/health", verify=verify).json()
        assert health["store_size"] == 60 and health["status"] == "ok"


def test_a_damaged_postgresql_store_does_not_start_and_fsck_names_the_leaf(
    consortium: Consortium, tmp_path: Path, log: Log, postgres_cluster: PostgresCluster,
) -> None:
    """The open check and fsck work through the store interface: on PostgreSQL too."""
    import psycopg

    url = postgres_cluster.new_database()
    log.submit(6)
    regulator = regulator_for(consortium, url, {"unionpay": log.node})
    regulator.sync()
    regulator.stop()
    lines: list[str] = []
    assert run_regulator_fsck(url, "pboc", chain=consortium.chain, echo=lines.append) == 0
    assert lines[-1] == "clean"
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE records SET leaf_hash = %s WHERE idx = 4", (b"\x04" * 32,))
    with pytest.raises(LeafDamaged, match="leaf 4 is damaged"):
        regulator_for(consortium, url, {"unionpay": log.node})
    lines.clear()
    assert run_regulator_fsck(url, "pboc", chain=consortium.chain, echo=lines.append) == 1
    assert any("leaf 4: damaged" in line for line in lines), lines
