"""Reconciliation end to end (PROTOCOL §7, issue 6): a generated payment day with planted
reconciliation faults goes through both platforms' SDKs (cross-platform halves tagged) and
real nodes; each platform reconciles with the other in its own process (both logs read over
the public summaries endpoint and verified against the chain) and through its node's
``POST /v1/reconciliation``. Exactly the planted missing and mismatched payments are
reported, with proof bundles that verify against the chain; nothing else is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from ledger_node.chain.adapter import LedgerChain
from ledger_node.client.sdk import SubmittedRecord, own_records
from ledger_node.demo.scenario import (
    PlantedKind,
    ReconciliationMismatch,
    ReconciliationMissing,
    RecordRef,
    Scenario,
    ScenarioSpec,
    generate_scenario,
)
from ledger_node.errors import ApiError
from ledger_node.log.checkpoint import log_id_for
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.aml import Direction
from ledger_node.protocol.bundle import verify_bundle
from ledger_node.protocol.commitment import verify_opening
from ledger_node.protocol.keys_in_force import platform_member
from ledger_node.protocol.reconciliation import ReconciliationReport, Status, Window
from ledger_node.reconcile.reconciler import reconcile
from tests.api_support import Consortium, make_consortium
from tests.reconciliation_support import (
    PLATFORMS,
    reader,
    scenario_hint,
    sdk,
    start_platforms,
    verified_log,
)
from tests.regulator_support import wait_anchored

PLANTED = (
    ReconciliationMissing(Direction.PAYEE), ReconciliationMissing(Direction.PAYER),
    ReconciliationMismatch(Direction.PAYEE, delta_fen=-100),
    ReconciliationMismatch(Direction.PAYER, delta_fen=250),
)


def _other(name: str) -> str:
    return next(p for p in PLATFORMS if p != name)


@dataclass
class Day:
    """One scenario day submitted by both platforms, reconciled both ways."""

    scenario: Scenario
    consortium: Consortium
    nodes: dict[str, PlatformNode]
    submitted: dict[str, list[SubmittedRecord]]
    window: Window
    reports: dict[str, ReconciliationReport]

    def ref(self, platform: str, index: int) -> RecordRef:
        """The ground-truth reference of ``platform``'s leaf ``index``."""
        item = next(s for s in self.submitted[platform] if s.receipt.index == index)
        return platform, item.prepared.record.local_tx_id

    def expected(self, platform: str, kind: PlantedKind) -> set[RecordRef]:
        """``platform``'s records of the planted cases of ``kind``."""
        return {ref for case in self.scenario.planted if case.kind is kind
                for ref in case.records if ref[0] == platform}


def _reconcile(day_nodes: dict[str, PlatformNode], consortium: Consortium, name: str,
               submitted: list[SubmittedRecord], window: Window, **options: object
               ) -> ReconciliationReport:
    party = getattr(consortium, name)
    settings: dict[str, object] = {"grace": 3600, "as_of": window.end + timedelta(hours=2),
                                   "own_keys": [party.sm2_key]} | options
    return reconcile(
        consortium.chain, own=consortium.chain.member(party.account.address),
        own_log=verified_log(consortium, day_nodes[name]),
        counterparty=platform_member(consortium.chain, _other(name)),
        counterparty_log=verified_log(consortium, day_nodes[_other(name)]),
        records=[(s.receipt.index, s.prepared.opening) for s in submitted],
        window=window, **settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=[3, 8], ids=["seed-3", "seed-8"])
def day(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Day]:
    spec = ScenarioSpec(payments=700, seed=request.param, people=140, merchants=24,
                        planted=PLANTED)
    scenario = generate_scenario(spec)
    consortium = make_consortium(LedgerChain.embedded())
    nodes = start_platforms(consortium, tmp_path_factory.mktemp(f"recon-{request.param}"))
    try:
        hint = scenario_hint(scenario)
        submitted = {}
        for name, records in scenario.records.items():
            client = sdk(consortium, getattr(consortium, name), nodes[name], chunk_size=250)
            submitted[name] = client.submit_records(records, kinds=scenario.kinds,
                                                    cross_platform=hint)
            wait_anchored(nodes[name], len(records))
        window = Window(spec.day_start, spec.day_start + timedelta(days=1))
        reports = {name: _reconcile(nodes, consortium, name, submitted[name], window)
                   for name in PLATFORMS}
        yield Day(scenario, consortium, nodes, submitted, window, reports)
    finally:
        for node in nodes.values():
            node.stop()


