"""Each route's JSON is exactly its response model's, and each domain type that has its own
JSON form (``to_json``) is served in that form, byte for byte.

Against the module's real unionpay node on the embedded chain, through TestClient: the
expected bytes are built here from the node's own state with the ``*Public`` models' ``of``
constructors, never copied from a response.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, TypeAdapter
from web3 import Web3

from api.main import create_app
from api.routes.logs import LeafSummaryRangePublic
from api.schemas import (
    ChainHealth,
    CheckpointList,
    CheckpointPublic,
    ConsistencyPublic,
    DisclosureFulfilment,
    DisclosureRequestPublic,
    DisclosureResponsePublic,
    Health,
    LeafRangePublic,
    LeafStatusPublic,
    LeafSummaryPublic,
    ProofBundlePublic,
    ReceiptPublic,
    SubmissionReceipts,
    VerdictPublic,
)
from ledger_node.chain.adapter import LedgerChain
from ledger_node.client.sdk import PlatformClient, SubmittedRecord
from ledger_node.demo.run import sample_records
from ledger_node.log import merkle
from ledger_node.log.leaf import LeafSummary
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.bundle import verify_bundle
from tests.api_support import Consortium, random_leaves, submission
from tests.test_regulator_access import (
    KINDS,
    answer_with,
    platform_client,
    request_disclosure,
    signed_get,
    signed_post,
)


@pytest.fixture(scope="module")
def client(node: PlatformNode) -> Iterator[TestClient]:
    with TestClient(create_app(node)) as client:
        yield client


@pytest.fixture(scope="module")
def sdk(consortium: Consortium, client: TestClient) -> PlatformClient:
    return platform_client(consortium, client)


@pytest.fixture(scope="module")
def anchored(sdk: PlatformClient) -> list[SubmittedRecord]:
    """Three records, the second with match tags, all anchored in two checkpoints."""
    records = sample_records("unionpay", 3, random.Random(81))
    first = sdk.submit_records(records[:1], kinds=lambda record: KINDS)
    sdk.bundle(first[0].receipt.index)
    tagged = sdk.prepare(records[1], match_tag=b"\x11" * 32, amount_tag=b"\x22" * 32)
    rest = sdk.submit_prepared([tagged, *sdk.prepare_records(records[2:],
                                                             kinds=lambda record: KINDS)])
    sdk.bundle(rest[-1].receipt.index)
    return first + rest


def model_bytes(model: BaseModel) -> bytes:
    """The model's own compact JSON: what a route returning it must answer."""
    return model.model_dump_json().encode()


def test_leaf_status_is_its_model(client: TestClient, node: PlatformNode,
                                  anchored: list[SubmittedRecord]) -> None:
    for item in anchored:
        index = item.receipt.index
        for path in (f"/v1/leaves/{index}", f"/v1/leaves/by-hash/{item.receipt.leaf_hash.hex()}"):
            answer = client.get(path)
            expected = LeafStatusPublic.of(node.leaf_status(index),
                                           LeafSummary.of(node.leaf(index)))
            assert answer.status_code == 200 and answer.content == model_bytes(expected)
        assert answer.json()["leaf"] == LeafSummary.of(item.prepared.leaf).to_json()
    assert client.get(f"/v1/leaves/{anchored[1].receipt.index}").json()["leaf"][
        "match_tag"] == "11" * 32


def test_bundle_is_the_bundles_json_and_its_models(client: TestClient, node: PlatformNode,
                                                   anchored: list[SubmittedRecord]) -> None:
    for item in anchored:
        answer = client.get(f"/v1/leaves/{item.receipt.index}/bundle")
        bundle = node.proof_bundle(item.receipt.index)
        assert bundle is not None and answer.status_code == 200
        assert answer.json() == bundle.to_json()
        assert answer.content == model_bytes(ProofBundlePublic.model_validate(bundle.to_json()))
        assert answer.json()["leaf"] == LeafSummaryPublic.of(bundle.leaf).model_dump()
        assert answer.json()["checkpoint"] == bundle.checkpoint.to_json()


def test_checkpoints_and_consistency_are_their_models(client: TestClient, node: PlatformNode,
                                                      anchored: list[SubmittedRecord]) -> None:
    answer = client.get("/v1/checkpoints")
    stored = node.checkpoints(after=0, limit=100)
    final = node.sealer_status().final_size
    expected = CheckpointList(log_id=node.log_id.hex(),
                              checkpoints=[CheckpointPublic.of(c, final) for c in stored])
    assert answer.content == model_bytes(expected)
    for document, checkpoint in zip(answer.json()["checkpoints"], stored, strict=True):
        signed = checkpoint.signed().to_json()
        assert list(document)[:len(signed)] == list(signed)
        assert {key: document[key] for key in signed} == signed
    size1, size2 = stored[0].tree_size, stored[-1].tree_size
    proof = client.get("/v1/consistency", params={"from": size1, "to": size2})
    assert proof.content == model_bytes(ConsistencyPublic.of(
        node.log_id, node.hash_name, node.consistency_proof(size1, size2),
        node.checkpoint(size1).root, node.checkpoint(size2).root))
    assert list(proof.json())[:4] == ["log_id", "hash", "from", "to"]


