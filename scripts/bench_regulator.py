#!/usr/bin/env python3
"""Benchmark the regulator node and print a table (issue "regulator").

1. **Ingest** (``--store``, ``--workers 1,2,4``, ``--logs``): ``jointledger chain`` and
   ``--logs`` platform logs (shards of both platforms, ``jointledger serve``) run as real
   processes on 127.0.0.1; the platforms' SDKs seal escrows for pboc and submit; then, for
   each worker count, a fresh store gets the chain's checkpoints (as the supervisor reads
   them) and N ``jointledger serve --role regulator --ingest-worker K/N`` processes ingest
   every log: fetch over HTTP (signed requests), compare with every anchored root and
   signature, decrypt, index, commit. The rate runs from the first commit to the last
   (the workers' start-up left out); CPU seconds are split between the workers, the
   site's processes and the rest of the machine (the database server). SQLite refuses
   more than one worker (one writer), and says so.
2. **Projection**: cores and workers for 92,000 and 208,000 records/s from the measured
   CPU per record.
3. **SM2 operations per sealed batch**, sealing and opening, for several batch sizes.
4. **Trace by identity** over a store holding ``--records`` indexed records (default
   1,000,000; ``--records 10000000`` for the issue's figure): the store is filled
   directly with synthetic decrypted payments (what ingest would have written; the query
   cost depends on the index, not on how the rows got there), then random identities are
   traced, proof bundles included; the bytes per record of that store.

Figures, not assertions: copy the table into docs/performance.md with the machine.

    .venv/bin/python scripts/bench_regulator.py [--quick] [--store sqlite|postgresql|URL]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from api.regulator_server import worker_command
from ledger_node.chain.adapter import LedgerChain, Member, Role
from ledger_node.client.sdk import PlatformClient
from ledger_node.crypto import gmcrypto
from ledger_node.crypto.hashes import sm3
from ledger_node.demo.localsite import LocalSite
from ledger_node.demo.postgres_cluster import PostgresCluster, start_cluster
from ledger_node.demo.run import sample_records
from ledger_node.log.leaf import Leaf, leaves_data
from ledger_node.log.merkle import MerkleLog, hash_leaves, hasher_for
from ledger_node.protocol.aml import PartyKind
from ledger_node.protocol.escrow import (
    NO_CLEARING_KEY,
    EscrowOpener,
    EscrowPayload,
    EscrowSealer,
    identity_key,
)
from ledger_node.protocol.record import Channel
from ledger_node.regulator.config import build_regulator, load_regulator_config
from ledger_node.regulator.node import IngestShare, RegulatorConfig, RegulatorNode
from ledger_node.regulator.pg_store import PostgresRegulatorStore, is_postgres_url
from ledger_node.regulator.store import (
    RECORD_COLUMNS,
    SqliteRegulatorStore,
    StoredAnchor,
)

KINDS = (PartyKind.PERSON, PartyKind.INSTITUTION)


def row(name: str, value: str, goal: str = "", verdict: str = "") -> None:
    print(f"| {name} | {value} | {goal} | {verdict} |", flush=True)


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class IngestFigure:
    """One ingest run: records and seconds from the first commit to the last, and the CPU
    seconds spent meanwhile by whom."""

    workers: int
    records: int
    seconds: float
    worker_cpu: float
    platform_cpu: float
    store_cpu: float | None
    """The database server's CPU seconds (PostgreSQL; ``None`` if not measured, 0 for
    SQLite, which runs inside the workers)."""
    bytes_per_record: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def process_cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds of process ``pid`` so far (/proc/PID/stat); with
    ``children`` those of its children it has waited for too."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of process ``root``, its live children and the children it reaped (a
    PostgreSQL server: the postmaster and its backends)."""
    total = process_cpu_seconds(root, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == root:
                total += process_cpu_seconds(int(entry.name))
    return total


def start_site_with_logs(site: LocalSite, logs: int, per_log: int) -> None:
    """``logs`` platform logs (the two platforms' shards), ``per_log`` records each,
    submitted through the SDK with escrows sealed for pboc, and anchored."""
    site.start_chain()
    pboc = site.keys("pboc")
    rng = random.Random(5)
    shards = [("unionpay" if n % 2 == 0 else "wechatpay", n // 2) for n in range(logs)]
    for name, shard in shards:
        url = site.start_node(name, seal_interval=0.2, seal_size=10_000, shard=shard)
        keys = site.keys(name)
        client = PlatformClient(url, name, keys.address, keys.sm2_key, shard=shard,
                                regulator_key=pboc.sm2_key.public_key())
        print(f"{name} shard {shard}: sealing and submitting {per_log:,} records ...",
              file=sys.stderr)
        client.submit_records(sample_records(name, per_log, rng), kinds=lambda r: KINDS)
        last = client.bundle(per_log - 1, timeout=300)  # wait: anchored
        assert last.tree_size == per_log


def ingest_once(site: LocalSite, store: StoreKind, workers: int, total: int,
                label: str) -> IngestFigure:
    """Ingest every log of the site into a fresh store with ``workers`` worker processes
    (``jointledger serve --role regulator --ingest-worker K/N``, the real path: fetch over
    HTTP with signed requests, verify every anchored root and signature, decrypt, index,
    commit), the chain's checkpoints read into the store first, as the supervisor does."""
    location = store.fresh(site.root, label)
    config_path = site.write_regulator_config("pboc", follow_interval=0.1,
                                              platforms=["unionpay", "wechatpay"],
                                              file=f"{label}.toml", **store.config(location))
    config = load_regulator_config(config_path)
    follower = build_regulator(config.with_process_role(ingest=None, follow_chain=True))
    follower.follow_chain()
    follower.stop()
    site_pids = list(site.process_ids().values())
    processes = [subprocess.Popen(worker_command(config_path, "pboc", None,
                                                 IngestShare(k, workers)),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for k in range(workers)]

    def cpu() -> tuple[float, float, float | None]:
        """CPU seconds so far: the workers, the site's processes, the database server."""
        server = store.server_pid()
        return (sum(process_cpu_seconds(p.pid) for p in processes),
                sum(process_cpu_seconds(pid) for pid in site_pids),
                None if server is None else tree_cpu_seconds(server))

    count = store.verified(location)
    try:
        first_at, first_count, first_cpu = None, 0, cpu()
        deadline = time.monotonic() + 1800
        while True:
            done = count()
            now = time.perf_counter()
            if first_at is None and done > 0:
                first_at, first_count, first_cpu = now, done, cpu()
            if done >= total:
                break
            for process in processes:
                if process.poll() is not None:
                    raise SystemExit(f"ingest worker exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit(f"ingest did not finish: {done:,} of {total:,}")
            time.sleep(0.05)
        ended, last_cpu = time.perf_counter(), cpu()
    finally:
        store.close_watch()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
    assert first_at is not None
    # the steady rate: from the first commit (after the workers' start-up) to the last
    server = (None if last_cpu[2] is None or first_cpu[2] is None
              else last_cpu[2] - first_cpu[2])
    return IngestFigure(workers, total - first_count, ended - first_at,
                        last_cpu[0] - first_cpu[0], last_cpu[1] - first_cpu[1],
                        0.0 if store.kind == "sqlite" else server,
                        store.size(location) / total)


def bench_ingest(stores: list[StoreKind], worker_counts: list[int], logs: int, per_log: int
                 ) -> dict[str, list[IngestFigure]]:
    """Ingest the same site's logs into each store with each worker count."""
    figures: dict[str, list[IngestFigure]] = {}
    # plain HTTP (LocalSite serves https by default): this measures the node, not TLS
    with tempfile.TemporaryDirectory() as tmp, LocalSite(Path(tmp), tls=False) as site:
        start_site_with_logs(site, logs, per_log)
        total = logs * per_log
        for store in stores:
            mine = figures.setdefault(store.name, [])
            for workers in worker_counts:
                if workers > 1 and not store.takes_workers:
                    row(f"regulator ingest, {workers} workers, {store.name}",
                        "refused: a SQLite store has one writer", "", "")
                    continue
                print(f"ingest with {workers} worker(s) into {store.name} ...",
                      file=sys.stderr)
                figure = ingest_once(site, store, workers, total,
                                     f"ingest-{store.kind}-{workers}")
                mine.append(figure)
                server = ("in the workers (SQLite)" if store.kind == "sqlite" else
                          "not measured (an outside server)" if figure.store_cpu is None
                          else f"{1e6 * figure.store_cpu / figure.records:,.0f} µs")
                row(f"regulator ingest, {workers} worker process(es), {store.name}: fetch "
                    f"over HTTP, verify roots and signatures, decrypt, index, commit "
                    f"({total:,} records, {logs} logs)", f"{figure.rate:,.0f} records/s")
                row(f"  CPU per record ({workers} worker(s), {store.name}): workers; "
                    "database server; platform nodes and chain",
                    f"{1e6 * figure.worker_cpu / figure.records:,.0f} µs; {server}; "
                    f"{1e6 * figure.platform_cpu / figure.records:,.0f} µs")
            if mine:
                row(f"regulator store bytes per record after ingest ({store.name}; escrow "
                    "kept as evidence)", f"{mine[0].bytes_per_record:,.0f} B")
        best = {name: max(f.rate for f in found) for name, found in figures.items() if found}
        if "PostgreSQL" in best and "SQLite" in best:
            row("PostgreSQL ingest (best worker count) against SQLite's, same run",
                f"{best['PostgreSQL']:,.0f} vs {best['SQLite']:,.0f} records/s",
                "PostgreSQL faster", met(best["PostgreSQL"] > best["SQLite"]))
    return figures


def project(figures: list[IngestFigure], store: StoreKind) -> None:
    """Cores and workers for 92,000 and 208,000 records/s from the measured CPU per record
    (the lowest over the runs: the least contended). A worker is one process, so about one
    core: its Python holds one lock."""
    if not figures:
        return
    best = min(figures, key=lambda f: (f.worker_cpu + (f.store_cpu or 0)) / f.records)
    worker_us = 1e6 * best.worker_cpu / best.records
    store_us = None if best.store_cpu is None else 1e6 * best.store_cpu / best.records
    if not store.takes_workers:
        row(f"projection ({store.name}: {worker_us:,.0f} µs per record in its one writer)",
            f"one writer: at most ~{1e6 / worker_us:,.0f} records/s per store on one core; "
            "92,000 and 208,000 records/s are out of its reach")
        return
    for target in (92_000, 208_000):
        workers = math.ceil(target * worker_us / 1e6)
        if store_us is None:
            database = "the database server's cores not measured"
        else:
            database = f"{target * store_us / 1e6:,.1f} database server cores"
        row(f"projection for {target:,} records/s ({store.name}: {worker_us:,.0f} µs per "
            f"record per core in the workers"
            + ("" if store_us is None else f", {store_us:,.0f} µs in the database server")
            + ")", f"{workers} ingest workers (one core each, ≥ {workers} logs) + {database}")


def bench_sm2_per_batch() -> None:
    key = gmcrypto.generate_private_key()
    record = sample_records("unionpay", 1, random.Random(1))[0]
    payload = EscrowPayload.from_record(record, payer_kind=KINDS[0], payee_kind=KINDS[1])
    for size in (1, 100, 10_000):
        sealer = EscrowSealer(key.public_key())
        commitments = [sm3(i.to_bytes(8, "big")) for i in range(size)]
        escrows = [sealer.seal(payload, c) for c in commitments]
        opener = EscrowOpener.from_keys(key)
        for escrow, c in zip(escrows, commitments, strict=True):
            opener.open(escrow, c)
        row(f"SM2 operations for one sealed batch of {size:,}",
            f"{sealer.sm2_encryptions} encryption, {opener.sm2_decryptions} decryption",
            "constant in batch size", met(sealer.sm2_encryptions == opener.sm2_decryptions == 1))


def bench_trace(store: StoreKind, root: Path, count: int, queries: int) -> None:
    rng = random.Random(9)
    people = [identity_key(f"person-{i:07d}") for i in range(max(1, count // 20))]
    merchants = [identity_key(f"merchant-{i:05d}") for i in range(2_000)]
    start = datetime(2026, 11, 27, tzinfo=UTC)
    location = store.fresh(root, "trace")
    chain = LedgerChain.embedded()
    deployer = chain.with_account(chain.dev_faucet())
    deployment = deployer.deploy([Member(deployer.address, Role.REGULATOR, "pboc",
                                         gmcrypto.generate_private_key().public_key().raw)],
                                 threshold=1)
    regulator = RegulatorNode(store.regulator_config(location),
                              deployer.attach(deployment),
                              [gmcrypto.generate_private_key()], {})
    log_id = bytes(32)
    regulator.store.ensure_log(log_id, "unionpay", deployer.address, "sm3")
    if isinstance(regulator.store, PostgresRegulatorStore):
        regulator.store.ensure_partition(datetime.now(UTC).date())
    tree = MerkleLog(hasher_for("sm3"))
    escrow = bytes(261)
    print(f"filling a regulator store with {count:,} indexed records ...", file=sys.stderr)
    filled = time.perf_counter()
    chunk = 100_000
    number = 1  # the first and only log of a fresh store
    first_us = (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    size = hasher_for("sm3").digest_size
    for base in range(0, count, chunk):
        # the rows append_verified writes (record_row's columns), built directly in bulk
        commitments = [rng.randbytes(32) for _ in range(min(chunk, count - base))]
        hashes = hash_leaves(tree.hasher, leaves_data([Leaf(c, escrow) for c in commitments]))
        leaf_hashes = [hashes[i:i + size] for i in range(0, len(hashes), size)]
        rows = [(number, base + i, leaf_hash, commitment, escrow, None, None,
                 rng.choice(people), rng.choice(merchants), 1, 2, rng.randrange(100, 10**6),
                 "CNY", first_us + rng.randrange(86_400) * 1_000_000, Channel.QR.value,
                 False, False, NO_CLEARING_KEY)
                for i, (leaf_hash, commitment) in enumerate(zip(leaf_hashes, commitments,
                                                                strict=True))]
        tree.extend_leaf_hashes(leaf_hashes)
        store.bulk_insert(location, number, rows, base + len(rows), tree.root())
    regulator.store.save_anchors([StoredAnchor(log_id, count, tree.root(), 0, b"\x30",
                                               b"\x00" * 32, 1, 0)], ("bench", 0))
    regulator._trees[log_id] = tree
    fill_rate = count / (time.perf_counter() - filled)
    samples = []
    found = 0
    for _ in range(queries):
        who = rng.choice(people)
        started = time.perf_counter()
        traced = regulator.trace_identity(who)
        samples.append((time.perf_counter() - started) * 1000)
        found += len(traced)
    p99 = percentile(samples, 0.99)
    row(f"trace by identity over {count:,} indexed records, proof bundles included "
        f"({queries} random people, {found / queries:.1f} records each)",
        f"p50 {statistics.median(samples):.1f} ms, p99 {p99:.1f} ms", "p99 <= 50 ms",
        met(p99 <= 50))
    row("  (store filled at)", f"{fill_rate:,.0f} records/s")
    regulator.stop()
    row(f"regulator store bytes per record at {count:,} records ({store.name})",
        f"{store.size(location) / count:,.0f} B")


@dataclass
class StoreKind:
    """The store a run measures: SQLite files, or databases on a PostgreSQL server (a
    throwaway durable cluster this bench starts, or an outside server's URL)."""

    kind: str
    server_url: str | None = None
    cluster: PostgresCluster | None = None
    made: int = 0

    @property
    def name(self) -> str:
        return "SQLite" if self.kind == "sqlite" else "PostgreSQL"

    @property
    def takes_workers(self) -> bool:
        return self.kind != "sqlite"

    def fresh(self, root: Path, label: str) -> Path | str:
        """A new, empty store named ``label``: a file under ``root``, or a new database."""
        if self.kind == "sqlite":
            path = root / f"{label}.db"
            for suffix in ("", "-wal", "-shm", ".lock"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            return path
        if self.cluster is not None:
            return self.cluster.new_database()
        assert self.server_url is not None
        self.made += 1
        name = f"jl_bench_{os.getpid()}_{self.made}"
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}".encode())
        parts = urlsplit(self.server_url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))

    def config(self, location: Path | str) -> dict[str, str]:
        """``LocalSite.write_regulator_config``'s store argument for ``location``."""
        return {"store": str(location)} if self.kind == "sqlite" else {"store_url":
                                                                         str(location)}

    def regulator_config(self, location: Path | str) -> RegulatorConfig:
        if self.kind == "sqlite":
            return RegulatorConfig("pboc", Path(location))
        return RegulatorConfig("pboc", None, store_url=str(location))

    def size(self, location: Path | str) -> int:
        """The store's bytes on disk: SQLite's file and WAL; PostgreSQL's tables (every
        partition) with their indexes and TOAST (``pg_total_relation_size``), WAL not
        counted."""
        if self.kind == "sqlite":
            return sum(Path(f"{location}{suffix}").stat().st_size
                       for suffix in ("", "-wal") if Path(f"{location}{suffix}").exists())
        with psycopg.connect(str(location)) as conn:
            row = conn.execute(b"SELECT sum(pg_total_relation_size(oid)) FROM pg_class "
                               b"WHERE relkind = 'r' AND relnamespace = "
                               b"'public'::regnamespace").fetchone()
        return int(row[0]) if row is not None else 0

    def verified(self, location: Path | str) -> Callable[[], int]:
        """A cheap count of the records committed (the sum of the logs' verified sizes,
        which commit with their records), and a way to close what it holds."""
        if self.kind == "sqlite":
            store = SqliteRegulatorStore(Path(location), regulator="pboc", writer=False)
            self._close = store.close
            return lambda: sum(state.verified_size for state in store.logs())
        conn = psycopg.connect(str(location), autocommit=True)
        self._close = conn.close

        def count() -> int:
            row = conn.execute(b"SELECT coalesce(sum(verified_size), 0) FROM logs").fetchone()
            return int(row[0]) if row is not None else 0
        return count

    def close_watch(self) -> None:
        self._close()

    def server_pid(self) -> int | None:
        """The database server's process (its postmaster), if this bench started it."""
        return None if self.cluster is None else self.cluster.server_pid()

    def bulk_insert(self, location: Path | str, number: int, rows: list[tuple[Any, ...]],
                    size: int, root: bytes) -> None:
        """Write synthetic indexed records for the trace, in bulk, with the log's new
        verified size: SQLite ``executemany`` in one transaction; PostgreSQL ``COPY`` into
        today's partition. The rows are :func:`record_row`'s; the index is what a trace
        reads, however the rows got there."""
        sql_columns = f"{RECORD_COLUMNS}"
        if self.kind == "sqlite":
            db = sqlite3.connect(Path(location), isolation_level=None)
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(f"INSERT INTO records ({sql_columns}) VALUES "
                               f"({', '.join('?' * 18)})", rows)
                db.execute("UPDATE logs SET verified_size = ?, verified_root = ? WHERE num = ?",
                           (size, root, number))
                db.execute("COMMIT")
            finally:
                db.close()
            return
        day = datetime.now(UTC).date()
        with psycopg.connect(str(location)) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY records ({sql_columns}, day) FROM STDIN".encode()) as copy:
                for values in rows:
                    copy.write_row((*values, day))
            cur.execute(b"UPDATE logs SET verified_size = %s, verified_root = %s "
                        b"WHERE num = %s", (size, root, number))


def parse_stores(text: str) -> list[StoreKind]:
    stores = []
    for item in text.split(","):
        if item == "sqlite":
            stores.append(StoreKind("sqlite"))
        elif item == "postgresql":
            stores.append(StoreKind("postgresql", cluster=start_cluster(durable=True)))
        elif is_postgres_url(item):
            stores.append(StoreKind("postgresql", server_url=item))
        else:
            raise SystemExit(f"--store {item!r}: sqlite, postgresql or a postgresql:// URL")
    return stores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--store", default="sqlite",
                        help="comma-separated: sqlite, postgresql (a throwaway durable "
                        "cluster), or a postgresql:// URL of a server this bench may create "
                        "databases on (default sqlite; sqlite,postgresql compares them on "
                        "the same run)")
    parser.add_argument("--workers", default="1,2,4",
                        help="ingest worker counts to measure, comma-separated (default 1,2,4)")
    parser.add_argument("--logs", type=int, default=4,
                        help="platform logs (shards of the two platforms) to ingest")
    parser.add_argument("--ingest-records", type=int, help="records per log for ingest")
    parser.add_argument("--records", type=int,
                        help="indexed records for the trace (default 1,000,000; 10,000,000 "
                        "for the issue's figure)")
    parser.add_argument("--skip-ingest", action="store_true", help="the trace only")
    parser.add_argument("--skip-trace", action="store_true", help="ingest only")
    args = parser.parse_args(argv)
    # SIGTERM unwinds (the site's processes and the cluster are stopped in finally blocks)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stores = parse_stores(args.store)
    per_log = args.ingest_records or (2_000 if args.quick else 50_000)
    trace_records = args.records or (50_000 if args.quick else 1_000_000)
    worker_counts = [int(n) for n in args.workers.split(",")]
    try:
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}; chain, platform nodes, regulator workers and "
              f"the store's server on this machine; load average at start "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; stores: "
              f"{', '.join(s.name for s in stores)}\n")
        print("| measure | figure | goal | verdict |")
        print("|---|---|---|---|")
        if not args.quick:
            bench_sm2_per_batch()
        if not args.skip_ingest:
            figures = bench_ingest(stores, worker_counts, args.logs, per_log)
            for store in stores:
                project(figures.get(store.name, []), store)
        if not args.skip_trace:
            for store in stores:
                with tempfile.TemporaryDirectory() as tmp:
                    bench_trace(store, Path(tmp), trace_records, 200 if args.quick else 1_000)
        print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        for store in stores:
            if store.cluster is not None:
                store.cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
