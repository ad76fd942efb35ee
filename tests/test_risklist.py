"""The risk-device list SDK: fingerprints, reason codes, entries, key rings (pure), and
:class:`RiskList` syncing, checking, adding and removing on the embedded chain with real
SM2 keys, including key epochs across member removal, key rotation and admission."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from gmssl import func as gm_func
from gmssl import sm3 as gm_sm3

from ledger_node.chain.adapter import LedgerChain, Role
from ledger_node.crypto import gmcrypto
from ledger_node.crypto.encoding import encode_parts
from ledger_node.crypto.hashes import sm3
from ledger_node.demo.run import Party, new_party
from ledger_node.errors import (
    ContractRevert,
    InvalidFingerprint,
    InvalidListKey,
    ListKeyUnavailable,
    RiskDeviceAlreadyListed,
    RiskDeviceNotListed,
    RiskListError,
    UnknownRiskReason,
)
from ledger_node.protocol import riskdevice
from ledger_node.protocol.riskdevice import (
    ListKeyRing,
    RiskReason,
    entry_function,
    normalise_fingerprint,
    open_ring,
    parse_reason,
    risk_entry,
    seal_ring,
)
from ledger_node.protocol.risklist import (
    RiskList,
    current_ring,
    deliver_list_key,
    distribute_list_key,
    key_holders,
)
from tests.api_support import Consortium, make_consortium

IMEI = "imei:490154203237518"

# ---------------------------------------------------------------------- fingerprints

NORMAL_FORMS = [
    ("imei:490154203237518", "imei:490154203237518"),
    ("  IMEI : 49-015420-323751-8 ", "imei:490154203237518"),
    ("imei:4901 5420 3237 518", "imei:490154203237518"),
    ("imei:49/015420/323751/8", "imei:490154203237518"),
    ("MEID:A0000000-002329", "meid:a0000000002329"),
    ("android_id:9774D56D682E549C", "android_id:9774d56d682e549c"),
    ("android_id:74d56d682e549c", "android_id:0074d56d682e549c"),
    ("idfv:E621E1F8-C36C-495A-93FC-0C247A3E6E5F", "idfv:e621e1f8-c36c-495a-93fc-0c247a3e6e5f"),
    ("idfv:e621e1f8c36c495a93fc0c247a3e6e5f", "idfv:e621e1f8-c36c-495a-93fc-0c247a3e6e5f"),
    ("oaid:DF7EFF3C-1B2A-4F4E-9C2D-3A5B6C7D8E9F", "oaid:df7eff3c-1b2a-4f4e-9c2d-3a5b6c7d8e9f"),
    ("device_id:SDK-FP/Abc:123", "device_id:sdk-fp/abc:123"),
    ("Device_ID:x", "device_id:x"),
]


@pytest.mark.parametrize(("text", "normal"), NORMAL_FORMS)
def test_fingerprints_have_one_normal_form(text: str, normal: str) -> None:
    assert normalise_fingerprint(text) == normal
    assert normalise_fingerprint(normal) == normal  # idempotent


BAD_FINGERPRINTS: list[tuple[Any, str]] = [
    (None, "must be a string"),
    (490154203237518, "must be a string"),
    (b"imei:490154203237518", "must be a string"),
    ("", "KIND:VALUE"),
    ("490154203237518", "KIND:VALUE"),
    ("imsi:460001234567890", "unknown kind"),
    (":490154203237518", "unknown kind"),
    ("imei:", "15 digits"),
    ("imei:49015420323751", "15 digits"),
    ("imei:4901542032375180", "15 digits"),
    ("imei:49015420323751X", "15 digits"),
    ("meid:a000000000232", "14 hex"),
    ("meid:g0000000002329", "14 hex"),
    ("android_id:9774d56d682e549c0", "1 to 16 hex"),
    ("android_id:", "1 to 16 hex"),
    ("idfv:e621e1f8-c36c-495a-93fc", "UUID"),
    ("oaid:xyz", "hex digits and '-'"),
    ("oaid:" + "a" * 65, "hex digits and '-'"),
    ("device_id:", "printable ASCII"),
    ("device_id:has space", "printable ASCII"),
    ("device_id:tab\there", "printable ASCII"),
    ("device_id:" + "x" * 129, "printable ASCII"),
    ("device_id:设备", "ASCII"),
    ("imei:４９０１５４２０３２３７５１８", "ASCII"),
    ("device_id:" + "x" * 151, "longer than 160"),
    ("imei:000000000000000", "placeholder"),
    ("oaid:00000000-0000-0000-0000-000000000000", "placeholder"),
    ("idfv:00000000-0000-0000-0000-000000000000", "placeholder"),
    ("android_id:0", "placeholder"),
    ("device_id:0-0", "placeholder"),
]


@pytest.mark.parametrize(("text", "reason"), BAD_FINGERPRINTS)
def test_malformed_fingerprints_are_named(text: Any, reason: str) -> None:
    with pytest.raises(InvalidFingerprint, match=reason) as info:
        normalise_fingerprint(text)
    assert info.value.index is None


# ---------------------------------------------------------------------- reasons


@pytest.mark.parametrize(("value", "reason"), [
    (1, RiskReason.FRAUD), ("account_takeover", RiskReason.ACCOUNT_TAKEOVER),
    ("MONEY-MULE", RiskReason.MONEY_MULE), (" gambling ", RiskReason.GAMBLING),
    ("5", RiskReason.DEVICE_FARM), (RiskReason.STOLEN_DEVICE, RiskReason.STOLEN_DEVICE),
])
def test_reasons_by_code_or_name(value: object, reason: RiskReason) -> None:
    assert parse_reason(value) is reason


@pytest.mark.parametrize("value", [0, 7, -1, 255, True, 1.0, None, "", "fraudd", "0", "7"])
def test_unknown_reasons_are_rejected(value: object) -> None:
    with pytest.raises(UnknownRiskReason, match="unknown risk reason") as info:
        parse_reason(value)
    assert info.value.value == value


def test_reason_codes_match_the_contract_range() -> None:
    assert [int(r) for r in RiskReason] == [1, 2, 3, 4, 5, 6]
    assert [r.label for r in RiskReason][:3] == ["fraud", "account_takeover", "money_mule"]


# ---------------------------------------------------------------------- entries


def gmssl_hmac_sm3(key: bytes, message: bytes) -> bytes:
    """HMAC (RFC 2104) over gmssl's pure-Python SM3: independent of OpenSSL."""
    def h(data: bytes) -> bytes:
        return bytes.fromhex(gm_sm3.sm3_hash(gm_func.bytes_to_list(data)))
    padded = key.ljust(64, b"\0")
    inner = h(bytes(b ^ 0x36 for b in padded) + message)
    return h(bytes(b ^ 0x5C for b in padded) + inner)


