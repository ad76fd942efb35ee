"""Proof bundles: the strict JSON form and the verifier, on the embedded chain and on anvil.

A consortium (two platforms and a regulator, each with its own chain account and SM2 key) is
deployed once per module; unionpay anchors checkpoints of a Merkle log of real leaves
(commitments of synthetic payment records) at sizes 3, 8 and 12, wechatpay one of its own.
Every mutation of a good bundle is asserted to fail at the check that should catch it, and
every JSON parsing error by the field it names.
"""

from __future__ import annotations

import copy
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3

from ledger_node.chain.adapter import Deployment, LedgerChain, Role
from ledger_node.crypto.gmcrypto import SM2PublicKey
from ledger_node.demo.run import Party, new_party, sample_records
from ledger_node.errors import ChainError, InvalidBundle, LedgerError
from ledger_node.log import merkle
from ledger_node.log.checkpoint import Checkpoint, SignedCheckpoint, log_id_for, sign_checkpoint
from ledger_node.log.leaf import Leaf, LeafSummary
from ledger_node.protocol.bundle import (
    BUNDLE_FORMAT,
    CHECK_NAMES,
    ChainAnchor,
    ProofBundle,
    Verdict,
    build_bundle,
    verify_bundle,
)
from ledger_node.protocol.checks import Check, CheckStatus
from ledger_node.protocol.commitment import (
    RecordOpening,
    disclose_field,
    new_salt,
    record_commitment,
)
from ledger_node.protocol.record import PaymentRecord

ETHER = 10**18
UNIONPAY_SIZES = (3, 8, 12)
LOG_SIZE = 12
UNIONPAY_LOG = log_id_for("unionpay", 0)
WECHAT_LOG = log_id_for("wechatpay", 0)


# --------------------------------------------------------------------------------------
# The world: a consortium, a log, anchored checkpoints
# --------------------------------------------------------------------------------------


@dataclass
class World:
    """Everything a test needs to build bundles and verify them against one deployment."""

    chain: LedgerChain  # a reader: no account, not bound (the verifier attaches itself)
    deployment: Deployment
    unionpay: Party
    wechatpay: Party
    regulator: Party
    records: list[PaymentRecord]
    salts: list[bytes]
    leaves: list[Leaf]
    log: merkle.MerkleLog
    checkpoints: dict[int, SignedCheckpoint]  # unionpay's, by anchored size
    anchors: dict[int, ChainAnchor]
    wechat_checkpoint: SignedCheckpoint  # wechatpay's log at size LOG_SIZE
    wechat_anchor: ChainAnchor

    def bundle(self, index: int, size: int = LOG_SIZE) -> ProofBundle:
        """The honest bundle of unionpay's leaf ``index`` at anchored size ``size``."""
        return build_bundle(self.leaves[index], index, self.checkpoints[size],
                            self.anchors[size], log=self.log)


def make_leaves(platform: str, count: int, rng: random.Random) -> tuple[
        list[PaymentRecord], list[bytes], list[Leaf]]:
    """``count`` records, their salts and leaves (every third with match tags)."""
    records = sample_records(platform, count, rng)
    salts = [new_salt() for _ in records]
    leaves = [
        Leaf(record_commitment(r, s), escrow=os.urandom(48),
             match_tag=os.urandom(32) if i % 3 == 0 else None,
             amount_tag=os.urandom(32) if i % 3 == 0 else None)
        for i, (r, s) in enumerate(zip(records, salts, strict=True))
    ]
    return records, salts, leaves


def anchor(chain: LedgerChain, party: Party, log_id: bytes, log: merkle.MerkleLog, size: int,
           deployment: Deployment, timestamp: int | None = None,
           ) -> tuple[SignedCheckpoint, ChainAnchor]:
    """Sign ``party``'s checkpoint of ``log`` at ``size`` and anchor it as ``party``."""
    checkpoint = Checkpoint(party.name, log_id, size, log.root(size),
                            int(time.time()) if timestamp is None else timestamp)
    signed = sign_checkpoint(party.sm2_key, checkpoint)
    outcome = chain.with_account(party.account).anchor_checkpoint(
        log_id, size, checkpoint.root, checkpoint.timestamp, signed.signature)
    return signed, ChainAnchor.of(deployment, outcome.tx_hash, outcome.block_number)


def deploy_consortium(chain: LedgerChain) -> tuple[LedgerChain, Deployment, Party, Party, Party]:
    """Fund and register unionpay, wechatpay (platforms) and pboc (regulator), threshold 1."""
    unionpay = new_party("unionpay", Role.PLATFORM)
    wechatpay = new_party("wechatpay", Role.PLATFORM)
    regulator = new_party("pboc", Role.REGULATOR)
    faucet = chain.dev_faucet()
    for party in (unionpay, wechatpay, regulator):
        chain.fund(party.account.address, 10 * ETHER, faucet)
    as_regulator = chain.with_account(regulator.account)
    deployment = as_regulator.deploy(
        [unionpay.as_member(), wechatpay.as_member(), regulator.as_member()], threshold=1)
    return as_regulator, deployment, unionpay, wechatpay, regulator


def build_world(base: LedgerChain) -> World:
    """Deploy, fill unionpay's log and anchor it at UNIONPAY_SIZES; wechatpay at LOG_SIZE."""
    rng = random.Random(20261127)
    bound, deployment, unionpay, wechatpay, regulator = deploy_consortium(base)
    records, salts, leaves = make_leaves("unionpay", LOG_SIZE, rng)
    log = merkle.MerkleLog(merkle.SM3_HASHER)
    log.extend(leaf.leaf_data() for leaf in leaves)
    checkpoints, anchors = {}, {}
    for size in UNIONPAY_SIZES:
        checkpoints[size], anchors[size] = anchor(bound, unionpay, UNIONPAY_LOG, log, size,
                                                  deployment)
    _, _, wechat_leaves = make_leaves("wechatpay", LOG_SIZE, rng)
    wechat_log = merkle.MerkleLog(merkle.SM3_HASHER)
    wechat_log.extend(leaf.leaf_data() for leaf in wechat_leaves)
    wechat_checkpoint, wechat_anchor = anchor(bound, wechatpay, WECHAT_LOG, wechat_log,
                                              LOG_SIZE, deployment)
    return World(LedgerChain(base.w3), deployment, unionpay, wechatpay, regulator, records,
                 salts, leaves, log, checkpoints, anchors, wechat_checkpoint, wechat_anchor)


