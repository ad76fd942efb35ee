"""Each regulator route's JSON is exactly its response model's, and each domain type with its
own JSON form (``to_json``) is served in that form, byte for byte and key for key.

Against a real regulator node with data (tests/console_support.py: alerts of both rules, a
collected and a pending disclosure) plus a record whose escrow cannot be read and a fault
with non-ASCII text, through the real app and real signed requests. The expected bytes are
built here from the node's own state, with the models' ``of`` constructors and, apart, as
compact JSON of the types' ``to_json``; never copied from a response.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from api.regulator_schemas import (
    AlertList,
    AlertWithEvidence,
    CaseFilePublic,
    CollectedDisclosurePublic,
    CommitmentTrace,
    ConsoleLogin,
    DisclosureList,
    FaultList,
    FaultPublic,
    IdentityTrace,
    IngestRound,
    IngestStatus,
    ListedDisclosure,
    LogProgressPublic,
    RegulatorDisclosurePublic,
    RegulatorHealth,
)
from api.schemas import CryptoPublic
from ledger_node.crypto.gmcrypto import crypto_backends
from ledger_node.protocol.escrow import identity_key
from ledger_node.regulator.casefile import parse_case_file
from ledger_node.regulator.node import NumberedAlert
from tests.console_support import (
    CASE_ID,
    LARGE_VALUE_IDENTITY,
    STRUCTURING_IDENTITY,
    ConsoleData,
    build_console_data,
    signed_console_login,
)
from tests.regulator_support import PERSON_TO_MERCHANT, T0, payment, platform_client, wait_anchored
from tests.test_regulator_api import Api

UNREADABLE_IDENTITY = "nobody"
"""Pays once on unionpay with no escrow: indexed with ``payment: null`` (so found by its
commitment, never by the identity)."""
FAULT_DETAIL = '根不一致: the served leaves do not reproduce "root"\n\t€'


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleData]:
    built = build_console_data(tmp_path_factory.mktemp("regulator-wire"))
    try:
        c, unionpay = built.consortium, built.nodes["unionpay"]
        bare = platform_client(c, c.unionpay, unionpay, regulator_key=None)
        built.submitted["unionpay"] += bare.submit_records(
            [payment("unionpay", 900, UNREADABLE_IDENTITY, "shop-x", 5_00, T0)],
            kinds=lambda r: PERSON_TO_MERCHANT)
        wait_anchored(unionpay, len(built.submitted["unionpay"]))
        built.regulator.sync()
        state = built.regulator.logs()[0]
        built.regulator.store.record_fault(state.platform, state.log_id, 3, 4,
                                           "root-mismatch", FAULT_DETAIL)
        yield built
    finally:
        built.stop()


@pytest.fixture(scope="module")
def api(data: ConsoleData) -> Api:
    return Api(data.regulator, data.consortium)


def model_bytes(model: BaseModel) -> bytes:
    """The model's own compact JSON: what a route returning it must answer."""
    return model.model_dump_json().encode()


