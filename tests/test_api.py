"""The HTTP API through TestClient against a real PlatformNode on the embedded chain.

Every rejection path is asserted with its status, problem type and detail, and with the
log unchanged afterwards (nothing stored, the node keeps serving).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from ledger_node.chain.adapter import LedgerChain
from ledger_node.crypto import gmcrypto
from ledger_node.demo.run import sample_records
from ledger_node.http_settings import Settings
from ledger_node.log import leaf as leaf_module
from ledger_node.log import merkle
from ledger_node.log.leaf import Leaf
from ledger_node.platform import intake as intake_module
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.auth import sign_batch
from ledger_node.protocol.bundle import ProofBundle, verify_bundle
from ledger_node.protocol.commitment import (
    RecordOpening,
    disclose_field,
    new_salt,
    record_commitment,
)
from tests.api_support import (
    Consortium,
    make_consortium,
    make_node,
    random_leaves,
    submission,
    wait_for,
)


def assert_problem(response: Any, status: int, slug: str, *words: str) -> dict[str, Any]:
    """Assert an RFC 9457 problem answer; return its document."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    document: dict[str, Any] = response.json()
    assert document["type"].endswith("/problems/" + slug), document
    assert document["status"] == status
    assert document["title"] and document["instance"].startswith("/")
    for word in words:
        assert word in document["detail"], (word, document["detail"])
    return document


@pytest.fixture(scope="module")
def client(node: PlatformNode) -> Iterator[TestClient]:
    app = create_app(node, Settings(max_body_bytes=2 * 1024 * 1024))
    with TestClient(app) as client:
        yield client


@pytest.fixture()
def url(node: PlatformNode) -> str:
    return f"/v1/logs/{node.log_id.hex()}/leaves"


def anchored_bundle(client: TestClient, index: int) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        response = client.get(f"/v1/leaves/{index}/bundle")
        if response.status_code == 202:
            assert response.headers["Retry-After"].isdigit()
            return None
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body
    return wait_for(probe)


# ---------------------------------------------------------------------- the happy path


