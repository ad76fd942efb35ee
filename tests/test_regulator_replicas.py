"""Issue 16 part 2 on the SQLite store: regulator API replicas (``jointledger serve --role
regulator --ingest off``) serve trace and alerts from the store the ingest process fills,
while it fills it; ``--workers N`` is refused on a store with one writer
(docs/regulator.md "Several processes", docs/deploy.md "The regulator's processes").

Real processes throughout: the chain, two platform nodes, the regulator's ingest process
and two replicas on the same SQLite file.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from ledger_node.client.sdk import PlatformClient, RegulatorClient
from ledger_node.demo.localsite import LocalSite
from ledger_node.errors import ApiError, IngestOff, InvalidConfig, StoreCorrupted, StoreLocked
from ledger_node.protocol.bundle import ProofBundle, verify_bundle
from ledger_node.protocol.record import Channel
from ledger_node.regulator.node import (
    ALL_LOGS,
    IngestShare,
    RegulatorConfig,
    RegulatorNode,
    log_share,
)
from ledger_node.regulator.store import SqliteRegulatorStore
from tests.api_support import Consortium
from tests.regulator_support import PERSON_TO_MERCHANT, payment

CLI = [sys.executable, "-m", "ledger_node.cli"]
ROUNDS = 4
PER_ROUND = 30


AlertKey = tuple[str, str, str, str, str]


def alert_views(client: RegulatorClient) -> dict[int, AlertKey]:
    """Each alert's id with what names it across recomputations (its lasting key under the
    default rules: rule, identity, direction, window start, platform)."""
    return {a["id"]: (a["rule"], a["identity"], a["direction"], a["window_start"],
                      a["platforms"][0]) for a in client.alerts()}


def _alerts_into(views: list[dict[int, AlertKey]], slot: int,
                 client: RegulatorClient) -> None:
    views[slot] = alert_views(client)


def test_replicas_serve_trace_and_alerts_while_ingest_runs(tmp_path: Path) -> None:
    with LocalSite(tmp_path, tls=False) as site:
        site.start_chain()
        urls = site.start_nodes(["unionpay", "wechatpay"], "pboc", seal_interval=0.05,
                                follow_interval=0.1)
        replicas = [site.start_regulator_replica("pboc", n) for n in (1, 2)]
        pboc = site.keys("pboc")
        ingest, *copies = [RegulatorClient.for_regulator_node(url, pboc.address, pboc.sm2_key,
                                                              "pboc")
                           for url in (urls["pboc"], *replicas)]
        platforms = {name: PlatformClient(urls[name], name, site.keys(name).address,
                                          site.keys(name).sm2_key,
                                          regulator_key=pboc.sm2_key.public_key())
                     for name in ("unionpay", "wechatpay")}
        seen: list[dict[int, AlertKey]] = []
        traced: list[tuple[int, int]] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def read_replicas() -> None:
            """Trace alice and list alerts on both replicas at once, over and over."""
            try:
                last = 0
                while not stop.is_set():
                    for copy in copies:
                        answer = copy.trace_identity("alice")
                        assert answer["count"] >= last, "a replica went back in time"
                        last = answer["count"]
                        traced.append((answer["count"], len(answer["records"])))
                    views: list[dict[int, AlertKey]] = [{}, {}]
                    pair = [threading.Thread(target=_alerts_into, args=(views, i, c))
                            for i, c in enumerate(copies)]
                    for thread in pair:
                        thread.start()
                    for thread in pair:
                        thread.join()
                    seen.extend(views)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        reader = threading.Thread(target=read_replicas)
        reader.start()
        try:
            for round_ in range(ROUNDS):
                for name, client in platforms.items():
                    first = round_ * (PER_ROUND + 1)
                    records = [payment(name, first + n, "alice", f"shop{n}", 100 + n)
                               for n in range(PER_ROUND)]
                    # one large cash payment per round and platform: a new alert each
                    records.append(payment(name, first + PER_ROUND, f"cash-{name}-{round_}",
                                           "bank", 6_000_000, channel=Channel.CASH))
                    client.submit_records(records, kinds=lambda record: PERSON_TO_MERCHANT)
                time.sleep(0.3)
            total = 2 * ROUNDS * (PER_ROUND + 1)
            deadline = time.monotonic() + 90
            while ingest.ingest_status()["records"] < total:
                assert time.monotonic() < deadline, ingest.ingest_status()
                time.sleep(0.2)
        finally:
            stop.set()
            reader.join(timeout=60)
        assert not errors, errors
        assert traced, "the replicas were never asked"

        # caught up: the replicas answer as the ingest process does
        want = ingest.trace_identity("alice")
        assert want["count"] == 2 * ROUNDS * PER_ROUND
        chain = site.chain().attach(site.deployment)
        for copy in copies:
            got = copy.trace_identity("alice")
            assert [r["ref"] for r in got["records"]] == [r["ref"] for r in want["records"]]
            verify_bundle(ProofBundle.from_json(got["records"][-1]["bundle"]), chain=chain)
        final = alert_views(ingest)
        payers = {what[1] for what in final.values()}
        assert len(payers) >= 2 * ROUNDS  # each cash payer (and the bank paid)
        for copy in copies:
            assert alert_views(copy) == final
        # every alert got one number, whichever process asked first, while ingest ran
        named: dict[int, AlertKey] = {}
        numbered: dict[AlertKey, int] = {}
        for view in [*seen, final]:
            for number, what in view.items():
                assert named.setdefault(number, what) == what
                assert numbered.setdefault(what, number) == number
        assert sorted(named) == list(range(1, len(named) + 1)), "a number was skipped"

        # a replica does not ingest: asking it to is a 409 problem, not a 500
        with pytest.raises(ApiError) as refused:
            copies[0]._regulator_call("POST", "/v1/ingest")
        assert refused.value.status == 409
        assert str(refused.value.document["type"]).endswith("/ingest-off")
        health = httpx.get(f"{replicas[0]}/v1/health").json()
        assert health["behind"] == 0 and health["logs"] == 2


def test_a_replica_needs_the_store_its_ingest_process_made(tmp_path: Path) -> None:
    with pytest.raises(StoreCorrupted, match="does not exist"):
        SqliteRegulatorStore(tmp_path / "none.db", regulator="pboc", writer=False)
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(StoreCorrupted, match="is empty"):
        SqliteRegulatorStore(tmp_path / "empty.db", regulator="pboc", writer=False)


def test_a_replica_takes_no_writer_lock_and_the_writer_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    writer = SqliteRegulatorStore(path, regulator="pboc")
    try:
        replicas = [SqliteRegulatorStore(path, regulator="pboc", writer=False) for _ in range(2)]
        with pytest.raises(StoreLocked):
            SqliteRegulatorStore(path, regulator="pboc")
        writer.ensure_log(bytes(32), "unionpay", "0x" + "00" * 20, "sm3")
        assert [r.log(bytes(32)) is not None for r in replicas] == [True, True]
        assert replicas[0].alert_numbers(["a", "b"]) == {"a": 1, "b": 2}
        assert replicas[1].alert_numbers(["b", "c"]) == {"b": 2, "c": 3}
        assert writer.alert_numbers(["c", "a"]) == {"a": 1, "c": 3}
        for replica in replicas:
            replica.close()
    finally:
        writer.close()


def test_a_replica_node_refuses_to_ingest(consortium: Consortium, tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    SqliteRegulatorStore(path, regulator="pboc").close()
    replica = RegulatorNode(RegulatorConfig("pboc", path, ingest=None, follow_chain=False),
                            consortium.chain, [consortium.pboc.sm2_key], {})
    try:
        replica.start()  # follows nothing
        with pytest.raises(IngestOff, match="--ingest off"):
            replica.sync()
    finally:
        replica.stop()


def test_log_shares_are_disjoint_even_and_cover_every_log() -> None:
    numbers = range(1, 65)
    for workers in (1, 2, 4):
        shares = [IngestShare(k, workers) for k in range(workers)]
        for number in numbers:
            assert [s.owns(number) for s in shares].count(True) == 1
            assert log_share(number, workers) == number % workers
        assert {sum(s.owns(n) for n in numbers) for s in shares} == {64 // workers}
    assert all(ALL_LOGS.owns(n) for n in numbers)
    for index, of in ((1, 1), (-1, 2), (0, 0)):
        with pytest.raises(ValueError):
            IngestShare(index, of)
    with pytest.raises(ValueError):
        log_share(1, 0)


CONFIG = """
[regulator]
name = "pboc"
store = "pboc-regulator.db"

