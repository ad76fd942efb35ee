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

import pytest

from api.regulator_app import create_regulator_app
from ledger_node.chain.adapter import LedgerChain, Role
from ledger_node.protocol.auth import AuthenticatedMember
from ledger_node.regulator.node import RegulatorNode
from tests.api_support import make_consortium
from tests.fuzz_support import fuzz_without_server_errors
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
    calls, operations = fuzz_without_server_errors(app, min_operations=10)
    print(f"regulator fuzz: {len(calls)} requests over {operations} operations, "
          f"statuses {sorted(set(calls))}")
