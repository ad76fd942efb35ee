"""Schema-driven fuzzing (schemathesis over the app's own OpenAPI document): whatever the
generated request, valid or not, the node answers without a 5xx, and every error is an RFC
9457 problem document. Bounded: 6 valid and 6 invalid examples per operation (~100 requests)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from api.main import create_app
from ledger_node.chain.adapter import LedgerChain
from ledger_node.platform.node import PlatformNode
from tests.api_support import make_consortium, make_node, random_leaves, submission
from tests.fuzz_support import fuzz_without_server_errors


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformNode]:
    consortium = make_consortium(LedgerChain.embedded())
    node = make_node(consortium, tmp_path_factory.mktemp("fuzz") / "store.db")
    leaves = random_leaves(4, seed=50)
    node.submit(leaves, _evidence(consortium, node, leaves))
    yield node
    node.stop()


def _evidence(consortium: Any, node: PlatformNode, leaves: list[Any]) -> Any:
    from ledger_node.protocol.auth import authenticate_batch

    body = submission(consortium.unionpay, node.log_id, leaves)
    return authenticate_batch(consortium.chain.member,
                              platform_address=node.platform_address, log_id=node.log_id,
                              leaves=leaves, signer=body["signer"],
                              signature=bytes.fromhex(body["signature"]))


@pytest.fixture(scope="module")
def fuzz_app(fuzz_node: PlatformNode) -> FastAPI:
    return create_app(fuzz_node)


def test_no_server_errors(fuzz_app: FastAPI) -> None:
    calls, operations = fuzz_without_server_errors(fuzz_app, min_operations=10)
    print(f"fuzz: {len(calls)} requests over {operations} operations, "
          f"statuses {sorted(set(calls))}")