[platforms]
unionpay = "http://127.0.0.1:8701"

[http]
port = 0

[keys]
sm2 = "keys/pboc.sm2.pem"
account = "keys/pboc.account.key"

[chain]
deployment = "deployment.json"
"""


def test_several_workers_are_refused_on_a_sqlite_store(tmp_path: Path) -> None:
    (tmp_path / "pboc-regulator.toml").write_text(CONFIG)
    done = subprocess.run([*CLI, "serve", "--role", "regulator", "--name", "pboc",
                           "--config", "pboc-regulator.toml", "--workers", "2"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2  # unusable input: a config error (docs/config.md)
    assert "--workers 2: 2 ingest workers need a PostgreSQL store" in done.stderr
    assert "has one writer. Try: --workers 1" in done.stderr
    assert '[store] url = "postgresql://..."' in done.stderr
    assert "expected the regulator node's config" not in done.stderr  # the config is fine
    for args, message in (
            (["--ingest", "off", "--workers", "2"], "not to an --ingest off replica"),
            (["--workers", "0"], "--workers must be at least 1"),
            (["--ingest-worker", "2/2"], "expected K/N")):
        done = subprocess.run([*CLI, "serve", "--role", "regulator", "--name", "pboc",
                               "--config", "pboc-regulator.toml", *args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    with pytest.raises(InvalidConfig):
        from ledger_node.regulator.config import load_regulator_config

        load_regulator_config(tmp_path / "pboc-regulator.toml").with_process_role(
            ingest=IngestShare(0, 4), follow_chain=False)


def _number_alerts(path: Path, rounds: int) -> dict[str, int]:
    """What one API process does when new alerts appear, ``rounds`` times: number them."""
    store = SqliteRegulatorStore(path, regulator="pboc", writer=False)
    try:
        numbers: dict[str, int] = {}
        for round_ in range(rounds):
            numbers |= store.alert_numbers([f"{round_}-{n}" for n in range(4)])
        return numbers
    finally:
        store.close()


def test_processes_numbering_the_same_new_alerts_at_once_skip_no_number(tmp_path: Path
                                                                         ) -> None:
    """Regression: INSERT OR IGNORE on an AUTOINCREMENT key burns a number for every row
    it ignores, so two replicas numbering the same new alerts at once left gaps (alert 3
    never existed while alert 5 did)."""
    import multiprocessing

    path = tmp_path / "r.db"
    writer = SqliteRegulatorStore(path, regulator="pboc")
    rounds = 150
    try:
        with multiprocessing.get_context("spawn").Pool(3) as pool:
            results = pool.starmap(_number_alerts, [(path, rounds)] * 3)
        assert results[0] == results[1] == results[2]
        assert sorted(results[0].values()) == list(range(1, 4 * rounds + 1))
        assert writer.alert_numbers(["0-0", "new"]) == {"0-0": 1, "new": 4 * rounds + 1}
    finally:
        writer.close()


@pytest.mark.parametrize("damage", ["changed", "replaced"])
def test_a_replica_checks_what_the_ingest_process_committed_before_serving_it(
        consortium: Consortium, tmp_path: Path, damage: str) -> None:
    """A replica's tree follows the store: new records are rehashed and the new roots
    checked before anything of the log is served; a record damaged after its commit stops
    the log, on every later request too: ``changed`` (its leaf hash no longer matches its
    data: LeafDamaged naming it) or ``replaced`` (another record with a matching leaf
    hash: the anchored root is not reproduced, TreeMismatch). Regression (replaced): the
    replica kept the tree it had extended before the root check failed, and served the
    log's older records from it on the next request."""
    import sqlite3

    from ledger_node.errors import LeafDamaged, TreeMismatch
    from ledger_node.log.leaf import Leaf
    from ledger_node.log.merkle import MerkleLog, hasher_for
    from ledger_node.regulator.store import IngestedLeaf, StoredAnchor, evidence_ref

    path, log_id, escrow = tmp_path / "r.db", bytes(range(32)), bytes(261)
    writer = SqliteRegulatorStore(path, regulator="pboc")
    writer.ensure_log(log_id, "unionpay", consortium.unionpay.account.address, "sm3")
    tree = MerkleLog(hasher_for("sm3"))

    def commit(first: int, count: int) -> None:
        leaves = []
        for index in range(first, first + count):
            commitment = index.to_bytes(32, "big")
            leaf_hash = tree.hasher.hash_leaf(Leaf(commitment, escrow).leaf_data())
            leaves.append(IngestedLeaf(index, leaf_hash, commitment, escrow, None, None, None))
        tree.extend_leaf_hashes(leaf.leaf_hash for leaf in leaves)
        writer.append_verified(log_id, first, leaves, tree.root())
        writer.save_anchors([StoredAnchor(log_id, tree.size, tree.root(), 0, b"\x30",
                                          bytes(32), 1, 0)], ("test", 0))

    commit(0, 10)
    replica = RegulatorNode(RegulatorConfig("pboc", path, ingest=None, follow_chain=False),
                            consortium.chain, [consortium.pboc.sm2_key], {})
    try:
        ref = evidence_ref("unionpay", log_id, 3)
        assert replica.record_by_ref(ref).index == 3
        commit(10, 10)  # the ingest process goes on
        assert replica.record_by_ref(evidence_ref("unionpay", log_id, 12)).index == 12
        commit(20, 10)
        other = bytes(31) + b"\xff"
        with sqlite3.connect(path) as db:  # damaged after its commit, before it is served
            db.execute("UPDATE records SET commitment = ? WHERE idx = 25", (other,))
            if damage == "replaced":
                db.execute("UPDATE records SET leaf_hash = ? WHERE idx = 25", (
                    tree.hasher.hash_leaf(Leaf(other, escrow).leaf_data()),))
        for index in (22, 3):  # the new part, then an old record: the log is stopped
            with pytest.raises(LeafDamaged if damage == "changed" else TreeMismatch) as bad:
                replica.record_by_ref(evidence_ref("unionpay", log_id, index))
            if damage == "changed":
                assert isinstance(bad.value, LeafDamaged) and bad.value.index == 25
    finally:
        replica.stop()
        writer.close()