def _refs(day: Day, name: str, status: Status) -> set[RecordRef]:
    return {day.ref(name, item.outcome.expectation.index)
            for item in day.reports[name].with_status(status)}


@pytest.mark.parametrize("name", PLATFORMS)
def test_exactly_the_planted_faults_are_reported(day: Day, name: str) -> None:
    report = day.reports[name]
    missing = day.expected(name, PlantedKind.RECONCILIATION_MISSING)
    mismatched = day.expected(name, PlantedKind.RECONCILIATION_MISMATCH)
    assert _refs(day, name, Status.MISSING) == missing
    assert _refs(day, name, Status.AMOUNT_MISMATCH) == mismatched
    assert len(mismatched) == 2  # both mismatch cases have a half on every platform
    cross = [s for s in day.submitted[name] if s.prepared.record.clearing_ref]
    counts = report.counts()
    assert counts == {"matched": len(cross) - len(missing) - 2, "amount_mismatch": 2,
                      "missing": len(missing), "pending": 0, "duplicated_on_counterparty": 0}
    assert report.skipped.to_json() == {
        "outside_window": 0, "unanchored": 0, "untagged": 0, "other_counterparty": 0,
        "not_cross_platform": len(day.submitted[name]) - len(cross)}
    assert not report.clean and counts["matched"] > 50


def test_the_missing_halves_are_split_between_the_platforms_as_planted(day: Day) -> None:
    """Each missing case is reported by the platform that has its one record; a platform
    never reports a payment missing whose record it lacks itself."""
    for case in day.scenario.planted:
        if case.kind is PlantedKind.RECONCILIATION_MISSING:
            (ref,) = case.records
            assert ref in _refs(day, ref[0], Status.MISSING)
            assert not _refs(day, _other(ref[0]), Status.MISSING) & case.records


def test_the_sides_of_every_cross_platform_payment_differ(day: Day) -> None:
    hint = scenario_hint(day.scenario)
    sides: dict[str, set[str]] = {}
    for _, record in day.scenario.all_records():
        cross = hint(record)
        if cross is not None:
            sides.setdefault(record.clearing_ref, set()).add(cross.side.value)
    assert all(len(s) == 1 or s == {"payer", "payee"} for s in sides.values())
    assert sum(len(s) == 2 for s in sides.values()) > 50


def test_findings_carry_proofs_that_settle_the_dispute(day: Day) -> None:
    """A mismatch's two bundles verify against the chain, and the counterparty's opening
    of its half (which it would disclose to an arbiter) opens the counterparty's leaf with
    a different amount; a missing payment's own bundle verifies."""
    openings = {(name, s.receipt.index): s.prepared.opening
                for name, items in day.submitted.items() for s in items}
    chain = day.consortium.chain
    name = "unionpay"
    for item in day.reports[name].with_status(Status.AMOUNT_MISMATCH):
        assert item.own_bundle is not None
        assert verify_bundle(item.own_bundle, chain=chain).valid
        ((index, leaf, bundle),) = item.counterparty
        assert bundle is not None and verify_bundle(bundle, chain=chain).valid
        theirs = openings[(_other(name), index)]
        verify_opening(leaf.commitment, theirs)
        mine = item.outcome.expectation.record
        assert mine is not None and theirs.record.clearing_ref == mine.clearing_ref
        assert theirs.record.amount_fen != mine.amount_fen
        assert leaf.amount_tag not in {pair.amount_tag for pair in item.outcome.expectation.tags}
    for name in PLATFORMS:
        for item in day.reports[name].with_status(Status.MISSING):
            assert item.own_bundle is not None and not item.counterparty
            assert verify_bundle(item.own_bundle, chain=chain).valid


