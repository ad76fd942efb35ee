"""The regulator node's HTTP API: who may call it, what it answers, every rejection."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.regulator_app import create_regulator_app
from ledger_node.chain.adapter import LedgerChain
from ledger_node.crypto import gmcrypto
from ledger_node.demo.postgres_cluster import StoreLocations
from ledger_node.demo.run import Party
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.auth import sign_request
from ledger_node.protocol.escrow import identity_key
from ledger_node.regulator.node import RegulatorNode, node_audience
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


class Api:
    """The regulator app and a way to sign requests to it as any party."""

    def __init__(self, regulator: RegulatorNode, consortium: Consortium) -> None:
        self.client = TestClient(create_regulator_app(regulator))
        self.consortium = consortium
        self.regulator = regulator

    def call(self, method: str, path: str, party: Party | None, body: Any = None,
             audience: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        content = b"" if body is None else json.dumps(body).encode()
        signed: dict[str, str] = {}
        if party is not None:
            signed = sign_request(party.sm2_key, party.account.address, method, path, content,
                                  audience=audience or node_audience("pboc"))
        all_headers = signed | (headers or {}) | (
            {"Content-Type": "application/json"} if content else {})
        return self.client.request(method, path, content=content or None, headers=all_headers)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, regulator_stores: StoreLocations
        ) -> Iterator[Api]:
    consortium = make_consortium(LedgerChain.embedded())  # one per backend
    tmp = tmp_path_factory.mktemp("regulator-api")
    nodes: dict[str, PlatformNode] = {
        "unionpay": start_node(consortium, consortium.unionpay, tmp / "up.db"),
        "wechatpay": start_node(consortium, consortium.wechatpay, tmp / "wx.db"),
    }
    up = [payment("unionpay", i, "mallory", f"m{i}", 150_000_00, T0 + timedelta(hours=i))
          for i in range(2)] + [payment("unionpay", 5, "bob", "m1", 1_00)]
    wx = [payment("wechatpay", i, "mallory", f"w{i}", 150_000_00, T0 + timedelta(hours=2 + i))
          for i in range(2)]
    for name, records in (("unionpay", up), ("wechatpay", wx)):
        party = getattr(consortium, name)
        platform_client(consortium, party, nodes[name]).submit_records(
            records, kinds=lambda r: PERSON_TO_MERCHANT)
        wait_anchored(nodes[name], len(records))
    regulator = regulator_for(consortium, regulator_stores(tmp, "pboc.db"), nodes)
    yield Api(regulator, consortium)
    regulator.stop()
    for node in nodes.values():
        node.stop()


def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    document: dict[str, Any] = response.json()
    assert document["type"].endswith(f"/{slug}"), document
    return document


def test_health_needs_no_signature_and_shows_only_counts(api: Api) -> None:
    answer = api.call("GET", "/v1/health", None)
    assert answer.status_code == 200
    assert set(answer.json()) == {"status", "role", "name", "logs", "behind", "faults",
                                  "last_error", "crypto"}
    assert answer.json()["crypto"] == gmcrypto.crypto_backends()  # {"sm2": "openssl 3.0.19"}


@pytest.mark.parametrize("path", ["/v1/ingest", "/v1/faults", "/v1/alerts", "/v1/disclosures"])
def test_every_read_needs_a_regulator_signature(api: Api, path: str) -> None:
    c = api.consortium
    problem(api.call("GET", path, None), 401, "unauthenticated")
    for other in (c.unionpay, c.wechatpay, c.auditor):
        document = problem(api.call("GET", path, other), 403, "forbidden")
        assert "only regulator" in document["detail"]
    assert api.call("GET", path, c.pboc).status_code == 200


def test_requests_signed_for_another_node_or_replayed_are_refused(api: Api) -> None:
    c = api.consortium
    problem(api.call("GET", "/v1/ingest", c.pboc, audience=b"\x01" * 32), 401,
            "unauthenticated")
    content = b""
    headers = sign_request(c.pboc.sm2_key, c.pboc.account.address, "GET", "/v1/ingest",
                           content, audience=node_audience("pboc"))
    assert api.client.get("/v1/ingest", headers=headers).status_code == 200
    problem(api.client.get("/v1/ingest", headers=headers), 401, "unauthenticated")


def test_ingest_trace_and_alerts_through_the_api(api: Api) -> None:
    c = api.consortium
    ingest = api.call("POST", "/v1/ingest", c.pboc)
    assert ingest.status_code == 200
    status = api.call("GET", "/v1/ingest", c.pboc).json()
    assert status["records"] == 5
    assert {log["platform"]: log["behind"] for log in status["logs"]} == {
        "unionpay": 0, "wechatpay": 0}

    traced = api.call("POST", "/v1/trace/identity", c.pboc, {"identity": " mallory "}).json()
    assert traced["identity_key"] == identity_key("mallory").hex()
    assert traced["count"] == 4 and traced["platforms"] == ["unionpay", "wechatpay"]
    assert all(r["bundle"]["format"].startswith("jointledger/proof-bundle") for r in
               traced["records"])
    by_key = api.call("POST", "/v1/trace/identity", c.pboc,
                      {"identity_key": identity_key("mallory").hex()}).json()
    assert by_key["records"] == traced["records"]

    commitment = traced["records"][0]["leaf"]["commitment"]
    back = api.call("GET", f"/v1/trace/commitment/{commitment}", c.pboc).json()
    assert back["count"] == 1
    assert back["records"][0]["payment"]["payer_key"] == identity_key("mallory").hex()

    alerts = api.call("GET", "/v1/alerts", c.pboc).json()
    assert [a["rule"] for a in alerts["alerts"]] == ["structuring.person_domestic"]
    assert api.call("GET", "/v1/alerts?rule=large_value", c.pboc).json()["count"] == 0
    assert [a["id"] for a in alerts["alerts"]] == [1]  # numbered from 1
    one = api.call("GET", "/v1/alerts/1", c.pboc).json()
    assert len(one["evidence"]) == 4
    problem(api.call("GET", "/v1/alerts/7", c.pboc), 404, "unknown-alert")
    problem(api.call("GET", "/v1/alerts/0", c.pboc), 422, "validation-error")

    case = api.call("POST", "/v1/cases", c.pboc, {
        "case_id": "ab" * 32, "identities": [identity_key("mallory").hex()]}).json()
    assert case["format"] == "jointledger/case-file/v1"
    assert len(case["alerts"]) == 1 and len(case["records"]) == 4


@pytest.mark.parametrize(("body", "status", "slug"), [
    ({"identity": "a", "identity_key": "00" * 32}, 400, "bad-request"),
    ({}, 400, "bad-request"),
    ({"identity_key": "zz" * 32}, 422, "validation-error"),
    ({"identity": ""}, 422, "validation-error"),
    ({"identity": "x", "extra": 1}, 422, "validation-error"),
])
def test_bad_trace_requests_are_problems(api: Api, body: dict[str, Any], status: int,
                                         slug: str) -> None:
    problem(api.call("POST", "/v1/trace/identity", api.consortium.pboc, body), status, slug)


def test_bad_paths_and_bodies_are_problems(api: Api) -> None:
    pboc = api.consortium.pboc
    problem(api.call("GET", "/v1/trace/commitment/xyz", pboc), 422, "validation-error")
    problem(api.call("POST", "/v1/cases", pboc, {"case_id": "ab" * 32, "identities": ["12"]}),
            400, "bad-request")
    problem(api.call("POST", "/v1/cases", pboc, {"case_id": "ab"}), 422, "validation-error")
    problem(api.call("POST", "/v1/cases", pboc, {"case_id": "ab" * 32, "refs": ["nope"]}),
            404, "unknown-leaf")
    problem(api.call("POST", "/v1/disclosures", pboc,
                     {"commitment": "00" * 32, "case_id": "11" * 32}), 404, "unknown-leaf")
    problem(api.call("POST", "/v1/disclosures/999/collect", pboc), 404, "unknown-leaf")
    bad = api.client.post("/v1/trace/identity", content=b"{not json",
                          headers=sign_request(pboc.sm2_key, pboc.account.address, "POST",
                                               "/v1/trace/identity", b"{not json",
                                               audience=node_audience("pboc"))
                          | {"Content-Type": "application/json"})
    problem(bad, 400, "malformed-json")


def test_disclosure_requests_are_shown_in_their_stored_form(api: Api) -> None:
    """``POST`` and ``GET /v1/disclosures`` both show a request as ``StoredDisclosure.to_json``
    (lowercase hex whatever the case asked in), the list adding whether it was collected."""
    pboc = api.consortium.pboc
    api.call("POST", "/v1/ingest", pboc)
    traced = api.call("POST", "/v1/trace/identity", pboc, {"identity": "bob"}).json()
    commitment = traced["records"][0]["leaf"]["commitment"]
    answer = api.call("POST", "/v1/disclosures", pboc,
                      {"commitment": commitment.upper(), "case_id": "CD" * 32})
    assert answer.status_code == 201, answer.text
    stored = api.regulator.store.disclosure(answer.json()["request_id"])
    assert stored is not None
    assert list(answer.json()) == ["request_id", "platform", "commitment", "case_id", "tx_hash"]
    assert answer.json() == stored.to_json()
    assert (answer.json()["commitment"], answer.json()["case_id"]) == (commitment, "cd" * 32)
    listed = api.call("GET", "/v1/disclosures", pboc).json()["disclosures"]
    assert stored.to_json() | {"collected": False} in listed
    assert all(list(d) == [*stored.to_json(), "collected"] for d in listed)
