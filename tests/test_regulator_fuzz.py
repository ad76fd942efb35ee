"""Schema-driven fuzzing of the regulator node's API (schemathesis over its own OpenAPI
document): whatever the request, no 5xx, and every error is an RFC 9457 problem document.

Requests are let through as pboc (an authenticator that accepts every request as the
regulator), so the fuzzing reaches the routes behind the signature check; the signature
check itself is tested in test_regulator_api.py.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from api.regulator_app import create_regulator_app
from ledger_node.auth import AuthenticatedMember
from ledger_node.chain import LedgerChain, Role
from ledger_node.regulator import RegulatorNode
from tests.api_support import make_consortium
from tests.regulator_support import (
    PERSON_TO_MERCHANT,
    T0,
    payment,
    platform_client,
    regulator_for,
    start_node,
    wait_anchored,
)


class AsRegulator:
    """Accepts every request as the given regulator member."""

    def __init__(self, address: str) -> None:
        self.member = AuthenticatedMember(address, Role.REGULATOR, "pboc")

    def authenticate(self, method: str, target: str, headers: Mapping[str, str], body: bytes,
                     *, roles: Collection[Role] | None = None) -> AuthenticatedMember:
        return self.member


@pytest.fixture(scope="module")
def regulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegulatorNode]:
    tmp: Path = tmp_path_factory.mktemp("regulator-fuzz")
    consortium = make_consortium(LedgerChain.embedded())
    node = start_node(consortium, consortium.unionpay, tmp / "up.db")
    records = [payment("unionpay", i, "mallory", f"m{i}", 300_000_00, T0 + timedelta(hours=i))
               for i in range(3)]
    platform_client(consortium, consortium.unionpay, node).submit_records(
        records, kinds=lambda r: PERSON_TO_MERCHANT)
    wait_anchored(node, 3)
    regulator = regulator_for(consortium, tmp / "pboc.db", {"unionpay": node})
    regulator.sync()
    yield regulator
    regulator.stop()
    node.stop()


def test_no_server_errors(regulator: RegulatorNode) -> None:
    app = create_regulator_app(regulator,
                               authenticator=AsRegulator(regulator.chain.address))
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 10
    seen: set[int] = set()
    calls: list[int] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

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
    print(f"regulator fuzz: {len(calls)} requests over {len(operations)} operations, "
          f"statuses {sorted(seen)}")
