"""Event queries in pages of blocks: a JSON-RPC node that refuses wide ``eth_getLogs`` ranges
(Besu's ``--rpc-max-logs-range``, 1000 blocks by default) still gives the whole history."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st
from web3 import Web3

from ledger_node.chain.adapter import RPC_LOG_RANGE, LedgerChain, Member, Role

MAX_RANGE = 4
"""The proxy's eth_getLogs limit in blocks (Besu's default is 1000; small here)."""


def pages_of(log_range: int | None, start: int, end: int) -> list[tuple[int, int]]:
    return LedgerChain(Web3(), log_range=log_range)._block_pages(start, end)


@given(st.integers(1, 50), st.integers(0, 500), st.integers(-3, 500))
def test_pages_cover_the_range_exactly_in_order(log_range: int, start: int, length: int) -> None:
    end = start + length - 1
    pages = pages_of(log_range, start, end)
    covered = [block for low, high in pages for block in range(low, high + 1)]
    assert covered == list(range(start, end + 1))
    assert all(high - low + 1 <= log_range for low, high in pages)
    assert all(low <= high for low, high in pages)


def test_no_limit_is_one_query_and_an_empty_range_none() -> None:
    assert pages_of(None, 7, 5000) == [(7, 5000)]
    assert pages_of(None, 8, 7) == []
    assert pages_of(3, 8, 7) == []
    assert LedgerChain(Web3())._log_range is None  # embedded and hand-built: one query


def test_log_range_must_be_positive() -> None:
    with pytest.raises(ValueError, match="log_range must be at least 1"):
        LedgerChain(Web3(), log_range=0)


class _RangeLimitedProxy(BaseHTTPRequestHandler):
    """Forwards JSON-RPC to anvil, answering wide eth_getLogs ranges with Besu's error."""

    upstream = ""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = json.loads(body)
        if isinstance(request, dict) and request.get("method") == "eth_getLogs":
            query = request["params"][0]
            low, high = int(query["fromBlock"], 16), int(query["toBlock"], 16)
            if high - low + 1 > MAX_RANGE:
                self._answer(json.dumps({"jsonrpc": "2.0", "id": request["id"], "error": {
                    "code": -32005, "message": "Requested range exceeds maximum range limit"}}
                ).encode())
                return
        answer = httpx.post(self.upstream, content=body,
                            headers={"Content-Type": "application/json"}, timeout=30)
        self._answer(answer.content)

    def _answer(self, payload: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        return


@pytest.fixture
def limited_url(anvil_url: str) -> Iterator[str]:
    """A JSON-RPC URL in front of the session's anvil that refuses eth_getLogs ranges wider
    than :data:`MAX_RANGE` blocks, as Besu does."""
    handler = type("Proxy", (_RangeLimitedProxy,), {"upstream": anvil_url})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.anvil
def test_history_longer_than_the_nodes_limit_is_read_in_pages(limited_url: str) -> None:
    platform = Account.create()
    chain = LedgerChain.from_rpc(limited_url, log_range=MAX_RANGE)
    chain.fund(platform.address, 10**20, chain.dev_faucet())
    deployment = chain.with_account(platform).deploy(
        [Member(platform.address, Role.PLATFORM, "unionpay", os.urandom(64))], threshold=1)
    sender = chain.with_account(platform).attach(deployment)
    log_id = os.urandom(32)
    for size in range(1, 12):  # one block each on anvil: 11 blocks, three pages and more
        sender.anchor_checkpoint(log_id, size, os.urandom(32), 1_700_000_000 + size, b"")

    history = sender.checkpoints(log_id)
    assert [cp.tree_size for cp in history] == list(range(1, 12))
    assert len({cp.block_number for cp in history}) == 11
    head = sender.block_number()
    assert head - deployment.deploy_block + 1 > 2 * MAX_RANGE  # it took several pages
    assert [e.args["treeSize"] for e in sender.events("CheckpointAnchored", logId=log_id)] == (
        list(range(1, 12)))
    assert len(sender.risk_list_events(deployment.deploy_block, head)) == 0

    unpaged = LedgerChain.from_rpc(limited_url, log_range=None).attach(deployment)
    with pytest.raises(Exception, match="exceeds maximum range"):
        unpaged.checkpoints(log_id)
    assert RPC_LOG_RANGE == 1000  # Besu's default --rpc-max-logs-range
