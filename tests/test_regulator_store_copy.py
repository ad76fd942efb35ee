"""``jointledger regulator-store copy``: a SQLite regulator store copied into PostgreSQL reads
back the same through the store interface; every refusal leaves the target untouched."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from ledger_node.cli.main import main
from ledger_node.demo.postgres_cluster import PostgresCluster
from ledger_node.protocol.aml import PartyKind
from ledger_node.protocol.escrow import EscrowPayload, identity_key
from ledger_node.protocol.record import Channel
from ledger_node.regulator.pg_store import PostgresRegulatorStore
from ledger_node.regulator.store import (
    ConsoleEntry,
    IngestedLeaf,
    RegulatorStore,
    SqliteRegulatorStore,
    StoredAnchor,
)

LOG = bytes(range(32))


def _payment(n: int) -> EscrowPayload:
    return EscrowPayload(
        payer_key=identity_key(f"payer-{n % 3}"), payee_key=identity_key("shop"),
        payer_kind=PartyKind.PERSON, payee_kind=PartyKind.INSTITUTION, amount_fen=100 + n,
        currency="CNY", time=datetime(2026, 11, 27, 1, n % 60, tzinfo=UTC),
        channel=Channel.CASH if n % 2 else Channel.APP, cross_border=n % 5 == 0,
        cash=bool(n % 2))


def _fill(path: Path) -> None:
    store = SqliteRegulatorStore(path, regulator="pboc")
    try:
        store.ensure_log(LOG, "unionpay", "0xabc", "sm3")
        leaves = [IngestedLeaf(i, bytes([i]) * 32, bytes([1, i]) * 16, b"escrow-%d" % i,
                               b"m" * 32 if i % 2 else None, None,
                               None if i == 7 else _payment(i)) for i in range(20)]
        store.append_verified(LOG, 0, leaves, b"r" * 32)
        store.save_anchors([StoredAnchor(LOG, 20, b"r" * 32, 5, b"s" * 64, b"t" * 32, 9, 10)],
                           ("checkpoint_block", 9))
        store.record_fault("unionpay", LOG, 7, 8, "unreadable-escrow", "bad tag")
        store.alert_numbers(["k1", "k2"])
        store.case_key(b"c" * 32)
        store.save_disclosure_request(3, "unionpay", bytes([1, 4]) * 16, b"c" * 32, b"x" * 32)
        store.save_disclosure_opening(3, b"sealed", '{"opening": 1}')
        store.console_put("session", b"d" * 32, ConsoleEntry("0xabc", 2, "pboc", 4e9),
                          now=1.0, limit=10)
    finally:
        store.close()


def _view(store: RegulatorStore) -> object:
    """Everything the interface reads back (ids and times included)."""
    return (store.logs(), store.records(LOG, 0, 100), store.all_anchors(), store.faults(),
            store.alert_numbers(["k1", "k2"]), store.alert_key(2), store.case_key(b"c" * 32),
            store.disclosures(), store.follow_value("checkpoint_block"),
            store.records_of_identity(identity_key("payer-1")),
            store.console_get("session", b"d" * 32), store.console_counts(),
            sorted(t.ref for t in store.traced_payments()))


def test_a_copied_store_reads_back_the_same(postgres_cluster: PostgresCluster,
                                            tmp_path: Path) -> None:
    source = tmp_path / "pboc.db"
    _fill(source)
    url = postgres_cluster.new_database()
    done = subprocess.run(
        [sys.executable, "-m", "ledger_node.cli", "regulator-store", "copy", "--from",
         str(source), "--to", url], capture_output=True, text=True, timeout=120,
        env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert done.returncode == 0, done.stderr
    assert "records: 20 rows" in done.stderr and "every table's count agrees" in done.stdout
    lite = SqliteRegulatorStore(source, regulator="pboc")
    pg = PostgresRegulatorStore(url, regulator="pboc")
    try:
        assert _view(pg) == _view(lite)
        assert pg.alert_numbers(["k3"]) == {"k3": 3}  # the sequences continue after the copy
        assert lite.alert_numbers(["k3"]) == {"k3": 3}
        pg.record_fault("unionpay", LOG, 1, 2, "withheld", "x")
        assert [f.id for f in pg.faults()] == [1, 2]
    finally:
        lite.close()
        pg.close()


def test_a_copy_is_refused_without_writing(postgres_cluster: PostgresCluster, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "pboc.db"
    _fill(source)
    url = postgres_cluster.new_database()
    assert main(["regulator-store", "copy", "--from", str(source), "--to", url]) == 0
    capsys.readouterr()
    # a non-empty target
    assert main(["regulator-store", "copy", "--from", str(source), "--to", url]) == 1
    assert "already holds a store" in capsys.readouterr().err
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM records").fetchone() == (20,)
    # a missing source, a file that is no store, a --to that is no PostgreSQL URL
    empty = postgres_cluster.new_database()
    assert main(["regulator-store", "copy", "--from", str(tmp_path / "no.db"), "--to",
                 empty]) == 1
    assert "no store at" in capsys.readouterr().err
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    assert main(["regulator-store", "copy", "--from", str(tmp_path / "junk.db"), "--to",
                 empty]) == 1
    assert "is not a regulator store" in capsys.readouterr().err
    assert main(["regulator-store", "copy", "--from", str(source), "--to",
                 "mysql://u:pw@h/db"]) == 2
    assert "pw" not in capsys.readouterr().err
    # a source a node has open (its lock)
    held = SqliteRegulatorStore(source, regulator="pboc")
    try:
        assert main(["regulator-store", "copy", "--from", str(source), "--to", empty]) == 1
        assert "open for writing elsewhere" in capsys.readouterr().err
    finally:
        held.close()
    # an unreachable server: a clear error, the password never printed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["regulator-store", "copy", "--from", str(source), "--to",
                 f"postgresql://pboc:s3cret@127.0.0.1:{port}/x"]) == 1
    err = capsys.readouterr().err
    assert "unreachable" in err and "s3cret" not in err
    with psycopg.connect(empty) as conn:  # nothing was copied anywhere
        rows = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'logs'"
                            ).fetchone()
        assert rows == (0,) or conn.execute("SELECT count(*) FROM logs").fetchone() == (0,)
