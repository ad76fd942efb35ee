"""Issue 16 part 2 on PostgreSQL: parallel ingest with worker processes, killed at any point
(docs/regulator.md "Several processes"). Real processes and a real PostgreSQL cluster
(the session's throwaway one, ``ledger_node/demo/postgres_cluster.py``):

* ``jointledger serve --role regulator --workers 2`` ingests exactly what one process does;
* its workers killed with SIGKILL over and over while they ingest are restarted by the
  supervisor and leave every log's records ``0..size-1`` exactly once, the same rows as a
  single process wrote, and the same alerts, each raised once;
* API replicas (``--ingest off``) serve trace and alerts from the database while the
  workers fill it, and a console session made on one replica is used on the other.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from ledger_node.client.sdk import PlatformClient, RegulatorClient
from ledger_node.demo.localsite import LocalSite
from ledger_node.demo.postgres_cluster import PostgresCluster
from ledger_node.protocol.auth import sign_request
from ledger_node.protocol.record import Channel
from ledger_node.regulator.node import node_audience
from tests.regulator_support import PERSON_TO_MERCHANT, payment

LOGS = (("unionpay", 0), ("wechatpay", 0), ("unionpay", 1), ("wechatpay", 1))
PER_LOG = 600


def rows(url: str) -> list[tuple[Any, ...]]:
    """Every indexed record of the store at ``url``, by log id and index: what ingest
    wrote (leaf, payment) and nothing of how (log numbers, days)."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT l.log_id, r.idx, r.leaf_hash, r.commitment, r.escrow, r.payer_key, "
            "r.payee_key, r.amount_fen, r.time_us FROM records r JOIN logs l ON l.num = r.log "
            "ORDER BY l.log_id, r.idx").fetchall()


def per_log(url: str) -> dict[bytes, tuple[int, int, int, int, int]]:
    """Each log's verified size and its records' count, distinct indexes, lowest and
    highest index."""
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT l.log_id, l.verified_size, count(r.idx), count(DISTINCT r.idx), "
            "coalesce(min(r.idx), 0), coalesce(max(r.idx), -1) FROM logs l "
            "LEFT JOIN records r ON r.log = l.num GROUP BY l.log_id, l.verified_size"
        ).fetchall()
    return {bytes(row[0]): tuple(int(v) for v in row[1:]) for row in found}  # type: ignore[misc]


