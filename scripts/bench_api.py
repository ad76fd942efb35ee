#!/usr/bin/env python3
"""Benchmark a platform node through its HTTP API and print a table (issue "node and API").

Real processes on 127.0.0.1, as an operator runs them: ``jointledger chain`` (the embedded
chain as JSON-RPC) and ``jointledger serve`` (the node); this process is the client.
Commitments and batch signatures are computed before timing. Figures, not assertions:
copy the table into docs/performance.md with the machine it ran on.

    .venv/bin/python scripts/bench_api.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from ledger_node.chain.adapter import LedgerChain
from ledger_node.client.sdk import PlatformClient
from ledger_node.demo.localsite import LocalSite
from ledger_node.demo.run import sample_records
from ledger_node.log.leaf import Leaf


def row(name: str, value: str, goal: str = "", verdict: str = "") -> None:
    print(f"| {name} | {value} | {goal} | {verdict} |", flush=True)


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def signed_bodies(client: PlatformClient, leaves: list[Leaf], chunk: int) -> list[bytes]:
    """Request bodies of ``chunk`` leaves each, signed by the platform (done before timing)."""
    bodies = []
    for start in range(0, len(leaves), chunk):
        part = leaves[start:start + chunk]
        bodies.append(json.dumps({
            "leaves": [leaf.to_json() for leaf in part],
            "signer": client.account,
            "signature": client.sign_batch(part).hex(),
        }, separators=(",", ":")).encode())
    return bodies


def post_all(url: str, path: str, bodies: list[bytes], threads: int) -> list[float]:
    """POST every body from ``threads`` clients; return each request's latency (s)."""
    latencies: list[float] = []
    lock = threading.Lock()
    cursor = iter(range(len(bodies)))

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                started = time.perf_counter()
                answer = http.post(path, content=bodies[index],
                                   headers={"Content-Type": "application/json"})
                elapsed = time.perf_counter() - started
                if answer.status_code != 201:
                    raise RuntimeError(f"submission failed: {answer.status_code} {answer.text}")
                with lock:
                    latencies.append(elapsed)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return latencies


def node_metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    match = re.search(rf"^jointledger_{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args(argv)
    batched = 20_000 if args.quick else 200_000
    singles = 300 if args.quick else 3_000
    direct = 20 if args.quick else 100
    rng = random.Random(11)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; client, node and chain processes on this machine")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    # plain HTTP (LocalSite serves https by default): this measures the node, not TLS
    with tempfile.TemporaryDirectory() as tmp, LocalSite(Path(tmp), tls=False) as site:
        rpc = site.start_chain()
        url = site.start_node("unionpay", seal_interval=0.2, seal_size=10_000)
        keys = site.keys("unionpay")
        client = PlatformClient(url, "unionpay", keys.address, keys.sm2_key)
        path = f"/v1/logs/{client.log_id.hex()}/leaves"

        print(f"preparing {batched + singles:,} records (commitments, signatures) ...",
              file=sys.stderr)
        records = sample_records("unionpay", batched + singles, rng)
        leaves = [client.prepare(r).leaf for r in records]
        batch_bodies = signed_bodies(client, leaves[:batched], 10_000)
        single_bodies = signed_bodies(client, leaves[batched:], 1)

        print("| measure | figure | goal | verdict |")
        print("|---|---|---|---|")
        started = time.perf_counter()
        post_all(url, path, batch_bodies, threads=2)
        intake = batched / (time.perf_counter() - started)
        row(f"batched intake over HTTP, 10,000-leaf batches, 2 clients ({batched:,} records)",
            f"{intake:,.0f} records/s", ">= 100,000 /s", met(intake >= 100_000))

        chain = LedgerChain.from_rpc(rpc, keys.account).attach(site.deployment)
        started = time.perf_counter()
        for leaf in leaves[:direct]:
            chain.commit(leaf.commitment)
        direct_rate = direct / (time.perf_counter() - started)
        row(f"naive baseline: one direct `commit` transaction per record ({direct})",
            f"{direct_rate:,.1f} records/s")
        row("batched over direct", f"{intake / direct_rate:,.0f}x", ">= 1,000x",
            met(intake / direct_rate >= 1_000))

        started = time.perf_counter()
        latencies = post_all(url, path, single_bodies, threads=32)
        single_rate = singles / (time.perf_counter() - started)
        p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
        row(f"single-record submissions, 32 concurrent clients ({singles:,})",
            f"p50 {p50 * 1000:,.1f} ms, p99 {p99 * 1000:,.1f} ms ({single_rate:,.0f}/s)",
            "p99 <= 20 ms", met(p99 <= 0.020))

        time.sleep(1.0)  # let the sealer anchor the last leaves
        anchor_p99 = node_metric(url, "anchor_latency_p99_seconds")
        row("ack to anchored, over all of the above (saturating load, backlog included)",
            f"p50 {node_metric(url, 'anchor_latency_p50_seconds') * 1000:,.0f} ms, "
            f"p99 {anchor_p99 * 1000:,.0f} ms")

        # Latency under steady traffic, on the other platform's fresh node: 50-record
        # batches at a fixed rate well below saturation.
        steady_url = site.start_node("wechatpay", seal_interval=0.2, seal_size=10_000)
        wechat_keys = site.keys("wechatpay")
        wechat = PlatformClient(steady_url, "wechatpay", wechat_keys.address,
                                wechat_keys.sm2_key)
        steady_batches = 40 if args.quick else 200
        wechat_leaves = [wechat.prepare(r).leaf for r in
                         sample_records("wechatpay", 50 * steady_batches, rng)]
        steady_bodies = signed_bodies(wechat, wechat_leaves, 50)
        interval = 0.05  # 20 batches/s = 1,000 records/s
        with httpx.Client(base_url=steady_url, timeout=30) as http:
            next_at = time.perf_counter()
            for body in steady_bodies:
                time.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += interval
                http.post(f"/v1/logs/{wechat.log_id.hex()}/leaves", content=body,
                          headers={"Content-Type": "application/json"}).raise_for_status()
        time.sleep(1.0)
        steady_p50 = node_metric(steady_url, "anchor_latency_p50_seconds")
        steady_p99 = node_metric(steady_url, "anchor_latency_p99_seconds")
        row("ack to anchored under steady traffic (1,000 records/s in 50-record batches)",
            f"p50 {steady_p50 * 1000:,.0f} ms, p99 {steady_p99 * 1000:,.0f} ms",
            "p99 <= 150 ms", met(steady_p99 <= 0.150))
        wechat.close()

        total = batched + singles
        stop_at = time.perf_counter() + (2.0 if args.quick else 5.0)
        served = [0]
        lock = threading.Lock()

        def fetch_bundles() -> None:
            local = random.Random(threading.get_ident())
            with httpx.Client(base_url=url, timeout=30) as http:
                while time.perf_counter() < stop_at:
                    answer = http.get(f"/v1/leaves/{local.randrange(total)}/bundle")
                    if answer.status_code == 200:
                        with lock:
                            served[0] += 1

        started = time.perf_counter()
        workers = [threading.Thread(target=fetch_bundles) for _ in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        row("proof bundles served, 8 clients",
            f"{served[0] / (time.perf_counter() - started):,.0f} /s")
        row("node commits (group commit) / submissions",
            f"{node_metric(url, 'commits_total'):,.0f} / "
            f"{len(batch_bodies) + len(single_bodies):,}")
        print(f"\nmedian single-record latency {statistics.median(latencies) * 1000:.1f} ms",
              file=sys.stderr)
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
