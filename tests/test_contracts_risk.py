"""The risk-device list of the JointLedger contract (RiskDevices.sol and its governance
proposal) through :class:`LedgerChain`, on the eth-tester chain and on anvil.

Every rejection is asserted by its custom error's name and arguments, every success by the
events it emits and the state it leaves. The entries and ciphertexts here are stand-in
bytes: the contract never interprets them (the SDK's tests use real keys and HMACs).
"""

from __future__ import annotations

import os

import pytest
from test_contracts import Consortium as Parties
from test_contracts import (
    ContractBehaviour,
    b32,
    execute_with_votes,
    key64,
    reverts,
)

from ledger_node.chain.adapter import LedgerChain, ProposalKind, Role
from ledger_node.chain.contracts import load_artifact


def ct(label: str) -> bytes:
    """A stand-in key-ring ciphertext (the size of a real one for a one-key ring)."""
    return label.encode().ljust(170, b"\x01")


def open_epoch(c: Parties, epoch: int = 1) -> None:
    """pboc delivers ``epoch`` to both platforms and itself."""
    c.pboc.set_list_keys(epoch, {p.address: ct(f"{p.address}/{epoch}")
                                 for p in (c.unionpay, c.wechat, c.pboc)})


class RiskListBehaviour:
    """The backend-agnostic suite; subclasses provide the session ``chain`` fixture."""

    accounts = ContractBehaviour.accounts
    c = ContractBehaviour.c

    # ------------------------------------------------------------------ list keys

    def test_list_keys_open_epochs_and_are_readable(self, c: Parties) -> None:
        assert (c.outsider.list_epoch(), c.outsider.list_epoch_open()) == (0, False)
        keys = {c.unionpay.address: ct("u1"), c.wechat.address: ct("w1"), c.pboc.address: ct("p1")}
        outcome = c.pboc.set_list_keys(1, keys)
        assert outcome.event_names() == ["ListEpochOpened"] + ["ListKeySet"] * 3
        assert outcome.event("ListEpochOpened").args == {"epoch": 1, "regulator": c.pboc.address}
        delivered = [(e.args["epoch"], e.args["account"], e.args["regulator"])
                     for e in outcome.events[1:]]
        assert delivered == [(1, a, c.pboc.address) for a in keys]
        assert (c.outsider.list_epoch(), c.outsider.list_epoch_open()) == (1, True)
        for account, ciphertext in keys.items():
            assert c.outsider.list_key(account, 1) == ciphertext
        assert c.outsider.list_key(c.auditor.address, 1) is None
        assert c.outsider.list_key(c.unionpay.address, 2) is None
        # A member admitted later gets the current epoch's ring without a new epoch.
        execute_with_votes(c, c.unionpay.propose_add_member(c.spare.address, Role.PLATFORM,
                                                            "jd", key64()))
        late = c.pboc.set_list_keys(1, {c.spare.address: ct("s1")})
        assert late.event_names() == ["ListKeySet"]
        assert c.outsider.list_key(c.spare.address, 1) == ct("s1")
        # The next epoch keeps the old deliveries readable.
        second = c.pboc.set_list_keys(2, {c.unionpay.address: ct("u2")})
        assert second.event_names() == ["ListEpochOpened", "ListKeySet"]
        assert c.outsider.list_epoch() == 2
        assert c.outsider.list_key(c.unionpay.address, 1) == ct("u1")
        assert c.outsider.list_key(c.unionpay.address, 2) == ct("u2")

    def test_list_key_rejections(self, c: Parties) -> None:
        one = {c.unionpay.address: ct("u")}
        for caller in (c.unionpay, c.auditor, c.outsider):
            with reverts("Membership_NotRegulator", caller.address):
                caller.set_list_keys(1, one)
        with reverts("RiskList_WrongEpoch", 0, 0):
            c.pboc.set_list_keys(0, one)
        with reverts("RiskList_WrongEpoch", 2, 0):
            c.pboc.set_list_keys(2, one)
        for account in (c.auditor.address, c.outsider.address):
            with reverts("RiskList_NotKeyHolder", account):
                c.pboc.set_list_keys(1, {account: ct("x")})
        with reverts("RiskList_EmptyCiphertext", c.wechat.address):
            c.pboc.set_list_keys(1, {c.unionpay.address: ct("u"), c.wechat.address: b""})
        assert c.outsider.list_epoch() == 0  # every rejected call left no trace
        c.pboc.set_list_keys(1, one)
        with reverts("RiskList_KeyAlreadySet", 1, c.unionpay.address):
            c.pboc.set_list_keys(1, one)
        with reverts("RiskList_WrongEpoch", 0, 1):
            c.pboc.set_list_keys(0, {c.wechat.address: ct("w")})
        with reverts("RiskList_WrongEpoch", 3, 1):
            c.pboc.set_list_keys(3, {c.wechat.address: ct("w")})
        contract = c.pboc.w3.eth.contract(address=c.deployment.address,
                                          abi=list(load_artifact().abi))
        with reverts("RiskList_LengthMismatch", 2, 1):
            c.pboc._send(contract.functions.setListKeys(
                1, [c.wechat.address, c.pboc.address], [ct("w")]))
        execute_with_votes(c, c.unionpay.propose_remove_member(c.wechat.address))
        with reverts("RiskList_NotKeyHolder", c.wechat.address):
            c.pboc.set_list_keys(2, {c.wechat.address: ct("w2")})

    # ------------------------------------------------------------------ entries

    def test_add_lookup_and_count(self, c: Parties) -> None:
        open_epoch(c)
        entry = b32("device-1")
        outcome = c.unionpay.add_risk_device(entry, 1, 3)
        assert outcome.event_names() == ["RiskDeviceAdded"]
        assert outcome.event("RiskDeviceAdded").args == {
            "entry": entry, "adder": c.unionpay.address, "reason": 3, "epoch": 1,
        }
        record = c.outsider.risk_device(entry)
        assert record is not None
        assert (record.adder, record.reason, record.epoch, record.block_number) == (
            c.unionpay.address, 3, 1, outcome.block_number,
        )
        assert c.outsider.risk_device(b32("device-2")) is None
        c.pboc.add_risk_device(b32("device-2"), 1, 6)  # a regulator lists too
        batch = [b32(f"batch-{i}") for i in range(5)]
        many = c.wechat.add_risk_devices(batch, 1, [1, 2, 3, 4, 5])
        assert many.event_names() == ["RiskDeviceAdded"] * 5
        assert [e.args["reason"] for e in many.events] == [1, 2, 3, 4, 5]
        assert c.outsider.risk_device_count() == 7
        assert c.outsider.risk_device(batch[4]) is not None

    def test_add_rejections(self, c: Parties) -> None:
        entry = b32("d")
        with reverts("RiskList_WrongEpoch", 0, 0):
            c.unionpay.add_risk_device(entry, 0, 1)
        with reverts("RiskList_WrongEpoch", 1, 0):
            c.unionpay.add_risk_device(entry, 1, 1)
        open_epoch(c)
        with reverts("Membership_NotVoter", c.auditor.address):
            c.auditor.add_risk_device(entry, 1, 1)
        with reverts("Membership_NotActiveMember", c.outsider.address):
            c.outsider.add_risk_device(entry, 1, 1)
        with reverts("RiskList_WrongEpoch", 2, 1):
            c.unionpay.add_risk_device(entry, 2, 1)
        for reason in (0, 7, 255):
            with reverts("RiskList_UnknownReason", reason):
                c.unionpay.add_risk_device(entry, 1, reason)
        c.unionpay.add_risk_device(entry, 1, 1)
        for member in (c.unionpay, c.wechat):
            with reverts("RiskList_AlreadyListed", entry):
                member.add_risk_device(entry, 1, 2)
        with reverts("RiskList_LengthMismatch", 2, 1):
            c.wechat.add_risk_devices([b32("x"), b32("y")], 1, [1])
        with reverts("RiskList_UnknownReason", 9):
            c.wechat.add_risk_devices([b32("x"), b32("y")], 1, [1, 9])
        with reverts("RiskList_AlreadyListed", b32("x")):
            c.wechat.add_risk_devices([b32("x"), b32("x")], 1, [1, 1])
        with reverts("RiskList_AlreadyListed", entry):
            c.wechat.add_risk_devices([b32("x"), entry], 1, [1, 1])
        assert c.outsider.risk_device_count() == 1  # the failed batches left nothing

    def test_the_adder_removes_its_entry(self, c: Parties) -> None:
        open_epoch(c)
        entry = b32("d")
        c.unionpay.add_risk_device(entry, 1, 2)
        with reverts("RiskList_NotAdder", entry, c.unionpay.address, c.wechat.address):
            c.wechat.remove_risk_device(entry)
        with reverts("RiskList_NotAdder", entry, c.unionpay.address, c.pboc.address):
            c.pboc.remove_risk_device(entry)
        with reverts("Membership_NotVoter", c.auditor.address):
            c.auditor.remove_risk_device(entry)
        with reverts("Membership_NotActiveMember", c.outsider.address):
            c.outsider.remove_risk_device(entry)
        outcome = c.unionpay.remove_risk_device(entry)
        assert outcome.event_names() == ["RiskDeviceRemoved"]
        assert outcome.event("RiskDeviceRemoved").args == {
            "entry": entry, "adder": c.unionpay.address, "remover": c.unionpay.address,
            "proposalId": 0,
        }
        assert c.outsider.risk_device(entry) is None and c.outsider.risk_device_count() == 0
        with reverts("RiskList_NotListed", entry):
            c.unionpay.remove_risk_device(entry)
        with reverts("RiskList_NotListed", b32("never")):
            c.unionpay.remove_risk_device(b32("never"))
        c.wechat.add_risk_device(entry, 1, 5)  # once removed, anyone may list it again
        assert c.outsider.risk_device(entry).adder == c.wechat.address  # type: ignore[union-attr]

    def test_governance_removes_any_entry(self, c: Parties) -> None:
        open_epoch(c)
        entry = b32("d")
        c.wechat.add_risk_device(entry, 1, 4)
        with reverts("RiskList_NotListed", b32("never")):
            c.unionpay.propose_remove_risk_device(b32("never"))
        with reverts("Membership_NotVoter", c.auditor.address):
            c.auditor.propose_remove_risk_device(entry)
        with reverts("Membership_NotActiveMember", c.outsider.address):
            c.outsider.propose_remove_risk_device(entry)
        pid, created = c.unionpay.propose_remove_risk_device(entry)
        assert created.event("ProposalCreated").args == {
            "id": pid, "kind": ProposalKind.REMOVE_RISK_DEVICE, "proposer": c.unionpay.address,
            "account": c.wechat.address,
        }
        proposal = c.outsider.proposal(pid)
        assert (proposal.kind, proposal.account, proposal.risk_entry, proposal.executed) == (
            ProposalKind.REMOVE_RISK_DEVICE, c.wechat.address, entry, False,
        )
        assert c.outsider.risk_device(entry) is not None  # one approval of two
        outcome = c.pboc.approve(pid)
        assert outcome.event_names() == ["ProposalApproved", "ProposalExecuted",
                                         "RiskDeviceRemoved"]
        assert outcome.event("RiskDeviceRemoved").args == {
            "entry": entry, "adder": c.wechat.address, "remover": c.pboc.address,
            "proposalId": pid,
        }
        assert c.outsider.risk_device(entry) is None
        assert c.outsider.proposal(pid).risk_entry == entry

    def test_governance_removal_of_an_entry_removed_meanwhile_reverts(self, c: Parties) -> None:
        open_epoch(c)
        entry = b32("d")
        c.wechat.add_risk_device(entry, 1, 4)
        pid, _ = c.unionpay.propose_remove_risk_device(entry)
        c.wechat.remove_risk_device(entry)
        with reverts("RiskList_NotListed", entry):
            c.pboc.approve(pid)
        assert not c.outsider.proposal(pid).executed

    def test_a_removed_adder_can_only_be_overruled_by_governance(self, c: Parties) -> None:
        open_epoch(c)
        entry = b32("d")
        c.wechat.add_risk_device(entry, 1, 1)
        execute_with_votes(c, c.unionpay.propose_remove_member(c.wechat.address))
        with reverts("Membership_NotActiveMember", c.wechat.address):
            c.wechat.remove_risk_device(entry)
        execute_with_votes(c, c.unionpay.propose_remove_risk_device(entry))
        assert c.outsider.risk_device(entry) is None

    # ------------------------------------------------------------------ epochs and membership

    def test_removing_a_key_holder_closes_the_epoch(self, c: Parties) -> None:
        open_epoch(c)
        c.unionpay.add_risk_device(b32("old"), 1, 1)
        pid, _ = c.unionpay.propose_remove_member(c.wechat.address)
        outcome = c.pboc.approve(pid)
        assert outcome.event_names()[-2:] == ["MemberRemoved", "ListEpochClosed"]
        assert outcome.event("ListEpochClosed").args == {"epoch": 1}
        assert (c.outsider.list_epoch(), c.outsider.list_epoch_open()) == (1, False)
        with reverts("RiskList_EpochClosed", 1):
            c.unionpay.add_risk_device(b32("new"), 1, 1)
        with reverts("RiskList_EpochClosed", 1):
            c.unionpay.add_risk_devices([b32("new")], 1, [1])
        c.pboc.set_list_keys(2, {c.unionpay.address: ct("u2"), c.pboc.address: ct("p2")})
        assert c.outsider.list_epoch_open()
        with reverts("RiskList_WrongEpoch", 1, 2):
            c.unionpay.add_risk_device(b32("new"), 1, 1)
        c.unionpay.add_risk_device(b32("new"), 2, 1)
        assert c.outsider.risk_device(b32("old")).epoch == 1  # type: ignore[union-attr]
        assert c.outsider.risk_device(b32("new")).epoch == 2  # type: ignore[union-attr]

    def test_rotating_a_key_holders_key_closes_the_epoch(self, c: Parties) -> None:
        open_epoch(c)
        outcome = c.pboc.approve(c.unionpay.propose_rotate_key(c.unionpay.address, key64())[0])
        assert outcome.event_names()[-2:] == ["KeyRotated", "ListEpochClosed"]
        assert not c.outsider.list_epoch_open()
        with reverts("RiskList_EpochClosed", 1):
            c.wechat.add_risk_device(b32("d"), 1, 1)

    def test_auditor_changes_and_admissions_leave_the_epoch_open(self, c: Parties) -> None:
        open_epoch(c)
        changes = [
            c.unionpay.propose_rotate_key(c.auditor.address, key64()),
            c.unionpay.propose_remove_member(c.auditor.address),
            c.unionpay.propose_add_member(c.spare.address, Role.PLATFORM, "jd", key64()),
        ]
        for change in changes:
            outcome = c.pboc.approve(change[0])
            assert "ListEpochClosed" not in outcome.event_names()
        assert c.outsider.list_epoch_open()
        c.wechat.add_risk_device(b32("d"), 1, 1)

    def test_raw_view_reverts_for_unlisted_entries(self, c: Parties) -> None:
        """The adapter checks ``isRiskDeviceListed`` first; other callers get the error."""
        contract = c.outsider.w3.eth.contract(address=c.deployment.address,
                                              abi=list(load_artifact().abi))
        with reverts("RiskList_NotListed", b32("never")):
            c.outsider._call(contract.functions.riskDevice(b32("never")))

    def test_risk_list_events_come_in_chain_order(self, c: Parties) -> None:
        start = c.outsider.block_number() + 1
        open_epoch(c)
        c.unionpay.add_risk_device(b32("a"), 1, 1)
        c.unionpay.remove_risk_device(b32("a"))
        c.unionpay.add_risk_device(b32("a"), 1, 2)
        c.unionpay.commit(b32("not a risk event"))
        events = c.outsider.risk_list_events(start, c.outsider.block_number())
        assert [e.name for e in events] == (
            ["ListEpochOpened"] + ["ListKeySet"] * 3
            + ["RiskDeviceAdded", "RiskDeviceRemoved", "RiskDeviceAdded"]
        )
        assert [e.args["reason"] for e in events if e.name == "RiskDeviceAdded"] == [1, 2]
        # The fast decoder agrees with web3's generic one, argument by argument.
        generic = sorted((e for name in {e.name for e in events}
                          for e in c.outsider.events(name, start)),
                         key=lambda e: (e.block_number, e.log_index))
        assert events == generic

    # ------------------------------------------------------------------ gas

    def test_gas_of_the_risk_list(self, c: Parties) -> None:
        """Prints the figures quoted in docs/contracts.md; bounds are sanity checks only."""
        holders = {p.address: os.urandom(171) for p in (c.unionpay, c.wechat, c.pboc)}
        keys = c.pboc.set_list_keys(1, holders)
        one = c.unionpay.add_risk_device(b32("g1"), 1, 1)
        batch = c.unionpay.add_risk_devices([b32(f"b{i}") for i in range(100)], 1, [3] * 100)
        removal = c.unionpay.remove_risk_device(b32("g1"))
        c.wechat.add_risk_device(b32("g2"), 1, 2)
        pid, proposed = c.unionpay.propose_remove_risk_device(b32("g2"))
        executed = c.pboc.approve(pid)
        print(
            f"\ngas: setListKeys 3 holders {keys.gas_used}, addRiskDevice {one.gas_used}, "
            f"addRiskDevices x100 {batch.gas_used} ({batch.gas_used // 100}/entry), "
            f"removeRiskDevice {removal.gas_used}, proposeRemoveRiskDevice "
            f"{proposed.gas_used}, approve that removes {executed.gas_used}"
        )
        assert one.gas_used < 100_000
        assert batch.gas_used < 100 * 40_000
        assert removal.gas_used < one.gas_used


class TestRiskListOnEthTester(RiskListBehaviour):
    """The suite on the embedded eth-tester (py-evm) chain."""

    @pytest.fixture(scope="class")
    @classmethod
    def chain(cls, eth_tester_chain: LedgerChain) -> LedgerChain:
        return eth_tester_chain


@pytest.mark.anvil
class TestRiskListOnAnvil(RiskListBehaviour):
    """The suite on a separate anvil JSON-RPC node."""

    @pytest.fixture(scope="class")
    @classmethod
    def chain(cls, anvil_chain: LedgerChain) -> LedgerChain:
        return anvil_chain