def verified(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT coalesce(sum(verified_size), 0) FROM logs").fetchone()
    return int(row[0]) if row else 0


def wait_verified(url: str, total: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while verified(url) < total:
        assert time.monotonic() < deadline, f"{verified(url)} of {total} ingested"
        time.sleep(0.2)


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (the supervisor's ingest workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def alert_keys(client: RegulatorClient, *, ids: bool = False) -> list[tuple[Any, ...]]:
    """Each alert raised, with its evidence (and with ``ids`` its number: numbers are given
    in the order a store's processes first see the alerts, so they are compared between
    processes of one store only)."""
    return sorted(((a["id"],) if ids else ()) + (
        a["rule"], a["identity"], a["direction"], a["window_start"], tuple(a["platforms"]),
        tuple(a["refs"])) for a in client.alerts())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSite]:
    """The chain and four platform logs (two shards of each platform), each holding
    :data:`PER_LOG` anchored records with escrows for pboc, some of them large cash
    payments (alerts)."""
    with LocalSite(tmp_path_factory.mktemp("site"), tls=False) as site:
        site.start_chain()
        pboc = site.keys("pboc")
        for name, shard in LOGS:
            url = site.start_node(name, seal_interval=0.05, seal_size=200, shard=shard)
            keys = site.keys(name)
            client = PlatformClient(url, name, keys.address, keys.sm2_key, shard=shard,
                                    regulator_key=pboc.sm2_key.public_key())
            first = shard * PER_LOG
            records = [payment(name, first + n, f"p{n % 40}", f"shop{n % 7}", 100 + n)
                       for n in range(PER_LOG - 3)]
            records += [payment(name, first + PER_LOG - 3 + n, f"cash-{name}-{n}", "bank",
                                6_000_000, channel=Channel.CASH) for n in range(3)]
            client.submit_records(records, kinds=lambda record: PERSON_TO_MERCHANT)
            assert client.bundle(PER_LOG - 1, timeout=120).tree_size == PER_LOG
        yield site


def config_for(site: LocalSite, url: str, file: str, page_size: int) -> Path:
    """pboc's config on the database ``url``, fetching ``page_size`` leaves at a time (small
    pages: many commits, so a kill lands between and inside them)."""
    path = site.write_regulator_config("pboc", follow_interval=0.1, store_url=url, file=file,
                                       platforms=["unionpay", "wechatpay"])
    path.write_text(path.read_text().replace("follow_interval =",
                                             f"page_size = {page_size}\nfollow_interval ="))
    return path


def client_of(site: LocalSite, url: str) -> RegulatorClient:
    pboc = site.keys("pboc")
    return RegulatorClient.for_regulator_node(url, pboc.address, pboc.sm2_key, "pboc")


@pytest.fixture(scope="module")
def single(site: LocalSite, postgres_cluster: PostgresCluster) -> Iterator[tuple[str, str]]:
    """One regulator process (no workers) that ingested every log: its database and URL."""
    database = postgres_cluster.new_database()
    url = site.start_regulator_process("pboc-single", config_for(site, database,
                                                                 "single.toml", 100))
    wait_verified(database, len(LOGS) * PER_LOG)
    yield database, url
    site.stop_process("pboc-single")


def test_two_workers_ingest_what_one_process_does(
        site: LocalSite, single: tuple[str, str], postgres_cluster: PostgresCluster) -> None:
    database = postgres_cluster.new_database()
    url = site.start_regulator_process("pboc-two", config_for(site, database, "two.toml", 100),
                                       "--workers", "2")
    try:
        supervisor = site.process_ids()["pboc-two"]
        assert len(children(supervisor)) == 2
        wait_verified(database, len(LOGS) * PER_LOG)
        assert rows(database) == rows(single[0])
        assert all(size == PER_LOG for size, *_ in per_log(database).values())
        assert alert_keys(client_of(site, url)) == alert_keys(client_of(site, single[1]))
        status = client_of(site, url).ingest_status()
        assert status["records"] == len(LOGS) * PER_LOG
    finally:
        site.stop_process("pboc-two")
    assert children(supervisor) == [], "the supervisor left a worker running"


def test_workers_killed_at_any_point_resume_without_loss_or_duplication(
        site: LocalSite, single: tuple[str, str], postgres_cluster: PostgresCluster) -> None:
    database = postgres_cluster.new_database()
    total = len(LOGS) * PER_LOG
    # pages of 2 leaves: ~1,200 commits. A kill waits until the store has grown since the
    # last one (the workers are up and committing; killing faster than a worker starts
    # would only test the restarts), then comes at a random moment of the next commits.
    url = site.start_regulator_process("pboc-killed", config_for(site, database,
                                                                 "killed.toml", 2),
                                       "--workers", "2")
    rng = random.Random(16)
    kills = 0
    try:
        supervisor = site.process_ids()["pboc-killed"]
        deadline = time.monotonic() + 400
        last = verified(database)
        while verified(database) < total:
            assert time.monotonic() < deadline, f"{verified(database)} of {total} ingested"
            now = verified(database)
            workers = children(supervisor)
            if kills < 10 and now > last and workers:
                time.sleep(rng.uniform(0.0, 0.3))
                try:
                    os.kill(rng.choice(workers), signal.SIGKILL)
                except ProcessLookupError:
                    continue
                kills += 1
                last = verified(database)
            time.sleep(0.05)
        assert kills >= 2, f"only {kills} kills landed before ingest ended"
        # every log's records are 0..size-1 once, the whole anchored log, as one process
        # wrote them
        for size, count, distinct, low, high in per_log(database).values():
            assert (size, count, distinct, low, high) == (PER_LOG, PER_LOG, PER_LOG, 0,
                                                          PER_LOG - 1)
        assert rows(database) == rows(single[0])
        # the alerts over what all workers committed: each once, as one process raised them
        assert alert_keys(client_of(site, url)) == alert_keys(client_of(site, single[1]))
        log = (site.root / "pboc-killed.log").read_text(errors="replace")
        assert "died (exit status -9); restarting it" in log
    finally:
        site.stop_process("pboc-killed")


def console_session_moves_between(site: LocalSite, first: str, second: str) -> None:
    """A console login made on replica ``first`` is spent on ``second``, and the session
    cookie it gives works on both (as when a load balancer sends a browser's requests to
    either); logging out on one ends it on both."""
    pboc = site.keys("pboc")
    path = "/v1/console/sessions"
    answer = httpx.post(first + path, headers=sign_request(
        pboc.sm2_key, pboc.address, "POST", path, b"", audience=node_audience("pboc")))
    assert answer.status_code == 201, answer.text
    token = str(answer.json()["login_path"]).split("#login=", 1)[1]
    console = {"X-JL-Console": "1", "content-type": "application/json"}
    opened = httpx.post(second + "/console/api/session", json={"token": token},
                        headers=console)
    assert opened.status_code == 200, opened.text
    cookie = {"jl_console": opened.cookies["jl_console"]}
    for url in (first, second):
        viewer = httpx.get(url + "/console/api/session", cookies=cookie).json()
        assert viewer["role"] == "regulator" and viewer["name"] == "pboc", viewer
        assert httpx.get(url + "/console/api/alerts", cookies=cookie).status_code == 200
    again = httpx.post(first + "/console/api/session", json={"token": token}, headers=console)
    assert again.status_code == 401, "a login token is spent once, on any replica"
    assert httpx.delete(first + "/console/api/session", cookies=cookie,
                        headers={"X-JL-Console": "1"}).status_code == 204
    viewer = httpx.get(second + "/console/api/session", cookies=cookie).json()
    assert viewer["role"] == "auditor", "logged out on one replica, still in on the other"


def test_replicas_serve_from_postgresql_while_workers_ingest(
        site: LocalSite, single: tuple[str, str], postgres_cluster: PostgresCluster) -> None:
    database = postgres_cluster.new_database()
    config = config_for(site, database, "replicated.toml", 20)
    # the replicas first (on PostgreSQL a replica may open the database before the ingest
    # process has written anything), so that they answer while the workers ingest
    replicas = [site.start_regulator_process(f"pboc-replica{n}", config, "--ingest", "off")
                for n in (1, 2)]
    ingest = site.start_regulator_process("pboc-ingest", config, "--workers", "2")
    try:
        seen: list[int] = []
        while not seen or verified(database) < len(LOGS) * PER_LOG:
            for replica in replicas:
                answer = client_of(site, replica).trace_identity("p1")
                seen.append(answer["count"])
                client_of(site, replica).alerts()
        want = client_of(site, single[1]).trace_identity("p1")
        assert seen and max(seen) <= want["count"]
        assert min(seen) < want["count"], "no answer came while the workers ingested"
        for url in (ingest, *replicas):
            got = client_of(site, url).trace_identity("p1")
            assert [r["ref"] for r in got["records"]] == [r["ref"] for r in want["records"]]
        assert alert_keys(client_of(site, ingest)) == alert_keys(client_of(site, single[1]))
        numbered = alert_keys(client_of(site, ingest), ids=True)
        assert [alert_keys(client_of(site, url), ids=True) for url in replicas] == [numbered] * 2
        console_session_moves_between(site, replicas[0], replicas[1])
    finally:
        for key in ("pboc-replica1", "pboc-replica2", "pboc-ingest"):
            site.stop_process(key)


def test_workers_stop_with_their_supervisor_even_when_it_is_killed(
        site: LocalSite, postgres_cluster: PostgresCluster) -> None:
    database = postgres_cluster.new_database()
    site.start_regulator_process("pboc-orphans", config_for(site, database, "orphans.toml",
                                                            100), "--workers", "2")
    supervisor = site.process_ids()["pboc-orphans"]
    workers = children(supervisor)
    assert len(workers) == 2
    os.kill(supervisor, signal.SIGKILL)
    site.stop_process("pboc-orphans")  # reaps it
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and "Z" not in
              Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its supervisor"
        time.sleep(0.2)