@pytest.fixture(scope="module")
def world(eth_tester_chain: LedgerChain) -> World:
    """The module's consortium and anchored log on the session's eth-tester chain."""
    return build_world(eth_tester_chain)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def flip(data: bytes, byte: int = -1, bit: int = 0) -> bytes:
    """``data`` with one bit flipped."""
    out = bytearray(data)
    out[byte] ^= 1 << bit
    return bytes(out)


def with_checkpoint(bundle: ProofBundle, signer: Party | None = None,
                    **changes: Any) -> ProofBundle:
    """``bundle`` with its checkpoint changed (and re-signed by ``signer`` if given)."""
    changed = replace(bundle.checkpoint.checkpoint, **changes)
    signed = (sign_checkpoint(signer.sm2_key, changed) if signer is not None
              else SignedCheckpoint(changed, bundle.checkpoint.signature))
    tree_size = changes.get("tree_size", bundle.tree_size)
    return replace(bundle, checkpoint=signed, tree_size=tree_size)


def first_failure(verdict: Verdict) -> Check:
    """The first check that failed (there must be one)."""
    failed = [c for c in verdict.checks if c.status is CheckStatus.FAILED]
    assert failed, f"expected a failed check, got {verdict.to_json()}"
    return failed[0]


def assert_fails_at(verdict: Verdict, name: str, *words: str) -> None:
    """The verdict is invalid, ``name`` is its first failed check, every earlier one passed."""
    assert not verdict.valid
    assert verdict.root is None
    failure = first_failure(verdict)
    assert failure.name == name, verdict.to_json()
    for word in words:
        assert word in failure.detail, failure.detail
    for check in verdict.checks[: verdict.checks.index(failure)]:
        assert check.status in (CheckStatus.PASSED, CheckStatus.NOT_CHECKED), check


def assert_all_passed(verdict: Verdict) -> None:
    assert verdict.valid, verdict.to_json()
    assert all(c.status is CheckStatus.PASSED for c in verdict.checks), verdict.to_json()


# --------------------------------------------------------------------------------------
# Good bundles
# --------------------------------------------------------------------------------------


def test_a_good_bundle_verifies_against_the_chain(world: World) -> None:
    bundle = world.bundle(5)
    verdict = verify_bundle(bundle, chain=world.chain)
    assert_all_passed(verdict)
    assert [c.name for c in verdict.checks] == list(CHECK_NAMES)
    assert verdict.anchoring_checked and verdict.mode == "chain"
    on_chain = world.chain.attach(world.deployment).checkpoint_at(UNIONPAY_LOG, LOG_SIZE)
    assert verdict.root == on_chain.root
    assert verdict.reasons == [] and verdict.summary.startswith("VALID: ")
    document = verdict.to_json()
    assert document["valid"] is True and document["root"] == on_chain.root.hex()
    assert [c["status"] for c in document["checks"]] == ["passed"] * len(CHECK_NAMES)


def test_an_unbound_chain_checks_the_contract_the_bundle_names(world: World) -> None:
    verdict = verify_bundle(world.bundle(0), chain=world.chain)
    assert verdict.valid and not verdict.deployment_pinned
    assert "NOT pinned" in verdict.check("deployment").detail
    assert "not pinned by the verifier" in verdict.summary


def test_a_bound_chain_or_a_deployment_pins_the_contract(world: World) -> None:
    bound = world.chain.attach(world.deployment).with_account(world.unionpay.account)
    for verdict in (verify_bundle(world.bundle(0), chain=bound),
                    verify_bundle(world.bundle(0), chain=world.chain,
                                  deployment=world.deployment)):
        assert_all_passed(verdict)
        assert verdict.deployment_pinned and verdict.to_json()["deployment_pinned"] is True
        assert "not pinned" not in verdict.summary
    other, other_deployment, _, _, _ = deploy_consortium(world.chain)
    for verdict in (verify_bundle(world.bundle(0), chain=other),
                    verify_bundle(world.bundle(0), chain=world.chain,
                                  deployment=other_deployment)):
        assert_fails_at(verdict, "deployment", "the verifier trusts", other_deployment.address)
    stale = replace(world.deployment, abi_sha256="11" * 32)
    assert_fails_at(verify_bundle(world.bundle(0), chain=world.chain, deployment=stale),
                    "deployment", "the trusted deployment has")
    elsewhere = replace(world.deployment, chain_id=5)
    assert_fails_at(verify_bundle(world.bundle(0), chain=world.chain, deployment=elsewhere),
                    "deployment", "trusts the deployment on chain 5")


def test_pinning_defeats_a_contract_of_the_attackers_own(world: World) -> None:
    """Anyone may deploy a JointLedger naming itself "unionpay" and anchor a forged log."""
    bound, rogue, fake_unionpay, _, _ = deploy_consortium(world.chain)
    forged = [Leaf(os.urandom(32)) for _ in range(3)]
    log = merkle.MerkleLog(merkle.SM3_HASHER)
    log.extend(leaf.leaf_data() for leaf in forged)
    signed, rogue_anchor = anchor(bound, fake_unionpay, UNIONPAY_LOG, log, 3, rogue)
    bundle = build_bundle(forged[1], 1, signed, rogue_anchor, log=log)
    unpinned = verify_bundle(bundle, chain=world.chain)
    assert unpinned.valid and not unpinned.deployment_pinned  # the documented limit
    pinned = verify_bundle(bundle, chain=world.chain, deployment=world.deployment)
    assert_fails_at(pinned, "deployment", f"names contract {rogue.address}")


