"""The regulator node: follow checkpoints, fetch over HTTP, verify roots, decrypt, trace.

Every test runs real platform nodes behind their real HTTP apps on an embedded chain. The
tampering tests damage what a platform node serves (its store file, or what it submitted)
and check that the regulator refuses the data and names the platform and the range.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from ledger_node.chain.adapter import LedgerChain
from ledger_node.client.sdk import SubmittedRecord, registered_regulator_key
from ledger_node.crypto.gmcrypto import SM2PublicKey, generate_private_key
from ledger_node.demo.postgres_cluster import StoreLocations
from ledger_node.errors import DisclosureRejected, LeafDamaged, UnknownAlert, UnknownLeaf
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.aml import PartyKind
from ledger_node.protocol.bundle import verify_bundle
from ledger_node.protocol.commitment import RecordOpening
from ledger_node.protocol.disclosure import case_reference, seal_disclosure_response
from ledger_node.protocol.escrow import EscrowSealer, identity_key
from ledger_node.protocol.record import PaymentRecord
from ledger_node.regulator.node import (
    FAULT_ESCROW,
    FAULT_ESCROW_MISMATCH,
    FAULT_NO_ENDPOINT,
    FAULT_ROOT_MISMATCH,
    FAULT_WITHHELD,
    RegulatorConfig,
    RegulatorNode,
)
from ledger_node.regulator.store import parse_evidence_ref
from tests.api_support import make_consortium
from tests.regulator_support import (
    PERSON_TO_MERCHANT,
    T0,
    payment,
    platform_client,
    regulator_for,
    sources_for,
    start_node,
    store_config,
    wait_anchored,
)


def KINDS(record: PaymentRecord) -> tuple[PartyKind, PartyKind]:
    return PERSON_TO_MERCHANT


class Site:
    """A fresh consortium with both platform nodes running."""

    def __init__(self, tmp: Path, stores: StoreLocations) -> None:
        self.tmp = tmp
        self.stores = stores
        self.consortium = make_consortium(LedgerChain.embedded())
        c = self.consortium
        self.nodes = {"unionpay": start_node(c, c.unionpay, tmp / "unionpay.db"),
                      "wechatpay": start_node(c, c.wechatpay, tmp / "wechatpay.db")}
        self.clients = {"unionpay": platform_client(c, c.unionpay, self.nodes["unionpay"]),
                        "wechatpay": platform_client(c, c.wechatpay, self.nodes["wechatpay"])}

    def regulator(self, store: str = "pboc.db") -> RegulatorNode:
        return regulator_for(self.consortium, self.stores(self.tmp, store), self.nodes)

    def submit(self, platform: str, records: list[PaymentRecord]) -> list[SubmittedRecord]:
        submitted = self.clients[platform].submit_records(records, kinds=KINDS)
        wait_anchored(self.nodes[platform], self.nodes[platform].size())
        return submitted

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()


@pytest.fixture()
def site(tmp_path: Path, regulator_stores: StoreLocations) -> Iterator[Site]:
    s = Site(tmp_path, regulator_stores)
    yield s
    s.stop()


def _ring_and_noise() -> tuple[list[PaymentRecord], list[PaymentRecord]]:
    """alice pays on both platforms; bob and carol add noise."""
    up = [payment("unionpay", i, "alice", f"shop-{i}", 1_000_00 + i, T0 + timedelta(minutes=i))
          for i in range(5)]
    up += [payment("unionpay", 10 + i, "bob", "shop-1", 500_00) for i in range(7)]
    wx = [payment("wechatpay", i, "carol", "alice", 2_000_00 + i) for i in range(3)]
    wx += [payment("wechatpay", 10 + i, "alice", "shop-9", 300_00 + i) for i in range(4)]
    return up, wx


def test_traces_one_identity_across_both_platforms_with_verifying_bundles(site: Site) -> None:
    up, wx = _ring_and_noise()
    site.submit("unionpay", up)
    site.submit("wechatpay", wx)
    regulator = site.regulator()
    try:
        added = regulator.sync()
        assert added == len(up) + len(wx)
        assert regulator.store.faults() == []
        traced = regulator.trace_identity(identity_key("alice"))
        expected = {("unionpay", r.local_tx_id) for r in up if "alice" in
                    (r.payer_identity, r.payee_identity)}
        expected |= {("wechatpay", r.local_tx_id) for r in wx if "alice" in
                     (r.payer_identity, r.payee_identity)}
        assert len(traced) == len(expected) == 12  # recall and precision: exactly these
        assert {t.record.platform for t in traced} == {"unionpay", "wechatpay"}
        by_amount = sorted(t.record.payment.amount_fen for t in traced if t.record.payment)
        assert by_amount == sorted(r.amount_fen for r in up + wx
                                   if "alice" in (r.payer_identity, r.payee_identity))
        times = [t.record.payment.time for t in traced if t.record.payment]
        assert times == sorted(times)
        for t in traced[:3] + traced[-2:]:
            verdict = verify_bundle(t.bundle, chain=site.consortium.chain)
            assert verdict.valid, verdict.reasons
        assert regulator.trace_identity(identity_key("nobody")) == []

        one = traced[0].record
        back = regulator.trace_commitment(one.commitment)
        assert [b.record.ref for b in back] == [one.ref]
        assert one.payment is not None
        assert identity_key("alice") in (one.payment.payer_key, one.payment.payee_key)
        platform, log_id, index = parse_evidence_ref(one.ref)
        assert (platform, log_id, index) == (one.platform, one.log_id, one.index)
    finally:
        regulator.stop()


def test_one_sm2_decryption_per_sealed_batch_and_resume_after_restart(site: Site) -> None:
    records = [payment("unionpay", i, f"p{i % 4}", "shop", 100 + i) for i in range(30)]
    client = site.clients["unionpay"]
    client._chunk = 10  # three sealed batches
    site.submit("unionpay", records)
    regulator = site.regulator()
    assert regulator.sync() == 30
    assert regulator.sm2_decryptions == 3
    regulator.stop()

    more = [payment("unionpay", 100 + i, "p9", "shop", 7_00) for i in range(5)]
    site.submit("unionpay", more)
    again = site.regulator()  # same store: resumes at 30
    try:
        assert [p.verified_size for p in again.progress()] == [30]
        assert again.sync() == 5
        assert again.sync() == 0
        assert again.store.record_count() == 35
        assert len(again.trace_identity(identity_key("p9"))) == 5
        assert len(again.trace_identity(identity_key("p1"))) == 8  # bundles from the rebuilt tree
        for t in again.trace_identity(identity_key("p1")):
            assert verify_bundle(t.bundle, chain=site.consortium.chain).valid
    finally:
        again.stop()


def _tamper(store: Path, sql: str, *params: object) -> None:
    db = sqlite3.connect(store)
    db.execute(sql, params)
    db.commit()
    db.close()


def _serve_unchecked(node: PlatformNode) -> None:
    """Make ``node`` serve its stored leaves without checking them. An honest node refuses
    its own damaged rows (issue 18: 503 store-damaged); these tests are about a node that
    serves tampered leaves anyway (an old or dishonest one): the regulator refuses them."""
    store = node.store_for_tests
    node.leaves = lambda start, end, *, limit=10_000: store.leaves(start, end)  # type: ignore[method-assign]


def test_a_flipped_escrow_byte_in_the_served_log_is_refused(site: Site) -> None:
    site.submit("unionpay", [payment("unionpay", i, "alice", "shop", 100 + i) for i in range(8)])
    node = site.nodes["unionpay"]
    escrow = bytearray(node.leaf(5).escrow)
    escrow[200] ^= 0x01
    _tamper(node.config.store_path, "UPDATE leaves SET escrow = ? WHERE idx = 5", bytes(escrow))
    with pytest.raises(LeafDamaged, match="leaf 5 is damaged"):
        node.leaves(0, 8)  # the node itself does not serve it
    _serve_unchecked(node)
    regulator = site.regulator()
    try:
        regulator.sync()
        faults = regulator.store.faults()
        assert [(f.platform, f.kind) for f in faults] == [("unionpay", FAULT_ROOT_MISMATCH)]
        assert faults[0].start == 0 and faults[0].end >= 6
        assert "the chain anchors" in faults[0].detail
        assert regulator.store.record_count() == 0  # nothing of the refused range indexed
    finally:
        regulator.stop()


def test_escrows_swapped_between_two_served_leaves_are_refused(site: Site) -> None:
    site.submit("unionpay", [payment("unionpay", i, "alice", "shop", 100 + i) for i in range(6)])
    node = site.nodes["unionpay"]
    a, b = node.leaf(1).escrow, node.leaf(2).escrow
    _tamper(node.config.store_path, "UPDATE leaves SET escrow = ? WHERE idx = 1", b)
    _tamper(node.config.store_path, "UPDATE leaves SET escrow = ? WHERE idx = 2", a)
    _serve_unchecked(node)
    regulator = site.regulator()
    try:
        regulator.sync()
        assert [f.kind for f in regulator.store.faults()] == [FAULT_ROOT_MISMATCH]
        assert regulator.store.record_count() == 0
    finally:
        regulator.stop()


def test_a_leaf_removed_from_the_served_log_is_reported_as_withheld(site: Site) -> None:
    site.submit("unionpay", [payment("unionpay", i, "alice", "shop", 100 + i) for i in range(6)])
    site.submit("wechatpay", [payment("wechatpay", i, "alice", "shop", 100 + i)
                              for i in range(3)])
    node = site.nodes["unionpay"]
    _tamper(node.config.store_path, "DELETE FROM leaves WHERE idx = 5")
    regulator = site.regulator()
    try:
        regulator.sync()
        faults = regulator.store.faults()
        assert [(f.platform, f.kind) for f in faults] == [("unionpay", FAULT_WITHHELD)]
        assert (faults[0].start, faults[0].end) == (0, 6)
        # the honest platform is ingested all the same
        assert {p.platform: p.verified_size for p in regulator.progress()} == {
            "unionpay": 0, "wechatpay": 3}
    finally:
        regulator.stop()


def test_escrows_sealed_wrong_at_submission_are_anchored_but_reported(site: Site) -> None:
    """A platform that submits a swapped or corrupted escrow gets it anchored (the root
    matches), but the escrow does not open against the leaf's commitment: reported per leaf,
    the other leaves indexed."""
    client = site.clients["unionpay"]
    records = [payment("unionpay", i, "alice", "shop", 100 + i) for i in range(4)]
    sealer = EscrowSealer(site.consortium.pboc.sm2_key.public_key())
    prepared = [client.prepare(r, sealer=sealer, kinds=PERSON_TO_MERCHANT) for r in records]
    swapped = [prepared[0], prepared[1], prepared[2], prepared[3]]
    leaves = [p.leaf for p in swapped]
    leaves[1], leaves[2] = (replace(leaves[1], escrow=prepared[2].leaf.escrow),
                            replace(leaves[2], escrow=prepared[1].leaf.escrow))
    flipped = bytearray(leaves[3].escrow)
    flipped[150] ^= 0x80
    leaves[3] = replace(leaves[3], escrow=bytes(flipped))
    client.submit_leaves(leaves)
    wait_anchored(site.nodes["unionpay"], 4)
    regulator = site.regulator()
    try:
        assert regulator.sync() == 4
        faults = regulator.store.faults()
        assert [(f.kind, f.start) for f in faults] == [(FAULT_ESCROW, 1), (FAULT_ESCROW, 2),
                                                       (FAULT_ESCROW, 3)]
        assert all(f.platform == "unionpay" for f in faults)
        assert len(regulator.trace_identity(identity_key("alice"))) == 1
    finally:
        regulator.stop()


def test_a_platform_without_a_configured_node_is_reported(site: Site) -> None:
    site.submit("wechatpay", [payment("wechatpay", 0, "alice", "shop", 100)])
    configured = site.regulator()
    configured.stop()  # one regulator node per store (its lock)
    regulator = RegulatorNode(configured.config, site.consortium.chain,
                              [site.consortium.pboc.sm2_key], {})
    try:
        regulator.sync()
        assert [f.kind for f in regulator.store.faults()] == [FAULT_NO_ENDPOINT]
    finally:
        regulator.stop()


def test_structuring_across_both_platforms_raises_an_alert_with_evidence(site: Site) -> None:
    # 4 x RMB 150,000 from one person, two on each platform within a day: each under the
    # RMB 500,000 line, together over it.
    up = [payment("unionpay", i, "mallory", f"m{i}", 150_000_00, T0 + timedelta(hours=i))
          for i in range(2)]
    wx = [payment("wechatpay", i, "mallory", f"w{i}", 150_000_00, T0 + timedelta(hours=2 + i))
          for i in range(2)]
    site.submit("unionpay", up + [payment("unionpay", 9, "bob", "m1", 1_000_00)])
    site.submit("wechatpay", wx)
    regulator = site.regulator()
    try:
        regulator.sync()
        alerts = regulator.alerts()
        assert [(a.rule, a.identity) for a in alerts] == [
            ("structuring.person_domestic", identity_key("mallory"))]
        evidence = regulator.alert_evidence(alerts[0])
        assert len(evidence) == 4
        assert {e.record.platform for e in evidence} == {"unionpay", "wechatpay"}
        assert all(verify_bundle(e.bundle, chain=site.consortium.chain).valid
                   for e in evidence)
    finally:
        regulator.stop()


def test_alert_numbers_start_at_1_and_last_across_restarts(site: Site) -> None:
    """Alerts are numbered from 1 and keep their numbers: across a restart that recomputes
    them, when a new alert sorts before an old one, and when an alert grows."""
    whale_day = T0 + timedelta(days=1)
    site.submit("unionpay", [payment("unionpay", 0, "whale", "yacht", 600_000_00, whale_day)])
    regulator = site.regulator()
    try:
        regulator.sync()
        assert [(n.id, n.alert.rule) for n in regulator.numbered_alerts()] == [
            (1, "large_value.person_domestic")]
        whale = regulator.alert(1)
        with pytest.raises(UnknownAlert, match="numbered from 1"):
            regulator.alert(0)
    finally:
        regulator.stop()

    # A structuring ring the day before: it sorts first, but is numbered after the whale.
    site.submit("unionpay", [payment("unionpay", 10 + i, "mallory", f"m{i}", 150_000_00,
                                     T0 + timedelta(hours=i)) for i in range(2)])
    site.submit("wechatpay", [payment("wechatpay", 10 + i, "mallory", f"w{i}", 150_000_00,
                                      T0 + timedelta(hours=2 + i)) for i in range(2)])
    regulator = site.regulator()  # a restart on the same store
    try:
        regulator.sync()
        numbered = [(n.id, n.alert.rule, n.alert.identity)
                    for n in regulator.numbered_alerts()]
        assert numbered == [(2, "structuring.person_domestic", identity_key("mallory")),
                            (1, "large_value.person_domestic", identity_key("whale"))]
        assert regulator.alert(1) == whale
        ring = regulator.alert(2)
    finally:
        regulator.stop()

    # The ring grows by one more payment in its window: same alert, same number.
    site.submit("wechatpay", [payment("wechatpay", 20, "mallory", "w9", 150_000_00,
                                      T0 + timedelta(hours=5))])
    regulator = site.regulator()
    try:
        regulator.sync()
        grown = regulator.alert(2)
        assert grown.window_start == ring.window_start and len(grown.refs) == 5
        assert [n.id for n in regulator.numbered_alerts()] == [2, 1]
        with pytest.raises(UnknownAlert, match="no alert has had that number"):
            regulator.alert(3)
    finally:
        regulator.stop()


def test_a_version_1_store_is_upgraded_and_numbers_alerts_from_1(tmp_path: Path) -> None:
    from ledger_node.regulator.store import SCHEMA_VERSION, SqliteRegulatorStore

    path = tmp_path / "r.db"
    SqliteRegulatorStore(path, regulator="pboc").close()
    with sqlite3.connect(path) as db:  # as version 1 made it
        db.execute("DROP TABLE alert_numbers")
        db.execute("DROP TABLE console_sessions")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.close()
    store = SqliteRegulatorStore(path, regulator="pboc")
    try:
        assert store.alert_numbers(["b", "a"]) == {"b": 1, "a": 2}
        assert store.alert_numbers(["c", "a"]) == {"c": 3, "a": 2}
        assert store.alert_key(3) == "c" and store.alert_key(4) is None
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    db.close()
    assert version == (str(SCHEMA_VERSION),) == ("3",)


def test_a_version_2_store_gains_the_console_sessions_table(tmp_path: Path) -> None:
    """Console logins moved from process memory into the store (schema 3), so a request
    landing on another API process of the store finds the session."""
    from api.console_session import ConsoleSessions
    from ledger_node.chain.adapter import Role
    from ledger_node.protocol.auth import AuthenticatedMember
    from ledger_node.regulator.store import SqliteRegulatorStore

    path = tmp_path / "r.db"
    SqliteRegulatorStore(path, regulator="pboc").close()
    with sqlite3.connect(path) as db:  # as version 2 made it
        db.execute("DROP TABLE console_sessions")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.close()
    store = SqliteRegulatorStore(path, regulator="pboc")
    member = AuthenticatedMember("0xabc", Role.REGULATOR, "pboc")
    try:
        session_id, _ = ConsoleSessions(store).exchange(ConsoleSessions(store).issue_token(member))
    finally:
        store.close()
    store = SqliteRegulatorStore(path, regulator="pboc")  # a restart logs nobody out
    try:
        found = ConsoleSessions(store).session(session_id)
        assert found is not None and found.member == member
    finally:
        store.close()


def test_store_of_another_regulator_is_refused(site: Site, tmp_path: Path) -> None:
    from ledger_node.errors import StoreCorrupted
    from ledger_node.regulator.store import SqliteRegulatorStore

    SqliteRegulatorStore(tmp_path / "r.db", regulator="pboc").close()
    with pytest.raises(StoreCorrupted, match="belongs to regulator 'pboc'"):
        SqliteRegulatorStore(tmp_path / "r.db", regulator="cbirc")
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreCorrupted):
        SqliteRegulatorStore(tmp_path / "junk.db", regulator="pboc")


def _answer(site: Site, request_id: int, opening: RecordOpening, index: int | None = None
            ) -> None:
    chain = site.consortium.chain
    site.clients["unionpay"].answer_disclosure(
        request_id, opening, site.consortium.pboc.sm2_key.public_key(),
        chain_id=chain.chain_id, contract=chain.deployment.address, index=index)


def test_disclosure_is_logged_answered_verified_and_in_the_case_file(site: Site) -> None:
    submitted = site.submit("unionpay", [payment("unionpay", i, "alice", "shop", 100 + i)
                                         for i in range(3)])
    regulator = site.regulator()
    try:
        regulator.sync()
        target = submitted[1]
        case_id = bytes(range(32))
        request_id = regulator.request_disclosure(target.prepared.leaf.commitment, case_id)
        on_chain = site.consortium.chain.disclosure_request(request_id)
        commitment = target.prepared.leaf.commitment
        assert (on_chain.regulator, on_chain.platform, on_chain.commitment) == (
            site.consortium.pboc.account.address, site.consortium.unionpay.account.address,
            commitment)
        # the chain gets a per-request reference under the case's secret key, not the case id
        case_key = regulator.store.case_key(case_id)
        assert on_chain.case_id == case_reference(case_key, commitment) != case_id
        other = regulator.request_disclosure(submitted[0].prepared.leaf.commitment, case_id)
        assert site.consortium.chain.disclosure_request(other).case_id != on_chain.case_id
        assert regulator.collect_disclosure(request_id) is None  # not answered yet

        _answer(site, request_id, target.prepared.opening, target.receipt.index)
        collected = regulator.collect_disclosure(request_id)
        assert collected is not None
        assert collected.opening == target.prepared.opening
        assert collected.escrow_mismatches == ()
        assert collected.record.index == target.receipt.index
        assert site.consortium.chain.disclosure_request(request_id).fulfilled

        case = regulator.case_file(case_id)
        assert case["case_key"] == case_key.hex()
        assert [d["request_id"] for d in case["disclosures"]] == [request_id]  # collected only
        assert case["disclosures"][0]["case_ref"] == on_chain.case_id.hex()
        assert case["disclosures"][0]["opening"] == target.prepared.opening.to_json()
        assert [r["index"] for r in case["records"]] == [target.receipt.index]
        assert regulator.case_file(bytes(32))["disclosures"] == []
    finally:
        regulator.stop()


def test_an_escrow_that_contradicts_the_opened_record_is_reported(site: Site) -> None:
    """The escrow is bound to the leaf, not to the committed record: only an opening shows
    that a platform escrowed something else (here a smaller amount)."""
    client = site.clients["unionpay"]
    true = payment("unionpay", 1, "alice", "shop", 9_000_000_00)
    told = payment("unionpay", 1, "alice", "shop", 9_00)
    sealer = EscrowSealer(site.consortium.pboc.sm2_key.public_key())
    prepared = client.prepare(true, kinds=PERSON_TO_MERCHANT)
    lying = replace(prepared.leaf, escrow=sealer.seal_record(
        told, prepared.leaf.commitment, payer_kind=PartyKind.PERSON,
        payee_kind=PartyKind.INSTITUTION))
    client.submit_leaves([lying])
    wait_anchored(site.nodes["unionpay"], 1)
    regulator = site.regulator()
    try:
        regulator.sync()
        assert regulator.alerts() == []  # the lie hides the large value ...
        request_id = regulator.request_disclosure(prepared.leaf.commitment, bytes(32))
        _answer(site, request_id, prepared.opening)
        collected = regulator.collect_disclosure(request_id)
        assert collected is not None and collected.escrow_mismatches == ("amount_fen",)
        faults = regulator.store.faults()  # ... until the opening shows it
        assert [(f.kind, f.start) for f in faults] == [(FAULT_ESCROW_MISMATCH, 0)]
    finally:
        regulator.stop()


def test_a_disclosure_answer_that_fails_a_check_is_rejected(site: Site) -> None:
    submitted = site.submit("unionpay", [payment("unionpay", i, "alice", "shop", 100 + i)
                                         for i in range(2)])
    regulator = site.regulator()
    chain = site.consortium.chain
    try:
        regulator.sync()
        # an answer sealed correctly but opening another record: logged on chain, refused
        wrong = regulator.request_disclosure(submitted[0].prepared.leaf.commitment, bytes(32))
        sealed = seal_disclosure_response(
            site.consortium.pboc.sm2_key.public_key(), wrong,
            submitted[0].prepared.leaf.commitment, submitted[1].prepared.opening,
            chain_id=chain.chain_id, contract=chain.deployment.address)
        client = site.clients["unionpay"]
        client._send("POST", f"/v1/disclosures/{wrong}/response", signed=True,
                     content=json.dumps({"response": sealed.hex(), "index": 0}).encode())
        with pytest.raises(DisclosureRejected, match="does not open the commitment"):
            regulator.collect_disclosure(wrong)

        # the node serves other bytes than those whose digest the platform logged on chain
        other = regulator.request_disclosure(submitted[1].prepared.leaf.commitment, bytes(32))
        _answer(site, other, submitted[1].prepared.opening, 1)
        store = site.nodes["unionpay"].config.store_path
        db = sqlite3.connect(store)
        (response,) = db.execute("SELECT response FROM disclosure_responses "
                                 "WHERE request_id = ?", (other,)).fetchone()
        flipped = bytearray(response)
        flipped[-1] ^= 1
        db.execute("UPDATE disclosure_responses SET response = ? WHERE request_id = ?",
                   (bytes(flipped), other))
        db.commit()
        db.close()
        with pytest.raises(DisclosureRejected, match="does not match the digest"):
            regulator.collect_disclosure(other)
        assert regulator.store.disclosure(other).opening is None  # type: ignore[union-attr]
        with pytest.raises(UnknownLeaf):
            regulator.collect_disclosure(999)
    finally:
        regulator.stop()


def test_after_a_key_rotation_the_regulator_reads_old_and_new_escrows(site: Site) -> None:
    """Governance rotates pboc's SM2 key between two batches; the SDK seals the next batch
    for the new key; the regulator node holding both keys reads every escrow, and one that
    only holds the new key reports the old escrows as unreadable."""
    c = site.consortium
    node = site.nodes["unionpay"]
    as_unionpay = c.as_party(c.unionpay)

    def current_key() -> SM2PublicKey:
        return registered_regulator_key(as_unionpay)

    client = platform_client(c, c.unionpay, node, regulator_key=current_key)
    client.submit_records([payment("unionpay", i, "alice", "shop", 100 + i) for i in range(3)],
                          kinds=KINDS)
    old, new = c.pboc.sm2_key, generate_private_key()
    proposal, _ = c.chain.propose_rotate_key(c.pboc.account.address, new.public_key().raw)
    as_unionpay.approve(proposal)
    client.submit_records([payment("unionpay", 10 + i, "alice", "shop", 200 + i)
                           for i in range(2)], kinds=KINDS)
    wait_anchored(node, 5)

    both = RegulatorNode(
        RegulatorConfig("pboc", **store_config(site.stores(site.tmp, "both.db"))), c.chain,
        [new, old], sources_for(c, site.nodes, new))
    only_new = RegulatorNode(
        RegulatorConfig("pboc", **store_config(site.stores(site.tmp, "new.db"))), c.chain,
        [new], sources_for(c, site.nodes, new))
    try:
        assert both.sync() == 5 and both.store.faults() == []
        assert len(both.trace_identity(identity_key("alice"))) == 5
        assert only_new.sync() == 5
        assert [(f.kind, f.start) for f in only_new.store.faults()] == [
            (FAULT_ESCROW, 0), (FAULT_ESCROW, 1), (FAULT_ESCROW, 2)]
        assert "UnknownEscrowKey" in only_new.store.faults()[0].detail
        assert len(only_new.trace_identity(identity_key("alice"))) == 2
    finally:
        both.stop()
        only_new.stop()
