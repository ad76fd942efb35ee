"""The main job: the ledger-core story on a chain, told step by step.

It deploys ``JointLedger`` on the embedded chain (or ``--rpc-url``), registers two platforms
and a regulator with their own chain accounts and SM2 keys, admits an auditor by a 2-of-3
vote, commits payment records, anchors one SM2-signed checkpoint of the log in a single
transaction, and verifies an inclusion proof, the checkpoint signature and a single-field
disclosure against what it reads back from the chain. Every artefact is written to ``out``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger_node import gmcrypto, merkle
from ledger_node.chain import LedgerChain, Member, Role
from ledger_node.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    log_id_for,
    sign_checkpoint,
    verify_checkpoint_signature,
)
from ledger_node.commitment import (
    disclose_field,
    new_salt,
    record_commitment,
    verify_field_disclosure,
)
from ledger_node.errors import LedgerError
from ledger_node.keyfiles import MemberKeys, write_member_keys
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
    commitments = [record_commitment(r, s) for r, s in zip(records, salts, strict=True)]
    log = merkle.MerkleLog(merkle.SM3_HASHER)
    for commitment in commitments:
        log.append(commitment)
    head = log.head()
    steps.done(t, f"tree size {head.size}, root {head.root.hex()[:16]}…")

    t = steps.start("seal: sign the checkpoint with unionpay's SM2 key, anchor it in one tx")
    log_id = log_id_for("unionpay", 0)
    checkpoint = Checkpoint("unionpay", log_id, head.size, head.root, int(time.time()))
    signed = sign_checkpoint(unionpay.sm2_key, checkpoint)
    anchored = as_unionpay.anchor_checkpoint(
        log_id, checkpoint.tree_size, checkpoint.root, checkpoint.timestamp, signed.signature
    )
    _write_json(out / "checkpoint.json",
                checkpoint.to_json() | {"signature": signed.signature.hex(),
                                        "tx": anchored.tx_hash.hex(),
                                        "block": anchored.block_number})
    steps.done(t, f"tx {anchored.tx_hash.hex()[:18]}… block {anchored.block_number}, "
               f"gas {anchored.gas_used:,} for {head.size} leaves")

    checks: dict[str, bool] = {}
    t = steps.start("verify against the chain (an auditor's view: nothing from unionpay's store)")
    reader = (LedgerChain.from_rpc(rpc_url) if rpc_url else LedgerChain(chain.w3)).attach(
        deployment
    )
    on_chain = reader.checkpoint_at(log_id, head.size)
    history = reader.checkpoints(log_id)
    registered = reader.member(unionpay.account.address)
    platform_key = gmcrypto.SM2PublicKey.from_raw(registered.public_key)
    index = rng.randrange(head.size)
    proof = log.inclusion_proof(index, head.size)
    leaf_hash = merkle.SM3_HASHER.hash_leaf(commitments[index])

    checks["inclusion proof verifies against the root read from the chain"] = _holds(
        lambda: merkle.verify_inclusion(merkle.SM3_HASHER, index, head.size, leaf_hash,
                                        proof.path, on_chain.root))
    on_chain_checkpoint = Checkpoint("unionpay", log_id, on_chain.tree_size, on_chain.root,
                                     on_chain.timestamp)
    checks["checkpoint signature verifies with the SM2 key registered on chain"] = _holds(
        lambda: verify_checkpoint_signature(
            platform_key, SignedCheckpoint(on_chain_checkpoint, history[-1].signature or b"")))
    tampered = (proof.path[0][:-1] + bytes([proof.path[0][-1] ^ 1]),) + proof.path[1:]
    checks["a proof with one flipped bit is rejected"] = not _holds(
        lambda: merkle.verify_inclusion(merkle.SM3_HASHER, index, head.size, leaf_hash,
                                        tampered, on_chain.root))
    disclosure = disclose_field(records[index], salts[index], "amount_fen")
    checks["a single-field disclosure (amount) verifies against the commitment"] = _holds(
        lambda: verify_field_disclosure(commitments[index], disclosure))
    _write_json(out / "inclusion-proof.json", {
        "hash": "sm3",
        "log_id": log_id.hex(),
        "leaf": commitments[index].hex(),
        "index": index,
        "tree_size": head.size,
        "path": [p.hex() for p in proof.path],
        "checkpoint": checkpoint.to_json() | {"signature": signed.signature.hex()},
        "chain_id": deployment.chain_id,
        "contract": deployment.address,
        "anchoring_tx": anchored.tx_hash.hex(),
    })
    _write_json(out / "disclosure.json", disclosure.to_json())
    steps.done(t, f"leaf {index} of {head.size}; root on chain {on_chain.root.hex()[:16]}…")

    for name, passed in checks.items():
        echo(f"    {'PASS' if passed else 'FAIL'}  {name}")
    _write_json(out / "report.json", {
        "chain_id": deployment.chain_id,
        "contract": deployment.address,
        "records": record_count,
        "checkpoint_gas": anchored.gas_used,
        "checks": checks,
    })
    failed = [name for name, passed in checks.items() if not passed]
    echo(f"\n{len(checks) - len(failed)} of {len(checks)} checks passed; artefacts in {out}/")
    return 1 if failed else 0


def _holds(check: Callable[[], None]) -> bool:
    """Whether ``check`` returns without raising a ledger error."""
    try:
        check()
    except LedgerError:
        return False
    return True


def _write_keys(directory: Path, party: Party) -> None:
    """Write a party's key files (SM2 PEM pair and chain account key; private ones 0600)."""
    write_member_keys(directory, party.name, MemberKeys(party.sm2_key, party.account),
                      overwrite=True)
