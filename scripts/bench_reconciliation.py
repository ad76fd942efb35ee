#!/usr/bin/env python3
"""Benchmark cross-platform reconciliation (issue 6) and print a table.

Both platforms' nodes run in this process behind real HTTP servers on 127.0.0.1, on the
embedded chain. Each submits its halves of ``--payments`` cross-platform payments through
its SDK (escrows sealed, tags added); then unionpay reconciles with wechatpay:

1. the pairwise key (static-static ECDH and KDF) and the two tags of one record;
2. reading and verifying a log over the public summaries endpoint (leaves/s);
3. a whole in-process run (``ledger_node.reconcile.reconciler.reconcile``: both logs read and
   verified, openings checked, expectations, matching, report with bundles);
4. the same through the node (``PlatformClient.reconcile`` -> ``POST /v1/reconciliation``),
   a second time with the node's verified counterparty log cached.

Figures, not assertions. ``.venv/bin/python scripts/bench_reconciliation.py [--quick]``
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from api.main import create_app
from api.server import PlatformServer
from ledger_node.chain.adapter import LedgerChain, Role
from ledger_node.client.sdk import NodeClient, PlatformClient, own_records, registered_platform
from ledger_node.demo.run import new_party
from ledger_node.platform.node import NodeConfig, PlatformNode
from ledger_node.protocol.aml import PartyKind
from ledger_node.protocol.keys_in_force import platform_member
from ledger_node.protocol.pairwise import CrossPlatform, Side, pairwise_key, record_tags
from ledger_node.protocol.reconciliation import Window
from ledger_node.protocol.record import Channel, PaymentRecord
from ledger_node.reconcile.reconciler import VerifiedLog, reconcile

KINDS = (PartyKind.PERSON, PartyKind.INSTITUTION)
T0 = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)


def row(name: str, value: str) -> None:
    print(f"| {name} | {value} |", flush=True)


def halves(count: int) -> dict[str, list[PaymentRecord]]:
    out: dict[str, list[PaymentRecord]] = {"unionpay": [], "wechatpay": []}
    for n in range(count):
        for name in out:
            out[name].append(PaymentRecord(
                platform=name, local_tx_id=f"{name[:2]}{n:010d}",
                payer_identity="110105198503142534", payer_account=f"6217{n:015d}",
                payee_identity="91110000101107370X", payee_account=f"wxmch-{n % 977}",
                amount_fen=1_000 + n % 50_000 - (1 if name == "wechatpay" and n % 1000 == 7
                                                 else 0),
                currency="CNY", time=T0 + timedelta(milliseconds=40 * n),
                channel=Channel.QR, cross_border=False, clearing_ref=f"CR{n:018d}"))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="2,000 payments")
    args = parser.parse_args()
    count = 2_000 if args.quick else args.payments
    print(f"machine: {platform.processor() or platform.machine()}, Python "
          f"{sys.version.split()[0]}; {count:,} cross-platform payments\n")
    print("| measure | value |\n|---|---|")

    chain = LedgerChain.embedded()
    parties = [new_party("unionpay", Role.PLATFORM), new_party("wechatpay", Role.PLATFORM),
               new_party("pboc", Role.REGULATOR)]
    faucet = chain.dev_faucet()
    for party in parties:
        chain.fund(party.account.address, 10**19, faucet)
    as_pboc = chain.with_account(parties[2].account)
    deployment = as_pboc.deploy([p.as_member() for p in parties], threshold=2)
    union, wechat, pboc = parties

    started = time.perf_counter()
    rounds = 20
    for _ in range(rounds):
        key = pairwise_key(union.sm2_key, union.account.address, wechat.account.address,
                           wechat.sm2_key.public_key())
    row("pairwise key (ECDH + KDF)", f"{(time.perf_counter() - started) / rounds * 1e3:.1f} ms")
    records = halves(count)
    started = time.perf_counter()
    for record in records["unionpay"][:5_000]:
        record_tags(key, Side.PAYER, record)
    per = (time.perf_counter() - started) / min(count, 5_000)
    row("match + amount tag of one record", f"{per * 1e6:.1f} µs")

    with tempfile.TemporaryDirectory() as tmp:
        nodes, servers = {}, {}
        for party in (union, wechat):
            bound = chain.with_account(party.account).attach(deployment)
            nodes[party.name] = PlatformNode(
                NodeConfig(platform=party.name, store_path=Path(tmp) / f"{party.name}.db",
                           seal_interval=0.2), bound, party.sm2_key)
            nodes[party.name].start()
            servers[party.name] = PlatformServer(create_app(nodes[party.name]))
            servers[party.name].start()
        try:
            submitted = {}
            for party, side in ((union, Side.PAYER), (wechat, Side.PAYEE)):
                other = "wechatpay" if party is union else "unionpay"
                hint = CrossPlatform(other, side)
                with PlatformClient(servers[party.name].url, party.name, party.account.address,
                                    party.sm2_key, regulator_key=pboc.sm2_key.public_key(),
                                    counterparties=lambda n: registered_platform(as_pboc, n)
                                    ) as client:
                    started = time.perf_counter()
                    submitted[party.name] = client.submit_records(
                        records[party.name], kinds=lambda r: KINDS,
                        cross_platform=lambda r, hint=hint: hint)  # type: ignore[misc]
                    elapsed = time.perf_counter() - started
                row(f"submit with tags and escrows ({party.name})",
                    f"{count / elapsed:,.0f} records/s")
            deadline = time.monotonic() + 120
            while any((n.latest_checkpoint() is None
                       or n.latest_checkpoint().tree_size < count)  # type: ignore[union-attr]
                      for n in nodes.values()):
                if time.monotonic() > deadline:
                    raise SystemExit("not anchored in time")
                time.sleep(0.05)

            wechat_member = platform_member(as_pboc, "wechatpay")
            with NodeClient(servers["wechatpay"].url) as reader:
                log = VerifiedLog(as_pboc, wechat_member, nodes["wechatpay"].log_id, reader)
                started = time.perf_counter()
                log.sync()
                elapsed = time.perf_counter() - started
            row("read + verify a log over HTTP (summaries)", f"{count / elapsed:,.0f} leaves/s "
                f"({elapsed:.2f} s for {count:,})")

            window = Window(T0, T0 + timedelta(days=1))
            as_of = window.end + timedelta(hours=2)
            with NodeClient(servers["unionpay"].url) as own, \
                    NodeClient(servers["wechatpay"].url) as peer:
                started = time.perf_counter()
                report = reconcile(
                    as_pboc, own=as_pboc.member(union.account.address), own_keys=[union.sm2_key],
                    own_log=VerifiedLog(as_pboc, platform_member(as_pboc, "unionpay"),
                                        nodes["unionpay"].log_id, own),
                    counterparty=wechat_member,
                    counterparty_log=VerifiedLog(as_pboc, wechat_member,
                                                 nodes["wechatpay"].log_id, peer),
                    records=[(s.receipt.index, s.prepared.opening)
                             for s in submitted["unionpay"]],
                    window=window, grace=3600, as_of=as_of)
                document = report.to_json(matched_bundles=True)
                elapsed = time.perf_counter() - started
            counts = report.counts()
            row("reconcile in process (both logs, openings, bundles for all)",
                f"{elapsed:.2f} s, {count / elapsed:,.0f} records/s; {counts['matched']:,} "
                f"matched, {counts['amount_mismatch']} mismatched")
            assert len(document["items"]) == count

            with PlatformClient(servers["unionpay"].url, "unionpay", union.account.address,
                                union.sm2_key) as client:
                for label in ("first call", "counterparty log cached"):
                    started = time.perf_counter()
                    answer = client.reconcile("wechatpay", window,
                                              own_records(submitted["unionpay"]),
                                              counterparty_url=servers["wechatpay"].url,
                                              chain=as_pboc, as_of=as_of)
                    elapsed = time.perf_counter() - started
                    row(f"reconcile through the node ({label}, findings' bundles only)",
                        f"{elapsed:.2f} s, {count / elapsed:,.0f} records/s")
                assert answer["counts"] == counts
        finally:
            for server in servers.values():
                server.stop()
            for node in nodes.values():
                node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
