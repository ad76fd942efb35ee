"""Server-side filters on the chain server, as geth keeps them (issue 14).

``eth_newFilter`` / ``eth_newBlockFilter`` / ``eth_newPendingTransactionFilter``,
``eth_getFilterChanges``, ``eth_getFilterLogs`` and ``eth_uninstallFilter``: what ethers'
``contract.on`` uses. A filter reports what is new since its last poll, expires when it is
not polled for ``filter_timeout`` seconds, and one client address keeps at most
``max_filters``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_utils.crypto import keccak

from ledger_node.chain.adapter import LedgerChain
from ledger_node.chain.rpc_server import ChainServer
from tests.api_support import Consortium, make_consortium

ANCHORED = "0x" + keccak(
    text="CheckpointAnchored(bytes32,address,uint64,bytes32,uint64,bytes)"
).hex()


@pytest.fixture(scope="module")
def consortium() -> Consortium:
    return make_consortium(LedgerChain.embedded())


@pytest.fixture(scope="module")
def url(consortium: Consortium) -> Iterator[str]:
    with ChainServer(consortium.chain) as server:
        yield server.url


def answer(url: str, method: str, *params: Any, client: httpx.Client | None = None
           ) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    response = (client or httpx).post(url, json=body)  # type: ignore[attr-defined]
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


def result(url: str, method: str, *params: Any, client: httpx.Client | None = None) -> Any:
    reply = answer(url, method, *params, client=client)
    assert "error" not in reply, reply
    return reply["result"]


def anchor(consortium: Consortium, label: str) -> int:
    """Anchor one checkpoint of a new log as unionpay (in process); return its block."""
    member = consortium.as_party(consortium.unionpay)
    return member.anchor_checkpoint(keccak(text=label), 1, b"\x01" * 32, 1, b"sig").block_number


def test_a_log_filter_reports_new_logs_once(url: str, consortium: Consortium) -> None:
    contract = consortium.deployment.address
    criteria = {"address": contract, "topics": [ANCHORED], "fromBlock": "0x0"}
    filter_id = result(url, "eth_newFilter", criteria)
    assert isinstance(filter_id, str) and filter_id.startswith("0x")
    assert result(url, "eth_getFilterChanges", filter_id) == []
    first = anchor(consortium, "filter-1")
    second = anchor(consortium, "filter-2")
    changes = result(url, "eth_getFilterChanges", filter_id)
    assert [int(log["blockNumber"], 16) for log in changes] == [first, second]
    assert all(log["topics"][0] == ANCHORED and log["removed"] is False for log in changes)
    assert result(url, "eth_getFilterChanges", filter_id) == []  # reported once
    # eth_getFilterLogs: every log the criteria cover (here from block 0 to latest)
    everything = result(url, "eth_getFilterLogs", filter_id)
    assert everything[-2:] == changes
    assert result(url, "eth_getLogs", criteria) == everything
    assert result(url, "eth_uninstallFilter", filter_id) is True
    assert result(url, "eth_uninstallFilter", filter_id) is False
    gone = answer(url, "eth_getFilterChanges", filter_id)["error"]
    assert gone == {"code": -32000, "message": "filter not found"}


def test_a_log_filter_keeps_to_its_block_range(url: str, consortium: Consortium) -> None:
    head = int(result(url, "eth_blockNumber"), 16)
    bounded = result(url, "eth_newFilter", {"fromBlock": hex(head + 2), "toBlock": hex(head + 2)})
    anchor(consortium, "range-1")  # head + 1: before the range
    inside = anchor(consortium, "range-2")  # head + 2
    anchor(consortium, "range-3")  # head + 3: after it
    changes = result(url, "eth_getFilterChanges", bounded)
    assert {int(log["blockNumber"], 16) for log in changes} == {inside}
    assert result(url, "eth_getFilterLogs", bounded) == changes


def test_a_block_filter_reports_new_block_hashes(url: str, consortium: Consortium) -> None:
    filter_id = result(url, "eth_newBlockFilter")
    blocks = [anchor(consortium, "blocks-1"), anchor(consortium, "blocks-2")]
    hashes = result(url, "eth_getFilterChanges", filter_id)
    assert hashes == [result(url, "eth_getBlockByNumber", hex(n), False)["hash"] for n in blocks]
    assert result(url, "eth_getFilterChanges", filter_id) == []
    logs = answer(url, "eth_getFilterLogs", filter_id)["error"]  # not a log filter
    assert logs["code"] == -32000


def test_a_pending_transaction_filter_never_reports(url: str, consortium: Consortium) -> None:
    """Every transaction is mined before its hash is returned: nothing is ever pending."""
    filter_id = result(url, "eth_newPendingTransactionFilter")
    anchor(consortium, "pending-1")
    assert result(url, "eth_getFilterChanges", filter_id) == []


def test_filter_criteria_are_validated_and_bounded(url: str, consortium: Consortium) -> None:
    block_hash = result(url, "eth_getBlockByNumber", "latest", False)["hash"]
    with_hash = answer(url, "eth_newFilter", {"blockHash": block_hash})["error"]
    assert with_hash["code"] == -32602 and "eth_getLogs" in with_hash["message"]
    many = [f"0x{i:040x}" for i in range(1001)]
    assert answer(url, "eth_newFilter", {"address": many})["error"]["code"] == -32005
    assert answer(url, "eth_newFilter", {"topics": ["0x12"]})["error"]["code"] == -32602
    assert answer(url, "eth_getFilterChanges", 7)["error"]["code"] == -32602
    unknown = answer(url, "eth_getFilterChanges", "0x" + "ab" * 16)["error"]
    assert unknown == {"code": -32000, "message": "filter not found"}


def test_one_client_keeps_a_bounded_number_of_filters(consortium: Consortium) -> None:
    with ChainServer(consortium.chain, max_filters=3) as server, \
            httpx.Client() as first, \
            httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as second:
        ids = [result(server.url, "eth_newBlockFilter", client=first) for _ in range(3)]
        refused = answer(server.url, "eth_newFilter", {}, client=first)["error"]
        assert refused["code"] == -32005 and "max_filters 3" in refused["message"], refused
        # another client (another loopback address) has its own bound
        assert result(server.url, "eth_newBlockFilter", client=second)
        assert result(server.url, "eth_uninstallFilter", ids[0], client=first) is True
        assert result(server.url, "eth_newBlockFilter", client=first)
        assert server.limits.max_filters == 3


def test_an_idle_filter_expires(consortium: Consortium) -> None:
    # a timeout well above a poll's latency on a loaded machine (the suite runs in parallel
    # workers): polled every 0.2 s, the filter lives on; left alone past 2 s, it expires
    with ChainServer(consortium.chain, filter_timeout=2.0) as server:
        idle = result(server.url, "eth_newBlockFilter")
        idle_since = time.monotonic()
        polled = result(server.url, "eth_newBlockFilter")
        while time.monotonic() - idle_since < 2.6:
            time.sleep(0.2)
            result(server.url, "eth_getFilterChanges", polled)
        assert answer(server.url, "eth_getFilterChanges", idle)["error"]["message"] == (
            "filter not found"
        )
        assert result(server.url, "eth_getFilterChanges", polled) == []
        assert result(server.url, "eth_uninstallFilter", idle) is False
    assert ChainServer(consortium.chain).limits.filter_timeout == 300.0
