#!/usr/bin/env python3
"""Benchmark the shared risk-device list and print a table (issue 6, risk-device list).

1. **On chain**: a consortium on the embedded chain; pboc opens list-key epoch 1;
   unionpay lists ``--entries`` devices with ``addRiskDevices`` in batches; wechatpay's
   :class:`RiskList` syncs them from the events (entries per second).
2. **SDK checks** against wechatpay's synced copy: single ``check`` calls and
   ``check_many`` batches, mostly unlisted devices (the common case) with ``--hit-rate``
   listed ones; then again with entries under three epochs (one HMAC per epoch).
3. **Size**: the copy grown to ``--large`` entries (synthetic events applied directly: a
   lookup is one dict probe per epoch, whatever the size), checks timed again.
4. **HTTP**: unionpay's platform node, ``POST /v1/risk-devices/check-batch`` with 10,000
   fingerprints and single ``/check`` requests (SM2-signed), in process.

Figures, not assertions: docs/risklist.md quotes them with the machine.

    .venv/bin/python scripts/bench_risklist.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

from ledger_node.chain.adapter import ChainEvent, LedgerChain
from ledger_node.protocol.risklist import RiskList, distribute_list_key

GOAL_CHECKS_PER_S = 50_000


def row(name: str, value: str, goal: str = "", verdict: str = "") -> None:
    print(f"| {name} | {value} | {goal} | {verdict} |", flush=True)


def fingerprints(count: int, seed: int, prefix: str = "device_id:bench") -> list[str]:
    rng = random.Random(seed)
    return [f"{prefix}-{rng.getrandbits(64):016x}" for _ in range(count)]


def timed_rate(run: object, count: int, repeat: int = 3) -> float:
    """Best of ``repeat`` runs of ``run()`` (which does ``count`` checks), checks per s."""
    assert callable(run)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def checks(copy: RiskList, listed: list[str], total: int, hit_rate: float, label: str
           ) -> float:
    rng = random.Random(7)
    probes = [rng.choice(listed) if rng.random() < hit_rate
              else f"imei:{rng.randrange(10**14, 10**15):015d}" for _ in range(total)]
    expected = sum(1 for p in probes if not p.startswith("imei:"))
    found = sum(1 for hit in copy.check_many(probes) if hit is not None)
    assert found >= expected, (found, expected)
    single = probes[: min(total, 20_000)]
    single_rate = timed_rate(lambda: [copy.check(p) for p in single], len(single))
    batch_rate = timed_rate(lambda: [copy.check_many(probes[i:i + 1000])
                                     for i in range(0, total, 1000)], total)
    goal = f">= {GOAL_CHECKS_PER_S:,}/s"
    verdict = "met" if min(single_rate, batch_rate) >= GOAL_CHECKS_PER_S else "NOT met"
    row(f"SDK `check`, one at a time, {label}", f"{single_rate:,.0f} checks/s", goal, verdict)
    row(f"SDK `check_many`, batches of 1,000, {label}", f"{batch_rate:,.0f} checks/s", goal,
        "met" if batch_rate >= GOAL_CHECKS_PER_S else "NOT met")
    return batch_rate


def grow(copy: RiskList, count: int, epoch: int, seed: int) -> None:
    """Apply ``count`` synthetic RiskDeviceAdded events (random entries) to ``copy``."""
    rng = random.Random(seed)
    adder = copy.member
    block = copy.synced_block
    events = [ChainEvent("RiskDeviceAdded", {"entry": rng.randbytes(32), "adder": adder,
                                             "reason": 1, "epoch": epoch},
                         block, b"\0" * 32, i) for i in range(count)]
    copy._apply(events, block)  # the bench fills the copy as a sync would


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=2_000, help="devices listed on chain")
    parser.add_argument("--batch", type=int, default=200, help="entries per addRiskDevices")
    parser.add_argument("--checks", type=int, default=100_000, help="checks per measurement")
    parser.add_argument("--hit-rate", type=float, default=0.01)
    parser.add_argument("--large", type=int, default=1_000_000,
                        help="entries in the grown copy (section 3)")
    parser.add_argument("--rpc-url", help="run sections 1-3 on this JSON-RPC development "
                        "chain (e.g. anvil) instead of the embedded one")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.entries, args.checks, args.large = 400, 20_000, 50_000

    from tests.api_support import make_consortium  # the same consortium the tests use

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, {platform.system()}")
    chain = LedgerChain.from_rpc(args.rpc_url) if args.rpc_url else LedgerChain.embedded()
    print(f"chain: {args.rpc_url or 'embedded eth-tester'}")
    print()
    print("| measurement | value | goal | |")
    print("|---|---|---|---|")
    c = make_consortium(chain)
    pboc = c.as_party(c.pboc)
    start = time.perf_counter()
    distribute_list_key(pboc, c.pboc.sm2_key)
    row("open epoch 1: draw key, seal for 3 holders, `setListKeys`",
        f"{(time.perf_counter() - start) * 1000:.0f} ms")

    unionpay = RiskList(c.as_party(c.unionpay), c.unionpay.sm2_key)
    listed = fingerprints(args.entries, 1)
    start = time.perf_counter()
    gas = 0
    for i in range(0, len(listed), args.batch):
        _, outcome = unionpay.add_many([(fp, 3) for fp in listed[i:i + args.batch]])
        gas += outcome.gas_used
    elapsed = time.perf_counter() - start
    row(f"list {args.entries:,} devices, `addRiskDevices` x{args.batch}",
        f"{args.entries / elapsed:,.0f} entries/s, {gas // args.entries:,} gas/entry")

    wechat = RiskList(c.as_party(c.wechatpay), c.wechatpay.sm2_key)
    start = time.perf_counter()
    report = wechat.sync()
    elapsed = time.perf_counter() - start
    row(f"sync a fresh copy ({report.added:,} entries, blocks {report.from_block}.."
        f"{report.to_block})", f"{elapsed * 1000:.0f} ms ({report.added / elapsed:,.0f} "
        "entries/s)")
    start = time.perf_counter()
    wechat.sync()
    row("sync with nothing new", f"{(time.perf_counter() - start) * 1000:.2f} ms")

    checks(wechat, listed, args.checks, args.hit_rate, f"1 epoch, {len(wechat):,} entries")

    # Two more epochs with entries: every check hashes under each of them.
    for epoch in (2, 3):
        distribute_list_key(pboc, c.pboc.sm2_key)
        more = fingerprints(args.batch, epoch, prefix=f"device_id:epoch{epoch}")
        unionpay.add_many([(fp, 1) for fp in more])
        listed += more
    wechat.sync()
    checks(wechat, listed, args.checks, args.hit_rate, f"3 epochs, {len(wechat):,} entries")

    grow(wechat, args.large, 3, 99)
    checks(wechat, listed, args.checks, args.hit_rate, f"3 epochs, {len(wechat):,} entries")

    http(c, listed, args)
    return 0


def http(c: object, listed: list[str], args: argparse.Namespace) -> None:
    """Section 4: the node's check endpoints in process (TestClient)."""
    from fastapi.testclient import TestClient

    from api.main import create_app
    from ledger_node.protocol.auth import sign_request
    from tests.api_support import Consortium, make_node

    assert isinstance(c, Consortium)
    with tempfile.TemporaryDirectory() as tmp:
        node = make_node(c, Path(tmp) / "store.db")
        try:
            app = create_app(node)
            with TestClient(app) as client:
                party = c.unionpay

                def post(target: str, body: object) -> dict[str, object]:
                    content = json.dumps(body).encode()
                    headers = sign_request(party.sm2_key, party.account.address, "POST",
                                           target, content, audience=node.log_id)
                    response = client.post(target, content=content, headers=headers | {
                        "Content-Type": "application/json"})
                    assert response.status_code == 200, response.text
                    answer: dict[str, object] = response.json()
                    return answer

                rng = random.Random(5)
                batch = [rng.choice(listed) if rng.random() < args.hit_rate
                         else f"imei:{rng.randrange(10**14, 10**15):015d}"
                         for _ in range(10_000)]
                post("/v1/risk-devices/check-batch", {"fingerprints": batch[:10]})  # first sync
                rounds = 5
                start = time.perf_counter()
                for _ in range(rounds):
                    post("/v1/risk-devices/check-batch", {"fingerprints": batch})
                elapsed = time.perf_counter() - start
                rate = rounds * len(batch) / elapsed
                row("HTTP `check-batch`, 10,000 per signed request",
                    f"{rate:,.0f} checks/s ({elapsed / rounds * 1000:.0f} ms/request)")
                count = 200
                start = time.perf_counter()
                for fp in batch[:count]:
                    post("/v1/risk-devices/check", {"fingerprint": fp})
                elapsed = time.perf_counter() - start
                row("HTTP `check`, one per signed request",
                    f"{count / elapsed:,.0f} requests/s ({elapsed / count * 1000:.1f} "
                    "ms/request, SM2 signing and verifying included)")
        finally:
            node.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
