"""What only the PostgreSQL regulator store has: migrations at open, ranges and alert
numbers safe across processes, partitions by ingest day, redacted URLs, an unreachable
server. The behaviour both backends share runs over both in test_regulator*.py,
test_casefile.py and test_console_api.py (the ``store_backend`` fixture)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from api.console_session import ConsoleSessions
from ledger_node.chain.adapter import Role
from ledger_node.demo.postgres_cluster import PostgresCluster
from ledger_node.errors import InvalidConfig, StoreCorrupted, StoreUnavailable, Unauthenticated
from ledger_node.protocol.auth import AuthenticatedMember
from ledger_node.regulator.config import load_regulator_config
from ledger_node.regulator.open_store import open_regulator_store
from ledger_node.regulator.pg_store import (
    SCHEMA_VERSION,
    PostgresRegulatorStore,
    _today,
    partition_name,
    redact_url,
)
from ledger_node.regulator.store import IngestedLeaf, SqliteRegulatorStore

LOG = bytes(range(32))


@pytest.fixture()
def url(postgres_cluster: PostgresCluster) -> str:
    return postgres_cluster.new_database()


@pytest.fixture()
def store(url: str) -> Iterator[PostgresRegulatorStore]:
    opened = PostgresRegulatorStore(url, regulator="pboc")
    yield opened
    opened.close()


def _leaves(start: int, count: int) -> list[IngestedLeaf]:
    return [IngestedLeaf(i, bytes([i % 256]) * 32, bytes([1, i % 256]) * 16, b"escrow", None,
                         None, None) for i in range(start, start + count)]


def test_the_factory_picks_the_backend_from_the_location(url: str, tmp_path: Path) -> None:
    pg = open_regulator_store(url, regulator="pboc")
    lite = open_regulator_store(tmp_path / "r.db", regulator="pboc")
    try:
        assert isinstance(pg, PostgresRegulatorStore)
        assert isinstance(lite, SqliteRegulatorStore)
    finally:
        pg.close()
        lite.close()


def test_migrations_run_once_even_with_concurrent_starters(url: str) -> None:
    opened: list[PostgresRegulatorStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(PostgresRegulatorStore(url, regulator="pboc"))
        except BaseException as exc:  # collected: asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == [] and len(opened) == 4
        assert opened[0].schema_version() == SCHEMA_VERSION
        with psycopg.connect(url) as conn:
            versions = conn.execute("SELECT version FROM schema_migrations").fetchall()
        assert [v for (v,) in versions] == list(range(1, SCHEMA_VERSION + 1))
    finally:
        for one in opened:
            one.close()


def test_a_store_of_another_regulator_or_a_newer_schema_is_refused(
        store: PostgresRegulatorStore, url: str) -> None:
    with pytest.raises(StoreCorrupted, match="belongs to regulator 'pboc'"):
        PostgresRegulatorStore(url, regulator="cbirc")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)",
                     (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreCorrupted, match="newer than this code"):
        PostgresRegulatorStore(url, regulator="pboc")


def test_a_range_is_written_once_whichever_process_writes_it(
        store: PostgresRegulatorStore, url: str) -> None:
    other = PostgresRegulatorStore(url, regulator="pboc")  # a second ingest process
    try:
        store.ensure_log(LOG, "unionpay", "0xabc", "sm3")
        store.append_verified(LOG, 0, _leaves(0, 3), b"r" * 32)
        with pytest.raises(StoreCorrupted, match="verified to 3, cannot append at 0"):
            other.append_verified(LOG, 0, _leaves(0, 3), b"r" * 32)
        with pytest.raises(StoreCorrupted, match="cannot append at 5"):
            other.append_verified(LOG, 5, _leaves(5, 1), b"r" * 32)
        with pytest.raises(StoreCorrupted, match="not followed|verified to None"):
            other.append_verified(b"\x09" * 32, 0, _leaves(0, 1), b"r" * 32)
        other.append_verified(LOG, 3, _leaves(3, 2), b"s" * 32)
        assert store.record_count() == 5
        assert store.log(LOG).verified_size == 5  # type: ignore[union-attr]
        assert [r.index for r in store.records(LOG, 0, 10)] == [0, 1, 2, 3, 4]
    finally:
        other.close()


def test_two_writers_racing_on_one_range_insert_it_once(
        store: PostgresRegulatorStore, url: str) -> None:
    store.ensure_log(LOG, "unionpay", "0xabc", "sm3")
    stores = [PostgresRegulatorStore(url, regulator="pboc") for _ in range(3)]
    outcomes: list[str] = []

    def write(one: PostgresRegulatorStore) -> None:
        try:
            one.append_verified(LOG, 0, _leaves(0, 50), b"r" * 32)
            outcomes.append("written")
        except StoreCorrupted:
            outcomes.append("refused")

    threads = [threading.Thread(target=write, args=(one,)) for one in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for one in stores:
        one.close()
    assert sorted(outcomes) == ["refused", "refused", "written"]
    assert store.record_count() == 50


def test_alert_numbers_are_one_per_key_across_processes(
        store: PostgresRegulatorStore, url: str) -> None:
    stores = [PostgresRegulatorStore(url, regulator="pboc") for _ in range(4)]
    results: list[dict[str, int]] = []
    keys = [f"alert-{i}" for i in range(40)]

    def number(one: PostgresRegulatorStore, order: list[str]) -> None:
        results.append(one.alert_numbers(order))

    threads = [threading.Thread(target=number, args=(one, keys[::1 if i % 2 else -1]))
               for i, one in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for one in stores:
        one.close()
    assert all(result == results[0] for result in results)
    assert sorted(results[0].values()) == list(range(1, 41))  # dense, none twice
    assert store.alert_numbers(["new", "alert-3"]) == {"new": 41, "alert-3": results[0]["alert-3"]}
    assert store.alert_key(41) == "new" and store.alert_key(42) is None


def test_records_land_in_the_partition_of_their_ingest_day(
        store: PostgresRegulatorStore, url: str) -> None:
    store.ensure_log(LOG, "unionpay", "0xabc", "sm3")
    store.append_verified(LOG, 0, _leaves(0, 2), b"r" * 32)
    store.ensure_partition(_today())  # idempotent
    assert store.partitions() == [partition_name(_today())]
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT count(*) FROM {partition_name(_today())}").fetchone()
        assert rows is not None and rows[0] == 2
        with pytest.raises(psycopg.errors.CheckViolation):  # no default partition
            conn.execute("INSERT INTO records (log, idx, day, leaf_hash, commitment, escrow) "
                         "VALUES (1, 9, '2001-01-01', '\\x00', '\\x00', '\\x00')")


def test_passwords_never_show(postgres_cluster: PostgresCluster) -> None:
    assert redact_url("postgresql://pboc:s3cret@db:5432/x") == "postgresql://pboc:***@db:5432/x"
    assert redact_url("postgresql://db/x?password=s3cret&sslmode=require") == (
        "postgresql://db/x?password=%2A%2A%2A&sslmode=require")
    assert redact_url("postgresql://pboc@db/x") == "postgresql://pboc@db/x"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(StoreUnavailable, match="unreachable") as raised:
        PostgresRegulatorStore(f"postgresql://pboc:s3cret@127.0.0.1:{port}/x",
                               regulator="pboc")
    assert "s3cret" not in str(raised.value) and ":***@" in str(raised.value)
    wrong_db = postgres_cluster.url("no_such_database").replace("@", ":pw@", 1)
    with pytest.raises(StoreUnavailable, match="no_such_database") as raised:
        PostgresRegulatorStore(wrong_db, regulator="pboc")
    assert ":pw@" not in str(raised.value)


def _config(tmp: Path, store_lines: str) -> Path:
    path = tmp / "pboc.toml"
    path.write_text(f'[regulator]\nname = "pboc"\n{store_lines}\n'
                    '[keys]\nsm2 = "k.pem"\naccount = "a.key"\n'
                    '[chain]\ndeployment = "d.json"\n')
    return path


def test_store_url_in_the_config(tmp_path: Path) -> None:
    config = load_regulator_config(_config(tmp_path, '[store]\nurl = "postgresql://u@h/db"'))
    assert config.regulator.store_url == "postgresql://u@h/db"
    assert config.regulator.store_location == "postgresql://u@h/db"
    config = load_regulator_config(_config(tmp_path, 'store = "r.db"'))
    assert config.regulator.store_location == tmp_path.resolve() / "r.db"
    with pytest.raises(InvalidConfig, match="regulator.store is missing"):
        load_regulator_config(_config(tmp_path, ""))
    with pytest.raises(InvalidConfig, match=r"store.url must be a postgresql:// URL.*\*\*\*"):
        load_regulator_config(_config(tmp_path, '[store]\nurl = "mysql://u:pw@h/db"'))


def test_a_console_login_made_through_one_api_process_is_found_by_another(
        store: PostgresRegulatorStore, url: str) -> None:
    other = PostgresRegulatorStore(url, regulator="pboc")  # a second API process
    try:
        one, two = ConsoleSessions(store), ConsoleSessions(other)
        member = AuthenticatedMember("0xabc", Role.REGULATOR, "pboc")
        token = one.issue_token(member)
        session_id, session = two.exchange(token)
        assert session.member == member
        with pytest.raises(Unauthenticated):
            one.exchange(token)  # spent, whichever process is asked
        assert one.session(session_id) == session
        assert one.counts() == (0, 1)
        assert two.end(session_id) and one.session(session_id) is None
    finally:
        other.close()


def test_console_tables_are_bounded_on_both_backends(url: str, tmp_path: Path) -> None:
    member = AuthenticatedMember("0xabc", Role.REGULATOR, "pboc")
    for location in (url, tmp_path / "r.db"):
        table = open_regulator_store(location, regulator="pboc")
        try:
            sessions = ConsoleSessions(table, clock=lambda: 100.0, max_tokens=2)
            first, second, third = (sessions.issue_token(member) for _ in range(3))
            assert sessions.counts() == (2, 0)
            with pytest.raises(Unauthenticated):
                sessions.exchange(first)  # the oldest went when the third came
            sessions.exchange(third)
            sessions.exchange(second)
        finally:
            table.close()


def test_a_day_detaches_and_attaches_back_as_docs_storage_md_says(
        store: PostgresRegulatorStore, url: str) -> None:
    store.ensure_log(LOG, "unionpay", "0xabc", "sm3")
    store.append_verified(LOG, 0, _leaves(0, 3), b"r" * 32)
    day = _today()
    name = partition_name(day)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE records DETACH PARTITION {name} CONCURRENTLY".encode())
        assert store.record_count() == 0 and store.partitions() == []
        archived = conn.execute(f"SELECT count(*) FROM {name}".encode()).fetchone()
        assert archived == (3,)  # a plain table now, to dump or move
        conn.execute(f"ALTER TABLE records ATTACH PARTITION {name} FOR VALUES FROM "
                     f"('{day}') TO ('{day + timedelta(days=1)}')".encode())
    assert store.record_count() == 3
    assert [r.index for r in store.records(LOG, 0, 10)] == [0, 1, 2]


def test_a_lost_server_connection_is_store_unavailable_then_recovers(
        store: PostgresRegulatorStore, url: str, postgres_cluster: PostgresCluster) -> None:
    store.ensure_log(LOG, "unionpay", "0xabc", "sm3")
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_cluster.url(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s", (database,))
    outcomes = []
    for _ in range(3):  # the pool may hold a dead connection or two; then it reconnects
        try:
            outcomes.append(store.logs()[0].platform)
        except StoreUnavailable as exc:
            assert "terminat" in str(exc) or "closed" in str(exc) or "connection" in str(exc)
            outcomes.append("unavailable")
    assert outcomes[0] == "unavailable" and outcomes[-1] == "unionpay", outcomes