def test_entries_are_hmac_sm3_of_the_tagged_fingerprint() -> None:
    key = bytes(range(32))
    message = encode_parts("risk-device", IMEI.encode())
    expected = gmssl_hmac_sm3(key, message)
    assert riskdevice.entry_input(IMEI) == message
    assert entry_function(key)(IMEI) == expected
    assert riskdevice._entry_function_cryptography(key)(IMEI) == expected
    reference = crypto_hmac.HMAC(key, hashes.SM3())
    reference.update(message)
    assert reference.finalize() == expected
    assert risk_entry(key, " IMEI:4901-5420-3237-518") == expected
    assert len(expected) == 32


def test_entries_depend_on_key_and_fingerprint_only_through_the_hmac() -> None:
    key, other = bytes(32), bytes([1]) + bytes(31)
    entry = risk_entry(key, IMEI)
    assert entry != risk_entry(other, IMEI)
    assert entry != risk_entry(key, "imei:490154203237519")
    normal = IMEI.encode()
    for plain in (sm3(normal), hashlib.sha256(normal).digest(), sm3(riskdevice.entry_input(IMEI))):
        assert entry != plain
    with pytest.raises(InvalidListKey, match="32 bytes"):
        entry_function(bytes(16))


# ---------------------------------------------------------------------- key rings

