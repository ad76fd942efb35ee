"""The main job: the ledger-core story on a chain, told step by step.

It deploys ``JointLedger`` on the embedded chain (or ``--rpc-url``), registers two platforms
and a regulator with their own chain accounts and SM2 keys, admits an auditor by a 2-of-3
vote, commits payment records, anchors one SM2-signed checkpoint of the log in a single
transaction, and verifies a proof bundle (inclusion, checkpoint signature, anchoring) and a
single-field disclosure against what it reads back from the chain. Every artefact is written
to ``out``; ``jointledger verify out/bundle.json --rpc-url URL`` checks the bundle again.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger_node import gmcrypto, merkle
from ledger_node.bundle import ChainAnchor, build_bundle, verify_bundle
from ledger_node.chain import LedgerChain, Member, Role
from ledger_node.checkpoint import Checkpoint, log_id_for, sign_checkpoint
from ledger_node.commitment import disclose_field, new_salt, record_commitment
from ledger_node.keyfiles import MemberKeys, write_member_keys
from ledger_node.leaf import Leaf
from ledger_node.record import Channel, PaymentRecord

Echo = Callable[[str], None]
_ETHER = 10**18


@dataclass(frozen=True)
class Party:
    """One consortium member as the demo plays it: chain account and SM2 key, both its own."""

    name: str
    role: Role
    account: LocalAccount
    sm2_key: gmcrypto.SM2PrivateKey

    def as_member(self) -> Member:
        """The membership entry registered on chain for this party."""
        return Member(self.account.address, self.role, self.name, self.sm2_key.public_key().raw)


def new_party(name: str, role: Role) -> Party:
    """A party with a fresh chain account and a fresh SM2 key pair."""
    return Party(name, role, Account.create(), gmcrypto.generate_private_key())


def sample_records(platform: str, count: int, rng: random.Random) -> list[PaymentRecord]:
    """``count`` plausible synthetic payments made on ``platform`` (no real people)."""
    start = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    return [
        PaymentRecord(
            platform=platform,
            local_tx_id=f"{platform[:2].upper()}-{i:08d}",
            payer_identity=f"person-{rng.randrange(10**6):06d}",
            payer_account=f"acct-{rng.randrange(10**9):09d}",
            payee_identity=f"merchant-{rng.randrange(10**4):04d}",
            payee_account=f"acct-{rng.randrange(10**9):09d}",
            amount_fen=rng.randrange(100, 5_000_000),
            currency="CNY",
            time=start + timedelta(seconds=rng.randrange(8 * 3600)),
            channel=rng.choice([Channel.QR, Channel.APP, Channel.POS]),
            cross_border=False,
        )
        for i in range(count)
    ]


class _Steps:
    """Numbered, timed progress lines."""

    def __init__(self, echo: Echo) -> None:
        self._echo = echo
        self._number = 0

    def start(self, text: str) -> float:
        self._number += 1
        self._echo(f"[{self._number}] {text}")
        return time.perf_counter()

    def done(self, started: float, text: str) -> None:
        self._echo(f"    {text} ({(time.perf_counter() - started) * 1000:.0f} ms)")


def _write_json(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def run_core_demo(
    out: Path,
    *,
    record_count: int = 8,
    rpc_url: str | None = None,
    seed: int | None = None,
    echo: Echo = print,
) -> int:
    """Run the story, writing artefacts under ``out``; return 0 if every check passed, else 1.

    Raises :class:`~ledger_node.errors.LedgerError` subclasses for failures that stop the
    story (an unreachable chain, a rejected transaction).
    """
    if record_count < 1:
        raise ValueError("record_count must be at least 1")
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "keys").mkdir(exist_ok=True)
    steps = _Steps(echo)

    t = steps.start("start the chain" + (f" at {rpc_url}" if rpc_url else " (embedded eth-tester)"))
    chain = LedgerChain.from_rpc(rpc_url) if rpc_url else LedgerChain.embedded()
    steps.done(t, f"chain id {chain.chain_id}, block {chain.block_number()}")

    t = steps.start("create members: each has its own chain account and SM2 key")
    unionpay = new_party("unionpay", Role.PLATFORM)
    wechatpay = new_party("wechatpay", Role.PLATFORM)
    pboc = new_party("pboc", Role.REGULATOR)
    auditor = new_party("auditor", Role.AUDITOR)
    parties = (unionpay, wechatpay, pboc, auditor)
    faucet = chain.dev_faucet()
    for party in parties:
        chain.fund(party.account.address, 10 * _ETHER, faucet)
        _write_keys(out / "keys", party)
    steps.done(t, ", ".join(f"{p.name}={p.account.address[:10]}…" for p in parties))

    t = steps.start("deploy JointLedger: unionpay, wechatpay (platforms), pboc (regulator), 2-of-3")
    as_pboc = chain.with_account(pboc.account)
    deployment = as_pboc.deploy([unionpay.as_member(), wechatpay.as_member(),
                                 pboc.as_member()], threshold=2)
    deployment.save(out / "deployment.json")
    steps.done(t, f"contract {deployment.address} in block {deployment.deploy_block}")

    t = steps.start("governance: unionpay proposes the auditor, wechatpay approves (2 of 3)")
    as_unionpay = as_pboc.with_account(unionpay.account)
    proposal_id, _ = as_unionpay.propose_add_member(
        auditor.account.address, Role.AUDITOR, auditor.name, auditor.sm2_key.public_key().raw
    )
    pending = as_unionpay.proposal(proposal_id)
    approval = as_pboc.with_account(wechatpay.account).approve(proposal_id)
    admitted = as_pboc.member(auditor.account.address)
    steps.done(t, f"proposal {proposal_id}: {pending.approvals} approval → not executed; "
               f"after wechatpay: {approval.event_names()}; auditor active={admitted.active}")

    t = steps.start(f"unionpay commits {record_count} payment records (salted SM3) into its log")
    records = sample_records("unionpay", record_count, rng)
    salts = [new_salt() for _ in records]
    leaves = [Leaf(record_commitment(r, s)) for r, s in zip(records, salts, strict=True)]
    log = merkle.MerkleLog(merkle.SM3_HASHER)
    for leaf in leaves:
        log.append(leaf.leaf_data())
    head = log.head()
    steps.done(t, f"tree size {head.size}, root {head.root.hex()[:16]}…")

    t = steps.start("seal: sign the checkpoint with unionpay's SM2 key, anchor it in one tx")
    log_id = log_id_for("unionpay", 0)
    checkpoint = Checkpoint("unionpay", log_id, head.size, head.root, int(time.time()))
    signed = sign_checkpoint(unionpay.sm2_key, checkpoint)
    anchored = as_unionpay.anchor_checkpoint(
        log_id, checkpoint.tree_size, checkpoint.root, checkpoint.timestamp, signed.signature
    )
    steps.done(t, f"tx {anchored.tx_hash.hex()[:18]}… block {anchored.block_number}, "
               f"gas {anchored.gas_used:,} for {head.size} leaves")

    t = steps.start("verify a proof bundle against the chain (an auditor's view)")
    index = rng.randrange(head.size)
    bundle = build_bundle(leaves[index], index, signed,
                          ChainAnchor.of(deployment, anchored.tx_hash, anchored.block_number),
                          log=log)
    reader = (LedgerChain.from_rpc(rpc_url) if rpc_url else LedgerChain(chain.w3)).attach(
        deployment
    )
    disclosure = disclose_field(records[index], salts[index], "amount_fen")
    verdict = verify_bundle(bundle, chain=reader, disclosure=disclosure)
    key_only = verify_bundle(bundle, checkpoint_key=unionpay.sm2_key.public_key())
    tampered_path = (bundle.path[0][:-1] + bytes([bundle.path[0][-1] ^ 1]),) + bundle.path[1:]
    tampered = verify_bundle(replace(bundle, path=tampered_path), chain=reader)
    checks = {
        "bundle verifies against the root, key and transaction read from the chain":
            verdict.valid and verdict.anchoring_checked,
        "a single-field disclosure (amount) verifies against the leaf's commitment":
            verdict.valid and any(c.name == "disclosure" and c.passed for c in verdict.checks),
        "key-only check passes and says the anchoring was not checked":
            key_only.valid and not key_only.anchoring_checked,
        "a bundle with one flipped path bit is rejected": not tampered.valid,
    }
    _write_json(out / "bundle.json", bundle.to_json())
    _write_json(out / "disclosure.json", disclosure.to_json())
    _write_json(out / "verdict.json", verdict.to_json())
    steps.done(t, f"leaf {index} of {head.size}: {verdict.summary}")

    for name, passed in checks.items():
        echo(f"    {'PASS' if passed else 'FAIL'}  {name}")
    _write_json(out / "report.json", {
        "chain_id": deployment.chain_id,
        "contract": deployment.address,
        "records": record_count,
        "checkpoint_gas": anchored.gas_used,
        "bundle": "bundle.json",
        "checks": checks,
    })
    failed = [name for name, passed in checks.items() if not passed]
    echo(f"\n{len(checks) - len(failed)} of {len(checks)} checks passed; artefacts in {out}/")
    return 1 if failed else 0


def _write_keys(directory: Path, party: Party) -> None:
    """Write a party's key files (SM2 PEM pair and chain account key; private ones 0600)."""
    write_member_keys(directory, party.name, MemberKeys(party.sm2_key, party.account),
                      overwrite=True)
