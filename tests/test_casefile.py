"""Case files (``jointledger verify CASEFILE``): checked against the chain alone.

One real site is built for the module: two platform nodes behind their real HTTP apps, a
planted cross-platform structuring ring (an AML alert), a disclosure answered by the
platform and collected by the regulator, and a second case whose disclosed record was
escrowed with another amount than the platform committed to. The regulator writes the case
files, then every node is stopped and the embedded chain is served over JSON-RPC: the
verifier has only the chain. Each tampering test damages one thing in a copy of the clean
file and asserts the check that catches it and its reason, with and without the
regulator's key.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger_node.chain.adapter import Deployment, LedgerChain
from ledger_node.chain.rpc_server import ChainServer
from ledger_node.cli.main import main
from ledger_node.client.sdk import PlatformClient, SubmittedRecord
from ledger_node.crypto import gmcrypto
from ledger_node.crypto.hashes import sm3
from ledger_node.demo.postgres_cluster import StoreLocations
from ledger_node.errors import InvalidCaseFile
from ledger_node.protocol.checks import CheckStatus
from ledger_node.protocol.commitment import new_salt, record_commitment
from ledger_node.protocol.escrow import EscrowSealer, identity_key
from ledger_node.regulator.casefile import (
    CASE_FILE_FORMAT,
    CaseReport,
    is_case_file,
    parse_case_file,
    verify_case_file,
)
from ledger_node.regulator.node import CollectedDisclosure, RegulatorNode
from tests.api_support import Consortium, make_consortium
from tests.regulator_support import (
    PERSON_TO_MERCHANT,
    T0,
    payment,
    platform_client,
    regulator_for,
    start_node,
    wait_anchored,
)

CASE_A = sm3(b"case 2026-A: structuring ring")
CASE_B = sm3(b"case 2026-B: the escrow that lied")
Doc = dict[str, Any]


@dataclass
class Site:
    """What the verifier gets: the chain's URL, the deployment, the key and two case files."""

    url: str
    chain: LedgerChain  # a JSON-RPC client of the served chain, unbound
    consortium: Consortium
    deployment_file: Path
    key_file: Path
    case_a: Doc
    case_b: Doc
    mallory_refs: list[str]
    bob_ref: str
    tmp: Path

    def write(self, document: object, name: str = "case.json") -> Path:
        path = self.tmp / name
        path.write_text(json.dumps(document))
        return path

    def verify(self, document: Doc, *, key: bool = False, pinned: bool = True) -> CaseReport:
        """The library verdict on ``document`` (parsed strictly first)."""
        return verify_case_file(
            parse_case_file(document), chain=self.chain,
            deployment=self.consortium.deployment if pinned else None,
            regulator_keys=[self.consortium.pboc.sm2_key] if key else [])


def _submit(client: PlatformClient, node: Any, records: list[Any]) -> list[SubmittedRecord]:
    submitted = client.submit_records(records, kinds=lambda r: PERSON_TO_MERCHANT)
    wait_anchored(node, node.size())
    return submitted