def test_an_http_submission_computes_its_batch_digest_once(
    client: TestClient, node: PlatformNode, consortium: Consortium, url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    real = leaf_module.batch_digest_from_data

    def counting(log_id: bytes, datas: Any) -> bytes:
        calls.append(len(datas))
        return real(log_id, datas)

    monkeypatch.setattr(leaf_module, "batch_digest_from_data", counting)
    monkeypatch.setattr(intake_module, "batch_digest_from_data", counting)
    body = submission(consortium.unionpay, node.log_id, random_leaves(3, seed=77))
    calls.clear()  # signing the batch above is the client's digest, not the node's
    response = client.post(url, json=body)
    assert response.status_code == 201, response.text
    assert calls == [3]



def test_submit_is_durable_idempotent_and_provable(
    client: TestClient, node: PlatformNode, consortium: Consortium, url: str
) -> None:
    leaves = random_leaves(5, seed=1)
    first = client.post(url, json=submission(consortium.unionpay, node.log_id, leaves))
    assert first.status_code == 201, first.text
    receipts = first.json()["receipts"]
    assert [r["duplicate"] for r in receipts] == [False] * 5
    indexes = [r["index"] for r in receipts]
    assert indexes == list(range(indexes[0], indexes[0] + 5))
    size = node.size()

    # A replayed submission is harmless: same receipts, marked duplicate, nothing stored.
    again = client.post(url, json=submission(consortium.unionpay, node.log_id, leaves))
    assert again.status_code == 201
    assert [r["index"] for r in again.json()["receipts"]] == indexes
    assert all(r["duplicate"] for r in again.json()["receipts"])
    assert node.size() == size

    status = client.get(f"/v1/leaves/{indexes[2]}").json()
    assert status["leaf"]["commitment"] == leaves[2].commitment.hex()
    assert status["leaf_hash"] == receipts[2]["leaf_hash"]
    by_hash = client.get(f"/v1/leaves/by-hash/{receipts[2]['leaf_hash']}")
    assert by_hash.status_code == 200 and by_hash.json()["index"] == indexes[2]

    document = anchored_bundle(client, indexes[2])
    bundle = ProofBundle.from_json(document)
    assert bundle.leaf.commitment == leaves[2].commitment
    verdict = verify_bundle(bundle, chain=LedgerChain(node.chain.w3))
    assert verdict.valid, verdict.reasons
    answer = client.post("/v1/verify", json={"bundle": document})
    assert answer.status_code == 200 and answer.json()["valid"] is True
    assert answer.json()["anchoring_checked"] is True


def test_verify_with_opening_and_disclosure(client: TestClient, node: PlatformNode,
                                            consortium: Consortium, url: str) -> None:
    import random

    record = sample_records("unionpay", 1, random.Random(7))[0]
    salt = new_salt()
    leaf = Leaf(record_commitment(record, salt))
    receipt = client.post(url, json=submission(consortium.unionpay, node.log_id, [leaf]))
    document = anchored_bundle(client, receipt.json()["receipts"][0]["index"])
    opening = RecordOpening(record, salt).to_json()
    disclosure = disclose_field(record, salt, "amount_fen").to_json()
    verdict = client.post("/v1/verify", json={"bundle": document, "opening": opening,
                                              "disclosure": disclosure}).json()
    assert verdict["valid"] is True
    assert {"opening", "disclosure"} <= {c["name"] for c in verdict["checks"]}
    wrong = RecordOpening(record, new_salt()).to_json()
    verdict = client.post("/v1/verify", json={"bundle": document, "opening": wrong}).json()
    assert verdict["valid"] is False and any("opening" in r for r in verdict["reasons"])


def test_tampered_or_foreign_bundles_do_not_verify(client: TestClient, node: PlatformNode,
                                                   consortium: Consortium, url: str) -> None:
    leaves = random_leaves(3, seed=2)
    client.post(url, json=submission(consortium.unionpay, node.log_id, leaves))
    index = node.find(merkle.SM3_HASHER.hash_leaf(leaves[0].leaf_data()))
    assert index is not None
    document = anchored_bundle(client, index)

    def verdict(doc: dict[str, Any]) -> dict[str, Any]:
        response = client.post("/v1/verify", json={"bundle": doc})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    other_leaf = json.loads(json.dumps(document))
    other_leaf["leaf"]["commitment"] = "00" * 32
    other_size = json.loads(json.dumps(document))
    other_size["tree_size"] += 1
    other_root = json.loads(json.dumps(document))
    other_root["checkpoint"]["root"] = "11" * 32
    other_chain = json.loads(json.dumps(document))
    other_chain["anchor"]["chain_id"] += 1
    other_log = json.loads(json.dumps(document))
    other_log["checkpoint"]["log_id"] = "22" * 32
    for tampered in (other_leaf, other_size, other_root, other_chain, other_log):
        result = verdict(tampered)
        assert result["valid"] is False and result["reasons"], tampered
    assert verdict(document)["valid"] is True


def test_consistency_between_anchored_checkpoints(client: TestClient, node: PlatformNode,
                                                  consortium: Consortium, url: str) -> None:
    for seed in (3, 4):
        receipts = client.post(url, json=submission(consortium.unionpay, node.log_id,
                                                    random_leaves(2, seed=seed))).json()
        anchored_bundle(client, receipts["receipts"][-1]["index"])
    checkpoints = client.get("/v1/checkpoints").json()["checkpoints"]
    assert len(checkpoints) >= 2
    assert all(c["tx_hash"].startswith("0x") for c in checkpoints)
    first, last = checkpoints[0], checkpoints[-1]
    proof = client.get("/v1/consistency", params={"from": first["tree_size"],
                                                   "to": last["tree_size"]})
    assert proof.status_code == 200, proof.text
    body = proof.json()
    assert (body["root_from"], body["root_to"]) == (first["root"], last["root"])
    merkle.verify_consistency(merkle.SM3_HASHER, body["from"], body["to"],
                              tuple(bytes.fromhex(p) for p in body["path"]),
                              bytes.fromhex(first["root"]), bytes.fromhex(last["root"]))
    after = client.get("/v1/checkpoints", params={"after": first["tree_size"], "limit": 1})
    assert [c["tree_size"] for c in after.json()["checkpoints"]] == [checkpoints[1]["tree_size"]]
    assert_problem(client.get("/v1/consistency", params={"from": 3, "to": 2}), 422,
                   "invalid-checkpoint", "from (3)")
    missing = last["tree_size"] + 1000
    assert_problem(client.get("/v1/consistency", params={"from": first["tree_size"],
                                                       "to": missing}), 404,
                   "unknown-checkpoint", str(missing))
    assert_problem(client.get("/v1/consistency", params={"from": "x", "to": 2}), 422,
                   "validation-error", "query.from")


def test_health_metrics_and_openapi(client: TestClient, node: PlatformNode) -> None:
    health = client.get("/v1/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["chain"]["reachable"] is True
    assert body["store_size"] == node.size() and body["platform"] == "unionpay"
    client.get("/v1/leaves/999999")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert "jointledger_leaves_total" in text and "jointledger_anchor_latency_p99_seconds" in text
    assert 'jointledger_http_requests_total{route="/v1/leaves/{index}",method="GET",status="404"}' \
        in text
    assert 'jointledger_http_errors_total{route="/v1/leaves/{index}",kind="client"}' in text
    spec = client.get("/openapi.json").json()
    assert "/v1/logs/{log_id}/leaves" in spec["paths"]
    assert spec["components"]["schemas"]["SubmissionCreate"]["examples"]
    assert client.get("/docs").status_code == 200


# ---------------------------------------------------------------------- rejections


def test_malformed_and_mistyped_submissions(client: TestClient, node: PlatformNode,
                                            consortium: Consortium, url: str) -> None:
    size = node.size()
    good = submission(consortium.unionpay, node.log_id, random_leaves(1, seed=10))
    assert_problem(client.post(url, content=b'{"leaves": [', headers={
        "content-type": "application/json"}), 400, "malformed-json", "not valid JSON")
    assert_problem(client.post(url, json=good | {"leaves": "x"}), 422, "validation-error",
                   "body.leaves")
    assert_problem(client.post(url, json=good | {"signer": 5}), 422, "validation-error",
                   "body.signer")
    assert_problem(client.post(url, json=[1, 2]), 422, "validation-error", "body")
    short = good | {"leaves": [{"commitment": "ab" * 31}]}
    doc = assert_problem(client.post(url, json=short), 422, "validation-error",
                         "body.leaves.0.commitment")
    assert doc["errors"][0]["field"] == "body.leaves.0.commitment"
    assert_problem(client.post(url, json=good | {"leaves": [{"commitment": "zz" * 32}]}), 422,
                   "validation-error", "body.leaves.0.commitment")
    assert_problem(client.post(url, json=good | {"leaves": [
        {"commitment": "ab" * 32, "colour": "red"}]}), 422, "validation-error", "colour")
    assert_problem(client.post(url, json=good | {"leaves": [
        {"commitment": "ab" * 32, "escrow": "00" * 4097}]}), 422, "validation-error",
        "body.leaves.0.escrow")
    assert_problem(client.post(url, json=good | {"leaves": [
        {"commitment": "ab" * 32, "match_tag": "cd" * 32}]}), 422, "invalid-leaf",
        "leaves[0].amount_tag")
    assert_problem(client.post(url, json=good | {"signature": "xyz"}), 422, "validation-error",
                   "body.signature")
    assert_problem(client.post(url, content=b"leaves=1", headers={
        "content-type": "text/plain"}), 422, "validation-error", "body")
    assert node.size() == size
    assert client.post(url, json=good).status_code == 201  # the node keeps serving


def test_batch_size_limits(client: TestClient, node: PlatformNode, consortium: Consortium,
                           url: str) -> None:
    size = node.size()
    empty = {"leaves": [], "signer": consortium.unionpay.account.address, "signature": "00"}
    assert_problem(client.post(url, json=empty), 422, "validation-error", "body.leaves",
                   "at least 1")
    leaf = {"commitment": "ab" * 32}
    over = {"leaves": [leaf] * 10_001, "signer": consortium.unionpay.account.address,
            "signature": "00"}
    assert_problem(client.post(url, json=over), 422, "validation-error", "body.leaves",
                   "at most 10000")
    small = create_app(node, Settings(max_batch=2))
    with TestClient(small) as limited:
        body = submission(consortium.unionpay, node.log_id, random_leaves(3, seed=11))
        assert_problem(limited.post(url, json=body), 422, "invalid-batch", "1..2 leaves, got 3")
    assert node.size() == size


def test_oversized_bodies_are_refused_before_parsing(client: TestClient, node: PlatformNode,
                                                     url: str) -> None:
    size = node.size()
    huge = b"{" + b" " * (3 * 1024 * 1024) + b"}"
    assert_problem(client.post(url, content=huge, headers={"content-type": "application/json"}),
                   413, "body-too-large", str(2 * 1024 * 1024))

    def stream() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for _ in range(40):
            yield b" " * 100_000

    assert_problem(client.post(url, content=stream(), headers={
        "content-type": "application/json"}), 413, "body-too-large", "streamed")
    assert_problem(client.post("/v1/verify", content=huge, headers={
        "content-type": "application/json"}), 413, "body-too-large")
    assert node.size() == size
    assert client.get("/v1/health").status_code == 200


def test_deeply_nested_json_is_refused_before_parsing(client: TestClient, node: PlatformNode,
                                                      url: str) -> None:
    """py-evm raises the recursion limit: parsing [[[[... could crash the whole process."""
    size = node.size()
    deep = b"[" * 200_000 + b"]" * 200_000
    for target in (url, "/v1/verify"):
        assert_problem(client.post(target, content=deep,
                                   headers={"content-type": "application/json"}),
                       400, "malformed-json", "nested deeper than 64")
    assert node.size() == size
    assert client.get("/v1/health").status_code == 200


def test_unknown_leaves_logs_and_routes(client: TestClient, node: PlatformNode,
                                        consortium: Consortium) -> None:
    missing = node.size() + 10
    assert_problem(client.get(f"/v1/leaves/{missing}"), 404, "unknown-leaf", str(missing))
    assert_problem(client.get(f"/v1/leaves/{missing}/bundle"), 404, "unknown-leaf")
    assert_problem(client.get(f"/v1/leaves/by-hash/{'ab' * 32}"), 404, "unknown-leaf", "ab" * 32)
    assert_problem(client.get("/v1/leaves/by-hash/abcd"), 422, "validation-error",
                   "path.leaf_hash")
    assert_problem(client.get("/v1/leaves/-1"), 422, "validation-error", "path.index")
    assert_problem(client.get("/v1/leaves/abc"), 422, "validation-error", "path.index")
    other_log = "cd" * 32
    body = submission(consortium.unionpay, node.log_id, random_leaves(1, seed=12))
    assert_problem(client.post(f"/v1/logs/{other_log}/leaves", json=body), 404, "unknown-log",
                   other_log, node.log_id.hex())
    assert_problem(client.post("/v1/logs/xyz/leaves", json=body), 422, "validation-error",
                   "path.log_id")
    assert_problem(client.get("/v1/nothing"), 404, "not-found", "/v1/nothing")
    assert_problem(client.delete("/v1/checkpoints"), 405, "method-not-allowed", "DELETE")


def test_submission_signers_are_checked(client: TestClient, node: PlatformNode,
                                        consortium: Consortium, url: str) -> None:
    size = node.size()
    leaves = random_leaves(2, seed=13)
    assert_problem(client.post(url, json=submission(consortium.pboc, node.log_id, leaves)),
                   403, "forbidden", "regulator", "only platforms")
    assert_problem(client.post(url, json=submission(consortium.auditor, node.log_id, leaves)),
                   403, "forbidden", "auditor")
    assert_problem(client.post(url, json=submission(consortium.wechatpay, node.log_id, leaves)),
                   403, "forbidden", "its own log")
    stranger = gmcrypto.generate_private_key()
    unknown = {"leaves": [leaf.to_json() for leaf in leaves],
               "signer": "0x" + "12" * 20,
               "signature": sign_batch(stranger, node.log_id, leaves).hex()}
    assert_problem(client.post(url, json=unknown), 401, "unauthenticated", "not a member")
    forged = submission(consortium.unionpay, node.log_id, leaves)
    forged["signature"] = sign_batch(stranger, node.log_id, leaves).hex()
    assert_problem(client.post(url, json=forged), 422, "invalid-batch", "signature")
    wrong_log = submission(consortium.unionpay, b"\x01" * 32, leaves)  # signed for another log
    assert_problem(client.post(url, json=wrong_log), 422, "invalid-batch", "signature")
    swapped = submission(consortium.unionpay, node.log_id, leaves)
    swapped["leaves"] = swapped["leaves"][::-1]  # signature over another order
    assert_problem(client.post(url, json=swapped), 422, "invalid-batch", "signature")
    assert_problem(client.post(url, json=forged | {"signature": "00"}), 422, "invalid-batch")
    assert node.size() == size


def test_malformed_verify_requests(client: TestClient) -> None:
    assert_problem(client.post("/v1/verify", json={"bundle": {"format": "nope"}}), 422,
                   "invalid-bundle", "format")
    assert_problem(client.post("/v1/verify", json={"bundle": [1]}), 422, "validation-error",
                   "body.bundle")
    assert_problem(client.post("/v1/verify", json={}), 422, "validation-error", "body.bundle")
    assert_problem(client.post("/v1/verify", content=b"{", headers={
        "content-type": "application/json"}), 400, "malformed-json")


def test_bundle_is_202_while_pending(tmp_path: Path) -> None:
    consortium = make_consortium(LedgerChain.embedded())
    slow = make_node(consortium, tmp_path / "slow.db", seal_interval=3600.0,
                     seal_size=1_000_000)
    try:
        with TestClient(create_app(slow, Settings(retry_after_s=3))) as client:
            url = f"/v1/logs/{slow.log_id.hex()}/leaves"
            body = submission(consortium.unionpay, slow.log_id, random_leaves(1, seed=14))
            index = client.post(url, json=body).json()["receipts"][0]["index"]
            pending = client.get(f"/v1/leaves/{index}/bundle")
            assert pending.status_code == 202 and pending.headers["Retry-After"] == "3"
            assert pending.json()["type"].endswith("/problems/proof-pending")
            assert pending.json()["index"] == index and "retry after 3 s" in pending.json()[
                "detail"]
            assert client.get(f"/v1/leaves/{index}").json()["anchored"] is False
    finally:
        slow.stop()


def test_an_unreachable_chain_is_a_503_problem(client: TestClient, node: PlatformNode,
                                               consortium: Consortium,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from web3 import Web3

    url = f"/v1/logs/{node.log_id.hex()}/leaves"
    leaves = random_leaves(1, seed=15)
    receipt = client.post(url, json=submission(consortium.unionpay, node.log_id, leaves))
    document = anchored_bundle(client, receipt.json()["receipts"][0]["index"])
    nowhere = LedgerChain(Web3(Web3.HTTPProvider("http://127.0.0.1:9",
                                                 request_kwargs={"timeout": 2})))
    monkeypatch.setattr(node, "chain", nowhere)  # the API reads the chain through node.chain
    health = assert_problem(client.get("/v1/health"), 503, "chain-unavailable",
                            "does not answer")
    assert health["health"]["status"] == "degraded"
    assert health["health"]["store_size"] == node.size()
    assert_problem(client.post("/v1/verify", json={"bundle": document}), 503,
                   "chain-unavailable")
    monkeypatch.undo()
    assert client.get("/v1/health").status_code == 200


def test_body_limit_middleware_at_the_asgi_level() -> None:
    """A non-numeric Content-Length is a 400 problem; a client that goes away mid-body gets
    no response and the application is never called."""
    import asyncio

    from api.middleware import BodyLimitMiddleware
    from api.problems import ProblemFactory

    called: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(True)

    middleware = BodyLimitMiddleware(app, max_bytes=10,
                                     problems=ProblemFactory("https://x.example/problems/"))

    def run(headers: list[tuple[bytes, bytes]], messages: list[dict[str, Any]]
            ) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        inbox = list(messages)

        async def receive() -> dict[str, Any]:
            return inbox.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/verify", "headers": headers}
        asyncio.run(middleware(scope, receive, send))
        return sent

    sent = run([(b"content-length", b"12x")], [])
    assert sent[0]["status"] == 400 and b"Content-Length" in sent[1]["body"]
    assert run([], [{"type": "http.request", "body": b"12345", "more_body": True},
                    {"type": "http.disconnect"}]) == []
    sent = run([], [{"type": "http.request", "body": b"123456", "more_body": True},
                    {"type": "http.request", "body": b"123456", "more_body": False}])
    assert sent[0]["status"] == 413 and b"streamed 12 bytes" in sent[1]["body"]
    assert called == []
    run([], [{"type": "http.request", "body": b"{}", "more_body": False}])
    assert called == [True]
