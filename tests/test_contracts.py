"""Behaviour of the JointLedger contract through :class:`LedgerChain`, on every backend.

``ContractBehaviour`` holds the tests; ``TestOnEthTester`` and ``TestOnAnvil`` run them over
the embedded eth-tester chain and over a real anvil JSON-RPC node. Every rejection is
asserted by its custom error's name and arguments, every success by the events emitted.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger_node.chain.adapter import (
    Deployment,
    LedgerChain,
    Member,
    ProposalKind,
    Role,
    TxOutcome,
)
from ledger_node.chain.contracts import load_artifact
from ledger_node.errors import ChainError, ContractRevert, DeploymentError

FUNDING_WEI = 10**20
ZERO_ADDRESS = "0x" + "00" * 20


def key64() -> bytes:
    """A random stand-in for a raw SM2 public key (x || y)."""
    return os.urandom(64)


def b32(label: str) -> bytes:
    """A readable 32-byte value (log ids, roots, commitments, case ids)."""
    return label.encode().ljust(32, b"\0")


@contextmanager
def reverts(name: str, *args: Any) -> Iterator[None]:
    """Expect a ContractRevert called ``name`` (and, if given, with exactly ``args``)."""
    with pytest.raises(ContractRevert) as info:
        yield
    assert info.value.name == name, f"expected {name}, got {info.value}"
    if args:
        assert info.value.error_args == args


@dataclass
class Consortium:
    """One fresh deployment and a client per party (threshold 2 of 3 voters)."""

    unionpay: LedgerChain
    wechat: LedgerChain
    pboc: LedgerChain
    auditor: LedgerChain
    outsider: LedgerChain
    spare: LedgerChain  # funded, not a member: a candidate for admission
    deployment: Deployment

    @property
    def voters(self) -> list[LedgerChain]:
        return [self.unionpay, self.wechat, self.pboc]

    @property
    def non_platforms(self) -> dict[str, LedgerChain]:
        return {"regulator": self.pboc, "auditor": self.auditor, "outsider": self.outsider}


# ---------------------------------------------------------------------- shared behaviours


def behaves_like_platform_only(c: Consortium, action: Callable[[LedgerChain], object]) -> None:
    """``action`` is rejected with Membership_NotPlatform for every non-platform caller."""
    for who, chain in c.non_platforms.items():
        with reverts("Membership_NotPlatform", chain.address):
            action(chain)
        assert who  # names the caller in a failing traceback


def behaves_like_voter_only(c: Consortium, action: Callable[[LedgerChain], object]) -> None:
    """``action`` is rejected for an auditor (not a voter) and an outsider (not a member)."""
    with reverts("Membership_NotVoter", c.auditor.address):
        action(c.auditor)
    with reverts("Membership_NotActiveMember", c.outsider.address):
        action(c.outsider)


def execute_with_votes(c: Consortium, proposal: tuple[int, TxOutcome]) -> int:
    """Have the next voters approve ``proposal`` until it executes; return its id."""
    pid, _ = proposal
    for voter in c.voters:
        current = voter.proposal(pid)
        if current.executed:
            break
        if voter.address not in current.approvers and voter.member(voter.address).active:
            voter.approve(pid)
    assert c.unionpay.proposal(pid).executed
    return pid


class ContractBehaviour:
    """The backend-agnostic suite. Subclasses provide the session ``chain`` fixture."""

    @pytest.fixture(scope="class")
    @classmethod
    def accounts(cls, chain: LedgerChain) -> dict[str, LocalAccount]:
        """Six funded accounts, reused by every test of the class (each deploys anew)."""
        faucet = chain.dev_faucet()
        names = ["unionpay", "wechat", "pboc", "auditor", "outsider", "spare"]
        accounts = {name: Account.create() for name in names}
        for account in accounts.values():
            chain.fund(account.address, FUNDING_WEI, faucet)
        return accounts

    @pytest.fixture
    def c(self, chain: LedgerChain, accounts: dict[str, LocalAccount]) -> Consortium:
        """A fresh JointLedger: unionpay, wechat (platforms), pboc (regulator), an auditor."""
        deployer = chain.with_account(accounts["unionpay"])
        deployment = deployer.deploy(
            [
                Member(accounts["unionpay"].address, Role.PLATFORM, "unionpay", key64()),
                Member(accounts["wechat"].address, Role.PLATFORM, "wechatpay", key64()),
                Member(accounts["pboc"].address, Role.REGULATOR, "pboc", key64()),
                Member(accounts["auditor"].address, Role.AUDITOR, "auditor", key64()),
            ],
            threshold=2,
        )
        clients = {n: chain.with_account(a).attach(deployment) for n, a in accounts.items()}
        return Consortium(deployment=deployment, **clients)

    # ------------------------------------------------------------------ deployment

    def test_deploy_registers_members_and_threshold(self, c: Consortium) -> None:
        members = c.outsider.members()
        assert [m.name for m in members] == ["unionpay", "wechatpay", "pboc", "auditor"]
        assert [m.role for m in members] == [
            Role.PLATFORM, Role.PLATFORM, Role.REGULATOR, Role.AUDITOR,
        ]
        assert all(m.active and len(m.public_key) == 64 for m in members)
        assert c.outsider.threshold() == 2
        assert c.outsider.active_voter_count() == 3
        assert c.outsider.member(c.outsider.address).role is Role.NONE
        added = c.outsider.events("MemberAdded")
        assert [e.args["account"] for e in added] == [m.address for m in members]
        changes = c.outsider.events("ThresholdChanged")
        assert [(e.args["oldThreshold"], e.args["newThreshold"]) for e in changes] == [(0, 2)]

    def test_deploy_rejects_bad_threshold_and_keys(
        self, chain: LedgerChain, accounts: dict[str, LocalAccount]
    ) -> None:
        deployer = chain.with_account(accounts["unionpay"])
        one = [Member(accounts["unionpay"].address, Role.PLATFORM, "unionpay", key64())]
        with reverts("Governance_InvalidThreshold", 2, 1):
            deployer.deploy(one, threshold=2)
        with reverts("Governance_InvalidThreshold", 0, 1):
            deployer.deploy(one, threshold=0)
        short = [Member(accounts["unionpay"].address, Role.PLATFORM, "unionpay", b"\1" * 63)]
        with reverts("Membership_InvalidPublicKey", 63):
            deployer.deploy(short, threshold=1)
        twice = one + one
        with reverts("Membership_AlreadyMember", accounts["unionpay"].address):
            deployer.deploy(twice, threshold=1)

    def test_deployment_file_round_trip_and_checks(self, c: Consortium, tmp_path: Path) -> None:
        path = tmp_path / "deployment.json"
        c.deployment.save(path)
        loaded = Deployment.load(path)
        assert loaded == c.deployment
        reader = c.outsider.attach(loaded)
        assert reader.threshold() == 2
        with pytest.raises(DeploymentError, match="chain"):
            c.outsider.attach(Deployment(1, loaded.address, 0, loaded.abi_sha256))
        with pytest.raises(DeploymentError, match="no contract code"):
            c.outsider.attach(Deployment(loaded.chain_id, c.spare.address, 0, loaded.abi_sha256))
        with pytest.raises(DeploymentError, match="ABI"):
            c.outsider.attach(Deployment(loaded.chain_id, loaded.address, 0, "00" * 32))
        with pytest.raises(DeploymentError, match="no deployment file"):
            Deployment.load(tmp_path / "missing.json")

    def test_writes_need_an_account(self, c: Consortium, chain: LedgerChain) -> None:
        reader = chain.attach(c.deployment)
        with pytest.raises(ChainError, match="no account"):
            reader.commit(b32("c"))

    # ------------------------------------------------------------------ governance

    def test_add_member_needs_threshold_approvals(self, c: Consortium) -> None:
        key = key64()
        pid, outcome = c.unionpay.propose_add_member(c.spare.address, Role.PLATFORM, "jd", key)
        assert outcome.event_names() == ["ProposalCreated", "ProposalApproved"]
        created = outcome.event("ProposalCreated").args
        assert (created["id"], created["kind"], created["proposer"], created["account"]) == (
            pid, ProposalKind.ADD_MEMBER, c.unionpay.address, c.spare.address,
        )
        proposal = c.outsider.proposal(pid)
        assert (proposal.approvals, proposal.executed) == (1, False)  # M-1 does not execute
        assert not c.outsider.member(c.spare.address).active

        outcome = c.pboc.approve(pid)
        assert outcome.event_names() == ["ProposalApproved", "ProposalExecuted", "MemberAdded"]
        assert outcome.event("ProposalExecuted").args["approvals"] == 2
        joined = c.outsider.member(c.spare.address)
        assert (joined.role, joined.name, joined.public_key, joined.active) == (
            Role.PLATFORM, "jd", key, True,
        )
        assert c.outsider.active_voter_count() == 4
        c.spare.anchor_checkpoint(b32("jd-log"), 1, b32("root"), 1, b"")  # may act at once

    def test_double_approval_is_rejected(self, c: Consortium) -> None:
        pid, _ = c.unionpay.propose_threshold_change(3)
        with reverts("Governance_AlreadyApproved", pid, c.unionpay.address):
            c.unionpay.approve(pid)

    def test_proposal_executes_once_only(self, c: Consortium) -> None:
        pid = execute_with_votes(c, c.unionpay.propose_rotate_key(c.auditor.address, key64()))
        with reverts("Governance_AlreadyExecuted", pid):
            c.wechat.approve(pid)
        with reverts("Governance_AlreadyExecuted", pid):
            c.pboc.execute(pid)

    def test_only_active_voters_govern(self, c: Consortium) -> None:
        pid, _ = c.unionpay.propose_threshold_change(1)
        behaves_like_voter_only(c, lambda ch: ch.propose_threshold_change(1))
        behaves_like_voter_only(c, lambda ch: ch.propose_remove_member(c.wechat.address))
        behaves_like_voter_only(c, lambda ch: ch.approve(pid))
        behaves_like_voter_only(c, lambda ch: ch.execute(pid))

    def test_unknown_proposal(self, c: Consortium) -> None:
        with reverts("Governance_UnknownProposal", 99):
            c.unionpay.approve(99)
        with reverts("Governance_UnknownProposal", 99):
            c.unionpay.execute(99)
        with reverts("Governance_UnknownProposal", 0):
            c.outsider.proposal(0)

    def test_execute_below_threshold_is_rejected(self, c: Consortium) -> None:
        pid, _ = c.unionpay.propose_threshold_change(3)
        with reverts("Governance_ThresholdNotReached", pid, 1, 2):
            c.wechat.execute(pid)

    def test_removed_member_cannot_approve_and_its_approval_stops_counting(
        self, c: Consortium
    ) -> None:
        pending, _ = c.wechat.propose_add_member(c.spare.address, Role.AUDITOR, "kpmg", key64())
        removal, _ = c.unionpay.propose_remove_member(c.wechat.address)
        outcome = c.pboc.approve(removal)
        assert outcome.event_names()[-1] == "MemberRemoved"
        assert not c.outsider.member(c.wechat.address).active
        assert c.outsider.active_voter_count() == 2
        with reverts("Membership_NotActiveMember", c.wechat.address):
            c.wechat.approve(pending)
        assert c.outsider.proposal(pending).approvals == 0  # wechat's approval no longer counts
        c.unionpay.approve(pending)
        assert not c.outsider.proposal(pending).executed  # 1 valid approval < 2
        behaves_like_platform_only(c, lambda ch: ch.commit(b32("x")))
        with reverts("Membership_NotPlatform", c.wechat.address):
            c.wechat.commit(b32("x"))

    def test_threshold_change_applies_to_open_proposals_at_their_next_vote(
        self, c: Consortium
    ) -> None:
        # An open proposal with one approval while M = 2.
        open_id, _ = c.unionpay.propose_add_member(c.spare.address, Role.AUDITOR, "a2", key64())
        # Raise M to 3: the open proposal is untouched, but now needs three approvals.
        raise_id = execute_with_votes(c, c.unionpay.propose_threshold_change(3))
        changed = c.outsider.events("ThresholdChanged")[-1].args
        assert (changed["oldThreshold"], changed["newThreshold"]) == (2, 3)
        outcome = c.wechat.approve(open_id)
        assert "ProposalExecuted" not in outcome.event_names()
        with reverts("Governance_ThresholdNotReached", open_id, 2, 3):
            c.pboc.execute(open_id)
        # Lower M to 2 (needs all three voters under M = 3): the open proposal, already at two
        # approvals, does not execute by itself, but any voter may now execute it.
        lower_id, _ = c.pboc.propose_threshold_change(2)
        c.unionpay.approve(lower_id)
        c.wechat.approve(lower_id)
        assert c.outsider.threshold() == 2 and raise_id != lower_id
        assert not c.outsider.proposal(open_id).executed
        outcome = c.pboc.execute(open_id)
        assert outcome.event_names() == ["ProposalExecuted", "MemberAdded"]
        assert c.outsider.member(c.spare.address).active

    def test_invalid_thresholds_are_rejected(self, c: Consortium) -> None:
        with reverts("Governance_InvalidThreshold", 0, 3):
            c.unionpay.propose_threshold_change(0)
        with reverts("Governance_InvalidThreshold", 4, 3):
            c.unionpay.propose_threshold_change(4)

    def test_removing_a_voter_below_the_threshold_is_rejected(self, c: Consortium) -> None:
        execute_with_votes(c, c.unionpay.propose_remove_member(c.wechat.address))
        with reverts("Governance_InvalidThreshold", 2, 1):
            c.unionpay.propose_remove_member(c.pboc.address)
        # Removing a non-voter (the auditor) never affects the threshold.
        execute_with_votes(c, c.unionpay.propose_remove_member(c.auditor.address))
        assert not c.outsider.member(c.auditor.address).active

    def test_action_invalidated_meanwhile_reverts_at_execution(self, c: Consortium) -> None:
        first, _ = c.unionpay.propose_remove_member(c.auditor.address)
        second, _ = c.wechat.propose_remove_member(c.auditor.address)
        c.pboc.approve(first)
        with reverts("Membership_NotActiveMember", c.auditor.address):
            c.pboc.approve(second)
        assert not c.outsider.proposal(second).executed

    def test_rotate_key(self, c: Consortium) -> None:
        old, new = c.outsider.member(c.wechat.address).public_key, key64()
        pid, _ = c.wechat.propose_rotate_key(c.wechat.address, new)
        outcome = c.unionpay.approve(pid)
        rotated = outcome.event("KeyRotated").args
        assert (rotated["account"], rotated["oldKey"], rotated["newKey"]) == (
            c.wechat.address, old, new,
        )
        assert c.outsider.member(c.wechat.address).public_key == new
        with reverts("Membership_InvalidPublicKey", 65):
            c.wechat.propose_rotate_key(c.wechat.address, b"\4" * 65)
        with reverts("Membership_NotActiveMember", c.spare.address):
            c.wechat.propose_rotate_key(c.spare.address, new)

    def test_add_member_validation(self, c: Consortium) -> None:
        up = c.unionpay
        with reverts("Membership_AlreadyMember", c.wechat.address):
            up.propose_add_member(c.wechat.address, Role.PLATFORM, "again", key64())
        with reverts("Membership_InvalidRole"):
            up.propose_add_member(c.spare.address, Role.NONE, "none", key64())
        with reverts("Membership_InvalidAccount", ZERO_ADDRESS):
            up.propose_add_member(ZERO_ADDRESS, Role.PLATFORM, "zero", key64())
        with reverts("Membership_EmptyName"):
            up.propose_add_member(c.spare.address, Role.PLATFORM, "", key64())
        with reverts("Membership_InvalidPublicKey", 0):
            up.propose_add_member(c.spare.address, Role.PLATFORM, "nokey", b"")

    def test_removed_member_can_be_readmitted(self, c: Consortium) -> None:
        execute_with_votes(c, c.unionpay.propose_remove_member(c.auditor.address))
        key = key64()
        execute_with_votes(
            c, c.unionpay.propose_add_member(c.auditor.address, Role.AUDITOR, "auditor2", key)
        )
        again = c.outsider.member(c.auditor.address)
        assert (again.active, again.name, again.public_key) == (True, "auditor2", key)
        assert len(c.outsider.members()) == 4  # listed once

    # ------------------------------------------------------------------ checkpoints

    def test_first_anchor_opens_the_log(self, c: Consortium) -> None:
        log, root, sig = b32("unionpay/0"), b32("root-5"), os.urandom(64)
        outcome = c.unionpay.anchor_checkpoint(log, 5, root, 1_700_000_000, sig)
        assert outcome.event_names() == ["LogOpened", "CheckpointAnchored"]
        assert outcome.event("LogOpened").args == {"logId": log, "platform": c.unionpay.address}
        assert outcome.event("CheckpointAnchored").args == {
            "logId": log, "platform": c.unionpay.address, "treeSize": 5, "root": root,
            "timestamp": 1_700_000_000, "signature": sig,
        }
        assert c.outsider.log_owner(log) == c.unionpay.address
        assert c.outsider.logs_of(c.unionpay.address) == [log]
        latest = c.outsider.latest_checkpoint(log)
        assert latest is not None
        assert (latest.tree_size, latest.root, latest.timestamp) == (5, root, 1_700_000_000)
        assert latest.block_number == outcome.block_number
        again = c.unionpay.anchor_checkpoint(log, 6, b32("root-6"), 1_700_000_001, sig)
        assert again.event_names() == ["CheckpointAnchored"]

    def test_tree_size_must_strictly_increase(self, c: Consortium) -> None:
        log = b32("unionpay/0")
        with reverts("Checkpoint_TreeSizeNotIncreasing", log, 0, 0):
            c.unionpay.anchor_checkpoint(log, 0, b32("empty"), 1, b"")
        c.unionpay.anchor_checkpoint(log, 10, b32("r10"), 1, b"")
        with reverts("Checkpoint_TreeSizeNotIncreasing", log, 10, 10):
            c.unionpay.anchor_checkpoint(log, 10, b32("other"), 2, b"")
        with reverts("Checkpoint_TreeSizeNotIncreasing", log, 10, 9):
            c.unionpay.anchor_checkpoint(log, 9, b32("r9"), 2, b"")
        c.unionpay.anchor_checkpoint(log, 11, b32("r11"), 2, b"")

    def test_log_belongs_to_its_first_anchorer(self, c: Consortium) -> None:
        log = b32("unionpay/0")
        c.unionpay.anchor_checkpoint(log, 1, b32("r1"), 1, b"")
        with reverts("Checkpoint_NotLogOwner", log, c.unionpay.address, c.wechat.address):
            c.wechat.anchor_checkpoint(log, 2, b32("r2"), 2, b"")
        c.wechat.anchor_checkpoint(b32("wechat/0"), 1, b32("w1"), 1, b"")
        assert c.outsider.log_owner(b32("wechat/0")) == c.wechat.address
        assert c.outsider.log_owner(b32("nobody")) is None

    def test_a_platform_may_own_several_logs(self, c: Consortium) -> None:
        shards = [b32(f"unionpay/{i}") for i in range(3)]
        for i, log in enumerate(shards):
            c.unionpay.anchor_checkpoint(log, i + 1, b32(f"r{i}"), i, b"")
        assert c.outsider.logs_of(c.unionpay.address) == shards
        assert c.outsider.logs_of(c.wechat.address) == []

    def test_only_active_platforms_anchor(self, c: Consortium) -> None:
        behaves_like_platform_only(
            c, lambda ch: ch.anchor_checkpoint(b32("x"), 1, b32("r"), 1, b"")
        )

    def test_checkpoint_history(self, c: Consortium) -> None:
        log = b32("unionpay/0")
        sizes = [3, 8, 20, 21]
        outcomes = [
            c.unionpay.anchor_checkpoint(log, n, b32(f"root{n}"), 100 + n, bytes([n]) * 64)
            for n in sizes
        ]
        c.unionpay.anchor_checkpoint(b32("unionpay/1"), 99, b32("other"), 1, b"")
        history = c.outsider.checkpoints(log)
        assert [h.tree_size for h in history] == sizes
        assert [h.root for h in history] == [b32(f"root{n}") for n in sizes]
        assert [h.signature for h in history] == [bytes([n]) * 64 for n in sizes]
        assert [h.tx_hash for h in history] == [o.tx_hash for o in outcomes]
        assert c.outsider.checkpoint_count(log) == 4
        for h in history:
            at = c.outsider.checkpoint_at(log, h.tree_size)
            assert (at.root, at.timestamp, at.block_number, at.block_time) == (
                h.root, h.timestamp, h.block_number, h.block_time,
            )
        for missing in (0, 4, 22):
            with reverts("Checkpoint_UnknownTreeSize", log, missing):
                c.outsider.checkpoint_at(log, missing)
        latest = c.outsider.latest_checkpoint(log)
        assert latest is not None and latest.tree_size == 21
        assert c.outsider.latest_checkpoint(b32("never")) is None
        assert c.outsider.checkpoints(b32("never")) == []

    def test_lookup_by_size_finds_every_anchored_size_and_no_other(self, c: Consortium) -> None:
        log = b32("sparse")
        sizes = [1, 2, 5, 6, 7, 13, 40, 41, 100]
        for n in sizes:
            c.unionpay.anchor_checkpoint(log, n, b32(f"root{n}"), n, b"")
        for n in range(0, 102):
            if n in sizes:
                assert c.outsider.checkpoint_at(log, n).root == b32(f"root{n}")
            else:
                with reverts("Checkpoint_UnknownTreeSize", log, n):
                    c.outsider.checkpoint_at(log, n)

    def test_raw_views_revert_for_unknown_logs_and_commitments(self, c: Consortium) -> None:
        """The adapter checks counts before these views; other callers get the custom errors."""
        contract = c.outsider.w3.eth.contract(
            address=c.outsider.deployment.address, abi=list(load_artifact().abi)
        )
        log = b32("no-such-log")
        with reverts("Checkpoint_UnknownLog", log):
            c.outsider._call(contract.functions.latestCheckpoint(log))
        with reverts("Checkpoint_UnknownLog", log):
            c.outsider._call(contract.functions.checkpointByIndex(log, 0))
        with reverts("Commitment_NotRecorded", b32("never-committed")):
            c.outsider._call(contract.functions.commitmentRecord(b32("never-committed")))

    # ------------------------------------------------------------------ direct commitments

    def test_direct_commit_and_duplicates(self, c: Consortium) -> None:
        commitment = b32("C1")
        outcome = c.wechat.commit(commitment)
        assert outcome.event_names() == ["CommitmentRecorded"]
        assert outcome.event("CommitmentRecorded").args == {
            "commitment": commitment, "platform": c.wechat.address,
        }
        record = c.outsider.commitment_record(commitment)
        assert record is not None
        assert (record.platform, record.block_number) == (c.wechat.address, outcome.block_number)
        assert c.outsider.is_committed(commitment) and c.outsider.commitment_count() == 1
        for platform in (c.wechat, c.unionpay):
            with reverts("Commitment_AlreadyRecorded", commitment):
                platform.commit(commitment)
        assert c.outsider.commitment_record(b32("C2")) is None

    def test_only_active_platforms_commit(self, c: Consortium) -> None:
        behaves_like_platform_only(c, lambda ch: ch.commit(b32("C")))

    def test_one_sender_many_transactions(self, c: Consortium) -> None:
        """Nonces are allocated per sender, also for transactions sent from several threads."""
        errors: list[BaseException] = []

        def send(i: int) -> None:
            try:
                c.unionpay.commit(b32(f"burst-{i}"))
            except BaseException as exc:  # collected and re-raised in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for i in range(8, 12):
            c.unionpay.commit(b32(f"burst-{i}"))
        assert c.outsider.commitment_count() == 12

    def test_several_senders_and_readers_at_once(self, c: Consortium) -> None:
        """Clients with no lock in common (as several nodes in one process on the embedded
        chain) send and read at the same time: every transaction lands, every read answers."""
        errors: list[BaseException] = []
        before = c.outsider.commitment_count()

        def send(platform: LedgerChain, label: str) -> None:
            try:
                for i in range(6):
                    platform.commit(b32(f"{label}-{i}"))
            except BaseException as exc:  # collected and re-raised in the main thread
                errors.append(exc)

        def read() -> None:
            try:
                for _ in range(30):
                    c.outsider.commitment_count()
                    c.outsider.block_number()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(c.unionpay, "together-u")),
                   threading.Thread(target=send, args=(c.wechat, "together-w")),
                   threading.Thread(target=read), threading.Thread(target=read)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert c.outsider.commitment_count() == before + 12

    # ------------------------------------------------------------------ disclosures

    def test_disclosure_request_and_fulfilment(self, c: Consortium) -> None:
        commitment, case = b32("C-7"), b32("case-2026-001")
        rid, outcome = c.pboc.request_disclosure(c.wechat.address, commitment, case)
        assert rid == 1
        assert outcome.event("DisclosureRequested").args == {
            "requestId": 1, "regulator": c.pboc.address, "platform": c.wechat.address,
            "commitment": commitment, "caseId": case,
        }
        pending = c.outsider.disclosure_request(rid)
        assert (pending.fulfilled, pending.requested_block) == (False, outcome.block_number)
        digest = b32("sm3(enc opening)")
        done = c.wechat.fulfil_disclosure(rid, digest)
        assert done.event("DisclosureFulfilled").args == {
            "requestId": rid, "platform": c.wechat.address, "responseDigest": digest,
        }
        request = c.outsider.disclosure_request(rid)
        assert (request.regulator, request.platform, request.commitment, request.case_id) == (
            c.pboc.address, c.wechat.address, commitment, case,
        )
        assert (request.fulfilled, request.fulfilled_block, request.response_digest) == (
            True, done.block_number, digest,
        )
        c.pboc.request_disclosure(c.unionpay.address, b32("C-8"), case)
        assert [r.id for r in c.outsider.disclosure_requests()] == [1, 2]

    def test_only_regulators_request_and_only_from_platforms(self, c: Consortium) -> None:
        for caller in (c.unionpay, c.auditor, c.outsider):
            with reverts("Membership_NotRegulator", caller.address):
                caller.request_disclosure(c.wechat.address, b32("C"), b32("case"))
        for target in (c.pboc, c.auditor, c.outsider):
            with reverts("Disclosure_TargetNotPlatform", target.address):
                c.pboc.request_disclosure(target.address, b32("C"), b32("case"))

    def test_fulfilment_rejections(self, c: Consortium) -> None:
        rid, _ = c.pboc.request_disclosure(c.wechat.address, b32("C"), b32("case"))
        with reverts("Disclosure_UnknownRequest", 2):
            c.wechat.fulfil_disclosure(2, b32("d"))
        with reverts("Disclosure_UnknownRequest", 5):
            c.outsider.disclosure_request(5)
        with reverts("Disclosure_NotAddressee", rid, c.wechat.address, c.unionpay.address):
            c.unionpay.fulfil_disclosure(rid, b32("d"))
        behaves_like_platform_only(c, lambda ch: ch.fulfil_disclosure(rid, b32("d")))
        c.wechat.fulfil_disclosure(rid, b32("d"))
        with reverts("Disclosure_AlreadyFulfilled", rid):
            c.wechat.fulfil_disclosure(rid, b32("d2"))

    def test_revert_of_a_mined_transaction_is_decoded(self, c: Consortium) -> None:
        """A transaction that passes estimation but fails when mined (state moved meanwhile,
        here forced by skipping estimation) is replayed to name its custom error."""
        contract = c.outsider.w3.eth.contract(
            address=c.deployment.address, abi=list(c.outsider._artifact.abi)
        )
        tx = {
            "to": c.deployment.address,
            "data": contract.encode_abi("commit", [b32("C")]),
            "from": c.outsider.address,
            "chainId": c.outsider.chain_id,
            "gas": 100_000,
            **c.outsider._fee_fields(),
        }
        account = c.outsider.account
        assert account is not None
        with reverts("Membership_NotPlatform", c.outsider.address):
            c.outsider._sign_and_send(account, tx, contract_events=True)
        c.unionpay.commit(b32("after"))  # the sender's nonce bookkeeping is still right
        c.outsider.fund(c.spare.address, 1, c.outsider.account)

    # ------------------------------------------------------------------ gas

    def test_gas_per_anchor_and_per_commit(self, c: Consortium) -> None:
        """Prints the figures quoted in docs/contracts.md; bounds are sanity checks only."""
        log, sig = b32("gas-log"), os.urandom(64)
        first = c.unionpay.anchor_checkpoint(log, 1, b32("r"), 1, sig)
        later = [c.unionpay.anchor_checkpoint(log, n, b32(f"r{n}"), n, sig) for n in (2, 3)]
        commit = c.unionpay.commit(b32("gas-commit"))
        print(
            f"\ngas: first anchor of a log {first.gas_used}, later anchors "
            f"{[o.gas_used for o in later]}, direct commit {commit.gas_used}"
        )
        assert first.gas_used < 250_000
        assert all(o.gas_used < 150_000 for o in later)
        assert commit.gas_used < 100_000


class TestOnEthTester(ContractBehaviour):
    """The suite on the embedded eth-tester (py-evm) chain."""

    @pytest.fixture(scope="class")
    @classmethod
    def chain(cls, eth_tester_chain: LedgerChain) -> LedgerChain:
        return eth_tester_chain


@pytest.mark.anvil
class TestOnAnvil(ContractBehaviour):
    """The suite on a separate anvil JSON-RPC node."""

    @pytest.fixture(scope="class")
    @classmethod
    def chain(cls, anvil_chain: LedgerChain) -> LedgerChain:
        return anvil_chain