def _disclose(consortium: Consortium, regulator: RegulatorNode, client: PlatformClient,
              submitted: SubmittedRecord, case_id: bytes) -> CollectedDisclosure:
    """pboc requests the opening on chain, the platform answers, pboc collects it."""
    request_id = regulator.request_disclosure(submitted.prepared.leaf.commitment, case_id)
    client.answer_disclosure(request_id, submitted.prepared.opening,
                             consortium.pboc.sm2_key.public_key(),
                             chain_id=consortium.chain.chain_id,
                             contract=consortium.deployment.address)
    collected = regulator.collect_disclosure(request_id)
    assert collected is not None
    return collected


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory,
         regulator_stores: StoreLocations) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("casefile")
    consortium = make_consortium(LedgerChain.embedded())
    c = consortium
    nodes = {"unionpay": start_node(c, c.unionpay, tmp / "unionpay.db"),
             "wechatpay": start_node(c, c.wechatpay, tmp / "wechatpay.db")}
    up_client = platform_client(c, c.unionpay, nodes["unionpay"])
    wx_client = platform_client(c, c.wechatpay, nodes["wechatpay"])
    try:
        # The ring: 4 x RMB 150,000 from mallory, two on each platform within a day, each
        # under the RMB 500,000 line, together over it. bob and carol are noise.
        up = _submit(up_client, nodes["unionpay"], [
            payment("unionpay", 0, "mallory", "m0", 150_000_00, T0),
            payment("unionpay", 1, "mallory", "m1", 150_000_00, T0 + timedelta(hours=1)),
            payment("unionpay", 2, "bob", "m1", 1_000_00, T0 + timedelta(hours=1)),
        ])
        _submit(wx_client, nodes["wechatpay"], [
            payment("wechatpay", 0, "mallory", "w0", 150_000_00, T0 + timedelta(hours=2)),
            payment("wechatpay", 1, "mallory", "w1", 150_000_00, T0 + timedelta(hours=3)),
            payment("wechatpay", 2, "carol", "w1", 300_00, T0),
        ])
        # unionpay commits to RMB 2,000 from dave but escrows RMB 2 for the regulator.
        honest = payment("unionpay", 3, "dave", "m3", 2_000_00, T0)
        salt = new_salt()
        sealer = EscrowSealer(c.pboc.sm2_key.public_key())
        lie = sealer.seal_record(replace(honest, amount_fen=200),
                                 record_commitment(honest, salt),
                                 payer_kind=PERSON_TO_MERCHANT[0],
                                 payee_kind=PERSON_TO_MERCHANT[1])
        lying = up_client.submit_prepared([up_client.prepare(honest, salt=salt, escrow=lie)])
        wait_anchored(nodes["unionpay"], nodes["unionpay"].size())
        # wechatpay anchors a leaf whose escrow does not open: indexed without a payment.
        broken = wx_client.prepare(payment("wechatpay", 3, "erin", "w3", 500_00, T0),
                                   sealer=sealer, kinds=PERSON_TO_MERCHANT)
        escrow = bytearray(broken.leaf.escrow)
        escrow[200] ^= 0x80
        unreadable = wx_client.submit_leaves([replace(broken.leaf, escrow=bytes(escrow))])
        wait_anchored(nodes["wechatpay"], nodes["wechatpay"].size())

        regulator = regulator_for(c, regulator_stores(tmp, "pboc.db"), nodes)
        try:
            regulator.sync()
            assert [(f.platform, f.kind) for f in regulator.store.faults()] == [
                ("wechatpay", "unreadable-escrow")]
            unreadable_ref = regulator.record_by_ref(
                f"wechatpay/{nodes['wechatpay'].log_id.hex()}/{unreadable[0].index}").ref
            [alert] = regulator.alerts()
            assert alert.identity == identity_key("mallory")
            collected = _disclose(c, regulator, up_client, up[0], CASE_A)
            assert collected.escrow_mismatches == ()
            collected = _disclose(c, regulator, up_client, lying[0], CASE_B)
            assert collected.escrow_mismatches == ("amount_fen",)
            bob_ref = next(r.record.ref for r in regulator.trace_identity(identity_key("bob")))
            case_a = regulator.case_file(CASE_A, identities=[identity_key("mallory")],
                                         refs=[bob_ref])
            case_b = regulator.case_file(CASE_B, refs=[unreadable_ref])
        finally:
            regulator.stop()
    finally:
        for node in nodes.values():
            node.stop()

    deployment_file = tmp / "deployment.json"
    consortium.deployment.save(deployment_file)
    key_file = tmp / "pboc.sm2.pem"
    key_file.write_bytes(gmcrypto.private_key_to_pem(c.pboc.sm2_key))
    # Round-trip through JSON text: the verifier sees what a file holds.
    case_a, case_b = (json.loads(json.dumps(doc)) for doc in (case_a, case_b))
    with ChainServer(consortium.chain) as server:
        yield Site(server.url, LedgerChain.from_rpc(server.url), consortium, deployment_file,
                   key_file, case_a, case_b, list(alert.refs), bob_ref, tmp)


def tampered(site: Site, change: Callable[[Doc], object]) -> Doc:
    """A deep copy of the clean case file with ``change`` applied."""
    document = copy.deepcopy(site.case_a)
    change(document)
    return document


def record_at(document: Doc, ref: str) -> int:
    return next(i for i, r in enumerate(document["records"]) if r["ref"] == ref)


def failed(report: CaseReport) -> dict[str, list[str]]:
    """``{where: [failed check names]}`` over the case and its items ("" = case level)."""
    out: dict[str, list[str]] = {}
    for check in report.checks:
        if check.status is CheckStatus.FAILED:
            out.setdefault("", []).append(check.name)
    for item in report.items:
        names = [c.name for c in item.checks if c.status is CheckStatus.FAILED]
        if names:
            out[item.where] = names
    return out


def detail(report: CaseReport, where: str, check: str) -> str:
    return report.item(where).check(check).detail


def flip_hex(text: str, at: int) -> str:
    raw = bytearray(bytes.fromhex(text))
    raw[at] ^= 0x01
    return raw.hex()


# --------------------------------------------------------------------------------------
# The clean files
# --------------------------------------------------------------------------------------


def test_the_regulator_writes_what_the_site_holds(site: Site) -> None:
    doc = site.case_a
    assert doc["format"] == CASE_FILE_FORMAT and is_case_file(doc)
    assert not is_case_file({"format": "jointledger/proof-bundle/v1"})
    assert len(doc["alerts"]) == 1 and doc["alerts"][0]["rule"] == "structuring.person_domestic"
    assert {r["ref"] for r in doc["records"]} == {*site.mallory_refs, site.bob_ref}
    assert {r["platform"] for r in doc["records"]} == {"unionpay", "wechatpay"}
    assert [d["case_id"] for d in doc["disclosures"]] == [CASE_A.hex()]
    assert doc["regulator"] == {"name": "pboc", "account": site.consortium.pboc.account.address}
    assert [d["case_id"] for d in site.case_b["disclosures"]] == [CASE_B.hex()]