def test_key_only_mode_verifies_up_to_the_signed_checkpoint(world: World) -> None:
    bundle = world.bundle(7)
    verdict = verify_bundle(bundle, checkpoint_key=world.unionpay.sm2_key.public_key())
    assert verdict.valid and verdict.mode == "key-only"
    assert verdict.anchoring_checked is False
    assert verdict.root == bundle.checkpoint.checkpoint.root
    statuses = {c.name: c.status for c in verdict.checks}
    assert statuses == {
        "structure": CheckStatus.PASSED, "inclusion": CheckStatus.PASSED,
        "deployment": CheckStatus.NOT_CHECKED, "checkpoint_on_chain": CheckStatus.NOT_CHECKED,
        "log_owner": CheckStatus.NOT_CHECKED, "signature": CheckStatus.PASSED,
        "anchoring": CheckStatus.NOT_CHECKED,
    }
    anchoring = verdict.check("anchoring")
    assert anchoring.passed is False and not anchoring.performed
    assert "was NOT checked" in anchoring.detail
    assert "anchoring on chain was NOT checked" in verdict.summary
    assert verdict.to_json()["anchoring_checked"] is False


def test_key_only_mode_cannot_see_a_checkpoint_that_was_never_anchored(world: World) -> None:
    """The documented limit: a signed but unanchored checkpoint passes key-only mode."""
    signed = sign_checkpoint(world.unionpay.sm2_key, Checkpoint(
        "unionpay", UNIONPAY_LOG, 10, world.log.root(10), int(time.time())))
    bundle = build_bundle(world.leaves[2], 2, signed, world.anchors[LOG_SIZE], log=world.log)
    key_only = verify_bundle(bundle, checkpoint_key=world.unionpay.sm2_key.public_key())
    assert key_only.valid and not key_only.anchoring_checked
    assert_fails_at(verify_bundle(bundle, chain=world.chain), "checkpoint_on_chain",
                    "never anchored")


def test_without_chain_or_key_nothing_anchors_trust(world: World) -> None:
    verdict = verify_bundle(world.bundle(1))
    assert not verdict.valid and verdict.mode == "untrusted" and verdict.root is None
    assert_fails_at(verdict, "signature", "nothing anchors trust")
    assert verdict.check("anchoring").status is CheckStatus.NOT_CHECKED
    assert verdict.summary.startswith("INVALID: signature: no chain and no checkpoint key")


def test_key_only_mode_rejects_another_members_key(world: World) -> None:
    verdict = verify_bundle(world.bundle(1), checkpoint_key=world.wechatpay.sm2_key.public_key())
    assert_fails_at(verdict, "signature", "does not verify", "the given key")


def test_a_given_key_must_match_the_chains_when_both_are_given(world: World) -> None:
    assert_all_passed(verify_bundle(world.bundle(3), chain=world.chain,
                                    checkpoint_key=world.unionpay.sm2_key.public_key()))
    verdict = verify_bundle(world.bundle(3), chain=world.chain,
                            checkpoint_key=world.wechatpay.sm2_key.public_key())
    assert_fails_at(verdict, "signature", "not the key registered on chain")


# --------------------------------------------------------------------------------------
# Every mutation fails at the right check
# --------------------------------------------------------------------------------------

Mutation = Callable[[World, ProofBundle], ProofBundle]


def _forged_tree(world: World, bundle: ProofBundle) -> ProofBundle:
    """A node that lies: a fake leaf in a fake tree, self-consistent, old signature."""
    fake = Leaf(os.urandom(32))
    forged_leaves = [*world.leaves[:4], fake, *world.leaves[5:]]
    log = merkle.MerkleLog(merkle.SM3_HASHER)
    log.extend(leaf.leaf_data() for leaf in forged_leaves)
    forged = with_checkpoint(bundle, root=log.root())
    return replace(forged, leaf=LeafSummary.of(fake), path=log.inclusion_proof(4).path)


def _another_contract(world: World, bundle: ProofBundle) -> ProofBundle:
    _, other, _, _, _ = deploy_consortium(world.chain)
    return replace(bundle, anchor=replace(bundle.anchor, contract=other.address))


def _never_anchored_size(world: World, bundle: ProofBundle) -> ProofBundle:
    signed = sign_checkpoint(world.unionpay.sm2_key, Checkpoint(
        "unionpay", UNIONPAY_LOG, 10, world.log.root(10), int(time.time())))
    return build_bundle(world.leaves[4], 4, signed, bundle.anchor, log=world.log)


def _other_log_checkpoint(world: World, bundle: ProofBundle) -> ProofBundle:
    return replace(bundle, checkpoint=world.wechat_checkpoint, anchor=world.wechat_anchor)


def _path(change: Callable[[tuple[bytes, ...]], tuple[bytes, ...]]) -> Mutation:
    return lambda world, bundle: replace(bundle, path=change(bundle.path))


def _leaf(**changes: Any) -> Mutation:
    return lambda world, bundle: replace(bundle, leaf=replace(bundle.leaf, **changes))


def _anchor(**changes: Any) -> Mutation:
    return lambda world, bundle: replace(bundle, anchor=replace(bundle.anchor, **changes))


# Chain mode's prerequisites, as documented in docs/proof-bundle.md.
PREREQUISITES = {"inclusion": "structure", "deployment": "structure",
                 "checkpoint_on_chain": "deployment", "log_owner": "checkpoint_on_chain",
                 "signature": "log_owner", "anchoring": "checkpoint_on_chain"}


def depends_on(name: str) -> set[str]:
    """Every check ``name`` needs, directly or not."""
    needs: set[str] = set()
    while name in PREREQUISITES:
        name = PREREQUISITES[name]
        needs.add(name)
    return needs