CONTRACT = "0x2def75a2294B2F755fc2CEe05f896C11eF44A21d"


def test_rings_round_trip_and_are_bound_to_chain_contract_and_epoch() -> None:
    member = gmcrypto.generate_private_key()
    ring = ListKeyRing(()).extended().extended()
    assert ring.epoch == 2 and "keys" not in repr(ring) and ring.keys[0].hex() not in repr(ring)
    sealed = seal_ring(member.public_key(), ring, 7, CONTRACT)
    assert open_ring([member], sealed, chain_id=7, contract=CONTRACT, epoch=2) == ring
    retired = gmcrypto.generate_private_key()
    assert open_ring([retired, member], sealed, chain_id=7, contract=CONTRACT, epoch=2) == ring
    for chain_id, contract, epoch in ((8, CONTRACT, 2), (7, "0x" + "11" * 20, 2),
                                      (7, CONTRACT, 1), (7, CONTRACT, 3)):
        with pytest.raises(InvalidListKey, match="not a ring of epoch"):
            open_ring([member], sealed, chain_id=chain_id, contract=contract, epoch=epoch)
    with pytest.raises(InvalidListKey, match="does not decrypt"):
        open_ring([retired], sealed, chain_id=7, contract=CONTRACT, epoch=2)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(InvalidListKey, match="does not decrypt"):
        open_ring([member], bytes(tampered), chain_id=7, contract=CONTRACT, epoch=2)
    with pytest.raises(InvalidListKey, match="empty"):
        seal_ring(member.public_key(), ListKeyRing(()), 7, CONTRACT)
    with pytest.raises(InvalidListKey, match="32 bytes"):
        ListKeyRing((b"short",))


def test_rings_extend_their_predecessors() -> None:
    one = ListKeyRing(()).extended()
    two = one.extended()
    assert two.extends(one) and two.key(1) == one.key(1) and two.key(2) != two.key(1)
    assert not ListKeyRing(()).extended().extended().extends(one)
    for epoch in (0, 3):
        with pytest.raises(KeyError):
            two.key(epoch)


# ---------------------------------------------------------------------- on chain


def chain_of(c: Consortium, party: Party) -> LedgerChain:
    return c.as_party(party)


def risk_list_of(c: Consortium, party: Party, *keys: gmcrypto.SM2PrivateKey) -> RiskList:
    return RiskList(c.as_party(party), list(keys) or party.sm2_key)


@pytest.fixture
def c() -> Consortium:
    """A fresh consortium (unionpay, wechatpay, pboc 2-of-3, auditor) with epoch 1 open."""
    consortium = make_consortium(LedgerChain.embedded())
    distribute_list_key(consortium.as_party(consortium.pboc), consortium.pboc.sm2_key)
    return consortium


def vote(c: Consortium, proposal: tuple[int, Any]) -> None:
    """Have pboc approve ``proposal`` (2 of 3 with the proposer)."""
    c.as_party(c.pboc).approve(proposal[0])


