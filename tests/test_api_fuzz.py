"""Schema-driven fuzzing (schemathesis over the app's own OpenAPI document): whatever the
generated request, valid or not, the node answers without a 5xx, and every error is an RFC
9457 problem document. Bounded: 6 valid and 6 invalid examples per operation (~100 requests)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from api.main import create_app
from ledger_node.chain import LedgerChain
from ledger_node.node import PlatformNode
from tests.api_support import make_consortium, make_node, random_leaves, submission


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformNode]:
    consortium = make_consortium(LedgerChain.embedded())
    node = make_node(consortium, tmp_path_factory.mktemp("fuzz") / "store.db")
    leaves = random_leaves(4, seed=50)
    node.submit(leaves, _evidence(consortium, node, leaves))
    yield node
    node.stop()


def _evidence(consortium: Any, node: PlatformNode, leaves: list[Any]) -> Any:
    from ledger_node.auth import MembershipCache, authenticate_batch

    body = submission(consortium.unionpay, node.log_id, leaves)
    return authenticate_batch(MembershipCache(consortium.chain.member),
                              platform_address=node.platform_address, log_id=node.log_id,
                              leaves=leaves, signer=body["signer"],
                              signature=bytes.fromhex(body["signature"]))


@pytest.fixture(scope="module")
def fuzz_app(fuzz_node: PlatformNode) -> FastAPI:
    return create_app(fuzz_node)


def test_no_server_errors(fuzz_app: FastAPI) -> None:
    api = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 10
    seen: set[int] = set()
    calls: list[int] = []
    cases = [(operation, mode) for operation in operations
             for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
    for operation, mode in cases:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=6, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            response = case.call()
            seen.add(response.status_code)
            calls.append(response.status_code)
            assert response.status_code < 500, (case.method, case.path, response.text)
            if response.status_code >= 400:
                content_type = response.headers.get("content-type", [""])
                assert content_type[0].startswith("application/problem+json"), content_type
                document = response.json()
                assert {"type", "title", "status", "detail", "instance"} <= set(document)
                assert document["status"] == response.status_code

        try:
            check()
        except Unsatisfiable:  # no invalid request exists for a parameterless GET
            assert mode is GenerationMode.NEGATIVE and not operation.path_parameters
    assert any(status >= 400 for status in seen) and any(status < 300 for status in seen)
    print(f"fuzz: {len(calls)} requests over {len(operations)} operations, statuses {sorted(seen)}")