def test_clean_file_verifies_through_the_library_with_the_key(site: Site) -> None:
    report = site.verify(site.case_a, key=True)
    assert report.valid, report.reasons
    assert report.regulator_key and report.deployment_pinned
    assert all(c.status is CheckStatus.PASSED for c in report.all_checks)
    assert [c.name for c in report.checks] == ["structure", "chain", "regulator"]
    assert [c.name for c in report.records[0].checks] == [
        "ref", "anchor", "leaf", "position", "bundle", "payment"]
    assert [c.name for c in report.alerts[0].checks] == ["evidence", "reproduced"]
    assert [c.name for c in report.disclosures[0].checks] == [
        "case", "request", "response", "record", "opening", "escrow_agrees", "sealed_response"]
    assert "decrypts to exactly the payment stated" in detail(report, "records[0]", "payment")
    assert "raises exactly this alert" in detail(report, "alerts[0]", "reproduced")
    assert report.summary.startswith("VALID")
    assert report.unlisted_alerts == 0
    counts = report.counts()
    assert counts["failed"] == counts["not_run"] == counts["not_checked"] == 0
    assert counts["records"] == 5 and counts["alerts"] == 1 and counts["disclosures"] == 1


def test_clean_file_without_the_key_says_what_was_not_checked(site: Site) -> None:
    report = site.verify(site.case_a, key=False, pinned=False)
    assert report.valid, report.reasons
    assert not report.regulator_key and not report.deployment_pinned
    not_checked = {(i.where, c.name) for i in report.items for c in i.checks
                   if c.status is CheckStatus.NOT_CHECKED}
    assert not_checked == {(f"records[{n}]", "payment") for n in range(5)} | {
        ("disclosures[0]", "sealed_response")}
    assert "NOT decrypted" in detail(report, "records[0]", "payment")
    assert "NOT pinned" in report.check("chain").detail
    assert "NOT decrypted" in report.summary and "NOT pinned" in report.summary


