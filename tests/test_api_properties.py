"""Properties through the API (PROTOCOL §5, P-inclusion): every acknowledged leaf ends up
with a bundle that verifies against the chain, and no bundle altered to claim another leaf,
index, size, root or path verifies."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.main import create_app
from ledger_node.chain.adapter import LedgerChain
from ledger_node.log.leaf import Leaf
from ledger_node.platform.node import PlatformNode
from tests.api_support import Consortium, make_consortium, make_node, submission, wait_for

MUTATIONS = ("leaf", "index", "tree_size", "root", "path", "signature", "timestamp")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Consortium, PlatformNode, TestClient]]:
    consortium = make_consortium(LedgerChain.embedded())
    node = make_node(consortium, tmp_path_factory.mktemp("prop") / "store.db",
                     seal_interval=0.02)
    with TestClient(create_app(node)) as client:
        yield consortium, node, client
    node.stop()


def mutate(document: dict[str, Any], how: str, other_commitment: bytes) -> dict[str, Any]:
    bad = copy.deepcopy(document)
    if how == "leaf":
        bad["leaf"]["commitment"] = other_commitment.hex()
    elif how == "index":
        bad["index"] = (bad["index"] + 1) % bad["tree_size"] if bad["tree_size"] > 1 else 1
    elif how == "tree_size":
        bad["tree_size"] += 1
    elif how == "root":
        bad["checkpoint"]["root"] = bytes(x ^ 0xFF for x in bytes.fromhex(
            bad["checkpoint"]["root"])).hex()
    elif how == "path":
        if bad["path"]:
            bad["path"][0] = "00" * 32
        else:
            bad["path"] = ["00" * 32]
    elif how == "signature":
        signature = bytearray(bytes.fromhex(bad["checkpoint"]["signature"]))
        signature[-1] ^= 1
        bad["checkpoint"]["signature"] = signature.hex()
    else:
        bad["checkpoint"]["timestamp"] += 1
    return bad


@given(
    batches=st.lists(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=4),
                     min_size=1, max_size=3),
    data=st.data(),
)
@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_acknowledged_leaves_verify_and_altered_bundles_do_not(
    world: tuple[Consortium, PlatformNode, TestClient], batches: list[list[bytes]],
    data: st.DataObject,
) -> None:
    consortium, node, client = world
    url = f"/v1/logs/{node.log_id.hex()}/leaves"
    acknowledged: list[tuple[int, bytes]] = []
    for batch in batches:
        leaves = [Leaf(commitment) for commitment in batch]
        answer = client.post(url, json=submission(consortium.unionpay, node.log_id, leaves))
        assert answer.status_code == 201, answer.text
        acknowledged += [(r["index"], c) for r, c in zip(answer.json()["receipts"], batch,
                                                          strict=True)]
    for index, commitment in acknowledged:
        def fetch(index: int = index) -> dict[str, Any] | None:
            answer = client.get(f"/v1/leaves/{index}/bundle")
            return None if answer.status_code == 202 else dict(answer.json())

        document = wait_for(fetch)
        assert document["leaf"]["commitment"] == commitment.hex()
        verdict = client.post("/v1/verify", json={"bundle": document}).json()
        assert verdict["valid"], verdict["reasons"]
        how = data.draw(st.sampled_from(MUTATIONS), label="mutation")
        other = data.draw(st.binary(min_size=32, max_size=32).filter(
            lambda b, own=commitment: b != own),
                          label="other commitment")
        altered = client.post("/v1/verify", json={"bundle": mutate(document, how, other)})
        assert altered.status_code == 200, altered.text
        assert altered.json()["valid"] is False, (how, altered.json())
        assert altered.json()["reasons"]