def test_summaries_by_hand_are_the_models_and_to_json(client: TestClient, node: PlatformNode,
                                                      anchored: list[SubmittedRecord]) -> None:
    """The hand-built summaries page is byte for byte what its model would write, and each
    entry is :meth:`LeafSummary.to_json`."""
    end = anchored[-1].receipt.index + 1
    answer = client.get(f"/v1/logs/{node.log_id.hex()}/summaries",
                        params={"start": 0, "end": end})
    leaves = node.leaves(0, end, limit=end)
    summaries = [LeafSummary.of(leaf) for leaf in leaves]
    expected = LeafSummaryRangePublic(
        log_id=node.log_id.hex(), platform=node.platform, hash=node.hash_name, start=0,
        end=end, size=node.size(), summaries=[LeafSummaryPublic.of(s) for s in summaries])
    assert answer.content == model_bytes(expected)
    assert answer.json()["summaries"] == [s.to_json() for s in summaries]
    assert [LeafSummary.from_json(s) for s in answer.json()["summaries"]] == summaries


def test_leaves_by_hand_are_the_models_and_to_json(consortium: Consortium, client: TestClient,
                                                   node: PlatformNode,
                                                   anchored: list[SubmittedRecord]) -> None:
    end = anchored[-1].receipt.index + 1
    answer = signed_get(client, consortium.pboc,
                        f"/v1/logs/{node.log_id.hex()}/leaves?start=0&end={end}")
    leaves = node.leaves(0, end, limit=end)
    expected = LeafRangePublic.model_validate({
        "log_id": node.log_id.hex(), "platform": node.platform, "hash": node.hash_name,
        "start": 0, "end": end, "size": node.size(),
        "leaves": [leaf.to_json() for leaf in leaves]})
    assert answer.status_code == 200 and answer.content == model_bytes(expected)


def test_receipts_by_hand_are_the_models(consortium: Consortium, client: TestClient,
                                         node: PlatformNode) -> None:
    leaves = random_leaves(3, seed=82)
    url = f"/v1/logs/{node.log_id.hex()}/leaves"
    for duplicate in (False, True):
        answer = client.post(url, json=submission(consortium.unionpay, node.log_id, leaves))
        assert answer.status_code == 201
        hashes = [merkle.SM3_HASHER.hash_leaf(leaf.leaf_data()) for leaf in leaves]
        expected = SubmissionReceipts(receipts=[
            ReceiptPublic(index=node.find(h), leaf_hash=h.hex(), duplicate=duplicate)
            for h in hashes])
        assert answer.content == model_bytes(expected)


def test_verdicts_are_their_model(client: TestClient, node: PlatformNode,
                                  anchored: list[SubmittedRecord]) -> None:
    bundle = node.proof_bundle(anchored[0].receipt.index)
    assert bundle is not None
    answer = client.post("/v1/verify", json={"bundle": bundle.to_json()})
    verdict = verify_bundle(bundle, chain=node.chain)
    assert answer.content == model_bytes(VerdictPublic.of(verdict))
    assert set(verdict.to_json()) - set(answer.json()) == {"summary", "deployment_pinned"}


def test_health_is_its_model(client: TestClient, anchored: list[SubmittedRecord]) -> None:
    answer = client.get("/v1/health")
    assert answer.status_code == 200
    assert answer.content == model_bytes(Health.model_validate_json(answer.content))
    assert list(answer.json()["chain"]) == list(ChainHealth.model_fields)  # all, null or not


def test_an_unreachable_chains_health_carries_only_what_applies(
    client: TestClient, node: PlatformNode, anchored: list[SubmittedRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nowhere = LedgerChain(Web3(Web3.HTTPProvider("http://127.0.0.1:9",
                                                 request_kwargs={"timeout": 2})))
    monkeypatch.setattr(node, "chain", nowhere)
    answer = client.get("/v1/health")
    assert answer.status_code == 503
    document: dict[str, Any] = answer.json()["health"]
    assert list(document["chain"]) == ["reachable", "error", "checked_at", "age_s",
                                       "last_answered_at"]
    assert list(document["last_anchored"])[-1] == "final"
    as_model = Health.model_validate(document).model_dump(mode="json", exclude_unset=True)
    assert json.dumps(as_model) == json.dumps(document)  # same keys, same order
    monkeypatch.undo()
    assert client.get("/v1/health").status_code == 200


def test_disclosures_are_their_models(consortium: Consortium, client: TestClient,
                                      node: PlatformNode, sdk: PlatformClient,
                                      anchored: list[SubmittedRecord]) -> None:
    answered, unanswered = anchored[0], anchored[2]
    request_id = request_disclosure(consortium, node, consortium.unionpay,
                                    answered.prepared.leaf.commitment)
    request_disclosure(consortium, node, consortium.unionpay,
                       unanswered.prepared.leaf.commitment)
    receipt = answer_with(sdk, consortium, request_id, answered.prepared.opening)

    listed = signed_get(client, consortium.unionpay, "/v1/disclosures")
    expected = [DisclosureRequestPublic.of(request, stored)
                for request, stored in node.disclosure_requests()]
    assert {(r.fulfilled, r.answered) for r in expected} == {(True, True), (False, False)}
    assert listed.content == TypeAdapter(list[DisclosureRequestPublic]).dump_json(expected)

    stored = node.disclosure_response(request_id)
    target = f"/v1/disclosures/{request_id}/response"
    again = signed_post(client, consortium.unionpay, target,
                        {"response": receipt.response.hex()})
    assert again.status_code == 200
    assert again.content == model_bytes(DisclosureFulfilment.of(stored))
    response = signed_get(client, consortium.pboc, target)
    assert response.content == model_bytes(DisclosureResponsePublic.of(stored))