def compact(document: Any) -> bytes:
    """``document`` as compact JSON text in its own key order (what the routes answered when
    they returned dicts)."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def get(api: Api, path: str) -> Any:
    answer = api.call("GET", path, api.consortium.pboc)
    assert answer.status_code == 200, answer.text
    return answer


def post(api: Api, path: str, body: Any = None, status: int = 200) -> Any:
    answer = api.call("POST", path, api.consortium.pboc, body)
    assert answer.status_code == status, answer.text
    return answer


def test_health_and_ingest_are_their_models(api: Api, data: ConsoleData) -> None:
    regulator = data.regulator
    answer = api.call("GET", "/v1/health", None)
    progress = regulator.progress()
    assert answer.content == model_bytes(RegulatorHealth.of(
        "pboc", progress, len(regulator.faults()), None, CryptoPublic(**crypto_backends())))
    assert answer.json()["faults"] == 2 and answer.json()["status"] == "ok"

    expected = IngestStatus(logs=[LogProgressPublic.of(p) for p in progress],
                            records=regulator.record_count(),
                            sm2_decryptions=regulator.sm2_decryptions)
    assert get(api, "/v1/ingest").content == model_bytes(expected)
    assert get(api, "/v1/ingest").json()["logs"] == [p.to_json() for p in progress]
    round_ = post(api, "/v1/ingest")
    assert round_.content == model_bytes(IngestRound(
        added=0, logs=[LogProgressPublic.of(p) for p in regulator.progress()]))


def test_a_failing_follow_round_is_degraded_health(api: Api, data: ConsoleData,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data.regulator, "last_error", "ChainError: 链不可达")
    answer = api.call("GET", "/v1/health", None)
    assert answer.json()["status"] == "degraded"
    assert answer.content == model_bytes(RegulatorHealth.of(
        "pboc", data.regulator.progress(), len(data.regulator.faults()), "ChainError: 链不可达",
        CryptoPublic(**crypto_backends())))


def test_faults_are_fault_to_json(api: Api, data: ConsoleData) -> None:
    answer = get(api, "/v1/faults")
    faults = data.regulator.faults()
    assert answer.content == model_bytes(FaultList(faults=[FaultPublic.of(f) for f in faults]))
    assert answer.content == compact({"faults": [f.to_json() for f in faults]})
    assert {f["kind"] for f in answer.json()["faults"]} == {"unreadable-escrow",
                                                           "root-mismatch"}
    assert "根不一致".encode() in answer.content  # UTF-8 as is, not \u escapes
    assert FAULT_DETAIL in [f["detail"] for f in answer.json()["faults"]]


@pytest.mark.parametrize("name", [STRUCTURING_IDENTITY, LARGE_VALUE_IDENTITY,
                                  UNREADABLE_IDENTITY, "no-such-person"])
def test_identity_traces_are_traced_record_to_json(api: Api, data: ConsoleData,
                                                   name: str) -> None:
    key = identity_key(name)
    answer = post(api, "/v1/trace/identity", {"identity_key": key.hex().upper()})
    records = data.regulator.trace_identity(key)
    assert answer.content == model_bytes(IdentityTrace.of(key, records))
    assert answer.json()["records"] == [r.to_json() for r in records]
    assert answer.content == compact({
        "identity_key": key.hex(), "count": len(records),
        "platforms": sorted({r.record.platform for r in records}),
        "records": [r.to_json() for r in records]})
    assert post(api, "/v1/trace/identity", {"identity": name}).content == answer.content
    assert (len(records) == 0) == (name in (UNREADABLE_IDENTITY, "no-such-person"))


def test_commitment_traces_are_traced_record_to_json(api: Api, data: ConsoleData) -> None:
    submitted = data.submitted["unionpay"][-3:] + data.submitted["wechatpay"][-1:]
    commitments = [s.prepared.leaf.commitment for s in submitted] + [bytes(32)]
    for commitment in commitments:
        answer = get(api, f"/v1/trace/commitment/{commitment.hex().upper()}")
        found = data.regulator.trace_commitment(commitment)
        assert answer.content == model_bytes(CommitmentTrace.of(commitment, found))
        assert answer.content == compact({
            "commitment": commitment.hex(), "count": len(found),
            "records": [r.to_json() for r in found]})
        assert len(found) == (commitment != bytes(32))
    bare = data.submitted["unionpay"][-1].prepared.leaf.commitment  # nobody's, no escrow
    unreadable = get(api, f"/v1/trace/commitment/{bare.hex()}").json()
    assert [r["payment"] for r in unreadable["records"]] == [None]


def test_alerts_are_numbered_alert_to_json(api: Api, data: ConsoleData) -> None:
    numbered = data.regulator.numbered_alerts()
    assert len({n.alert.rule.partition(".")[0] for n in numbered}) == 2
    for rule, wanted in ((None, numbered),
                         ("structuring", [n for n in numbered
                                          if n.alert.rule.startswith("structuring.")]),
                         ("large_value.person_domestic",
                          [n for n in numbered if n.alert.rule == "large_value.person_domestic"]),
                         ("large", [])):
        answer = get(api, "/v1/alerts" + ("" if rule is None else f"?rule={rule}"))
        assert answer.content == model_bytes(AlertList.of(wanted))
        assert answer.content == compact({"count": len(wanted),
                                          "alerts": [n.to_json() for n in wanted]})
    for n in numbered:
        answer = get(api, f"/v1/alerts/{n.id}")
        evidence = data.regulator.alert_evidence(n.alert)
        assert answer.content == model_bytes(AlertWithEvidence.of(n, evidence))
        assert answer.content == compact(n.to_json() | {
            "evidence": [r.to_json() for r in evidence]})
        assert list(answer.json())[:2] == ["id", "rule"]


def test_disclosures_are_stored_disclosure_to_json(api: Api, data: ConsoleData) -> None:
    regulator = data.regulator
    commitment = data.submitted["wechatpay"][0].prepared.leaf.commitment
    answer = post(api, "/v1/disclosures", {"commitment": commitment.hex(),
                                           "case_id": "5a" * 32}, status=201)
    stored = regulator.disclosure(answer.json()["request_id"])
    assert stored is not None
    assert answer.content == model_bytes(RegulatorDisclosurePublic.of(stored))
    assert answer.content == compact(stored.to_json())

    listed = get(api, "/v1/disclosures")
    every = regulator.disclosures()
    assert listed.content == model_bytes(DisclosureList(
        disclosures=[ListedDisclosure.of(d) for d in every]))
    assert listed.content == compact({"disclosures": [
        d.to_json() | {"collected": d.opening is not None} for d in every]})
    assert [d["collected"] for d in listed.json()["disclosures"]][:2] == [True, False]


def test_a_collected_disclosure_is_its_to_json(api: Api, data: ConsoleData) -> None:
    answer = post(api, f"/v1/disclosures/{data.fulfilled_request}/collect")
    collected = data.regulator.collect_disclosure(data.fulfilled_request)
    assert collected is not None
    assert answer.content == model_bytes(CollectedDisclosurePublic.of(collected))
    assert answer.content == compact(collected.to_json())
    assert answer.json()["opening"] == collected.opening.to_json()
    pending = api.call("POST", f"/v1/disclosures/{data.pending_request}/collect",
                       api.consortium.pboc)
    assert pending.status_code == 202 and pending.headers["retry-after"] == "1"
    assert pending.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("case", ["mallory", "whale and a ref", "empty"])
def test_case_files_are_the_nodes_document(api: Api, data: ConsoleData, case: str) -> None:
    """The case file is the node's own document (with its openings' keys sorted, as stored),
    and its model's; it parses as a case file."""
    regulator = data.regulator
    identities, refs, case_id = {
        "mallory": ([identity_key(STRUCTURING_IDENTITY)], [], CASE_ID),
        "whale and a ref": ([identity_key(LARGE_VALUE_IDENTITY)],
                            [data.regulator.alerts()[-1].refs[0]], b"\x42" * 32),
        "empty": ([], [], b"\x07" * 32),
    }[case]
    answer = post(api, "/v1/cases", {"case_id": case_id.hex(),
                                     "identities": [i.hex() for i in identities],
                                     "refs": refs})
    document = regulator.case_file(case_id, identities=identities, refs=refs)
    document["created_at"] = answer.json()["created_at"]  # the only field that moves
    assert answer.content == compact(document)
    assert answer.content == model_bytes(CaseFilePublic.of(document))
    parsed = parse_case_file(answer.json())
    assert len(parsed.records) == len(document["records"])
    for disclosure in answer.json()["disclosures"]:
        opening = disclosure["opening"]
        assert list(opening["record"]) == sorted(opening["record"])


