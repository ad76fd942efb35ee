#!/usr/bin/env python3
"""Benchmark sharded intake: one platform's two log shards on this machine (issue 5).

Real processes on 127.0.0.1: ``jointledger chain`` and two ``jointledger serve`` processes of
unionpay (shard 0 and shard 1, each its own store and log). First one shard alone takes
10,000-leaf batches from 2 client threads; then both shards at once, 2 client threads each,
every leaf sent to the shard its commitment picks (as :class:`~ledger_node.client.sharded.
ShardedPlatformClient` does). Leaves and batch signatures are made before timing. Last, the
SDK itself: :meth:`ShardedPlatformClient.submit_prepared` over both shards, its encoding and
signing timed. Figures, not assertions: copy the table into docs/performance.md with the
machine it ran on.

    .venv/bin/python scripts/bench_shards.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from ledger_node.client.sdk import NodeClient, PlatformClient
from ledger_node.client.sharded import ShardedPlatformClient, shard_of
from ledger_node.demo.localsite import LocalSite
from ledger_node.demo.run import sample_records
from ledger_node.log.leaf import Leaf

CHUNK = 10_000
THREADS_PER_SHARD = 2


def signed_bodies(client: PlatformClient, leaves: list[Leaf]) -> list[bytes]:
    """Request bodies of :data:`CHUNK` leaves each, signed for the client's shard log."""
    return [json.dumps({"leaves": [leaf.to_json() for leaf in leaves[at:at + CHUNK]],
                        "signer": client.account,
                        "signature": client.sign_batch(leaves[at:at + CHUNK]).hex()},
                       separators=(",", ":")).encode()
            for at in range(0, len(leaves), CHUNK)]


def post_all(url: str, path: str, bodies: list[bytes], threads: int) -> None:
    """POST every body to one node from ``threads`` clients."""
    lock = threading.Lock()
    cursor = iter(range(len(bodies)))

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            while True:
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                answer = http.post(path, content=bodies[index],
                                   headers={"Content-Type": "application/json"})
                if answer.status_code != 201:
                    raise RuntimeError(f"submission failed: {answer.status_code} {answer.text}")

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def run_parallel(jobs: list[tuple[str, str, list[bytes]]]) -> float:
    """POST every shard's bodies at once (its own client threads); return the wall time."""
    started = time.perf_counter()
    workers = [threading.Thread(target=post_all, args=(url, path, bodies, THREADS_PER_SHARD))
               for url, path, bodies in jobs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


def anchored_size(url: str) -> int:
    """The tree size of the node's newest anchored checkpoint (0 before the first)."""
    with NodeClient(url) as node:
        last = node.health().get("last_anchored")
    return 0 if last is None else int(last["tree_size"])


def checkpoint_count(url: str) -> int:
    """How many checkpoints the node has anchored so far."""
    count, after = 0, 0
    with NodeClient(url) as node:
        while page := node.checkpoints(after=after, limit=1000):
            count += len(page)
            after = int(page[-1]["tree_size"])
    return count


def wait_anchored(url: str, size: int, timeout: float = 120.0) -> float:
    """Wait until the node at ``url`` anchored ``size`` leaves; return the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout and anchored_size(url) < size:
        time.sleep(0.1)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args(argv)
    alone = 20_000 if args.quick else 100_000
    both = 2 * alone
    rng = random.Random(5)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; client, both shard nodes and the chain on this "
          "machine")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    # plain HTTP (LocalSite serves https by default): this measures the node, not TLS
    with tempfile.TemporaryDirectory() as tmp, LocalSite(Path(tmp), tls=False) as site:
        site.start_chain()
        urls = [site.start_node("unionpay", seal_interval=0.2, seal_size=10_000, shard=n)
                for n in (0, 1)]
        keys = site.keys("unionpay")
        clients = [PlatformClient(url, "unionpay", keys.address, keys.sm2_key, shard=n)
                   for n, url in enumerate(urls)]
        paths = [f"/v1/logs/{c.log_id.hex()}/leaves" for c in clients]

        print(f"preparing {2 * alone + both:,} leaves and batch signatures ...",
              file=sys.stderr)
        prepared = [clients[0].prepare(r) for r in
                    sample_records("unionpay", 2 * alone + both, rng)]
        leaves = [p.leaf for p in prepared[:alone + both]]
        single = signed_bodies(clients[0], leaves[:alone])
        split: list[list[Leaf]] = [[], []]
        for leaf in leaves[alone:]:
            split[shard_of(leaf, 2)].append(leaf)
        sharded = [signed_bodies(clients[n], split[n]) for n in (0, 1)]

        print("| measure | figure |")
        print("|---|---|")
        elapsed = run_parallel([(urls[0], paths[0], single)])
        one = alone / elapsed
        print(f"| one shard alone: {alone:,} records, 10,000-leaf batches, "
              f"{THREADS_PER_SHARD} clients | {one:,.0f} records/s |", flush=True)
        wait_anchored(urls[0], alone)

        before = [checkpoint_count(u) for u in urls]
        elapsed = run_parallel([(urls[n], paths[n], sharded[n]) for n in (0, 1)])
        during = [checkpoint_count(u) - b for u, b in zip(urls, before, strict=True)]
        combined = both / elapsed
        print(f"| two shards at once: {both:,} records ({len(split[0]):,} + {len(split[1]):,}),"
              f" {THREADS_PER_SHARD} clients each | {combined:,.0f} records/s combined |",
              flush=True)
        print(f"| two shards over one shard | {combined / one:.2f}x |")
        print(f"| checkpoints anchored while both took intake | {sum(during)} in "
              f"{elapsed:.1f} s = {sum(during) / elapsed:.1f} anchors/s ({during[0]} + "
              f"{during[1]}) |", flush=True)
        waited = wait_anchored(urls[0], alone + len(split[0]))
        waited += wait_anchored(urls[1], len(split[1]))

        anchored = [anchored_size(u) for u in urls]
        print(f"| anchored after the two-shard run | shard 0: {anchored[0]:,}, shard 1: "
              f"{anchored[1]:,} (caught up {waited:.1f} s after the last ack) |")
        with ShardedPlatformClient(clients) as sdk:
            started = time.perf_counter()
            sdk.submit_prepared(prepared[alone + both:])
            through_sdk = alone / (time.perf_counter() - started)
        print(f"| two shards through `ShardedPlatformClient.submit_prepared` (one thread per "
              f"shard, JSON encoding and batch signing timed): {alone:,} records | "
              f"{through_sdk:,.0f} records/s |", flush=True)
        print(f"\nprojection input: one shard with the machine to itself ~{one:,.0f} "
              f"records/s; 208,000 records/s needs {-(-208_000 // max(int(one), 1))} such "
              "shards", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