# (name, mutation of the bundle of leaf 4 at size 12, check that must fail, words in detail)
MUTATIONS: list[tuple[str, Mutation, str, tuple[str, ...]]] = [
    ("wrong-leaf-commitment-bit-0", _leaf(commitment=flip(os.urandom(32))), "inclusion",
     ("compute root",)),
    ("modified-leaf-commitment-bit-7", lambda w, b: replace(
        b, leaf=replace(b.leaf, commitment=flip(b.leaf.commitment, 0, 7))), "inclusion", ()),
    ("modified-escrow-digest", lambda w, b: replace(
        b, leaf=replace(b.leaf, escrow_digest=flip(b.leaf.escrow_digest))), "inclusion", ()),
    ("added-match-tags", _leaf(match_tag=b"\x01" * 32, amount_tag=b"\x02" * 32), "inclusion", ()),
    ("only-match-tag", _leaf(match_tag=b"\x01" * 32), "structure", ("match_tag",)),
    ("modified-path-0-bit-3", _path(lambda p: (flip(p[0], 5, 3), *p[1:])), "inclusion", ()),
    ("modified-path-last", _path(lambda p: (*p[:-1], flip(p[-1]))), "inclusion", ()),
    ("truncated-path", _path(lambda p: p[:-1]), "structure", ("needs exactly 4",)),
    ("extended-path", _path(lambda p: (*p, p[0])), "structure", ("holds 5 hashes",)),
    ("short-path-element", _path(lambda p: (p[0][:31], *p[1:])), "structure", ("32 bytes",)),
    ("modified-root", lambda w, b: with_checkpoint(b, root=flip(b.checkpoint.checkpoint.root)),
     "inclusion", ("the checkpoint says",)),
    ("forged-tree-root", _forged_tree, "checkpoint_on_chain", ("the chain's root",)),
    ("modified-signature", lambda w, b: replace(b, checkpoint=SignedCheckpoint(
        b.checkpoint.checkpoint, flip(b.checkpoint.signature, 20))), "signature",
     ("does not verify",)),
    ("signature-by-another-member", lambda w, b: with_checkpoint(b, w.wechatpay),
     "signature", ("does not verify", "registered on chain")),
    ("wrong-index", lambda w, b: replace(b, index=5), "inclusion", ()),
    ("index-out-of-tree", lambda w, b: replace(b, index=12), "structure", ("not in a tree",)),
    ("negative-index", lambda w, b: replace(b, index=-1), "structure", ("not in a tree",)),
    ("wrong-tree-size", lambda w, b: replace(b, tree_size=11), "structure",
     ("differs from the checkpoint",)),
    ("wrong-hash-name", lambda w, b: replace(b, hash_name="sha256"), "structure",
     ("checkpoint's sm3",)),
    ("unknown-hash-name", lambda w, b: replace(b, hash_name="md5"), "structure", ("md5",)),
    ("checkpoint-of-another-log", _other_log_checkpoint, "inclusion", ()),
    ("log-id-of-another-log", lambda w, b: with_checkpoint(b, w.unionpay, log_id=WECHAT_LOG),
     "checkpoint_on_chain", ("the chain's root",)),
    ("log-id-never-opened", lambda w, b: with_checkpoint(b, w.unionpay, log_id=os.urandom(32)),
     "checkpoint_on_chain", ("never anchored",)),
    ("modified-timestamp", lambda w, b: with_checkpoint(
        b, w.unionpay, timestamp=b.checkpoint.checkpoint.timestamp + 1),
     "checkpoint_on_chain", ("timestamp",)),
    ("modified-timestamp-not-resigned", lambda w, b: with_checkpoint(
        b, timestamp=b.checkpoint.checkpoint.timestamp - 1), "checkpoint_on_chain",
     ("timestamp",)),
    ("size-never-anchored", _never_anchored_size, "checkpoint_on_chain", ("never anchored",)),
    ("platform-name-not-log-owner", lambda w, b: with_checkpoint(
        b, w.unionpay, platform="wechatpay"), "log_owner", ("registered as 'unionpay'",)),
    ("platform-name-signed-by-named", lambda w, b: with_checkpoint(
        b, w.wechatpay, platform="wechatpay"), "log_owner", ("the checkpoint names",)),
    ("another-contract", _another_contract, "checkpoint_on_chain", ("never anchored",)),
    ("another-contract-pinned", _another_contract, "deployment",
     ("the verifier trusts",)),
    ("contract-without-code", _anchor(contract=Web3.to_checksum_address("0x" + "ab" * 20)),
     "deployment", ("no contract code",)),
    ("another-chain-id", _anchor(chain_id=1), "deployment", ("the bundle is for chain 1",)),
    ("another-abi", _anchor(abi_sha256="00" * 32), "deployment", ("ABI",)),
    ("wrong-anchoring-tx", lambda w, b: replace(
        b, anchor=replace(b.anchor, tx_hash=w.anchors[8].tx_hash)), "anchoring",
     ("emitted no CheckpointAnchored",)),
    ("unknown-anchoring-tx", _anchor(tx_hash=os.urandom(32)), "anchoring",
     ("emitted no CheckpointAnchored",)),
    ("other-logs-anchoring-tx", lambda w, b: replace(
        b, anchor=replace(b.anchor, tx_hash=w.wechat_anchor.tx_hash,
                          block_number=w.wechat_anchor.block_number)), "anchoring",
     ("block",)),
    ("wrong-anchoring-block", lambda w, b: replace(
        b, anchor=replace(b.anchor, block_number=b.anchor.block_number - 1)), "anchoring",
     ("the bundle says block",)),
    ("block-before-deployment", lambda w, b: replace(
        b, anchor=replace(b.anchor, block_number=b.anchor.deploy_block - 1)), "structure",
     ("precedes the deployment block",)),
    ("malformed-tx-hash", _anchor(tx_hash=b"\x01" * 31), "structure", ("tx_hash",)),
    ("lowercase-contract", lambda w, b: replace(b, anchor=replace(
        b.anchor, contract=b.anchor.contract.lower())), "structure", ("checksummed",)),
]


@pytest.mark.parametrize(("mutate", "check", "words"),
                         [pytest.param(m, c, w, id=n) for n, m, c, w in MUTATIONS])
