"""Every integer input of both HTTP APIs is bounded by what the stores hold (issue 14, defect
2: ``?after=9223372036854775808`` reached SQLite and answered 500 internal-error)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from api.regulator_app import create_regulator_app
from api.routes.common import MAX_STORED_INT
from ledger_node.chain.adapter import LedgerChain
from ledger_node.platform.node import PlatformNode
from tests.api_support import Consortium, make_consortium, make_node
from tests.regulator_support import regulator_for

TOO_BIG = MAX_STORED_INT + 1


@pytest.fixture(scope="module")
def consortium() -> Consortium:
    return make_consortium(LedgerChain.embedded())


@pytest.fixture(scope="module")
def node(consortium: Consortium, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[PlatformNode]:
    node = make_node(consortium, tmp_path_factory.mktemp("bounds") / "up.db")
    yield node
    node.stop()


@pytest.fixture(scope="module")
def apps(consortium: Consortium, node: PlatformNode, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[dict[str, FastAPI]]:
    regulator = regulator_for(consortium, tmp_path_factory.mktemp("bounds") / "r.db", {})
    yield {"platform": create_app(node), "regulator": create_regulator_app(regulator)}
    regulator.stop()


def _integers(schema: dict[str, Any], components: dict[str, Any], where: str,
              seen: frozenset[str] = frozenset()) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every integer schema reachable from ``schema`` (request side), with its path."""
    ref = schema.get("$ref")
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        if name not in seen:
            yield from _integers(components[name], components, f"{where}<{name}>", seen | {name})
        return
    if schema.get("type") == "integer":
        yield where, schema
    for key in ("anyOf", "oneOf", "allOf"):
        for i, option in enumerate(schema.get(key, ())):
            yield from _integers(option, components, f"{where}|{i}", seen)
    for name, sub in schema.get("properties", {}).items():
        yield from _integers(sub, components, f"{where}.{name}", seen)
    if isinstance(schema.get("items"), dict):
        yield from _integers(schema["items"], components, f"{where}[]", seen)


@pytest.mark.parametrize("role", ["platform", "regulator"])
def test_every_integer_input_has_a_maximum_the_store_holds(
        apps: dict[str, FastAPI], role: str) -> None:
    spec = apps[role].openapi()
    components = spec.get("components", {}).get("schemas", {})
    found = unbounded = 0
    problems = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            sources = [(f"{method} {path} {p['in']}:{p['name']}", p.get("schema", {}))
                       for p in operation.get("parameters", ())]
            body = operation.get("requestBody", {}).get("content", {})
            sources += [(f"{method} {path} body", c.get("schema", {})) for c in body.values()]
            for where, schema in sources:
                for place, integer in _integers(schema, components, where):
                    found += 1
                    maximum = integer.get("maximum", integer.get("exclusiveMaximum"))
                    # JSON Schema writes 2**63 - 1 as a double, which rounds it to 2**63
                    if maximum is None or maximum > float(MAX_STORED_INT):
                        unbounded += 1
                        problems.append(f"{place}: maximum {maximum}")
    assert found > 5 and unbounded == 0, problems


@pytest.mark.parametrize("url", [
    f"/v1/checkpoints?after={TOO_BIG}",
    f"/v1/consistency?from={TOO_BIG}&to={TOO_BIG + 1}",
    f"/v1/checkpoints/{TOO_BIG}",
    f"/v1/leaves/{TOO_BIG}",
    f"/v1/leaves/{TOO_BIG}/bundle",
])
def test_integers_past_the_store_are_a_problem_not_a_server_error(
        apps: dict[str, FastAPI], url: str) -> None:
    with TestClient(apps["platform"], raise_server_exceptions=False) as client:
        answer = client.get(url)
    assert answer.status_code in (404, 422), answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_the_consoles_page_bound_too(apps: dict[str, FastAPI], tmp_path: Path) -> None:
    with TestClient(apps["regulator"], raise_server_exceptions=False) as client:
        answer = client.get(f"/console/api/checkpoints?before={TOO_BIG}")
    assert answer.status_code == 422, answer.text