def test_members_list_and_check_each_others_devices(c: Consortium) -> None:
    unionpay, wechat = risk_list_of(c, c.unionpay), risk_list_of(c, c.wechatpay)
    hit, outcome = unionpay.add(" IMEI:4901-5420-3237-518", "fraud")
    assert (hit.fingerprint, hit.reason, hit.adder, hit.epoch) == (
        IMEI, RiskReason.FRAUD, c.unionpay.account.address, 1)
    assert hit.block_number == outcome.block_number
    assert hit.entry == risk_entry(current_ring(chain_of(c, c.pboc), [c.pboc.sm2_key],
                                                c.pboc.account.address).key(1), IMEI)
    report = wechat.sync()
    assert (report.added, report.removed, report.epoch, report.key_epoch) == (1, 0, 1, 1)
    assert wechat.check("imei:49015420 3237518") == hit
    assert wechat.check("imei:490154203237519") is None
    hits, _ = wechat.add_many([(f"device_id:farm-{i}", RiskReason.DEVICE_FARM)
                               for i in range(20)])
    assert [h.reason for h in hits] == [RiskReason.DEVICE_FARM] * 20
    unionpay.sync()
    batch = unionpay.check_many([f"device_id:FARM-{i}" for i in range(30)] + [IMEI])
    assert [h is not None for h in batch] == [True] * 20 + [False] * 10 + [True]
    assert len(unionpay) == len(wechat) == 21
    regulator = risk_list_of(c, c.pboc)
    regulator.sync()
    assert regulator.check(IMEI) == hit  # the regulator holds the key too


def test_sync_is_incremental_and_follows_removals(c: Consortium) -> None:
    unionpay, wechat = risk_list_of(c, c.unionpay), risk_list_of(c, c.wechatpay)
    first = wechat.sync()
    assert first.to_block == wechat.synced_block == chain_of(c, c.pboc).block_number()
    again = wechat.sync()
    assert (again.from_block, again.to_block, again.added) == (first.to_block + 1,
                                                              first.to_block, 0)
    unionpay.add(IMEI, 3)
    unionpay.remove(IMEI)
    unionpay.add(IMEI, 4)
    report = wechat.sync()
    assert (report.added, report.removed) == (2, 1)
    listed = wechat.check(IMEI)
    assert listed is not None and listed.reason is RiskReason.GAMBLING
    _, outcome = unionpay.remove(IMEI)
    assert outcome.event_names() == ["RiskDeviceRemoved"]
    assert wechat.sync().removed == 1 and wechat.check(IMEI) is None and len(wechat) == 0


def test_sdk_rejections(c: Consortium) -> None:
    unionpay, wechat = risk_list_of(c, c.unionpay), risk_list_of(c, c.wechatpay)
    head = chain_of(c, c.pboc).block_number()
    with pytest.raises(UnknownRiskReason):
        unionpay.add(IMEI, 7)
    with pytest.raises(UnknownRiskReason):
        unionpay.add(IMEI, "phishing")
    with pytest.raises(InvalidFingerprint, match=r"\[1\]") as info:
        unionpay.add_many([(IMEI, 1), ("imei:123", 1)])
    assert info.value.index == 1
    with pytest.raises(InvalidFingerprint, match="no fingerprints"):
        unionpay.add_many([])
    with pytest.raises(RiskDeviceAlreadyListed, match="repeats"):
        unionpay.add_many([(IMEI, 1), (" imei:490154203237518", 2)])
    with pytest.raises(InvalidFingerprint, match=r"\[2\]"):
        unionpay.check_many([IMEI, IMEI, "imei:x"])
    with pytest.raises(RiskDeviceNotListed):
        unionpay.remove(IMEI)
    with pytest.raises(RiskDeviceNotListed):
        unionpay.propose_removal(IMEI)
    assert chain_of(c, c.pboc).block_number() == head  # nothing was sent
    unionpay.add(IMEI, 1)
    for member in (unionpay, wechat):
        with pytest.raises(RiskDeviceAlreadyListed, match="already listed"):
            member.add(IMEI, 2)
    with pytest.raises(ContractRevert) as revert:
        wechat.remove(IMEI)
    assert revert.value.name == "RiskList_NotAdder"


def test_governance_removes_another_members_entry(c: Consortium) -> None:
    unionpay, wechat = risk_list_of(c, c.unionpay), risk_list_of(c, c.wechatpay)
    hit, _ = unionpay.add(IMEI, "account_takeover")
    proposed, proposal_id, _ = wechat.propose_removal(IMEI)
    assert proposed == hit
    assert chain_of(c, c.pboc).proposal(proposal_id).risk_entry == hit.entry
    vote(c, (proposal_id, None))
    assert unionpay.sync().removed == 1 and unionpay.check(IMEI) is None