def test_every_mutation_fails_at_its_check(world: World, mutate: Mutation, check: str,
                                           words: tuple[str, ...],
                                           request: pytest.FixtureRequest) -> None:
    good = world.bundle(4)
    assert_all_passed(verify_bundle(good, chain=world.chain))
    bad = mutate(world, good)
    assert bad != good
    pin = world.deployment if request.node.callspec.id.endswith("-pinned") else None
    verdict = verify_bundle(bad, chain=world.chain, deployment=pin)
    assert_fails_at(verdict, check, *words)
    assert verdict.check(check).detail in " ".join(verdict.reasons)
    # checks that depend on the failed one are reported as not run, never as passed
    for c in verdict.checks:
        assert c.status is not CheckStatus.NOT_CHECKED
        if check in depends_on(c.name):
            assert c.status is CheckStatus.NOT_RUN, c
        if c.status is CheckStatus.NOT_RUN:
            assert c.detail.startswith("not run: ") and not c.passed


def test_a_structure_failure_leaves_every_other_check_unrun(world: World) -> None:
    verdict = verify_bundle(replace(world.bundle(4), tree_size=11), chain=world.chain)
    assert [c.status for c in verdict.checks] == [CheckStatus.FAILED] + [
        CheckStatus.NOT_RUN] * (len(CHECK_NAMES) - 1)
    assert verdict.check("anchoring").detail == "not run: checkpoint_on_chain did not pass"


@pytest.mark.parametrize(("name", "check"), [
    ("modified-path-0-bit-3", "inclusion"), ("modified-root", "inclusion"),
    ("signature-by-another-member", "signature"), ("modified-signature", "signature"),
    ("truncated-path", "structure"), ("wrong-tree-size", "structure"),
    ("modified-timestamp-not-resigned", "signature"),
])
def test_key_only_mode_catches_what_it_can_see(world: World, name: str, check: str) -> None:
    mutate = next(m for n, m, _, _ in MUTATIONS if n == name)
    verdict = verify_bundle(mutate(world, world.bundle(4)),
                            checkpoint_key=world.unionpay.sm2_key.public_key())
    assert_fails_at(verdict, check)
    assert verdict.anchoring_checked is False


def test_a_malformed_bundle_object_is_a_verdict_not_an_exception(world: World) -> None:
    good = world.bundle(4)
    odd: Any = replace(good, index="4", path=("not bytes",),
                       leaf=replace(good.leaf, commitment="x"))
    for kwargs in ({"chain": world.chain}, {"checkpoint_key":
                                            world.unionpay.sm2_key.public_key()}, {}):
        verdict = verify_bundle(odd, **kwargs)
        assert_fails_at(verdict, "structure", "integers", "commitment")
        for part in ("checkpoint", "anchor", "leaf"):
            missing: Any = replace(good, **{part: None})
            assert_fails_at(verify_bundle(missing, **kwargs), "structure", "AttributeError")


def test_a_key_rotated_later_still_verifies_old_checkpoints(eth_tester_chain: LedgerChain,
                                                            ) -> None:
    """The signature is checked with the key in force when the checkpoint was anchored."""
    bound, deployment, unionpay, _, _ = deploy_consortium(eth_tester_chain)
    _, _, leaves = make_leaves("unionpay", 4, random.Random(1))
    log = merkle.MerkleLog(merkle.SM3_HASHER)
    log.extend(leaf.leaf_data() for leaf in leaves)
    old_cp, old_anchor = anchor(bound, unionpay, UNIONPAY_LOG, log, 2, deployment)
    new_key = new_party("unionpay", Role.PLATFORM).sm2_key
    bound.with_account(unionpay.account).propose_rotate_key(unionpay.account.address,
                                                            new_key.public_key().raw)
    rotated = replace(unionpay, sm2_key=new_key)
    new_cp, new_anchor = anchor(bound, rotated, UNIONPAY_LOG, log, 4, deployment)
    reader = LedgerChain(eth_tester_chain.w3)
    old = build_bundle(leaves[1], 1, old_cp, old_anchor, log=log)
    new = build_bundle(leaves[3], 3, new_cp, new_anchor, log=log)
    assert_all_passed(verify_bundle(old, chain=reader))
    assert "rotated 1×" in verify_bundle(old, chain=reader).check("log_owner").detail
    assert_all_passed(verify_bundle(new, chain=reader))
    assert_fails_at(verify_bundle(with_checkpoint(old, rotated), chain=reader), "signature")
    assert_fails_at(verify_bundle(with_checkpoint(new, unionpay), chain=reader), "signature")


def test_an_unreachable_chain_raises_chain_error(world: World) -> None:
    """A node that does not answer is not a bad bundle: it raises instead of judging."""
    dead = LedgerChain(Web3(Web3.HTTPProvider("http://127.0.0.1:9",
                                               request_kwargs={"timeout": 2})))
    with pytest.raises(ChainError, match="reading the chain failed during the deployment"):
        verify_bundle(world.bundle(0), chain=dead)


# --------------------------------------------------------------------------------------
# Property: every leaf's bundle verifies; none for another leaf, index, size or root does
# --------------------------------------------------------------------------------------

positions = st.sampled_from(UNIONPAY_SIZES).flatmap(
    lambda size: st.tuples(st.just(size), st.integers(0, size - 1)))


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=positions, other=st.integers(0, LOG_SIZE - 1),
       other_size=st.sampled_from(UNIONPAY_SIZES))
def test_property_bundles_verify_only_for_their_own_leaf(
        world: World, position: tuple[int, int], other: int, other_size: int) -> None:
    size, index = position
    bundle = world.bundle(index, size)
    assert_all_passed(verify_bundle(bundle, chain=world.chain))
    tampered: list[ProofBundle] = []
    if other != index:
        tampered.append(replace(bundle, leaf=LeafSummary.of(world.leaves[other])))
        if other < size:
            tampered.append(replace(bundle, index=other))
    if other_size != size:
        tampered.append(replace(bundle, tree_size=other_size))
        resized = with_checkpoint(bundle, world.unionpay, tree_size=other_size,
                                  root=world.log.root(other_size))
        tampered.append(resized)
        tampered.append(replace(bundle, checkpoint=world.checkpoints[other_size],
                                anchor=world.anchors[other_size],
                                tree_size=other_size))
        tampered.append(with_checkpoint(bundle, world.unionpay,
                                        root=world.log.root(other_size)))
    for bad in tampered:
        assert not verify_bundle(bad, chain=world.chain).valid
        assert not verify_bundle(bad, checkpoint_key=world.unionpay.sm2_key.public_key()).valid


