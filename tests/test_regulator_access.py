"""The platform node's regulator access: whole leaves with escrows for a regulator, and
disclosure answers sealed for the requesting regulator and logged on chain.

Through TestClient and the SDK against the module's real unionpay node on the embedded
chain; every rejection path is asserted with its status and problem type.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from ledger_node.aml import PartyKind
from ledger_node.auth import sign_request
from ledger_node.checkpoint import log_id_for
from ledger_node.demo import Party, sample_records
from ledger_node.errors import (
    ApiError,
    InvalidLeafRange,
    LeafRangeUnavailable,
    UnknownLeaf,
)
from ledger_node.escrow import EscrowOpener, EscrowPayload
from ledger_node.node import PlatformNode
from ledger_node.sdk import PlatformClient, RegulatorClient, SubmittedRecord
from tests.api_support import Consortium
from tests.test_api import assert_problem

KINDS = (PartyKind.PERSON, PartyKind.INSTITUTION)


@pytest.fixture(scope="module")
def client(node: PlatformNode) -> Iterator[TestClient]:
    with TestClient(create_app(node)) as client:
        yield client


def http_of(client: TestClient) -> httpx.Client:
    return httpx.Client(transport=client._transport, base_url="http://testserver")


def platform_client(consortium: Consortium, client: TestClient, **kwargs: Any
                    ) -> PlatformClient:
    options: dict[str, Any] = {"regulator_key": consortium.pboc.sm2_key.public_key()} | kwargs
    return PlatformClient("http://testserver", "unionpay", consortium.unionpay.account.address,
                          consortium.unionpay.sm2_key, http=http_of(client), **options)


def regulator_client(consortium: Consortium, client: TestClient,
                     log_id: bytes | None = None) -> RegulatorClient:
    return RegulatorClient("http://testserver", consortium.pboc.account.address,
                           consortium.pboc.sm2_key, log_id, http=http_of(client), retries=0)


def submit(consortium: Consortium, client: TestClient, count: int, seed: int,
           **kwargs: Any) -> list[SubmittedRecord]:
    sdk = platform_client(consortium, client, **kwargs)
    records = sample_records("unionpay", count, random.Random(seed))
    return sdk.submit_records(records, kinds=lambda record: KINDS)


def signed_get(client: TestClient, party: Party, target: str,
               audience: bytes = log_id_for("unionpay")) -> httpx.Response:
    headers = sign_request(party.sm2_key, party.account.address, "GET", target,
                           audience=audience)
    return client.get(target, headers=headers)


# ---------------------------------------------------------------------- leaf ranges


def test_a_regulator_reads_whole_leaves_with_their_escrows(
    consortium: Consortium, node: PlatformNode, client: TestClient
) -> None:
    submitted = submit(consortium, client, 12, seed=1, chunk_size=5)
    first = submitted[0].receipt.index
    end = submitted[-1].receipt.index + 1
    assert end - first == 12

    regulator = regulator_client(consortium, client)  # learns the log id from /v1/health
    served = regulator.leaf_range(node.log_id, first, end)
    assert regulator.log_id == node.log_id
    assert (served.platform, served.hash_name, served.start, served.end) == (
        "unionpay", "sm3", first, end)
    assert served.size >= end
    assert served.leaves == [s.prepared.leaf for s in submitted]
    assert regulator.leaves(node.log_id, first + 3, first + 4) == [submitted[3].prepared.leaf]

    opener = EscrowOpener.from_keys(consortium.pboc.sm2_key)
    for item, leaf in zip(submitted, served.leaves, strict=True):
        assert len(leaf.escrow) == 261
        assert opener.open(leaf.escrow, leaf.commitment) == EscrowPayload.from_record(
            item.prepared.record, payer_kind=KINDS[0], payee_kind=KINDS[1])
    assert opener.sm2_decryptions == 3  # chunks of 5, 5 and 2

    # the log's own platform may read its leaves too, through a signed request
    own = signed_get(client, consortium.unionpay,
                     f"/v1/logs/{node.log_id.hex()}/leaves?start={first}&end={first + 2}")
    assert own.status_code == 200, own.text
    body = own.json()
    assert body["log_id"] == node.log_id.hex()
    assert body["leaves"] == [s.prepared.leaf.to_json() for s in submitted[:2]]


def test_leaf_range_rejections(consortium: Consortium, node: PlatformNode,
                               client: TestClient) -> None:
    submit(consortium, client, 3, seed=2)
    size = node.size()
    path = f"/v1/logs/{node.log_id.hex()}/leaves"

    def target(start: int, end: int) -> str:
        return f"{path}?start={start}&end={end}"

    assert_problem(client.get(target(0, 1)), 401, "unauthenticated", "missing")
    for party in (consortium.auditor, consortium.wechatpay):
        assert_problem(signed_get(client, party, target(0, 1)), 403, "forbidden",
                       party.name, "only unionpay and regulators")
    signed_elsewhere = signed_get(client, consortium.pboc, target(0, 1),
                                  audience=log_id_for("wechatpay"))
    assert_problem(signed_elsewhere, 401, "unauthenticated", "does not verify")

    for start, end in ((2, 2), (3, 1), (0, 10_001)):
        assert_problem(signed_get(client, consortium.pboc, target(start, end)), 422,
                       "invalid-range", f"[{start}, {end})")
    for bad in (f"{path}?start=-1&end=1", f"{path}?start=0", f"{path}?start=x&end=1",
                f"{path}?start=0&end=0"):
        assert_problem(signed_get(client, consortium.pboc, bad), 422, "validation-error")
    beyond = assert_problem(signed_get(client, consortium.pboc, target(size - 1, size + 1)),
                            416, "range-not-satisfiable", f"its size is {size}")
    assert beyond["size"] == size

    other = log_id_for("wechatpay").hex()
    assert_problem(signed_get(client, consortium.pboc,
                              f"/v1/logs/{other}/leaves?start=0&end=1"),
                   404, "unknown-log", other, node.log_id.hex())

    regulator = regulator_client(consortium, client, node.log_id)
    with pytest.raises(ApiError) as caught:
        regulator.leaves(node.log_id, size, size + 5)
    assert caught.value.status == 416 and caught.value.document["size"] == size
    auditor = RegulatorClient("http://testserver", consortium.auditor.account.address,
                              consortium.auditor.sm2_key, node.log_id, http=http_of(client))
    with pytest.raises(ApiError) as caught:
        auditor.leaves(node.log_id, 0, 1)
    assert caught.value.status == 403


def test_node_and_store_ranges(consortium: Consortium, node: PlatformNode,
                               client: TestClient) -> None:
    submit(consortium, client, 2, seed=3)
    size = node.size()
    assert node.leaves(size - 2, size) == [node.leaf(size - 2), node.leaf(size - 1)]
    assert node.store.leaves(size - 2, size) == node.leaves(size - 2, size)
    assert node.store.leaves(5, 5) == []
    with pytest.raises(UnknownLeaf, match="not all stored"):
        node.store.leaves(size - 1, size + 1)
    with pytest.raises(LeafRangeUnavailable) as caught:
        node.leaves(0, size + 1)
    assert caught.value.size == size
    for start, end in ((-1, 1), (1, 1), (0, 10_001)):
        with pytest.raises(InvalidLeafRange):
            node.leaves(start, end)
    with pytest.raises(InvalidLeafRange, match="integer"):
        node.leaves(0, True)
    with pytest.raises(InvalidLeafRange):
        node.leaves(0, 3, limit=2)