def test_outsiders_and_auditors_cannot_test_devices(c: Consortium) -> None:
    unionpay = risk_list_of(c, c.unionpay)
    unionpay.add(IMEI, 1)
    auditor = risk_list_of(c, c.auditor)
    auditor.sync()
    assert auditor.key_epoch == 0 and len(auditor) == 1
    with pytest.raises(ListKeyUnavailable, match="epoch"):
        auditor.check(IMEI)
    with pytest.raises(ListKeyUnavailable):
        auditor.add("imei:490154203237519", 1)
    outsider = new_party("outsider", Role.PLATFORM)
    reader = RiskList(chain_of(c, c.pboc), outsider.sm2_key, member=outsider.account.address)
    reader.sync()
    with pytest.raises(ListKeyUnavailable):
        reader.check(IMEI)
    # Nothing public equals the fingerprint or a plain hash of it: only the keyed entry.
    chain = chain_of(c, c.pboc)
    logs = chain.w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest",
                                  "address": c.deployment.address})
    public = b"".join(bytes(log["data"]) + b"".join(bytes(t) for t in log["topics"])
                      for log in logs)
    normal = IMEI.encode()
    for probe in (normal, b"490154203237518", sm3(normal), hashlib.sha256(normal).digest(),
                  sm3(riskdevice.entry_input(IMEI))):
        assert probe not in public
    assert unionpay.check(IMEI) is not None and unionpay.check(IMEI).entry in public  # type: ignore[union-attr]


def test_removed_member_loses_new_entries_and_old_ones_stay_checkable(c: Consortium) -> None:
    unionpay, wechat = risk_list_of(c, c.unionpay), risk_list_of(c, c.wechatpay)
    unionpay.add(IMEI, 1)
    wechat.sync()
    vote(c, chain_of(c, c.unionpay).propose_remove_member(c.wechatpay.account.address))
    with pytest.raises(ContractRevert) as closed:
        unionpay.add("imei:490154203237519", 1)
    assert closed.value.name == "RiskList_EpochClosed"
    epoch, _ = distribute_list_key(chain_of(c, c.pboc), c.pboc.sm2_key)
    assert epoch == 2
    assert set(key_holders(chain_of(c, c.pboc))) == {c.unionpay.account.address,
                                                    c.pboc.account.address}
    new_hit, _ = unionpay.add("imei:490154203237519", 2)
    assert (new_hit.epoch, unionpay.key_epoch) == (2, 2)
    assert unionpay.check(IMEI) is not None  # epoch 1's entry, checked under epoch 1's key
    wechat.sync()
    assert wechat.key_epoch == 1
    with pytest.raises(ListKeyUnavailable, match="epoch"):  # fails closed, never "clean"
        wechat.check("imei:490154203237519")
    with pytest.raises(RiskDeviceAlreadyListed):  # listed under epoch 1: no second entry
        unionpay.add(IMEI, 3)


def test_a_rotated_key_reads_the_next_ring(c: Consortium) -> None:
    unionpay = risk_list_of(c, c.unionpay)
    unionpay.add(IMEI, 1)
    old_key, new_key = c.unionpay.sm2_key, gmcrypto.generate_private_key()
    chain = chain_of(c, c.unionpay)
    vote(c, chain.propose_rotate_key(c.unionpay.account.address, new_key.public_key().raw))
    assert not chain.list_epoch_open()
    distribute_list_key(chain_of(c, c.pboc), c.pboc.sm2_key)
    fresh = RiskList(chain, new_key)  # the newest ring alone holds every epoch's key
    fresh.sync()
    assert fresh.key_epoch == 2 and fresh.check(IMEI) is not None
    stale = RiskList(chain, old_key)
    with pytest.raises(InvalidListKey, match="does not decrypt"):
        stale.sync()
    both = RiskList(chain, [new_key, old_key])  # current key first, then retired ones
    both.sync()
    assert both.key_epoch == 2 and both.check(IMEI) == unionpay.check(IMEI)