def test_report_document(day: Day) -> None:
    document = day.reports["wechatpay"].to_json(matched_bundles=False)
    assert document["format"] == "jointledger/reconciliation/v1"
    assert document["platform"] == "wechatpay" and document["counterparty"] == "unionpay"
    assert document["own_log"]["verified_size"] == len(day.submitted["wechatpay"])
    assert document["counterparty_log"]["anchor"]["contract"] == day.consortium.deployment.address
    findings = [i for i in document["items"] if i["status"] != "matched"]
    matched = [i for i in document["items"] if i["status"] == "matched"]
    assert all("bundle" in i and all("bundle" in c for c in i["counterparty"])
               for i in findings)
    assert matched and all("bundle" not in i for i in matched)
    assert all(i["record"]["clearing_ref"].startswith("CR") for i in document["items"])
    assert len(document["pairwise_keys"]) == 1


@pytest.mark.parametrize("name", PLATFORMS)
def test_the_node_endpoint_gives_the_same_findings(day: Day, name: str) -> None:
    client = sdk(day.consortium, getattr(day.consortium, name), day.nodes[name], day.nodes)
    document = client.reconcile(_other(name), day.window, own_records(day.submitted[name]),
                                counterparty_url=f"http://{_other(name)}",
                                chain=day.consortium.chain,
                                as_of=day.window.end + timedelta(hours=2))
    local = day.reports[name]
    assert document["counts"] == local.counts()
    assert document["skipped"] == local.skipped.to_json()
    by_status = {(i["index"], i["status"]) for i in document["items"]}
    assert by_status == {(i.outcome.expectation.index, i.status.value) for i in local.items}
    for item in document["items"]:
        if item["status"] != "matched":
            assert item["bundle"]["leaf"] == item["leaf"]
            assert item["record"]["clearing_ref"]


# ---------------------------------------------------------------------- the summaries endpoint


def test_summaries_are_public_and_carry_no_escrow(day: Day) -> None:
    node = day.nodes["unionpay"]
    public = reader(node)
    served = public.summaries(node.log_id, 0, 5)
    assert served.platform == "unionpay" and served.size == node.size()
    for index, summary in enumerate(served.summaries):
        leaf = node.leaf(index)
        assert summary.leaf_data() == leaf.leaf_data()
        assert summary.escrow_digest == leaf.escrow_digest
    raw = public._http.get(f"/v1/logs/{node.log_id.hex()}/summaries",
                           params={"start": 0, "end": 3})
    assert raw.status_code == 200 and node.leaf(0).escrow.hex() not in raw.text
    assert "escrow" not in raw.text.replace("escrow_digest", "")


@pytest.mark.parametrize(("query", "status", "slug"), [
    ({"start": 0, "end": 10_001}, 422, "invalid-range"),
    ({"start": 5, "end": 5}, 422, "invalid-range"),
    ({"start": -1, "end": 5}, 422, "validation-error"),
    ({"start": 0}, 422, "validation-error"),
    ({"start": -1, "end": 1}, 416, "range-not-satisfiable"),  # [size - 1, size + 1)
])
def test_summaries_rejections(day: Day, query: dict[str, int], status: int, slug: str) -> None:
    node = day.nodes["unionpay"]
    if status == 416:
        query = {"start": node.size() - 1, "end": node.size() + 1}
    answer = reader(node)._http.get(f"/v1/logs/{node.log_id.hex()}/summaries", params=query)
    assert answer.status_code == status
    assert answer.json()["type"].endswith(slug)
    if status == 416:
        assert answer.json()["size"] == node.size()


def test_summaries_of_another_log_are_not_served_here(day: Day) -> None:
    with pytest.raises(ApiError) as caught:
        reader(day.nodes["unionpay"]).summaries(log_id_for("wechatpay"), 0, 1)
    assert caught.value.status == 404 and caught.value.problem_type.endswith("unknown-log")


def test_summary_paths_with_bad_log_ids_are_refused(day: Day) -> None:
    answer = reader(day.nodes["unionpay"])._http.get("/v1/logs/xyz/summaries?start=0&end=1")
    assert answer.status_code == 422


def test_every_submitted_cross_record_is_tagged(day: Day) -> None:
    for name, items in day.submitted.items():
        for item in items:
            leaf = item.prepared.leaf
            assert (leaf.match_tag is not None) == bool(item.prepared.record.clearing_ref), name
