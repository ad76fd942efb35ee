"""The platform SDK against a real node through the app: local commitments, signed chunks,
retries that are safe because intake is idempotent, bundles, verification."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from ledger_node.chain.adapter import LedgerChain
from ledger_node.client.sdk import NodeClient, PlatformClient, RegulatorClient
from ledger_node.crypto.gmcrypto import generate_private_key
from ledger_node.demo.run import sample_records
from ledger_node.errors import ApiError, InvalidBatch, InvalidLeaf, InvalidRecord, ProofPending
from ledger_node.log.leaf import Leaf, LeafSummary
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.bundle import verify_bundle
from ledger_node.protocol.commitment import disclose_field, record_commitment
from tests.api_support import Consortium


@pytest.fixture(scope="module")
def app_client(node: PlatformNode) -> Iterator[TestClient]:
    with TestClient(create_app(node)) as client:
        yield client


class Recording(httpx.BaseTransport):
    """Forwards to the app; records every request; can fail the first attempts."""

    def __init__(self, inner: httpx.BaseTransport, *, drop: int = 0, fail_503: int = 0) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []
        self.drop = drop  # connection errors before the request reaches the server
        self.fail_503 = fail_503  # requests served, but the answer replaced by a 503

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.drop:
            self.drop -= 1
            raise httpx.ConnectError("connection refused", request=request)
        response = self.inner.handle_request(request)
        if self.fail_503:
            self.fail_503 -= 1
            response.read()
            return httpx.Response(503, json={"type": "x", "title": "down", "detail": "lost"})
        return response


def sdk(consortium: Consortium, app_client: TestClient, transport: Recording,
        **kwargs: object) -> PlatformClient:
    http = httpx.Client(transport=transport, base_url="http://testserver")
    return PlatformClient("http://testserver", "unionpay", consortium.unionpay.account.address,
                          consortium.unionpay.sm2_key, http=http, backoff=0.0,
                          **kwargs)  # type: ignore[arg-type]


def test_records_never_leave_the_process(consortium: Consortium, app_client: TestClient,
                                         node: PlatformNode) -> None:
    transport = Recording(app_client._transport)
    client = sdk(consortium, app_client, transport, chunk_size=3)
    records = sample_records("unionpay", 7, random.Random(30))
    progress: list[tuple[int, int]] = []
    submitted = client.submit_records(records, progress=lambda d, t: progress.append((d, t)))
    assert progress == [(3, 7), (6, 7), (7, 7)]
    assert len(transport.requests) == 3  # chunks of at most 3
    indexes = [s.receipt.index for s in submitted]
    assert indexes == list(range(indexes[0], indexes[0] + 7))
    for s in submitted:
        assert s.prepared.leaf.commitment == record_commitment(s.prepared.record, s.prepared.salt)
        assert node.leaf(s.receipt.index).commitment == s.prepared.leaf.commitment
    sent = b"".join(request.content for request in transport.requests)
    for record in records:
        for value in (record.local_tx_id, record.payer_identity, record.payer_account,
                      record.payee_identity, record.payee_account):
            assert value.encode() not in sent
    for request in transport.requests:
        body = json.loads(request.content)
        assert set(body) == {"leaves", "signer", "signature"}
        assert all(set(leaf) == {"commitment", "escrow", "match_tag", "amount_tag"}
                   for leaf in body["leaves"])
    assert not any(s.prepared.salt.hex().encode() in sent for s in submitted)

    bundle = client.bundle(indexes[4], timeout=20.0)
    assert bundle.leaf.commitment == submitted[4].prepared.leaf.commitment
    opening = submitted[4].prepared.opening
    verdict = client.verify(bundle, opening=opening,
                            disclosure=disclose_field(opening.record, opening.salt, "currency"))
    assert verdict.valid, verdict.reasons
    assert verify_bundle(bundle, chain=LedgerChain(node.chain.w3), opening=opening).valid
    assert client.find(submitted[4].receipt.leaf_hash) == indexes[4]
    assert client.find(b"\x00" * 32) is None
    assert client.leaf_status(indexes[4])["anchored"] is True
    assert client.checkpoints()[-1]["tree_size"] >= indexes[4] + 1
    assert client.health()["status"] == "ok"


def test_retries_are_safe_because_intake_is_idempotent(
    consortium: Consortium, app_client: TestClient, node: PlatformNode
) -> None:
    records = sample_records("unionpay", 4, random.Random(31))
    transport = Recording(app_client._transport, drop=1, fail_503=1)
    client = sdk(consortium, app_client, transport, retries=3)
    size = node.size()
    prepared = [client.prepare(r) for r in records]
    submitted = client.submit_prepared(prepared)
    # attempt 1: connection refused; 2: committed but the answer was lost; 3: duplicates.
    assert len(transport.requests) == 3
    assert all(s.receipt.duplicate for s in submitted)
    assert node.size() == size + 4
    assert [s.receipt.index for s in submitted] == list(range(size, size + 4))


def test_errors_are_not_retried_and_carry_the_problem(
    consortium: Consortium, app_client: TestClient, node: PlatformNode
) -> None:
    transport = Recording(app_client._transport)
    client = sdk(consortium, app_client, transport, log_id=b"\x05" * 32)
    record = sample_records("unionpay", 1, random.Random(32))[0]
    with pytest.raises(ApiError) as caught:
        client.submit_records([record])
    assert caught.value.status == 404 and caught.value.problem_type.endswith("/unknown-log")
    assert len(transport.requests) == 1
    with pytest.raises(InvalidBatch):
        client.submit_leaves([])
    with pytest.raises(InvalidRecord, match="wechatpay"):
        client.prepare(sample_records("wechatpay", 1, random.Random(33))[0])
    down = Recording(app_client._transport, fail_503=10)
    with pytest.raises(ApiError) as caught:
        sdk(consortium, app_client, down, retries=2).health()
    assert caught.value.status == 503 and len(down.requests) == 3


def test_tags_and_signed_requests(consortium: Consortium, app_client: TestClient) -> None:
    transport = Recording(app_client._transport, fail_503=1)
    client = sdk(consortium, app_client, transport)
    record = sample_records("unionpay", 1, random.Random(34))[0]
    prepared = client.prepare(record, match_tag=b"\x01" * 32, amount_tag=b"\x02" * 32)
    [submitted] = client.submit_prepared([prepared])  # first answer lost, retried
    evidence_transport = Recording(app_client._transport, fail_503=1)
    evidence = sdk(consortium, app_client, evidence_transport).evidence(submitted.receipt.index)
    assert evidence["signer"] == consortium.unionpay.account.address
    # the retry was signed afresh (new nonce), so it was not refused as a replay
    nonces = {r.headers["X-JL-Nonce"] for r in evidence_transport.requests}
    assert len(nonces) == 2
    assert client.leaf_status(submitted.receipt.index)["leaf"]["match_tag"] == "01" * 32


def test_bundle_wait_gives_up_with_proof_pending() -> None:
    calls: list[httpx.Request] = []

    def pending(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(202, headers={"Retry-After": "1"},
                              json={"status": 202, "detail": "leaf 0 is pending"})

    http = httpx.Client(transport=httpx.MockTransport(pending), base_url="http://node")
    from ledger_node.crypto import gmcrypto

    client = PlatformClient("http://node", "unionpay", "0x" + "00" * 20,
                            gmcrypto.generate_private_key(), http=http)
    with pytest.raises(ProofPending, match="pending"):
        client.bundle(0, wait=False)
    assert len(calls) == 1
    with pytest.raises(ProofPending):
        client.bundle(0, timeout=0.05)
    assert len(calls) >= 2


def test_summaries_are_parsed_strictly_naming_the_summary() -> None:
    """Every served summary goes through ``LeafSummary.from_json``; a bad one is refused
    with its place in the answer, so a reconciler can say which leaf a node garbled."""
    good = LeafSummary(b"\xab" * 32, b"\xcd" * 32, b"\x01" * 32, b"\x02" * 32)
    log_id = b"\x09" * 32

    def client(items: list[dict[str, Any]]) -> NodeClient:
        def serve(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json={"log_id": log_id.hex(), "platform": "unionpay",
                                             "hash": "sm3", "start": 0, "end": len(items),
                                             "size": len(items), "summaries": items})
        return NodeClient("http://node", http=httpx.Client(transport=httpx.MockTransport(serve),
                                                           base_url="http://node"))

    assert client([good.to_json()] * 2).summaries(log_id, 0, 2).summaries == [good, good]
    short_tag = good.to_json() | {"match_tag": "00" * 31}
    with pytest.raises(InvalidLeaf) as caught:
        client([good.to_json(), short_tag]).summaries(log_id, 0, 2)
    assert caught.value.field == "summaries[1].match_tag"
    assert caught.value.reason == "must be 32 bytes, got 31"
    with pytest.raises(InvalidLeaf) as caught:
        client([good.to_json() | {"escrow": ""}]).summaries(log_id, 0, 1)
    assert caught.value.field == "summaries[0].escrow"
    with pytest.raises(InvalidLeaf) as caught:
        client([good.to_json(), None]).summaries(log_id, 0, 2)  # type: ignore[list-item]
    assert caught.value.field == "summaries[1]"


def test_leaf_ranges_are_parsed_strictly_naming_the_leaf() -> None:
    """Whole leaves go through ``Leaf.from_json`` as summaries go through theirs."""
    good = Leaf(b"\xab" * 32, b"\x01\x02", b"\x03" * 32, b"\x04" * 32)
    log_id = b"\x09" * 32

    def client(items: list[object]) -> RegulatorClient:
        def serve(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json={"log_id": log_id.hex(), "platform": "unionpay",
                                             "hash": "sm3", "start": 0, "end": len(items),
                                             "size": len(items), "leaves": items})
        http = httpx.Client(transport=httpx.MockTransport(serve), base_url="http://node")
        return RegulatorClient("http://node", "0x" + "00" * 20, generate_private_key(), log_id,
                               http=http)

    assert client([good.to_json()]).leaves(log_id, 0, 1) == [good]
    for items, field in (
        ([good.to_json(), good.to_json() | {"escrow": "ab cd"}], "leaves[1].escrow"),
        ([good.to_json() | {"amount_tag": None}], "leaves[0].amount_tag"),
        (["not a leaf"], "leaves[0]"),
    ):
        with pytest.raises(InvalidLeaf) as caught:
            client(items).leaves(log_id, 0, len(items))
        assert caught.value.field == field, caught.value


@pytest.mark.parametrize(("body", "says"), [
    (('["Ģ", ' + "[" * 99_000 + "]" * 99_000 + "]").encode("utf-16-le"), "NUL bytes"),
    (b"\xff\xfe{}", "byte order mark"),
    (b"[" * 100 + b"]" * 100, "nested deeper"),
])
def test_a_hostile_node_cannot_crash_its_clients(body: bytes, says: str) -> None:
    """A node is another organisation's server: its answer is checked before any parser."""
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    http = httpx.Client(base_url="http://node.test", transport=httpx.MockTransport(answer))
    client = NodeClient("http://node.test", http=http)
    with pytest.raises(ApiError, match=says):
        client.health()