# --------------------------------------------------------------------------------------
# Openings and disclosures
# --------------------------------------------------------------------------------------


def test_an_opening_and_a_disclosure_of_the_leaf_are_accepted(world: World) -> None:
    opening = RecordOpening(world.records[6], world.salts[6])
    disclosure = disclose_field(world.records[6], world.salts[6], "amount_fen")
    verdict = verify_bundle(world.bundle(6), chain=world.chain, opening=opening,
                            disclosure=disclosure)
    assert_all_passed(verdict)
    assert [c.name for c in verdict.checks] == [*CHECK_NAMES, "opening", "disclosure"]
    assert "amount_fen" in verdict.check("disclosure").detail
    key_only = verify_bundle(world.bundle(6), checkpoint_key=world.unionpay.sm2_key.public_key(),
                             disclosure=disclosure)
    assert key_only.valid and key_only.check("disclosure").passed


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda w: RecordOpening(replace(w.records[6], amount_fen=1), w.salts[6]),
                 id="changed-amount"),
    pytest.param(lambda w: RecordOpening(w.records[6], w.salts[5]), id="wrong-salt"),
    pytest.param(lambda w: RecordOpening(w.records[5], w.salts[5]), id="another-leafs-record"),
    pytest.param(lambda w: RecordOpening(w.records[6], w.salts[6][:16]), id="short-salt"),
])
def test_a_tampered_opening_is_rejected(world: World,
                                        tamper: Callable[[World], RecordOpening]) -> None:
    verdict = verify_bundle(world.bundle(6), chain=world.chain, opening=tamper(world))
    assert_fails_at(verdict, "opening")
    assert all(verdict.check(name).passed for name in CHECK_NAMES)


def test_an_opening_of_another_platforms_record_is_rejected(world: World) -> None:
    """Even if it opened the commitment, a record must be the log's platform's."""
    record = replace(world.records[6], platform="wechatpay")
    salt = new_salt()
    bundle = replace(world.bundle(6), leaf=replace(world.bundle(6).leaf,
                                                   commitment=record_commitment(record, salt)))
    verdict = verify_bundle(bundle, checkpoint_key=world.unionpay.sm2_key.public_key(),
                            opening=RecordOpening(record, salt))
    assert verdict.check("opening").status is CheckStatus.FAILED
    assert "the log is unionpay's" in verdict.check("opening").detail


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda d: replace(d, value=d.value + 1), id="changed-value"),
    pytest.param(lambda d: replace(d, field_salt=flip(d.field_salt)), id="changed-salt"),
    pytest.param(lambda d: replace(d, other_field_hashes=d.other_field_hashes[1:]),
                 id="missing-hash"),
    pytest.param(lambda d: replace(d, name="payee_identity"), id="another-field"),
])
def test_a_tampered_disclosure_is_rejected(world: World, tamper: Callable[[Any], Any]) -> None:
    disclosure = tamper(disclose_field(world.records[6], world.salts[6], "amount_fen"))
    verdict = verify_bundle(world.bundle(6), chain=world.chain, disclosure=disclosure)
    assert_fails_at(verdict, "disclosure")


def test_a_disclosure_for_another_leaf_is_rejected(world: World) -> None:
    disclosure = disclose_field(world.records[2], world.salts[2], "amount_fen")
    verdict = verify_bundle(world.bundle(6), chain=world.chain, disclosure=disclosure)
    assert_fails_at(verdict, "disclosure", "computes")


# --------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 4, 11])  # 0 and 4... leaf 0 carries match tags
def test_json_round_trip(world: World, index: int) -> None:
    bundle = world.bundle(index)
    document = json.loads(json.dumps(bundle.to_json()))
    assert document["format"] == BUNDLE_FORMAT
    assert document["anchor"]["tx_hash"].startswith("0x")
    assert ProofBundle.from_json(document) == bundle
    assert ProofBundle.from_json(document).to_json() == document
    assert_all_passed(verify_bundle(ProofBundle.from_json(document), chain=world.chain))


def test_json_document_shape(world: World) -> None:
    document = world.bundle(0).to_json()
    assert list(document) == ["format", "hash", "leaf", "index", "tree_size", "path",
                              "checkpoint", "anchor"]
    assert list(document["leaf"]) == ["commitment", "escrow_digest", "match_tag", "amount_tag"]
    assert set(document["checkpoint"]) == {"platform", "log_id", "tree_size", "root",
                                           "timestamp", "hash", "signature"}
    assert list(document["anchor"]) == ["chain_id", "contract", "deploy_block", "abi_sha256",
                                        "tx_hash", "block_number"]
    assert document["leaf"]["match_tag"] is not None
    assert world.bundle(1).to_json()["leaf"]["match_tag"] is None


def test_the_leaf_is_in_the_summarys_own_json(world: World) -> None:
    """A bundle's ``leaf`` is :meth:`LeafSummary.to_json`, and a bad value in it is refused
    with the summary parser's reason under the bundle's field path."""
    for index in (0, 1):
        bundle = world.bundle(index)
        assert bundle.to_json()["leaf"] == bundle.leaf.to_json()
    document = world.bundle(0).to_json()
    document["leaf"]["escrow_digest"] = "00" * 31
    with pytest.raises(InvalidBundle) as caught:
        ProofBundle.from_json(document)
    assert (caught.value.field, caught.value.reason) == ("leaf.escrow_digest",
                                                         "must be 32 bytes, got 31")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return edit


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[part]
        del target[last]
    return edit


