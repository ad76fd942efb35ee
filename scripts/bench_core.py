#!/usr/bin/env python3
"""Benchmark the ledger core and print a table (PROTOCOL §3–§5; issue "Ledger core").

Figures, not assertions: run it on a quiet machine and copy the table into
docs/performance.md with the machine it ran on. Single-threaded throughout ("one core").

    .venv/bin/python scripts/bench_core.py [--quick] [--only PART ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from gmssl import func as gm_func
from gmssl import sm3 as gm_sm3

from ledger_node.chain.adapter import LedgerChain, Role
from ledger_node.client.sdk import PlatformClient
from ledger_node.crypto import gmcrypto, hashes
from ledger_node.demo.run import new_party
from ledger_node.demo.scenario import ScenarioSpec, generate_scenario
from ledger_node.log import merkle
from ledger_node.log.checkpoint import Checkpoint, log_id_for, sign_checkpoint
from ledger_node.protocol.commitment import new_salt, record_commitment
from ledger_node.protocol.escrow import PAYLOAD_SIZE, EscrowSealer
from ledger_node.protocol.pairwise import CrossPlatform, Side, pairwise_key
from ledger_node.protocol.record import Channel, PaymentRecord


def rate(operation: Callable[[], object], *, seconds: float = 1.0) -> float:
    """Return operations per second of ``operation``, run for about ``seconds``."""
    count, batch = 0, 1
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(batch):
            operation()
        count += batch
        batch = min(batch * 2, 4096)
    return count / elapsed


def row(name: str, value: str, goal: str = "", verdict: str = "") -> None:
    print(f"| {name} | {value} | {goal} | {verdict} |", flush=True)


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def bench_hashes(seconds: float) -> None:
    data = secrets.token_bytes(64)
    ours = rate(lambda: hashes.sm3(data), seconds=seconds)
    # gmssl pads the list it is given in place: hand it a fresh one each call.
    theirs = rate(lambda: gm_sm3.sm3_hash(gm_func.bytes_to_list(data)), seconds=seconds)
    row("SM3, 64-byte messages, `cryptography` (OpenSSL)", f"{ours:,.0f} /s")
    row("SM3, 64-byte messages, `gmssl` (pure Python)", f"{theirs:,.0f} /s")
    row("SM3 speed-up of OpenSSL over gmssl", f"{ours / theirs:,.0f}x")


def sample_record() -> PaymentRecord:
    return PaymentRecord(
        platform="unionpay",
        local_tx_id="UP20261127-000001",
        payer_identity="110101199003077777",
        payer_account="tok_payer_1",
        payee_identity="91110000MA01ABCD2X",
        payee_account="tok_merchant_9",
        amount_fen=12_345,
        currency="CNY",
        time=datetime(2026, 11, 27, 3, 0, tzinfo=UTC),
        channel=Channel.QR,
        cross_border=False,
        clearing_ref="CUP-REF-0001",
    )


def bench_commitments(seconds: float) -> None:
    record = sample_record()
    per_second = rate(lambda: record_commitment(record, new_salt()), seconds=seconds)
    row("record commitments (fresh salt each)", f"{per_second:,.0f} /s", ">= 25,000 /s",
        met(per_second >= 25_000))


def bench_preparation(payments: int, rounds: int) -> None:
    """SDK preparation on one core: commitment, escrow sealed for the regulator, both match
    tags and the leaf, per record, as ``PlatformClient.prepare_records`` does it.

    The records are the demo scenario's (its people and merchants recur, as real ones do);
    every record gets a clearing reference and is tagged, so each pays for all four parts.
    CPU time (``time.process_time``), best of ``rounds``: the machine is shared.
    """
    scenario = generate_scenario(ScenarioSpec(payments=payments))
    records = [record if record.clearing_ref else replace(record, clearing_ref=f"CUP-{i:010d}")
               for i, record in enumerate(scenario.records["unionpay"])]
    kinds = [scenario.kinds(record) for record in records]
    own, peer, regulator = (gmcrypto.generate_private_key() for _ in range(3))
    own_address, peer_address = "0x" + "11" * 20, "0x" + "22" * 20
    client = PlatformClient("http://127.0.0.1:9", "unionpay", own_address, own)
    key = pairwise_key(own, own_address, peer_address, peer.public_key())
    cross = CrossPlatform("wechatpay", Side.PAYER)
    best = 0.0
    for _ in range(rounds):
        started = time.process_time()
        sealer = EscrowSealer(regulator.public_key())
        for record, kind in zip(records, kinds, strict=True):
            client.prepare(record, sealer=sealer, kinds=kind, cross=cross, pairwise=key)
        best = max(best, len(records) / (time.process_time() - started))
    row(f"SDK preparation: commit + escrow + tags + leaf, {len(records):,} scenario records "
        "(CPU)", f"{best:,.0f} /s ({1e6 / best:.1f} µs)", ">= 40,000 /s", met(best >= 40_000))


def bench_merkle(leaf_count: int, seconds: float) -> None:
    leaves = [secrets.token_bytes(32) for _ in range(leaf_count)]
    start = time.perf_counter()
    log = merkle.MerkleLog.from_leaves(merkle.SM3_HASHER, leaves)
    root = log.root()
    build = time.perf_counter() - start
    goal = "<= 5 s" if leaf_count == 1_000_000 else "(goal is for 1,000,000 leaves)"
    row(f"root of a {leaf_count:,}-leaf SM3 tree (bulk build)", f"{build:.2f} s", goal,
        met(build <= 5) if leaf_count == 1_000_000 else "")

    appender = merkle.MerkleLog(merkle.SM3_HASHER)
    start = time.perf_counter()
    for leaf in leaves[:100_000]:
        appender.append(leaf)
    append_rate = 100_000 / (time.perf_counter() - start)
    row("incremental appends (SM3)", f"{append_rate:,.0f} /s")

    indices = [secrets.randbelow(leaf_count) for _ in range(2_000)]
    start = time.perf_counter()
    proofs = [log.inclusion_proof(i) for i in indices]
    proof_rate = len(indices) / (time.perf_counter() - start)
    row(f"inclusion proofs generated in the {leaf_count:,}-leaf log", f"{proof_rate:,.0f} /s")

    leaf_hashes = [merkle.SM3_HASHER.hash_leaf(leaves[i]) for i in indices]
    cursor = 0

    def verify_one() -> None:
        nonlocal cursor
        proof, leaf_hash = proofs[cursor], leaf_hashes[cursor]
        merkle.verify_inclusion(
            merkle.SM3_HASHER, proof.index, proof.size, leaf_hash, proof.path, root
        )
        cursor = (cursor + 1) % len(proofs)

    verify_rate = rate(verify_one, seconds=seconds)
    row(f"inclusion-proof verifications ({leaf_count:,}-leaf tree)", f"{verify_rate:,.0f} /s",
        ">= 20,000 /s", met(verify_rate >= 20_000))


def bench_sm2(seconds: float) -> None:
    key = gmcrypto.generate_private_key()
    public = key.public_key()
    message = secrets.token_bytes(120)
    signature = gmcrypto.sign(key, message)
    signs = rate(lambda: gmcrypto.sign(key, message), seconds=seconds)
    verifies = rate(lambda: gmcrypto.verify(public, message, signature), seconds=seconds)
    backend = gmcrypto.crypto_backends()["sm2"]  # scripts/bench_sm2.py compares the two
    row(f"SM2 sign (SM3, default user ID; {backend})", f"{signs:,.0f} /s")
    row(f"SM2 verify ({backend})", f"{verifies:,.0f} /s")


def bench_chain(direct_commits: int, checkpoints: int, leaves_per_checkpoint: int) -> None:
    """Direct commit transactions against batched checkpoints on the embedded chain."""
    chain = LedgerChain.embedded()
    platform, regulator = new_party("unionpay", Role.PLATFORM), new_party("pboc", Role.REGULATOR)
    for party in (platform, regulator):
        chain.fund(party.account.address, 10**20)
    chain = chain.with_account(platform.account)
    chain.deploy([platform.as_member(), regulator.as_member()], threshold=1)

    commitments = [secrets.token_bytes(32) for _ in range(direct_commits)]
    start = time.perf_counter()
    gas = [chain.commit(c).gas_used for c in commitments]
    direct_rate = direct_commits / (time.perf_counter() - start)
    row("direct `commit`: one transaction per record", f"{direct_rate:,.1f} tx/s",
        "", f"gas {sum(gas) // len(gas):,}/record")

    log = merkle.MerkleLog(merkle.SM3_HASHER)
    log_id = log_id_for("unionpay", 0)
    anchor_gas = []
    start = time.perf_counter()
    for _ in range(checkpoints):
        for _ in range(leaves_per_checkpoint):
            log.append(secrets.token_bytes(32))
        head = log.head()
        signed = sign_checkpoint(
            platform.sm2_key, Checkpoint("unionpay", log_id, head.size, head.root, int(time.time()))
        )
        anchor_gas.append(
            chain.anchor_checkpoint(log_id, head.size, head.root, signed.checkpoint.timestamp,
                                    signed.signature).gas_used
        )
    anchored_rate = checkpoints * leaves_per_checkpoint / (time.perf_counter() - start)
    row(f"batched: {leaves_per_checkpoint:,}-leaf checkpoints (append, sign, anchor)",
        f"{anchored_rate:,.0f} leaves/s", "",
        f"gas {sum(anchor_gas) // len(anchor_gas):,}/checkpoint")
    row("batched over direct", f"{anchored_rate / direct_rate:,.0f}x")


def openssl_us_per_call(algorithm: str, size: int) -> float | None:
    """µs per call of ``openssl speed -evp ALGORITHM`` on ``size``-byte inputs (a C loop
    over one EVP operation each: init, update, final), or ``None`` without the binary."""
    binary = shutil.which("openssl")
    if binary is None:
        return None
    answer = subprocess.run([binary, "speed", "-seconds", "1", "-bytes", str(size), "-evp",
                             algorithm], capture_output=True, text=True, check=False)
    lines = [line for line in answer.stdout.splitlines() if line.strip()]
    if answer.returncode != 0 or not lines:
        return None
    kilobytes_per_second = float(lines[-1].split()[-1].rstrip("k"))
    return size / (kilobytes_per_second * 1000) * 1e6


def sqlite_insert_us(*, unique: bool, prefill: int, batches: int) -> float:
    """CPU µs per row of SQLite's bulk insert (``executemany``, one transaction of 10,000
    rows, WAL, ``synchronous=FULL``) into the platform store's leaf table, with or without
    its UNIQUE index on the leaf hash, after ``prefill`` rows: the store's native floor."""
    size = 10_000
    with tempfile.TemporaryDirectory() as folder:
        db = sqlite3.connect(Path(folder) / "floor.db", isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA cache_size = -65536")
        db.execute("CREATE TABLE leaves (idx INTEGER PRIMARY KEY, leaf_hash BLOB NOT NULL"
                   f"{' UNIQUE' if unique else ''}, commitment BLOB NOT NULL, escrow BLOB NOT "
                   "NULL, match_tag BLOB, amount_tag BLOB, batch_id INTEGER NOT NULL)")
        insert = "INSERT INTO leaves VALUES (?, ?, ?, ?, ?, ?, ?)"
        token = secrets.token_bytes

        def rows(first: int) -> list[tuple[object, ...]]:
            return [(first + i, token(32), token(32), token(293), None, None, 1)
                    for i in range(size)]

        for first in range(0, prefill, size):
            db.execute("BEGIN")
            db.executemany(insert, rows(first))
            db.execute("COMMIT")
        cpu = 0.0
        for n in range(batches):
            batch = rows(prefill + n * size)
            started = time.process_time()
            db.execute("BEGIN")
            db.executemany(insert, batch)
            db.execute("COMMIT")
            cpu += time.process_time() - started
        db.close()
    return cpu / (batches * size) * 1e6


def cpu_us_per_call(operation: Callable[[], object], calls: int, repeats: int = 3) -> float:
    """CPU µs per call of ``operation``, best of ``repeats`` runs of ``calls`` calls."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(calls):
            operation()
        best = min(best, time.process_time() - started)
    return best / calls * 1e6


def bench_floors(quick: bool) -> None:
    """The native floor of each per-record cost on this machine: OpenSSL's SM3 and SM4 per
    call (``openssl speed``, the same libcrypto), the same SM3 through hashlib from Python,
    and SQLite's bulk insert. The cost-per-record table of docs/performance.md sets these
    beside what each stage costs now."""
    state = hashes.sm3_state(b"")
    for what, size in (("a field or salt hash (one block)", 48),
                       ("a Merkle node (65 B)", 65),
                       ("leaf data without / with tags (94 / 158 B)", 94),
                       ("", 158),
                       ("an escrow (293 B)", 293)):
        floor = openssl_us_per_call("sm3", size)
        data = secrets.token_bytes(size)

        def python_sm3(data: bytes = data) -> bytes:
            context = state.copy()
            context.update(data)
            return context.digest()

        ours = cpu_us_per_call(python_sm3, 50_000 if quick else 200_000)
        label = f"SM3 of {size} B" + (f": {what}" if what else "")
        row(label, f"OpenSSL C loop {floor:.2f} µs; hashlib from Python {ours:.2f} µs"
            if floor is not None else f"hashlib from Python {ours:.2f} µs (no openssl binary)")
    for size in (PAYLOAD_SIZE,):
        floor = openssl_us_per_call("sm4-ctr", size)
        row(f"SM4-CTR over a {size}-byte escrow payload (GCM's cipher part)",
            f"OpenSSL C loop {floor:.2f} µs" if floor is not None else "no openssl binary")
    prefill = 100_000 if quick else 500_000
    for unique in (True, False):
        cost = sqlite_insert_us(unique=unique, prefill=prefill, batches=5 if quick else 10)
        row(f"SQLite bulk insert after {prefill:,} rows, "
            f"{'with' if unique else 'without'} the UNIQUE leaf-hash index (CPU)",
            f"{cost:.2f} µs per row")


PARTS = ("hashes", "commitments", "preparation", "floors", "merkle", "sm2", "chain")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 leaves and short runs")
    parser.add_argument("--only", choices=PARTS, action="append",
                        help="run only this part (repeatable); default: all")
    args = parser.parse_args(argv)
    parts = set(args.only or PARTS)
    seconds = 0.3 if args.quick else 2.0
    leaf_count = 100_000 if args.quick else 1_000_000

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {platform.platform()}")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print("| measure | figure | goal | verdict |")
    print("|---|---|---|---|")
    if "hashes" in parts:
        bench_hashes(seconds)
    if "commitments" in parts:
        bench_commitments(seconds)
    if "preparation" in parts:
        bench_preparation(payments=20_000, rounds=2 if args.quick else 5)
    if "floors" in parts:
        bench_floors(args.quick)
    if "merkle" in parts:
        bench_merkle(leaf_count, seconds)
    if "sm2" in parts:
        bench_sm2(seconds)
    if "chain" in parts:
        bench_chain(direct_commits=50 if args.quick else 300,
                    checkpoints=3 if args.quick else 10, leaves_per_checkpoint=10_000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