def test_new_members_get_the_current_ring(c: Consortium) -> None:
    risk_list_of(c, c.unionpay).add(IMEI, 6)
    jd = new_party("jd", Role.PLATFORM)
    pboc = chain_of(c, c.pboc)
    pboc.fund(jd.account.address, 10**19)
    vote(c, chain_of(c, c.unionpay).propose_add_member(jd.account.address, Role.PLATFORM, "jd",
                                                       jd.sm2_key.public_key().raw))
    assert pboc.list_epoch_open()  # an admission does not close the epoch
    epoch, outcome = deliver_list_key(pboc, c.pboc.sm2_key)
    assert epoch == 1 and outcome is not None
    assert [e.args["account"] for e in outcome.events] == [jd.account.address]
    assert deliver_list_key(pboc, c.pboc.sm2_key) == (1, None)  # nobody missing now
    newcomer = RiskList(c.chain.with_account(jd.account), jd.sm2_key)
    newcomer.sync()
    listed = newcomer.check(IMEI)
    assert listed is not None and listed.reason is RiskReason.STOLEN_DEVICE
    with pytest.raises(RiskListError, match="may not hold"):
        deliver_list_key(pboc, c.pboc.sm2_key, [c.auditor.account.address])


def test_regulator_side_rejections(c: Consortium) -> None:
    with pytest.raises(ContractRevert) as revert:
        distribute_list_key(chain_of(c, c.unionpay), c.unionpay.sm2_key)
    assert revert.value.name == "Membership_NotRegulator"
    other = gmcrypto.generate_private_key()
    with pytest.raises(InvalidListKey):
        distribute_list_key(chain_of(c, c.pboc), other)
    fresh = make_consortium(LedgerChain.embedded())
    with pytest.raises(ListKeyUnavailable):
        deliver_list_key(fresh.as_party(fresh.pboc), fresh.pboc.sm2_key)
    unionpay = risk_list_of(fresh, fresh.unionpay)
    with pytest.raises(ListKeyUnavailable, match="current list-key epoch 0"):
        unionpay.add(IMEI, 1)


def test_a_ring_that_rewrites_old_keys_is_refused(c: Consortium) -> None:
    unionpay = risk_list_of(c, c.unionpay)
    unionpay.sync()
    pboc = chain_of(c, c.pboc)
    forged = ListKeyRing(()).extended().extended()  # epoch 1's key replaced
    deployment = pboc.deployment
    pboc.set_list_keys(2, {c.unionpay.account.address: seal_ring(
        c.unionpay.sm2_key.public_key(), forged, deployment.chain_id, deployment.address)})
    with pytest.raises(InvalidListKey, match="changes the keys"):
        unionpay.sync()
    assert unionpay.key_epoch == 1


def test_checks_run_while_another_thread_syncs(c: Consortium) -> None:
    unionpay, wechat = risk_list_of(c, c.unionpay), risk_list_of(c, c.wechatpay)
    unionpay.add_many([(f"device_id:d{i}", 1) for i in range(50)])
    wechat.sync()
    failures: list[BaseException] = []
    stop = threading.Event()

    def checker(run: Callable[[], object]) -> None:
        try:
            while not stop.is_set():
                run()
        except BaseException as exc:  # reported below
            failures.append(exc)

    batch = [f"device_id:d{i}" for i in range(50)]
    thread = threading.Thread(target=checker, args=(lambda: wechat.check_many(batch),))
    thread.start()
    try:
        for i in range(5):
            unionpay.add(f"device_id:e{i}", 2)
            wechat.sync()
    finally:
        stop.set()
        thread.join()
    assert failures == [] and len(wechat) == 55