def test_the_console_shares_the_alert_and_record_json(api: Api, data: ConsoleData) -> None:
    """The console's alerts are :meth:`NumberedAlert.to_json` plus ``basis``; its records
    :meth:`TracedRecord.to_json` plus ``commitment``: the same writers as ``/v1``."""
    login = signed_console_login("", data.consortium.pboc, http=api.client)
    assert login.status_code == 201
    token = login.json()["login_path"].removeprefix("/console/#login=")
    assert login.content == model_bytes(ConsoleLogin(login_path=f"/console/#login={token}",
                                                     expires_in_s=60))
    csrf = {"X-JL-Console": "1"}
    assert api.client.post("/console/api/session", json={"token": token},
                           headers=csrf).status_code == 200
    v1 = get(api, "/v1/alerts").json()["alerts"]
    console = api.client.get("/console/api/alerts").json()["alerts"]
    assert [{k: v for k, v in a.items() if k != "basis"} for a in console] == v1
    for n in data.regulator.numbered_alerts():
        one = api.client.get(f"/console/api/alerts/{n.id}").json()
        shared = NumberedAlert(n.id, n.alert).to_json()
        assert list(one["alert"]) == [*shared, "basis"]
        assert {k: v for k, v in one["alert"].items() if k != "basis"} == shared
        evidence = data.regulator.alert_evidence(n.alert)
        assert one["records"] == [r.to_json() | {"commitment": r.record.commitment.hex()}
                                  for r in evidence]


def test_every_v1_answer_is_described_by_a_model(api: Api) -> None:
    """The OpenAPI document names a schema for every success answer under ``/v1``; none is
    a bare object."""
    document = api.client.get("/openapi.json").json()
    described = 0
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith("2") and status != "202":
                    schema = response["content"]["application/json"]["schema"]
                    assert "$ref" in schema, (method, path, status, schema)
                    described += 1
    assert described == 14  # GET /v1/logs/{log_id}/leaves (a platform reads its own leaves back)