# (id, edit of a good document, field named by the InvalidBundle)
BAD_DOCUMENTS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("format-missing", _drop("format"), "format"),
    ("format-v2", _set("format", "jointledger/proof-bundle/v2"), "format"),
    ("format-not-string", _set("format", 1), "format"),
    ("unknown-field", _set("extra", 1), "extra"),
    ("path-missing", _drop("path"), "path"),
    ("anchor-missing", _drop("anchor"), "anchor"),
    ("hash-unknown", _set("hash", "md5"), "hash"),
    ("hash-not-string", _set("hash", ["sm3"]), "hash"),
    ("leaf-not-object", _set("leaf", "00" * 32), "leaf"),
    ("leaf-commitment-short", _set("leaf.commitment", "00" * 31), "leaf.commitment"),
    ("leaf-commitment-not-hex", _set("leaf.commitment", "zz" * 32), "leaf.commitment"),
    ("leaf-commitment-0x", _set("leaf.commitment", "0x" + "00" * 31), "leaf.commitment"),
    ("leaf-commitment-number", _set("leaf.commitment", 0), "leaf.commitment"),
    ("leaf-escrow-digest-odd", _set("leaf.escrow_digest", "0" * 63), "leaf.escrow_digest"),
    ("leaf-unknown-field", _set("leaf.escrow", ""), "leaf.escrow"),
    ("leaf-match-tag-missing", _drop("leaf.match_tag"), "leaf.match_tag"),
    ("leaf-match-tag-alone", _set("leaf.amount_tag", None), "leaf.amount_tag"),
    ("leaf-match-tag-long", _set("leaf.match_tag", "00" * 33), "leaf.match_tag"),
    ("index-string", _set("index", "3"), "index"),
    ("index-bool", _set("index", True), "index"),
    ("index-negative", _set("index", -1), "index"),
    ("index-float", _set("index", 4.0), "index"),
    ("tree-size-zero", _set("tree_size", 0), "tree_size"),
    ("tree-size-huge", _set("tree_size", 2**64), "tree_size"),
    ("path-not-list", _set("path", "00" * 32), "path"),
    ("path-element-short", _set("path.1", "00" * 16), "path[1]"),
    ("path-element-not-string", _set("path.0", None), "path[0]"),
    ("path-too-long", _set("path", ["00" * 32] * 65), "path"),
    ("checkpoint-not-object", _set("checkpoint", None), "checkpoint"),
    ("checkpoint-platform-upper", _set("checkpoint.platform", "UnionPay"),
     "checkpoint.platform"),
    ("checkpoint-log-id-short", _set("checkpoint.log_id", "00"), "checkpoint.log_id"),
    ("checkpoint-root-odd", _set("checkpoint.root", "0" * 65), "checkpoint.root"),
    ("checkpoint-tree-size-negative", _set("checkpoint.tree_size", -1),
     "checkpoint.tree_size"),
    ("checkpoint-timestamp-string", _set("checkpoint.timestamp", "1"),
     "checkpoint.timestamp"),
    ("checkpoint-hash-unknown", _set("checkpoint.hash", "sha3"), "checkpoint.hash"),
    ("checkpoint-signature-empty", _set("checkpoint.signature", ""), "checkpoint.signature"),
    ("checkpoint-signature-huge", _set("checkpoint.signature", "00" * 129),
     "checkpoint.signature"),
    ("checkpoint-signature-missing", _drop("checkpoint.signature"), "checkpoint.signature"),
    ("checkpoint-unknown-field", _set("checkpoint.tx", "00"), "checkpoint.tx"),
    ("anchor-not-object", _set("anchor", []), "anchor"),
    ("anchor-chain-id-zero", _set("anchor.chain_id", 0), "anchor.chain_id"),
    ("anchor-chain-id-string", _set("anchor.chain_id", "1337"), "anchor.chain_id"),
    ("anchor-contract-lowercase", lambda d: _set("anchor.contract",
                                                 d["anchor"]["contract"].lower())(d),
     "anchor.contract"),
    ("anchor-contract-short", _set("anchor.contract", "0x1234"), "anchor.contract"),
    ("anchor-deploy-block-negative", _set("anchor.deploy_block", -1), "anchor.deploy_block"),
    ("anchor-abi-upper", lambda d: _set("anchor.abi_sha256",
                                        d["anchor"]["abi_sha256"].upper())(d),
     "anchor.abi_sha256"),
    ("anchor-tx-hash-no-0x", lambda d: _set("anchor.tx_hash", d["anchor"]["tx_hash"][2:])(d),
     "anchor.tx_hash"),
    ("anchor-tx-hash-short", _set("anchor.tx_hash", "0x" + "00" * 31), "anchor.tx_hash"),
    ("anchor-block-number-bool", _set("anchor.block_number", False), "anchor.block_number"),
    ("anchor-unknown-field", _set("anchor.address", "0x"), "anchor.address"),
    ("anchor-field-missing", _drop("anchor.abi_sha256"), "anchor.abi_sha256"),
]


@pytest.mark.parametrize(("edit", "field"),
                         [pytest.param(e, f, id=n) for n, e, f in BAD_DOCUMENTS])
def test_strict_parsing_names_the_field(world: World, edit: Callable[[dict[str, Any]], None],
                                        field: str) -> None:
    document = copy.deepcopy(world.bundle(0).to_json())
    edit(document)
    with pytest.raises(InvalidBundle) as caught:
        ProofBundle.from_json(document)
    assert caught.value.field == field, caught.value
    assert caught.value.reason and field in str(caught.value)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, LedgerError)


@pytest.mark.parametrize("data", [None, [], "bundle", 3, b"{}"])
def test_a_bundle_is_an_object(data: object) -> None:
    with pytest.raises(InvalidBundle) as caught:
        ProofBundle.from_json(data)
    assert caught.value.field == "bundle"


def test_parsing_leaves_consistency_to_the_verifier(world: World) -> None:
    """index >= tree_size parses: the verdict's structure check reports it, with a reason."""
    document = world.bundle(0).to_json() | {"index": 99}
    bundle = ProofBundle.from_json(document)
    assert_fails_at(verify_bundle(bundle, chain=world.chain), "structure", "index 99")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**65), 2**65) | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=3),
    max_leaves=6)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(["format", "hash", "leaf", "leaf.commitment", "leaf.match_tag",
                              "index", "tree_size", "path", "path.0", "checkpoint",
                              "checkpoint.root", "checkpoint.signature", "checkpoint.platform",
                              "anchor", "anchor.contract", "anchor.tx_hash", "anchor.chain_id"]),
       value=json_values)
