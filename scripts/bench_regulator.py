#!/usr/bin/env python3
"""Benchmark the regulator node and print a table (issue "regulator").

1. **Ingest**: ``jointledger chain`` and both platforms' ``jointledger serve`` run as real
   processes on 127.0.0.1; the platforms' SDKs seal escrows for pboc and submit; then this
   process runs pboc's regulator node and times one follow-and-ingest round: fetch over
   HTTP (signed requests), rebuild the trees, compare with every anchored root on chain,
   decrypt, index, commit.
2. **SM2 operations per sealed batch**, sealing and opening, for several batch sizes.
3. **Trace by identity** over a regulator store holding ``--trace-records`` indexed
   records (default 1,000,000): the store is filled directly with synthetic decrypted
   payments (what ingest would have written; the query cost depends on the index, not on
   how the rows got there), then random identities are traced, proof bundles included.

Figures, not assertions: copy the table into docs/performance.md with the machine.

    .venv/bin/python scripts/bench_regulator.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ledger_node.chain.adapter import LedgerChain, Member, Role
from ledger_node.client.sdk import PlatformClient, RegulatorClient
from ledger_node.crypto import gmcrypto
from ledger_node.crypto.hashes import sm3
from ledger_node.demo.localsite import LocalSite
from ledger_node.demo.run import sample_records
from ledger_node.log.leaf import Leaf
from ledger_node.log.merkle import MerkleLog, hasher_for
from ledger_node.protocol.aml import PartyKind
from ledger_node.protocol.escrow import EscrowOpener, EscrowPayload, EscrowSealer, identity_key
from ledger_node.protocol.record import Channel
from ledger_node.regulator.node import HttpLeafSource, RegulatorConfig, RegulatorNode
from ledger_node.regulator.store import IngestedLeaf, StoredAnchor

KINDS = (PartyKind.PERSON, PartyKind.INSTITUTION)


def row(name: str, value: str, goal: str = "", verdict: str = "") -> None:
    print(f"| {name} | {value} | {goal} | {verdict} |", flush=True)


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bench_ingest(records_per_platform: int) -> None:
    # plain HTTP (LocalSite serves https by default): this measures the node, not TLS
    with tempfile.TemporaryDirectory() as tmp, LocalSite(Path(tmp), tls=False) as site:
        site.start_chain()
        pboc = site.keys("pboc")
        urls = {name: site.start_node(name, seal_interval=0.2, seal_size=10_000)
                for name in ("unionpay", "wechatpay")}
        rng = random.Random(5)
        for name, url in urls.items():
            keys = site.keys(name)
            client = PlatformClient(url, name, keys.address, keys.sm2_key,
                                    regulator_key=pboc.sm2_key.public_key())
            print(f"{name}: sealing and submitting {records_per_platform:,} records ...",
                  file=sys.stderr)
            records = sample_records(name, records_per_platform, rng)
            client.submit_records(records, kinds=lambda r: KINDS)
            last = client.bundle(records_per_platform - 1, timeout=120)  # wait: anchored
            assert last.tree_size == records_per_platform
        chain = LedgerChain.from_rpc(site.rpc_url, pboc.account).attach(site.deployment)
        sources = {name: HttpLeafSource(RegulatorClient(url, pboc.address, pboc.sm2_key))
                   for name, url in urls.items()}
        store = Path(tmp) / "pboc-regulator.db"
        regulator = RegulatorNode(RegulatorConfig("pboc", store), chain, [pboc.sm2_key],
                                  sources)
        total = 2 * records_per_platform
        started, cpu_started = time.perf_counter(), time.process_time()
        added = regulator.sync()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        assert added == total, (added, regulator.store.faults())
        rate = total / elapsed
        row(f"regulator ingest: fetch over HTTP, verify roots, decrypt, index "
            f"({total:,} records, 2 platforms)", f"{rate:,.0f} records/s", ">= 30,000 /s",
            met(rate >= 30_000))
        # The regulator runs in this process (the nodes and the chain in others): records
        # per CPU second of the regulator itself, what a machine of its own would approach.
        row("  the same per CPU second of the regulator process",
            f"{total / cpu:,.0f} records/s ({cpu / total * 1e6:.1f} µs a record)")
        batches = 2 * -(-records_per_platform // 10_000)
        row("SM2 decryptions during that ingest",
            f"{regulator.sm2_decryptions} for {total:,} records in ~{batches} sealed batches")
        regulator.stop()
        size = store.stat().st_size + sum(
            p.stat().st_size for p in store.parent.glob(store.name + "-*"))
        row("regulator store bytes per record (escrow kept as evidence)",
            f"{size / total:,.0f} B")


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


def bench_trace(count: int, queries: int) -> None:
    rng = random.Random(9)
    people = [identity_key(f"person-{i:07d}") for i in range(max(1, count // 20))]
    merchants = [identity_key(f"merchant-{i:05d}") for i in range(2_000)]
    start = datetime(2026, 11, 27, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        chain = LedgerChain.embedded()
        deployer = chain.with_account(chain.dev_faucet())
        deployment = deployer.deploy([Member(deployer.address, Role.REGULATOR, "pboc",
                                             gmcrypto.generate_private_key().public_key().raw)],
                                     threshold=1)
        regulator = RegulatorNode(RegulatorConfig("pboc", Path(tmp) / "r.db"),
                                  deployer.attach(deployment),
                                  [gmcrypto.generate_private_key()], {})
        log_id = bytes(32)
        regulator.store.ensure_log(log_id, "unionpay", deployer.address, "sm3")
        tree = MerkleLog(hasher_for("sm3"))
        escrow = bytes(261)
        print(f"filling a regulator store with {count:,} indexed records ...", file=sys.stderr)
        filled = time.perf_counter()
        chunk = 20_000
        for base in range(0, count, chunk):
            leaves = []
            for index in range(base, min(count, base + chunk)):
                commitment = rng.randbytes(32)
                payment = EscrowPayload(
                    payer_key=rng.choice(people), payee_key=rng.choice(merchants),
                    payer_kind=KINDS[0], payee_kind=KINDS[1],
                    amount_fen=rng.randrange(100, 10**6), currency="CNY",
                    time=start + timedelta(seconds=rng.randrange(86_400)),
                    channel=Channel.QR, cross_border=False, cash=False)
                leaf = Leaf(commitment, escrow)
                leaf_hash = tree.hasher.hash_leaf(leaf.leaf_data())
                leaves.append(IngestedLeaf(index, leaf_hash, commitment, escrow, None, None,
                                           payment))
            tree.extend_leaf_hashes(leaf.leaf_hash for leaf in leaves)
            regulator.store.append_verified(log_id, base, leaves, tree.root())
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--records", type=int, help="records per platform for ingest")
    parser.add_argument("--trace-records", type=int, help="indexed records for the trace")
    args = parser.parse_args(argv)
    per_platform = args.records or (5_000 if args.quick else 100_000)
    trace_records = args.trace_records or (50_000 if args.quick else 1_000_000)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; chain, platform nodes and regulator on this machine")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print("| measure | figure | goal | verdict |")
    print("|---|---|---|---|")
    bench_sm2_per_batch()
    bench_ingest(per_platform)
    bench_trace(trace_records, 200 if args.quick else 1_000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