def test_clean_file_verifies_through_the_cli(site: Site, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    path = site.write(site.case_a)
    assert main(["verify", str(path), "--rpc-url", site.url, "--deployment",
                 str(site.deployment_file), "--regulator-key", str(site.key_file)]) == 0
    out = capsys.readouterr().out
    assert "PASS  chain" in out and "pinned by --deployment" in out
    assert out.count("  PASS  records[") == 5 and "FAIL" not in out
    assert "regulator key: given" in out
    assert out.rstrip().splitlines()[-1].startswith("VALID")

    assert main(["verify", str(path), "--rpc-url", site.url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is True and report["regulator_key"] is False
    assert report["deployment_pinned"] is False
    assert report["counts"]["not_checked"] == 6 and report["counts"]["failed"] == 0
    assert report["records"][0]["bundle"]["valid"] is True
    statuses = {c["name"]: c["status"] for c in report["records"][0]["checks"]}
    assert statuses["payment"] == "not_checked" and statuses["bundle"] == "passed"


def test_the_second_case_shows_the_platform_escrowed_another_amount(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    assert [r["payment"] is None for r in site.case_b["records"]] == [False, True]
    for key in (False, True):
        report = site.verify(site.case_b, key=key)
        assert failed(report) == {"disclosures[0]": ["escrow_agrees"]}
        reason = detail(report, "disclosures[0]", "escrow_agrees")
        assert ("the platform escrowed something else than it committed: amount_fen "
                "(escrow: 200, opening: 200000) of records[0]") in reason
        if key:  # the escrow does say RMB 2: the file states it faithfully
            assert report.records[0].check("payment").status is CheckStatus.PASSED
            # and erin's escrow does not open, as the file says
            assert "does not open, as the file states" in detail(report, "records[1]",
                                                                   "payment")
    path = site.write(site.case_b, "case-b.json")
    assert main(["verify", str(path), "--rpc-url", site.url]) == 1
    out = capsys.readouterr().out
    assert "FAIL  disclosures[0]" in out and "amount_fen" in out
    assert out.rstrip().splitlines()[-1].startswith("INVALID: disclosures[0]")


# --------------------------------------------------------------------------------------
# Tampering: each caught, with its reason
# --------------------------------------------------------------------------------------


def test_a_flipped_escrow_byte(site: Site) -> None:
    doc = tampered(site, lambda d: d["records"][0]["leaf"].update(
        escrow=flip_hex(d["records"][0]["leaf"]["escrow"], 200)))
    without = site.verify(doc)
    assert failed(without) == {"records[0]": ["leaf"], "alerts[0]": ["evidence"]}
    assert "SM3 of the escrow is" in detail(without, "records[0]", "leaf")
    with_key = site.verify(doc, key=True)
    assert failed(with_key) == {"records[0]": ["leaf", "payment"], "alerts[0]": ["evidence"]}
    assert "EscrowAuthenticationFailed" in detail(with_key, "records[0]", "payment")


def test_a_changed_payment_amount_in_an_alert(site: Site) -> None:
    at = record_at(site.case_a, site.mallory_refs[1])
    doc = tampered(site, lambda d: d["records"][at]["payment"].update(amount_fen=140_000_00))
    without = site.verify(doc)
    # the alert the payments now raise is not listed: the file is incomplete for mallory too
    assert failed(without) == {"alerts[0]": ["reproduced"], "identities[0]": ["complete"]}
    assert ("total_fen: the file says 60000000, the payments give 59000000"
            in detail(without, "alerts[0]", "reproduced"))
    with_key = site.verify(doc, key=True)
    assert failed(with_key) == {f"records[{at}]": ["payment"],
                                "alerts[0]": ["evidence", "reproduced"],
                                "identities[0]": ["complete"]}
    assert ("amount_fen (escrow: 15000000, file: 14000000)"
            in detail(with_key, f"records[{at}]", "payment"))
    assert f"(records[{at}]) failed payment" in detail(with_key, "alerts[0]", "evidence")


def test_a_changed_payment_amount_of_the_disclosed_record(site: Site) -> None:
    at = record_at(site.case_a, site.mallory_refs[0])
    doc = tampered(site, lambda d: d["records"][at]["payment"].update(amount_fen=150_000_01))
    without = site.verify(doc)
    assert failed(without) == {"alerts[0]": ["reproduced"], "identities[0]": ["complete"],
                               "disclosures[0]": ["escrow_agrees"]}
    assert "amount_fen" in detail(without, "disclosures[0]", "escrow_agrees")


def test_a_changed_amount_nothing_rests_on_is_caught_only_with_the_key(site: Site) -> None:
    """bob's record is in the file by ref only: no alert or opening re-derives its amount,
    so without the key the stated payment is not checked (and the report says so)."""
    at = record_at(site.case_a, site.bob_ref)
    doc = tampered(site, lambda d: d["records"][at]["payment"].update(amount_fen=9_999_00))
    without = site.verify(doc)
    assert without.valid
    assert without.item(f"records[{at}]").check("payment").status is CheckStatus.NOT_CHECKED
    with_key = site.verify(doc, key=True)
    assert failed(with_key) == {f"records[{at}]": ["payment"]}


def test_a_payment_said_unreadable_that_opens(site: Site) -> None:
    at = record_at(site.case_a, site.bob_ref)
    doc = tampered(site, lambda d: d["records"][at].update(payment=None))
    assert site.verify(doc).valid  # without the key the statement stands unchecked
    report = site.verify(doc, key=True)
    assert failed(report) == {f"records[{at}]": ["payment"]}
    assert "states the escrow is unreadable, but it opens" in detail(
        report, f"records[{at}]", "payment")

    at = record_at(site.case_a, site.mallory_refs[3])
    doc = tampered(site, lambda d: d["records"][at].update(payment=None))
    report = site.verify(doc)
    assert failed(report) == {"alerts[0]": ["evidence", "reproduced"]}
    assert f"(records[{at}]) states no payment" in detail(report, "alerts[0]", "evidence")


def test_a_disclosure_without_its_answer(site: Site) -> None:
    doc = tampered(site, lambda d: d["disclosures"][0].update(response=None, opening=None))
    report = site.verify(doc, key=True)
    assert failed(report) == {"disclosures[0]": ["response", "opening"]}
    assert "holds no response" in detail(report, "disclosures[0]", "response")
    assert "holds no opening" in detail(report, "disclosures[0]", "opening")
    item = report.item("disclosures[0]")
    assert item.check("escrow_agrees").status is CheckStatus.NOT_RUN
    assert item.check("sealed_response").status is CheckStatus.NOT_RUN


def test_an_alert_with_a_changed_total(site: Site) -> None:
    doc = tampered(site, lambda d: d["alerts"][0].update(total_fen=50_000_000 - 1))
    for key in (False, True):
        report = site.verify(doc, key=key)
        assert failed(report) == {"alerts[0]": ["reproduced"], "identities[0]": ["complete"]}
        assert ("total_fen: the file says 49999999, the payments give 60000000"
                in detail(report, "alerts[0]", "reproduced"))


def test_an_alert_with_an_extra_ref(site: Site) -> None:
    doc = tampered(site, lambda d: d["alerts"][0]["refs"].append(site.bob_ref))
    report = site.verify(doc)
    assert failed(report) == {"alerts[0]": ["reproduced"], "identities[0]": ["complete"]}
    assert f"refs: the file adds {site.bob_ref}" in detail(report, "alerts[0]", "reproduced")

    ghost = site.bob_ref.rsplit("/", 1)[0] + "/99"
    doc = tampered(site, lambda d: d["alerts"][0]["refs"].append(ghost))
    report = site.verify(doc, key=True)
    assert failed(report) == {"alerts[0]": ["evidence", "reproduced"],
                              "identities[0]": ["complete"]}
    assert f"{ghost} is not a record in this file" in detail(report, "alerts[0]", "evidence")


def test_a_record_removed_that_an_alert_needs(site: Site) -> None:
    ref = site.mallory_refs[2]
    doc = tampered(site, lambda d: d["records"].pop(record_at(d, ref)))
    report = site.verify(doc)
    assert failed(report) == {"alerts[0]": ["evidence", "reproduced"]}
    assert f"{ref} is not a record in this file" in detail(report, "alerts[0]", "evidence")
    # three payments of RMB 150,000 are under the RMB 500,000 line: no alert at all
    assert "raise no structuring.person_domestic alert" in detail(report, "alerts[0]",
                                                                  "reproduced")


def test_a_flipped_bundle_path_byte(site: Site) -> None:
    doc = tampered(site, lambda d: d["records"][1]["bundle"]["path"].__setitem__(
        0, flip_hex(d["records"][1]["bundle"]["path"][0], 5)))
    report = site.verify(doc, key=True)
    assert failed(report) == {"records[1]": ["bundle"], "alerts[0]": ["evidence"]}
    reason = detail(report, "records[1]", "bundle")
    assert reason.startswith("the proof bundle does not verify: inclusion: the leaf hash and "
                             "path compute root")
    assert report.item("records[1]").bundle is not None
    assert not report.item("records[1]").bundle.valid  # type: ignore[union-attr]


def test_a_bundle_of_another_record(site: Site) -> None:
    doc = tampered(site, lambda d: d["records"][0].update(bundle=d["records"][1]["bundle"]))
    report = site.verify(doc)
    assert failed(report)["records[0]"] == ["leaf", "position"]
    assert "differs from the bundle's" in detail(report, "records[0]", "leaf")


def test_a_ref_that_names_another_position(site: Site) -> None:
    doc = tampered(site, lambda d: d["records"][0].update(index=d["records"][0]["index"] + 7))
    report = site.verify(doc)
    assert failed(report)["records[0]"] == ["ref", "position"]
    assert "the bundle is for leaf" in detail(report, "records[0]", "position")


def test_a_disclosure_with_a_different_opening_salt(site: Site) -> None:
    doc = tampered(site, lambda d: d["disclosures"][0]["opening"].update(
        salt=flip_hex(d["disclosures"][0]["opening"]["salt"], 0)))
    without = site.verify(doc)
    assert failed(without) == {"disclosures[0]": ["opening"]}
    assert "record and salt commit to" in detail(without, "disclosures[0]", "opening")
    with_key = site.verify(doc, key=True)
    assert failed(with_key) == {"disclosures[0]": ["opening"]}
    item = with_key.item("disclosures[0]")
    assert item.check("escrow_agrees").status is CheckStatus.NOT_RUN
    assert item.check("sealed_response").status is CheckStatus.NOT_RUN


def test_a_disclosure_with_another_opened_amount(site: Site) -> None:
    """An opening edited to agree with nothing: it no longer opens the commitment."""
    doc = tampered(site, lambda d: d["disclosures"][0]["opening"]["record"].update(
        amount_fen=1))
    report = site.verify(doc, key=True)
    assert failed(report) == {"disclosures[0]": ["opening"]}


def test_a_response_whose_digest_differs_from_the_chain(site: Site) -> None:
    doc = tampered(site, lambda d: d["disclosures"][0].update(
        response=flip_hex(d["disclosures"][0]["response"], 150)))
    without = site.verify(doc)
    assert failed(without) == {"disclosures[0]": ["response"]}
    assert "the platform logged" in detail(without, "disclosures[0]", "response")
    with_key = site.verify(doc, key=True)
    assert failed(with_key) == {"disclosures[0]": ["response", "sealed_response"]}
    assert "does not authenticate" in detail(with_key, "disclosures[0]", "sealed_response")


def test_a_disclosure_entry_pointing_at_another_request(site: Site) -> None:
    other = site.case_b["disclosures"][0]["request_id"]
    doc = tampered(site, lambda d: d["disclosures"][0].update(request_id=other))
    report = site.verify(doc, key=True)
    assert failed(report) == {"disclosures[0]": ["request", "sealed_response"]}
    reason = detail(report, "disclosures[0]", "request")
    assert "the request names commitment" in reason and "did not log request" in reason


def test_an_unknown_disclosure_request(site: Site) -> None:
    doc = tampered(site, lambda d: d["disclosures"][0].update(request_id=999))
    report = site.verify(doc)
    assert failed(report) == {"disclosures[0]": ["request"]}
    assert "Disclosure_UnknownRequest" in detail(report, "disclosures[0]", "request")
    assert report.item("disclosures[0]").check("response").status is CheckStatus.NOT_RUN


def test_a_disclosure_whose_commitment_is_no_record_in_the_file(site: Site) -> None:
    ref = site.mallory_refs[0]
    doc = tampered(site, lambda d: d["records"].pop(record_at(d, ref)))
    report = site.verify(doc)
    assert failed(report)["disclosures[0]"] == ["record"]
    assert "is not the commitment of a record of unionpay" in detail(
        report, "disclosures[0]", "record")


def test_a_wrong_case_id(site: Site) -> None:
    doc = tampered(site, lambda d: d.update(case_id=sm3(b"another case").hex()))
    report = site.verify(doc)
    assert failed(report) == {"disclosures[0]": ["case"]}
    assert "the file is case" in detail(report, "disclosures[0]", "case")


def test_a_wrong_case_key(site: Site) -> None:
    """The chain carries per-request references under the case key, not the case id."""
    doc = tampered(site, lambda d: d.update(case_key=sm3(b"another key").hex()))
    report = site.verify(doc, key=True)
    assert failed(report) == {"disclosures[0]": ["case", "request"]}
    assert "the file's case key and the commitment give" in detail(
        report, "disclosures[0]", "case")
    assert "not the file's case key's reference" in detail(report, "disclosures[0]", "request")

    doc = tampered(site, lambda d: d["disclosures"][0].update(
        case_ref=flip_hex(d["disclosures"][0]["case_ref"], 3)))
    report = site.verify(doc)
    assert failed(report) == {"disclosures[0]": ["case"]}
    assert "the entry's case_ref is" in detail(report, "disclosures[0]", "case")


def test_a_wrong_chain_id(site: Site) -> None:
    doc = tampered(site, lambda d: d["chain"].update(chain_id=d["chain"]["chain_id"] + 1))
    report = site.verify(doc, key=True, pinned=False)
    fails = failed(report)
    assert fails[""] == ["chain"]
    assert "the chain given is" in report.check("chain").detail
    assert report.check("regulator").status is CheckStatus.NOT_RUN
    assert all(fails[f"records[{n}]"] == ["anchor"] for n in range(5))
    assert fails["disclosures[0]"] == ["sealed_response"]  # sealed for the real chain id
    item = report.item("disclosures[0]")
    assert item.check("request").status is CheckStatus.NOT_RUN


def test_a_contract_other_than_the_pinned_one(site: Site) -> None:
    doc = tampered(site, lambda d: d["chain"].update(
        contract=site.consortium.unionpay.account.address))
    report = site.verify(doc)
    assert failed(report)[""] == ["chain"]
    assert "the verifier trusts" in report.check("chain").detail


def test_another_regulator_name_or_account(site: Site) -> None:
    doc = tampered(site, lambda d: d["regulator"].update(name="cbirc"))
    report = site.verify(doc)
    assert failed(report) == {"": ["regulator"]}
    assert "registered as 'pboc'" in report.check("regulator").detail

    doc = tampered(site, lambda d: d["regulator"].update(
        account=site.consortium.unionpay.account.address))
    report = site.verify(doc)
    assert failed(report) == {"": ["regulator"], "disclosures[0]": ["request"]}
    assert "is platform on chain" in report.check("regulator").detail
    assert "not the file's regulator" in detail(report, "disclosures[0]", "request")


def test_a_bound_chain_pins_the_contract(site: Site) -> None:
    bound = site.chain.attach(site.consortium.deployment)
    report = verify_case_file(parse_case_file(site.case_a), chain=bound)
    assert report.valid and report.deployment_pinned
    doc = tampered(site, lambda d: d["chain"].update(
        contract=site.consortium.unionpay.account.address))
    report = verify_case_file(parse_case_file(doc), chain=bound)
    assert failed(report)[""] == ["chain"]


def test_a_wrong_regulator_key(site: Site) -> None:
    report = verify_case_file(parse_case_file(site.case_a), chain=site.chain,
                              regulator_keys=[site.consortium.wechatpay.sm2_key])
    fails = failed(report)
    assert all(fails[f"records[{n}]"] == ["payment"] for n in range(5))
    assert "UnknownEscrowKey" in detail(report, "records[0]", "payment")
    assert fails["disclosures[0]"] == ["sealed_response"]


def test_tampering_is_reported_through_the_cli(site: Site,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    doc = tampered(site, lambda d: d["alerts"][0].update(total_fen=1))
    path = site.write(doc, "tampered.json")
    assert main(["verify", str(path), "--rpc-url", site.url, "--regulator-key",
                 str(site.key_file), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert report["reasons"][1].startswith("identities[0] (unlisted structuring.person_domestic)")
    assert report["reasons"][:1] == [
        "alerts[0] (structuring.person_domestic payer "
        f"{identity_key('mallory').hex()[:16]}…): reproduced: not reproduced: the nearest "
        "alert the file's payments raise differs in total_fen: the file says 1, the payments "
        "give 60000000"]
    assert main(["verify", str(path), "--rpc-url", site.url]) == 1
    out = capsys.readouterr().out
    assert "FAIL  alerts[0]" in out and "FAIL  reproduced" in out


# --------------------------------------------------------------------------------------
# Malformed files: InvalidCaseFile names the JSON path; the CLI exits 2
# --------------------------------------------------------------------------------------

MALFORMED: list[tuple[str, Callable[[Doc], object], str, str]] = [
    ("format", lambda d: d.update(format="jointledger/case-file/v2"), "format",
     "unsupported format"),
    ("extra-field", lambda d: d.update(surprise=1), "surprise", "is not a field"),
    ("missing-field", lambda d: d.pop("alerts"), "alerts", "is missing"),
    ("case-id", lambda d: d.update(case_id="zz"), "case_id", "hex byte pairs"),
    ("case-id-size", lambda d: d.update(case_id="00" * 31), "case_id", "must be 32 bytes"),
    ("case-key-size", lambda d: d.update(case_key="00" * 33), "case_key", "must be 32 bytes"),
    ("created-naive", lambda d: d.update(created_at="2026-11-27T01:00:00"), "created_at",
     "time zone"),
    ("chain-id", lambda d: d["chain"].update(chain_id="1"), "chain.chain_id", "integer"),
    ("contract-case", lambda d: d["chain"].update(contract=d["chain"]["contract"].lower()),
     "chain.contract", "checksummed"),
    ("deploy-block", lambda d: d["chain"].update(deploy_block=-1), "chain.deploy_block", "0.."),
    ("abi-hash", lambda d: d["chain"].update(abi_sha256="ab"), "chain.abi_sha256",
     "must be 32 bytes"),
    ("identities-type", lambda d: d.update(identities="mallory"), "identities", "JSON array"),
    ("identity-size", lambda d: d.update(identities=["00" * 31]), "identities[0]",
     "must be 32 bytes"),
    ("regulator-account", lambda d: d["regulator"].update(account="pboc"),
     "regulator.account", "checksummed"),
    ("aml-window", lambda d: d["aml_config"].update(structuring_window_s="a day"),
     "aml_config.structuring_window", "seconds"),
    ("aml-unknown", lambda d: d["aml_config"].update(leniency=1), "aml_config.leniency",
     "is not an AML setting"),
    ("records-type", lambda d: d.update(records={}), "records", "JSON array"),
    ("record-ref", lambda d: d["records"][2].update(ref=7), "records[2].ref", "string"),
    ("record-index", lambda d: d["records"][2].update(index=-1), "records[2].index", "0.."),
    ("record-platform", lambda d: d["records"][2].update(platform="UnionPay"),
     "records[2].platform", "platform name"),
    ("leaf-escrow", lambda d: d["records"][1]["leaf"].update(escrow="xyz"),
     "records[1].leaf.escrow", "hex"),
    ("leaf-commitment", lambda d: d["records"][1]["leaf"].update(commitment="00"),
     "records[1].leaf.commitment", "32 bytes"),
    ("leaf-missing", lambda d: d["records"][1]["leaf"].pop("match_tag"),
     "records[1].leaf.match_tag", "is missing"),
    ("payment-amount", lambda d: d["records"][0]["payment"].update(amount_fen="10"),
     "records[0].payment.amount_fen", "integer"),
    ("payment-channel", lambda d: d["records"][0]["payment"].update(channel="pigeon"),
     "records[0].payment.channel", "not a channel"),
    ("payment-kind", lambda d: d["records"][0]["payment"].update(payer_kind="robot"),
     "records[0].payment.payer_kind", "one of"),
    ("payment-cash", lambda d: d["records"][0]["payment"].update(cash=True),
     "records[0].payment.cash", "cash channel"),
    ("payment-time", lambda d: d["records"][0]["payment"].update(time="yesterday"),
     "records[0].payment.time", "ISO 8601"),
    ("bundle-path", lambda d: d["records"][3]["bundle"].update(path="00"),
     "records[3].bundle.path", "list"),
    ("bundle-path-item", lambda d: d["records"][3]["bundle"]["path"].__setitem__(0, "ab"),
     "records[3].bundle.path[0]", "32 bytes"),
    ("bundle-missing", lambda d: d["records"][3].pop("bundle"), "records[3].bundle",
     "is missing"),
    ("bundle-type", lambda d: d["records"][3].update(bundle=[]), "records[3].bundle",
     "JSON object"),
    ("bundle-root", lambda d: d["records"][3]["bundle"]["checkpoint"].update(root=""),
     "records[3].bundle.checkpoint.root", "32 bytes"),
    ("duplicate-record", lambda d: d["records"].append(d["records"][0]),
     "records[5].ref", "is already records[0]"),
    ("alert-identity", lambda d: d["alerts"][0].update(identity="00" * 8),
     "alerts[0].identity", "32 bytes"),
    ("alert-rule", lambda d: d["alerts"][0].update(rule="structuring.vibes"),
     "alerts[0].rule", "not an AML rule"),
    ("alert-direction", lambda d: d["alerts"][0].update(direction="sideways"),
     "alerts[0].direction", "payer"),
    ("alert-window", lambda d: d["alerts"][0].update(window_start="2026-11-27T01:00:00"),
     "alerts[0].window_start", "time zone"),
    ("alert-refs-empty", lambda d: d["alerts"][0].update(refs=[]), "alerts[0].refs",
     "at least one"),
    ("alert-ref-type", lambda d: d["alerts"][0]["refs"].__setitem__(1, None),
     "alerts[0].refs[1]", "string"),
    ("disclosure-id", lambda d: d["disclosures"][0].update(request_id=0),
     "disclosures[0].request_id", "1.."),
    ("disclosure-case-ref", lambda d: d["disclosures"][0].pop("case_ref"),
     "disclosures[0].case_ref", "is missing"),
    ("disclosure-tx", lambda d: d["disclosures"][0].update(request_tx="00"),
     "disclosures[0].request_tx", "32 bytes"),
    ("disclosure-response", lambda d: d["disclosures"][0].update(response="0"),
     "disclosures[0].response", "hex"),
    ("opening-shape", lambda d: d["disclosures"][0].update(opening={"salt": "00"}),
     "disclosures[0].opening", "exactly"),
    ("opening-field", lambda d: d["disclosures"][0]["opening"]["record"].update(
        amount_fen=-5), "disclosures[0].opening.record.amount_fen", "got -5"),
    ("duplicate-disclosure", lambda d: d["disclosures"].append(d["disclosures"][0]),
     "disclosures[1].request_id", "is already disclosures[0]"),
]


@pytest.mark.parametrize(("change", "where", "reason"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_fields_name_their_path(site: Site, change: Callable[[Doc], object],
                                          where: str, reason: str) -> None:
    with pytest.raises(InvalidCaseFile) as caught:
        parse_case_file(tampered(site, change))
    assert caught.value.where == where
    assert reason in caught.value.reason


def test_a_document_that_is_not_an_object(site: Site) -> None:
    with pytest.raises(InvalidCaseFile) as caught:
        parse_case_file([site.case_a])
    assert caught.value.where == "document"
    with pytest.raises(InvalidCaseFile) as caught:
        parse_case_file({"records": []})
    assert caught.value.where == "format"


def test_a_malformed_case_file_exits_2_naming_the_path(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tampered(site, lambda d: d["records"][3]["bundle"]["path"].__setitem__(0, "ab"))
    path = site.write(doc, "malformed.json")
    assert main(["verify", str(path), "--rpc-url", site.url]) == 2
    err = capsys.readouterr().err
    assert "case file records[3].bundle.path[0]: must be 32 bytes, got 1" in err


def test_unusable_input_exits_2(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    path = site.write(site.case_a, "clean.json")
    assert main(["verify", str(site.tmp / "absent.json"), "--rpc-url", site.url]) == 2
    assert "cannot read the bundle or case file" in capsys.readouterr().err
    deep = site.write(json.loads("[" * 70 + "]" * 70), "deep.json")
    assert main(["verify", str(deep), "--rpc-url", site.url]) == 2
    assert "nests deeper than 64" in capsys.readouterr().err
    key = site.tmp / "pboc.pub.pem"
    key.write_bytes(gmcrypto.public_key_to_pem(site.consortium.pboc.sm2_key.public_key()))
    assert main(["verify", str(path), "--checkpoint-key", str(key)]) == 2
    assert "--checkpoint-key is for proof bundles" in capsys.readouterr().err
    assert main(["verify", str(path), "--rpc-url", site.url, "--regulator-key",
                 str(site.tmp / "no-key.pem")]) == 2
    assert "cannot read the regulator key" in capsys.readouterr().err
    assert main(["verify", str(path), "--rpc-url", site.url, "--regulator-key",
                 str(key)]) == 2  # a public key is not the regulator's private key
    assert "unexpected PEM label 'PUBLIC KEY'" in capsys.readouterr().err
    bundle = site.write(site.case_a["records"][0]["bundle"], "bundle.json")
    assert main(["verify", str(bundle), "--rpc-url", site.url, "--regulator-key",
                 str(site.key_file)]) == 2
    assert "--regulator-key is for case files" in capsys.readouterr().err


def test_a_case_file_pinned_to_a_deployment_file(site: Site, tmp_path: Path) -> None:
    other = Deployment(site.consortium.deployment.chain_id,
                       site.consortium.wechatpay.account.address,
                       site.consortium.deployment.deploy_block,
                       site.consortium.deployment.abi_sha256)
    other.save(tmp_path / "other.json")
    path = site.write(site.case_a, "pin.json")
    assert main(["verify", str(path), "--rpc-url", site.url, "--deployment",
                 str(tmp_path / "other.json")]) == 1
    assert main(["verify", str(path), "--rpc-url", site.url, "--deployment",
                 str(site.deployment_file)]) == 0


def test_an_alert_left_out_on_a_named_identity_is_a_failure(site: Site) -> None:
    """The file names the identities it is about: dropping one of their alerts is caught;
    alerts on other identities its payments happen to raise are only counted."""
    doc = tampered(site, lambda d: d["alerts"].clear())
    report = site.verify(doc)
    assert failed(report) == {"identities[0]": ["complete"]}
    assert "does not list it" in detail(report, "identities[0]", "complete")
    doc = tampered(site, lambda d: (d["alerts"].clear(), d["identities"].clear()))
    report = site.verify(doc)
    assert failed(report) == {} and report.unlisted_alerts == 1