def test_fuzzed_documents_raise_only_invalid_bundle(world: World, where: str,
                                                    value: object) -> None:
    document = copy.deepcopy(world.bundle(0).to_json())
    _set(where, value)(document)
    try:
        bundle = ProofBundle.from_json(document)
    except InvalidBundle as exc:
        assert exc.field.split(".")[0].split("[")[0] == where.split(".")[0]
        return
    verdict = verify_bundle(bundle, checkpoint_key=world.unionpay.sm2_key.public_key())
    assert isinstance(verdict.valid, bool)


# --------------------------------------------------------------------------------------
# Vectors: key-only verification of stored documents (tests/vectors/bundles/generate.py)
# --------------------------------------------------------------------------------------

VECTORS = sorted((Path(__file__).parent / "vectors" / "bundles").glob("*.json"))


def test_the_vectors_are_there() -> None:
    assert len(VECTORS) >= 60
    assert {v.name for v in VECTORS} >= {"sm3-happy-path.json", "sha256-happy-path.json",
                                          "sm3-single-leaf-happy-path.json"}


@pytest.mark.parametrize("path", VECTORS, ids=[v.stem for v in VECTORS])
def test_vector(path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    assert case["desc"]
    key = SM2PublicKey.from_raw(bytes.fromhex(case["checkpoint_key"]))
    if case["want_parse_error"] is not None:
        with pytest.raises(InvalidBundle) as caught:
            ProofBundle.from_json(case["bundle"])
        assert caught.value.field == case["want_parse_error"]
        return
    bundle = ProofBundle.from_json(case["bundle"])
    verdict = verify_bundle(bundle, checkpoint_key=key)
    if case["want_failed_check"] is None:
        assert verdict.valid and verdict.root == bundle.checkpoint.checkpoint.root
        assert verdict.check("anchoring").status is CheckStatus.NOT_CHECKED
    else:
        assert_fails_at(verdict, case["want_failed_check"])


# --------------------------------------------------------------------------------------
# build_bundle
# --------------------------------------------------------------------------------------


def test_build_bundle_from_a_path_equals_from_the_log(world: World) -> None:
    path = world.log.inclusion_proof(4, 8).path
    from_path = build_bundle(LeafSummary.of(world.leaves[4]), 4, world.checkpoints[8],
                             world.anchors[8], path=path)
    assert from_path == world.bundle(4, 8)


@pytest.mark.parametrize(("kwargs", "field", "words"), [
    ({"index": 12}, "index", "not in a tree"),
    ({"index": -1}, "index", "not in a tree"),
    ({"neither": True}, "path", "exactly one"),
    ({"both": True}, "path", "exactly one"),
    ({"leaf": 5}, "leaf", "another leaf"),
    ({"short_log": True}, "tree_size", "log has 3"),
    ({"sha256_log": True}, "hash", "sha256"),
])
def test_build_bundle_rejects(world: World, kwargs: dict[str, Any], field: str,
                              words: str) -> None:
    log = world.log
    if kwargs.get("short_log"):
        log = merkle.MerkleLog(merkle.SM3_HASHER)
        log.extend(leaf.leaf_data() for leaf in world.leaves[:3])
    if kwargs.get("sha256_log"):
        log = merkle.MerkleLog(merkle.SHA256_HASHER)
        log.extend(leaf.leaf_data() for leaf in world.leaves)
    index = kwargs.get("index", 4)
    leaf = world.leaves[kwargs.get("leaf", 4)]
    path = world.log.inclusion_proof(4).path
    with pytest.raises(InvalidBundle) as caught:
        if kwargs.get("neither"):
            build_bundle(leaf, index, world.checkpoints[12], world.anchors[12])
        elif kwargs.get("both"):
            build_bundle(leaf, index, world.checkpoints[12], world.anchors[12], log=log,
                         path=path)
        else:
            build_bundle(leaf, index, world.checkpoints[12], world.anchors[12], log=log)
    assert caught.value.field == field and words in caught.value.reason


def test_check_status_follows_passed() -> None:
    assert Check("x", True, "ok").status is CheckStatus.PASSED
    assert Check("x", False, "no").status is CheckStatus.FAILED
    assert Check("x", False, "no", CheckStatus.NOT_RUN).performed is False
    with pytest.raises(ValueError):
        Check("x", True, "ok", CheckStatus.NOT_CHECKED)


# --------------------------------------------------------------------------------------
# A real JSON-RPC node
# --------------------------------------------------------------------------------------


def test_bundles_verify_on_anvil(anvil_url: str) -> None:
    """The same bundles through web3's HTTP provider against a separate anvil process."""
    anvil_world = build_world(LedgerChain.from_rpc(anvil_url))
    reader = LedgerChain.from_rpc(anvil_url)
    good = anvil_world.bundle(9)
    assert_all_passed(verify_bundle(ProofBundle.from_json(json.loads(json.dumps(
        good.to_json()))), chain=reader))
    assert_fails_at(verify_bundle(replace(good, anchor=replace(
        good.anchor, tx_hash=anvil_world.anchors[8].tx_hash)), chain=reader), "anchoring")
    assert_fails_at(verify_bundle(with_checkpoint(good, anvil_world.wechatpay), chain=reader),
                    "signature")
    assert_fails_at(verify_bundle(_never_anchored_size(anvil_world, good), chain=reader),
                    "checkpoint_on_chain")
    # anchored in the chain's latest block: nothing after it to scan for key rotations
    extra = Leaf(os.urandom(32))
    anvil_world.log.append(extra.leaf_data())
    signed, latest = anchor(reader.attach(anvil_world.deployment), anvil_world.unionpay,
                            UNIONPAY_LOG, anvil_world.log, LOG_SIZE + 1, anvil_world.deployment)
    assert latest.block_number == reader.block_number()
    fresh = build_bundle(extra, LOG_SIZE, signed, latest, log=anvil_world.log)
    assert_all_passed(verify_bundle(fresh, chain=reader, deployment=anvil_world.deployment))
    # an anvil bundle checked against the embedded chain: another chain id
    assert_fails_at(verify_bundle(good, chain=LedgerChain.embedded()), "deployment",
                    f"the bundle is for chain {good.anchor.chain_id}")
